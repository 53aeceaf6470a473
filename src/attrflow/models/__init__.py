"""The only place that touches transformers internals: loading, encoding, and the registered attention function
that records, replaces and gates attention probabilities."""

from attrflow.models._interface import IMPL_NAME, Session, active_session, attrflow_attention_forward
from attrflow.models._model import TASKS, Encoding, Model, Recording, Task, load_model

__all__ = [
    "IMPL_NAME",
    "TASKS",
    "Encoding",
    "Model",
    "Recording",
    "Session",
    "Task",
    "active_session",
    "attrflow_attention_forward",
    "load_model",
]
