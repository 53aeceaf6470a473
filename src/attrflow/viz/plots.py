"""Matplotlib figures for papers: heatmaps, head grids, token bars and the attribution tree.

Each function draws on ``ax`` when given (and returns its figure) or on a new :class:`matplotlib.figure.Figure`,
which is never registered with pyplot: nothing is shown and no global state is touched. Save with
``fig.savefig("figure.png")`` or ``fig.savefig("figure.svg")``. matplotlib is imported on first use
(``pip install 'attrflow[viz]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from attrflow.dependencies import require
from attrflow.errors import InvalidInputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.analysis.faithfulness.report import FaithfulnessReport
    from attrflow.analysis.tree import AttributionTree
    from attrflow.methods.mixing import ContextMixing
    from attrflow.results import AttentionAttribution, TokenScores

__all__ = [
    "plot_erasure_curves",
    "plot_faithfulness",
    "plot_head_scores",
    "plot_heatmap",
    "plot_mixing",
    "plot_token_scores",
    "plot_tree",
    "save_figure",
]

MatrixKind = Literal["attribution", "attention"]


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    require("matplotlib")
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.subplots()


def _size(n: int, base: float = 4.0, per: float = 0.22, cap: float = 16.0) -> float:
    return min(cap, base + per * n)


def plot_heatmap(
    result: AttentionAttribution,
    *,
    kind: MatrixKind = "attribution",
    layer: int = -1,
    head: int | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Heatmap of one layer's attribution or attention matrix (rows: query tokens, columns: key tokens).

    Args:
        result: the attribution result.
        kind: ``"attribution"`` (``result.attributions``, signed, symmetric red/blue scale) or ``"attention"``
            (``result.attentions``, the probabilities).
        layer: the model layer; negative counts from the end. For ``"attribution"`` it must be attributed.
        head: one head, or None for the mean over heads.
        ax: draw here instead of on a new figure.

    Returns:
        The figure.
    """
    if kind == "attribution":
        row = result.layer_row(layer)
        stack, model_layer = result.attributions[row], result.layers[row]
    elif kind == "attention":
        model_layer = layer + result.num_layers if layer < 0 else layer
        if not 0 <= model_layer < result.num_layers:
            raise InvalidInputError(f"layer {layer} is out of range for a {result.num_layers}-layer model")
        stack = result.attentions[model_layer]
    else:
        raise InvalidInputError(f"kind must be 'attribution' or 'attention', got {kind!r}")
    if head is None:
        matrix, which = stack.mean(dim=0), "mean over heads"
    else:
        if not -result.num_heads <= head < result.num_heads:
            raise InvalidInputError(f"head {head} is out of range: the model has {result.num_heads} heads")
        matrix, which = stack[head], f"head {head % result.num_heads}"
    values = matrix.detach().to("cpu", torch.float32).numpy()
    n = len(result.tokens)
    figure, axes = _axes(ax, (_size(n), _size(n)))
    if kind == "attribution":
        bound = float(abs(values).max()) or 1.0
        image = axes.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound)
    else:
        image = axes.imshow(values, cmap="Reds", vmin=0.0)
    axes.set_xticks(range(n), labels=list(result.tokens), rotation=90, fontsize=8)
    axes.set_yticks(range(n), labels=list(result.tokens), fontsize=8)
    axes.set_xlabel("key token (attended to)")
    axes.set_ylabel("query token (attends)")
    axes.set_title(f"{kind}, layer {model_layer}, {which}")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


def plot_mixing(mixing: ContextMixing, *, layer: int | None = None, ax: Axes | None = None) -> Figure:
    """Heatmap of a context-mixing result: its aggregation over the held layers (default) or one held layer's matrix.

    Args:
        mixing: the result of :func:`attrflow.context_mixing`.
        layer: a model layer held by the result (negatives count from the top held layer), or None for the
            aggregation (``mixing.rollout()``).
        ax: draw here instead of on a new figure.
    """
    if layer is None:
        values, what = mixing.rollout(), f"aggregated over layers {mixing.layers[0]}–{mixing.layers[-1]}"
    else:
        held = list(mixing.layers)
        index = layer if layer < 0 else (held.index(layer) if layer in held else len(held))
        if not -len(held) <= index < len(held):
            raise InvalidInputError(f"layer {layer} is not held by this result (layers {held})")
        values, what = mixing.matrices[index], f"layer {held[index]}"
    n = len(mixing.tokens)
    figure, axes = _axes(ax, (_size(n), _size(n)))
    image = axes.imshow(values.detach().to("cpu", torch.float32).numpy(), cmap="Reds", vmin=0.0)
    axes.set_xticks(range(n), labels=list(mixing.tokens), rotation=90, fontsize=8)
    axes.set_yticks(range(n), labels=list(mixing.tokens), fontsize=8)
    axes.set_xlabel("input token j")
    axes.set_ylabel("output token i")
    axes.set_title(f"{mixing.method}, {what}")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


def plot_head_scores(result: AttentionAttribution, *, ax: Axes | None = None) -> Figure:
    """Layer × head grid of head scores: the maximum attribution of each head (Hao et al. 2021, §4.1).

    Args:
        result: the attribution result.
        ax: draw here instead of on a new figure.
    """
    scores = result.head_scores().detach().to("cpu", torch.float32).numpy()
    figure, axes = _axes(ax, (_size(result.num_heads, 3.0, 0.45), _size(len(result.layers), 2.0, 0.4)))
    bound = float(abs(scores).max()) or 1.0
    image = axes.imshow(scores, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    axes.set_xticks(range(result.num_heads))
    axes.set_yticks(range(len(result.layers)), labels=[str(layer) for layer in result.layers])
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_title("max attribution per head")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


def plot_token_scores(
    tokens: Sequence[str],
    scores: TokenScores,
    *,
    special_mask: Sequence[bool] = (),
    ax: Axes | None = None,
) -> Figure:
    """Bar chart of one method's token scores, titled with the method and its reduction.

    Args:
        tokens: the n tokens.
        scores: n scores (e.g. from :func:`attrflow.viz.default_token_scores` or a rollout row).
        special_mask: True for special tokens, drawn in grey.
        ax: draw here instead of on a new figure.
    """
    n = len(tokens)
    if len(scores.values) != n:
        raise InvalidInputError(f"{len(scores.values)} scores for {n} tokens")
    figure, axes = _axes(ax, (_size(n, 4.0, 0.3, 20.0), 3.2))
    colours = [
        "#aaaaaa" if i < len(special_mask) and special_mask[i] else ("#d62728" if v >= 0 else "#1f77b4")
        for i, v in enumerate(scores.values)
    ]
    axes.bar(range(n), scores.values, color=colours)
    axes.axhline(0.0, color="#444", linewidth=0.6)
    axes.set_xticks(range(n), labels=list(tokens), rotation=90, fontsize=8)
    axes.set_xlim(-0.6, n - 0.4)
    axes.set_ylabel("score")
    axes.set_title(f"{scores.method}\n{scores.reduction}", fontsize=9)
    return figure


def plot_tree(tree: AttributionTree, *, ax: Axes | None = None) -> Figure:
    """Draw an attribution tree: tokens left to right, layers bottom to top, arrows child → parent.

    Args:
        tree: the tree (:func:`attrflow.attribution_tree`).
        ax: draw here instead of on a new figure.
    """
    n = len(tree.tokens)
    top = tree.root.layer
    bottom = min(node.layer for node in tree.nodes)
    figure, axes = _axes(ax, (_size(n, 4.0, 0.45, 24.0), _size(top - bottom + 1, 2.5, 0.5, 12.0)))
    placed = {node.token: node for node in tree.nodes}
    arrow: dict[str, Any] = {"arrowstyle": "-|>", "color": "#555", "shrinkA": 9, "shrinkB": 9}
    for edge in tree.edges:
        child, parent = placed[edge.child], placed[edge.parent]
        style = "arc3,rad=-0.4" if child.layer == parent.layer else "arc3,rad=0"
        axes.annotate(
            "",
            xy=(parent.token, parent.layer),
            xytext=(child.token, child.layer),
            arrowprops={**arrow, "linewidth": 0.8 + 1.6 * min(max(edge.score, 0.0), 1.5), "connectionstyle": style},
        )
    for node in tree.nodes:
        is_root = node == tree.root
        axes.text(
            node.token,
            node.layer,
            tree.tokens[node.token],
            ha="center",
            va="center",
            fontsize=8,
            bbox={
                "boxstyle": "round,pad=0.3",
                "facecolor": "#f4a261" if is_root else "#e9f1fb",
                "edgecolor": "#4a6fa5",
            },
        )
    axes.set_xlim(-0.7, n - 0.3)
    axes.set_ylim(bottom - 0.7, top + 0.7)
    axes.set_xticks(range(n), labels=list(tree.tokens), rotation=90, fontsize=8)
    levels = list(range(bottom, top + 1))
    axes.set_yticks(levels, labels=["output" if lv == tree.num_layers else f"layer {lv}" for lv in levels])
    axes.grid(axis="y", color="#eee")
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.set_title(f"attribution tree (root {tree.tokens[tree.root.token]}, τ = {tree.threshold:g})")
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Save a figure (format from the suffix: png, svg, pdf) atomically. Returns the path."""
    import io

    from attrflow.storage import atomic_write_bytes

    target = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=target.suffix.lstrip(".") or "png", dpi=dpi)
    return atomic_write_bytes(target, buffer.getvalue())


def plot_faithfulness(report: FaithfulnessReport, reference: str, *, ax: Axes | None = None) -> Figure:
    """Spearman with ``reference`` per layer, mean ± std over examples, one line per per-layer method."""
    import numpy as np

    from attrflow.analysis.faithfulness.report import nan_stats

    table = report.reference_table(reference)
    figure, axes = _axes(ax, (5.5, 3.6))
    x = np.arange(1, len(report.layers) + 1)
    for method, values in table.items():
        mean, std, _ = nan_stats(values)
        (line,) = axes.plot(x, mean, marker="o", label=method)
        axes.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.12, linewidth=0)
    axes.axhline(0.0, color="grey", linewidth=0.6)
    axes.set_xticks(x, report.layer_names)
    axes.set_xlabel("layer")
    axes.set_ylabel(f"Spearman with {reference}")
    axes.set_ylim(-1.0, 1.0)
    axes.set_title(f"{report.settings.get('model', '')}: {report.num_examples} examples", fontsize=10)
    if table:
        axes.legend(fontsize=8, loc="lower right")
    return figure


def plot_erasure_curves(report: FaithfulnessReport, metric: str, *, ax: Axes | None = None) -> Figure:
    """Mean erasure curve per method: ``metric`` (comprehensiveness or sufficiency) against the removed share."""
    import numpy as np

    from attrflow.analysis.faithfulness.report import nan_stats

    if metric not in ("comprehensiveness", "sufficiency"):
        raise InvalidInputError(f"metric must be 'comprehensiveness' or 'sufficiency', got {metric!r}")
    curves = report.comprehensiveness if metric == "comprehensiveness" else report.sufficiency
    figure, axes = _axes(ax, (5.5, 3.6))
    x = np.asarray(report.bins) * 100
    for method in report.aopc_methods:
        axes.plot(x, nan_stats(curves[method])[0], marker=".", label=method)
    axes.set_xlabel("top-k% of tokens " + ("removed" if metric == "comprehensiveness" else "kept"))
    axes.set_ylabel(f"{metric} (Δp)")
    axes.legend(fontsize=8)
    return figure
