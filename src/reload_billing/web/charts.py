"""Charts drawn on the server as inline SVG geometry (no script, no inline style:
the page's Content-Security-Policy allows neither). Templates draw what these
functions measure; every chart has a table beside it for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from . import format as fmt

WIDTH = 960
HEIGHT = 250
LEFT = 60  # room for the axis labels
BOTTOM = 26
TOP = 8


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    y: float  # top of the main bar
    height: float
    inner_y: float  # the second series, drawn over the first
    inner_height: float
    label: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    label: str


@dataclass
class DayChart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    x_labels: list[XLabel] = field(default_factory=list)
    empty: bool = True
    description: str = ""


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= value."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 2.5, 5, 10):
        candidate = int(magnitude * step)
        if candidate >= value:
            return candidate
    return magnitude * 10


def day_chart(
    points: Sequence[tuple[int, int, int]],
    *,
    outer_name: str,
    inner_name: str,
) -> DayChart:
    """Bars per day: ``(day, outer, inner)`` in nano-dollars, ``inner <= outer``
    drawn inside ``outer`` (e.g. cost, and what of it was charged)."""
    chart = DayChart()
    if not points:
        return chart
    top = nice_ceiling(max(outer for _, outer, _ in points))
    plot_height = chart.baseline - TOP
    plot_width = WIDTH - LEFT - 4
    slot = plot_width / len(points)
    gap = min(6.0, slot * 0.25)
    for quarter in range(5):
        value = top * quarter // 4
        chart.ticks.append(
            Tick(round(chart.baseline - plot_height * quarter / 4, 1), fmt.money_short(value))
        )
    every = max(1, round(len(points) / 8))
    for index, (day, outer, inner) in enumerate(points):
        x = LEFT + index * slot + gap / 2
        outer_height = plot_height * max(0, outer) / top
        inner_height = plot_height * max(0, min(inner, outer)) / top
        title = (
            f"{fmt.day(day)}: {outer_name.lower()} {fmt.money(outer)}, "
            f"{inner_name.lower()} {fmt.money(inner)}"
        )
        chart.bars.append(
            Bar(
                x=round(x, 1),
                width=round(max(1.0, slot - gap), 1),
                y=round(chart.baseline - outer_height, 1),
                height=round(outer_height, 1),
                inner_y=round(chart.baseline - inner_height, 1),
                inner_height=round(inner_height, 1),
                label=fmt.day_short(day),
                title=title,
            )
        )
        if index % every == 0:
            chart.x_labels.append(XLabel(round(x + (slot - gap) / 2, 1), fmt.day_short(day)))
        if outer or inner:
            chart.empty = False
    total_outer = sum(outer for _, outer, _ in points)
    total_inner = sum(inner for _, _, inner in points)
    chart.description = (
        f"{outer_name} per day from {fmt.day(points[0][0])} to {fmt.day(points[-1][0])}: "
        f"{fmt.money(total_outer)} in all, {inner_name.lower()} {fmt.money(total_inner)}."
    )
    return chart


def share(value: int, largest: int) -> float:
    """A bar's length in percent of the largest one (for the per-agent tables)."""
    if largest <= 0 or value <= 0:
        return 0.0
    return round(max(0.5, 100 * value / largest), 1)
