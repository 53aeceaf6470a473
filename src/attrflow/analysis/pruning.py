"""Deprecated location of the head pruning curves and the head study, now in :mod:`attrflow.analysis.heads`
(kept one release)."""

from __future__ import annotations

import warnings

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

warnings.warn(
    "attrflow.analysis.pruning moved to attrflow.analysis.heads (or use attrflow.analyze_heads, "
    "attrflow.prune_curve, attrflow.PruningCurve, attrflow.HeadsAnalysis)",
    DeprecationWarning,
    stacklevel=2,
)
