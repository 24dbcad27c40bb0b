"""The chargers card: the chargers a customer may see, with their states, in one
SQL statement. Split from the dashboard's read model (`portal.selectors`)
because the Chargers API (`sessions_app.api.selectors.chargers`) pages through
the same statement."""

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict, cast

from django.contrib.auth.models import User
from django.db.models import Min

from portal.models import Reservation
from sessions_app.models import ApiSession
from sync.models import CHECK_IN_VALID_FOR, Charger, TransactionSyncState

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

MAX_CHARGERS = 50


class ChargerAnnotations(TypedDict):
    in_use: bool
    # Held: by a reservation, or by a scheduled session waiting to start.
    reserved: bool
    held: bool
    scheduled: bool
    reserved_by_me: bool
    visible_count: int
    available_count: int


type ListedCharger = WithAnnotations[Charger, ChargerAnnotations]


@dataclass(frozen=True, slots=True)
class ChargerList:
    rows: list[ListedCharger]
    available: int
    total: int
    # When a status shown will change with no event to say so: a reservation
    # ends, or a charger's check-in grows too old. The card re-reads itself then.
    next_change_at: datetime | None = None


def charger_status(charger: ListedCharger, now: datetime) -> str:
    """offline (no check-in for over an hour), else in_use, reserved, online."""
    if (
        charger.last_check_in_at is None
        or now - charger.last_check_in_at > CHECK_IN_VALID_FOR
    ):
        return "offline"
    if charger.in_use:
        return "in_use"
    if charger.reserved:
        return "reserved"
    return "online"


# The chargers card as one statement, written in SQL: built with the ORM, its
# subqueries took about 5 ms of Python to build and compile on every dashboard,
# five times what Python spends on this statement now. Each state keeps its
# meaning from the querysets that define it:
# TransactionSyncState.objects.occupying_connector(),
# ApiSession.objects.charging_or_starting() and .waiting_to_start(),
# Reservation.objects.covering() and Charger.objects.visible_to_customer(); a test
# checks this statement against them, state by state.
# What holds a connector is read once, into the three small sets at the top, and
# each charger's states are hashed lookups in them. Between two vacuums the
# index of open sessions also points at the dead versions of every row a sync
# rewrote (a few hours of syncing left 27,000 entries for 300 sessions), and
# each read of it visits their pages: asked per state, as EXISTS tests, it was
# read twice, once for the counts pill and once for the cards, and the card took
# 40 ms.
CHARGER_LIST_SQL = """
WITH occupied AS MATERIALIZED (
    SELECT session."chargerId" AS charger_id
    FROM transaction_sync_state AS session
    WHERE session."chargerId" IS NOT NULL
        AND (
            NOT session."isFinalized" AND NOT session."isSuspectedStuck"
            OR session."stopEventActor" = %(manual_actor)s
            AND session."lastReadingAfterStopAt" >= %(online_since)s
        )
),
api_held AS MATERIALIZED (
    SELECT charge_box_id, connector_id,
        COALESCE(
            status = %(created_status)s
            AND remote_start_sent_at IS NULL
            AND target_start_at > %(now)s,
            false
        ) AS waiting
    FROM api_sessions
    WHERE status = ANY(%(open_statuses)s)
),
held_now AS MATERIALIZED (
    SELECT charger_id, user_id
    FROM reservations
    WHERE status = %(held_status)s AND starts_at <= %(now)s AND ends_at > %(now)s
),
visible AS (
    SELECT charger.*,
        (
            charger.id IN (SELECT charger_id FROM occupied)
            OR (charger.charge_box_id, charger.connector_id) IN (
                SELECT charge_box_id, connector_id FROM api_held WHERE NOT waiting
            )
        ) AS in_use,
        (charger.charge_box_id, charger.connector_id) IN (
            SELECT charge_box_id, connector_id FROM api_held WHERE waiting
        ) AS scheduled,
        charger.id IN (SELECT charger_id FROM held_now) AS held,
        charger.id IN (
            SELECT charger_id FROM held_now WHERE user_id = %(customer)s
        ) AS reserved_by_me
    FROM chargers AS charger
    WHERE %(every_charger)s OR charger.is_public OR charger.id IN (
        SELECT grouped.charger_id
        FROM charger_groups_chargers AS grouped
        JOIN charger_groups_members AS member
            ON member.chargergroup_id = grouped.chargergroup_id
        WHERE member.user_id = %(customer)s
    )
)
-- The counts pill covers every visible charger, not only those shown: window
-- counts are taken before the LIMIT. A charger the customer reserved is
-- available to them: its card offers them Start.
SELECT *,
    count(*) OVER () AS visible_count,
    count(*) FILTER (
        WHERE last_check_in_at >= %(online_since)s AND NOT in_use
            AND (NOT reserved OR reserved_by_me)
    ) OVER () AS available_count
FROM (SELECT *, held OR scheduled AS reserved FROM visible) AS visible
WHERE %(after_name)s::text IS NULL
    OR (name_sort_key, charge_box_id, connector_id)
        > (%(after_name)s, %(after_box)s, %(after_connector)s)
ORDER BY name_sort_key, charge_box_id, connector_id
LIMIT %(limit)s
"""

# Where a charger comes in CHARGER_LIST_SQL's order, Charger's own: its name's
# sort key, chargeBoxId, connector.
type ChargerSortKey = tuple[str, str, int]


def charger_sort_key(charger: Charger) -> ChargerSortKey:
    return (charger.name_sort_key, charger.charge_box_id, charger.connector_id)


def visible_chargers(
    *,
    user: User,
    now: datetime,
    every_charger: bool = False,
    after: ChargerSortKey | None = None,
    limit: int = MAX_CHARGERS,
) -> list[ListedCharger]:
    """The chargers `user` may see (`every_charger`: all of them), in
    charger_sort_key order, the first `limit` after `after`, in one query; each with
    the states charger_status reads. Their visible_count and available_count count
    the chargers after `after`."""
    params = charger_list_params(
        user=user, now=now, every_charger=every_charger, after=after, limit=limit
    )
    return cast(
        "list[ListedCharger]", list(Charger.objects.raw(CHARGER_LIST_SQL, params))
    )


def charger_list_params(
    *,
    user: User,
    now: datetime,
    every_charger: bool = False,
    after: ChargerSortKey | None = None,
    limit: int = MAX_CHARGERS,
) -> dict[str, object]:
    """CHARGER_LIST_SQL's parameters."""
    after_name, after_box, after_connector = after or (None, None, None)
    return {
        "customer": user.pk,
        "every_charger": every_charger,
        "now": now,
        "online_since": now - CHECK_IN_VALID_FOR,
        "manual_actor": TransactionSyncState.StopEventActor.MANUAL,
        "open_statuses": list(ApiSession.OPEN_STATUSES),
        "created_status": ApiSession.Status.CREATED,
        "held_status": Reservation.Status.ACTIVE,
        "after_name": after_name,
        "after_box": after_box,
        "after_connector": after_connector,
        "limit": limit,
    }


def charger_list(*, customer: User, now: datetime) -> ChargerList:
    """Up to 50 visible chargers with `status` and `reserved_by_me`, and the counts
    pill: available now (online, or reserved by the customer) of all visible
    chargers.

    A charger is in use while a session is charging on it (a suspected-stuck one
    does not count, a manual stop whose station charges on does; the sync links
    every session to the charger of its connector),
    or while a portal or API session holds it: a session started from the portal
    or the API takes the connector from its remote start until it ends, a sync or
    two apart from the transaction's own start and stop, and a Start offered
    meanwhile would be refused. A session scheduled to start later holds its
    connector too, but nobody charges there yet: like a reservation, it makes the
    charger `reserved` (`scheduled` says which).
    """
    rows = visible_chargers(user=customer, now=now)
    for charger in rows:
        charger.status = charger_status(charger, now)  # type: ignore[attr-defined]
    if not rows:
        return ChargerList(rows=[], available=0, total=0)
    first = rows[0]
    return ChargerList(
        rows=rows,
        available=first.available_count,
        total=first.visible_count,
        next_change_at=_next_status_change(rows, now),
    )


def _next_status_change(rows: list[ListedCharger], now: datetime) -> datetime | None:
    """The earliest moment a shown status changes by the clock alone: the end of
    a reservation holding a shown charger, or an online charger going offline.
    The rest (a charge starting or stopping) comes with a live event."""
    changes = [
        charger.last_check_in_at + CHECK_IN_VALID_FOR
        for charger in rows
        if charger.last_check_in_at is not None and charger.status != "offline"  # type: ignore[attr-defined]
    ]
    held = [charger.pk for charger in rows if charger.held]
    if held:
        reservation_end = (
            Reservation.objects.covering(now)
            .filter(charger_id__in=held)
            .aggregate(Min("ends_at"))["ends_at__min"]
        )
        if reservation_end is not None:
            changes.append(reservation_end)
    return min(changes, default=None)


def own_charges(
    *, customer: User, tags: list[str], rows: list[ListedCharger], now: datetime
) -> set[int]:
    """Which of the shown chargers in use are in use by `customer`: a session of
    one of their cards charging there, or their own portal or API session holding
    the connector. Their card then speaks of the customer's charge, not a
    stranger's."""
    in_use = [charger for charger in rows if charger.in_use]
    if not in_use:
        return set()
    charging = set(
        TransactionSyncState.objects.occupying_connector(now)
        .filter(ocpp_id_tag__in=tags, charger__in=in_use)
        .values_list("charger_id", flat=True)
    )
    held = set(
        ApiSession.objects.charging_or_starting(now)
        .filter(user=customer)
        .values_list("charge_box_id", "connector_id")
    )
    return {
        charger.pk
        for charger in in_use
        if charger.pk in charging
        or (charger.charge_box_id, charger.connector_id) in held
    }
