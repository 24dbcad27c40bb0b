"""Reads of the Sessions API's chargers: the ones a session can be started on,
a page at a time, with their status and the rate a session there would use.

The chargers, their order and their status are the portal's chargers card's
(`portal.selectors`), so the API and the portal agree on them.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from portal.selectors import (
    ChargerSortKey,
    ListedCharger,
    charger_sort_key,
    charger_status,
    visible_chargers,
)
from sessions_app.api.selectors.sessions import PAGE_SIZE_MAX, InvalidCursor
from sessions_app.models import Rate


@dataclass(frozen=True, slots=True)
class ApiCharger:
    """A charger with its status and the id of the rate a session there would use."""

    charger: ListedCharger
    status: str
    rate_id: int | None


@dataclass(frozen=True, slots=True)
class ChargerPage:
    """One page of chargers and the cursor of the next page."""

    items: list[ApiCharger]
    next_cursor: str | None


def api_charger_list(
    *,
    user: User,
    cursor: str | None = None,
    limit: int = 20,
    now: datetime | None = None,
) -> ChargerPage:
    """The chargers `user` may start a session on, `limit` at a time, in the
    portal's order (friendly name, chargeBoxId, connector), in two queries.

    A customer's are those of the portal's chargers card (public ones and their
    charger groups'); staff's are every charger, as `api_session_create` lets staff
    start on any. Each has the card's status and the rate `Rate.objects.for_charger`
    finds, which a session created now would use. Keyset pagination on the sort
    order. Raises InvalidCursor for a cursor this function did not make.
    """
    now = now or timezone.now()
    limit = max(1, min(limit, PAGE_SIZE_MAX))
    rows = visible_chargers(
        user=user,
        now=now,
        every_charger=user.is_staff,
        after=_decode_charger_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    chargers = rows[:limit]
    rate_ids = Rate.objects.ids_for_chargers([charger.pk for charger in chargers])
    items = [
        ApiCharger(charger, charger_status(charger, now), rate_ids[charger.pk])
        for charger in chargers
    ]
    has_more = len(rows) > limit
    return ChargerPage(
        items=items,
        next_cursor=_encode_charger_cursor(chargers[-1]) if has_more else None,
    )


def api_charger_document(item: ApiCharger) -> dict[str, Any]:
    """A charger of the API: where to start a session, what it is, its status and
    the rate a session there would use."""
    charger = item.charger
    return {
        "chargestation": charger.charge_box_id,
        # A string, as in the session object.
        "connector": str(charger.connector_id),
        "name": charger.friendly_name,
        "connector_type": charger.connector_type or None,
        "max_power_kw": (
            None if charger.max_power_kw is None else float(charger.max_power_kw)
        ),
        "status": item.status,
        "rate": None if item.rate_id is None else str(item.rate_id),
    }


def _encode_charger_cursor(charger: ListedCharger) -> str:
    text = json.dumps(list(charger_sort_key(charger)), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_charger_cursor(cursor: str) -> ChargerSortKey:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        name, box, connector = json.loads(
            base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        )
        if not (_storable_text(name) and _storable_text(box)):
            raise ValueError(cursor)
        if type(connector) is not int:
            raise ValueError(cursor)
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise InvalidCursor(
            "The cursor is not valid; start again without it."
        ) from None
    return name, box, connector


def _storable_text(value: object) -> bool:
    """Text PostgreSQL can compare: a string without NUL characters or a lone
    surrogate (which JSON's escapes can spell)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
