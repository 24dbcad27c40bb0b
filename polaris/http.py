"""Request helpers shared by the console and the portal."""

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from polaris import live

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
    (staff_member_required alone would send them to the Django admin's)."""
    # A function, not `staff_member_required(login_url=...)` kept in a variable:
    # django-stubs leave that call's result untyped, and so the views behind it.
    return staff_member_required(view, login_url=settings.LOGIN_URL)


class SignedOutTabMiddleware:
    """Sends the whole tab to sign in when a request it makes by itself is
    redirected there.

    A tab whose sign-in has ended (expired, or signed out in another tab) still
    makes htmx requests (filters, Load more, the period chips, a live re-read) and
    reconnects its live stream. htmx follows a plain redirect and would swap the
    sign-in page into the table or the card; HX-Redirect takes the tab there
    instead, and back to the page it shows. A stream gets an event that does the
    same (`live.signed_out_response`). Listed after HtmxMiddleware, which sets
    `request.htmx`.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HtmxHttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if response.status_code != 302 or urlsplit(
            response["Location"]
        ).path != resolve_url(settings.LOGIN_URL):
            return response
        if request.headers.get("Accept") == "text/event-stream":
            return live.signed_out_response()
        if is_fragment_request(request):
            page = request.htmx.current_url_abs_path or request.get_full_path()
            sign_in = redirect_to_login(page, settings.LOGIN_URL)
            return HttpResponseClientRedirect(sign_in["Location"])
        return response


# The extra tag of a flash message its page shows in place, not in the list of
# messages above every page (templates/includes/_messages.html).
IN_PAGE = "in-page"

# The extra tag's prefix of a flash message about something under way ("Stop
# requested"): the page drops it when its stream's event of that name comes, which
# shows how it went (static/js/polaris.js), rather than keep a sentence that is no
# longer true above the news.
UNTIL_EVENT = "until-"


def until_event(event_type: str) -> str:
    """The extra tag of a message that holds until the page's `event_type` event."""
    return f"{UNTIL_EVENT}{event_type}"


# Said on the page an action's address leads to when it was opened, not posted.
NOTHING_DONE = "Nothing was done yet: press the button again to go ahead."


def post_only[View: Callable[..., HttpResponseBase]](
    page: str, *url_kwargs: str, nothing_done: str = NOTHING_DONE
) -> Callable[[View], View]:
    """require_POST for an action whose button is on `page` (a URL name, reversed
    with the action URL's arguments named in `url_kwargs`).

    A GET of the action's address goes to that page and says nothing was done
    (`nothing_done`), instead of a blank 405: signing in again after a session
    ended as the button was pressed sends the browser there with a GET.
    """

    def decorator(view: View) -> View:
        posted = require_POST(view)

        @wraps(view)
        def guarded(
            request: HttpRequest, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            if request.method == "GET":
                messages.info(request, nothing_done)
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


class DjangoAdminNulMiddleware:
    """Answers 400 to a Django admin address holding a NUL character.

    PostgreSQL text cannot hold one, and Django admin puts its list filters and
    autocomplete terms into queries as given: the database would refuse them
    with a 500. The console's own forms drop NUL from typed text instead."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path.startswith(reverse("admin:index")) and "\x00" in unquote(
            request.META.get("QUERY_STRING", "")
        ):
            reason = "The address held a NUL character, which no filter or search takes"
            return render(request, "400.html", {"reason": reason}, status=400)
        return self.get_response(request)
