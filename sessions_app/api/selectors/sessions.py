"""Reads of the Sessions API's sessions: who a new session is for, who may see
which session and who may start or stop it, the list, and the session object.

`api_session_document` builds the session object with the seed's field names
(`_id`, `chargestation`, `metrics.energyConsumed`, …); the API's schemas only check
and serialise it.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Q
from django.http import Http404

from sessions_app.models import ApiSession, ApiSessionQuerySet
from sessions_app.pricing import Cost, RateTerms, session_cost
from sync.client import in_base_unit
from sync.energy import WH_PER_KWH
from sync.models import SyncedTransactionEvent

PAGE_SIZE_MAX = 100
# Ids are bigint; longer digit strings cannot name a row (and would overflow SQL).
_SESSION_ID = re.compile(r"[0-9]{1,18}")


class AmbiguousUser(ValueError):
    """A user named by digits that are one user's id and another's username."""


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


def may_manage_any_session(user: User) -> bool:
    """Whether `user` may start and stop sessions for other users: staff with
    `ApiSession.MANAGE_ANY_PERMISSION` (superusers have it). Anyone may for
    themselves; reading others' sessions takes only staff (`visible_to`)."""
    return bool(getattr(user, "is_staff", False)) and user.has_perm(
        ApiSession.MANAGE_ANY_PERMISSION
    )


def api_session_owner(*, actor: User, user_ref: str | None) -> User:
    """The user a new session is for: `actor`, or for staff the user `user_ref`
    (an id, or a username). Whether staff may create it for that user is the
    service's question (`may_manage_any_session`): staff see every user, so a
    refusal says why rather than pretending the user does not exist.

    Raises Http404 when the user does not exist or is inactive, and when a customer
    names anyone but themselves (404, so other users' ids are not revealed);
    AmbiguousUser when digits are one user's id and another's username, rather
    than charge either of them on a guess.
    """
    is_staff = getattr(actor, "is_staff", False)
    if user_ref is None or (
        not is_staff and user_ref in (str(actor.pk), actor.get_username())
    ):
        return actor
    if not is_staff:
        raise Http404("No such user.")
    named = Q(username=user_ref)
    if _SESSION_ID.fullmatch(user_ref):
        named |= Q(pk=int(user_ref))
    # Inactive users too: one deactivated must not turn the digits into the
    # other user's name.
    owners = list(get_user_model().objects.filter(named)[:2])
    if len(owners) > 1:
        by_username = next(user for user in owners if user.username == user_ref)
        raise AmbiguousUser(
            f'"{user_ref}" is the id of one user and the username of another: '
            f'give id {by_username.pk} for the user named "{user_ref}", or the '
            f"username of the user with id {user_ref}."
        )
    if not owners or not owners[0].is_active:
        raise Http404("No such user.")
    return owners[0]


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
        # In UTC, as this function made it: PostgreSQL refuses offsets past
        # ±15:59, which Python takes.
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError, UnicodeError, binascii.Error):
        raise InvalidCursor(
            "The cursor is not valid; start again without it."
        ) from None
    return moment, int(pk)


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
    # Charged on past a manual stop in SteVe: the sync counts nothing after it
    # until the station's own stop replaces it, so the station's register in the
    # session's report tells, as while charging, and once ended too.
    stopped = tx.is_finalized and not tx.charged_past_manual_stop()
    if stopped and tx.stopped_at is not None:
        return MeteredEnergy(synced, max(tx.stopped_at, tx.started_at))
    ended = session.status == ApiSession.Status.ENDED
    if ended and not tx.is_finalized and session.ended_at is not None:
        # Ended while SteVe keeps the charge open (suspected stuck): its metrics
        # are final, whatever readings the station may upload after all.
        ended_at = max(session.ended_at, tx.started_at)
        kwh = SyncedTransactionEvent.objects.kwh_until(tx.pk, ended_at)
        return MeteredEnergy(kwh, ended_at)
    until = max(tx.last_reading_at or tx.started_at, tx.started_at)
    report = session.energy_report or {}
    if stopped or tx.meter_reset_seen or not report.get("energy_meter"):
        return MeteredEnergy(synced, until)
    meter = report["energy_meter"]
    wh = in_base_unit(Decimal(str(meter["value"])), meter["unit"])
    live = ((wh - tx.meter_start_wh) / WH_PER_KWH).quantize(Decimal("0.001"))
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
    # The end the session took from its charge (`charge_ended_at`): a stuck
    # charge's last reading, or the last one past a manual stop.
    stopped = session.ended_at if session.status == ApiSession.Status.ENDED else None
    return {
        "chargingStart": tx.started_at,
        "chargingStop": stopped,
        "timezone": settings.POLARIS_TIME_ZONE,
        "energyPeriod": int((metered.until - tx.started_at).total_seconds()),
        "energyConsumed": float(metered.kwh * WH_PER_KWH),
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
