"""Server-rendered daily usage bars (SVG) with the numbers for an accessible table."""

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
HEIGHT = 160
TOP = 8
BOTTOM = 20


@dataclass(frozen=True, slots=True)
class Bar:
    day: date
    kwh: Decimal
    x: float
    y: float
    width: float
    height: float

    @property
    def kwh_text(self) -> str:
        return str(self.kwh.quantize(Decimal("0.01"), ROUND_HALF_UP))


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
        return [bar for bar in self.bars if bar.kwh > 0]

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
                f"<title>{bar.day:%b} {bar.day.day}: {bar.kwh_text} kWh</title></rect>"
                for bar in self.bars
                if bar.height
            )
        )

    def table_rows(self) -> SafeString:
        """One <tr> per day with energy: the chart's numbers for screen readers."""
        return mark_safe(
            "".join(
                f'<tr><td>{bar.day:%a, %b} {bar.day.day}</td><td class="num tabular">'
                f"{bar.kwh_text}</td></tr>"
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
    bars = []
    for index, (day, kwh) in enumerate(days):
        height = float(kwh) * scale
        if kwh > 0:
            height = max(height, 1.0)
        bars.append(
            Bar(
                day=day,
                kwh=kwh,
                x=round(index * slot + gap / 2, 2),
                y=round(HEIGHT - BOTTOM - height, 2),
                width=width,
                height=round(height, 2),
            )
        )
    return DailyChart(bars=bars, max_kwh=max_kwh)
