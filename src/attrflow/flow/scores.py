"""Token scores from attention-derived token-to-token matrices (pure functions on tensors, no model).

Abnar & Zuidema (ACL 2020, §5) read raw attention, rollout and flow at a layer l and an output position p (the row
of p: [CLS] for BERT-style classifiers, the last token for decoders), or reduce over every query row (the official
SST-2 script takes the max over rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from attrflow.errors import InvalidInputError
from attrflow.validation import HeadFusion, Reduction, check_choice, resolve_index, resolve_layers

__all__ = ["AttentionMethod", "attention_token_scores", "fuse_heads", "reduce_rows"]

AttentionMethod = Literal["attention", "rollout", "flow"]


def reduce_rows(matrices: torch.Tensor, reduction: Reduction, position: int) -> torch.Tensor:
    """``[..., n, n]`` → ``[..., n]``: row ``position``, or the max / mean over query rows."""
    if reduction == "cls":
        return matrices[..., position, :]
    if reduction == "max":
        return matrices.amax(dim=-2)
    return matrices.mean(dim=-2)


def fuse_heads(attentions: torch.Tensor, head_fusion: HeadFusion) -> torch.Tensor:
    """``[..., H, n, n]`` → ``[..., n, n]`` by the mean, max or min over heads."""
    check_choice("head_fusion", head_fusion, HeadFusion)
    if head_fusion == "mean":
        return attentions.mean(dim=-3)
    if head_fusion == "max":
        return attentions.amax(dim=-3)
    return attentions.amin(dim=-3)


def attention_token_scores(
    attentions: torch.Tensor,
    *,
    method: AttentionMethod,
    layers: int | Sequence[int] | None = None,
    position: int = 0,
    reduction: Reduction = "cls",
    head_fusion: HeadFusion = "mean",
    residual: bool = True,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention-derived token scores of several layers from recorded attention.

    Args:
        attentions: attention probabilities ``[L, H, n, n]`` (row = query, column = key) of one input.
        method: ``"attention"`` (raw: heads fused, no residual), ``"rollout"`` or ``"flow"`` (Abnar & Zuidema,
            ACL 2020; graph ``0.5·W + 0.5·I`` with ``residual=True``).
        layers: layer indices (0-based, negatives count from the end); default all. The score "at layer l"
            describes the outputs of layer l (the paper's L1 is layer 0).
        position: the explained output position, used by ``reduction="cls"``.
        reduction: ``"cls"``: the row of ``position`` (the paper); ``"max"`` / ``"mean"``: over all query rows.
        head_fusion: ``"mean"`` (the paper), ``"max"``, ``"min"``.
        residual: rollout and flow: add the identity for the residual connection (ignored by raw attention).
        exclude: boolean ``[n]``: input tokens left out (e.g. an attention sink): their columns become 0 and every
            row is rescaled to sum to 1 over the remaining tokens before the reduction.

    Returns:
        float32 ``[len(layers), n]``.
    """
    check_choice("method", method, AttentionMethod)
    check_choice("reduction", reduction, Reduction)
    check_choice("head_fusion", head_fusion, HeadFusion)
    if not isinstance(residual, (bool, np.bool_)):
        raise InvalidInputError(f"residual must be True or False, got {residual!r}")
    if not isinstance(attentions, torch.Tensor) or attentions.dim() != 4 or attentions.shape[2] != attentions.shape[3]:
        shape = tuple(attentions.shape) if isinstance(attentions, torch.Tensor) else type(attentions).__name__
        raise InvalidInputError(f"attentions must be a tensor [layers, heads, n, n], got {shape}")
    num_layers, _, n, _ = attentions.shape
    chosen = resolve_layers(layers, num_layers)
    position = resolve_index("position", position, n)
    attentions = attentions.detach().cpu()
    if attentions.dtype not in (torch.float16, torch.bfloat16):  # half types kept: the row checks allow their rounding
        attentions = attentions.float()
    excluded = None if exclude is None or not bool(exclude.any()) else exclude.cpu().numpy()
    if method == "attention":
        fused = fuse_heads(attentions[list(chosen)].float(), head_fusion)
        if excluded is not None:
            fused = fused.masked_fill(torch.from_numpy(excluded), 0.0)
            sums = fused.sum(dim=-1, keepdim=True)
            fused = torch.where(sums > 0, fused / torch.where(sums > 0, sums, 1), fused)
        return reduce_rows(fused, reduction, position).float()
    if method == "rollout":
        from attrflow.flow.rollout import attention_rollout

        rolled = attention_rollout(attentions, residual=bool(residual), head_fusion=head_fusion, exclude=excluded)
        return reduce_rows(rolled[list(chosen)], reduction, position).float()
    from attrflow.flow.maxflow import attention_flow

    sources = [position] if reduction == "cls" else None
    if len(chosen) == num_layers:
        flows = attention_flow(
            attentions,
            layer="all",
            positions=sources,
            residual=bool(residual),
            head_fusion=head_fusion,
            exclude=excluded,
        )
    else:
        flows = torch.stack(
            [
                attention_flow(
                    attentions,
                    layer=layer,
                    positions=sources,
                    residual=bool(residual),
                    head_fusion=head_fusion,
                    exclude=excluded,
                )
                for layer in chosen
            ]
        )
    # flows: [len(layers), P, n] with P = 1 (the position) or n (every query row)
    if reduction == "cls":
        return flows[:, 0, :].float()
    return reduce_rows(flows, reduction, 0).float()
