"""Typed readers for settings that come from environment variables.

Every reader raises ImproperlyConfigured with a sentence naming the variable, so a
malformed value stops the process at start instead of failing later in a request.
"""

import math
import os
import re
import zoneinfo
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str = "") -> str:
    """Return the variable as a string, or `default` when it is unset or blank."""
    value = _raw(name)
    return default if value is None else value


def env_secret(name: str, default: str | None = None) -> str | None:
    """Return `NAME`, or the contents of the file named by `NAME_FILE`."""
    value = _raw(name)
    if value is not None:
        return value
    path = _raw(f"{name}_FILE")
    if path is None:
        return default
    try:
        with open(path, encoding="utf-8") as secret_file:
            return secret_file.read().strip()
    except OSError as error:
        raise ImproperlyConfigured(
            f"{name}_FILE points at {path!r}, which cannot be read ({error.strerror})."
        ) from error


def env_bool(name: str, default: bool = False) -> bool:
    """Return the variable as a boolean: 1/true/yes/on or 0/false/no/off."""
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(
        f"{name} must be true or false (1/0, yes/no, on/off), not {value!r}."
    )


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """Return the variable as an integer, from `minimum` to `maximum` when given.

    A maximum keeps a value that would overflow later (a timedelta of a trillion
    hours, a Redis expiry past its limit) from passing at start and failing in a
    sync run or a request.
    """
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a whole number, not {value!r}."
        ) from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}.")
    return number


def env_float(
    name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
) -> float:
    """Return the variable as a finite number above `minimum` (seconds or similar),
    at most `maximum` when given."""
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None
    if not math.isfinite(number) or number <= minimum:
        raise ImproperlyConfigured(
            f"{name} must be a number greater than {minimum:g}, not {value}."
        )
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum:g}, not {value}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated variable as a list of non-empty items."""
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def without_password(url: str) -> str:
    """`url` with its password masked, as refusals and error reports show it:
    they end up in deployment and CI logs, which must not learn the database's or
    Redis' password. Text that is no URL with a password comes back as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unreadable (an IPv6 host without its "]"): mask by pattern
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    given_user, at, host = parts.netloc.rpartition("@")
    user = given_user.split(":", 1)[0] + ":***" if ":" in given_user else given_user
    query = re.sub(r"(?i)\b(password=)[^&]*", r"\1***", parts.query)
    if (user, query) == (given_user, parts.query):
        return url  # as given: urlunsplit would drop an empty host's "//"
    return urlunsplit(parts._replace(netloc=f"{user}{at}{host}", query=query))


def env_url(
    name: str, *, schemes: tuple[str, ...], credentials_in: str = ""
) -> str | None:
    """Return the variable as a URL with one of `schemes`, or None when unset. With
    `credentials_in` (the variables its user and password belong in), a URL that
    carries them is refused: messages and logs show that URL as it is."""
    value = _raw(name)
    if value is None:
        return None
    shown = without_password(value)
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a URL whose host is a name or an address (an IPv6 one "
            f"in brackets, such as [::1]), not {shown!r}."
        ) from None
    if parts.scheme not in schemes:
        expected = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with {expected}, not {shown!r}."
        )
    if credentials_in and "@" in parts.netloc:
        raise ImproperlyConfigured(
            f"{name} must not hold a user name or password, not {shown!r}: set "
            f"{credentials_in} instead."
        )
    postgres = parts.scheme.startswith("postgres")
    # PostgreSQL's own URLs may leave the host out (the local socket), or give it
    # in the query; the others need one.
    if not (parts.hostname or parts.query or postgres):
        raise ImproperlyConfigured(
            f"{name} must name a host after {parts.scheme}://, not {shown!r}."
        )
    if postgres and not (parts.path.strip("/") or "dbname=" in parts.query):
        raise ImproperlyConfigured(
            f"{name} must name its database after the host, as in "
            f"{parts.scheme}://user@host:5432/polaris, not {shown!r}."
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ImproperlyConfigured(
            f"{name} must name its port as a number from 1 to 65535, not {shown!r}."
        )
    if parts.scheme.startswith("redis") and not re.fullmatch(r"/?\d*", parts.path):
        raise ImproperlyConfigured(
            f"{name} must end with a database number such as /0, not {shown!r}."
        )
    return value


def env_time_zone(name: str, default: str) -> str:
    """Return the variable as an IANA time zone name known to the zone database."""
    value = env_str(name, default)
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"{name} must be an IANA time zone such as Europe/Berlin, not {value!r}."
        ) from None
    return value


def application_name(argv: list[str]) -> str:
    """What PostgreSQL's pg_stat_activity names this process's connections:
    "polaris web", "polaris worker", "polaris beat" or "polaris <command>", so
    that a leak or a long query is traced to its process."""
    program = Path(argv[0]) if argv else Path("python")
    name = program.parent.name if program.name == "__main__.py" else program.stem
    if name == "celery":
        role = next((arg for arg in argv[1:] if arg in ("worker", "beat")), name)
    elif name == "manage":
        role = argv[1] if len(argv) > 1 else "manage.py"
    elif name == "uvicorn":
        role = "web"
    elif name in ("-c", ""):
        role = "python"  # python -c, as test workers and scripts run
    else:
        role = name
    # PostgreSQL keeps the first 63 bytes.
    return f"polaris {role}"[:63]
