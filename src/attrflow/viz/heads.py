"""Head importance and pruning curves on screen: matplotlib figures and the sections of the heads page (inline
SVG, no script), on the one page skeleton :mod:`attrflow.viz.page`.

The renderers take data only (:class:`~attrflow.analysis.heads.views.ImportanceGrid` and
:class:`~attrflow.analysis.heads.views.PruningChart`, built by the results' display methods) and compute nothing
about heads: ranks, AUCs and correlations come ready.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from attrflow.viz._html import diverging, esc, fmt
from attrflow.viz.page import render_page
from attrflow.viz.plots import _axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.analysis.heads.views import CurveLine, ImportanceGrid, PruningChart

__all__ = [
    "curve_svg",
    "importance_grid",
    "plot_curve",
    "plot_importance",
    "render_heads_page",
]

# colours of curves whose ranking brings none (e.g. the keys of a custom {name: importance} dict)
_CYCLE = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")


def _colour(line: CurveLine, index: int) -> str:
    return line.colour or _CYCLE[index % len(_CYCLE)]


# ---------------------------------------------------------------------- matplotlib
def plot_curve(chart: PruningChart, *, ax: Axes | None = None) -> Figure:
    """Accuracy against the fraction of heads pruned, one line per ranking, AUC in the legend."""
    figure, axes = _axes(ax, (6.0, 4.0))
    for index, line in enumerate(chart.lines):
        axes.plot(
            chart.fractions,
            line.accuracy,
            marker="o",
            markersize=3.5,
            color=_colour(line, index),
            label=f"{line.label}  AUC {line.auc:.3f}",
        )
    if math.isfinite(chart.majority_accuracy):
        axes.axhline(chart.majority_accuracy, color="#444", linestyle="--", linewidth=1, label="majority class")
    axes.set_xlabel("fraction of heads pruned (least important first)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0.0, 1.02)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="lower left")
    axes.set_title(f"head pruning, {chart.num_layers}×{chart.num_heads} heads, {chart.num_examples} examples")
    return figure


def plot_importance(grid: ImportanceGrid, *, ax: Axes | None = None) -> Figure:
    """Layer × head heatmap of an importance map."""
    import numpy as np

    scores = np.asarray(grid.scores, dtype=np.float64)
    L, H = scores.shape
    figure, axes = _axes(ax, (min(16.0, 3.0 + 0.45 * H), min(16.0, 2.0 + 0.4 * L)))
    bound = float(abs(scores).max()) or 1.0
    if scores.min() >= 0:  # non-negative maps (taylor, attention, most attattr maps): a sequential scale from 0
        image = axes.imshow(scores, cmap="Reds", vmin=0.0, vmax=bound, aspect="auto")
    else:
        image = axes.imshow(scores, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    axes.set_xticks(range(H))
    axes.set_yticks(range(L))
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_title(f"head importance: {grid.label}")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


# ---------------------------------------------------------------------- HTML
def curve_svg(chart: PruningChart, *, width: int = 620, height: int = 360) -> str:
    """The pruning curves as a standalone inline ``<svg>`` (axes 0–1, one polyline per ranking, a legend)."""
    left, right, top, bottom = 56, 16, 20, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    x0, x1 = min(chart.fractions), max(chart.fractions)
    span = (x1 - x0) or 1.0

    def x(value: float) -> float:
        return left + (value - x0) / span * plot_w

    def y(value: float) -> float:
        return top + (1.0 - value) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="11" role="img" aria-label="accuracy against fraction of heads pruned">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for tick in range(11):
        value = tick / 10
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.1f}</text>'
        )
    for fraction in chart.fractions:
        parts.append(
            f'<text x="{x(fraction):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{fmt(fraction, 2)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">fraction of heads pruned '
        "(least important first)</text>"
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">accuracy</text>'
    )
    if math.isfinite(chart.majority_accuracy):
        level = y(chart.majority_accuracy)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{level:.1f}" y2="{level:.1f}" stroke="#444" '
            f'stroke-dasharray="5 4"><title>majority class: {fmt(chart.majority_accuracy, 4)}</title></line>'
        )
    for index, line in enumerate(chart.lines):
        stroke = _colour(line, index)
        points = " ".join(f"{x(f):.1f},{y(a):.1f}" for f, a in zip(chart.fractions, line.accuracy, strict=True))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{stroke}" stroke-width="2"/>')
        for f, a in zip(chart.fractions, line.accuracy, strict=True):
            parts.append(
                f'<circle cx="{x(f):.1f}" cy="{y(a):.1f}" r="3" fill="{stroke}">'
                f"<title>{esc(line.method)}: {fmt(a, 4)} at {fmt(f, 2)}</title></circle>"
            )
        legend_y = top + plot_h - 12 - 16 * (len(chart.lines) - 1 - index)
        parts.append(
            f'<line x1="{left + 10}" x2="{left + 30}" y1="{legend_y}" y2="{legend_y}" stroke="{stroke}" '
            f'stroke-width="2"/><text x="{left + 36}" y="{legend_y + 4}">{esc(line.label)}  AUC {line.auc:.3f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def importance_grid(grid: ImportanceGrid) -> str:
    """An HTML table of the layer × head scores, coloured by value (red positive, blue negative)."""
    bound = max((abs(v) for row in grid.scores for v in row), default=0.0) or 1.0
    H = len(grid.scores[0]) if grid.scores else 0
    header = "".join(f"<th>{h}</th>" for h in range(H))
    rows = []
    for layer, (values, ranks) in enumerate(zip(grid.scores, grid.ranks, strict=True)):
        cells = "".join(
            f'<td style="background:{diverging(value, bound)}" title="layer {layer}, head {head}: '
            f'{fmt(value, 4)}; pruned #{rank + 1}">{fmt(value, 2)}</td>'
            for head, (value, rank) in enumerate(zip(values, ranks, strict=True))
        )
        rows.append(f"<tr><th>{layer}</th>{cells}</tr>")
    return (
        f'<table class="grid"><tr><th>layer \\ head</th>{header}</tr>{"".join(rows)}</table>'
        f'<p class="note">{esc(grid.label)}; {grid.num_examples} examples. Hover a cell for its pruning rank (#1 is '
        "pruned first).</p>"
    )


def _settings_table(settings: Mapping[str, object]) -> str:
    rows = "".join(f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>" for key, value in settings.items())
    return f'<table class="kv">{rows}</table>'


def _pruning_section(chart: PruningChart) -> str:
    head_cells = "".join(f"<th>{fmt(f, 2)}</th>" for f in chart.fractions)
    table_rows = "".join(
        f"<tr><th>{esc(line.method)}</th><td>{line.auc:.4f}</td>"
        + "".join(f"<td>{a:.4f}</td>" for a in line.accuracy)
        + "</tr>"
        for line in chart.lines
    )
    pruned = "".join(f"<td>{k}</td>" for k in chart.num_pruned)
    return (
        '<section id="pruning"><h2>Pruning curves</h2>'
        f'<p class="note">The least important heads of each ranking are gated off together (all layers, no '
        f"re-training) and accuracy is measured on {chart.num_examples} examples. AUC: area under the curve "
        "(trapezoid rule over the pruned fraction). Dashed: the majority class "
        f"({fmt(chart.majority_accuracy, 4)}), a constant prediction.</p>"
        f"{curve_svg(chart)}"
        '<div class="scroll"><table class="num"><tr><th>method</th><th>AUC</th>'
        f"{head_cells}</tr><tr><th>heads pruned</th><td></td>{pruned}</tr>{table_rows}</table></div></section>"
    )


def _correlation_section(correlations: Mapping[str, Mapping[str, tuple[float, float]]]) -> str:
    names = list(correlations)
    header = "".join(f"<th>{esc(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><th>{esc(a)}</th>"
        + "".join(f"<td>{fmt(correlations[a][b][0], 3)} / {fmt(correlations[a][b][1], 3)}</td>" for b in names)
        + "</tr>"
        for a in names
    )
    return (
        '<section id="correlation"><h2>Agreement between rankings</h2>'
        '<p class="note">Pearson / Spearman correlation of the importance maps over all heads.</p>'
        f'<table class="num"><tr><th></th>{header}</tr>{rows}</table></section>'
    )


def render_heads_page(
    title: str,
    *,
    chart: PruningChart | None = None,
    grids: Sequence[ImportanceGrid] = (),
    correlations: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    rankings: Mapping[str, str] | None = None,
    back: tuple[str, str] | None = None,
) -> str:
    """The heads page: pruning curves and table, importance grids, their correlations, the rankings and settings.

    Args:
        title: the page heading.
        chart: the pruning curves, or None.
        grids: one importance map per ranking.
        correlations: ``{a: {b: (pearson, spearman)}}`` between the maps (shown when more than one).
        rankings: ``{name: "description (paper)"}`` of the rankings shown.
        back: ``(href, text)`` of a link back to an index page.
    """
    sections = [] if chart is None else [_pruning_section(chart)]
    sections += [
        f'<section class="importance"><h2>Head importance: {esc(grid.method)}</h2>{importance_grid(grid)}'
        f"{_settings_table(grid.settings)}</section>"
        for grid in grids
    ]
    if correlations is not None and len(correlations) > 1:
        sections.append(_correlation_section(correlations))
    if rankings:
        items = "".join(f"<tr><th>{esc(name)}</th><td>{esc(text)}</td></tr>" for name, text in rankings.items())
        sections.append(f'<section id="rankings"><h2>Rankings</h2><table class="kv">{items}</table></section>')
    if chart is not None and chart.settings:
        sections.append(f'<section id="settings"><h2>Settings</h2>{_settings_table(chart.settings)}</section>')
    subtitle = (
        "Head importance (Hao et al., AAAI 2021, §4.1) and pruning without re-training (§4.2), compared with "
        "baseline rankings."
    )
    return render_page(title, sections, subtitle=subtitle, back=back)
