"""Attention-derived token scores: raw attention, attention rollout and attention flow (Abnar & Zuidema, ACL 2020).

Each is read per layer at the explained output position's row (``reduction="cls"``, the paper) or reduced over
every query row (``"max"`` / ``"mean"``; the official SST-2 script takes the max). The per-layer matrices on the
result are the graph each method works on: the head-fused attention ``W_l`` (raw) or ``0.5·W_l + 0.5·I``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from attrflow.errors import InvalidInputError
from attrflow.flow.scores import AttentionMethod, attention_token_scores, fuse_heads
from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, Produces, register_method
from attrflow.results import TokenScores
from attrflow.validation import HeadFusion, Reduction, check_choice

_PAPER = "Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020"


class _AttentionDerived(Method):
    """Shared computation of the three attention-derived methods."""

    kernel: ClassVar[AttentionMethod]
    produces: ClassVar[frozenset[Produces]] = frozenset({"layer_scores", "matrices"})
    reads_output = False
    in_explain = True
    paper = _PAPER

    def _words(self, context: ExplainContext, reduction: Reduction, head_fusion: str, residual: bool) -> str:
        raise NotImplementedError

    def validate(self, **options: Any) -> None:
        """reduction, head_fusion, residual (a bool), layers."""
        check_choice("reduction", options.get("reduction", "cls"), Reduction)
        check_choice("head_fusion", options.get("head_fusion", "mean"), HeadFusion)
        residual = options.get("residual", True)
        if not isinstance(residual, bool):
            raise InvalidInputError(f"residual must be True or False, got {residual!r}")

    def _compute(
        self,
        context: ExplainContext,
        layers: int | Sequence[int] | None,
        reduction: Reduction,
        head_fusion: HeadFusion,
        residual: bool,
    ) -> TokenScores:
        check_choice("reduction", reduction, Reduction)
        chosen = context.layers(layers)
        attentions = context.attentions
        scores = attention_token_scores(
            attentions,
            method=self.kernel,
            layers=list(chosen),
            position=context.position,
            reduction=reduction,
            head_fusion=head_fusion,
            residual=residual,
        )
        fused = fuse_heads(attentions[list(chosen)].double(), head_fusion)
        if self.kernel != "attention" and residual:
            fused = 0.5 * fused + 0.5 * torch.eye(context.n, dtype=fused.dtype)
        return context.result(
            self.name,
            scores,
            self._words(context, reduction, head_fusion, residual),
            layers=chosen,
            summary=self.summary,
            matrices=fused.float(),
            reads_output=False,
            position=context.position if reduction == "cls" else -1,
            settings={"reduction": reduction, "head_fusion": head_fusion, "residual": bool(residual)},
        )


def _rows(context: ExplainContext, reduction: Reduction) -> str:
    return f"row of {context.where()}" if reduction == "cls" else f"{reduction} over all query rows"


@register_method
class RawAttention(_AttentionDerived):
    """Raw attention of each layer."""

    name = "attention"
    description = "raw attention: each layer's attention to token j, heads fused, no residual"
    kernel = "attention"
    cost = "1 forward"

    def _words(self, context: ExplainContext, reduction: Reduction, head_fusion: str, residual: bool) -> str:
        return f"attention probabilities per layer, {_rows(context, reduction)}, {head_fusion} over heads"

    def compute(
        self,
        context: ExplainContext,
        *,
        layers: int | Sequence[int] | None = None,
        reduction: Reduction = "cls",
        head_fusion: HeadFusion = "mean",
    ) -> TokenScores:
        """Raw attention ``[L, n]``: layer l's head-fused attention from the explained position to token j."""
        return self._compute(context, layers, reduction, head_fusion, False)


@register_method
class Rollout(_AttentionDerived):
    """Attention rollout through the layers."""

    name = "rollout"
    description = "attention rollout: product of the layers' attention graphs 0.5·A + 0.5·I up to each layer"
    kernel = "rollout"
    cost = "1 forward + L matrix products"

    def _words(self, context: ExplainContext, reduction: Reduction, head_fusion: str, residual: bool) -> str:
        graph = "0.5·A + 0.5·I" if residual else "A (no residual)"
        return f"rollout up to each layer, {_rows(context, reduction)}, {graph}, {head_fusion} over heads"

    def compute(
        self,
        context: ExplainContext,
        *,
        layers: int | Sequence[int] | None = None,
        reduction: Reduction = "cls",
        head_fusion: HeadFusion = "mean",
        residual: bool = True,
    ) -> TokenScores:
        """Rollout ``[L, n]``: row l is ``Ã_l``'s row of the explained position (Abnar & Zuidema §3)."""
        return self._compute(context, layers, reduction, head_fusion, residual)


@register_method
class Flow(_AttentionDerived):
    """Attention flow: max-flow through the layered attention graph."""

    name = "flow"
    description = "attention flow: max-flow from the explained position's node to token j, normalised to sum 1"
    kernel = "flow"
    cost = "1 forward + L·n max-flows"

    def _words(self, context: ExplainContext, reduction: Reduction, head_fusion: str, residual: bool) -> str:
        graph = "0.5·A + 0.5·I" if residual else "A (no residual)"
        source = f"from {context.where()}" if reduction == "cls" else f"{reduction} over every position's node"
        return f"max-flow {source} at each layer to each input token, normalised to sum 1, graph {graph}, {head_fusion} over heads"

    def compute(
        self,
        context: ExplainContext,
        *,
        layers: int | Sequence[int] | None = None,
        reduction: Reduction = "cls",
        head_fusion: HeadFusion = "mean",
        residual: bool = True,
    ) -> TokenScores:
        """Flow ``[L, n]``: exact max-flow values (Abnar & Zuidema §3), certified to 1e-7."""
        return self._compute(context, layers, reduction, head_fusion, residual)
