"""When a started session's targets say to stop the charge."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings

from sessions_app.api.selectors.sessions import (
    api_session_metered,
    api_session_rate,
)
from sessions_app.models import ApiSession
from sessions_app.pricing import session_cost
from sync.client import (
    in_base_unit,
)
from sync.models import Charger, TransactionSyncState

W_PER_KW = Decimal(1000)
SECONDS_PER_HOUR = Decimal(3600)


def reached_target(
    session: ApiSession, tx: TransactionSyncState, now: datetime
) -> str | None:
    """The target to stop the charge for now, as an `ApiSession.Target`, or None.

    Time, energy and cost are maxima (the seed's "Max session …"), and targets are
    checked once per advance, SYNC_INTERVAL_SECONDS apart. So a max stops the charge
    at the last check before it would be passed, at the latest power the station
    reported: waiting for the check after would overshoot by up to one interval of
    charging, plus the age of the readings. What remains can pass a max: power
    rising after the latest reading, an advance that runs late, and the moment the
    station takes to act on the stop. The stop time is a moment, not a max, and
    stops at the first check at or after it.
    """
    if session.target_stop_at is not None and now >= session.target_stop_at:
        return ApiSession.Target.STOP_TIME
    # The charge's times are the station's clock: the next check is read on it.
    next_check = (
        now
        + timedelta(seconds=settings.SYNC_INTERVAL_SECONDS)
        - _station_clock_lag(session, tx)
    )
    projected_kwh = _projected_kwh(session, tx, next_check)
    energy = session.target_energy_kwh
    if energy is not None and projected_kwh >= energy:
        return ApiSession.Target.ENERGY
    minutes = session.target_time_minutes
    if minutes is not None and next_check - tx.started_at >= timedelta(
        minutes=float(minutes)
    ):
        return ApiSession.Target.TIME
    rate = api_session_rate(session)
    if session.target_cost is not None and rate is not None:
        cost = session_cost(
            rate=rate,
            kwh=projected_kwh,
            started_at=tx.started_at,
            ended_at=next_check,
        )
        if cost.amount >= session.target_cost:
            return ApiSession.Target.COST
    return None


def _station_clock_lag(session: ApiSession, tx: TransactionSyncState) -> timedelta:
    """How far the station's clock runs behind ours, as its charge gives away: it
    began after the remote start was sent, yet is stamped before. A clock that
    runs ahead cannot be told from a charge that began late, so it counts as
    right."""
    sent_at = session.remote_start_sent_at
    if sent_at is None or tx.started_at >= sent_at:
        return timedelta(0)
    return sent_at - tx.started_at


def _projected_kwh(
    session: ApiSession, tx: TransactionSyncState, at: datetime
) -> Decimal:
    """Energy delivered by `at` if the EV keeps drawing what the latest reading
    showed, from when the energy was last metered: the reported power (a station
    may sample it more often than its register), or without one the average
    since the start.

    With nothing measured past the start (a station samples its power a minute or
    so after it), the charger's maximum power: a small max would otherwise pass
    by a whole interval of charging or more before a check that knows the power.
    """
    metered = api_session_metered(session)
    report = session.energy_report
    kw = _reported_kw(report.get("power")) if report else None
    if kw is None:
        charged_hours = _hours(metered.until - tx.started_at)
        kw = (
            metered.kwh / charged_hours if charged_hours > 0 else _max_power_kw(session)
        )
    return metered.kwh + kw * _hours(at - metered.until)


def _max_power_kw(session: ApiSession) -> Decimal:
    """The connector's maximum power as staff entered it, or 0 where none is."""
    max_power = (
        Charger.objects.filter(
            charge_box_id=session.charge_box_id, connector_id=session.connector_id
        )
        .values_list("max_power_kw", flat=True)
        .first()
    )
    return max_power or Decimal(0)


def _reported_kw(power: dict[str, Any] | None) -> Decimal | None:
    if not power:
        return None
    return in_base_unit(Decimal(str(power["value"])), power["unit"]) / W_PER_KW


def _hours(span: timedelta) -> Decimal:
    return max(Decimal(str(span.total_seconds())), Decimal(0)) / SECONDS_PER_HOUR
