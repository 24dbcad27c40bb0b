"""Read models of the portal pages, always scoped to one customer."""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, TypedDict, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Min, Sum
from django.db.models.functions import TruncDate

from portal.billing import BillingAccount, billing_account
from portal.charts import DailyChart, daily_chart
from portal.models import Reservation
from sessions_app.models import ApiSession, Rate
from sessions_app.pricing import Cost, session_cost
from sync import rollups
from sync.models import (
    CHECK_IN_VALID_FOR,
    Charger,
    SyncedTransactionEvent,
    TransactionSyncState,
    UserMapping,
)

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django_stubs_ext import WithAnnotations

# The billing periods a customer can pick on the dashboard, in the order of its
# chips, with their labels.
PERIOD_LABELS = {
    "current": "Current period",
    "previous": "Previous period",
    "year": "This year",
}
MAX_CHARGERS = 50
RECENT_SESSIONS = 5


@dataclass(frozen=True, slots=True)
class ChargingCards:
    """The customer's idTags: every one ever mapped (deactivated cards keep their
    history, so they count for reading), and whether one is active, which
    starting and reserving a charger need."""

    tags: list[str]
    any_active: bool


def charging_cards(*, customer: User) -> ChargingCards:
    """The customer's ChargingCards, read in one query."""
    rows = list(
        UserMapping.objects.filter(user=customer).values_list(
            "steve_ocpp_id_tag", "is_active"
        )
    )
    return ChargingCards(
        tags=[tag for tag, _ in rows], any_active=any(active for _, active in rows)
    )


def customer_tags(*, customer: User) -> list[str]:
    """Every idTag ever mapped to the customer (see ChargingCards)."""
    return charging_cards(customer=customer).tags


def tags_by_customer(*, mappings: "QuerySet[UserMapping]") -> dict[int, list[str]]:
    """`customer_tags` of the customers of `mappings`, by user id, in one query."""
    tags: dict[int, list[str]] = {}
    customers = mappings.values("user_id")
    for user_id, tag in UserMapping.objects.filter(user__in=customers).values_list(
        "user_id", "steve_ocpp_id_tag"
    ):
        tags.setdefault(user_id, []).append(tag)
    return tags


@dataclass(frozen=True, slots=True)
class ActiveSession:
    session: TransactionSyncState
    cost: Cost | None
    api_session_id: int | None


def active_sessions(
    *, customer: User, tags: list[str], now: datetime
) -> list[ActiveSession]:
    """The customer's sessions charging now (not finalized, not suspected stuck),
    newest first, with the estimated cost so far when a rate applies and the
    portal/API session to stop."""
    return active_sessions_by_customer(tags_by_customer={customer.pk: tags}, now=now)[
        customer.pk
    ]


def active_sessions_by_customer(
    *, tags_by_customer: Mapping[int, list[str]], now: datetime
) -> dict[int, list[ActiveSession]]:
    """`active_sessions` of many customers (by user id, with their tags) in the same
    few queries as one: the sync refreshes the banner of every customer whose
    session it changed."""
    customer_of = {
        tag: customer for customer, tags in tags_by_customer.items() for tag in tags
    }
    result: dict[int, list[ActiveSession]] = {pk: [] for pk in tags_by_customer}
    sessions = list(
        TransactionSyncState.objects.charging()
        .filter(ocpp_id_tag__in=list(customer_of))
        .select_related("charger__rate_assignment__rate")
        .order_by("-started_at")
    )
    if not sessions:
        return result
    assigned = [_assigned_rate(session) for session in sessions]
    default_rate = None
    if any(rate is None for rate in assigned):
        default_rate = Rate.objects.filter(is_default=True).first()
    # An API session to stop is the customer's own.
    api_sessions = {
        (transaction_id, user_id): pk
        for transaction_id, user_id, pk in ApiSession.objects.filter(
            user__in=list(tags_by_customer),
            transaction__in=sessions,
            status=ApiSession.Status.STARTED,
        ).values_list("transaction_id", "user_id", "pk")
    }
    for session, rate in zip(sessions, assigned, strict=True):
        customer = customer_of[session.ocpp_id_tag]
        rate = rate or default_rate
        cost = None
        if rate is not None:
            cost = session_cost(
                rate=rate,
                kwh=session.kwh_delivered,
                started_at=session.started_at,
                ended_at=now,
            )
        result[customer].append(
            ActiveSession(session, cost, api_sessions.get((session.pk, customer)))
        )
    return result


# How long the banner reports a Start the station did not take.
FAILED_START_SHOWN_FOR = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class StartNotice:
    """A Start the banner reports before charging shows, or instead of it:
    `state` is "scheduled" (waiting for `starts_at`), "starting" (sent, no charge
    seen yet), "stopping" (sent, then stopped before a charge was seen) or
    "failed" (cancelled: the station did not take it)."""

    api_session: ApiSession
    charger_name: str
    state: str
    starts_at: datetime | None = None

    @property
    def shown_until(self) -> datetime | None:
        """When a failed Start's notice leaves the banner."""
        ended_at = self.api_session.ended_at
        return ended_at + FAILED_START_SHOWN_FOR if ended_at else None

    @property
    def start_timeout(self) -> str:
        """How long a sent Start may take to begin charging, in words."""
        timeout = settings.API_SESSION_START_TIMEOUT_SECONDS
        minutes, seconds = divmod(timeout, 60)
        if seconds or not minutes:
            return f"{timeout} seconds"
        return "1 minute" if minutes == 1 else f"{minutes} minutes"


def start_notices(*, customer: User, now: datetime) -> list[StartNotice]:
    """The customer's Starts not charging yet, and the one that recently failed."""
    return start_notices_by_customer(customer_ids=[customer.pk], now=now)[customer.pk]


def start_notices_by_customer(
    *, customer_ids: list[int], now: datetime
) -> dict[int, list[StartNotice]]:
    """`start_notices` of many customers, by user id, in two queries at most."""
    result: dict[int, list[StartNotice]] = {pk: [] for pk in customer_ids}
    sessions = ApiSession.objects.filter(user__in=customer_ids)
    waiting = list(
        (
            sessions.filter(status=ApiSession.Status.CREATED)
            | sessions.start_not_taken_since(now - FAILED_START_SHOWN_FOR)
        ).order_by("created_at", "pk")
    )
    if not waiting:
        return result
    names = {
        (charge_box_id, connector_id): name
        for charge_box_id, connector_id, name in Charger.objects.filter(
            charge_box_id__in={session.charge_box_id for session in waiting}
        ).values_list("charge_box_id", "connector_id", "friendly_name")
    }
    for session in waiting:
        name = names.get((session.charge_box_id, session.connector_id))
        notice = StartNotice(
            api_session=session,
            charger_name=f"{name or session.charge_box_id} #{session.connector_id}",
            state="starting",
        )
        if session.status == ApiSession.Status.CANCELLED:
            notice = replace(notice, state="failed")
        elif session.stop_requested_at is not None:
            notice = replace(notice, state="stopping")
        elif session.remote_start_sent_at is None and session.target_start_at:
            notice = replace(
                notice, state="scheduled", starts_at=session.target_start_at
            )
        result[session.user_id].append(notice)
    return result


def own_start_at(*, customer: User, charger: Charger, now: datetime) -> bool:
    """Whether the customer's own portal or API session is charging or starting
    on `charger` (a Start sent twice finds the first one there)."""
    return (
        ApiSession.objects.charging_or_starting(now)
        .filter(
            user=customer,
            charge_box_id=charger.charge_box_id,
            connector_id=charger.connector_id,
        )
        .exists()
    )


def _assigned_rate(session: TransactionSyncState) -> Rate | None:
    """The rate of the session's charger, as Rate.objects.for_charger finds it,
    from the rows select_related already loaded."""
    try:
        return session.charger.rate_assignment.rate if session.charger else None
    except ObjectDoesNotExist:
        return None


def recent_sessions(*, tags: list[str], now: datetime) -> list[TransactionSyncState]:
    """The last five sessions of these tags by start, each with `duration`
    (to now while still running; None for a session suspected stuck, whose end
    the station never reported) and `settled` (`is_settled`)."""
    newest_first = ("-started_at", "-steve_transaction_id")
    # The newest few of each tag, from the (tag, startedAt) index, then the newest
    # of those: a heavy customer's thousands of sessions are never sorted.
    per_tag = [
        TransactionSyncState.objects.filter(ocpp_id_tag=tag)
        .order_by(*newest_first)
        .values("pk")[:RECENT_SESSIONS]
        for tag in tags
    ]
    if not per_tag:
        return []
    candidates = per_tag[0].union(*per_tag[1:], all=True)
    sessions = list(
        TransactionSyncState.objects.filter(pk__in=candidates)
        .select_related("charger")
        .order_by(*newest_first)[:RECENT_SESSIONS]
    )
    for session in sessions:
        session.settled = session.is_settled(now)  # type: ignore[attr-defined]
        end = session.stopped_at or (None if session.is_suspected_stuck else now)
        session.duration = (  # type: ignore[attr-defined]
            None if end is None else max(end - session.started_at, timedelta(0))
        )
    return sessions


def next_reservation(*, customer: User, now: datetime) -> Reservation | None:
    """The customer's next active reservation that has not ended."""
    return (
        Reservation.objects.for_user(customer)
        .not_ended(now)
        .select_related("charger")
        .order_by("starts_at", "id")
        .first()
    )


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    start: date
    end: date  # exclusive

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def label(self) -> str:
        return PERIOD_LABELS[self.name]


DEFAULT_PERIOD = "current"


def parse_period(value: str | None) -> str:
    """One of PERIOD_LABELS; anything else falls back to DEFAULT_PERIOD."""
    return value if value in PERIOD_LABELS else DEFAULT_PERIOD


def period_note(value: str | None) -> str | None:
    """What to tell a customer whose `?period=` was not understood, or None."""
    if not value or value in PERIOD_LABELS:
        return None
    *others, last = PERIOD_LABELS
    return (
        f"“{value[:40]}” is not a period ({', '.join(others)} or {last}); "
        "showing the current billing period."
    )


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


def billing_period(*, name: str, anchor_day: int, today: date) -> Period:
    """The period `name` around `today`: billing periods start on `anchor_day`
    (1-28, so every month has it); `year` is the calendar year."""
    if name == "year":
        return Period(name, date(today.year, 1, 1), date(today.year + 1, 1, 1))
    start = today.replace(day=anchor_day)
    if today.day < anchor_day:
        start = _add_months(start, -1)
    if name == "previous":
        start = _add_months(start, -1)
    return Period(name, start, _add_months(start, 1))


@dataclass(frozen=True, slots=True)
class Usage:
    period: Period
    total_kwh: Decimal
    chart: DailyChart


def energy_by_day(
    *, tags: list[str], first_day: date, end_day: date, zone: ZoneInfo
) -> dict[date, Decimal]:
    """kWh of these tags per day in `zone`, from `first_day` up to `end_day`,
    bucketed by the day of each meter reading, so a session across midnight counts
    on both days."""
    by_day = rollups.tag_energy_by_day(
        tags=tags, first_day=first_day, end_day=end_day, zone=zone
    )
    if by_day is None:
        by_day = _energy_by_day_from_events(
            tags=tags, first_day=first_day, end_day=end_day, zone=zone
        )
    return by_day


def _usage(period: Period, by_day: dict[date, Decimal]) -> Usage:
    total = sum(
        (kwh for day, kwh in by_day.items() if period.start <= day < period.end),
        Decimal(0),
    )
    chart = daily_chart(first_day=period.start, end_day=period.end, kwh_by_day=by_day)
    return Usage(period=period, total_kwh=total, chart=chart)


def _energy_by_day_from_events(
    *, tags: list[str], first_day: date, end_day: date, zone: ZoneInfo
) -> dict[date, Decimal]:
    start = datetime.combine(first_day, time.min, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(end_day, time.min, tzinfo=zone).astimezone(UTC)
    rows = (
        SyncedTransactionEvent.objects.filter(
            ocpp_id_tag__in=tags, reading_at__gte=start, reading_at__lt=end
        )
        .annotate(day=TruncDate("reading_at", tzinfo=zone))
        .values_list("day")
        .annotate(kwh=Sum("kwh_delta"))
        .order_by()
    )
    return dict(rows)


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
# EXISTS subqueries (three of them again inside the counts pill's window filter)
# took about 5 ms of Python to build and compile on every dashboard, five times
# what Python spends on this statement now, and the year dashboard was at its
# 50 ms target. Each state keeps its meaning from the querysets that define it:
# TransactionSyncState.objects.occupying_connector(),
# ApiSession.objects.charging_or_starting() and .waiting_to_start(),
# Reservation.objects.covering() and Charger.objects.visible_to_customer(); a test
# checks this statement against them, state by state. Held and held-by-me stay
# two EXISTS: Postgres hashes each once, while one aggregate per charger (LATERAL)
# took half as long again.
CHARGER_LIST_SQL = """
WITH visible AS (
    SELECT charger.*,
        (
            EXISTS (
                SELECT FROM transaction_sync_state AS session
                WHERE session."chargerId" = charger.id
                    AND (
                        NOT session."isFinalized" AND NOT session."isSuspectedStuck"
                        OR session."stopEventActor" = %(manual_actor)s
                        AND session."lastReadingAfterStopAt" >= %(online_since)s
                    )
            )
            OR EXISTS (
                SELECT FROM api_sessions AS api_session
                WHERE api_session.status = ANY(%(open_statuses)s)
                    AND api_session.charge_box_id = charger.charge_box_id
                    AND api_session.connector_id = charger.connector_id
                    AND NOT (
                        api_session.status = %(created_status)s
                        AND api_session.remote_start_sent_at IS NULL
                        AND COALESCE(api_session.target_start_at > %(now)s, false)
                    )
            )
        ) AS in_use,
        EXISTS (
            SELECT FROM api_sessions AS api_session
            WHERE api_session.status = %(created_status)s
                AND api_session.remote_start_sent_at IS NULL
                AND api_session.target_start_at > %(now)s
                AND api_session.charge_box_id = charger.charge_box_id
                AND api_session.connector_id = charger.connector_id
        ) AS scheduled,
        EXISTS (
            SELECT FROM reservations AS held
            WHERE held.charger_id = charger.id AND held.status = %(held_status)s
                AND held.starts_at <= %(now)s AND held.ends_at > %(now)s
        ) AS held,
        EXISTS (
            SELECT FROM reservations AS held
            WHERE held.charger_id = charger.id AND held.status = %(held_status)s
                AND held.starts_at <= %(now)s AND held.ends_at > %(now)s
                AND held.user_id = %(customer)s
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
-- counts are taken before the LIMIT.
SELECT *,
    count(*) OVER () AS visible_count,
    count(*) FILTER (
        WHERE last_check_in_at >= %(online_since)s AND NOT in_use AND NOT reserved
    ) OVER () AS available_count
FROM (SELECT *, held OR scheduled AS reserved FROM visible) AS visible
WHERE %(after_name)s::text IS NULL
    OR (friendly_name, charge_box_id, connector_id)
        > (%(after_name)s, %(after_box)s, %(after_connector)s)
ORDER BY friendly_name, charge_box_id, connector_id
LIMIT %(limit)s
"""

# Where a charger comes in CHARGER_LIST_SQL's order: friendly name, chargeBoxId,
# connector.
type ChargerSortKey = tuple[str, str, int]


def charger_sort_key(charger: Charger) -> ChargerSortKey:
    return (charger.friendly_name, charger.charge_box_id, charger.connector_id)


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
    after_name, after_box, after_connector = after or (None, None, None)
    params = {
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
    return cast(
        "list[ListedCharger]", list(Charger.objects.raw(CHARGER_LIST_SQL, params))
    )


def charger_list(*, customer: User, now: datetime) -> ChargerList:
    """Up to 50 visible chargers with `status` and `reserved_by_me`, and the counts
    pill: available now (online) of all visible chargers.

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


@dataclass(frozen=True, slots=True)
class PlanUse:
    """The plan card's energy of the current billing period against the plan's
    included amount, in the tenths of a kWh the card shows, so that what it says
    adds up: `used` is `left` short of `included`, or `over` beyond it."""

    used_kwh: Decimal
    included_kwh: Decimal
    left_kwh: Decimal
    over_kwh: Decimal
    percent: int  # of the included amount used, 0 to 100: the bar never overflows


def plan_use(*, used_kwh: Decimal, included_kwh: Decimal) -> PlanUse:
    """`used_kwh` against a positive `included_kwh`, both rounded to 0.1 kWh."""
    tenth = Decimal("0.1")
    used = used_kwh.quantize(tenth)
    included = included_kwh.quantize(tenth)
    percent = min(100, max(0, round(used / included * 100)))
    if used < included and percent == 100:
        percent = 99  # a full bar would say none is left
    return PlanUse(
        used_kwh=used,
        included_kwh=included,
        left_kwh=max(included - used, Decimal("0.0")),
        over_kwh=max(used - included, Decimal("0.0")),
        percent=percent,
    )


@dataclass(frozen=True, slots=True)
class UsageCards:
    """The usage card of the chosen period and the plan card (None when billing
    has no plan for the customer or failed)."""

    usage: Usage
    account: "BillingAccount | None"
    plan_used_kwh: Decimal

    @property
    def plan(self) -> PlanUse | None:
        """The current period's use of the plan's included energy; None without
        a plan or without included energy."""
        if self.account is None or not self.account.included_kwh:
            return None
        return plan_use(
            used_kwh=self.plan_used_kwh, included_kwh=self.account.included_kwh
        )


def usage_cards(
    *,
    customer: User,
    tags: list[str],
    zone: ZoneInfo,
    period_name: str,
    now: datetime,
) -> UsageCards:
    """Billing periods follow the plan's anchor day (calendar months without a
    plan, or when billing is down); the plan card counts the current period."""
    account = billing_account(user=customer).account
    anchor_day = account.anchor_day if account else 1
    today = now.astimezone(zone).date()
    period = billing_period(name=period_name, anchor_day=anchor_day, today=today)
    current = billing_period(name="current", anchor_day=anchor_day, today=today)
    # One read covers the chosen period and, for the plan card, the current one.
    by_day = energy_by_day(
        tags=tags,
        first_day=min(period.start, current.start),
        end_day=max(period.end, current.end),
        zone=zone,
    )
    chosen = _usage(period, by_day)
    plan_used = sum(
        (kwh for day, kwh in by_day.items() if current.start <= day < current.end),
        Decimal(0),
    )
    return UsageCards(usage=chosen, account=account, plan_used_kwh=plan_used)


@dataclass(frozen=True)
class Dashboard:
    """The customer dashboard's read model. Each part reads only what it shows,
    so a part's own htmx request (a live update, a period chip) costs that part
    alone; the whole page is every part."""

    customer: User
    zone: ZoneInfo
    can_start: bool
    period: str | None
    now: datetime

    @cached_property
    def charging_cards(self) -> ChargingCards:
        return charging_cards(customer=self.customer)

    def recent_activity(self) -> dict[str, object]:
        tags = self.charging_cards.tags
        return {"tags": tags, "recent": recent_sessions(tags=tags, now=self.now)}

    def active_banner(self) -> dict[str, object]:
        customer, now = self.customer, self.now
        return {
            "active": active_sessions(
                customer=customer, tags=self.charging_cards.tags, now=now
            ),
            "start_notices": start_notices(customer=customer, now=now),
        }

    def chargers(self) -> dict[str, object]:
        return {
            "can_charge": self.charging_cards.any_active and self.can_start,
            "chargers": charger_list(customer=self.customer, now=self.now),
        }

    def next_reservation(self) -> dict[str, object]:
        return {"reservation": next_reservation(customer=self.customer, now=self.now)}

    def usage(self) -> dict[str, object]:
        cards = usage_cards(
            customer=self.customer,
            tags=self.charging_cards.tags,
            zone=self.zone,
            now=self.now,
            period_name=parse_period(self.period),
        )
        return {
            "cards": cards,
            "period_note": period_note(self.period),
            "period_labels": PERIOD_LABELS,
        }

    def whole_page(self) -> dict[str, object]:
        return {
            **self.usage(),
            **self.chargers(),
            **self.active_banner(),
            **self.recent_activity(),
            **self.next_reservation(),
        }
