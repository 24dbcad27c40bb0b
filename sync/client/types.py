"""What the SteVe client returns: SteVe's JSON parsed into typed, immutable objects
(transactions, meter readings, operation results), and the units and bounds a
reading is taken with. Kept apart from the HTTP code so that the sync and the
readings code use these without the transport.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

ENERGY_REGISTER = "Energy.Active.Import.Register"


@dataclass(frozen=True, slots=True)
class SteveTransaction:
    """One item of `GET /transactions`; meter values are whole Wh."""

    id: int
    charge_box_id: str
    connector_id: int
    ocpp_id_tag: str
    start_timestamp: datetime
    start_value_wh: int
    stop_timestamp: datetime | None
    stop_value_wh: int | None
    stop_reason: str | None
    stop_event_actor: str | None
    user_id: int | None

    @property
    def is_active(self) -> bool:
        return self.stop_timestamp is None

    @property
    def is_stopped_manually(self) -> bool:
        """Stopped by hand in SteVe (stopEventActor `manual`), which tells the
        station nothing: SteVe dates and values the stop from the readings."""
        return self.stop_event_actor == "manual"


# OCPP's default measurement location, the connector the car charges from.
OUTLET = "Outlet"
# The largest sampled value taken as a number: beyond it Decimal arithmetic and
# our bigint columns stop being safe.
MAX_READING = Decimal(10**15)
# The largest energy register reading taken as real: 100 GWh, more than a 350 kW
# charger delivers in thirty years. kWh columns (numeric(12,3)) hold under 10^12 Wh,
# and a glitching meter's 0xFFFFFFFF kWh (4.3 x 10^12 Wh) is no reading at all.
MAX_REGISTER_WH = Decimal(10**11)


KILO = Decimal(1000)


def in_base_unit(value: Decimal, unit: str | None) -> Decimal:
    """A reading in W or Wh: kW and kWh values times 1000, others as they are."""
    return value * KILO if unit in ("kW", "kWh") else value


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One sampled value as the station sent it (no unit conversion)."""

    timestamp: datetime
    value: str
    measurand: str | None
    unit: str | None
    phase: str | None
    location: str | None
    reading_context: str | None
    format: str | None

    @property
    def is_energy_total(self) -> bool:
        """A phase-less Energy.Active.Import.Register reading in Wh or kWh."""
        return (
            (self.measurand or ENERGY_REGISTER) == ENERGY_REGISTER
            and not self.phase
            and (self.unit or "Wh") in ("Wh", "kWh")
            and self.format != "SignedData"
            and (number := self.decimal_value) is not None
            and abs(in_base_unit(number, self.unit)) <= MAX_REGISTER_WH
        )

    @property
    def decimal_value(self) -> Decimal | None:
        """The value as a number, or None when it is not one a meter could read.

        SteVe stores a sampled value as the station sent it (a string), so
        "NaN" or "1e40" reach us; bounded, every later sum and quantize is safe.
        """
        try:
            number = Decimal(self.value)
        except (InvalidOperation, TypeError):
            return None
        if not number.is_finite() or abs(number) > MAX_READING:
            return None
        return number

    @property
    def energy_wh(self) -> int:
        """The reading normalised to whole Wh (kWh times 1000, half up)."""
        number = self.decimal_value
        if number is None:
            raise ValueError(f"{self.value!r} is not an energy reading")
        wh = in_base_unit(number, self.unit)
        return int(wh.quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def metered_energy_totals(readings: Iterable[MeterReading]) -> list[MeterReading]:
    """The phase-less energy register readings of the one place the charge is
    metered at, in the order given.

    A station may meter more than one place (OCPP's location: Outlet, Inlet,
    EV, …), and two registers interleaved would look like one meter going back
    and forth. The outlet's, OCPP's default location, is the one that delivers
    the charge; a station without it keeps the first location it reported.
    """
    totals = [reading for reading in readings if reading.is_energy_total]
    locations = [reading.location or OUTLET for reading in totals]
    if len(set(locations)) > 1:
        kept = OUTLET if OUTLET in locations else locations[0]
        totals = [r for r, at in zip(totals, locations, strict=True) if at == kept]
    return totals


@dataclass(frozen=True, slots=True)
class TransactionDetails:
    transaction: SteveTransaction
    readings: tuple[MeterReading, ...]

    def energy_readings(self) -> list[tuple[datetime, int]]:
        """(timestamp, Wh) of `metered_energy_totals`, oldest first."""
        totals = metered_energy_totals(self.readings)
        return [(reading.timestamp, reading.energy_wh) for reading in totals]


@dataclass(frozen=True, slots=True)
class OperationResult:
    """The answer to an OCPP operation; `responses` maps chargeBoxId → status."""

    task_finished: bool
    responses: Mapping[str, str]
    errors: Mapping[str, str]
    # Stations that answered with an OCPP CallError (errorResponses): reached,
    # unlike the send failures that `errors` also holds.
    call_errors: frozenset[str] = frozenset()

    def accepted(self, charge_box_id: str) -> bool:
        # CONTRACT §7: compare case-insensitively to be safe.
        return self.responses.get(charge_box_id, "").lower() == "accepted"

    def answered(self, charge_box_id: str) -> bool:
        """The station replied, whatever it said: it is connected."""
        return charge_box_id in self.responses or charge_box_id in self.call_errors

    def status_of(self, charge_box_id: str) -> str:
        """'Accepted', 'Rejected', …, 'Error' or 'Timeout' for one charge box."""
        if charge_box_id in self.responses:
            return self.responses[charge_box_id]
        if charge_box_id in self.errors:
            return "Error"
        return "Timeout" if not self.task_finished else "Unknown"


def parse_timestamp(value: str) -> datetime:
    """Parse SteVe's `2024-08-25T14:30:00.000Z` (always UTC) into an aware datetime."""
    return datetime.fromisoformat(value)


def format_timestamp(moment: datetime) -> str:
    """An aware datetime as SteVe writes and reads timestamps: UTC, milliseconds,
    `Z` (2026-03-01T09:00:00.000Z). The Sessions API writes its times so too."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _wh(value: Any) -> int | None:
    if value is None:
        return None
    return int(Decimal(str(value)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def _stop_wh(value: Any) -> int | None:
    """The stop value in whole Wh; None for none, or for one no meter could read.
    (A station's meterStop is a 32-bit integer, but SteVe copies a manual stop's
    value from the last reading, whatever the station sent there.)"""
    if value is None:
        return None
    number = Decimal(str(value))
    if not number.is_finite() or abs(number) > MAX_REGISTER_WH:
        return None
    return _wh(number)


def _text(value: Any) -> str:
    """A string SteVe sent, as PostgreSQL can store it: a station may put any
    character in an idTag or stop reason (MySQL keeps a NUL byte, PostgreSQL
    refuses one), so a NUL reads as U+FFFD, and the rest stays as sent."""
    return str(value).replace("\x00", "\ufffd")


def parse_transaction(item: Mapping[str, Any]) -> SteveTransaction:
    stop_timestamp = item.get("stopTimestamp")
    start_value = _wh(item["startValue"])
    if start_value is None:
        raise ValueError("a transaction without its startValue")
    return SteveTransaction(
        id=int(item["id"]),
        charge_box_id=_text(item["chargeBoxId"]),
        connector_id=int(item["connectorId"]),
        ocpp_id_tag=_text(item["ocppIdTag"]),
        start_timestamp=parse_timestamp(item["startTimestamp"]),
        start_value_wh=start_value,
        stop_timestamp=parse_timestamp(stop_timestamp) if stop_timestamp else None,
        stop_value_wh=_stop_wh(item.get("stopValue")),
        stop_reason=_text(item["stopReason"]) if item.get("stopReason") else None,
        stop_event_actor=item.get("stopEventActor") or None,
        user_id=item.get("userId"),
    )


def parse_reading(item: Mapping[str, Any]) -> MeterReading:
    return MeterReading(
        timestamp=parse_timestamp(item["valueTimestamp"]),
        value=str(item.get("value") or ""),
        measurand=item.get("measurand") or None,
        unit=item.get("unit") or None,
        phase=item.get("phase") or None,
        location=item.get("location") or None,
        reading_context=item.get("readingContext") or None,
        format=item.get("format") or None,
    )


def parse_operation(body: Mapping[str, Any]) -> OperationResult:
    call_errors = body.get("errorResponses") or []
    return OperationResult(
        task_finished=bool(body["taskFinished"]),
        responses={
            str(item["chargeBoxId"]): str(item["response"])
            for item in body.get("successResponses") or []
        },
        errors={
            **{
                str(item["chargeBoxId"]): str(item.get("errorCode") or "Error")
                for item in call_errors
            },
            **{
                str(item["chargeBoxId"]): str(item.get("exceptionMessage") or "Error")
                for item in body.get("exceptions") or []
            },
        },
        call_errors=frozenset(str(item["chargeBoxId"]) for item in call_errors),
    )
