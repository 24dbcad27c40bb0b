"""Reads of the Sessions API: who may see which session, lists, the session object,
and the chargers a session can be started on.

`api_session_document` builds the session object with the seed's field names
(`_id`, `chargestation`, `metrics.energyConsumed`, …); the API's schemas only check
and serialise it.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.http import Http404
from django.utils import timezone

from portal.selectors import (
    ChargerSortKey,
    ListedCharger,
    charger_sort_key,
    charger_status,
    visible_chargers,
)
from sessions_app.models import ApiSession, ApiSessionQuerySet, Rate
from sessions_app.pricing import Cost, RateTerms, session_cost
from sync.client import in_base_unit
from sync.models import SyncRun, TransactionSyncState

PAGE_SIZE_MAX = 100
# A station whose clock follows SteVe's (BootNotification and Heartbeat answers
# carry its time) is off from ours by seconds. The margin lets a transaction stamped
# just before our remote start still be the one it started, without reaching back
# to a charge the driver made just before asking. Stations whose clocks are off by
# more are matched by SteVe's insert order (`api_session_matching_transaction`).
CLOCK_SKEW = timedelta(seconds=10)
# How far behind a station's clock may stamp the charge a remote start began and
# still have it matched by SteVe's insert order: minutes, not the hours back of a
# station uploading an old charge once it is online again.
CLOCK_BEHIND_AT_MOST = timedelta(minutes=15)
# Ids are bigint; longer digit strings cannot name a row (and would overflow SQL).
_SESSION_ID = re.compile(r"[0-9]{1,18}")
_WH_PER_KWH = Decimal(1000)


class InvalidCursor(ValueError):
    """The `cursor` query parameter was not made by `api_session_list` (or
    `api_charger_list`)."""


@dataclass(frozen=True, slots=True)
class SessionFilters:
    """The list's filters; None means "any"."""

    status: str | None = None
    chargestation: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of sessions, newest first, and the cursor of the next page."""

    items: list[ApiSession]
    next_cursor: str | None


def _base_queryset() -> ApiSessionQuerySet:
    return ApiSession.objects.select_related("transaction")


def api_session_owner(*, actor: User, user_ref: str | None) -> User:
    """The user a new session is for: `actor`, or for staff the user `user_ref`
    (an id, or a username).

    Raises Http404 when the user does not exist or is inactive, and when a customer
    names anyone but themselves (404, so other users' ids are not revealed).
    """
    if user_ref is None or user_ref in (str(actor.pk), actor.get_username()):
        return actor
    if not getattr(actor, "is_staff", False):
        raise Http404("No such user.")
    users = get_user_model().objects.filter(is_active=True)
    if _SESSION_ID.fullmatch(user_ref):
        users = users.filter(pk=int(user_ref))
    else:
        users = users.filter(username=user_ref)
    owner = users.first()
    if owner is None:
        raise Http404("No such user.")
    return owner


def api_session_get_for_user(*, user: User, session_id: str) -> ApiSession:
    """The session `session_id` if `user` may see it (staff: any; customers: their
    own). Raises Http404 otherwise, so other customers' ids are not revealed."""
    if not _SESSION_ID.fullmatch(session_id):
        raise Http404("No such session.")
    session = _base_queryset().visible_to(user).filter(pk=int(session_id)).first()
    if session is None:
        raise Http404("No such session.")
    return session


def api_session_list(
    *,
    user: User,
    filters: SessionFilters,
    cursor: str | None = None,
    limit: int = 20,
) -> SessionPage:
    """The sessions `user` may see matching `filters`, newest first, `limit` at a time.

    Keyset pagination on (createdAt, id): pages stay stable while new sessions
    arrive. Raises InvalidCursor for a cursor this function did not make.
    """
    queryset = (
        _base_queryset()
        .visible_to(user)
        .with_status(filters.status)
        .at_chargestation(filters.chargestation)
        .created_between(filters.created_from, filters.created_to)
        .newest_first()
    )
    if cursor:
        queryset = queryset.after_cursor(*_decode_cursor(cursor))
    limit = max(1, min(limit, PAGE_SIZE_MAX))
    rows = list(queryset[: limit + 1])
    items = rows[:limit]
    has_more = len(rows) > limit
    return SessionPage(
        items=items, next_cursor=_encode_cursor(items[-1]) if has_more else None
    )


def _encode_cursor(session: ApiSession) -> str:
    text = f"{session.created_at.isoformat()}|{session.pk}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        stamp, pk = text.split("|")
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None or not _SESSION_ID.fullmatch(pk):
            raise ValueError(text)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidCursor(
            "The cursor is not valid; start again without it."
        ) from None
    return moment, int(pk)


# Chargers


@dataclass(frozen=True, slots=True)
class ApiCharger:
    """A charger with its status and the id of the rate a session there would use."""

    charger: ListedCharger
    status: str
    rate_id: int | None


@dataclass(frozen=True, slots=True)
class ChargerPage:
    """One page of chargers and the cursor of the next page."""

    items: list[ApiCharger]
    next_cursor: str | None


def api_charger_list(
    *,
    user: User,
    cursor: str | None = None,
    limit: int = 20,
    now: datetime | None = None,
) -> ChargerPage:
    """The chargers `user` may start a session on, `limit` at a time, in the
    portal's order (friendly name, chargeBoxId, connector), in two queries.

    A customer's are those of the portal's chargers card (public ones and their
    charger groups'); staff's are every charger, as `api_session_create` lets staff
    start on any. Each has the card's status and the rate `Rate.objects.for_charger`
    finds, which a session created now would use. Keyset pagination on the sort
    order. Raises InvalidCursor for a cursor this function did not make.
    """
    now = now or timezone.now()
    limit = max(1, min(limit, PAGE_SIZE_MAX))
    rows = visible_chargers(
        user=user,
        now=now,
        every_charger=user.is_staff,
        after=_decode_charger_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    chargers = rows[:limit]
    rate_ids = Rate.objects.ids_for_chargers([charger.pk for charger in chargers])
    items = [
        ApiCharger(charger, charger_status(charger, now), rate_ids[charger.pk])
        for charger in chargers
    ]
    has_more = len(rows) > limit
    return ChargerPage(
        items=items,
        next_cursor=_encode_charger_cursor(chargers[-1]) if has_more else None,
    )


def api_charger_document(item: ApiCharger) -> dict[str, Any]:
    """A charger of the API: where to start a session, what it is, its status and
    the rate a session there would use."""
    charger = item.charger
    return {
        "chargestation": charger.charge_box_id,
        # A string, as in the session object.
        "connector": str(charger.connector_id),
        "name": charger.friendly_name,
        "connector_type": charger.connector_type or None,
        "max_power_kw": (
            None if charger.max_power_kw is None else float(charger.max_power_kw)
        ),
        "status": item.status,
        "rate": None if item.rate_id is None else str(item.rate_id),
    }


def _encode_charger_cursor(charger: ListedCharger) -> str:
    text = json.dumps(list(charger_sort_key(charger)), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_charger_cursor(cursor: str) -> ChargerSortKey:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        name, box, connector = json.loads(
            base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        )
        if not (_storable_text(name) and _storable_text(box)):
            raise ValueError(cursor)
        if type(connector) is not int:
            raise ValueError(cursor)
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise InvalidCursor(
            "The cursor is not valid; start again without it."
        ) from None
    return name, box, connector


def _storable_text(value: object) -> bool:
    """Text PostgreSQL can compare: a string without NUL characters or a lone
    surrogate (which JSON's escapes can spell)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


# Matching a session to its SteVe transaction


def api_session_matching_transaction(
    *, session: ApiSession, start_deadline: datetime
) -> TransactionSyncState | None:
    """The synced transaction this session's remote start began, or None.

    SteVe never names the transaction a remote start began (CONTRACT §7), so it is
    recognised: on the session's connector, with the idTag the remote start sent
    (OCPP idTags compare case-insensitively), claimed by no other session, not
    already stopped when the remote start was sent, and first stored by a sync after
    it was sent: a charge the driver made by card just before cannot be the one
    asked for, even when the sync has not seen its stop yet (both times are ours, so
    no clock skew enters that test).

    Its start, by the station's clock, must be no later than `start_deadline` (plus
    CLOCK_SKEW) and no earlier than the remote start (minus CLOCK_SKEW), or, when
    none is, earlier (by CLOCK_BEHIND_AT_MOST at most) but inserted by SteVe
    after the highest transaction Polaris had stored when the start was sent.
    Station clocks are often minutes behind (CONTRACT §11) and stamp a charge we
    caused before we asked for it; SteVe's pks follow its own insert order,
    whatever the station's clock says. A charge
    already running on that connector with that tag when the start was sent cannot
    pass for it: SteVe refuses a remote start for a tag that is charging, and the
    station one for an occupied connector.

    Of several in the window, the first one started after the remote start is the
    one it caused, failing that the latest before it; of several stamped earlier,
    the first SteVe inserted.
    """
    sent_at = session.remote_start_sent_at
    assert sent_at is not None
    candidates = list(
        TransactionSyncState.objects.filter(
            charge_box_id=session.charge_box_id,
            connector_id=session.connector_id,
            ocpp_id_tag__iexact=session.id_tag,
            api_sessions__isnull=True,
            created_at__gt=sent_at,
            started_at__lte=start_deadline + CLOCK_SKEW,
        )
        .exclude(stopped_at__lt=sent_at)
        .order_by("steve_transaction_id")
    )
    in_window = [tx for tx in candidates if tx.started_at >= sent_at - CLOCK_SKEW]
    if in_window:
        return min(
            in_window,
            key=lambda tx: (tx.started_at < sent_at, abs(tx.started_at - sent_at)),
        )
    if not candidates:
        return None
    known = _highest_pk_stored_by(sent_at)
    return next(
        (
            tx
            for tx in candidates
            if tx.steve_transaction_id > known
            and tx.started_at >= sent_at - CLOCK_BEHIND_AT_MOST
        ),
        None,
    )


def _highest_pk_stored_by(moment: datetime) -> int:
    """The highest SteVe pk Polaris had stored at `moment` (0 for none)."""
    # Walks the unique pk index from the top: only the rows stored since `moment`
    # are skipped, a handful.
    highest = (
        TransactionSyncState.objects.filter(created_at__lte=moment)
        .order_by("-steve_transaction_id")
        .values_list("steve_transaction_id", flat=True)
        .first()
    )
    return highest or 0


def transactions_synced_since(moment: datetime) -> bool:
    """Whether a transactions sync that began at or after `moment` has finished
    having read SteVe: it stored every transaction SteVe had reported by `moment`.

    A partial run counts when it stored every transaction it left unread (a new
    one whose meter values SteVe could not serve is stored from its list row): it
    read SteVe's whole list, and missed only transactions that vanished from SteVe
    during the run. One the database refused to store might be the one awaited.
    A failed run does not count: SteVe did not answer, so it proves nothing.
    """
    runs = SyncRun.objects.filter(
        kind=SyncRun.Kind.TRANSACTIONS,
        status__in=[SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL],
        started_at__gte=moment,
    ).values_list("unread_transaction_ids", flat=True)
    unread = list(runs)
    if any(not pks for pks in unread):
        return True
    left_unread = {pk for pks in unread for pk in pks}
    stored = set(
        TransactionSyncState.objects.filter(
            steve_transaction_id__in=left_unread
        ).values_list("steve_transaction_id", flat=True)
    )
    return any(set(pks) <= stored for pks in unread)


# The session object


def api_session_rate(session: ApiSession) -> RateTerms | None:
    """The prices the session was sold at, or None when no rate applied."""
    return RateTerms.from_json(session.rate_terms) if session.rate_terms else None


@dataclass(frozen=True, slots=True)
class MeteredEnergy:
    """Energy delivered and the moment of the reading it comes from."""

    kwh: Decimal
    until: datetime


def api_session_metered(session: ApiSession) -> MeteredEnergy:
    """The energy delivered so far and when it was metered. Requires a transaction.

    The sync's figure, final once SteVe stops the transaction (metered until the
    stop); while charging, the live register of the latest energy report when it
    is ahead of the sync. `until` is the latest reading either of them saw, never
    the clock: the seed's metrics are as reported by the station, so the energy
    and the period it was consumed in describe the same reading, and the session
    object only changes when a reading (and `updatedAt`) does.
    """
    tx = session.transaction
    assert tx is not None
    synced = Decimal(tx.kwh_delivered)
    if tx.is_finalized and tx.stopped_at is not None:
        return MeteredEnergy(synced, max(tx.stopped_at, tx.started_at))
    if session.status == ApiSession.Status.ENDED and session.ended_at is not None:
        return MeteredEnergy(synced, max(session.ended_at, tx.started_at))
    until = max(tx.last_reading_at or tx.started_at, tx.started_at)
    report = session.energy_report or {}
    if tx.is_finalized or tx.meter_reset_seen or not report.get("energy_meter"):
        return MeteredEnergy(synced, until)
    meter = report["energy_meter"]
    wh = in_base_unit(Decimal(str(meter["value"])), meter["unit"])
    live = ((wh - tx.meter_start_wh) / _WH_PER_KWH).quantize(Decimal("0.001"))
    # The register only grows, so the later of the two readings has the larger
    # energy: the maxima of both belong to one reading.
    return MeteredEnergy(
        max(synced, live), max(until, datetime.fromisoformat(report["timestamp"]))
    )


def api_session_energy_kwh(session: ApiSession) -> Decimal:
    """Energy delivered so far, in kWh (`api_session_metered`); 0 before charging."""
    if session.transaction is None:
        return Decimal(0)
    return api_session_metered(session).kwh


def api_session_cost(session: ApiSession) -> Cost | None:
    """The running estimate while started, the final cost once ended; None before
    charging started, when cancelled, or when no rate applies. Priced from the
    start to the latest reading, like the metrics."""
    rate = api_session_rate(session)
    tx = session.transaction
    if rate is None or tx is None:
        return None
    metered = api_session_metered(session)
    return session_cost(
        rate=rate,
        kwh=metered.kwh,
        started_at=tx.started_at,
        ended_at=metered.until,
    )


def api_session_document(session: ApiSession) -> dict[str, Any]:
    """The session object of the API, with the seed's field names."""
    return {
        "_id": str(session.pk),
        "user": str(session.user_id),
        "chargestation": session.charge_box_id,
        # The seed's connector is a string, as are the other ids.
        "connector": str(session.connector_id),
        "status": session.status,
        "rate": str(session.rate_id) if session.rate_id else None,
        "target": _target_document(session),
        "metrics": _metrics_document(session),
        "energy_report": session.energy_report,
        "charging_activity": session.charging_activity,
        "cost": _cost_document(api_session_cost(session)),
        "meta_data": session.meta_data,
        "createdAt": session.created_at,
        "updatedAt": session.updated_at,
    }


def _target_document(session: ApiSession) -> dict[str, Any] | None:
    target = {
        "time": session.target_time_minutes,
        "cost": session.target_cost,
        "energy": session.target_energy_kwh,
        "energy_start_time": session.target_start_at,
        "energy_stop_time": session.target_stop_at,
    }
    if all(value is None for value in target.values()):
        return None
    return {
        key: float(value) if isinstance(value, Decimal) else value
        for key, value in target.items()
    }


def _metrics_document(session: ApiSession) -> dict[str, Any] | None:
    tx = session.transaction
    if tx is None:
        return None
    metered = api_session_metered(session)
    # Final, as the seed has it, when the session has ended: until the advance
    # after the sync that stored the stop has ended it, the session is started
    # and its metrics say so.
    ended = session.status == ApiSession.Status.ENDED and tx.is_finalized
    stopped = tx.stopped_at if ended else None
    return {
        "chargingStart": tx.started_at,
        "chargingStop": stopped,
        "timezone": settings.POLARIS_TIME_ZONE,
        "energyPeriod": int((metered.until - tx.started_at).total_seconds()),
        "energyConsumed": float(metered.kwh * _WH_PER_KWH),
    }


def _cost_document(cost: Cost | None) -> dict[str, Any] | None:
    if cost is None:
        return None
    return {
        "amount": float(cost.amount),
        "currency": cost.currency,
        "breakdown": [
            {
                "type": line.type,
                "period": {
                    "startTime": _epoch_ms(line.start),
                    "endTime": _epoch_ms(line.end),
                },
                "rateName": line.rate_name,
                "quantity": float(line.quantity),
                "unit": line.unit,
                "unitPrice": float(line.unit_price),
                "beforeTax": float(line.before_tax),
                "tax": _whole_percent(line.tax_percent),
                "totalTax": float(line.total_tax),
                "totalCost": float(line.total_cost),
            }
            for line in cost.breakdown
        ],
    }


def _whole_percent(percent: Decimal) -> int:
    # The seed's tax is an integer percentage, and Rate.clean() accepts only whole
    # percents; rounding covers a rate stored before that rule.
    return int(percent.to_integral_value(rounding=ROUND_HALF_UP))


def _epoch_ms(moment: datetime) -> int:
    # The seed gives cost periods as epoch milliseconds (1655816640000).
    return int(moment.astimezone(UTC).timestamp() * 1000)
