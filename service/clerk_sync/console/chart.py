"""Stacked bars of a `Series` as plain geometry for the template's inline SVG. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clerk_sync.console.overview import Series

WIDTH, HEIGHT = 720, 180
LEFT, BOTTOM, TOP = 48, 22, 8
#: the stacking order, bottom up; each has a CSS class `bar-<outcome>`
OUTCOMES = ("processed", "ignored", "rejected", "processing", "failed")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    outcome: str
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    width: int
    height: int
    bars: list[Bar]
    top: str
    ticks: list[tuple[float, str]]
    total: float
    left: int
    base: float


def _nice(peak: float) -> float:
    """The axis maximum: 1, 2 or 5 times a power of ten, at least `peak`."""
    scale = 1.0
    while scale * 10 < peak:
        scale *= 10
    for step in (1, 2, 5, 10):
        if step * scale >= peak:
            return step * scale
    return 10 * scale  # pragma: no cover - the loop above always returns


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2f}"


def chart(series: Series) -> Chart:
    """The bars (one stack per bucket), the axis top and a time label every quarter."""
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    peak = max((sum(b.values()) for b in series.bars), default=0.0)
    top = _nice(peak) if peak > 0 else 1.0
    step = plot_w / max(1, len(series.bars))
    bars: list[Bar] = []
    for index, counts in enumerate(series.bars):
        at = series.start + timedelta(minutes=series.minutes * index)
        y = float(HEIGHT - BOTTOM)
        for outcome in OUTCOMES:
            value = counts.get(outcome, 0.0)
            if value <= 0:
                continue
            height = value / top * plot_h
            y -= height
            label = f"{at:%H:%M} UTC: {_rate(value)} {outcome} per minute"
            bars.append(Bar(LEFT + index * step + 0.5, y, max(step - 1, 1), height, outcome, label))
    quarter = max(1, len(series.bars) // 4)
    ticks = [
        (LEFT + i * step, f"{series.start + timedelta(minutes=series.minutes * i):%H:%M}")
        for i in range(0, len(series.bars), quarter)
    ]
    total = sum(sum(b.values()) for b in series.bars) * series.minutes
    return Chart(series.title, WIDTH, HEIGHT, bars, _rate(top), ticks, total, LEFT, HEIGHT - BOTTOM)
