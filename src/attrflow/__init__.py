"""attrflow: how information flows between tokens inside Transformer models.

Self-attention attribution (Hao et al., AAAI 2021), attention rollout and attention flow (Abnar & Zuidema,
ACL 2020) for any 🤗 transformers model, with the evaluation around them.

    >>> import attrflow
    >>> model = attrflow.load_model("sentiment")
    >>> result = attrflow.attribute(model, "what a wonderful day")
    >>> result.top_interactions(5)

Importing attrflow is cheap: the public names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AttrflowError": "attrflow.errors",
    "InvalidInputError": "attrflow.errors",
    "UnsupportedModelError": "attrflow.errors",
    "MissingDependencyError": "attrflow.errors",
    "ResultFormatError": "attrflow.errors",
    "RunLockedError": "attrflow.errors",
    "RunMismatchError": "attrflow.errors",
    "AttentionAttribution": "attrflow.results",
    "RecordedAttention": "attrflow.results",
    "load_result": "attrflow.results",
    "Model": "attrflow.models",
    "Encoding": "attrflow.models",
    "load_model": "attrflow.models",
    "attribute": "attrflow.methods",
    "AttentionAttributor": "attrflow.methods",
    "record_attention": "attrflow.methods",
    "token_scores": "attrflow.methods.api",
    "context_mixing": "attrflow.methods.mixing",
    "ContextMixing": "attrflow.methods.mixing",
    "ExplainContext": "attrflow.methods.context",
    "Method": "attrflow.methods.registry",
    "MethodInfo": "attrflow.methods.registry",
    "get_method": "attrflow.methods.registry",
    "list_methods": "attrflow.methods.registry",
    "register_method": "attrflow.methods.registry",
    "Recording": "attrflow.models",
    "TokenizedText": "attrflow.models",
    "RunOptions": "attrflow.runner",
    "sample": "attrflow.data",
    "DatasetTask": "attrflow.runner",
    "RunResult": "attrflow.runner",
    "open_run": "attrflow.runner",
    "run_dataset": "attrflow.runner",
    "explain": "attrflow.analysis.explanation",
    "Explanation": "attrflow.analysis.explanation",
    "HeadImportance": "attrflow.analysis.heads",
    "head_importance": "attrflow.analysis.heads",
    "PruningCurve": "attrflow.analysis.heads",
    "HeadsAnalysis": "attrflow.analysis.heads",
    "prune_curve": "attrflow.analysis.heads",
    "analyze_heads": "attrflow.analysis.heads",
    "AttributionTree": "attrflow.analysis.tree",
    "attribution_tree": "attrflow.analysis.tree",
    "TokenScores": "attrflow.results",
    "render_report": "attrflow.viz.report",
    "attention_rollout": "attrflow.flow.rollout",
    "attention_flow": "attrflow.flow.maxflow",
    "Dataset": "attrflow.data",
    "Example": "attrflow.data",
    "load_dataset": "attrflow.data",
    "mine_patterns": "attrflow.analysis.triggers",
    "attack": "attrflow.analysis.triggers",
    "trigger_attack": "attrflow.analysis.triggers",
    "insert_trigger": "attrflow.analysis.triggers",
    "TriggerPatterns": "attrflow.analysis.triggers",
    "Pattern": "attrflow.analysis.triggers",
    "Trigger": "attrflow.analysis.triggers",
    "AttackReport": "attrflow.analysis.triggers",
    "raw_attention_scores": "attrflow.analysis.token_scores",
    "rollout_scores": "attrflow.analysis.token_scores",
    "flow_scores": "attrflow.analysis.token_scores",
    "attattr_scores": "attrflow.analysis.token_scores",
    "blankout_scores": "attrflow.analysis.token_scores",
    "input_gradient": "attrflow.methods.gradients",
    "gradient_x_input": "attrflow.methods.gradients",
    "integrated_gradients": "attrflow.methods.gradients",
    "faithfulness": "attrflow.analysis.faithfulness",
    "aopc": "attrflow.analysis.faithfulness",
    "FaithfulnessReport": "attrflow.analysis.faithfulness",
    "leaderboard": "attrflow.analysis.leaderboard",
    "Leaderboard": "attrflow.analysis.leaderboard",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:
    from attrflow.analysis.explanation import Explanation, explain
    from attrflow.analysis.faithfulness import FaithfulnessReport, aopc, faithfulness
    from attrflow.analysis.heads import (
        HeadImportance,
        HeadsAnalysis,
        PruningCurve,
        analyze_heads,
        head_importance,
        prune_curve,
    )
    from attrflow.analysis.leaderboard import Leaderboard, leaderboard
    from attrflow.analysis.token_scores import (
        attattr_scores,
        blankout_scores,
        flow_scores,
        raw_attention_scores,
        rollout_scores,
    )
    from attrflow.analysis.tree import AttributionTree, attribution_tree
    from attrflow.analysis.triggers import (
        AttackReport,
        Pattern,
        Trigger,
        TriggerPatterns,
        attack,
        insert_trigger,
        mine_patterns,
        trigger_attack,
    )
    from attrflow.data import Dataset, Example, load_dataset, sample
    from attrflow.errors import (
        AttrflowError,
        InvalidInputError,
        MissingDependencyError,
        ResultFormatError,
        RunLockedError,
        RunMismatchError,
        UnsupportedModelError,
    )
    from attrflow.flow.maxflow import attention_flow
    from attrflow.flow.rollout import attention_rollout
    from attrflow.methods import AttentionAttributor, attribute, record_attention
    from attrflow.methods.api import token_scores
    from attrflow.methods.context import ExplainContext
    from attrflow.methods.gradients import gradient_x_input, input_gradient, integrated_gradients
    from attrflow.methods.mixing import ContextMixing, context_mixing
    from attrflow.methods.registry import Method, MethodInfo, get_method, list_methods, register_method
    from attrflow.models import Encoding, Model, Recording, TokenizedText, load_model
    from attrflow.results import AttentionAttribution, RecordedAttention, TokenScores, load_result
    from attrflow.runner import DatasetTask, RunOptions, RunResult, open_run, run_dataset
    from attrflow.viz.report import render_report


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'attrflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
