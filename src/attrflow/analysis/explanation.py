"""One input, every view: attribution, attribution tree, and token scores of rollout, flow and raw attention.

:func:`explain` is what ``attrflow explain`` and ``attrflow demo`` run. Each token-score row says how it was
reduced to one value per token, because "the attention to token j" means nothing without naming the layer, the
output position and the head fusion.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from attrflow.errors import InvalidInputError
from attrflow.methods import DEFAULT_RULE, DEFAULT_STEPS, Rule, attribute, record_attention
from attrflow.models import Model
from attrflow.results import AttentionAttribution, RecordedAttention

Method = Literal["attattr", "rollout", "flow", "attention"]
METHODS: tuple[str, ...] = get_args(Method)

__all__ = ["METHODS", "Explanation", "Method", "explain"]


@dataclass(frozen=True, eq=False)
class Explanation:
    """Everything :func:`explain` computed for one input.

    Attributes:
        result: the attribution (or, without ``"attattr"``, the recorded attention).
        tree: the attribution tree (None without ``"attattr"``).
        token_scores: extra token-score rows for the report (rollout, flow), by method name.
        methods: the methods asked for.
    """

    result: AttentionAttribution | RecordedAttention
    tree: Any = None
    token_scores: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = METHODS

    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
        """The self-contained HTML report (written to ``path`` when given)."""
        if isinstance(self.result, AttentionAttribution):
            return self.result.to_html(path, token_scores=self.token_scores, tree=self.tree, title=title)
        return self.result.to_html(path, token_scores=self.token_scores, title=title)

    def _repr_html_(self) -> str:
        from attrflow.viz import report_iframe

        return report_iframe(self.to_html())

    def write(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """Write the report to ``path`` and return it."""
        self.to_html(path, title=title)
        return Path(path)


def _validate_methods(methods: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(methods))
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise InvalidInputError(f"methods must be a non-empty selection of {', '.join(METHODS)}; got {list(methods)}")
    return chosen


def explain(
    model: Model,
    inputs: Any,
    *,
    methods: Sequence[str] = METHODS,
    target: int | None = None,
    steps: int | Literal["auto"] = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    tree_threshold: float = 0.4,
) -> Explanation:
    """Explain one input with every selected method, ready to render.

    Args:
        model: an :class:`attrflow.Model`.
        inputs: a string, a ``(text, text_pair)`` tuple, or a dict of batch-1 tensors.
        methods: any of ``"attattr"`` (self-attention attribution + tree), ``"rollout"``, ``"flow"``,
            ``"attention"`` (raw attention of the last layer). Without ``"attattr"`` nothing is attributed (fast).
        target: output to explain (default: the prediction); used by AttAttr.
        steps, rule: AttAttr quadrature.
        tree_threshold: τ of the attribution tree.
    """
    from attrflow.analysis.tree import attribution_tree
    from attrflow.flow.maxflow import attention_flow
    from attrflow.flow.rollout import attention_rollout
    from attrflow.viz import TokenScores

    chosen = _validate_methods(methods)
    result: AttentionAttribution | RecordedAttention
    tree = None
    if "attattr" in chosen:
        result = attribute(model, inputs, target=target, steps=steps, rule=rule)
        tree = attribution_tree(result, threshold=tree_threshold)
    else:
        result = record_attention(model, inputs)
    position = result.output_position
    where = "[CLS]" if position == 0 and not model.causal else f"position {position} ({result.tokens[position]})"
    rows: dict[str, Any] = {}
    if "rollout" in chosen:
        rollout = attention_rollout(result.attentions)[-1, position]
        rows["rollout"] = TokenScores.from_values(
            "rollout", rollout, f"rollout through all layers, row of {where}, 0.5·A + 0.5·I, mean over heads"
        )
    if "flow" in chosen:
        flow = attention_flow(result.attentions, layer=-1, positions=[position])[0]
        rows["flow"] = TokenScores.from_values(
            "flow", flow, f"max-flow from {where} at the last layer to each input token, normalised to sum 1"
        )
    return Explanation(result=result, tree=tree, token_scores=rows, methods=chosen)
