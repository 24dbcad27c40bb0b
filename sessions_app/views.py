"""Admin console pages: staff only, read through selectors, write through services."""

import csv
from collections.abc import Iterator, Mapping
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import push_url

from polaris import live
from polaris.http import (
    IN_PAGE,
    AuthenticatedHttpRequest,
    is_fragment_request,
    post_only,
    staff_only,
)
from polaris.queueing import enqueue
from sessions_app import selectors
from sessions_app.charts import cumulative_energy_chart
from sessions_app.forms import (
    ApiTokenForm,
    SessionFilterForm,
    SyncRunFilterForm,
    UserMappingForm,
    UserMappingImportForm,
    parse_session_filters,
    parse_sync_run_filters,
    parse_user_mapping_search,
)
from sessions_app.models import ApiToken
from sessions_app.new_token import (
    new_token_forget,
    new_token_read,
    new_token_redirect,
)
from sessions_app.services import api_token_create, api_token_revoke
from sync.models import SyncRun, TransactionSyncState, UserMapping
from sync.services.imports import (
    MappingImportResult,
    RejectedRow,
    user_mapping_import_bytes,
)
from sync.services.mappings import user_mapping_create, user_mapping_update
from sync.tasks import sync_run_transaction as sync_run_transaction_task
from sync.tasks import sync_run_transactions as sync_run_transactions_task

# Said when Redis, the task queue, cannot be reached.
QUEUE_UNREACHABLE = (
    "the task queue (Redis) cannot be reached. Try again in a moment; scheduled "
    "syncs resume by themselves once it is back."
)


def _live_url() -> str:
    """The staff stream for a page's `sse-connect` (see `live.stream_url`)."""
    return live.stream_url(reverse("sessions_app:live"), live.staff_channel())


SESSION_LIST = "sessions_app/session_list.html"


@staff_only
@vary_on_headers("HX-Request", "HX-Trigger")
def session_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    fragment = is_fragment_request(request)
    trigger = request.htmx.trigger if fragment else None
    # The table re-reading itself after a sync.
    rereading = trigger == "session-results"
    filters = parse_session_filters(request.GET)
    cursor = request.GET.get("cursor")
    listing = selectors.SessionList(
        filters=filters,
        cursor=cursor,
        rows_before=_row_count(request.GET.get("rows")),
        fragment=fragment,
        now=timezone.now(),
        unmapped_tag_hint=(
            request.GET.get("tag_hint") == "unmapped" if rereading else None
        ),
    )
    context: dict[str, object] = {
        "section": "sessions",
        "filter_query": urlencode(filters.as_query()),
    }
    if fragment and cursor:
        # The address says how many rows the table holds now, as the no-script
        # link does: Back from a session opened below them brings them all back.
        context.update(listing.rows())
        response = render(request, f"{SESSION_LIST}#session-rows", context)
        rows_shown = {**filters.as_query(), "rows": listing.table.rows_shown}
        return push_url(response, _session_list_url(rows_shown))
    if rereading:
        # Only the results: the form keeps what is typed.
        context.update(listing.results())
        return render(request, f"{SESSION_LIST}#session-results", context)
    context.update(form=SessionFilterForm(filters))
    if fragment:
        # New filters: the form, the export link and the address follow them.
        context.update(
            listing.results(),
            filters_oob=True,
            announce_count=trigger == "session-filters",
        )
        response = render(request, f"{SESSION_LIST}#filtered-results", context)
        return push_url(response, _session_list_url(filters.as_query()))
    context.update(listing.whole_page(), live_url=_live_url())
    return render(request, SESSION_LIST, context)


def _session_list_url(query: Mapping[str, object]) -> str:
    url = reverse("sessions_app:session-list")
    return f"{url}?{urlencode(query)}" if query else url


def _row_count(raw: str | None) -> int:
    """A row count from the query string; 0 when missing or malformed."""
    try:
        return max(0, int(raw or 0))
    except ValueError:
        return 0


@staff_only
def session_export(request: AuthenticatedHttpRequest) -> StreamingHttpResponse:
    """Every session of the filtered view as CSV, streamed page by page."""
    filters = parse_session_filters(request.GET)
    rows = selectors.session_export_rows(filters=filters)
    response = StreamingHttpResponse(
        _csv_lines(rows), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = (
        f'attachment; filename="charging-sessions-{stamp}.csv"'
    )
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


# A spreadsheet runs a cell that starts with one of these as a formula; labels,
# emails and tags come from whoever typed them (OWASP's CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# Excel reads a CSV file as UTF-8 only after a byte order mark; without one it
# garbles every label beyond ASCII.
UTF8_BOM = "\ufeff"


def _csv_lines(rows: Iterator[list[str]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield UTF8_BOM + writer.writerow(selectors.SESSION_EXPORT_HEADER)
    for row in rows:
        yield writer.writerow([_as_text(cell) for cell in row])


def _as_text(cell: str) -> str:
    """The cell, with a leading apostrophe where a spreadsheet would see a formula:
    spreadsheets show it as text, as typed."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


@staff_only
@vary_on_headers("HX-Request")
def session_detail(
    request: AuthenticatedHttpRequest, steve_transaction_id: int
) -> HttpResponse:
    try:
        session = selectors.session_detail(steve_transaction_id=steve_transaction_id)
    except TransactionSyncState.DoesNotExist:
        raise Http404("No session with this SteVe transaction id.") from None
    events = selectors.session_events(session=session)
    now = timezone.now()
    context = {
        "section": "sessions",
        "session": session,
        "events": events,
        "chart": cumulative_energy_chart(session, events),
        "last_synced": selectors.session_last_synced(session=session, now=now),
        "resync": selectors.recent_resync(
            steve_transaction_id=steve_transaction_id, now=now
        ),
    }
    template = "sessions_app/session_detail.html"
    if is_fragment_request(request):
        # A sync tick's re-read: the parts that change, not the page around them.
        return render(request, f"{template}#live-parts", context)
    return render(request, template, {**context, "live_url": _live_url()})


@staff_only
@post_only("sessions_app:session-detail", "steve_transaction_id")
def session_resync(
    request: AuthenticatedHttpRequest, steve_transaction_id: int
) -> HttpResponse:
    session = get_object_or_404(
        TransactionSyncState, steve_transaction_id=steve_transaction_id
    )
    if enqueue(sync_run_transaction_task, session.steve_transaction_id):
        messages.info(
            request,
            f"Resync of transaction {session.steve_transaction_id} queued; this "
            "page shows how it went in a few seconds.",
            extra_tags=IN_PAGE,
        )
    else:
        messages.error(request, f"The resync did not start: {QUEUE_UNREACHABLE}")
    return redirect("sessions_app:session-detail", session.steve_transaction_id)


@staff_only
def sync_run_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    fragment = is_fragment_request(request)
    live_url = None if fragment else _live_url()
    filters = parse_sync_run_filters(request.GET)
    context = {
        "section": "sync-runs",
        **selectors.sync_run_table(filters=filters),
        "sync_interval": settings.SYNC_INTERVAL_SECONDS,
        "filters": filters,
        "filter_query": urlencode(filters.as_query()),
        "form": SyncRunFilterForm(filters),
        "live_url": live_url,
    }
    if fragment:
        return render(request, "sessions_app/sync_run_list.html#sync-run-rows", context)
    return render(request, "sessions_app/sync_run_list.html", context)


@staff_only
@post_only("sessions_app:sync-run-list")
def sync_run_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    # The advisory lock in the service is the real guard; this spares a queued
    # task that would only find the lock taken. The button itself is never
    # disabled: live updates re-render the table, not the header, so a disabled
    # state would outlive the run that caused it.
    if selectors.sync_run_in_progress():
        messages.warning(request, "A sync run is already in progress.")
    elif enqueue(sync_run_transactions_task, SyncRun.Trigger.CONSOLE):
        messages.success(request, "Sync run queued; it appears below in a moment.")
    else:
        messages.error(request, f"The sync run was not queued: {QUEUE_UNREACHABLE}")
    return redirect("sessions_app:sync-run-list")


@staff_only
def user_mapping_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    search = parse_user_mapping_search(request.GET)
    context = {
        "section": "user-mappings",
        "search": search,
        "mappings": selectors.user_mapping_list(search=search),
        "import_form": UserMappingImportForm(),
    }
    return render(request, "sessions_app/user_mapping_list.html", context)


@staff_only
def user_mapping_create_view(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _user_mapping_form_page(request, mapping=None)


@staff_only
def user_mapping_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mapping = get_object_or_404(UserMapping.objects.select_related("user"), pk=pk)
    return _user_mapping_form_page(request, mapping=mapping)


def _user_mapping_form_page(
    request: AuthenticatedHttpRequest, *, mapping: UserMapping | None
) -> HttpResponse:
    """The create and edit page: the form, and on a valid POST the service."""
    form = UserMappingForm(request.POST or None, instance=mapping)
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
                    actor=request.user,
                    # Validating the form wrote the posted values onto `mapping`;
                    # the service compares with the stored row for its audit entry.
                    mapping=UserMapping.objects.select_related("user").get(
                        pk=mapping.pk
                    ),
                    **fields,
                )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            done = "created" if mapping is None else "saved"
            messages.success(
                request, _mapping_saved(saved, done, data["steve_ocpp_id_tag"])
            )
            return redirect("sessions_app:user-mapping-list")
    context = {"section": "user-mappings", "form": form, "mapping": mapping}
    return render(request, "sessions_app/user_mapping_form.html", context)


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


@staff_only
@post_only("sessions_app:user-mapping-list")
def user_mapping_deactivate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mapping = get_object_or_404(UserMapping.objects.select_related("user"), pk=pk)
    user_mapping_update(actor=request.user, mapping=mapping, is_active=False)
    messages.success(request, f"Mapping for {mapping.steve_ocpp_id_tag} deactivated.")
    return redirect("sessions_app:user-mapping-list")


@staff_only
@post_only("sessions_app:user-mapping-list")
def user_mapping_import(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = UserMappingImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a CSV file to import.")
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
    summarize(
        request,
        f"Import done: {result.counts()}; {accounts} customer "
        f"account{pluralize(accounts)} created.{_import_tag_notes(result)}",
    )
    _import_rejections_report(request, result.rejected)
    return redirect("sessions_app:user-mapping-list")


def _import_tag_notes(result: MappingImportResult) -> str:
    """What the import did with the tags' letter case (see `_mapping_saved`)."""
    notes = ""
    if result.respelled:
        n = result.respelled
        notes += (
            f" {n} idTag{pluralize(n)} {pluralize(n, 'was,were')} stored in the "
            "letter case SteVe uses, not the file's."
        )
    if result.never_synced:
        n = result.never_synced
        which = "this idTag" if n == result.rows == 1 else f"{n} of the new idTags"
        notes += (
            f" No session with {which} has synced yet; the sync stores "
            f"{pluralize(n, 'it,them')} in SteVe's letter case with the first one."
        )
    return notes


# An import names this many skipped lines one by one; a file of thousands of bad
# lines would otherwise fill the page (and the session cookie) with banners.
IMPORT_REJECTIONS_LISTED = 20


def _import_rejections_report(
    request: HttpRequest, rejected: list[RejectedRow]
) -> None:
    """One warning per skipped line up to IMPORT_REJECTIONS_LISTED, then one saying
    how many more were skipped, so none goes unmentioned."""
    listed = rejected[:IMPORT_REJECTIONS_LISTED]
    unlisted = rejected[IMPORT_REJECTIONS_LISTED:]
    for row in listed:
        messages.warning(request, f"Line {row.line} skipped: {row.reason}")
    if len(unlisted) == 1:
        messages.warning(
            request,
            f"1 more line was skipped (line {unlisted[0].line}); fix the lines above "
            "and import the file again to see it.",
        )
    elif unlisted:
        messages.warning(
            request,
            f"{len(unlisted)} more lines were skipped (lines {unlisted[0].line} to "
            f"{unlisted[-1].line}); fix the lines above and import the file again "
            "to see them.",
        )


@staff_only
@never_cache
def api_token_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The signed-in staff member's API tokens; a POST creates one, then redirects
    to this page, which shows it once."""
    form = ApiTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, raw_token = api_token_create(
            user=request.user, name=form.cleaned_data["name"]
        )
        return new_token_redirect(
            request, raw_token=raw_token, to=reverse("sessions_app:api-token-list")
        )
    context = {
        "section": "api-tokens",
        "form": form,
        "new_token": new_token_read(request),
        "tokens": selectors.api_token_list(user=request.user),
    }
    response = render(request, "sessions_app/api_token_list.html", context)
    return new_token_forget(request, response)


@staff_only
@post_only("sessions_app:api-token-list")
def api_token_revoke_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    api_token_revoke(token=token)
    messages.success(request, f"Token {token.prefix}… revoked; it no longer works.")
    return redirect("sessions_app:api-token-list")


@staff_only
def live_stream(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The console's SSE stream (staff channel)."""
    return live.stream(request, live.staff_channel())
