"""Adversarial triggers from attribution patterns (Hao et al., AAAI 2021, §5), with a random-token control.

- :mod:`~attrflow.analysis.triggers.mining` (the official ``run_adver_connection.py``): each source example's
  strongest attention pattern, from self-attention attribution, on the dataset runner.
- :mod:`~attrflow.analysis.triggers.insertion`: a trigger's word-pieces inserted at the relative positions they
  had in their source example, per segment (pure functions on token lists).
- :mod:`~attrflow.analysis.triggers.evaluation` (the official ``run_adver_evaluate.py``): accuracy per gold label
  before and after inserting each trigger, next to random tokens at the same positions.
- :mod:`~attrflow.analysis.triggers.patterns` and :mod:`~attrflow.analysis.triggers.report`: the results
  (:class:`TriggerPatterns`, :class:`AttackReport`), saved as one file each and read back by
  :func:`attrflow.load_result`; their pages and figures are drawn by :mod:`attrflow.viz.triggers`.
"""

from __future__ import annotations

import warnings
from typing import Any

from attrflow.analysis.triggers._common import (
    DEFAULT_CONTROL_SEEDS,
    DEFAULT_MIN_SCORE,
    DEFAULT_PAIR_RATIO,
    OVERALL,
    SPECIAL,
)
from attrflow.analysis.triggers.evaluation import attack, trigger_attack
from attrflow.analysis.triggers.insertion import insert_trigger
from attrflow.analysis.triggers.mining import PatternMiningTask, mine_pattern, mine_patterns
from attrflow.analysis.triggers.patterns import Pattern, Trigger, TriggerPatterns
from attrflow.analysis.triggers.report import AttackOutcome, AttackReport

__all__ = [
    "DEFAULT_CONTROL_SEEDS",
    "DEFAULT_MIN_SCORE",
    "DEFAULT_PAIR_RATIO",
    "OVERALL",
    "SPECIAL",
    "AttackOutcome",
    "AttackReport",
    "Pattern",
    "PatternMiningTask",
    "Trigger",
    "TriggerPatterns",
    "attack",
    "insert_trigger",
    "mine_pattern",
    "mine_patterns",
    "trigger_attack",
]


def __getattr__(name: str) -> Any:
    if name == "Sample":
        from attrflow.validation import Selection

        warnings.warn(
            "attrflow.analysis.triggers.Sample is deprecated and goes in the next release; use "
            "attrflow.validation.Selection",
            DeprecationWarning,
            stacklevel=2,
        )
        return Selection
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
