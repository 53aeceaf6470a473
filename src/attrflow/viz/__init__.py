"""attrflow.viz: the self-contained HTML report, SVG drawings and matplotlib figures.

Nothing here computes attributions; everything draws results. matplotlib is imported only by the ``plot_*``
functions, on first use.
"""

from __future__ import annotations

from attrflow.viz.plots import plot_head_scores, plot_heatmap, plot_token_scores, plot_tree
from attrflow.viz.report import (
    TokenScores,
    default_token_scores,
    render_attention,
    render_report,
    report_iframe,
    write_report,
)
from attrflow.viz.svg import tree_svg
from attrflow.viz.triggers import plot_attack, plot_patterns, render_attack, render_patterns

__all__ = [
    "TokenScores",
    "default_token_scores",
    "plot_attack",
    "plot_head_scores",
    "plot_heatmap",
    "plot_patterns",
    "plot_token_scores",
    "plot_tree",
    "render_attack",
    "render_attention",
    "render_patterns",
    "render_report",
    "report_iframe",
    "tree_svg",
    "write_report",
]
