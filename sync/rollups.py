"""Reads of the rollup tables of migration 0006, with the bucket arithmetic they need.

Buckets are counted from 2000-01-01 UTC (date_bin's origin in the triggers), so a
quarter hour or an hour here is the same interval PostgreSQL summed into.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.db import connection

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
QUARTER_HOUR = timedelta(minutes=15)
HOUR = timedelta(hours=1)


def on_boundary(moment: datetime, step: timedelta) -> bool:
    return (moment - ORIGIN) % step == timedelta(0)


def next_boundary(moment: datetime, step: timedelta) -> datetime:
    """The first bucket start at or after `moment`."""
    return ORIGIN + -((ORIGIN - moment) // step) * step


@dataclass(frozen=True, slots=True)
class FleetTotals:
    kwh_since: Decimal
    sessions_with_energy_since: int
    sessions_updated_since: int | None
    active: int


def fleet_totals(
    *, energy_after: datetime, energy_until: datetime, updated_from: datetime
) -> FleetTotals:
    """The stat strip's numbers in one round trip.

    kWh of the events read after `energy_after`, up to the quarter hour of
    `energy_until` (a station clock running ahead stamps readings later), and how
    many transactions have events in that window (those whose latest reading is
    later, a few, are looked up in the events): whole quarter hours come from
    energy_by_quarter_hour, only the events of the partial quarter hour
    `energy_after` falls in are read (through the readingAt index that includes
    kwhDelta). Sessions with updatedAt from
    `updated_from` (None when that is not on a quarter hour: the caller counts rows),
    and active sessions, from the session count rollups.
    """
    first_whole = next_boundary(energy_after, QUARTER_HOUR)
    # The end of the quarter hour `energy_until` falls in.
    until = next_boundary(energy_until + timedelta(microseconds=1), QUARTER_HOUR)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT (SELECT COALESCE(SUM(kwh), 0) FROM energy_by_quarter_hour
                     WHERE bucket >= %(whole)s AND bucket < %(until)s)
                 + (SELECT COALESCE(SUM("kwhDelta"), 0) FROM synced_transaction_events
                     WHERE "readingAt" > %(after)s AND "readingAt" < %(whole)s),
                   (SELECT count(*) FROM session_last_readings
                     WHERE "lastReadingAt" > %(after)s AND "lastReadingAt" < %(until)s)
                 + (SELECT count(*) FROM session_last_readings AS later
                     WHERE later."lastReadingAt" >= %(until)s
                       AND EXISTS (SELECT 1 FROM synced_transaction_events AS e
                                    WHERE e."transactionId" = later."transactionId"
                                      AND e."readingAt" > %(after)s
                                      AND e."readingAt" < %(until)s)),
                   (SELECT COALESCE(SUM(sessions), 0)
                      FROM session_counts_by_quarter_hour WHERE bucket >= %(updated)s),
                   (SELECT COALESCE(SUM(sessions), 0) FROM session_counts
                     WHERE NOT "isFinalized")
            """,
            {
                "whole": first_whole,
                "after": energy_after,
                "until": until,
                "updated": updated_from,
            },
        )
        kwh, with_energy, updated, active = cursor.fetchone()
    return FleetTotals(
        kwh_since=Decimal(kwh),
        sessions_with_energy_since=with_energy,
        sessions_updated_since=(
            int(updated) if on_boundary(updated_from, QUARTER_HOUR) else None
        ),
        active=int(active),
    )


def sessions_total(*, states: list[bool]) -> int:
    """Sessions with isFinalized in `states`, from session_counts."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(sessions), 0) FROM session_counts"
            ' WHERE "isFinalized" = ANY(%s)',
            [states],
        )
        return int(cursor.fetchone()[0])


def sessions_updated_between(
    start: datetime | None, end: datetime | None, *, states: list[bool]
) -> int | None:
    """Sessions with updatedAt in [start, end) and isFinalized in `states`, from
    session_counts_by_quarter_hour; None when an end is not on a quarter hour (the
    caller then counts rows)."""
    if any(
        moment is not None and not on_boundary(moment, QUARTER_HOUR)
        for moment in (start, end)
    ):
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(sessions), 0) FROM session_counts_by_quarter_hour"
            ' WHERE "isFinalized" = ANY(%s)'
            " AND bucket >= COALESCE(%s::timestamptz, '-infinity')"
            " AND bucket < COALESCE(%s::timestamptz, 'infinity')",
            [states, start, end],
        )
        return int(cursor.fetchone()[0])


def tag_energy_by_day(
    *, tags: list[str], first_day: date, end_day: date, zone: ZoneInfo
) -> dict[date, Decimal] | None:
    """kWh of these tags per local day in [first_day, end_day), from
    tag_energy_by_hour; None when some local midnight in the range is not on the
    hour in `zone` (a few zones have half-hour offsets), so hourly sums cannot
    split the days there."""
    bounds = _hourly_day_bounds(zone, first_day, end_day)
    if bounds is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (hour AT TIME ZONE %s)::date, SUM(kwh) FROM tag_energy_by_hour"
            ' WHERE "ocppIdTag" = ANY(%s) AND hour >= %s AND hour < %s GROUP BY 1',
            [zone.key, tags, *bounds],
        )
        return dict(cursor.fetchall())


# Every dashboard of the day asks about the same few ranges, and checking a year
# is 366 conversions; the answer depends only on the arguments.
@lru_cache(maxsize=256)
def _hourly_day_bounds(
    zone: ZoneInfo, first_day: date, end_day: date
) -> tuple[datetime, datetime] | None:
    """The first and the last local midnight of the range as UTC instants, or None
    when some local midnight in it is not on a UTC hour."""
    midnights = [
        datetime.combine(first_day + timedelta(days=n), time.min, tzinfo=zone)
        for n in range((end_day - first_day).days + 1)
    ]
    if not all(on_boundary(m.astimezone(UTC), HOUR) for m in midnights):
        return None
    return midnights[0], midnights[-1]
