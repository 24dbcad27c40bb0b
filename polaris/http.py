"""Request helpers shared by the console and the portal."""

from collections.abc import Callable, Generator
from functools import wraps
from itertools import islice
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.views import redirect_to_login
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, resolve_url
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

# The extra tag's prefix of a flash message about something under way ("Charging is
# starting"): the page drops it when its stream's event of that name comes, which
# shows how it went (static/js/polaris.js), rather than keep a sentence that is no
# longer true above the news.
UNTIL_EVENT = "until-"


def until_event(event_type: str) -> str:
    """The extra tag of a message that holds until the page's `event_type` event."""
    return f"{UNTIL_EVENT}{event_type}"


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


# Lines a streamed download reads per hop to the request's thread: about 150 kB of
# CSV, so a million rows go out in a thousand messages instead of a million.
STREAM_BATCH_LINES = 1000


def streaming_response(
    request: HttpRequest, lines: Generator[str], **kwargs: Any
) -> StreamingHttpResponse:
    """A response that sends `lines` as they are produced.

    Under ASGI (uvicorn), Django reads a synchronous iterator whole before it sends
    a byte, to keep its database reads off the event loop: a million-row export
    would sit in memory. There the lines are read in batches instead (see
    `_InBatches`). Under WSGI (the test Client) the generator is streamed as it is.
    Either way Django closes it when the response ends or the client goes away.
    """
    if not isinstance(request, ASGIRequest):
        return StreamingHttpResponse(lines, **kwargs)
    return StreamingHttpResponse(_InBatches(lines), **kwargs)


class _InBatches:
    """`lines` as an async iterator of batches, each read in the request's thread,
    where its database connection (and any transaction or cursor on it) lives.

    Not an async generator: Django closes a streaming response's content through
    its `close()`, from the request's thread, whether it was read to the end or the
    client went away; an async generator would be left to the garbage collector,
    which could finish `lines` on any thread.
    """

    def __init__(self, lines: Generator[str]) -> None:
        self._lines = lines
        self._next_batch = sync_to_async(self._read_batch, thread_sensitive=True)

    def _read_batch(self) -> str:
        return "".join(islice(self._lines, STREAM_BATCH_LINES))

    def __aiter__(self) -> "_InBatches":
        return self

    async def __anext__(self) -> str:
        if batch := await self._next_batch():
            return batch
        raise StopAsyncIteration

    def close(self) -> None:
        self._lines.close()
