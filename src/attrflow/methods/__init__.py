"""Attribution methods as small objects with one verb, and the quadrature rules they share."""

from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, AttentionAttributor, attribute
from attrflow.methods.quadrature import RULES, Rule, quadrature
from attrflow.methods.recording import record_attention

__all__ = [
    "DEFAULT_RULE",
    "DEFAULT_STEPS",
    "RULES",
    "AttentionAttributor",
    "Rule",
    "attribute",
    "quadrature",
    "record_attention",
]
