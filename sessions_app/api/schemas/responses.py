"""Response schemas of the Sessions API: the seed's session object, the chargers,
the envelopes, and the headers and shared answers the OpenAPI document gives.

Field names are the seed's (`_id`, `chargestation`, `energyConsumed`, …), so the
attributes are camelCase where the seed is. `_id` cannot be a pydantic field name
(a leading underscore makes it private): it is the alias of `id`, and every
operation serialises by alias.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import Field, PlainSerializer, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from sync.client import format_timestamp

SessionStatus = Literal["created", "started", "ended", "cancelled"]
# The portal's words (portal.selectors.charger_status).
ChargerStatus = Literal["online", "in_use", "reserved", "offline"]

# Every timestamp as SteVe and the seed write them: UTC with milliseconds, even
# when they are zero (2026-03-01T09:00:00.000Z); pydantic would drop a zero
# fraction.
ApiDateTime = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _reported(description: str) -> Any:
    """A reading the station may not report: left out of the answer then, and
    documented as an optional property that is never null."""
    return Field(
        None,
        exclude_if=lambda value: value is None,
        description=description,
        json_schema_extra=_no_default,
    )


class ValueUnit(Schema):
    value: float
    unit: str = Field(description="The unit the station reported it in.")


class StateOfChargeOut(Schema):
    value: int = Field(description="Vehicle state of charge in percent.")
    unit: str = Field(description="Percent.")


class EnergyReportOut(Schema):
    """The station's newest reading, instantaneous: every value is of `timestamp`,
    and a measurand the station did not sample then (or never reports) is left out.
    Once the charge stopped, the report is the stop's reading, with power and
    current 0: the station no longer delivers."""

    timestamp: ApiDateTime = Field(description="Time of the reading (UTC).")
    current: ValueUnit | SkipJsonSchema[None] = _reported(
        "Current drawn by the EV; unit A."
    )
    power: ValueUnit | SkipJsonSchema[None] = _reported(
        "Active power imported by the EV; unit W or kW."
    )
    energy_meter: ValueUnit | SkipJsonSchema[None] = _reported(
        "The station's lifetime energy register; unit Wh or kWh. The outlet's "
        "when the station meters more than one place, as energyConsumed counts."
    )
    state_of_charge: StateOfChargeOut | SkipJsonSchema[None] = _reported(
        "Only when the station reports the vehicle's state of charge."
    )


class ActivityPeriodOut(Schema):
    startTime: ApiDateTime
    endTime: ApiDateTime
    status: str = Field(description="Charging or SuspendedEV.")


class CostPeriodOut(Schema):
    startTime: int = Field(description="Epoch milliseconds: chargingStart.")
    endTime: int = Field(
        description="Epoch milliseconds: the latest meter reading while started, "
        "chargingStop once ended (the end of metrics.energyPeriod)."
    )


class CostLineOut(Schema):
    type: Literal["FLAT", "ENERGY", "TIME"]
    period: CostPeriodOut
    rateName: str
    quantity: float
    unit: str = Field(description="kWh, h, or session (FLAT).")
    unitPrice: float
    beforeTax: float
    tax: int = Field(description="Tax in percent (a whole number).")
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
    energy_start_time: ApiDateTime | None
    energy_stop_time: ApiDateTime | None


class MetricsOut(Schema):
    chargingStart: ApiDateTime
    chargingStop: ApiDateTime | None
    timezone: str = Field(
        description="The operator's time zone (POLARIS_TIME_ZONE), an IANA name; "
        "every time in the object is UTC."
    )
    energyPeriod: int = Field(
        description="Energy consumption time period in whole seconds: from "
        "chargingStart to the latest meter reading while started (the endTime of "
        "the last charging_activity period), to chargingStop once ended. It "
        "grows with the readings, not with the clock."
    )
    energyConsumed: float = Field(
        description="Wh, as reported by the meter, over energyPeriod."
    )


class SessionOut(Schema):
    """The session object."""

    id: str = Field(alias="_id")
    user: str
    chargestation: str
    connector: str = Field(description="The connector id (the OCPP connectorId).")
    status: SessionStatus = Field(
        description="created: the remote start is sent, or scheduled. started: the "
        "station is charging, also after an operator closed the charge in the "
        "charging network while the station goes on (it can then only be stopped "
        "at the station). ended: the station reported its stop, or stopped "
        "reporting a charge the network keeps open (a newer charge on its "
        "connector, or hours without a reading). cancelled: charging did not "
        "begin."
    )
    rate: str | None
    target: TargetOut | None
    metrics: MetricsOut | None
    energy_report: EnergyReportOut | None
    charging_activity: list[ActivityPeriodOut]
    cost: CostOut | None
    meta_data: dict[str, Any]
    createdAt: ApiDateTime
    updatedAt: ApiDateTime


class SessionPageOut(Schema):
    items: list[SessionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class ChargerOut(Schema):
    """A charger (one connector of a station) a session can be started on."""

    chargestation: str = Field(
        description="The SteVe chargeBoxId: a new session's `chargestation`."
    )
    connector: str = Field(
        description="The connector id (the OCPP connectorId): a new session's "
        "`connector`."
    )
    name: str = Field(description="The charger's friendly name.")
    connector_type: str | None = Field(
        description="The plug, e.g. Type 2 or CCS; null when not recorded."
    )
    max_power_kw: float | None = Field(
        description="The most it delivers, in kW; null when not recorded."
    )
    status: ChargerStatus = Field(
        description="offline: no check-in for over an hour; otherwise in_use while "
        "a session charges there or a portal or API session holds it, reserved "
        "while a reservation or a session scheduled to start later holds it, and "
        "online when free."
    )
    rate: str | None = Field(
        description="The id of the rate a session started here now would apply "
        "(its `rate`); null when none applies."
    )


class ChargerPageOut(Schema):
    items: list[ChargerOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class ChargerPageEnvelope(Schema):
    ok: Literal[True]
    message: str
    result: ChargerPageOut


class SessionEnvelope(Schema):
    ok: Literal[True]
    message: str
    result: SessionOut


class SessionPageEnvelope(Schema):
    ok: Literal[True]
    message: str
    result: SessionPageOut


class ErrorEnvelope(Schema):
    ok: Literal[False]
    message: str


# Response headers and shared responses, as the OpenAPI document gives them: ninja
# documents bodies only.

LOCATION_HEADER: dict[str, Any] = {
    "description": "The session's URL, to GET it.",
    "required": True,
    "schema": {"type": "string", "format": "uri-reference"},
}
IDEMPOTENT_REPLAYED_HEADER: dict[str, Any] = {
    "description": "`true` when this answer replays the session an earlier request "
    "with the same Idempotency-Key created (no remote start was sent); absent "
    "otherwise.",
    "required": False,
    "schema": {"type": "string", "enum": ["true"]},
}
WWW_AUTHENTICATE_HEADER: dict[str, Any] = {
    "description": "The scheme to authenticate with.",
    "required": True,
    "schema": {"type": "string", "enum": ['Bearer realm="api"']},
}
METHOD_NOT_ALLOWED_RESPONSE: dict[str, Any] = {
    "description": "Method Not Allowed: any path answers a method it does not take "
    "this way, so no operation lists it.",
    "headers": {
        "Allow": {
            "description": "The methods the path takes, comma-separated; HEAD "
            "wherever GET.",
            "required": True,
            "schema": {"type": "string"},
            "example": "GET, POST, HEAD",
        }
    },
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}
    },
}
