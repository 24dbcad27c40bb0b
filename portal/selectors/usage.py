"""The usage and plan cards: billing periods, energy per day and the plan's
included energy. Split from the dashboard's read model (`portal.selectors`):
the period chips re-read this card alone."""

from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth.models import User
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils.text import Truncator

from portal.billing import BillingAccount, billing_account
from portal.charts import DailyChart, daily_chart
from sync import rollups
from sync.models import SyncedTransactionEvent

# The billing periods a customer can pick on the dashboard, in the order of its
# chips, with their labels.
PERIOD_LABELS = {
    "current": "Current period",
    "previous": "Previous period",
    "year": "This year",
}


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    start: date
    end: date  # exclusive

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def label(self) -> str:
        return PERIOD_LABELS[self.name]


DEFAULT_PERIOD = "current"


def parse_period(value: str | None) -> str:
    """One of PERIOD_LABELS; anything else falls back to DEFAULT_PERIOD."""
    return value if value in PERIOD_LABELS else DEFAULT_PERIOD


def period_note(value: str | None) -> str | None:
    """What to tell a customer whose `?period=` was not understood, or None."""
    if not value or value in PERIOD_LABELS:
        return None
    *others, last = PERIOD_LABELS
    return (
        f"“{Truncator(value).chars(40)}” is not a period ({', '.join(others)} or "
        f"{last}); "
        "showing the current billing period."
    )


def _anchor_in(year: int, month: int, anchor_day: int) -> date:
    """The month's `anchor_day`, or its last day when it has none (the 29th to
    the 31st)."""
    return date(year, month, min(anchor_day, monthrange(year, month)[1]))


def _month_of(day: date, months: int) -> tuple[int, int]:
    """The year and month `months` after `day`'s."""
    index = day.year * 12 + day.month - 1 + months
    return index // 12, index % 12 + 1


def billing_period(
    *, name: str, anchor_day: int, today: date, plan_started_on: date | None = None
) -> Period:
    """The period `name` around `today`: billing periods start on `anchor_day`,
    or on the last day of a month without it; a plan's first period starts when
    the plan did (`plan_started_on`). `year` is the calendar year."""
    if name == "year":
        return Period(name, date(today.year, 1, 1), date(today.year + 1, 1, 1))
    start, end = _period_holding(today, anchor_day, plan_started_on)
    if name == "previous":
        # It ends where the current one starts: a plan begun mid-month leaves
        # the month's days before it in the previous period, not in neither.
        before = start - timedelta(days=1)
        start, end = _period_holding(before, anchor_day, plan_started_on)[0], start
    return Period(name, start, end)


def _period_holding(
    day: date, anchor_day: int, plan_started_on: date | None
) -> tuple[date, date]:
    back = 0 if day >= _anchor_in(day.year, day.month, anchor_day) else 1
    start = _anchor_in(*_month_of(day, -back), anchor_day)
    end = _anchor_in(*_month_of(day, 1 - back), anchor_day)
    if plan_started_on is not None and start < plan_started_on <= day:
        start = plan_started_on
    return start, end


@dataclass(frozen=True, slots=True)
class Usage:
    period: Period
    total_kwh: Decimal
    chart: DailyChart


def energy_by_day(
    *, tags: list[str], first_day: date, end_day: date, zone: ZoneInfo
) -> dict[date, Decimal]:
    """kWh of these tags per day in `zone`, from `first_day` up to `end_day`,
    bucketed by the day of each meter reading, so a session across midnight counts
    on both days."""
    by_day = rollups.tag_energy_by_day(
        tags=tags, first_day=first_day, end_day=end_day, zone=zone
    )
    if by_day is None:
        by_day = _energy_by_day_from_events(
            tags=tags, first_day=first_day, end_day=end_day, zone=zone
        )
    return by_day


def _usage(period: Period, by_day: dict[date, Decimal]) -> Usage:
    total = sum(
        (kwh for day, kwh in by_day.items() if period.start <= day < period.end),
        Decimal(0),
    )
    chart = daily_chart(first_day=period.start, end_day=period.end, kwh_by_day=by_day)
    return Usage(period=period, total_kwh=total, chart=chart)


def _energy_by_day_from_events(
    *, tags: list[str], first_day: date, end_day: date, zone: ZoneInfo
) -> dict[date, Decimal]:
    start = datetime.combine(first_day, time.min, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(end_day, time.min, tzinfo=zone).astimezone(UTC)
    rows = (
        SyncedTransactionEvent.objects.filter(
            ocpp_id_tag__in=tags, reading_at__gte=start, reading_at__lt=end
        )
        .annotate(day=TruncDate("reading_at", tzinfo=zone))
        .values_list("day")
        .annotate(kwh=Sum("kwh_delta"))
        .order_by()
    )
    return dict(rows)


@dataclass(frozen=True, slots=True)
class PlanUse:
    """The plan card's energy of the current billing period against the plan's
    included amount, in the tenths of a kWh the card shows, so that what it says
    adds up: `used` is `left` short of `included`, or `over` beyond it."""

    used_kwh: Decimal
    included_kwh: Decimal
    left_kwh: Decimal
    over_kwh: Decimal
    percent: int  # of the included amount used, 0 to 100: the bar never overflows


def plan_use(*, used_kwh: Decimal, included_kwh: Decimal) -> PlanUse:
    """`used_kwh` against a positive `included_kwh`, both rounded to 0.1 kWh."""
    tenth = Decimal("0.1")
    # Half up, as the usage card's floatformat rounds the same energy: 258.85 kWh
    # reads 258.9 on both cards, not 258.8 on this one (Decimal's half even).
    used = used_kwh.quantize(tenth, ROUND_HALF_UP)
    included = included_kwh.quantize(tenth, ROUND_HALF_UP)
    percent = min(100, max(0, round(used / included * 100)))
    if used < included and percent == 100:
        percent = 99  # a full bar would say none is left
    return PlanUse(
        used_kwh=used,
        included_kwh=included,
        left_kwh=max(included - used, Decimal("0.0")),
        over_kwh=max(used - included, Decimal("0.0")),
        percent=percent,
    )


@dataclass(frozen=True, slots=True)
class UsageCards:
    """The usage card of the chosen period and the plan card (None when billing
    has no plan for the customer or failed)."""

    usage: Usage
    account: "BillingAccount | None"
    plan_used_kwh: Decimal

    @property
    def plan(self) -> PlanUse | None:
        """The current period's use of the plan's included energy; None without
        a plan or without included energy (shown to a tenth of a kWh, less is
        none)."""
        if self.account is None or not self.account.included_kwh:
            return None
        if self.account.included_kwh < Decimal("0.05"):
            return None
        return plan_use(
            used_kwh=self.plan_used_kwh, included_kwh=self.account.included_kwh
        )


def usage_cards(
    *,
    customer: User,
    tags: list[str],
    zone: ZoneInfo,
    period_name: str,
    now: datetime,
) -> UsageCards:
    """Billing periods follow the plan's anchor day (calendar months without a
    plan, or when billing is down) from the day it began; the plan card counts
    the current period. Both are the customer's own days, in `zone`."""
    today = now.astimezone(zone).date()
    account = billing_account(user=customer, today=today).account
    period, current = (
        billing_period(
            name=name,
            anchor_day=account.anchor_day if account else 1,
            today=today,
            plan_started_on=account.started_on if account else None,
        )
        for name in (period_name, "current")
    )
    # One read covers the chosen period and, for the plan card, the current one.
    by_day = energy_by_day(
        tags=tags,
        first_day=min(period.start, current.start),
        end_day=max(period.end, current.end),
        zone=zone,
    )
    chosen = _usage(period, by_day)
    plan_used = sum(
        (kwh for day, kwh in by_day.items() if current.start <= day < current.end),
        Decimal(0),
    )
    return UsageCards(usage=chosen, account=account, plan_used_kwh=plan_used)
