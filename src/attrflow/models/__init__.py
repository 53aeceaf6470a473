"""The only place that touches transformers internals: loading, encoding, and the registered attention function
that records, replaces and gates attention probabilities."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from attrflow.models._blocks import BlockCalls, BlockStructure, BlockTensors
from attrflow.models._encoding import SPECIAL_SEGMENT, Encoding, TokenizedText
from attrflow.models._interface import IMPL_NAME, active_session, attrflow_attention_forward
from attrflow.models._loading import load_model
from attrflow.models._model import Model
from attrflow.models._passes import BranchPass, ForwardPass, Recording
from attrflow.models._probe import TASKS, Task
from attrflow.models._streaming import KeyCache

if TYPE_CHECKING:  # deprecated, private: reached through __getattr__ below (with a warning) until callers move
    from attrflow.models._interface import Session as Session

__all__ = [
    "IMPL_NAME",
    "SPECIAL_SEGMENT",
    "TASKS",
    "BlockCalls",
    "BlockStructure",
    "BlockTensors",
    "BranchPass",
    "Encoding",
    "ForwardPass",
    "KeyCache",
    "Model",
    "Recording",
    "Task",
    "TokenizedText",
    "active_session",
    "attrflow_attention_forward",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name == "Session":
        warnings.warn(
            "attrflow.models.Session is private now: use Model.forward_pass(encoding, gate=...) for recorded "
            "attention and head gates, Model.record(inputs), Model.run_branches(...) -> BranchPass, "
            "Model.gate_heads and Model.mask_interactions",
            DeprecationWarning,
            stacklevel=2,
        )
        from attrflow.models._interface import Session as Session

        return Session
    raise AttributeError(f"module 'attrflow.models' has no attribute {name!r}")
