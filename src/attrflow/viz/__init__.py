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

__all__ = [
    "TokenScores",
    "default_token_scores",
    "plot_head_scores",
    "plot_heatmap",
    "plot_token_scores",
    "plot_tree",
    "render_attention",
    "render_report",
    "report_iframe",
    "tree_svg",
    "write_report",
]
