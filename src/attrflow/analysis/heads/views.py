"""What the heads page and figures show, as plain data: the results' display methods build these and hand them to
:mod:`attrflow.viz.heads`, whose renderers compute nothing (ranks, AUCs, legends and colours come ready)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CurveLine", "ImportanceGrid", "PruningChart"]


@dataclass(frozen=True)
class ImportanceGrid:
    """One head-importance map as shown: ``[L][H]`` scores and pruning ranks.

    Attributes:
        method: the ranking's name.
        label: how the legend names it.
        scores: ``[L][H]`` importance.
        ranks: ``[L][H]`` pruning rank of each head (0 = pruned first).
        num_examples: the examples the scores average over.
        settings: how they were computed.
    """

    method: str
    label: str
    scores: Sequence[Sequence[float]]
    ranks: Sequence[Sequence[int]]
    num_examples: int
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CurveLine:
    """One ranking's pruning curve: accuracy at each fraction, its AUC, legend and colour (None: from a cycle)."""

    method: str
    label: str
    accuracy: Sequence[float]
    auc: float
    colour: str | None = None


@dataclass(frozen=True)
class PruningChart:
    """Pruning curves of several rankings on one model and evaluation set."""

    fractions: Sequence[float]
    num_pruned: Sequence[int]
    lines: Sequence[CurveLine]
    majority_accuracy: float
    num_layers: int
    num_heads: int
    num_examples: int
    settings: Mapping[str, Any] = field(default_factory=dict)
