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
    "NonFiniteError": "attrflow.errors",
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
    "Keep": "attrflow.methods",
    "Target": "attrflow.methods.targets",
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
    "attention_flow_bounds": "attrflow.flow.bounds",
    "sink_share": "attrflow.methods.sinks",
    "KeyCache": "attrflow.models",
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
    from attrflow.analysis.explanation import Explanation as Explanation
    from attrflow.analysis.explanation import explain as explain
    from attrflow.analysis.faithfulness import (
        FaithfulnessReport as FaithfulnessReport,
    )
    from attrflow.analysis.faithfulness import (
        aopc as aopc,
    )
    from attrflow.analysis.faithfulness import (
        faithfulness as faithfulness,
    )
    from attrflow.analysis.heads import (
        HeadImportance as HeadImportance,
    )
    from attrflow.analysis.heads import (
        HeadsAnalysis as HeadsAnalysis,
    )
    from attrflow.analysis.heads import (
        PruningCurve as PruningCurve,
    )
    from attrflow.analysis.heads import (
        analyze_heads as analyze_heads,
    )
    from attrflow.analysis.heads import (
        head_importance as head_importance,
    )
    from attrflow.analysis.heads import (
        prune_curve as prune_curve,
    )
    from attrflow.analysis.leaderboard import Leaderboard, leaderboard
    from attrflow.analysis.token_scores import (
        attattr_scores as attattr_scores,
    )
    from attrflow.analysis.token_scores import (
        blankout_scores as blankout_scores,
    )
    from attrflow.analysis.token_scores import (
        flow_scores as flow_scores,
    )
    from attrflow.analysis.token_scores import (
        raw_attention_scores as raw_attention_scores,
    )
    from attrflow.analysis.token_scores import (
        rollout_scores as rollout_scores,
    )
    from attrflow.analysis.tree import AttributionTree as AttributionTree
    from attrflow.analysis.tree import attribution_tree as attribution_tree
    from attrflow.analysis.triggers import (
        AttackReport as AttackReport,
    )
    from attrflow.analysis.triggers import (
        Pattern as Pattern,
    )
    from attrflow.analysis.triggers import (
        Trigger as Trigger,
    )
    from attrflow.analysis.triggers import (
        TriggerPatterns as TriggerPatterns,
    )
    from attrflow.analysis.triggers import (
        attack as attack,
    )
    from attrflow.analysis.triggers import (
        insert_trigger as insert_trigger,
    )
    from attrflow.analysis.triggers import (
        mine_patterns as mine_patterns,
    )
    from attrflow.analysis.triggers import (
        trigger_attack as trigger_attack,
    )
    from attrflow.data import Dataset as Dataset
    from attrflow.data import Example as Example
    from attrflow.data import load_dataset as load_dataset
    from attrflow.data import sample as sample
    from attrflow.errors import (
        AttrflowError as AttrflowError,
    )
    from attrflow.errors import (
        InvalidInputError as InvalidInputError,
    )
    from attrflow.errors import (
        MissingDependencyError as MissingDependencyError,
    )
    from attrflow.errors import (
        NonFiniteError as NonFiniteError,
    )
    from attrflow.errors import (
        ResultFormatError as ResultFormatError,
    )
    from attrflow.errors import (
        RunLockedError as RunLockedError,
    )
    from attrflow.errors import (
        RunMismatchError as RunMismatchError,
    )
    from attrflow.errors import (
        UnsupportedModelError as UnsupportedModelError,
    )
    from attrflow.flow.bounds import attention_flow_bounds as attention_flow_bounds
    from attrflow.flow.maxflow import attention_flow as attention_flow
    from attrflow.flow.rollout import attention_rollout as attention_rollout
    from attrflow.methods import (
        AttentionAttributor as AttentionAttributor,
    )
    from attrflow.methods import (
        Keep as Keep,
    )
    from attrflow.methods import (
        attribute as attribute,
    )
    from attrflow.methods import (
        record_attention as record_attention,
    )
    from attrflow.methods.api import token_scores as token_scores
    from attrflow.methods.context import ExplainContext as ExplainContext
    from attrflow.methods.gradients import (
        gradient_x_input as gradient_x_input,
    )
    from attrflow.methods.gradients import (
        input_gradient as input_gradient,
    )
    from attrflow.methods.gradients import (
        integrated_gradients as integrated_gradients,
    )
    from attrflow.methods.mixing import ContextMixing as ContextMixing
    from attrflow.methods.mixing import context_mixing as context_mixing
    from attrflow.methods.registry import (
        Method as Method,
    )
    from attrflow.methods.registry import (
        MethodInfo as MethodInfo,
    )
    from attrflow.methods.registry import (
        get_method as get_method,
    )
    from attrflow.methods.registry import (
        list_methods as list_methods,
    )
    from attrflow.methods.registry import (
        register_method as register_method,
    )
    from attrflow.methods.sinks import sink_share as sink_share
    from attrflow.methods.targets import Target as Target
    from attrflow.models import (
        Encoding as Encoding,
    )
    from attrflow.models import (
        KeyCache as KeyCache,
    )
    from attrflow.models import (
        Model as Model,
    )
    from attrflow.models import (
        Recording as Recording,
    )
    from attrflow.models import (
        TokenizedText as TokenizedText,
    )
    from attrflow.models import (
        load_model as load_model,
    )
    from attrflow.results import (
        AttentionAttribution as AttentionAttribution,
    )
    from attrflow.results import (
        RecordedAttention as RecordedAttention,
    )
    from attrflow.results import (
        TokenScores as TokenScores,
    )
    from attrflow.results import (
        load_result as load_result,
    )
    from attrflow.runner import (
        DatasetTask as DatasetTask,
    )
    from attrflow.runner import (
        RunOptions as RunOptions,
    )
    from attrflow.runner import (
        RunResult as RunResult,
    )
    from attrflow.runner import (
        open_run as open_run,
    )
    from attrflow.runner import (
        run_dataset as run_dataset,
    )
    from attrflow.viz.report import render_report as render_report


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'attrflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
