"""Drawing head importance and pruning curves: matplotlib figures and a self-contained HTML page (inline SVG, no
script, no network)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from attrflow.dependencies import require
from attrflow.viz._html import diverging, esc, fmt

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.analysis.heads import HeadImportance
    from attrflow.analysis.pruning import PruningCurve

__all__ = ["curve_svg", "importance_grid", "plot_curve", "plot_importance", "render_heads_page", "write_page"]

# one colour per method, the same in the figure and the page
_COLOURS = {"attattr": "#d62728", "taylor": "#1f77b4", "attention": "#2ca02c", "random": "#7f7f7f"}
_CYCLE = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")
_LABELS = {
    "attattr": "AttAttr (max attribution)",
    "taylor": "Taylor (Michel et al.)",
    "attention": "attention (max probability)",
    "random": "random",
}


def colour(method: str, index: int) -> str:
    """The colour of a method's curve (known methods fixed, others from a cycle)."""
    return _COLOURS.get(method, _CYCLE[index % len(_CYCLE)])


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    require("matplotlib")
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.subplots()


def plot_curve(curve: PruningCurve, *, ax: Axes | None = None) -> Figure:
    """Accuracy against the fraction of heads pruned, one line per method, AUC in the legend."""
    figure, axes = _axes(ax, (6.0, 4.0))
    auc = curve.auc
    for index, (method, values) in enumerate(curve.accuracy.items()):
        axes.plot(
            curve.fractions,
            values,
            marker="o",
            markersize=3.5,
            color=colour(method, index),
            label=f"{_LABELS.get(method, method)}  AUC {auc[method]:.3f}",
        )
    if math.isfinite(curve.majority_accuracy):
        axes.axhline(curve.majority_accuracy, color="#444", linestyle="--", linewidth=1, label="majority class")
    axes.set_xlabel("fraction of heads pruned (least important first)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0.0, 1.02)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="lower left")
    axes.set_title(f"head pruning, {curve.num_layers}×{curve.num_heads} heads, {curve.num_examples} examples")
    return figure


def plot_importance(importance: HeadImportance, *, ax: Axes | None = None) -> Figure:
    """Layer × head heatmap of an importance map."""
    scores = importance.scores.detach().float().cpu().numpy()
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
    axes.set_title(f"head importance: {_LABELS.get(importance.method, importance.method)}")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


# ---------------------------------------------------------------------- HTML
def curve_svg(curve: PruningCurve, *, width: int = 620, height: int = 360) -> str:
    """The pruning curves as a standalone inline ``<svg>`` (axes 0–1, one polyline per method, a legend)."""
    left, right, top, bottom = 56, 16, 20, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    x0, x1 = min(curve.fractions), max(curve.fractions)
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
    for fraction in curve.fractions:
        parts.append(
            f'<text x="{x(fraction):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{fmt(fraction, 2)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">fraction of heads pruned '
        "(least important first)</text>"
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">accuracy</text>'
    )
    if math.isfinite(curve.majority_accuracy):
        level = y(curve.majority_accuracy)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{level:.1f}" y2="{level:.1f}" stroke="#444" '
            f'stroke-dasharray="5 4"><title>majority class: {fmt(curve.majority_accuracy, 4)}</title></line>'
        )
    auc = curve.auc
    for index, (method, values) in enumerate(curve.accuracy.items()):
        stroke = colour(method, index)
        points = " ".join(f"{x(f):.1f},{y(a):.1f}" for f, a in zip(curve.fractions, values, strict=True))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{stroke}" stroke-width="2"/>')
        for f, a in zip(curve.fractions, values, strict=True):
            parts.append(
                f'<circle cx="{x(f):.1f}" cy="{y(a):.1f}" r="3" fill="{stroke}">'
                f"<title>{esc(method)}: {fmt(a, 4)} at {fmt(f, 2)}</title></circle>"
            )
        legend_y = top + plot_h - 12 - 16 * (len(curve.accuracy) - 1 - index)
        parts.append(
            f'<line x1="{left + 10}" x2="{left + 30}" y1="{legend_y}" y2="{legend_y}" stroke="{stroke}" '
            f'stroke-width="2"/><text x="{left + 36}" y="{legend_y + 4}">'
            f"{esc(_LABELS.get(method, method))}  AUC {auc[method]:.3f}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def importance_grid(importance: HeadImportance) -> str:
    """An HTML table of the layer × head scores, coloured by value (red positive, blue negative)."""
    scores = importance.scores.detach().double().cpu()
    L, H = scores.shape
    bound = float(scores.abs().max()) or 1.0
    order = importance.order().tolist()
    rank = {head: position for position, head in enumerate(order)}
    header = "".join(f"<th>{h}</th>" for h in range(H))
    rows = []
    for layer in range(L):
        cells = []
        for head in range(H):
            value = float(scores[layer, head])
            cells.append(
                f'<td style="background:{diverging(value, bound)}" title="layer {layer}, head {head}: '
                f'{fmt(value, 4)}; pruned #{rank[layer * H + head] + 1}">{fmt(value, 2)}</td>'
            )
        rows.append(f"<tr><th>{layer}</th>{''.join(cells)}</tr>")
    return (
        f'<table class="grid"><tr><th>layer \\ head</th>{header}</tr>{"".join(rows)}</table>'
        f'<p class="note">{esc(_LABELS.get(importance.method, importance.method))}; '
        f"{importance.num_examples} examples. Hover a cell for its pruning rank (#1 is pruned first).</p>"
    )


def _settings_table(settings: Mapping[str, object]) -> str:
    rows = "".join(f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>" for key, value in settings.items())
    return f'<table class="kv">{rows}</table>'


def render_heads_page(importances: Mapping[str, HeadImportance], curve: PruningCurve | None, *, title: str) -> str:
    """The full self-contained document: pruning curves and table, importance grids, correlations, settings."""
    from attrflow import __version__
    from attrflow.viz.page import static_text

    sections = []
    if curve is not None:
        auc = curve.auc
        head_cells = "".join(f"<th>{fmt(f, 2)}</th>" for f in curve.fractions)
        table_rows = "".join(
            f"<tr><th>{esc(method)}</th><td>{auc[method]:.4f}</td>"
            + "".join(f"<td>{a:.4f}</td>" for a in values)
            + "</tr>"
            for method, values in curve.accuracy.items()
        )
        pruned = "".join(f"<td>{k}</td>" for k in curve.num_pruned)
        sections.append(
            '<section id="pruning"><h2>Pruning curves</h2>'
            f'<p class="note">The least important heads of each ranking are gated off together (all layers, no '
            f"re-training) and accuracy is measured on {curve.num_examples} examples. AUC: area under the curve "
            "(trapezoid rule over the pruned fraction). Dashed: the majority class "
            f"({fmt(curve.majority_accuracy, 4)}), a constant prediction.</p>"
            f"{curve_svg(curve)}"
            '<div class="scroll"><table class="num"><tr><th>method</th><th>AUC</th>'
            f"{head_cells}</tr><tr><th>heads pruned</th><td></td>{pruned}</tr>{table_rows}</table></div></section>"
        )
    for method, importance in importances.items():
        sections.append(
            f'<section class="importance"><h2>Head importance: {esc(method)}</h2>{importance_grid(importance)}'
            f"{_settings_table(importance.settings)}</section>"
        )
    if len(importances) > 1:
        names = list(importances)
        header = "".join(f"<th>{esc(n)}</th>" for n in names)
        rows = []
        for a in names:
            cells = []
            for b in names:
                c = importances[a].correlation(importances[b])
                cells.append(f"<td>{fmt(c.pearson, 3)} / {fmt(c.spearman, 3)}</td>")
            rows.append(f"<tr><th>{esc(a)}</th>{''.join(cells)}</tr>")
        sections.append(
            '<section id="correlation"><h2>Agreement between rankings</h2>'
            '<p class="note">Pearson / Spearman correlation of the importance maps over all heads.</p>'
            f'<table class="num"><tr><th></th>{header}</tr>{"".join(rows)}</table></section>'
        )
    if curve is not None and curve.settings:
        sections.append(f'<section id="settings"><h2>Settings</h2>{_settings_table(curve.settings)}</section>')
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    body = "\n".join(
        [
            f"<header><h1>{esc(title)}</h1><p class='subtitle'>Head importance (Hao et al., AAAI 2021, §4.1) and "
            "pruning without re-training (§4.2), with the Taylor (Michel et al. 2019), attention and random "
            "baselines.</p></header>",
            *sections,
            f"<footer>Made by attrflow {esc(__version__)}.</footer>",
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f"<style>{static_text('page.css')}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_page(html: str, path: str | os.PathLike[str]) -> Path:
    """Write a page (UTF-8, atomically). Returns the path."""
    from attrflow.viz.report import write_report

    return write_report(html, path)
