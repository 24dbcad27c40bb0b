"""Request helpers shared by the console and the portal."""

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

if TYPE_CHECKING:
    # Only for annotations: importing auth's models needs the apps loaded.
    from django.contrib.auth.models import User


class HtmxHttpRequest(HttpRequest):
    """For annotations: every request has passed django-htmx's middleware, which
    sets `htmx`."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    """For annotations: the request of a view behind `login_required` or
    `staff_member_required`, whose user has signed in."""

    user: "User"


def staff_only[View: Callable[..., HttpResponseBase]](view: View) -> View:
    """The view for active staff only; anyone else goes to the one sign-in page
    (staff_member_required alone would send them to the Django admin's).

    An htmx request (filters, Load more, a live re-read) from a tab whose sign-in
    has ended sends the whole tab there with HX-Redirect, and back to the page it
    shows: a plain redirect would be followed by htmx, and the sign-in page would
    be swapped into the table.
    """
    # A function, not `staff_member_required(login_url=...)` kept in a variable:
    # django-stubs leave that call's result untyped, and so the views behind it.
    checked = staff_member_required(view, login_url=settings.LOGIN_URL)

    @wraps(view)
    def guarded(
        request: HtmxHttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        user = request.user
        if is_fragment_request(request) and not (user.is_active and user.is_staff):
            page = request.htmx.current_url_abs_path or request.get_full_path()
            sign_in = redirect_to_login(page, settings.LOGIN_URL)
            return HttpResponseClientRedirect(sign_in["Location"])
        return checked(request, *args, **kwargs)

    return cast(View, guarded)


# Said on the page an action's address leads to when it was opened, not posted.
NOTHING_DONE = "Nothing was done yet: press the button again to go ahead."


def post_only[View: Callable[..., HttpResponseBase]](
    page: str, *url_kwargs: str
) -> Callable[[View], View]:
    """require_POST for an action whose button is on `page` (a URL name, reversed
    with the action URL's arguments named in `url_kwargs`).

    A GET of the action's address goes to that page and says nothing was done,
    instead of a blank 405: signing in again after a session ended as the button
    was pressed sends the browser there with a GET.
    """

    def decorator(view: View) -> View:
        posted = require_POST(view)

        @wraps(view)
        def guarded(
            request: HttpRequest, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            if request.method == "GET":
                messages.info(request, NOTHING_DONE)
                return redirect(page, **{name: kwargs[name] for name in url_kwargs})
            return posted(request, *args, **kwargs)

        return cast(View, guarded)

    return decorator


def is_fragment_request(request: HttpRequest) -> bool:
    """An htmx request that wants a fragment.

    A history-restore request also carries HX-Request but wants the whole page.
    """
    htmx = getattr(request, "htmx", None)
    return bool(htmx and not htmx.history_restore_request)
