"""The bodies of ``POST /api/v1/operations/{name}`` (CONTRACT §7).

Each operation reads its ``*Params`` object as Jackson would (type errors are
``NotReadable``, which SteVe answers with a 500), then applies the Bean
Validation annotations of ``api-docs.json`` (400 "Error understanding the
request"), then hands over to ``Fleet``, which runs SteVe's own pre-checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sync.standin.binding import (
    CHARGE_BOX_ID,
    ID_TAG,
    INT32_RANGE,
    binding_error,
    parse_int32,
)
from sync.standin.fleet import Fleet
from sync.standin.records import OperationResult
from sync.standin.timestamps import parse_timestamp, utc_now

JsonObject = dict[str, Any]

TRIGGER_MESSAGES = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)


class NotReadable(Exception):
    """Jackson could not read the body. SteVe's catch-all handler turns Spring's
    ``HttpMessageNotReadableException`` into a 500 (CONTRACT §2)."""


def execute(fleet: Fleet, name: str, body: bytes, *, answered: bool) -> OperationResult:
    """Run operation ``name`` (a key of ``OPERATIONS``) with a raw JSON body.

    Raises:
        NotReadable: the body is not a readable params object.
        ApiError: Bean Validation failed.
        BadRequest: one of SteVe's pre-checks failed.
    """
    return OPERATIONS[name](fleet, _json_object(body), answered)


def _json_object(body: bytes) -> JsonObject:
    """Jackson reading the request body into a params object."""
    if not body.strip():
        raise NotReadable("Required request body is missing")
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise NotReadable(str(error)) from error
    if not isinstance(document, dict):
        raise NotReadable(f"Cannot deserialize from {type(document).__name__} value")
    return document


def _reject_constant(token: str) -> None:
    """Jackson rejects the non-standard NaN and Infinity tokens by default."""
    raise ValueError(f"Non-standard token '{token}'")


def _read_int(document: JsonObject, name: str) -> int | None:
    """An ``Integer`` property as Jackson coerces it: numbers, numeric strings,
    and an empty string as null."""
    value = document.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise NotReadable(
            f"Cannot deserialize value of type `java.lang.Integer` ({name})"
        )
    try:
        number = parse_int32(value) if isinstance(value, str) else int(value)
    except ValueError as error:
        raise NotReadable(f"Cannot deserialize `java.lang.Integer` ({name})") from error
    if number not in INT32_RANGE:
        raise NotReadable(f"Numeric value out of range of int ({name})")
    return number


def _read_str(document: JsonObject, name: str) -> str | None:
    """A ``String`` property."""
    return _coerce_str(document.get(name), name)


def _coerce_str(value: object, name: str) -> str | None:
    """Jackson's String coercion: scalars become text, arrays and objects fail."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise NotReadable(f"Cannot deserialize value of type `java.lang.String` ({name})")


def _read_str_list(document: JsonObject, name: str) -> list[str | None] | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise NotReadable(f"Cannot deserialize value of type `java.util.List` ({name})")
    return [_coerce_str(item, name) for item in value]


def _read_datetime(document: JsonObject, name: str) -> datetime | None:
    """A Joda ``DateTime`` property: ISO text or epoch milliseconds."""
    value = document.get(name)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            return parse_timestamp(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError) as error:
        raise NotReadable(
            f"Cannot deserialize `org.joda.time.DateTime` ({name})"
        ) from error
    raise NotReadable(f"Cannot deserialize `org.joda.time.DateTime` ({name})")


def _read_enum(document: JsonObject, name: str, allowed: tuple[str, ...]) -> str | None:
    # An unknown enum constant fails in Jackson, before validation: a 500.
    value = _read_str(document, name)
    if value is not None and value not in allowed:
        raise NotReadable(f"Cannot deserialize value `{value}`: not one of {allowed}")
    return value


def _one_charge_box(boxes: list[str | None] | None) -> str:
    """``SingleChargePointSelect``: exactly one valid chargeBoxId."""
    if boxes is None or len(boxes) != 1:
        raise binding_error()
    return _charge_box_ids(boxes)[0]


def _charge_box_ids(boxes: list[str | None] | None) -> list[str]:
    """``MultipleChargePointSelect``: at least one, each a valid chargeBoxId."""
    valid = [b for b in boxes or [] if b is not None and CHARGE_BOX_ID.fullmatch(b)]
    if not valid or len(valid) != len(boxes or []):
        raise binding_error()
    return valid


def _id_tag(value: str | None) -> str:
    if value is None or ID_TAG.fullmatch(value) is None:
        raise binding_error()
    return value


def _at_least(number: int | None, low: int) -> int | None:
    if number is not None and number < low:
        raise binding_error()
    return number


def _required[T](value: T | None) -> T:
    if value is None:
        raise binding_error()
    return value


def _remote_start(fleet: Fleet, body: JsonObject, answered: bool) -> OperationResult:
    boxes = _read_str_list(body, "chargeBoxIdList")
    id_tag = _read_str(body, "idTag")
    connector_id = _read_int(body, "connectorId")
    profile_pk = _read_int(body, "chargingProfilePk")
    return fleet.remote_start(
        _one_charge_box(boxes),
        id_tag=_id_tag(id_tag),
        connector_id=_at_least(connector_id, 0),
        charging_profile_pk=_at_least(profile_pk, 0),
        answered=answered,
    )


def _remote_stop(fleet: Fleet, body: JsonObject, answered: bool) -> OperationResult:
    boxes = _read_str_list(body, "chargeBoxIdList")
    transaction_id = _read_int(body, "transactionId")
    return fleet.remote_stop(
        _one_charge_box(boxes),
        transaction_id=_required(transaction_id),
        answered=answered,
    )


def _reserve_now(fleet: Fleet, body: JsonObject, answered: bool) -> OperationResult:
    boxes = _read_str_list(body, "chargeBoxIdList")
    connector_id = _read_int(body, "connectorId")
    expiry = _read_datetime(body, "expiry")
    id_tag = _read_str(body, "idTag")
    box = _one_charge_box(boxes)
    connector_id = _required(_at_least(connector_id, 0))
    expiry = _required(expiry)
    if expiry <= utc_now():  # @Future
        raise binding_error()
    return fleet.reserve_now(
        box,
        connector_id=connector_id,
        expiry=expiry,
        id_tag=_id_tag(id_tag),
        answered=answered,
    )


def _cancel_reservation(
    fleet: Fleet, body: JsonObject, answered: bool
) -> OperationResult:
    boxes = _read_str_list(body, "chargeBoxIdList")
    reservation_id = _read_int(body, "reservationId")
    return fleet.cancel_reservation(
        _one_charge_box(boxes),
        reservation_id=_required(_at_least(reservation_id, 0)),
        answered=answered,
    )


def _trigger_message(fleet: Fleet, body: JsonObject, answered: bool) -> OperationResult:
    boxes = _read_str_list(body, "chargeBoxIdList")
    message = _read_enum(body, "triggerMessage", TRIGGER_MESSAGES)
    connector_id = _read_int(body, "connectorId")
    return fleet.trigger_message(
        _charge_box_ids(boxes),
        message=_required(message),
        connector_id=_at_least(connector_id, 1),
        answered=answered,
    )


OPERATIONS: dict[str, Callable[[Fleet, JsonObject, bool], OperationResult]] = {
    "RemoteStartTransaction": _remote_start,
    "RemoteStopTransaction": _remote_stop,
    "ReserveNow": _reserve_now,
    "CancelReservation": _cancel_reservation,
    "TriggerMessage": _trigger_message,
}
