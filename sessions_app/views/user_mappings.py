"""The User mappings pages: list, create, edit, deactivate and CSV import."""

from collections.abc import Callable
from copy import copy
from functools import wraps
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from polaris.http import AuthenticatedHttpRequest, post_only, staff_only
from sessions_app import selectors
from sessions_app.forms import (
    UserMappingForm,
    UserMappingImportForm,
    parse_user_mapping_search,
)
from sync.models import UserMapping
from sync.services.imports import (
    RejectedRow,
    user_mapping_import_bytes,
)
from sync.services.mappings import user_mapping_create, user_mapping_update

# Changing user mappings moves a card's sessions and billing to a customer, or
# creates the customer's account: staff need Django's permissions on mappings for
# that, as they would in Django admin. Reading the console needs none.
MAPPING_PERMISSIONS = {
    "create": ("sync.add_usermapping",),
    "change": ("sync.change_usermapping",),
    "import": ("sync.add_usermapping", "sync.change_usermapping"),
}

# As Django admin lists them.
MAPPING_PERMISSION_NAMES = {
    "sync.add_usermapping": "Can add user mapping",
    "sync.change_usermapping": "Can change user mapping",
}


def may_change_mappings(user: User, change: str) -> bool:
    return user.has_perms(MAPPING_PERMISSIONS[change])


def staff_with_mapping_permission[View: Callable[..., HttpResponseBase]](
    change: str,
) -> Callable[[View], View]:
    """`staff_only`, and a 403 that says which permission is missing unless the
    user may make this `change` to user mappings (a key of MAPPING_PERMISSIONS)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def checked(
            request: AuthenticatedHttpRequest, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            if not may_change_mappings(request.user, change):
                missing = [
                    f"“{MAPPING_PERMISSION_NAMES[name]}”"
                    for name in MAPPING_PERMISSIONS[change]
                    if not request.user.has_perm(name)
                ]
                raise PermissionDenied(
                    f"This needs the permission {' and '.join(missing)}, which "
                    "your account does not have; an administrator grants it in "
                    "Django admin."
                )
            return view(request, *args, **kwargs)

        return staff_only(cast(View, checked))

    return decorator


@staff_only
def user_mapping_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    search = parse_user_mapping_search(request.GET)
    context = {
        "section": "user-mappings",
        "search": search,
        "mappings": selectors.user_mapping_list(search=search),
        "import_form": UserMappingImportForm(),
        # Edit and Deactivate lead back here, to the same search.
        "return_query": f"?{urlencode({'next': request.get_full_path()})}",
        # The skipped lines of the import just done, shown once.
        "import_report": request.session.pop(IMPORT_REPORT_KEY, None),
        "may": {
            change: may_change_mappings(request.user, change)
            for change in MAPPING_PERMISSIONS
        },
    }
    return render(request, "sessions_app/user_mapping_list.html", context)


@staff_with_mapping_permission("create")
def user_mapping_create_view(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _user_mapping_form_page(request, mapping=None)


@staff_with_mapping_permission("change")
def user_mapping_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mapping = get_object_or_404(UserMapping.objects.select_related("user"), pk=pk)
    return _user_mapping_form_page(request, mapping=mapping)


def _user_mapping_form_page(
    request: AuthenticatedHttpRequest, *, mapping: UserMapping | None
) -> HttpResponse:
    """The create and edit page: the form, and on a valid POST the service."""
    # A session of an unmapped card links here with its idTag (?tag=).
    initial = {} if mapping else {"steve_ocpp_id_tag": request.GET.get("tag", "")}
    # Validating writes the posted values onto the form's instance: it gets a
    # copy, so that the service compares them with the stored row for its audit.
    form = UserMappingForm(
        request.POST or None, instance=copy(mapping), initial=initial
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        fields = {
            "steve_ocpp_id_tag": data["steve_ocpp_id_tag"],
            "user": data["customer_email"],
            "label": data["label"],
            "billing_customer_id": data["billing_customer_id"],
            "is_active": data["is_active"],
        }
        try:
            if mapping is None:
                saved = user_mapping_create(actor=request.user, **fields)
            else:
                saved = user_mapping_update(
                    actor=request.user, mapping=mapping, **fields
                )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            done = "created" if mapping is None else "saved"
            messages.success(
                request, _mapping_saved(saved, done, data["steve_ocpp_id_tag"])
            )
            return redirect(_back_to_console_page(request))
    context = {
        "section": "user-mappings",
        "form": form,
        "mapping": mapping,
        "back_url": _back_to_console_page(request),
    }
    return render(request, "sessions_app/user_mapping_form.html", context)


def _back_to_console_page(request: HttpRequest) -> str:
    """Where a saved or deactivated mapping leads: back to the console page that
    linked to it (?next=: the list with its search, a session of an unmapped
    card), else the list."""
    back = request.GET.get("next", "")
    console = reverse("sessions_app:console")
    if back.startswith(console) and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return back
    return reverse("sessions_app:user-mapping-list")


def _mapping_saved(mapping: UserMapping, done: str, typed_tag: str) -> str:
    """What saving a mapping did with its tag: sessions link to it by the exact
    tag, so it is stored as SteVe writes it, which staff may not have typed."""
    tag = mapping.steve_ocpp_id_tag
    if tag != typed_tag:
        return (
            f"Mapping for {tag} {done}, in the letter case SteVe uses (you typed "
            f"{typed_tag}), so its sessions link to it."
        )
    if not selectors.id_tag_has_sessions(tag=tag):
        return (
            f"Mapping for {tag} {done}. No session with this idTag has synced yet; "
            "the sync stores it in SteVe's letter case with the first one."
        )
    return f"Mapping for {tag} {done}."


@staff_with_mapping_permission("change")
@post_only("sessions_app:user-mapping-list")
def user_mapping_deactivate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mapping = get_object_or_404(UserMapping.objects.select_related("user"), pk=pk)
    user_mapping_update(actor=request.user, mapping=mapping, is_active=False)
    messages.success(request, f"Mapping for {mapping.steve_ocpp_id_tag} deactivated.")
    return redirect(_back_to_console_page(request))


@staff_with_mapping_permission("import")
# The upload went with the POST that a sign-in interrupted.
@post_only(
    "sessions_app:user-mapping-list",
    nothing_done="Nothing was imported yet: choose the file again and press Import.",
)
def user_mapping_import(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = UserMappingImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, " ".join(map(str, form.errors["file"])))
        return redirect("sessions_app:user-mapping-list")
    try:
        result = user_mapping_import_bytes(
            actor=request.user, data=form.cleaned_data["file"].read()
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("sessions_app:user-mapping-list")
    if not result.rows:
        messages.warning(
            request, "The file has no rows under its header, so nothing was imported."
        )
        return redirect("sessions_app:user-mapping-list")
    summarize = messages.warning if result.rejected else messages.success
    accounts = result.users_created
    skipped = ""
    if result.rejected:
        skipped = " The skipped lines are listed below."
        _keep_import_rejections(request, result.rejected)
    summarize(
        request,
        f"Import done: {result.counts()}; {accounts:,} customer "
        f"account{pluralize(accounts)} created.{result.tag_notes()}{skipped}",
    )
    return redirect("sessions_app:user-mapping-list")


# An import lists this many skipped lines, in a table under the import form; the
# rest are counted. The list is kept in the browser session until the page after
# the import shows it, and a file of thousands of bad lines would fill that.
IMPORT_REJECTIONS_LISTED = 100
IMPORT_REPORT_KEY = "user_mapping_import_report"


def _keep_import_rejections(request: HttpRequest, rejected: list[RejectedRow]) -> None:
    """Keep the skipped lines for the list page the import redirects to."""
    listed = rejected[:IMPORT_REJECTIONS_LISTED]
    unlisted = rejected[IMPORT_REJECTIONS_LISTED:]
    request.session[IMPORT_REPORT_KEY] = {
        "lines": [[row.line, row.reason] for row in listed],
        # Counted, not listed: the first and the last line number say the rest.
        "unlisted_count": len(unlisted),
        "unlisted_from": unlisted[0].line if unlisted else None,
        "unlisted_to": unlisted[-1].line if unlisted else None,
    }
