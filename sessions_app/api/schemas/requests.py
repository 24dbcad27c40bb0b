"""Request schemas of the Sessions API: the bodies and query parameters it reads.

They refuse what they cannot read as meant, rather than guess: a field an object
does not have, a number sent as text or a boolean, a date without a time of day,
meta_data that PostgreSQL could not store or a page of sessions could not carry.
"""

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from ninja import Schema
from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from sessions_app.api.schemas.responses import SessionStatus
from sync.client import format_timestamp

# SteVe's ChargeBoxIdValidator ([^=/()<>]*) without control characters, which
# PostgreSQL text cannot store (NUL) and no station id contains.
CHARGE_BOX_ID = r"^[^\x00-\x1f\x7f=/()<>]{1,255}$"
USER_REF = r"^[^\x00-\x1f\x7f]{1,150}$"
CONNECTOR_MAX = 2_147_483_647
CONNECTOR_TEXT = re.compile(r"^[0-9]{1,10}$")
# The strings CONNECTOR_TEXT lets through that are also within 1..CONNECTOR_MAX,
# written out for the OpenAPI document (a pattern cannot compare numbers).
CONNECTOR_TEXT_IN_RANGE = (
    r"^0*(?:[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}"
    r"|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}"
    r"|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]"
    r"|214748364[0-7])$"
)
CONNECTOR_DESCRIPTION = (
    'The connector id: a number, or the session object\'s string form ("1").'
)
TARGET_MAX = 1_000_000
# The smallest target of each kind: one unit of the decimal places ApiSession
# stores it with; anything smaller would be stored as 0.
TARGET_MIN_MINUTES = 0.01
TARGET_MIN_COST = 0.0001
TARGET_MIN_KWH = 0.001
# A date, then a time of day: pydantic alone would also read numbers as Unix
# timestamps and a bare date as its midnight, which hide mistakes (a `to` date
# meant as the whole day).
# `to` covers its whole millisecond (ApiSessionQuerySet.created_between): the last
# millisecond Python's datetime holds has no next one to end it.
LAST_MILLISECOND = datetime.max.replace(microsecond=999_000, tzinfo=UTC)
# meta_data is returned with every session, in every list item: a cap keeps a page
# of 100 readable, and the depth cap keeps every reader of it (ours, PostgreSQL's
# jsonb, the integrator's JSON parser) far from its recursion limit.
META_DATA_MAX_DEPTH = 32
META_DATA_MAX_BYTES = 16_384
META_DATA_DESCRIPTION = (
    "Any JSON object of yours, returned with the same keys and values; as stored "
    "in JSON, key order and how a number is written (1e20, -0.0) are not kept. "
    f"At most {META_DATA_MAX_DEPTH} levels deep (the object itself is the first) "
    f"and {META_DATA_MAX_BYTES} bytes written as compact UTF-8 JSON; more is a 422."
)
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_UNENCODED_PLUS = re.compile(r"\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}(:?\d{2})?$")


def _date_time_text(value: Any) -> Any:
    """Only ISO 8601 date-times with a time of day."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise PydanticCustomError(
            "date_time_text",
            "must be a date and a time of day, e.g. 2026-03-01T09:00:00Z "
            "(a date alone or a number is not accepted)",
        )
    if _UNENCODED_PLUS.search(value):
        # A query string reads an unencoded + as a space.
        raise PydanticCustomError(
            "date_time_text",
            "has a space where its offset's + should be: write + as %2B in a URL, "
            "e.g. 2026-03-01T09:00:00%2B01:00, or give the time in UTC with Z",
        )
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


def _check_meta_data(value: dict[str, Any]) -> None:
    """Within META_DATA_MAX_DEPTH and META_DATA_MAX_BYTES, and storable."""
    if _nesting_depth(value) > META_DATA_MAX_DEPTH:
        raise PydanticCustomError(
            "meta_data_depth",
            "is nested more than {limit} levels deep",
            {"limit": META_DATA_MAX_DEPTH},
        )
    _check_storable(value)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > META_DATA_MAX_BYTES:
        raise PydanticCustomError(
            "meta_data_size",
            "is {size} bytes as JSON, more than the {limit} it may be",
            {"size": size, "limit": META_DATA_MAX_BYTES},
        )


def _nesting_depth(value: Any) -> int:
    """How many objects and arrays deep `value` goes, counted up to one past
    META_DATA_MAX_DEPTH; without recursion, which a deep value would exhaust."""
    deepest = 0
    pending = [(value, 1)]
    while pending and deepest <= META_DATA_MAX_DEPTH:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _check_storable(value: Any) -> None:
    """JSON that PostgreSQL's jsonb can hold: valid Unicode without NUL characters,
    no NaN/Infinity. JSON's escapes can spell a lone surrogate (`"\\ud800"`), which
    is no character at all and which PostgreSQL refuses."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        if not value.isascii() and not _is_unicode(value):
            raise ValueError(
                "must be valid Unicode: a lone surrogate such as \\ud800 is not a "
                "character"
            )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not contain NaN or Infinity")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key)
            _check_storable(item)
    if isinstance(value, list):
        for item in value:
            _check_storable(item)


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# Bodies and query parameters


class TargetIn(Schema):
    """Targets of a new session; each one is enforced once.

    Numbers are strict: `true` or `"5"` is refused, not read as 1 or 5, and so is a
    field this object does not have (`{"energy_kwh": 10}`), which would otherwise
    start a charge without the limit the caller meant. Targets are
    checked every few seconds (the sync interval, 10 s by default). A max (time,
    cost, energy) stops the charge at the last check before the latest reported
    power would take the session past it (before the station reports its power,
    the charger's maximum power), so it usually ends a little under the max, and
    a max smaller than a few seconds of charging well under it; it can end a
    little over when the power rises after the latest reading or the station is
    slow to act on the stop.
    """

    # A misspelt target must not become a charge without a limit.
    model_config = ConfigDict(extra="forbid")

    time: float | None = Field(
        None,
        strict=True,
        ge=TARGET_MIN_MINUTES,
        le=TARGET_MAX,
        allow_inf_nan=False,
        description="Max session time in minutes (at least 0.01; a finer value is "
        "rounded down to its hundredth, so the session never runs longer than asked).",
    )
    cost: float | None = Field(
        None,
        strict=True,
        ge=TARGET_MIN_COST,
        le=TARGET_MAX,
        allow_inf_nan=False,
        description="Max session cost in the currency of the charger's rate "
        "(at least 0.0001; a finer value is rounded down to its ten-thousandth).",
    )
    energy: float | None = Field(
        None,
        strict=True,
        ge=TARGET_MIN_KWH,
        le=TARGET_MAX,
        allow_inf_nan=False,
        description="Max session energy in kWh (at least 0.001; a finer value is "
        "rounded down to its thousandth).",
    )
    energy_start_time: datetime | None = Field(
        None,
        description="UTC time to start delivering energy (the remote start), at "
        "most 24 hours ahead. A time up to 15 minutes past starts at once; an "
        "older one is refused. Without Z or an offset it is read as UTC. Until it "
        "starts, a scheduled session holds its connector and one of the user's "
        "cards: each card holds one at a time, as it holds one reservation (a 409 "
        "names them when every card holds one), and it is refused (409) while "
        "someone else's reservation holds the connector. When its time comes, the "
        "start is not sent, and the session is cancelled saying why, if the "
        "account, its cards or its access to the charger were withdrawn "
        "meanwhile.",
    )
    energy_stop_time: datetime | None = Field(
        None,
        description="UTC time to stop delivering energy (a remote stop). Without "
        "Z or an offset it is read as UTC.",
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
    """`POST /sessions`: where to charge, and optionally targets and your data.

    A field it does not have is refused (`"targets"` for `"target"`), as ignoring
    it would start a charge without what the caller asked for.
    """

    model_config = ConfigDict(extra="forbid")

    chargestation: str = Field(
        pattern=CHARGE_BOX_ID, description="The SteVe chargeBoxId of the station."
    )
    connector: Annotated[
        int,
        WithJsonSchema(
            {
                "oneOf": [
                    {"type": "integer", "minimum": 1, "maximum": CONNECTOR_MAX},
                    {
                        "type": "string",
                        "pattern": CONNECTOR_TEXT_IN_RANGE,
                        "maxLength": 10,
                    },
                ],
                "description": CONNECTOR_DESCRIPTION,
            }
        ),
    ] = Field(strict=True, ge=1, le=CONNECTOR_MAX, description=CONNECTOR_DESCRIPTION)
    target: TargetIn | None = None
    meta_data: dict[str, Any] | None = Field(None, description=META_DATA_DESCRIPTION)
    user: str | None = Field(
        None,
        pattern=USER_REF,
        description="The id (or username) of the user to charge for (default: "
        "yourself); digits that are one user's id and another's username are a "
        "422 that gives the second one's id. Staff with the permission \"Can "
        "start and stop any customer's "
        'API sessions" (sessions_app.manage_any_session) may name any active user, '
        "which the audit log records; other staff get 403, and a customer who "
        'names anyone else 404 "No such user.".',
    )

    @field_validator("connector", mode="before")
    @classmethod
    def _connector_as_the_session_gives_it(cls, value: Any) -> Any:
        # The session object gives the connector as a string ("1"), the seed's
        # type; sent back as read, it names the same connector. A whole number
        # written with a fraction (1.0) is an integer to JSON Schema, as the
        # document declares it. Any other text, booleans and fractions stay
        # refused by the strict integer check.
        if isinstance(value, str) and CONNECTOR_TEXT.fullmatch(value):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("target", mode="before")
    @classmethod
    def _target_is_an_object(cls, value: Any) -> Any:
        # ninja's Schema reads its fields as attributes of whatever it is given, so
        # a string, list or number would pass as a target with every field empty.
        if value is None or isinstance(value, dict | TargetIn):
            return value
        raise PydanticCustomError(
            "target_type", 'must be an object, e.g. {"energy": 10}'
        )

    @field_validator("meta_data")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_meta_data(value)
        return value


class SessionListQuery(Schema):
    """Filters of `GET /sessions`; `from`/`to` bound createdAt, both inclusive to
    the millisecond (createdAt's precision)."""

    status: SessionStatus | None = None
    chargestation: str | None = Field(None, pattern=CHARGE_BOX_ID)
    from_: datetime | None = Field(
        None,
        alias="from",
        description="Sessions created at or after this date-time (createdAt, "
        "to the millisecond), e.g. 2026-03-01T09:00:00Z; without Z or an offset "
        "it is read as UTC.",
    )
    to: datetime | None = Field(
        None,
        description="Sessions created at or before this date-time (createdAt, "
        "its whole millisecond included); not earlier than `from`; without Z or "
        "an offset it is read as UTC.",
    )
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

    @field_validator("to")
    @classmethod
    def _not_at_the_end_of_time(cls, value: datetime | None) -> datetime | None:
        if value is not None and value >= LAST_MILLISECOND:
            latest = LAST_MILLISECOND - timedelta(milliseconds=1)
            raise PydanticCustomError(
                "out_of_range",
                "is out of range: the latest is {latest}",
                {"latest": format_timestamp(latest)},
            )
        return value

    @field_validator("to")
    @classmethod
    def _not_before_from(
        cls, value: datetime | None, info: ValidationInfo
    ) -> datetime | None:
        start = info.data.get("from_")
        if value is not None and start is not None and value < start:
            raise PydanticCustomError("period_order", "must not be earlier than from")
        return value


class ChargerListQuery(Schema):
    """`GET /chargers`: a page of chargers."""

    cursor: str | None = Field(
        None,
        # Long enough for the friendly name and chargeBoxId it carries.
        pattern=r"^[A-Za-z0-9_-]{1,2048}$",
        description="`next_cursor` of the previous page.",
    )
    limit: int = Field(20, ge=1, le=100)
