"""The only place that touches transformers internals: loading, encoding, and the registered attention function
that records, replaces and gates attention probabilities."""

from attrflow.models._interface import IMPL_NAME, Session, active_session, attrflow_attention_forward
from attrflow.models._model import (
    SPECIAL_SEGMENT,
    TASKS,
    Encoding,
    Model,
    Recording,
    Task,
    TokenizedText,
    load_model,
)

__all__ = [
    "IMPL_NAME",
    "SPECIAL_SEGMENT",
    "TASKS",
    "Encoding",
    "Model",
    "Recording",
    "Session",
    "Task",
    "TokenizedText",
    "active_session",
    "attrflow_attention_forward",
    "load_model",
]
