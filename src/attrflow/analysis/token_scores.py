"""Token scores at one layer, as plain tensors: the functions attrflow had before the method registry.

Each is a thin call of :func:`attrflow.token_scores` (the registered methods ``attention``, ``rollout``, ``flow``,
``attattr``, ``blankout``) that returns a float32 tensor ``[n]`` over the real tokens (specials included). Use
:func:`attrflow.token_scores` for the full result (every layer, the description, the target, the settings).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from attrflow.flow.scores import AttentionMethod, attention_token_scores
from attrflow.methods.api import token_scores
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS
from attrflow.methods.occlusion import Replacement, replacement_id, token_features
from attrflow.methods.quadrature import Rule
from attrflow.methods.targets import TargetLike
from attrflow.models import Model
from attrflow.validation import REDUCTIONS, HeadFusion, Reduction, check_int

__all__ = [
    "ATTENTION_METHODS",
    "REDUCTIONS",
    "AttentionMethod",
    "Reduction",
    "Replacement",
    "attattr_scores",
    "attattr_token_scores",
    "attention_token_scores",
    "blankout_scores",
    "flow_scores",
    "raw_attention_scores",
    "replacement_id",
    "rollout_scores",
    "token_features",
]

ATTENTION_METHODS: tuple[str, ...] = ("attention", "rollout", "flow")


def attattr_token_scores(attributions: torch.Tensor) -> torch.Tensor:
    """Self-attention attribution flowing out of each token, per layer: ``Σ_h Σ_i Attr[l, h, i, j]``.

    Args:
        attributions: ``[layers, H, n, n]`` (``AttentionAttribution.attributions``; entry ``[l, h, i, j]`` is the
            interaction "query i attends to key j").

    Returns:
        float32 ``[layers, n]``; row l sums to that layer's ``F(A_l) − F(0)`` up to the completeness gap.
    """
    from attrflow.errors import InvalidInputError

    if not isinstance(attributions, torch.Tensor) or attributions.dim() != 4:
        raise InvalidInputError("attributions must be a tensor [layers, heads, n, n]")
    return attributions.detach().double().sum(dim=(1, 2)).float().cpu()


def _at_layer(
    model: Model | nn.Module, inputs: Any, method: str, layer: int, reduction: Reduction, **options: Any
) -> torch.Tensor:
    check_int("layer", layer)
    result = token_scores(model, inputs, method, layers=[int(layer)], reduction=reduction, **options)
    return result.scores[0]


def raw_attention_scores(
    model: Model | nn.Module,
    inputs: Any,
    *,
    layer: int = -1,
    reduction: Reduction = "cls",
    head_fusion: HeadFusion = "mean",
) -> torch.Tensor:
    """Raw attention token scores at ``layer``: the explained position's row of the head-fused attention, ``[n]``.

    Args:
        model: an :class:`attrflow.Model` (or a transformers model).
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        layer: 0-based layer (negatives count from the end).
        reduction: ``"cls"`` (the explained output position's row), ``"max"`` or ``"mean"`` over query rows.
        head_fusion: ``"mean"`` (Abnar & Zuidema), ``"max"`` or ``"min"`` over heads.
    """
    return _at_layer(model, inputs, "attention", layer, reduction, head_fusion=head_fusion)


def rollout_scores(
    model: Model | nn.Module,
    inputs: Any,
    *,
    layer: int = -1,
    reduction: Reduction = "cls",
    head_fusion: HeadFusion = "mean",
    residual: bool = True,
) -> torch.Tensor:
    """Attention-rollout token scores at ``layer`` (Abnar & Zuidema, ACL 2020), ``[n]``.

    The explained position's row of ``Ã_layer`` (``reduction="cls"``) or the max / mean over its rows; see
    :func:`raw_attention_scores` for the arguments, and ``residual`` adds ``0.5·I`` to each layer's graph.
    """
    return _at_layer(model, inputs, "rollout", layer, reduction, head_fusion=head_fusion, residual=residual)


def flow_scores(
    model: Model | nn.Module,
    inputs: Any,
    *,
    layer: int = -1,
    reduction: Reduction = "cls",
    head_fusion: HeadFusion = "mean",
    residual: bool = True,
) -> torch.Tensor:
    """Attention-flow token scores at ``layer`` (Abnar & Zuidema, ACL 2020), ``[n]``.

    The max-flow from the explained position's node after ``layer`` to every input token, normalised to sum to 1
    (``reduction="cls"``), or the max / mean of that over every position's node (``"max"`` / ``"mean"``, n times
    the max-flow work). Arguments as in :func:`rollout_scores`.
    """
    return _at_layer(model, inputs, "flow", layer, reduction, head_fusion=head_fusion, residual=residual)


def attattr_scores(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: TargetLike = None,
    layer: int | None = None,
    steps: int | Literal["auto"] = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Token scores from self-attention attribution (Hao et al., AAAI 2021), ``[n]``, signed.

    ``s[j] = Σ_l Σ_h Σ_i Attr(A_l)[h, i, j]``: the attribution of every interaction that reads from position j
    (entry ``[i, j]`` is "i attends to j"), summed over heads and query rows and over all layers
    (``layer=None``) or at one ``layer``. Each layer's scores sum to ``F(A_l) − F(0)`` up to the quadrature error.

    Args:
        model: an :class:`attrflow.Model` (or a transformers model).
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        target: output to explain; default the predicted class (see :func:`attrflow.token_scores` for spans and
            contrasts).
        layer: one layer (negatives ok), or None for the sum over all layers.
        steps, rule, batch_size: as for :func:`attrflow.attribute`.
    """
    result = token_scores(
        model, inputs, "attattr", target=target, layers=layer, steps=steps, rule=rule, batch_size=batch_size
    )
    return result.overall


def blankout_scores(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: TargetLike = None,
    replacement: Replacement = "unk",
    batch_size: int = 32,
) -> torch.Tensor:
    """Blank-out token scores (Abnar & Zuidema, ACL 2020, §5), ``[n]``.

    ``score_i = |p_y(x) − p_y(x with token i replaced by UNK)|``, in place (same length), one token at a time;
    all n variants and the input itself run batched through :meth:`Model.predict_batch`. For encoder-decoder
    classifiers (BART, T5) the token is replaced in the encoder's input only: the decoder and the head keep the
    original ids (they classify from the end-of-sequence token), so the score measures the token's role in the
    encoder, whose attention attrflow explains.

    Args:
        model: an :class:`attrflow.Model` with a tokenizer.
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        target: the class y; default the predicted class.
        replacement: ``"unk"`` (the paper) or ``"mask"`` (the tokenizer's mask token).
        batch_size: rows per forward pass (speed only).
    """
    result = token_scores(model, inputs, "blankout", target=target, replacement=replacement, batch_size=batch_size)
    return result.scores
