"""The customer's cards and sessions: what is charging or starting now, the
latest sessions and the next reservation. Split from the dashboard's read model
(`portal.selectors`) because the live banner (`portal.live`) and the portal's
services read these on their own."""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist

from portal.models import Reservation
from sessions_app.api.selectors.sessions import api_session_cost, api_session_metered
from sessions_app.models import ApiSession, Rate
from sessions_app.pricing import Cost, session_cost
from sync.models import (
    Charger,
    LatestReads,
    SyncRun,
    TransactionSyncState,
    UserMapping,
    stale_after,
    stale_before,
)

if TYPE_CHECKING:
    from django.db.models import QuerySet

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
    # The energy and cost the Sessions API gives for the same session (see
    # active_sessions_by_customer).
    kwh: Decimal
    cost: Cost | None
    api_session_id: int | None
    # Its Stop was sent; the charge goes on until the station and then the sync
    # say it ended.
    stopping: bool = False
    # Started from the portal or the API by the card's owner before staff moved
    # the card here: that account holds its Stop.
    started_by_another: bool = False

    @property
    def past_manual_stop(self) -> bool:
        """Stopped by hand in SteVe while the station charges on: the sync counts
        its energy only once the station's own stop arrives."""
        return self.session.is_finalized


def active_sessions(
    *, customer: User, tags: list[str], now: datetime
) -> list[ActiveSession]:
    """The customer's sessions charging now (not finalized, not suspected stuck,
    or stopped by hand in SteVe while the station charges on: as the charger
    cards count them), newest first, with the energy and estimated cost so far
    (no cost past a manual stop, nor without a rate) and the portal/API session
    to stop.

    A session started from the portal or the API shows what its session object
    says: the energy of its latest reading, priced at the rate it was sold at.
    One started with a card at the station has no session object: its energy is
    the sync's, priced to now at its charger's rate."""
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
        TransactionSyncState.objects.occupying_connector(now)
        .filter(ocpp_id_tag__in=list(customer_of))
        .select_related("charger__rate_assignment__rate")
        .order_by("-started_at")
    )
    if not sessions:
        return result
    started_from_api = {
        api_session.transaction_id: api_session
        for api_session in ApiSession.objects.filter(
            transaction__in=sessions, status=ApiSession.Status.STARTED
        ).only(*ACTIVE_API_SESSION_FIELDS)
    }
    # An API session to stop is the customer's own.
    of_session = {
        session.pk: api_session
        for session in sessions
        if (api_session := started_from_api.get(session.pk)) is not None
        and api_session.user_id == customer_of[session.ocpp_id_tag]
    }
    assigned = {session.pk: _assigned_rate(session) for session in sessions}
    default_rate = None
    if any(
        assigned[session.pk] is None
        for session in sessions
        if session.pk not in of_session
    ):
        default_rate = Rate.objects.filter(is_default=True).first()
    for session in sessions:
        api_session = of_session.get(session.pk)
        kwh, cost = Decimal(session.kwh_delivered), None
        # Past a manual stop (finalized) the banner says the energy counted up to
        # it, and that the cost follows the station's own stop.
        if api_session is not None and not session.is_finalized:
            api_session.transaction = session
            kwh = api_session_metered(api_session).kwh
            cost = api_session_cost(api_session)
        elif not session.is_finalized:
            rate = assigned[session.pk] or default_rate
            if rate is not None:
                cost = session_cost(
                    rate=rate, kwh=kwh, started_at=session.started_at, ended_at=now
                )
        result[customer_of[session.ocpp_id_tag]].append(
            ActiveSession(
                session,
                kwh=kwh,
                cost=cost,
                api_session_id=api_session.pk if api_session else None,
                stopping=bool(api_session and api_session.stop_requested_at),
                started_by_another=api_session is None
                and session.pk in started_from_api,
            )
        )
    return result


# What api_session_metered and api_session_cost read of a started session, and
# what the banner's Stop needs.
ACTIVE_API_SESSION_FIELDS = (
    "user_id",
    "transaction_id",
    "status",
    "stop_requested_at",
    "ended_at",
    "rate_terms",
    "energy_report",
)


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
    def failed_because(self) -> str:
        """Why a failed Start failed, unless it failed the usual way, which the
        banner explains itself: no charge within the start timeout. A start the
        station refused, or one not sent (its card or account deactivated
        meanwhile), ends well within it, and the session's message says why."""
        session = self.api_session
        if session.ended_at is None or session.remote_start_sent_at is None:
            return ""
        timeout = timedelta(seconds=settings.API_SESSION_START_TIMEOUT_SECONDS)
        if session.ended_at - session.remote_start_sent_at >= timeout:
            return ""
        return session.status_message

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


@dataclass(frozen=True, slots=True)
class SyncCheck:
    """Whether a customer's charging figures are behind: no transactions run has
    read them for longer than the sync's rhythm explains (`stale_before`), though
    runs were tried; and when one last did (None: never)."""

    is_delayed: bool
    last_synced_at: datetime | None = None

    @property
    def recheck_seconds(self) -> int:
        """When a banner that no sync refreshed reads itself again: by then a run
        has succeeded, or the figures are delayed."""
        return int(stale_after().total_seconds())


def sync_check(
    *, active: list[ActiveSession], reads: LatestReads, now: datetime
) -> SyncCheck:
    """The SyncCheck of a customer charging `active`, from the runs' LatestReads:
    a partial run read their figures unless it names one of their charges."""
    read_at = [reads.last_read_at(a.session.steve_transaction_id) for a in active]
    known = [at for at in read_at if at is not None]
    if known and len(known) == len(read_at):
        last = min(known)
        if last >= stale_before(now):
            return SyncCheck(is_delayed=False)
        return SyncCheck(is_delayed=True, last_synced_at=last)
    # Before the first run there is nothing to be behind.
    tried = SyncRun.objects.finished_of(SyncRun.Kind.TRANSACTIONS).exists()
    return SyncCheck(is_delayed=tried)


def own_scheduled_start(
    *, customer: User, charger: Charger, now: datetime
) -> datetime | None:
    """When the customer's own session scheduled on `charger` (with the Sessions
    API's energy_start_time) starts; None when none waits there."""
    return (
        ApiSession.objects.waiting_to_start(now)
        .filter(user=customer)
        .at_connector(charger.charge_box_id, charger.connector_id)
        .values_list("target_start_at", flat=True)
        .first()
    )


def own_start_at(*, customer: User, charger: Charger, now: datetime) -> bool:
    """Whether the customer's own portal or API session is charging or starting
    on `charger` (a Start sent twice finds the first one there)."""
    return (
        ApiSession.objects.charging_or_starting(now)
        .filter(user=customer)
        .at_connector(charger.charge_box_id, charger.connector_id)
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
        # Charging on past a stop made by hand in SteVe: still charging, as the
        # banner and the charger card say.
        charging_on = session.is_charging_past_manual_stop(now)
        session.charging_on = charging_on  # type: ignore[attr-defined]
        stopped_at = None if charging_on else session.stopped_at
        end = stopped_at or (None if session.is_suspected_stuck else now)
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
