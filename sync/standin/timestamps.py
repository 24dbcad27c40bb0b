"""Timestamps the way SteVe writes and reads them (CONTRACT §3).

SteVe runs its JVM, Joda and database session in UTC. Jackson writes every Joda
``DateTime`` as ``2024-08-25T14:30:00.000Z`` and query parameters go through Joda's
``ISODateTimeFormat.dateTimeParser()``. Both directions live here so the API layer,
the control API and the simulation agree on one format.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

# The extended ISO subset Joda's dateTimeParser() accepts for calendar dates:
# a date, optionally followed by "T", a time of day and an offset. Joda rejects a
# space instead of "T" (SteVe's TransactionRestControllerTest.test9).
_JODA_DATE_TIME = re.compile(
    r"""
    (?P<year>\d{4})
    (?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?
    (?:T
        (?:(?P<hour>\d{2})
            (?::(?P<minute>\d{2})
                (?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?
            )?
        )?
        (?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?
    )?
    """,
    re.VERBOSE,
)


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """Render ``moment`` as jackson-datatype-joda does for SteVe.

    Always UTC, always ``Z`` and always exactly three millisecond digits: the
    database keeps microseconds but JSON output is cut to milliseconds.
    """
    # isoformat truncates to milliseconds, as Joda does, and is much faster
    # than strftime (detail responses format thousands of these).
    iso = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return iso.removesuffix("+00:00") + "Z"


def parse_timestamp(text: str) -> datetime:
    """Parse ``text`` like SteVe's ``DateTimeEditor.forApi()`` and return it in UTC.

    Accepts ``2024-08-25``, ``2024-08-25T14:30``, ``2024-08-25T14:30:00.000Z`` and
    ``...+02:00``; a missing zone means UTC (SteVe's JVM default). Joda keeps
    milliseconds only, so finer fractions are truncated.

    Raises:
        ValueError: ``text`` is not in that format or names an impossible date.
    """
    match = _JODA_DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"Invalid format: {text!r}")
    part = match.groupdict()
    millis = int((part["fraction"] or "0")[:3].ljust(3, "0"))
    moment = datetime(
        int(part["year"]),
        int(part["month"] or 1),
        int(part["day"] or 1),
        int(part["hour"] or 0),
        int(part["minute"] or 0),
        int(part["second"] or 0),
        millis * 1000,
        tzinfo=_zone(part["offset"]),
    )
    return moment.astimezone(UTC)


def _zone(offset: str | None) -> timezone:
    """Turn ``Z``, ``+02``, ``+0200`` or ``+02:00`` into a fixed-offset zone."""
    if offset is None or offset == "Z":
        return UTC
    sign = -1 if offset.startswith("-") else 1
    digits = offset[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return timezone(sign * delta)
