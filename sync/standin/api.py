"""SteVe's REST API over the fleet, apart from the HTTP plumbing.

One function per endpoint: bind the request (``binding.py``, ``operations.py``),
ask the fleet, and render the answer as Jackson writes it for SteVe (CONTRACT
§3-§8). SteVe's exceptions become ``ApiError``; ``server.py`` writes the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

from sync.standin import operations
from sync.standin.binding import (
    ApiError,
    QueryParams,
    parse_tag_query,
    parse_transaction_query,
    path_transaction_pk,
    request_boolean,
)
from sync.standin.fleet import Fleet
from sync.standin.records import (
    BadRequest,
    NotFound,
    OperationResult,
    Reading,
    TagRow,
    TransactionRow,
)
from sync.standin.timestamps import format_timestamp, utc_now

JsonObject = dict[str, Any]
OPERATION_NAMES = frozenset(operations.OPERATIONS)


@contextmanager
def _steve_exceptions() -> Iterator[None]:
    """Map the fleet's SteveException equivalents to their HTTP answers."""
    try:
        yield
    except NotFound as error:
        raise ApiError(HTTPStatus.NOT_FOUND, str(error)) from error
    except BadRequest as error:
        raise ApiError(HTTPStatus.BAD_REQUEST, str(error)) from error
    except operations.NotReadable as error:
        raise ApiError(
            HTTPStatus.INTERNAL_SERVER_ERROR, f"JSON parse error: {error}"
        ) from error


# -- endpoints ------------------------------------------------------------------


def get_transactions(fleet: Fleet, params: QueryParams) -> list[JsonObject]:
    """``GET /api/v1/transactions``."""
    query = parse_transaction_query(params)
    return [transaction_json(row) for row in fleet.transactions(query)]


def get_transaction_details(
    fleet: Fleet, raw_pk: str, params: QueryParams
) -> JsonObject:
    """``GET /api/v1/transactions/{pk}?energyValuesOnly=`` (CONTRACT §5)."""
    pk = path_transaction_pk(raw_pk)
    energy_only = request_boolean(params, "energyValuesOnly", default=True)
    with _steve_exceptions():
        details = fleet.transaction_details(pk, energy_values_only=energy_only)
    return {
        "transaction": transaction_json(details.transaction),
        "values": [meter_value_json(reading) for reading in details.values],
    }


def stop_transaction(fleet: Fleet, raw_pk: str) -> None:
    """``PATCH /api/v1/transactions/{pk}/stop`` (CONTRACT §6)."""
    pk = path_transaction_pk(raw_pk)
    with _steve_exceptions():
        fleet.stop_manually(pk)


def get_tags(fleet: Fleet, params: QueryParams) -> list[JsonObject]:
    """``GET /api/v1/ocppTags``."""
    return [tag_json(row) for row in fleet.tags(parse_tag_query(params))]


def run_operation(
    fleet: Fleet, name: str, body: bytes, *, answered: bool
) -> JsonObject:
    """``POST /api/v1/operations/{name}`` for a name in ``OPERATION_NAMES``.

    Jackson reads the whole body first (failures: 500), then Bean Validation
    runs (400 "Error understanding the request"), then SteVe's pre-checks
    (400 with their own message), then the station is asked (CONTRACT §7).
    """
    with _steve_exceptions():
        result = operations.execute(fleet, name, body, answered=answered)
    return operation_json(result)


# -- JSON rendering ---------------------------------------------------------------
# Jackson 3 sorts POJO properties alphabetically; MeterValues has an explicit
# @JsonPropertyOrder and records keep declaration order (CONTRACT §3). Nulls are
# always written.


def transaction_json(row: TransactionRow) -> JsonObject:
    """A ``Transaction`` item (CONTRACT §4)."""
    stop = row.stop
    return {
        "chargeBoxId": row.charge_box_id,
        "chargeBoxPk": row.charge_box_pk,
        "connectorId": row.connector_id,
        "id": row.pk,
        "ocppIdTag": row.id_tag,
        "ocppTagPk": row.ocpp_tag_pk,
        "startTimestamp": format_timestamp(row.start_timestamp),
        "startValue": row.start_value,
        "stopEventActor": stop.actor if stop else None,
        "stopReason": stop.stop_reason if stop else None,
        "stopTimestamp": format_timestamp(stop.stop_timestamp) if stop else None,
        "stopValue": stop.stop_value if stop else None,
        "userId": row.user_id,
    }


def meter_value_json(reading: Reading) -> JsonObject:
    """A ``MeterValues`` item, values exactly as the station sent them (§5)."""
    return {
        "valueTimestamp": format_timestamp(reading.value_timestamp),
        "value": reading.value,
        "readingContext": reading.reading_context,
        "format": reading.format,
        "measurand": reading.measurand,
        "location": reading.location,
        "unit": reading.unit,
        "phase": reading.phase,
    }


def tag_json(row: TagRow) -> JsonObject:
    """An ``OcppTagOverview`` item (CONTRACT §8)."""
    tag = row.tag
    return {
        "activeTransactionCount": row.active_transaction_count,
        "blocked": tag.blocked,
        "expiryDate": format_timestamp(tag.expiry_date) if tag.expiry_date else None,
        "idTag": tag.id_tag,
        "inTransaction": row.active_transaction_count > 0,
        "maxActiveTransactionCount": tag.max_active_transaction_count,
        "note": tag.note,
        "ocppTagPk": tag.pk,
        "parentIdTag": tag.parent_id_tag,
        "parentOcppTagPk": row.parent_ocpp_tag_pk,
        "userPk": tag.user_pk,
    }


def operation_json(result: OperationResult) -> JsonObject:
    """An ``OcppOperationResponse`` record. The stations here are always reached,
    so ``exceptions`` stays empty."""
    return {
        "taskId": result.task_id,
        "taskFinished": result.finished,
        "successResponses": [
            {"chargeBoxId": box, "response": response}
            for box, response in result.responses
        ],
        "errorResponses": [
            {
                "chargeBoxId": box,
                "errorCode": code,
                "errorDescription": "Requested Action is not known by receiver",
                "errorDetails": "{}",
            }
            for box, code in result.call_errors
        ],
        "exceptions": [],
    }


def error_json(status: HTTPStatus, message: str | None, url: str) -> JsonObject:
    """An ``ApiErrorResponse``; ``url`` is the request URL without query string."""
    return {
        "error": status.phrase,
        "message": message,
        "path": url,
        "status": status.value,
        "timestamp": format_timestamp(utc_now()),
    }
