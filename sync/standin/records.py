"""Rows of the stand-in's SteVe database and the read models built from them.

The names follow SteVe's schema at HEAD (CONTRACT §9) so that the code reading
them can be compared with SteVe's repositories line by line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# (charge_box_id, connector_id): the key of SteVe's ``evse`` table.
EvseKey = tuple[str, int]

StopActor = Literal["station", "manual"]
ReservationStatus = Literal["WAITING", "ACCEPTED", "USED", "CANCELLED"]

ENERGY_REGISTER = "Energy.Active.Import.Register"
SAMPLE_PERIODIC = "Sample.Periodic"

# What Java's Double.parseDouble accepts, minus NaN/Infinity and type suffixes.
_DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


class NotFound(Exception):
    """SteVe's ``SteveException.NotFound``: answered as 404 with this message."""


class BadRequest(Exception):
    """SteVe's ``SteveException.BadRequest``: answered as 400 with this message."""


# slots: a seeded fleet holds close to a million of these two.
@dataclass(frozen=True, slots=True)
class Reading:
    """One OCPP ``SampledValue`` exactly as the station sent it (CONTRACT §5).

    Values are never converted: ``value`` may be ``"12.345"`` with unit ``kWh``.
    The defaults are what the simulated stations put into a periodic sample.
    """

    value: str | None
    value_timestamp: datetime
    reading_context: str | None = SAMPLE_PERIODIC
    format: str | None = "Raw"
    measurand: str | None = ENERGY_REGISTER
    location: str | None = "Outlet"
    unit: str | None = "Wh"
    phase: str | None = None

    def is_energy_value(self) -> bool:
        """Return whether ``energyValuesOnly=true`` keeps this reading.

        Mirrors the SQL unit pre-filter plus ``TransactionStopServiceHelper
        .isEnergyValue``: a numeric value, not ``SignedData``, measurand empty or
        the energy register, unit empty, ``Wh`` or ``kWh``; every phase passes.
        """
        return (
            self.value is not None
            and _DECIMAL.fullmatch(self.value) is not None
            and self.format != "SignedData"
            and self.measurand in (None, "", ENERGY_REGISTER)
            and self.unit in (None, "", "Wh", "kWh")
        )

    def wh(self) -> float:
        """Return the value in Wh; only meaningful when ``is_energy_value()``."""
        number = float(self.value or "0")
        return number * 1000 if self.unit == "kWh" else number


@dataclass(frozen=True, slots=True)
class MeterValue:
    """A ``connector_meter_value`` row: a reading filed under an EVSE.

    ``transaction_pk`` is None when the station sent no transactionId; such rows
    are attributed to transactions by time window (CONTRACT §5).
    """

    evse: EvseKey
    transaction_pk: int | None
    reading: Reading


@dataclass(frozen=True)
class StopEvent:
    """The latest ``transaction_stop`` row of a transaction (the latest event wins)."""

    actor: StopActor
    event_timestamp: datetime
    stop_timestamp: datetime
    stop_value: str
    stop_reason: str | None


@dataclass
class TransactionRecord:
    """A ``transaction_start`` row joined with its latest stop, if any."""

    pk: int
    evse: EvseKey
    id_tag: str
    start_timestamp: datetime
    start_value: str
    start_event_timestamp: datetime
    stop: StopEvent | None = None

    @property
    def is_active(self) -> bool:
        """SteVe's definition of ACTIVE: ``stop_timestamp IS NULL``."""
        return self.stop is None


@dataclass(frozen=True)
class FailedStop:
    """A ``transaction_stop_failed`` row: a StopTransaction SteVe refused (§11)."""

    transaction_pk: int
    charge_box_id: str
    event_timestamp: datetime
    stop_timestamp: datetime
    stop_value: str
    stop_reason: str | None
    fail_reason: str


@dataclass
class ChargeBoxRecord:
    """A ``charge_box`` row; ``last_heartbeat`` is server time (CONTRACT §9)."""

    pk: int
    charge_box_id: str
    last_heartbeat: datetime | None


@dataclass(frozen=True)
class TagRecord:
    """An ``ocpp_tag`` row plus its ``user_ocpp_tag`` link."""

    pk: int
    id_tag: str
    user_pk: int | None = None
    parent_id_tag: str | None = None
    expiry_date: datetime | None = None
    max_active_transaction_count: int = 1
    note: str | None = None

    @property
    def blocked(self) -> bool:
        """``ocpp_tag_activity.blocked``: true when no transaction is allowed."""
        return self.max_active_transaction_count == 0

    def is_expired(self, now: datetime) -> bool:
        """SteVe's expiry rule: ``expiry_date <= now``."""
        return self.expiry_date is not None and self.expiry_date <= now


@dataclass
class Reservation:
    """A ``reservation`` row; ``pk`` is the OCPP reservationId."""

    pk: int
    evse: EvseKey
    id_tag: str
    start_datetime: datetime
    expiry_datetime: datetime
    status: ReservationStatus
    status_timestamp: datetime
    transaction_pk: int | None = None

    def is_active(self, now: datetime) -> bool:
        """ACCEPTED and not expired; SteVe has no EXPIRED status (CONTRACT §9)."""
        return self.status == "ACCEPTED" and self.expiry_datetime > now


@dataclass(frozen=True)
class TransactionRow:
    """One item of ``GET /transactions``: a snapshot of the transaction view joined
    with its charge box, tag and user (CONTRACT §4)."""

    pk: int
    charge_box_id: str
    charge_box_pk: int
    connector_id: int
    id_tag: str
    ocpp_tag_pk: int
    user_id: int | None
    start_timestamp: datetime
    start_value: str
    stop: StopEvent | None


@dataclass(frozen=True)
class TransactionDetails:
    """``GET /transactions/{pk}``: the transaction and its attributed readings."""

    transaction: TransactionRow
    values: tuple[Reading, ...]


@dataclass(frozen=True)
class TagRow:
    """One item of ``GET /ocppTags`` (``OcppTag.OcppTagOverview``, CONTRACT §8)."""

    tag: TagRecord
    parent_ocpp_tag_pk: int | None
    active_transaction_count: int


@dataclass(frozen=True)
class TransactionQuery:
    """``TransactionQueryFormForApi`` after binding; empty tuples mean "no filter"."""

    transaction_pks: tuple[int, ...] = ()
    connector_id: int | None = None
    charge_box_ids: tuple[str, ...] = ()
    id_tags: tuple[str, ...] = ()
    user_ids: tuple[int, ...] = ()
    type: str = "ALL"
    period_type: str = "ALL"
    start_from: datetime | None = None
    start_to: datetime | None = None


@dataclass(frozen=True)
class TagQuery:
    """``OcppTagQueryFormForApi`` after binding; None means "no filter"."""

    ocpp_tag_pk: int | None = None
    id_tag: str | None = None
    parent_id_tag: str | None = None
    user_id: int | None = None
    expired: str = "ALL"
    in_transaction: str = "ALL"
    blocked: str = "ALL"
    note: str | None = None
    user_filter: str = "All"


@dataclass(frozen=True)
class CallError:
    """A station's OCPP CallError instead of a CallResult, e.g. NotImplemented
    from a station without the feature."""

    code: str


@dataclass(frozen=True)
class OperationResult:
    """What ``OcppOperationsService`` hands back once the station answered or the
    wait timed out (CONTRACT §7). ``responses`` pairs chargeBoxId and status,
    ``call_errors`` chargeBoxId and the CallError's code."""

    task_id: int
    finished: bool
    responses: tuple[tuple[str, str], ...] = field(default=())
    call_errors: tuple[tuple[str, str], ...] = field(default=())
