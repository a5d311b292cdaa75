"""A braille line chart of rewards per step: train (raw and smoothed), validation, per-grader lines.

Textual-plotext is not a dependency; this draws on a 2x4 braille dot grid per cell, which reads well at
80x24 and needs only 16/256 colours. Widgets never do I/O: give it series with `set_series`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from daemon import metrics

BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
Y_LABEL_WIDTH = 6


@dataclass(frozen=True)
class Series:
    """One line: a name for the legend, a colour, and (step, value) points in step order."""

    name: str
    color: str
    points: tuple[tuple[float, float], ...]


def ema(values: Sequence[float], alpha: float = 0.3) -> list[float]:
    """Exponential moving average (what "smoothed" means on the chart)."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else alpha * v + (1 - alpha) * out[-1])
    return out


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.bits = [[0] * width for _ in range(height)]
        self.color: list[list[str | None]] = [[None] * width for _ in range(height)]

    def dot(self, x: int, y: int, color: str) -> None:
        """Set dot (x, y) where y counts down from the top, in dot coordinates."""
        cx, cy = x // 2, y // 4
        if 0 <= cx < self.width and 0 <= cy < self.height:
            self.bits[cy][cx] |= BRAILLE_BITS[y % 4][x % 2]
            self.color[cy][cx] = color

    def line(self, x0: int, y0: int, x1: int, y1: int, color: str) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.dot(x0, y0, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def row(self, cy: int) -> Text:
        text = Text()
        for cx in range(self.width):
            b = self.bits[cy][cx]
            text.append(chr(0x2800 + b) if b else " ", style=self.color[cy][cx] or "")
        return text


class RewardChart(Widget):
    """Renders the series it was given; y spans [0, 1] unless the data leaves it."""

    DEFAULT_CSS = "RewardChart { height: 12; min-height: 6; padding: 0 1; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series: tuple[Series, ...] = ()
        self.empty_message = "No metrics yet."
        self.legend_key = metrics.TRAIN_REWARD  # whose format the legend's latest values take

    def set_series(self, series: Sequence[Series]) -> None:
        self.series = tuple(s for s in series if s.points)
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if not self.series:
            return Text(self.empty_message, style="dim")
        if width < Y_LABEL_WIDTH + 10 or height < 4:
            return Text("(too small for the chart)", style="dim")
        plot_w, plot_h = width - Y_LABEL_WIDTH - 1, height - 2
        xs = [p[0] for s in self.series for p in s.points]
        ys = [p[1] for s in self.series for p in s.points]
        x_lo, x_hi = min(xs), max(xs)
        y_lo, y_hi = min(0.0, min(ys)), max(1.0, max(ys))
        canvas = _Canvas(plot_w, plot_h)
        dots_w, dots_h = plot_w * 2 - 1, plot_h * 4 - 1

        def to_dot(x: float, y: float) -> tuple[int, int]:
            fx = 0.0 if x_hi == x_lo else (x - x_lo) / (x_hi - x_lo)
            fy = (y - y_lo) / (y_hi - y_lo)
            return round(fx * dots_w), round((1 - fy) * dots_h)

        for s in self.series:
            pts = [to_dot(x, y) for x, y in s.points]
            if len(pts) == 1:
                canvas.dot(*pts[0], s.color)
            for (a, b), (c, d) in itertools.pairwise(pts):
                canvas.line(a, b, c, d, s.color)
        lines = [self._legend(width)]
        for cy in range(plot_h):
            label = ""
            if cy == 0:
                label = f"{y_hi:.2f}"
            elif cy == plot_h - 1:
                label = f"{y_lo:.2f}"
            elif cy == plot_h // 2:
                label = f"{(y_hi + y_lo) / 2:.2f}"
            lines.append(Text(label.rjust(Y_LABEL_WIDTH) + "│", style="dim") + canvas.row(cy))
        left, right = f"step {x_lo:g}", f"{x_hi:g}"
        axis = " " * Y_LABEL_WIDTH + "└" + left + right.rjust(max(1, plot_w - len(left)))
        lines.append(Text(axis, style="dim"))
        return Text("\n").join(lines)

    def _legend(self, width: int) -> Text:
        legend = Text()
        for s in self.series:
            last = s.points[-1][1]
            legend.append("━ ", style=s.color)
            legend.append(f"{s.name} {metrics.format_value(self.legend_key, last)}  ")
        legend.truncate(width)
        return legend
