"""Request binding the way SteVe's Spring MVC does it (CONTRACT §2-§4, §8).

Query strings become SteVe's query forms; path variables and ``@RequestParam``
values are converted with Spring's messages. Every failure is an ``ApiError``
carrying the status and message SteVe's ``ApiControllerAdvice`` would answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs

from sync.standin.records import TagQuery, TransactionQuery
from sync.standin.timestamps import parse_timestamp

BINDING_ERROR = "Error understanding the request"
TRANSACTION_TYPES = ("ALL", "ACTIVE", "STOPPED")
PERIOD_TYPES = ("ALL", "TODAY", "LAST_10", "LAST_30", "LAST_90", "FROM_TO")
TRI_STATES = ("ALL", "TRUE", "FALSE")
USER_FILTERS = ("All", "OnlyTagsWithUser", "OnlyTagsWithoutUser")

# SteVe's ChargeBoxIdValidator default regex and @IdTag(maxLength=40).
CHARGE_BOX_ID = re.compile(r"[^=/()<>]*")
ID_TAG = re.compile(r"[a-zA-Z0-9.:_#-]{1,40}")
INT32_RANGE = range(-(2**31), 2**31)
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
# Spring's StringToBooleanConverter, which ignores case.
_TRUE_WORDS = ("true", "on", "yes", "1")
_FALSE_WORDS = ("false", "off", "no", "0")


class ApiError(Exception):
    """An error SteVe answers with an ``ApiErrorResponse`` body (CONTRACT §2)."""

    def __init__(self, status: HTTPStatus, message: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def binding_error() -> ApiError:
    """A ``BindException``: every binding or validation failure reads the same."""
    return ApiError(HTTPStatus.BAD_REQUEST, BINDING_ERROR)


def parse_int32(text: str) -> int:
    """Java's ``Integer.parseInt`` after Spring trimmed the text.

    Raises:
        ValueError: with Java's ``NumberFormatException`` message.
    """
    if _INTEGER.fullmatch(text) is None or int(text) not in INT32_RANGE:
        raise ValueError(f'For input string: "{text}"')
    return int(text)


def parse_boolean(text: str) -> bool:
    """Spring's String-to-boolean conversion. Raises ValueError."""
    word = text.strip().lower()
    if word not in _TRUE_WORDS + _FALSE_WORDS:
        raise ValueError(f"Invalid boolean value [{text}]")
    return word in _TRUE_WORDS


class QueryParams:
    """A query string bound as SteVe's ``WebDataBinder`` binds its forms (§3).

    Strings are trimmed and an empty value counts as absent
    (``StringTrimmerEditor(true)``). A list field given once is split at commas;
    given several times, each value is one item, as Spring does.
    """

    def __init__(self, query: str) -> None:
        self._values = parse_qs(query, keep_blank_values=True)

    def scalar(self, name: str) -> str | None:
        """The value of a single-valued field, or None when absent or blank."""
        values = self._values.get(name)
        if not values:
            return None
        # Spring converts several values for a scalar field into one joined string.
        text = ",".join(values).strip()
        return text or None

    def items(self, name: str) -> list[str]:
        """The values of a list field, repeated or comma-separated."""
        values = self._values.get(name, [])
        if len(values) == 1:
            values = values[0].split(",")
        return [value.strip() for value in values if value.strip()]


def parse_transaction_query(params: QueryParams) -> TransactionQuery:
    """Bind and validate ``TransactionQueryFormForApi`` (CONTRACT §4).

    Raises:
        ApiError: 400 for any binding or validation failure, and for
            ``returnCSV=true`` once everything else bound.
    """
    try:
        query = TransactionQuery(
            transaction_pks=tuple(
                parse_int32(v) for v in params.items("transactionPk")
            ),
            connector_id=_optional(params.scalar("connectorId"), parse_int32),
            charge_box_ids=_matching(params.items("chargeBoxId"), CHARGE_BOX_ID),
            id_tags=_matching(params.items("ocppIdTag"), ID_TAG),
            user_ids=tuple(_positive(parse_int32(v)) for v in params.items("userId")),
            type=_choice(params.scalar("type"), TRANSACTION_TYPES, "ALL"),
            period_type=_choice(params.scalar("periodType"), PERIOD_TYPES, "ALL"),
            start_from=_optional(params.scalar("from"), parse_timestamp),
            start_to=_optional(params.scalar("to"), parse_timestamp),
        )
        return_csv = _optional(params.scalar("returnCSV"), parse_boolean)
    except ValueError as error:
        raise binding_error() from error
    if not _period_is_valid(query):
        raise binding_error()
    if return_csv:
        raise ApiError(
            HTTPStatus.BAD_REQUEST, "returnCSV=true is not supported for API calls"
        )
    return query


def parse_tag_query(params: QueryParams) -> TagQuery:
    """Bind ``OcppTagQueryFormForApi`` (CONTRACT §8). Raises ApiError 400."""
    try:
        return TagQuery(
            ocpp_tag_pk=_optional(params.scalar("ocppTagPk"), parse_int32),
            id_tag=params.scalar("idTag"),
            parent_id_tag=params.scalar("parentIdTag"),
            user_id=_optional(params.scalar("userId"), parse_int32),
            expired=_choice(params.scalar("expired"), TRI_STATES, "ALL"),
            in_transaction=_choice(params.scalar("inTransaction"), TRI_STATES, "ALL"),
            blocked=_choice(params.scalar("blocked"), TRI_STATES, "ALL"),
            note=params.scalar("note"),
            user_filter=_choice(params.scalar("userFilter"), USER_FILTERS, "All"),
        )
    except ValueError as error:
        raise binding_error() from error


def path_transaction_pk(raw: str) -> int:
    """``@PathVariable int transactionPk``. Raises ApiError 400."""
    try:
        return parse_int32(raw)
    except ValueError as error:
        raise _type_mismatch("transactionPk", "int", error) from error


def request_boolean(params: QueryParams, name: str, *, default: bool) -> bool:
    """``@RequestParam(defaultValue=...) boolean``: blank means the default.
    Raises ApiError 400."""
    raw = params.scalar(name)
    try:
        return default if raw is None else parse_boolean(raw)
    except ValueError as error:
        raise _type_mismatch(name, "boolean", error) from error


def _type_mismatch(name: str, java_type: str, error: ValueError) -> ApiError:
    """A ``MethodArgumentTypeMismatchException`` with Spring's message."""
    return ApiError(
        HTTPStatus.BAD_REQUEST,
        f"Method parameter '{name}': Failed to convert value of type "
        f"'java.lang.String' to required type '{java_type}'; {error}",
    )


def _period_is_valid(query: TransactionQuery) -> bool:
    """``@AssertTrue isPeriodFromToCorrect`` and ``isFromToValid``: FROM_TO needs
    both dates, and whenever both are given ``to`` must be after ``from``."""
    low, high = query.start_from, query.start_to
    if low is None or high is None:
        return query.period_type != "FROM_TO"
    return high > low


def _choice(text: str | None, allowed: tuple[str, ...], default: str) -> str:
    # Enum binding is case-sensitive: "ACTIVE" binds, "active" does not.
    if text is None:
        return default
    if text not in allowed:
        raise ValueError(f"Unknown value {text!r}")
    return text


def _optional[T](text: str | None, parse: Callable[[str], T]) -> T | None:
    return None if text is None else parse(text)


def _matching(values: list[str], pattern: re.Pattern[str]) -> tuple[str, ...]:
    if any(pattern.fullmatch(value) is None for value in values):
        raise ValueError(f"Invalid values {values!r}")
    return tuple(values)


def _positive(number: int) -> int:
    if number <= 0:
        raise ValueError(f"{number} is not positive")
    return number
