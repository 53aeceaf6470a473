"""Attribution methods as small objects with one verb, and the quadrature rules they share."""

from attrflow.methods.attribution import (
    DEFAULT_RULE,
    DEFAULT_STEPS,
    DEFAULT_TOLERANCE,
    AttentionAttributor,
    Keep,
    Steps,
    attribute,
    check_steps,
)
from attrflow.methods.quadrature import RULES, Rule, quadrature
from attrflow.methods.recording import record_attention

__all__ = [
    "DEFAULT_RULE",
    "DEFAULT_STEPS",
    "DEFAULT_TOLERANCE",
    "RULES",
    "AttentionAttributor",
    "Keep",
    "Rule",
    "Steps",
    "attribute",
    "check_steps",
    "quadrature",
    "record_attention",
]
