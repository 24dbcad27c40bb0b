"""Live readings of a session, from SteVe's meter values (pure functions).

`energy_report` is the seed's instantaneous report (current, power, energy meter,
state of charge only when reported); `charging_activity` turns the power readings
into chronological periods such as Charging and SuspendedEV. Both read the energy
register of the place the sync counts energy at (`metered_energy_totals`).
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Any

from sync.client import (
    ENERGY_REGISTER,
    MeterReading,
    TransactionDetails,
    format_timestamp,
    in_base_unit,
    metered_energy_totals,
)
from sync.energy import WH_PER_KWH

POWER = "Power.Active.Import"
CURRENT = "Current.Import"
SOC = "SoC"
# Below this draw the EV is connected but not charging (OCPP's SuspendedEV).
CHARGING_MIN_W = Decimal(50)


_REPORT_MEASURANDS = (
    ("current", CURRENT, "A"),
    ("power", POWER, "W"),
    ("energy_meter", ENERGY_REGISTER, "Wh"),
    ("state_of_charge", SOC, "Percent"),
)
_MEASURANDS = tuple(measurand for _, measurand, _ in _REPORT_MEASURANDS)


def with_stop_reading(
    details: TransactionDetails, *, due_until: datetime
) -> Sequence[MeterReading]:
    """The transaction's readings, ending with its stop meter value as a
    Transaction.End register reading when no register reading is that late.
    Readings and a stop stamped after `due_until` (`readings_due_until`) are
    left out, as the sync leaves them: a station clock that jumped a day ahead
    would otherwise be the newest reading for that day.

    A station that stops before its first periodic sample, or that sends only its
    start and stop values, would otherwise leave the report at the start reading
    and the activity empty. SteVe keeps the stop value in whole Wh; it is given in
    the unit of the station's own register readings, so that the report's
    energy_meter does not jump a factor 1000 at the stop.
    """
    stop_at, stop_wh = (
        details.transaction.stop_timestamp,
        details.transaction.stop_value_wh,
    )
    readings = [r for r in details.readings if r.timestamp <= due_until]
    if stop_at is None or stop_wh is None or stop_at > due_until:
        return readings
    registers = [r for r in readings if r.is_energy_total]
    if any(r.timestamp >= stop_at for r in registers):
        return readings
    in_kwh = bool(registers) and registers[-1].unit == "kWh"
    stop = MeterReading(
        timestamp=stop_at,
        value=str(Decimal(stop_wh) / WH_PER_KWH) if in_kwh else str(stop_wh),
        measurand=ENERGY_REGISTER,
        unit="kWh" if in_kwh else "Wh",
        phase=None,
        location=None,
        reading_context="Transaction.End",
        format=None,
    )
    return (*readings, stop)


def energy_report(
    readings: Sequence[MeterReading], *, stopped_at: datetime | None = None
) -> dict[str, Any] | None:
    """The newest reading: current, power, energy register and (if reported) state
    of charge, each with the unit the station used; None without readings.

    Instantaneous, as the seed has it: every value is of the report's timestamp,
    and a measurand the station did not sample then is left out rather than shown
    with an older value. From the stop (`stopped_at`) on, power and current are 0:
    the station no longer delivers, whatever it last sampled while it did, and
    whether or not it ever sampled them.
    """
    samples = {measurand: _samples(readings, measurand) for measurand in _MEASURANDS}
    sampled_at = [max(by_time) for by_time in samples.values() if by_time]
    if not sampled_at:
        return None
    latest = max(sampled_at)
    stopped = stopped_at is not None and latest >= stopped_at
    report: dict[str, Any] = {"timestamp": format_timestamp(latest)}
    for key, measurand, default_unit in _REPORT_MEASURANDS:
        by_time = samples[measurand]
        if stopped and measurand in (POWER, CURRENT):
            unit = by_time[max(by_time)][0].unit if by_time else None
            report[key] = {"value": 0.0, "unit": unit or default_unit}
            continue
        if latest not in by_time:
            continue
        value, unit = _combine(measurand, by_time[latest])
        # The seed gives the state of charge as a whole percent.
        number = (
            int(value.to_integral_value(rounding=ROUND_HALF_UP))
            if measurand == SOC
            else float(value)
        )
        report[key] = {"value": number, "unit": unit or default_unit}
    return report


def charging_activity(
    readings: Sequence[MeterReading], *, start: datetime, end: datetime | None
) -> list[dict[str, str]]:
    """Chronological periods (`Charging` / `SuspendedEV`) from the power readings,
    or from the energy register's progress when the station reports no power.

    The first period begins at `start`; the last ends at `end` (the stop) or, while
    charging, at the latest reading.
    """
    states = _power_states(readings) or _energy_states(readings)
    periods: list[dict[str, Any]] = []
    for at, status in states:
        if periods and periods[-1]["status"] == status:
            continue
        begin = max(at, start) if periods else start
        if periods:
            periods[-1]["endTime"] = begin
        periods.append({"startTime": begin, "endTime": begin, "status": status})
    if not periods:
        return []
    periods[-1]["endTime"] = max(end or states[-1][0], periods[-1]["startTime"])
    return [
        {
            "startTime": format_timestamp(period["startTime"]),
            "endTime": format_timestamp(period["endTime"]),
            "status": period["status"],
        }
        for period in periods
    ]


def _samples(
    readings: Sequence[MeterReading], measurand: str
) -> dict[datetime, list[MeterReading]]:
    """The readings of `measurand` by timestamp; of the energy register, only the
    metered place's when the station reports a phase-less total."""
    if measurand == ENERGY_REGISTER:
        readings = metered_energy_totals(readings) or readings
    grouped: dict[datetime, list[MeterReading]] = defaultdict(list)
    for reading in readings:
        if (
            (reading.measurand or ENERGY_REGISTER) == measurand
            and reading.format != "SignedData"
            and reading.decimal_value is not None
        ):
            grouped[reading.timestamp].append(reading)
    return grouped


def _combine(measurand: str, rows: list[MeterReading]) -> tuple[Decimal, str | None]:
    """One value from the rows of one sample: the phase-less row when there is one;
    otherwise power and energy add up across phases, current and SoC do not."""
    total = [row for row in rows if not row.phase]
    if total:
        return _value(total[0]), total[0].unit
    values = [_value(row) for row in rows]
    if measurand in (POWER, ENERGY_REGISTER):
        return sum(values, Decimal(0)), rows[0].unit
    return max(values), rows[0].unit


def _value(reading: MeterReading) -> Decimal:
    value = reading.decimal_value
    assert value is not None
    return value


def _power_states(readings: Sequence[MeterReading]) -> list[tuple[datetime, str]]:
    samples = _samples(readings, POWER)
    states = []
    for at in sorted(samples):
        value, unit = _combine(POWER, samples[at])
        watts = in_base_unit(value, unit)
        states.append((at, "Charging" if watts >= CHARGING_MIN_W else "SuspendedEV"))
    return states


def _energy_states(readings: Sequence[MeterReading]) -> list[tuple[datetime, str]]:
    samples = _samples(readings, ENERGY_REGISTER)
    register = []
    for at in sorted(samples):
        value, unit = _combine(ENERGY_REGISTER, samples[at])
        register.append((at, in_base_unit(value, unit)))
    # Each state holds from one reading to the next; the last repeats at the end.
    states = [
        (at, "Charging" if after > before else "SuspendedEV")
        for (at, before), (_, after) in pairwise(register)
    ]
    return [*states, (register[-1][0], states[-1][1])] if states else []
