"""Attention heads (Hao et al., AAAI 2021, §4.1–4.2): which heads a classifier relies on, and what pruning them
costs.

    >>> from attrflow.analysis.heads import analyze_heads, list_rankings
    >>> [r.name for r in list_rankings()]  # the registry: attattr, taylor, attention, random
    >>> study = analyze_heads(model, validation, methods=["attattr", "random"])
    >>> study.save("heads.safetensors")  # one result file (attrflow.load_result reads it back)
    >>> study.export("heads/")  # heads.json, heads.html, pruning.png

The modules, bottom up: :mod:`.rankings` (the registry of head rankings), :mod:`.task` (the pure per-example
kernel and the runner task around it), :mod:`.importance` (:class:`HeadImportance`, :func:`head_importance`),
:mod:`.pruning` (:class:`PruningCurve`, :func:`prune_curve`, the resumable checkpoint) and :mod:`.study`
(:class:`HeadsAnalysis`, :func:`analyze_heads`, :func:`heads_demo`). Names load on first use, so importing the
registry stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PACKAGE = "attrflow.analysis.heads"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "CleanPass": "rankings",
    "HeadRanking": "rankings",
    "Method": "rankings",
    "ScoreOptions": "rankings",
    "check_rankings": "rankings",
    "data_ranking_names": "rankings",
    "get_ranking": "rankings",
    "ranking_names": "rankings",
    "list_rankings": "rankings",
    "register_ranking": "rankings",
    "unregister_ranking": "rankings",
    "HeadScoresTask": "task",
    "TAYLOR_OBJECTIVES": "task",
    "TaylorObjective": "task",
    "check_classifier": "task",
    "resolve_model": "task",
    "score_example": "task",
    "DEFAULT_EXAMPLES": "importance",
    "HeadImportance": "importance",
    "ImportanceCorrelation": "importance",
    "aggregate": "importance",
    "head_importance": "importance",
    "pruned_count": "importance",
    "random_importance": "importance",
    "DEFAULT_FRACTIONS": "pruning",
    "DEMO_FRACTIONS": "pruning",
    "PruningCurve": "pruning",
    "evaluation_items": "pruning",
    "prune_curve": "pruning",
    "pruned_accuracy": "pruning",
    "HeadsAnalysis": "study",
    "analyze_heads": "study",
    "heads_demo": "study",
    "Subset": "_deprecated",
    "select_examples": "_deprecated",
}

__all__ = [
    "DATA_METHODS",
    "DEFAULT_EXAMPLES",
    "DEFAULT_FRACTIONS",
    "DEMO_FRACTIONS",
    "METHODS",
    "TAYLOR_OBJECTIVES",
    "CleanPass",
    "HeadImportance",
    "HeadRanking",
    "HeadScoresTask",
    "HeadsAnalysis",
    "ImportanceCorrelation",
    "Method",
    "PruningCurve",
    "ScoreOptions",
    "Selection",
    "Subset",
    "Target",
    "TaylorObjective",
    "aggregate",
    "analyze_heads",
    "check_classifier",
    "check_rankings",
    "data_ranking_names",
    "evaluation_items",
    "get_ranking",
    "head_importance",
    "heads_demo",
    "list_rankings",
    "prune_curve",
    "pruned_accuracy",
    "pruned_count",
    "random_importance",
    "ranking_names",
    "register_ranking",
    "resolve_model",
    "score_example",
    "select_examples",
    "unregister_ranking",
]

if TYPE_CHECKING:
    from attrflow.analysis.heads._deprecated import Subset, select_examples
    from attrflow.analysis.heads.importance import (
        DEFAULT_EXAMPLES,
        HeadImportance,
        ImportanceCorrelation,
        aggregate,
        head_importance,
        pruned_count,
        random_importance,
    )
    from attrflow.analysis.heads.pruning import (
        DEFAULT_FRACTIONS,
        DEMO_FRACTIONS,
        PruningCurve,
        evaluation_items,
        prune_curve,
        pruned_accuracy,
    )
    from attrflow.analysis.heads.rankings import (
        CleanPass,
        HeadRanking,
        Method,
        ScoreOptions,
        check_rankings,
        data_ranking_names,
        get_ranking,
        list_rankings,
        ranking_names,
        register_ranking,
        unregister_ranking,
    )
    from attrflow.analysis.heads.study import HeadsAnalysis, analyze_heads, heads_demo
    from attrflow.analysis.heads.task import (
        TAYLOR_OBJECTIVES,
        HeadScoresTask,
        TaylorObjective,
        check_classifier,
        resolve_model,
        score_example,
    )
    from attrflow.validation import Selection
    from attrflow.validation import TargetRule as Target

    METHODS: tuple[str, ...]
    DATA_METHODS: tuple[str, ...]


def __getattr__(name: str) -> Any:
    # METHODS and DATA_METHODS follow the registry (a ranking registered later is listed too)
    if name in ("METHODS", "DATA_METHODS"):
        from attrflow.analysis.heads import rankings as registry

        return registry.ranking_names() if name == "METHODS" else registry.data_ranking_names()
    if name in ("Selection", "Target"):
        from attrflow import validation

        return validation.Selection if name == "Selection" else validation.TargetRule
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
