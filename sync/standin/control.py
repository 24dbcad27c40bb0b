"""The stand-in's control API under ``/_standin/``: no auth, JSON in and out.

Not part of SteVe. Tests and the demo use it to reset the fleet, play the
stations' side (start, meter values, stop), move time, switch stations on and
off and arm faults. Field names are the ones documented in ``testing.py``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

from sync.arguments import MAX_FLEET_SIZE
from sync.standin.faults import Fault, FaultBoard, fault_kind
from sync.standin.fleet import Fleet
from sync.standin.records import SAMPLE_PERIODIC, NotFound, Reading
from sync.standin.simulation import UnknownStation
from sync.standin.timestamps import parse_timestamp, utc_now

JsonObject = dict[str, Any]


class ControlError(Exception):
    """A control request that cannot be carried out; answered as ``{"error"}``."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestCounter:
    """Requests seen per path (query string excluded), the latest SteVe API
    request targets with their query strings, and connections that carried SteVe
    API requests, for tests that check how a client calls SteVe."""

    # A live stand-in serves requests for days: only the latest targets are kept.
    API_TARGETS_KEPT = 1000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._api_targets: deque[str] = deque(maxlen=self.API_TARGETS_KEPT)
        self._api_connections = 0

    def count(self, path: str) -> None:
        """Record one request to ``path``."""
        with self._lock:
            self._counts[path] += 1

    def record_api_target(self, target: str) -> None:
        """Record a SteVe API request's target (path and query string)."""
        with self._lock:
            self._api_targets.append(target)

    def api_targets(self) -> list[str]:
        """The latest SteVe API request targets, oldest first."""
        with self._lock:
            return list(self._api_targets)

    def count_api_connection(self) -> None:
        """Record a connection's first SteVe API request."""
        with self._lock:
            self._api_connections += 1

    def api_connections(self) -> int:
        """Connections that carried SteVe API requests so far."""
        with self._lock:
            return self._api_connections

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()
            self._api_targets.clear()
            self._api_connections = 0

    def snapshot(self) -> dict[str, int]:
        """The counts so far."""
        with self._lock:
            return dict(self._counts)


class Payload:
    """A JSON request body read field by field; wrong types are a 400."""

    def __init__(self, document: object, name: str = "body") -> None:
        if not isinstance(document, dict):
            raise ControlError(HTTPStatus.BAD_REQUEST, f"{name} must be a JSON object")
        self._document: JsonObject = document

    @classmethod
    def parse(cls, body: bytes) -> Payload:
        """Read a request body; an empty body is an empty object."""
        try:
            return cls(json.loads(body) if body.strip() else {})
        except (UnicodeDecodeError, ValueError) as error:
            raise ControlError(
                HTTPStatus.BAD_REQUEST, f"Invalid JSON: {error}"
            ) from error

    def has(self, name: str) -> bool:
        """Whether ``name`` is present, even with a null value."""
        return name in self._document

    def integer(self, name: str) -> int | None:
        """An integer field; numeric strings such as ``"152300"`` are accepted."""
        value = self._document.get(name)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._invalid(name, "an integer")

    def number(self, name: str, default: float) -> float:
        """A numeric field."""
        value = self._document.get(name, default)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self._invalid(name, "a number")

    def flag(self, name: str) -> bool | None:
        """A boolean field."""
        value = self._document.get(name)
        if value is None or isinstance(value, bool):
            return value
        raise self._invalid(name, "true or false")

    def text(self, name: str) -> str | None:
        """A string field; numbers are accepted and kept as written."""
        value = self._document.get(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise self._invalid(name, "a string")

    def moment(self, name: str) -> datetime | None:
        """An ISO 8601 timestamp field (a missing zone means UTC)."""
        value = self.text(name)
        try:
            return None if value is None else parse_timestamp(value)
        except ValueError as error:
            raise self._invalid(name, "an ISO 8601 timestamp") from error

    def objects(self, name: str) -> list[Payload]:
        """A list of objects."""
        value = self._document.get(name)
        if not isinstance(value, list):
            raise self._invalid(name, "a list")
        return [Payload(item, name) for item in value]

    def require_text(self, name: str) -> str:
        """A string field that must be present."""
        return self._present(name, self.text(name))

    def require_integer(self, name: str) -> int:
        """An integer field that must be present."""
        return self._present(name, self.integer(name))

    @staticmethod
    def _present[T](name: str, value: T | None) -> T:
        if value is None:
            raise ControlError(HTTPStatus.BAD_REQUEST, f"{name} is required")
        return value

    @staticmethod
    def _invalid(name: str, expected: str) -> ControlError:
        return ControlError(HTTPStatus.BAD_REQUEST, f"{name} must be {expected}")


@dataclass(frozen=True)
class FleetDefaults:
    """What ``POST /_standin/reset`` uses for fields it is not given."""

    fleet_size: int
    seed: int
    scenarios: bool


class Control:
    """Routes and carries out control API requests."""

    def __init__(
        self,
        fleet: Fleet,
        faults: FaultBoard,
        counter: RequestCounter,
        defaults: FleetDefaults,
    ) -> None:
        self._fleet = fleet
        self._faults = faults
        self._counter = counter
        self._defaults = defaults

    def handle(self, method: str, segments: list[str], body: bytes) -> JsonObject:
        """Answer ``method /_standin/<segments>``. Raises ``ControlError``."""
        try:
            return self._route(method, segments, body)
        except (NotFound, UnknownStation) as error:
            raise ControlError(HTTPStatus.NOT_FOUND, str(error)) from error

    def _route(self, method: str, segments: list[str], body: bytes) -> JsonObject:
        match method, segments:
            case "GET", ["health"]:
                return {"ok": True}
            case "GET", ["state"]:
                return self.state()
            case "POST", ["reset"]:
                return self._reset(Payload.parse(body))
            case "POST", ["tick"]:
                return self._tick(Payload.parse(body))
            case "POST", ["transactions"]:
                return self._start(Payload.parse(body))
            case "POST", ["transactions", pk, "meter"]:
                return self._meter(_pk(pk), Payload.parse(body))
            case "POST", ["transactions", pk, "stop"]:
                return self._stop(_pk(pk), Payload.parse(body))
            case "DELETE", ["transactions", pk]:
                return self._delete(_pk(pk))
            case "POST", ["fault"]:
                return self._arm(Payload.parse(body))
            case "DELETE", ["fault"]:
                self._faults.clear()
                return {"faults": []}
            case "POST", ["stations", charge_box_id]:
                return self._station(charge_box_id, Payload.parse(body))
        raise ControlError(
            HTTPStatus.NOT_FOUND, f"No control endpoint {method} {segments}"
        )

    def state(self) -> JsonObject:
        """The fleet snapshot plus request counts and armed faults."""
        return {
            **self._fleet.snapshot(),
            "requests": self._counter.snapshot(),
            "apiConnections": self._counter.api_connections(),
            "apiRequests": self._counter.api_targets(),
            "faults": self._faults.describe(),
        }

    def _reset(self, payload: Payload) -> JsonObject:
        fleet_size = payload.integer("fleet_size") or self._defaults.fleet_size
        if not 1 <= fleet_size <= MAX_FLEET_SIZE:
            raise ControlError(
                HTTPStatus.BAD_REQUEST, f"fleet_size must be 1-{MAX_FLEET_SIZE}"
            )
        seed = payload.integer("seed")
        scenarios = payload.flag("scenarios")
        self._fleet.reset(
            fleet_size=fleet_size,
            seed=self._defaults.seed if seed is None else seed,
            scenarios=self._defaults.scenarios if scenarios is None else scenarios,
        )
        # A reset is a clean slate for the next test: no faults, no counts.
        self._faults.clear()
        self._counter.clear()
        return self.state()

    def _tick(self, payload: Payload) -> JsonObject:
        seconds = payload.number("seconds", 0.0)
        if seconds < 0:
            raise ControlError(HTTPStatus.BAD_REQUEST, "seconds must not be negative")
        report = self._fleet.tick(seconds)
        return {"started": list(report.started), "stopped": list(report.stopped)}

    def _start(self, payload: Payload) -> JsonObject:
        pk = self._fleet.start_transaction(
            charge_box_id=payload.require_text("chargeBoxId"),
            connector_id=payload.require_integer("connectorId"),
            id_tag=payload.require_text("idTag"),
            start_timestamp=payload.moment("startTimestamp"),
            start_value=payload.integer("startValue"),
        )
        return {"id": pk}

    def _meter(self, pk: int, payload: Payload) -> JsonObject:
        readings = [_reading(item) for item in payload.objects("values")]
        stored, dropped = self._fleet.add_readings(pk, readings)
        return {"stored": stored, "dropped": dropped}

    def _stop(self, pk: int, payload: Payload) -> JsonObject:
        reason = payload.text("stopReason") if payload.has("stopReason") else "Local"
        failure = self._fleet.stop_by_station(
            pk,
            stop_value=payload.integer("stopValue"),
            stop_timestamp=payload.moment("stopTimestamp"),
            stop_reason=reason,
        )
        return {"accepted": failure is None, "reason": failure}

    def _delete(self, pk: int) -> JsonObject:
        if not self._fleet.delete_transaction(pk):
            raise ControlError(
                HTTPStatus.NOT_FOUND, f"There is no transaction with id '{pk}'"
            )
        return {"deleted": True}

    def _arm(self, payload: Payload) -> JsonObject:
        count, status = payload.integer("count"), payload.integer("status")
        try:
            fault = Fault(
                kind=fault_kind(payload.require_text("kind")),
                remaining=1 if count is None else count,
                delay=payload.number("delay", 1.0),
                status=500 if status is None else status,
                path_contains=payload.text("path_contains"),
            )
        except ValueError as error:
            raise ControlError(HTTPStatus.BAD_REQUEST, str(error)) from error
        self._faults.arm(fault)
        return {"faults": self._faults.describe()}

    def _station(self, charge_box_id: str, payload: Payload) -> JsonObject:
        self._fleet.configure_station(
            charge_box_id,
            online=payload.flag("online"),
            reject_remote_start=payload.flag("rejectRemoteStart"),
            trigger_answer=_trigger_answer(payload.text("triggerAnswer")),
        )
        return {"ok": True}


TRIGGER_ANSWERS = ("Accepted", "Rejected", "NotImplemented")


def _trigger_answer(raw: str | None) -> str | None:
    if raw is not None and raw not in TRIGGER_ANSWERS:
        raise ControlError(
            HTTPStatus.BAD_REQUEST,
            f"triggerAnswer must be one of {', '.join(TRIGGER_ANSWERS)}",
        )
    return raw


def _pk(raw: str) -> int:
    if not raw.isdigit():
        raise ControlError(HTTPStatus.BAD_REQUEST, f"Not a transaction pk: {raw!r}")
    return int(raw)


def _reading(item: Payload) -> tuple[Reading, bool]:
    """One ``values`` item: a sampled value and whether it names the transaction.

    Absent attributes get a periodic energy-register sample's defaults; an
    explicit null stays null (as OCPP 1.2 readings are stored).
    """
    value = item.require_text("value")

    def attribute(name: str, default: str) -> str | None:
        return item.text(name) if item.has(name) else default

    names_transaction = item.flag("transaction")
    return (
        Reading(
            value=value,
            value_timestamp=item.moment("valueTimestamp") or utc_now(),
            reading_context=attribute("readingContext", SAMPLE_PERIODIC),
            format=attribute("format", "Raw"),
            measurand=attribute("measurand", "Energy.Active.Import.Register"),
            location=attribute("location", "Outlet"),
            unit=attribute("unit", "Wh"),
            phase=item.text("phase"),
        ),
        names_transaction is not False,
    )
