"""Server-rendered SVG charts: the page draws without JavaScript."""

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from sync.models import TransactionSyncState

# The SVG is the plot alone, stretched to its box (the lines keep their width):
# the axis labels are HTML beside and under it, so that they keep their size at
# every width instead of scaling with the card (0.0005 spilled out of a phone's).
# The y ticks are evenly spaced from 0 to the top, the x ticks at the start, the
# middle and the end: both axes lay out as evenly spread HTML lists.
WIDTH, HEIGHT = 640, 200


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    line: str
    area: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    points: list[tuple[float, float]]
    summary: str


def cumulative_energy_chart(
    session: TransactionSyncState, deltas: list[tuple[datetime, Decimal]]
) -> LineChart | None:
    """Cumulative kWh over reading time from each event's (reading time, kWh),
    or None when there is nothing to draw."""
    series: list[tuple[datetime, Decimal]] = []
    total = Decimal("0")
    for reading_at, kwh in deltas:
        total += kwh
        series.append((reading_at, total))
    if len(series) < 2:
        return None
    start, end = series[0][0], series[-1][0]
    span = max((end - start).total_seconds(), 1.0)
    # The axis ends at a round number above the total, in round steps, so that no
    # two tick labels read the same (0.277 kWh in quarters gave 0.1 twice).
    step = _nice_step(max(float(total), 0.001) / 4)
    top = step * math.ceil(max(float(total), 0.001) / step - 1e-9)
    decimals = max(0, -int(Decimal(repr(step)).normalize().as_tuple().exponent))

    def x(moment: datetime) -> float:
        return round((moment - start).total_seconds() / span * WIDTH, 1)

    def y(kwh: float) -> float:
        return round(HEIGHT - kwh / top * HEIGHT, 1)

    points = _one_per_column([(x(moment), y(float(kwh))) for moment, kwh in series])
    line = "M" + " L".join(f"{px},{py}" for px, py in points)
    baseline = HEIGHT
    area = f"{line} L{points[-1][0]},{baseline} L{points[0][0]},{baseline} Z"
    y_ticks = [
        Tick(y(step * i), f"{step * i:.{decimals}f}")
        for i in range(round(top / step) + 1)
    ]
    x_ticks = [
        Tick(x(moment), timezone.localtime(moment).strftime("%H:%M"))
        for moment in (start, start + (end - start) / 2, end)
    ]
    summary = (
        f"Cumulative energy of transaction {session.steve_transaction_id}: "
        f"{total} kWh from {timezone.localtime(start):%Y-%m-%d %H:%M} "
        f"to {timezone.localtime(end):%Y-%m-%d %H:%M}."
    )
    return LineChart(WIDTH, HEIGHT, line, area, y_ticks, x_ticks, points, summary)


# Points closer than this on the x axis draw as one: the SVG is 640 units wide,
# about a unit a pixel on a desktop.
COLUMN = 0.5


def _one_per_column(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The first point and the last of each COLUMN-wide slice. The energy only
    grows, so the last point of a slice is its highest: the line looks the same,
    while a session read for days (tens of thousands of events) is drawn with
    about 1,300 points rather than all of them, at every live re-read."""
    kept = points[:1]
    for point in points[1:]:
        same_column = math.floor(kept[-1][0] / COLUMN) == math.floor(point[0] / COLUMN)
        if same_column and len(kept) > 1:
            kept[-1] = point
        else:
            kept.append(point)
    return kept


def _nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least `raw`."""
    exponent = math.floor(math.log10(raw))
    for mantissa in (1, 2, 2.5, 5):
        step = mantissa * 10.0**exponent
        if step >= raw:
            return step
    return 10.0 ** (exponent + 1)
