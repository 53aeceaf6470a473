"""Small SVG charts drawn without matplotlib, for the HTML pages: a line chart with optional ±bands and a scatter.

Pure functions from numbers to an ``<svg>`` string; every label is escaped. The same colour belongs to the same
series name on every chart of a page (:func:`colour`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from attrflow.viz._html import esc, fmt

__all__ = ["colour", "line_chart", "scatter_chart"]

_PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
    "#393b79",
    "#ad494a",
    "#637939",
    "#843c39",
)


def colour(index: int) -> str:
    """The colour of the ``index``-th series."""
    return _PALETTE[index % len(_PALETTE)]


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _frame(width: int, height: int, title: str, x_label: str, y_label: str) -> list[str]:
    return [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(title)}" font-family="system-ui, sans-serif" font-size="11">',
        f'<text x="{width / 2:.0f}" y="14" text-anchor="middle" font-size="12">{esc(title)}</text>',
        f'<text x="{width / 2:.0f}" y="{height - 4}" text-anchor="middle">{esc(x_label)}</text>',
        f'<text transform="translate(12,{height / 2:.0f}) rotate(-90)" text-anchor="middle">{esc(y_label)}</text>',
    ]


def line_chart(
    series: Mapping[str, Sequence[float]],
    x_labels: Sequence[str],
    *,
    bands: Mapping[str, Sequence[float]] | None = None,
    intervals: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    y_range: tuple[float, float] | None = None,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 620,
    height: int = 340,
    zero_line: bool = True,
) -> str:
    """Lines over categorical x positions, one per series (NaN points are skipped), with an optional ±band.

    Args:
        series: ``{name: y values}``, each as long as ``x_labels``.
        x_labels: the x tick labels.
        bands: ``{name: half-widths}`` drawn as a translucent band around the line (e.g. the std).
        intervals: ``{name: (lows, highs)}`` drawn as a translucent band (e.g. a bootstrap interval).
        y_range: the y axis limits; default the data's range with a margin.
        title, x_label, y_label: texts (escaped).
    """
    left, right, top, bottom = 56, 150, 26, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for ys in series.values() for v in _finite(ys)]
    for name, widths in (bands or {}).items():
        ys = series.get(name, [])
        values += _finite([y + h for y, h in zip(ys, widths, strict=False)])
        values += _finite([y - h for y, h in zip(ys, widths, strict=False)])
    for lows, highs in (intervals or {}).values():
        values += _finite(list(lows)) + _finite(list(highs))
    low, high = y_range if y_range else (min(values, default=0.0), max(values, default=1.0))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    count = max(len(x_labels), 1)

    def x(i: int) -> float:
        return left + (plot_w * (i + 0.5) / count)

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    parts = _frame(width, height, title, x_label, y_label)
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>')
    for k in range(5):
        value = low + (high - low) * k / 4
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y(value) + 4:.1f}" text-anchor="end">{esc(fmt(value, 2))}</text>'
        )
    if zero_line and low < 0 < high:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999"/>')
    for i, label in enumerate(x_labels):
        parts.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 14}" text-anchor="middle">{esc(label)}</text>')
    for index, (name, ys) in enumerate(series.items()):
        stroke = colour(index)
        points = [(x(i), y(v)) for i, v in enumerate(ys) if isinstance(v, (int, float)) and math.isfinite(v)]
        half: Sequence[float] | None = (bands or {}).get(name)
        if half is not None:
            upper = [(x(i), y(v + h)) for i, (v, h) in enumerate(zip(ys, half, strict=False)) if math.isfinite(v + h)]
            lower = [(x(i), y(v - h)) for i, (v, h) in enumerate(zip(ys, half, strict=False)) if math.isfinite(v - h)]
            outline = " ".join(f"{px:.1f},{py:.1f}" for px, py in upper + lower[::-1])
            parts.append(f'<polygon points="{outline}" fill="{stroke}" fill-opacity="0.1" stroke="none"/>')
        span = (intervals or {}).get(name)
        if span is not None:
            upper = [(x(i), y(h)) for i, h in enumerate(span[1]) if math.isfinite(h)]
            lower = [(x(i), y(v)) for i, v in enumerate(span[0]) if math.isfinite(v)]
            outline = " ".join(f"{px:.1f},{py:.1f}" for px, py in upper + lower[::-1])
            parts.append(f'<polygon points="{outline}" fill="{stroke}" fill-opacity="0.1" stroke="none"/>')
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{stroke}" stroke-width="1.8"/>')
        parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.6" fill="{stroke}"/>' for px, py in points)
        legend_y = top + 14 * index + 8
        parts.append(
            f'<line x1="{left + plot_w + 10}" x2="{left + plot_w + 28}" y1="{legend_y}" y2="{legend_y}" '
            f'stroke="{stroke}" stroke-width="2"/><text x="{left + plot_w + 32}" y="{legend_y + 4}">{esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(
    points: Mapping[str, tuple[float, float]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    log_x: bool = False,
    width: int = 620,
    height: int = 360,
) -> str:
    """One labelled point per name at ``(x, y)`` (e.g. cost against faithfulness); ``log_x`` for costs."""
    left, right, top, bottom = 56, 30, 26, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = {
        k: (a, b) for k, (a, b) in points.items() if math.isfinite(a) and math.isfinite(b) and (a > 0 or not log_x)
    }

    def tx(value: float) -> float:
        return math.log10(value) if log_x else value

    xs = [tx(a) for a, _ in finite.values()] or [0.0, 1.0]
    ys = [b for _, b in finite.values()] or [0.0, 1.0]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    x_pad = (x_high - x_low) * 0.1 or 0.5
    y_pad = (y_high - y_low) * 0.1 or 0.5
    x_low, x_high, y_low, y_high = x_low - x_pad, x_high + x_pad, y_low - y_pad, y_high + y_pad

    def px(value: float) -> float:
        return left + plot_w * (tx(value) - x_low) / (x_high - x_low)

    def py(value: float) -> float:
        return top + plot_h * (1 - (value - y_low) / (y_high - y_low))

    parts = _frame(width, height, title, x_label, y_label)
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>')
    for k in range(5):
        xv = x_low + (x_high - x_low) * k / 4
        yv = y_low + (y_high - y_low) * k / 4
        label = fmt(10**xv, 2) if log_x else fmt(xv, 2)
        x_pos = left + plot_w * k / 4
        parts.append(f'<text x="{x_pos:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{esc(label)}</text>')
        parts.append(f'<text x="{left - 4}" y="{py(yv) + 4:.1f}" text-anchor="end">{esc(fmt(yv, 2))}</text>')
    for index, (name, (a, b)) in enumerate(finite.items()):
        parts.append(
            f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="4" fill="{colour(index)}"/>'
            f'<text x="{px(a) + 6:.1f}" y="{py(b) - 6:.1f}">{esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
