"""The one-time display of a new API token, across the redirect after its POST.

Creating a token answers with a redirect, so that reload, Back and Forward never
create a second one. The raw token has to reach the page the redirect leads to, and
it must never be stored in plain text anywhere that lasts. It travels in a cookie:

- signed, salted and timestamped: it is read for a minute after the POST, only by
  the person who made it, and nobody can plant a made-up "new token" on the page;
- a browser-session cookie (no Max-Age or Expires), HttpOnly, SameSite=Strict and
  scoped to the token page's path: browsers keep such a cookie in memory, not in
  their cookie file, and send it nowhere else;
- deleted by the page that shows it, which is never cached (`never_cache`), so a
  reload or a return to the page shows the list without it.

Not Django's messages framework: its default storage moves messages into the
session, a database row, when the cookie is full. Not the redirect's URL either: that
lands in the browser history and in access logs.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

COOKIE = "polaris_new_token"
SALT = "sessions_app.new_token"
MAX_AGE_SECONDS = 60


def new_token_redirect(
    request: HttpRequest, *, raw_token: str, to: str
) -> HttpResponseRedirect:
    """A redirect to the token page `to` (a path) that carries `raw_token` to it."""
    response = HttpResponseRedirect(to)
    response.set_signed_cookie(
        COOKIE,
        f"{request.user.pk}:{raw_token}",
        salt=SALT,
        path=to,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )
    return response


def new_token_read(request: HttpRequest) -> str | None:
    """The raw token the signed-in person created in the last minute, if any."""
    value = request.get_signed_cookie(
        COOKIE, default=None, salt=SALT, max_age=MAX_AGE_SECONDS
    )
    if not value:
        return None
    user_pk, _, raw_token = value.partition(":")
    return raw_token if raw_token and user_pk == str(request.user.pk) else None


def new_token_forget(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """`response`, deleting the new-token cookie if the request carried one."""
    if COOKIE in request.COOKIES:
        response.delete_cookie(COOKIE, path=request.path, samesite="Strict")
    return response
