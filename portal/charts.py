"""Server-rendered daily usage bars (SVG) with the numbers for an accessible table."""

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
HEIGHT = 142
TOP = 8
# Room for the baseline's stroke only: the axis dates are HTML below the SVG.
BOTTOM = 2


# Day names as strftime gives them, looked up rather than formatted: a year's
# chart names 365 days twice.
MONTH_NAMES = tuple(date(2001, month, 1).strftime("%b") for month in range(1, 13))
WEEKDAY_NAMES = tuple(date(2001, 1, day).strftime("%a") for day in range(1, 8))
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Bar:
    day: date
    kwh: Decimal
    x: float
    y: float
    width: float
    height: float
    kwh_text: str

    @property
    def day_text(self) -> str:
        """`Nov 3`."""
        return f"{MONTH_NAMES[self.day.month - 1]} {self.day.day}"


@dataclass(frozen=True, slots=True)
class DailyChart:
    bars: list[Bar]
    max_kwh: Decimal
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - BOTTOM

    @property
    def first_day(self) -> date | None:
        return self.bars[0].day if self.bars else None

    @property
    def last_day(self) -> date | None:
        return self.bars[-1].day if self.bars else None

    @property
    def used_days(self) -> list[Bar]:
        return [bar for bar in self.bars if bar.height > 0]

    # The chart and its table are built here rather than in template loops: a year
    # is 365 bars, and the template engine would spend more time on them than the
    # page spends on its queries. Every value is a number or a date we format, so
    # nothing needs escaping.

    def bar_marks(self) -> SafeString:
        """The <rect> of every day with energy, each titled with its numbers."""
        width = self.bars[0].width if self.bars else 0
        return mark_safe(
            "".join(
                f'<rect class="chart__bar" x="{bar.x}" y="{bar.y}" '
                f'width="{width}" height="{bar.height}">'
                f"<title>{bar.day_text}: {bar.kwh_text} kWh</title></rect>"
                for bar in self.bars
                if bar.height > 0
            )
        )

    def table_rows(self) -> SafeString:
        """One <tr> per day with energy: the chart's numbers for screen readers."""
        return mark_safe(
            "".join(
                f"<tr><td>{WEEKDAY_NAMES[bar.day.weekday()]}, {bar.day_text}</td>"
                f'<td class="num tabular">{bar.kwh_text}</td></tr>'
                for bar in self.used_days
            )
        )


def daily_chart(days: list[tuple[date, Decimal]]) -> DailyChart:
    """One bar per day, scaled to the largest day; empty days get no height."""
    max_kwh = max((kwh for _, kwh in days), default=Decimal(0))
    plot = HEIGHT - TOP - BOTTOM
    slot = WIDTH / max(len(days), 1)
    gap = min(slot * 0.2, 2.0)
    width = round(max(slot - gap, 0.5), 2)
    # Geometry in floats: a year is 365 bars, and Decimal division is slow.
    scale = plot / float(max_kwh) if max_kwh > 0 else 0.0
    baseline = float(HEIGHT - BOTTOM)
    bars = []
    for index, (day, kwh) in enumerate(days):
        x = round(index * slot + gap / 2, 2)
        if kwh > 0:
            height = round(max(float(kwh) * scale, 1.0), 2)
            kwh_text = str(kwh.quantize(CENT, ROUND_HALF_UP))
            bars.append(
                Bar(day, kwh, x, round(baseline - height, 2), width, height, kwh_text)
            )
        else:
            bars.append(Bar(day, kwh, x, baseline, width, 0.0, "0.00"))
    return DailyChart(bars=bars, max_kwh=max_kwh)
