"""Head pruning curves and the whole head study, now in :mod:`attrflow.analysis.heads` (this module re-exports
them for code written against the old layout)."""

from attrflow.analysis.heads.pruning import (
    DEFAULT_FRACTIONS,
    DEMO_FRACTIONS,
    PruningCurve,
    evaluation_items,
    prune_curve,
)
from attrflow.analysis.heads.study import HeadsAnalysis, analyze_heads, heads_demo

__all__ = [
    "DEFAULT_FRACTIONS",
    "DEMO_FRACTIONS",
    "HeadsAnalysis",
    "PruningCurve",
    "analyze_heads",
    "evaluation_items",
    "heads_demo",
    "prune_curve",
]
