"""Attention-derived token scores: raw attention, attention rollout and attention flow (Abnar & Zuidema, ACL 2020).

Each is read per layer at the explained output position's row (``reduction="cls"``, the paper) or reduced over
every query row (``"max"`` / ``"mean"``; the official SST-2 script takes the max). The per-layer matrices on the
result are the graph each method works on: the head-fused attention ``W_l`` (raw) or ``0.5·W_l + 0.5·I``.

Long inputs: when an input's ``[L, H, n, n]`` attention would exceed
:data:`attrflow.methods.context.MATERIALISE_LIMIT_BYTES`, raw attention and rollout are computed from attention
rows recomputed block by block from one pass's queries and keys (same numbers, no matrices on the result), exact
flow is refused with its size limit, and ``flow_bounds`` gives certified bounds on flow instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch

from attrflow.errors import InvalidInputError
from attrflow.flow.bounds import flow_value_bounds, normalised_bounds
from attrflow.flow.maxflow import FLOW_MAX_SECONDS, estimated_seconds
from attrflow.flow.rows import AttentionRows, MaterialisedRows, row_token_scores, sink_share
from attrflow.flow.scores import AttentionMethod, attention_token_scores, fuse_heads
from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, Produces, register_method
from attrflow.results import TokenScores
from attrflow.validation import HeadFusion, Reduction, check_choice

_PAPER = "Abnar & Zuidema, Quantifying Attention Flow in Transformers, ACL 2020"

Exclude = Literal["sink", "special"]
"""Tokens left out of the normalisation: ``"sink"`` (the first token: BOS or [CLS], where attention piles up) or
``"special"`` (every special token)."""

_STREAMED = "from attention rows recomputed in blocks (the [L, H, n, n] attention is not kept)"


def excluded_tokens(context: ExplainContext, exclude: Exclude | None) -> torch.Tensor | None:
    """The boolean ``[n]`` mask of ``exclude`` on the context's input (None when it leaves nothing out)."""
    if exclude is None:
        return None
    check_choice("exclude", exclude, Exclude)
    if exclude == "sink":
        mask = torch.zeros(context.n, dtype=torch.bool)
        mask[0] = True
    else:
        mask = torch.tensor(context.encoding.special_mask, dtype=torch.bool)
    if bool(mask.all()):
        raise InvalidInputError(f"exclude={exclude!r} leaves no token of this input; use exclude=None")
    return mask if bool(mask.any()) else None


def attention_rows(context: ExplainContext) -> AttentionRows:
    """The context's attention, a block of rows at a time: recomputed from keys for long inputs, else recorded."""
    return context.keys if context.streaming else MaterialisedRows(context.attentions)


def _sink_share(context: ExplainContext, layers: Sequence[int], reduction: Reduction) -> float:
    """Mean over the layers and heads of the attention the rows read put on the first token."""
    rows = [context.position] if reduction == "cls" else None
    return float(sink_share(attention_rows(context), rows=rows, layers=list(layers)).mean())


class _AttentionDerived(Method):
    """Shared computation of the attention-derived methods."""

    kernel: ClassVar[AttentionMethod]
    produces: ClassVar[frozenset[Produces]] = frozenset({"layer_scores", "matrices"})
    reads_output = False
    in_explain = True
    paper = _PAPER
    reports = ("sink_share",)

    def _words(self, context: ExplainContext, reduction: Reduction, head_fusion: str, residual: bool) -> str:
        raise NotImplementedError

    def validate(self, **options: Any) -> None:
        """reduction, head_fusion, residual (a bool), exclude, layers."""
        check_choice("reduction", options.get("reduction", "cls"), Reduction)
        check_choice("head_fusion", options.get("head_fusion", "mean"), HeadFusion)
        residual = options.get("residual", True)
        if not isinstance(residual, bool):
            raise InvalidInputError(f"residual must be True or False, got {residual!r}")
        if options.get("exclude") is not None:
            check_choice("exclude", options["exclude"], Exclude)

    def _compute(
        self,
        context: ExplainContext,
        layers: int | Sequence[int] | None,
        reduction: Reduction,
        head_fusion: HeadFusion,
        residual: bool,
        exclude: Exclude | None = None,
    ) -> TokenScores:
        check_choice("reduction", reduction, Reduction)
        chosen = context.layers(layers)
        excluded = excluded_tokens(context, exclude)
        words = self._words(context, reduction, head_fusion, residual)
        if exclude is not None:
            words += f", {exclude} tokens left out and rows renormalised"
        settings: dict[str, Any] = {"reduction": reduction, "head_fusion": head_fusion, "residual": bool(residual)}
        if exclude is not None:
            settings["exclude"] = exclude
        matrices = None
        kernel: dict[str, Any] = {
            "method": self.kernel,
            "layers": list(chosen),
            "position": context.position,
            "reduction": reduction,
            "head_fusion": head_fusion,
            "residual": residual,
            "exclude": excluded,
        }
        if context.streaming:
            if self.kernel == "flow":
                raise InvalidInputError(flow_too_long(context, chosen, reduction))
            scores = row_token_scores(context.keys, **kernel)
            words += "; " + _STREAMED
            settings["attention"] = "rows"
        else:
            attentions = context.attentions
            scores = attention_token_scores(attentions, **kernel)
            fused = fuse_heads(attentions[list(chosen)].double(), head_fusion)
            if self.kernel != "attention" and residual:
                fused = 0.5 * fused + 0.5 * torch.eye(context.n, dtype=fused.dtype)
            matrices = fused.float()
        return context.result(
            self.name,
            scores,
            words,
            layers=chosen,
            summary=self.summary,
            matrices=matrices,
            reads_output=False,
            position=context.position if reduction == "cls" else -1,
            diagnostics={"sink_share": _sink_share(context, chosen, reduction)},
            settings=settings,
        )


def flow_too_long(context: ExplainContext, layers: Sequence[int], reduction: Reduction) -> str:
    """Why exact flow is refused on a long input, with its size and what to use instead."""
    sources = 1 if reduction == "cls" else context.n
    density = 0.5 if context.model.causal else 1.0
    tops = [layer + 1 for layer in layers]
    seconds = estimated_seconds(context.model.num_layers, context.n, tops, sources, context.n, density)
    return (
        f"exact attention flow needs this input's [L, H, n, n] attention recorded "
        f"({_size(context.attention_bytes)} at n = {context.n}, above "
        "attrflow.methods.context.MATERIALISE_LIMIT_BYTES) and L·n³ to L·n⁴ work (estimated "
        f"{seconds / 3600:.1f} h on one core; attrflow.attention_flow refuses more than {FLOW_MAX_SECONDS:.0f} s "
        "unless max_seconds=None). Use method 'flow_bounds' (certified lower and upper bounds on every flow value, "
        "from attention rows, in the time of rollout) or 'rollout'"
    )


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GB" if count >= 2**30 else f"{count / 2**20:.1f} MB"


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
        exclude: Exclude | None = None,
    ) -> TokenScores:
        """Raw attention ``[L, n]``: layer l's head-fused attention from the explained position to token j."""
        return self._compute(context, layers, reduction, head_fusion, False, exclude)


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
        exclude: Exclude | None = None,
    ) -> TokenScores:
        """Rollout ``[L, n]``: row l is ``Ã_l``'s row of the explained position (Abnar & Zuidema §3)."""
        return self._compute(context, layers, reduction, head_fusion, residual, exclude)


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
        exclude: Exclude | None = None,
    ) -> TokenScores:
        """Flow ``[L, n]``: exact max-flow values (Abnar & Zuidema §3), certified to 1e-7.

        Exact flow costs ``L·n³`` to ``L·n⁴``; inputs whose attention would not be recorded, or whose solving is
        estimated above 10 minutes, are refused with the size limit. Use ``flow_bounds`` there.
        """
        return self._compute(context, layers, reduction, head_fusion, residual, exclude)


@register_method
class FlowBounds(Method):
    """Certified bounds on attention flow, for inputs where exact flow does not fit."""

    name = "flow_bounds"
    description = "attention flow bounded from below and above (certified); the score is the middle of the bounds"
    paper = _PAPER
    produces: ClassVar[frozenset[Produces]] = frozenset({"layer_scores"})
    reads_output = False
    cost = "1 forward + 1 pass over the attention rows per layer"
    reports = ("max_bound_width", "sink_share")

    def validate(self, **options: Any) -> None:
        """head_fusion, residual (a bool), exclude."""
        check_choice("head_fusion", options.get("head_fusion", "mean"), HeadFusion)
        if not isinstance(options.get("residual", True), bool):
            raise InvalidInputError(f"residual must be True or False, got {options.get('residual')!r}")
        if options.get("exclude") is not None:
            check_choice("exclude", options["exclude"], Exclude)

    def compute(
        self,
        context: ExplainContext,
        *,
        layers: int | Sequence[int] | None = None,
        head_fusion: HeadFusion = "mean",
        residual: bool = True,
        exclude: Exclude | None = None,
    ) -> TokenScores:
        """``[L, n]`` midpoints of certified bounds on normalised flow; ``bounds`` ``[2, L, n]`` on the result.

        Lower bound: a feasible flow (rollout's routing, each last edge taking what it can); upper bound: node
        throughputs relaxed edge by edge (:mod:`attrflow.flow.bounds`). Every exact flow value lies between them.
        """
        chosen = context.layers(layers)
        excluded = excluded_tokens(context, exclude)
        lower, upper = flow_value_bounds(
            attention_rows(context),
            layers=list(chosen),
            positions=[context.position],
            residual=residual,
            head_fusion=head_fusion,
        )
        kept = None if excluded is None else ~excluded
        low, high = normalised_bounds(lower[:, 0], upper[:, 0], kept)
        graph = "0.5·A + 0.5·I" if residual else "A (no residual)"
        words = (
            f"certified bounds on max-flow from {context.where()} at each layer, normalised; score = the middle of "
            f"the bounds; graph {graph}, {head_fusion} over heads"
        )
        if context.streaming:
            words += "; " + _STREAMED
        settings: dict[str, Any] = {"head_fusion": head_fusion, "residual": bool(residual)}
        if exclude is not None:
            settings["exclude"] = exclude
        return context.result(
            self.name,
            (low + high) / 2,
            words,
            layers=chosen,
            reads_output=False,
            diagnostics={
                "max_bound_width": float((high - low).max()),
                "sink_share": _sink_share(context, chosen, "cls"),
            },
            settings=settings,
            bounds=torch.stack([low, high]),
        )
