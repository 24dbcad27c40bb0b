"""Authentication of the Sessions API: per-user Bearer tokens, or the browser session.

A token is `pol_` followed by 43 random URL-safe characters (256 bits). Only its
SHA-256 hash is stored: a random token of that size needs no salt or slow hash, and
a plain hash lets the lookup use a unique index. The first 12 characters stay visible
(`prefix`) so people can tell their tokens apart in lists.

The browser session serves the portal's own calls; ninja's cookie auth checks the
CSRF token on those, while Bearer calls need none (no ambient credentials).
"""

import hashlib
import logging
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import AuthenticationError, HttpError
from ninja.security import HttpBearer, SessionAuth

from sessions_app.models import ApiToken

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "pol_"
VISIBLE_CHARS = 12
# Recording every use would turn each API read into a write; once a minute is
# enough to tell people which tokens are still in use.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_hash(raw: str) -> str:
    """What is stored of a raw token, and looked up by."""
    return hashlib.sha256(raw.encode()).hexdigest()


class TokenExpired(AuthenticationError):
    """A known, unrevoked token past its expiry: its caller is told so, and when,
    rather than that the token is unknown."""

    def __init__(self, expires_at: datetime) -> None:
        super().__init__()
        self.expires_at = expires_at


class TokenRevoked(AuthenticationError):
    """A known token its owner revoked: its caller is told so, and when."""

    def __init__(self, revoked_at: datetime) -> None:
        super().__init__()
        self.revoked_at = revoked_at


def api_token_user(raw: str) -> User | None:
    """The active user owning the unrevoked, unexpired token `raw`, or None.
    Raises TokenRevoked or TokenExpired for a token that was good once."""
    token = (
        ApiToken.objects.select_related("user").filter(key_hash=token_hash(raw))
    ).first()
    if token is None or not token.user.is_active:
        return None
    if token.revoked_at is not None:
        raise TokenRevoked(token.revoked_at)
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenExpired(token.expires_at)
    stale = now - LAST_USED_RESOLUTION
    if token.last_used_at is None or token.last_used_at < stale:
        # Conditional, so concurrent requests write it once.
        ApiToken.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=token.pk
        ).update(last_used_at=now)
    user: User = token.user
    return user


class ApiRequest(HttpRequest):
    """For annotations: a request the API let in; `auth` is the user that
    BearerTokenAuth or BrowserSessionAuth returned."""

    auth: User


class BearerTokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` with a token from `create_api_token`."""

    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        return api_token_user(token.strip())


class BrowserSessionAuth(SessionAuth):
    """The signed-in browser session (CSRF-checked), for the portal's own calls."""

    def _get_key(self, request: HttpRequest) -> str | None:
        # CSRF guards a signed-in browser. A request with a token, or without a
        # session, is not one: it is told it needs a valid token (401), not that a
        # CSRF check failed.
        if not self._is_browser(request):
            return None
        try:
            key: str | None = super()._get_key(request)
        except HttpError as error:
            # ninja's "CSRF check Failed" says neither what is missing nor how to
            # send it.
            raise HttpError(
                403,
                "This browser request has no valid CSRF token: send the token a "
                "Polaris page carries (its forms' csrfmiddlewaretoken field) in the "
                "X-CSRFToken header, or use a bearer token.",
            ) from error
        return key

    def authenticate(self, request: HttpRequest, key: str | None) -> User | None:
        if not self._is_browser(request):
            return None
        user = request.user
        return user if user.is_active else None

    @staticmethod
    def _is_browser(request: HttpRequest) -> bool:
        # A request that presents a token is judged by that token alone: a revoked
        # or mistyped token must fail even in a browser that is signed in.
        return "Authorization" not in request.headers and request.user.is_authenticated
