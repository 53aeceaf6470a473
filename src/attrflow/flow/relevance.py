"""Gradient-weighted attention rollout (Chefer, Gur, Wolf, "Generic Attention-model Explainability for Interpreting
Bi-Modal and Encoder-Decoder Transformers", ICCV 2021, eqs. 5–6 for self-attention): pure tensor maths.

Each layer's attention is weighted by the gradient of the explained output with respect to it and only positive
evidence is kept, ``Ā_l = E_h[(∇A_l ⊙ A_l)⁺]``; relevance starts from the identity (each token is itself) and every
layer adds what it mixes in, ``R ← R + Ā_l·R``.
"""

from __future__ import annotations

import torch

__all__ = ["gradient_weighted_attention", "relevance_rollout"]


def gradient_weighted_attention(attentions: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """``Ā_l = mean_h max(0, ∇A_l ⊙ A_l)``: ``[L, H, n, n]`` twice → float64 ``[L, n, n]`` (clamped per head, then
    averaged over heads, as the paper's ``E_h((∇A ⊙ A)⁺)`` and its official code)."""
    return (gradients.double() * attentions.double()).clamp_min(0.0).mean(dim=1)


def relevance_rollout(weighted: torch.Tensor) -> torch.Tensor:
    """``R_0 = I``, ``R ← R + Ā_l·R`` for each layer: ``[L, n, n]`` → float64 ``[L, n, n]``, ``[l]`` is R after layer l.

    No normalisation (the paper's self-attention rule); row i of ``R`` is the relevance of every input token for
    position i (the identity's 1 on the diagonal included).
    """
    weighted = weighted.double()
    n = weighted.shape[-1]
    relevance = torch.eye(n, dtype=torch.float64)
    out = torch.empty_like(weighted)
    for layer in range(weighted.shape[0]):
        relevance = relevance + weighted[layer] @ relevance
        out[layer] = relevance
    return out
