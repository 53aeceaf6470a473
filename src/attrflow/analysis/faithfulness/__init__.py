"""Faithfulness of token scores: the protocol of Abnar & Zuidema (ACL 2020, §5) and ERASER's AOPC, for every
registered method.

- :mod:`~attrflow.analysis.faithfulness.metrics`: Spearman, erasure curves and AOPC (pure functions);
- :mod:`~attrflow.analysis.faithfulness.evaluate`: the per-example kernel, its runner task, :func:`faithfulness`;
- :mod:`~attrflow.analysis.faithfulness.report`: :class:`FaithfulnessReport` (tables, JSON, save/load), rendered
  by :mod:`attrflow.viz.faithfulness`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from attrflow.analysis.faithfulness.evaluate import (
    QUICK_METHODS,
    REFERENCES,
    FaithfulnessOptions,
    FaithfulnessTask,
    evaluate_example,
    faithfulness,
    quick_faithfulness,
)
from attrflow.analysis.faithfulness.metrics import (
    DEFAULT_BINS,
    AOPCCurve,
    Removal,
    aopc,
    erasure_curves,
    erasure_order,
    removal_counts,
    spearman,
)
from attrflow.analysis.faithfulness.report import FaithfulnessReport, NanPolicy

__all__ = [
    "DEFAULT_BINS",
    "QUICK_METHODS",
    "REFERENCES",
    "AOPCCurve",
    "FaithfulnessOptions",
    "FaithfulnessReport",
    "FaithfulnessTask",
    "NanPolicy",
    "Removal",
    "aopc",
    "erasure_curves",
    "erasure_order",
    "evaluate_example",
    "faithfulness",
    "quick_faithfulness",
    "removal_counts",
    "spearman",
]


def __getattr__(name: str) -> Any:
    """The method lists of the time before the registry, computed from it (deprecated)."""
    from attrflow.methods.registry import get_method, method_names

    def scored() -> tuple[str, ...]:
        return tuple(m for m in method_names() if not get_method(m).baseline)

    lists: dict[str, Callable[[], tuple[str, ...]]] = {
        "METHODS": scored,
        "LAYERWISE_METHODS": lambda: tuple(m for m in scored() if get_method(m).per_layer),
        "GRADIENT_METHODS": lambda: tuple(m for m in scored() if not get_method(m).per_layer),
    }
    if name in lists:
        warnings.warn(
            f"attrflow.analysis.faithfulness.{name} is deprecated: the methods come from the registry "
            "(attrflow.list_methods())",
            DeprecationWarning,
            stacklevel=2,
        )
        return lists[name]()
    raise AttributeError(f"module 'attrflow.analysis.faithfulness' has no attribute {name!r}")
