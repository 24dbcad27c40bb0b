"""Schemas of the Sessions API: the request bodies and the seed's session object.

Field names are the seed's (`_id`, `chargestation`, `energyConsumed`, …), so the
attributes are camelCase where the seed is. `_id` cannot be a pydantic field name
(a leading underscore makes it private): it is the alias of `id`, and every
operation serialises by alias.
"""

import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import Field, SerializerFunctionWrapHandler, field_validator
from pydantic import model_serializer as pydantic_model_serializer

SessionStatus = Literal["created", "started", "ended", "cancelled"]
# SteVe's ChargeBoxIdValidator ([^=/()<>]*) without control characters, which
# PostgreSQL text cannot store (NUL) and no station id contains.
CHARGE_BOX_ID = r"^[^\x00-\x1f\x7f=/()<>]{1,255}$"
USER_REF = r"^[^\x00-\x1f\x7f]{1,150}$"
TARGET_MAX = 1_000_000
_NUMBER = re.compile(r"\s*[-+]?[0-9.eE+-]+\s*")


def _date_time_text(value: Any) -> Any:
    """Only ISO 8601 text: pydantic would also take numbers as Unix timestamps,
    which the document does not offer and which hide mistakes."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _NUMBER.fullmatch(value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-03-01T09:00:00Z")
    return value


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC datetimes; a value without offset is read as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


def _check_storable(value: Any) -> None:
    """JSON that PostgreSQL's jsonb can hold: no NUL characters, no NaN/Infinity."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not contain NaN or Infinity")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key)
            _check_storable(item)
    if isinstance(value, list):
        for item in value:
            _check_storable(item)


# Requests


class TargetIn(Schema):
    """Targets of a new session; each one is enforced once."""

    time: float | None = Field(
        None,
        gt=0,
        le=TARGET_MAX,
        allow_inf_nan=False,
        description="Max session time in minutes.",
    )
    cost: float | None = Field(
        None,
        gt=0,
        le=TARGET_MAX,
        allow_inf_nan=False,
        description="Max session cost in the currency of the charger's rate.",
    )
    energy: float | None = Field(
        None,
        gt=0,
        le=TARGET_MAX,
        allow_inf_nan=False,
        description="Max session energy in kWh.",
    )
    energy_start_time: datetime | None = Field(
        None, description="UTC time to start delivering energy (the remote start)."
    )
    energy_stop_time: datetime | None = Field(
        None, description="UTC time to stop delivering energy (a remote stop)."
    )

    @field_validator("energy_start_time", "energy_stop_time", mode="before")
    @classmethod
    def _iso_only(cls, value: Any) -> Any:
        return _date_time_text(value)

    @field_validator("energy_start_time", "energy_stop_time")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)


class SessionCreateIn(Schema):
    """`POST /sessions`: where to charge, and optionally targets and your data."""

    chargestation: str = Field(
        pattern=CHARGE_BOX_ID, description="The SteVe chargeBoxId of the station."
    )
    connector: int = Field(ge=1, le=2_147_483_647, description="The connector id.")
    target: TargetIn | None = None
    meta_data: dict[str, Any] | None = Field(
        None, description="Any data of yours; returned as given."
    )
    user: str | None = Field(
        None,
        pattern=USER_REF,
        description="Staff only: the id (or username) of the user to charge for.",
    )

    @field_validator("meta_data")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        _check_storable(value)
        return value


class SessionListQuery(Schema):
    """Filters of `GET /sessions`; `from`/`to` bound createdAt, both inclusive."""

    status: SessionStatus | None = None
    chargestation: str | None = Field(None, pattern=CHARGE_BOX_ID)
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    cursor: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,200}$",
        description="`next_cursor` of the previous page.",
    )
    limit: int = Field(20, ge=1, le=100)

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _iso_only(cls, value: Any) -> Any:
        return _date_time_text(value)

    @field_validator("from_", "to")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)


# Responses


class ValueUnit(Schema):
    value: float
    unit: str


class EnergyReportOut(Schema):
    """Latest readings; a measurand the station does not report is left out."""

    timestamp: datetime
    current: ValueUnit | None = None
    power: ValueUnit | None = None
    energy_meter: ValueUnit | None = None
    state_of_charge: ValueUnit | None = None

    @pydantic_model_serializer(mode="wrap")
    def _omit_unreported(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class ActivityPeriodOut(Schema):
    startTime: datetime
    endTime: datetime
    status: str = Field(description="Charging or SuspendedEV.")


class CostPeriodOut(Schema):
    startTime: int = Field(description="Epoch milliseconds.")
    endTime: int = Field(description="Epoch milliseconds.")


class CostLineOut(Schema):
    type: Literal["FLAT", "ENERGY", "TIME"]
    period: CostPeriodOut
    rateName: str
    quantity: float
    unit: str = Field(description="kWh, h, or session (FLAT).")
    unitPrice: float
    beforeTax: float
    tax: float = Field(description="Tax in percent.")
    totalTax: float
    totalCost: float


class CostOut(Schema):
    amount: float
    currency: str
    breakdown: list[CostLineOut]


class TargetOut(Schema):
    time: float | None
    cost: float | None
    energy: float | None
    energy_start_time: datetime | None
    energy_stop_time: datetime | None


class MetricsOut(Schema):
    chargingStart: datetime
    chargingStop: datetime | None
    timezone: str
    energyPeriod: int = Field(description="Seconds of charging so far.")
    energyConsumed: float = Field(description="Wh, as reported by the meter.")


class SessionOut(Schema):
    """The session object."""

    id: str = Field(alias="_id")
    user: str
    chargestation: str
    connector: int
    status: SessionStatus
    rate: str | None
    target: TargetOut | None
    metrics: MetricsOut | None
    energy_report: EnergyReportOut | None
    charging_activity: list[ActivityPeriodOut]
    cost: CostOut | None
    meta_data: dict[str, Any]
    createdAt: datetime
    updatedAt: datetime


class SessionPageOut(Schema):
    items: list[SessionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class SessionEnvelope(Schema):
    ok: Literal[True] = True
    message: str
    result: SessionOut


class SessionPageEnvelope(Schema):
    ok: Literal[True] = True
    message: str
    result: SessionPageOut


class ErrorEnvelope(Schema):
    ok: Literal[False] = False
    message: str
