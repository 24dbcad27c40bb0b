"""Read models of the portal pages, always scoped to one customer.

The dashboard's read model is here; its parts are in `sessions`, `usage` and
`chargers`, whose names this package re-exports for its callers.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from zoneinfo import ZoneInfo

from django.contrib.auth.models import User

from portal.selectors.chargers import (
    CHARGER_LIST_SQL,
    MAX_CHARGERS,
    ChargerAnnotations,
    ChargerList,
    ChargerSortKey,
    ListedCharger,
    charger_list,
    charger_sort_key,
    charger_status,
    own_charges,
    visible_chargers,
)
from portal.selectors.sessions import (
    FAILED_START_SHOWN_FOR,
    RECENT_SESSIONS,
    ActiveSession,
    ChargingCards,
    StartNotice,
    SyncCheck,
    active_sessions,
    active_sessions_by_customer,
    charging_cards,
    customer_tags,
    next_reservation,
    own_scheduled_start,
    own_start_at,
    recent_sessions,
    start_notices,
    start_notices_by_customer,
    sync_check,
    tags_by_customer,
)
from portal.selectors.usage import (
    DEFAULT_PERIOD,
    PERIOD_LABELS,
    Period,
    PlanUse,
    Usage,
    UsageCards,
    billing_period,
    energy_by_day,
    parse_period,
    period_note,
    plan_use,
    usage_cards,
)
from sync.models import SyncRun

__all__ = [
    "CHARGER_LIST_SQL",
    "DEFAULT_PERIOD",
    "FAILED_START_SHOWN_FOR",
    "MAX_CHARGERS",
    "PERIOD_LABELS",
    "RECENT_SESSIONS",
    "ActiveSession",
    "ChargerAnnotations",
    "ChargerList",
    "ChargerSortKey",
    "ChargingCards",
    "Dashboard",
    "ListedCharger",
    "Period",
    "PlanUse",
    "StartNotice",
    "SyncCheck",
    "Usage",
    "UsageCards",
    "active_sessions",
    "active_sessions_by_customer",
    "billing_period",
    "charger_list",
    "charger_sort_key",
    "charger_status",
    "charging_cards",
    "customer_tags",
    "energy_by_day",
    "next_reservation",
    "own_charges",
    "own_scheduled_start",
    "own_start_at",
    "parse_period",
    "period_note",
    "plan_use",
    "recent_sessions",
    "start_notices",
    "start_notices_by_customer",
    "sync_check",
    "tags_by_customer",
    "usage_cards",
    "visible_chargers",
]


@dataclass(frozen=True)
class Dashboard:
    """The customer dashboard's read model. Each part reads only what it shows,
    so a part's own htmx request (a live update, a period chip) costs that part
    alone; the whole page is every part."""

    customer: User
    zone: ZoneInfo
    period: str | None
    now: datetime

    @cached_property
    def charging_cards(self) -> ChargingCards:
        return charging_cards(customer=self.customer)

    def recent_activity(self) -> dict[str, object]:
        tags = self.charging_cards.tags
        return {"tags": tags, "recent": recent_sessions(tags=tags, now=self.now)}

    def active_banner(self) -> dict[str, object]:
        customer, now = self.customer, self.now
        active = active_sessions(
            customer=customer, tags=self.charging_cards.tags, now=now
        )
        return {
            "active": active,
            "start_notices": start_notices(customer=customer, now=now),
            # Said only beside a charge, so asked only then.
            "sync_check": sync_check(
                active=active, reads=SyncRun.objects.latest_reads(), now=now
            )
            if active
            else None,
        }

    def chargers(self) -> dict[str, object]:
        chargers = charger_list(customer=self.customer, now=self.now)
        return {
            "can_charge": self.charging_cards.any_active,
            "chargers": chargers,
            "own_charges": own_charges(
                customer=self.customer,
                tags=self.charging_cards.tags,
                rows=chargers.rows,
                now=self.now,
            ),
        }

    def next_reservation(self) -> dict[str, object]:
        return {"reservation": next_reservation(customer=self.customer, now=self.now)}

    def usage(self) -> dict[str, object]:
        cards = usage_cards(
            customer=self.customer,
            tags=self.charging_cards.tags,
            zone=self.zone,
            now=self.now,
            period_name=parse_period(self.period),
        )
        return {
            "cards": cards,
            "period_note": period_note(self.period),
            # What the address asked for: the card's live re-reads ask it again,
            # so a period that was not understood stays explained.
            "period_asked": self.period or cards.usage.period.name,
            "period_labels": PERIOD_LABELS,
        }

    def whole_page(self) -> dict[str, object]:
        return {
            **self.usage(),
            **self.chargers(),
            **self.active_banner(),
            **self.recent_activity(),
            **self.next_reservation(),
        }
