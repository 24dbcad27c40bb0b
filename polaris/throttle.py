"""Login throttling: too many failed sign-ins lock that username from that address,
and very many lock the address.

After LOGIN_FAILURE_LIMIT failures (10) for one username from one client address,
sign-in for that pair is refused for LOGIN_LOCKOUT_SECONDS (15 minutes), even with
the right password. Other usernames from the same address, and the same username
from other addresses, are unaffected, so an attacker cannot lock a customer out
everywhere.

After LOGIN_ADDRESS_FAILURE_LIMIT failures (100) from one address within that
window, whatever the usernames, sign-in from the address is refused for the same
time: one address trying a few passwords on every account (password spraying)
never locks a pair. The limit is high, as an office or a mobile network shows many
people as one address; a successful sign-in does not lower it, or one account of
the attacker's own would reset it.

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

import enum
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


class Lock(enum.Enum):
    ACCOUNT = "account"  # this username from this address
    ADDRESS = "address"  # every username from this address


def lock_of(username: str, address: str) -> Lock | None:
    """Which lock refuses sign-in for this username from this address, if any."""
    account, every = (
        cache_key("locked", username, address),
        address_key("locked", address),
    )
    try:
        found = cache.get_many([account, every])
    except Exception:
        logger.exception("Login throttle unavailable; not checking the lock")
        return None
    if account in found:
        return Lock.ACCOUNT
    return Lock.ADDRESS if every in found else None


def record_failure(username: str, address: str) -> Lock | None:
    """Count one failed sign-in; returns the lock this failure set, if any."""
    try:
        return _record_failure(username, address)
    except Exception:
        logger.exception("Login throttle unavailable; failure not counted")
        return None


def address_key(kind: str, address: str) -> str:
    return cache_key(f"address-{kind}", "", address)


def _record_failure(username: str, address: str) -> Lock | None:
    window = settings.LOGIN_LOCKOUT_SECONDS
    every = _count(address_key("failures", address), window)
    if every >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
        cache.set(address_key("locked", address), 1, timeout=window)
        cache.delete(address_key("failures", address))
        logger.warning(
            "Sign-in from one address locked for %s s after %s failures", window, every
        )
    failures = _count(cache_key("failures", username, address), window)
    if failures >= settings.LOGIN_FAILURE_LIMIT:
        cache.set(cache_key("locked", username, address), 1, timeout=window)
        cache.delete(cache_key("failures", username, address))
        # No username or address in the log: both identify a person.
        logger.warning("Sign-in locked for %s s after %s failures", window, failures)
        return Lock.ACCOUNT
    return Lock.ADDRESS if every >= settings.LOGIN_ADDRESS_FAILURE_LIMIT else None


def _count(key: str, window: int) -> int:
    """Add one to the failures counted at `key` within `window` seconds."""
    # add() is atomic and sets the expiry once: failures older than the window
    # are forgotten together, and incr() keeps the expiry of the existing key.
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:
        # The key expired between add() and incr().
        cache.add(key, 1, timeout=window)
        return 1


def reset(username: str, address: str) -> None:
    """Forget the failures of this pair (after a successful sign-in)."""
    try:
        cache.delete(cache_key("failures", username, address))
    except Exception:
        logger.exception("Login throttle unavailable; failures not reset")
