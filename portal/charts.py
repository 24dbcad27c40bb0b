"""Server-rendered daily usage bars (SVG) with the numbers for an accessible table."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
HEIGHT = 142
TOP = 8
# Room for the baseline's stroke only: the axis dates are HTML below the SVG.
BOTTOM = 2
# A day with any energy shows, however small beside the busiest (about 2 px).
MIN_BAR_HEIGHT = 3.0
MIN_SLOT_WITH_GAP = 4.0
# A year's day is 1.75 units, under a pixel on a phone: its bar is drawn wider,
# centred on its day (1.5 px there), overlapping the empty days beside it.
MIN_BAR_WIDTH = 3.0


# Day names as strftime gives them, looked up rather than formatted: a year's
# chart names 365 days twice.
MONTH_NAMES = tuple(date(2001, month, 1).strftime("%b") for month in range(1, 13))
WEEKDAY_NAMES = tuple(date(2001, 1, day).strftime("%a") for day in range(1, 8))
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class DailyChart:
    """A period's daily bars as SVG marks, and the same numbers as table rows.

    Both are built here rather than in template loops: a year is up to 365 bars,
    and the template engine would spend more time on them than the page spends on
    its queries. Every value in them is a number or a date we format, so nothing
    needs escaping.
    """

    first_day: date
    last_day: date
    max_kwh: Decimal
    bar_marks: SafeString  # a <rect> titled with its numbers per day with energy
    table_rows: SafeString  # a <tr> per day with energy, for screen readers
    # A calendar year's axis names its months (12 equal columns: the months
    # differ by 3 days at most); other periods name their first and last day.
    month_ticks: tuple[str, ...] = ()
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - BOTTOM
    top: int = TOP  # where the day with the most energy reaches

    @property
    def has_energy(self) -> bool:
        return bool(self.table_rows)


def daily_chart(
    *, first_day: date, end_day: date, kwh_by_day: Mapping[date, Decimal]
) -> DailyChart:
    """One slot per day from `first_day` up to `end_day` (exclusive); a day with
    energy gets a bar scaled to the largest day, the others stay empty."""
    used = sorted(
        (day, kwh)
        for day, kwh in kwh_by_day.items()
        if first_day <= day < end_day and kwh > 0
    )
    max_kwh = max((kwh for _, kwh in used), default=Decimal(0))
    slot = WIDTH / max((end_day - first_day).days, 1)
    # A year's slots are under 2 units (about a pixel on a phone): a gap there
    # would leave hairlines, so its bars touch.
    gap = min(slot * 0.2, 2.0) if slot >= MIN_SLOT_WITH_GAP else 0.0
    width = round(max(slot - gap, MIN_BAR_WIDTH), 2)
    # Where a bar starts within its day's slot: centred when wider than it.
    inset = (slot - width) / 2
    # Geometry in floats: a year is 365 bars, and Decimal division is slow.
    scale = (HEIGHT - TOP - BOTTOM) / float(max_kwh) if max_kwh > 0 else 0.0
    baseline = float(HEIGHT - BOTTOM)
    marks = []
    rows = []
    for day, kwh in used:
        # Inside the chart at either end.
        x = round(
            min(max((day - first_day).days * slot + inset, 0.0), WIDTH - width), 2
        )
        height = round(max(float(kwh) * scale, MIN_BAR_HEIGHT), 2)
        name = f"{MONTH_NAMES[day.month - 1]} {day.day}"
        kwh_text = str(kwh.quantize(CENT, ROUND_HALF_UP))
        marks.append(
            f'<rect class="chart__bar" x="{x}" y="{round(baseline - height, 2)}" '
            f'width="{width}" height="{height}">'
            f"<title>{name}: {kwh_text} kWh</title></rect>"
        )
        rows.append(
            f"<tr><td>{WEEKDAY_NAMES[day.weekday()]}, {name}</td>"
            f'<td class="num tabular">{kwh_text}</td></tr>'
        )
    return DailyChart(
        first_day=first_day,
        last_day=end_day - timedelta(days=1),
        max_kwh=max_kwh,
        bar_marks=mark_safe("".join(marks)),
        table_rows=mark_safe("".join(rows)),
        month_ticks=(
            MONTH_NAMES
            if (first_day.month, first_day.day) == (1, 1)
            and end_day == first_day.replace(year=first_day.year + 1)
            else ()
        ),
    )
