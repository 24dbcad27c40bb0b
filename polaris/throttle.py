"""Login throttling: too many failed sign-ins lock that username from that address.

After LOGIN_FAILURE_LIMIT failures (10) for one username from one client address,
sign-in for that pair is refused for LOGIN_LOCKOUT_SECONDS (15 minutes), even with
the right password. Other usernames from the same address, and the same username
from other addresses, are unaffected, so an attacker cannot lock a customer out
everywhere.

The counters live in Django's cache, which is Redis in every deployment: every web
process sees the same counts, and they expire by themselves. Keys hold a hash of the
username and address, never the values (no PII in Redis).

If Redis cannot be reached the throttle fails open (sign-in works, unthrottled, and
every attempt logs an error): pages and sessions live in Postgres, and a Redis outage
should not lock every person out of the product.

The client address is REMOTE_ADDR. Behind a proxy, run uvicorn with
`--proxy-headers --forwarded-allow-ips=<proxy address>` so that REMOTE_ADDR is the
client's address rather than the proxy's (see docs/operations.md).
"""

import hashlib
import logging
import unicodedata

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)

_PREFIX = "login-throttle"


def client_address(request: HttpRequest | None) -> str:
    """The address the request came from ("" when unknown)."""
    if request is None:
        return ""
    return str(request.META.get("REMOTE_ADDR") or "")


def cache_key(kind: str, username: str, address: str) -> str:
    # NFKC as Django's username field normalises, and lower case as the email
    # backend retries: spellings that reach the same account share one count.
    typed = unicodedata.normalize("NFKC", username).strip().lower()
    digest = hashlib.sha256(f"{typed}\n{address}".encode())
    return f"{_PREFIX}:{kind}:{digest.hexdigest()}"


def is_locked(username: str, address: str) -> bool:
    """True while sign-in for this username from this address is refused."""
    try:
        return cache.get(cache_key("locked", username, address)) is not None
    except Exception:
        logger.exception("Login throttle unavailable; not checking the lock")
        return False


def record_failure(username: str, address: str) -> bool:
    """Count one failed sign-in; returns True when this failure locks the pair."""
    try:
        return _record_failure(username, address)
    except Exception:
        logger.exception("Login throttle unavailable; failure not counted")
        return False


def _record_failure(username: str, address: str) -> bool:
    window = settings.LOGIN_LOCKOUT_SECONDS
    failures_key = cache_key("failures", username, address)
    # add() is atomic and sets the expiry once: failures older than the window
    # are forgotten together, and incr() keeps the expiry of the existing key.
    cache.add(failures_key, 0, timeout=window)
    try:
        failures = cache.incr(failures_key)
    except ValueError:
        # The key expired between add() and incr().
        cache.add(failures_key, 1, timeout=window)
        failures = 1
    if failures < settings.LOGIN_FAILURE_LIMIT:
        return False
    cache.set(cache_key("locked", username, address), 1, timeout=window)
    cache.delete(failures_key)
    # No username or address in the log: both identify a person.
    logger.warning("Sign-in locked for %s s after %s failures", window, failures)
    return True


def reset(username: str, address: str) -> None:
    """Forget the failures of this pair (after a successful sign-in)."""
    try:
        cache.delete(cache_key("failures", username, address))
    except Exception:
        logger.exception("Login throttle unavailable; failures not reset")
