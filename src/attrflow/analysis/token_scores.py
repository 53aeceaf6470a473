"""Token scores: one importance value per input token, from attention, attribution, occlusion or gradients.

Abnar & Zuidema (ACL 2020, §5) compare attention-derived token scores with "ground-truth" importance. The
attention-derived scores are read at a chosen layer l and output position p (the explained position: [CLS] for
BERT-style classifiers, the last token for decoders):

- ``attention``: raw attention, the heads of layer l fused (mean by default), no residual;
- ``rollout``: attention rollout up to layer l (:func:`attrflow.attention_rollout`);
- ``flow``: attention flow from the nodes of layer l (:func:`attrflow.attention_flow`);

each as the row of p (``reduction="cls"``, the paper) or the maximum / mean over all query rows (``"max"`` /
``"mean"``; the official SST-2 script takes the max). Further:

- ``attattr``: self-attention attribution (Hao et al., AAAI 2021) flowing *out of* each token, summed over
  heads and query rows: ``s_l[j] = Σ_h Σ_i Attr(A_l)[h, i, j]`` (entry ``[i, j]`` is "i attends to j", so
  information moves from j to i). By completeness ``Σ_j s_l[j] ≈ F(A_l) − F(0)``: the layer's attribution is
  split among the positions it reads from. Summed over layers by default, or at one layer.
- ``blankout``: occlusion, ``|p_y(x) − p_y(x with token i := [UNK])|`` (same length, one token at a time).

Every function returns a float32 tensor ``[n]`` over the real tokens (specials included). The gradient
family lives in :mod:`attrflow.methods.gradients`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from attrflow.errors import InvalidInputError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, resolve_layers
from attrflow.methods.gradients import resolve_target
from attrflow.methods.quadrature import Rule
from attrflow.models import Encoding, Model, Session, load_model

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
    "rollout_scores",
]

Reduction = Literal["cls", "max", "mean"]
REDUCTIONS: tuple[str, ...] = get_args(Reduction)
AttentionMethod = Literal["attention", "rollout", "flow"]
ATTENTION_METHODS: tuple[str, ...] = get_args(AttentionMethod)
HeadFusion = Literal["mean", "max", "min"]
Replacement = Literal["unk", "mask"]


def _choice(name: str, value: object, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise InvalidInputError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _wrap(model: Model | nn.Module) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def _reduce_rows(matrices: torch.Tensor, reduction: Reduction, position: int) -> torch.Tensor:
    """``[..., n, n]`` → ``[..., n]``: row ``position``, or the max / mean over query rows."""
    if reduction == "cls":
        return matrices[..., position, :]
    if reduction == "max":
        return matrices.amax(dim=-2)
    return matrices.mean(dim=-2)


def attention_token_scores(
    attentions: torch.Tensor,
    *,
    method: AttentionMethod,
    layers: int | Sequence[int] | None = None,
    position: int = 0,
    reduction: Reduction = "cls",
    head_fusion: HeadFusion = "mean",
    residual: bool = True,
) -> torch.Tensor:
    """Attention-derived token scores of several layers from recorded attention (pure function, no model).

    Args:
        attentions: attention probabilities ``[L, H, n, n]`` (row = query, column = key) of one input.
        method: ``"attention"`` (raw: heads fused, no residual), ``"rollout"`` or ``"flow"`` (Abnar & Zuidema,
            ACL 2020; graph ``0.5·W + 0.5·I`` with ``residual=True``).
        layers: layer indices (0-based, negatives count from the end); default all. The score "at layer l"
            describes the outputs of layer l (the paper's L1 is layer 0).
        position: the explained output position (``Encoding.output_position``), used by ``reduction="cls"``.
        reduction: ``"cls"``: the row of ``position`` (the paper); ``"max"`` / ``"mean"``: over all query rows
            (the official SST-2 script uses the max).
        head_fusion: how heads are fused: ``"mean"`` (the paper), ``"max"``, ``"min"``.
        residual: rollout and flow: add the identity for the residual connection (ignored by raw attention).

    Returns:
        float32 ``[len(layers), n]``.
    """
    _choice("method", method, AttentionMethod)
    _choice("reduction", reduction, Reduction)
    _choice("head_fusion", head_fusion, HeadFusion)
    if not isinstance(attentions, torch.Tensor) or attentions.dim() != 4 or attentions.shape[2] != attentions.shape[3]:
        shape = tuple(attentions.shape) if isinstance(attentions, torch.Tensor) else type(attentions).__name__
        raise InvalidInputError(f"attentions must be a tensor [layers, heads, n, n], got {shape}")
    num_layers, _, n, _ = attentions.shape
    chosen = resolve_layers(layers, num_layers)
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not -n <= position < n:
        raise InvalidInputError(f"position {position!r} is out of range for {n} tokens")
    position = int(position) % n
    attentions = attentions.detach().float().cpu()
    if method == "attention":
        fused = {"mean": lambda a: a.mean(dim=1), "max": lambda a: a.amax(dim=1), "min": lambda a: a.amin(dim=1)}
        matrices = fused[head_fusion](attentions[list(chosen)])
        return _reduce_rows(matrices, reduction, position).float()
    if method == "rollout":
        from attrflow.flow.rollout import attention_rollout

        rolled = attention_rollout(attentions, residual=residual, head_fusion=head_fusion)
        return _reduce_rows(rolled[list(chosen)], reduction, position).float()
    from attrflow.flow.maxflow import attention_flow

    sources = [position] if reduction == "cls" else None
    if len(chosen) == num_layers:
        flows = attention_flow(attentions, layer="all", positions=sources, residual=residual, head_fusion=head_fusion)
    else:
        flows = torch.stack(
            [
                attention_flow(attentions, layer=layer, positions=sources, residual=residual, head_fusion=head_fusion)
                for layer in chosen
            ]
        )
    # flows: [len(layers), P, n] with P = 1 (the position) or n (every query row)
    if reduction == "cls":
        return flows[:, 0, :].float()
    return _reduce_rows(flows, reduction, 0).float()


def attattr_token_scores(attributions: torch.Tensor) -> torch.Tensor:
    """Self-attention attribution flowing out of each token, per layer: ``Σ_h Σ_i Attr[l, h, i, j]``.

    Args:
        attributions: ``[layers, H, n, n]`` (``AttentionAttribution.attributions``; entry ``[l, h, i, j]`` is the
            interaction "query i attends to key j").

    Returns:
        float32 ``[layers, n]``; row l sums to that layer's ``F(A_l) − F(0)`` up to the completeness gap.
    """
    if not isinstance(attributions, torch.Tensor) or attributions.dim() != 4:
        raise InvalidInputError("attributions must be a tensor [layers, heads, n, n]")
    return attributions.detach().double().sum(dim=(1, 2)).float().cpu()


def _recorded(model: Model, inputs: Any) -> tuple[Encoding, torch.Tensor]:
    """The encoding and its attention probabilities ``[L, H, n, n]`` over the real tokens."""
    encoding = model.prepare(inputs)
    session = Session(record=True)
    with torch.no_grad():
        model.run(encoding, session)
    positions = encoding.positions.to(model.device)
    attentions = torch.stack([r[0].index_select(-1, positions).index_select(-2, positions) for r in session.records])
    return encoding, attentions.float().cpu()


def _layer_scores(
    model: Model | nn.Module,
    inputs: Any,
    method: AttentionMethod,
    layer: int,
    reduction: Reduction,
    head_fusion: HeadFusion,
    residual: bool,
) -> torch.Tensor:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise InvalidInputError(f"layer must be an integer, got {layer!r}")
    wrapped = _wrap(model)
    encoding, attentions = _recorded(wrapped, inputs)
    scores = attention_token_scores(
        attentions,
        method=method,
        layers=[int(layer)],
        position=encoding.output_position,
        reduction=reduction,
        head_fusion=head_fusion,
        residual=residual,
    )
    return scores[0]


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
    return _layer_scores(model, inputs, "attention", layer, reduction, head_fusion, False)


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
    return _layer_scores(model, inputs, "rollout", layer, reduction, head_fusion, residual)


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
    return _layer_scores(model, inputs, "flow", layer, reduction, head_fusion, residual)


def attattr_scores(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: int | None = None,
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
        target: output to explain; default the predicted class.
        layer: one layer (negatives ok), or None for the sum over all layers.
        steps, rule, batch_size: as for :func:`attrflow.attribute`.
    """
    from attrflow.methods.attribution import attribute

    result = attribute(
        _wrap(model),
        inputs,
        target=target,
        steps=steps,
        rule=rule,
        layers=layer,
        batch_size=batch_size,
    )
    return attattr_token_scores(result.attributions).double().sum(dim=0).float()


def replacement_id(model: Model, replacement: Replacement) -> int:
    """The token id that blanks a token out: the tokenizer's UNK or MASK token."""
    _choice("replacement", replacement, Replacement)
    tokenizer = model.tokenizer
    token_id = getattr(tokenizer, f"{replacement}_token_id", None) if tokenizer is not None else None
    if token_id is None:
        other = "mask" if replacement == "unk" else "unk"
        raise InvalidInputError(
            f"the tokenizer has no {replacement.upper()} token to blank tokens out with; try replacement={other!r}"
        )
    return int(token_id)


def token_features(encoding: Encoding, ids: Sequence[int]) -> dict[str, list[int]]:
    """A tokenised item for :meth:`Model.predict_batch`: ``ids`` with the encoding's segments (same length)."""
    feature = {"input_ids": [int(i) for i in ids]}
    if encoding.segment_ids is not None:
        feature["token_type_ids"] = list(encoding.segment_ids)
    return feature


def blankout_scores(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: int | None = None,
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
    wrapped = _wrap(model)
    encoding = wrapped.prepare(inputs)
    probabilities = _blankout_probabilities(wrapped, encoding, replacement, batch_size)
    y = resolve_target(wrapped, target, int(probabilities[0].argmax()))
    return (probabilities[0, y] - probabilities[1:, y]).abs().float()


def _encoder_blankout_probabilities(model: Model, encoding: Encoding, blank: int, batch_size: int) -> torch.Tensor:
    """Blank-out for encoder-decoder classifiers: token i is replaced in the encoder's input only.

    The decoder and the classification head keep reading the original ids (BART and T5 classify from the
    end-of-sequence token, which could not be blanked otherwise); this is occlusion of what the explained
    attention, the encoder's, sees.
    """
    full = encoding.inputs["input_ids"][0]
    variants = full.unsqueeze(0).repeat(1 + encoding.length, 1)
    for i, position in enumerate(encoding.positions.tolist()):
        variants[1 + i, position] = blank
    embed = model.input_embedding_module()
    rows = []
    with torch.no_grad():
        for start in range(0, variants.shape[0], batch_size):
            logits = model.run_embeddings(encoding, embed(variants[start : start + batch_size]))
            rows.append(torch.softmax(logits.double(), dim=-1).cpu())
    return torch.cat(rows)


def _blankout_probabilities(
    model: Model, encoding: Encoding, replacement: Replacement, batch_size: int
) -> torch.Tensor:
    """``[1 + n, C]``: the input, then the input with token i blanked out, for i = 0..n−1."""
    if not encoding.input_ids:
        raise InvalidInputError("blank-out needs token ids; this input has none (image models are not supported)")
    blank = replacement_id(model, replacement)
    if model.is_encoder_decoder:
        return _encoder_blankout_probabilities(model, encoding, blank, batch_size)
    ids = list(encoding.input_ids)
    items = [token_features(encoding, ids)]
    for i in range(len(ids)):
        items.append(token_features(encoding, [*ids[:i], blank, *ids[i + 1 :]]))
    return model.predict_batch(items, batch_size=batch_size).double()
