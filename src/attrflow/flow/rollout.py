"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020, §3).

Rollout multiplies the layers' attention graphs, ``Ã_l = Ā_l · Ã_{l-1}``: entry ``[i, j]`` is the share of input
token j in position i's representation after layer l, when information mixes linearly along attention and the
residual stream. It costs L matrix products of n×n.
"""

from __future__ import annotations

import numpy as np
import torch

from attrflow.flow._graph import (
    AttentionInput,
    ExcludeSpec,
    HeadFusion,
    as_attention_tensor,
    attention_graph,
    check_choice,
    resolve_exclude,
    resolve_index,
)

__all__ = ["attention_rollout", "rollout_edge_weights"]


def attention_rollout(
    attentions: AttentionInput,
    *,
    residual: bool = True,
    head_fusion: HeadFusion = "mean",
    start_layer: int = 0,
    head: int | None = None,
    exclude: ExcludeSpec = None,
    check_rows: bool = True,
) -> torch.Tensor:
    """Attention rollout of every layer (Abnar & Zuidema, ACL 2020, eq. in §3; arXiv 2005.00928).

    With ``W_l`` the heads of layer l fused (mean by default) and ``Ā_l = 0.5·W_l + 0.5·I`` (``residual=True``,
    as in the paper; ``Ā_l = W_l`` otherwise)::

        Ã_l = I                  for l < start_layer
        Ã_l = Ā_l · Ã_{l-1}      for l ≥ start_layer

    so ``Ã_L[i, j]`` is how much output position i draws on input token j. Row i of any layer is the rollout
    of position i: ``[0]`` for [CLS] classifiers, ``[-1]`` for causal LMs (their zero upper triangle stays zero).

    Args:
        attentions: attention probabilities ``[L, H, n, n]`` (row = query, column = key), as a torch tensor, a
            numpy array, or any result with an ``.attentions`` tensor (``AttentionAttribution``, recorded
            attention).
        residual: add the identity for the residual connection, ``0.5·W + 0.5·I``.
        head_fusion: fuse heads by ``"mean"`` (the paper), ``"max"`` or ``"min"``; max and min rows are rescaled
            to sum to 1 after the residual (they are not stochastic otherwise), as in common ViT code.
        start_layer: first layer rolled out (0-based, negatives count from the end); the layers below it are
            skipped, as in the ViT implementations that start from a later layer.
        head: per-head analysis (the paper's appendix A.1): at each layer l, head ``head`` of layer l (with the
            residual) on top of the head-fused rollout of the layers below, ``Ã^h_l = Ā_{l,h} · Ã_{l-1}``.
        exclude: input tokens to leave out (e.g. [CLS]/[SEP], a BOS attention sink): a boolean mask ``[n]`` or
            ``"special"`` for the input's ``special_mask``. Their columns become 0 and every row is rescaled to
            sum to 1 over the remaining tokens (rows with nothing left stay 0).
        check_rows: require every attention row to sum to 1 (within rounding). False accepts rows that sum to
            less (the attention of pruned heads or masked interactions) and uses them as they are.

    Returns:
        ``[L, n, n]``: ``[l, i, j]`` is ``Ã_l[i, j]``. float64 for float64 input, float32 otherwise.

    Raises:
        InvalidInputError: bad shapes, complex, negative or non-finite values, rows not summing to 1 (see
            ``check_rows``), a ``residual`` that is not a bool, an index out of range or an unknown option.
    """
    tensor, dtype = as_attention_tensor(attentions)
    num_layers, num_heads, n, _ = tensor.shape
    check_choice("head_fusion", head_fusion, HeadFusion)
    start = resolve_index("start_layer", start_layer, num_layers, "layers")
    head_index = None if head is None else resolve_index("head", head, num_heads, "heads")
    excluded = resolve_exclude(exclude, attentions, n)
    graph, tops = attention_graph(
        tensor, residual=residual, head_fusion=head_fusion, head=head_index, check_rows=check_rows
    )

    rollout = np.empty((num_layers, n, n))
    below = np.eye(n)
    for layer in range(num_layers):
        if layer < start:
            rollout[layer] = below
            continue
        rollout[layer] = tops[layer] @ below
        below = graph[layer] @ below
    if excluded.any():
        rollout[:, :, excluded] = 0.0
        sums = rollout.sum(axis=-1, keepdims=True)
        np.divide(rollout, sums, out=rollout, where=sums > 0)
    return torch.from_numpy(rollout).to(dtype)


def rollout_edge_weights(attentions: AttentionInput, *, position: int = 0) -> torch.Tensor:
    """How much of the explained position's rollout passes through each attention edge of each layer.

    With ``W_l`` the head mean of layer l, ``Ā_l = 0.5·W_l + 0.5·I`` and ``R_{>l} = Ā_{L-1} ⋯ Ā_{l+1}`` (the rollout of the layers above l, the
    identity for the top layer), the rollout of position p through the attention part of edge i → j of layer l is
    ``R_{>l}[p, i] · 0.5·W_l[i, j]``: the share of p's final representation that reaches j by way of position i
    attending to j in layer l. In every layer the edges carry half of p's rollout and the residual the other half
    (rows of ``R_{>l}`` sum to 1). Ranking a layer's edges by this weight gives the "highest-rollout" interactions, the rollout
    counterpart of an attribution tree's edges (Hao et al., AAAI 2021, §4.3).

    Args:
        attentions: attention probabilities ``[L, H, n, n]`` (row = query, column = key).
        position: the explained output position p ([CLS] = 0; the last token for causal LMs).

    Returns:
        ``[L, n, n]`` float64: ``[l, i, j] = R_{>l}[p, i] · 0.5·W_l[i, j]``.
    """
    tensor, _ = as_attention_tensor(attentions)
    num_layers, _, n, _ = tensor.shape
    p = resolve_index("position", position, n, "positions")
    graph, _ = attention_graph(tensor, residual=True, head_fusion="mean", head=None)
    attention_part = graph - 0.5 * np.eye(n)
    weights = np.empty((num_layers, n, n))
    above = np.zeros(n)
    above[p] = 1.0
    for layer in range(num_layers - 1, -1, -1):
        weights[layer] = above[:, None] * attention_part[layer]
        above = above @ graph[layer]
    return torch.from_numpy(weights)
