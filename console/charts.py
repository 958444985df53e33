"""Bar charts drawn on the server as inline SVG: no JavaScript, no library, nothing fetched.

The geometry is computed here and written by the template as preformatted strings, so that
a language with a decimal comma cannot break the SVG's coordinates.
"""

import math
from dataclasses import dataclass
from decimal import Decimal

WIDTH, HEIGHT = 600, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 12, 34  # room for the value axis and the day labels
GRID_LINES = 5


@dataclass(frozen=True)
class Point:
    """One bar: its value, the text under it ("" for none), and what it links to (a figure
    with `url` and `label`, the label being the bar's tooltip)."""

    value: Decimal
    label: str
    figure: object


@dataclass(frozen=True)
class Bar:
    point: Point
    x: str
    y: str
    width: str
    height: str
    slot_x: str  # the whole column, so that a short bar is still easy to point at
    slot_width: str
    label_x: str


@dataclass(frozen=True)
class Tick:
    y: str
    label: str


@dataclass(frozen=True)
class BarChart:
    title: str
    key: str
    bars: list[Bar]
    ticks: list[Tick]
    width: str = f"{WIDTH}"
    height: str = f"{HEIGHT}"
    left: str = f"{LEFT}"
    axis_x: str = f"{LEFT - 6}"  # where the value labels end
    right_x: str = f"{WIDTH - RIGHT}"
    top: str = f"{TOP}"
    plot_height: str = f"{HEIGHT - TOP - BOTTOM}"
    baseline: str = f"{HEIGHT - BOTTOM}"
    label_y: str = f"{HEIGHT - BOTTOM + 16}"


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value` (1 for nothing):
    the axis's top, divided in GRID_LINES round steps."""
    if value <= 0:
        return Decimal(1)
    power = Decimal(10) ** math.floor(math.log10(value))
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        if step * power >= value:
            return step * power
    raise AssertionError("unreachable")  # pragma: no cover


def _number(value: Decimal, digits: int) -> str:
    return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.{digits}f}"


def bar_chart(title: str, key: str, points: list[Point], digits: int) -> BarChart:
    """Bars from zero for `points` (left to right), on a value axis of GRID_LINES steps."""
    top = nice_ceiling(max((p.value for p in points), default=Decimal(0)))
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    bars = []
    for index, point in enumerate(points):
        height = float(point.value / top) * plot_height
        if point.value > 0:
            height = max(height, 1.0)  # a small amount still shows
        x = LEFT + index * slot
        bars.append(
            Bar(
                point=point,
                x=f"{x + slot * 0.15:.1f}",
                y=f"{TOP + plot_height - height:.1f}",
                width=f"{slot * 0.7:.1f}",
                height=f"{height:.1f}",
                slot_x=f"{x:.1f}",
                slot_width=f"{slot:.1f}",
                label_x=f"{x + slot / 2:.1f}",
            )
        )
    ticks = [
        Tick(
            y=f"{TOP + plot_height * (1 - step / GRID_LINES):.1f}",
            label=_number(top * step / GRID_LINES, digits),
        )
        for step in range(GRID_LINES + 1)
    ]
    return BarChart(title=title, key=key, bars=bars, ticks=ticks)
