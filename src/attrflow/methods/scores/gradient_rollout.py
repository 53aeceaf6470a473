"""Gradient-weighted attention rollout (Chefer, Gur, Wolf, ICCV 2021) as per-layer token scores.

The variant: the paper's self-attention rule ``Ā_l = E_h[(∇A_l ⊙ A_l)⁺]``, ``R ← R + Ā_l·R`` from ``R = I``, with ∇
the gradient of the target's *logit* (the official code back-propagates ``one_hot · logits``), taken through every
layer's attention probabilities at once by the engine's clean-row leaves (one forward and one backward). Row l of
the scores is the explained position's row of R after layer l; the per-layer matrices are ``Ā_l``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attrflow.flow.relevance import gradient_weighted_attention, relevance_rollout
from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, register_method
from attrflow.results import TokenScores


def attention_gradients(context: ExplainContext) -> tuple[torch.Tensor, torch.Tensor]:
    """``(attentions, gradients)``, float64 ``[L, H, n, n]``: every layer's attention probabilities and the gradient of
    the target's logit with respect to them (each layer's total derivative: the layers above react), real tokens."""
    model, encoding = context.model, context.encoding
    target = context.target
    with torch.enable_grad():
        branched = model.run_branches(encoding, {}, require_grad=True, clean_leaves=True, record=True)
        sites = sorted(branched.clean_row_leaves)
        leaves = [branched.clean_row_leaves[site] for site in sites]
        grads = torch.autograd.grad(branched.logits[0, target], leaves)
    positions = encoding.positions.to(model.device)

    def real(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.index_select(-1, positions).index_select(-2, positions).detach().double().cpu()

    assert branched.attentions is not None
    return real(branched.attentions), torch.stack([real(g[0]) for g in grads])


@register_method
class GradientRollout(Method):
    """Chefer et al. 2021's gradient-weighted rollout."""

    name = "grad-rollout"
    description = "gradient-weighted rollout: R ← R + mean_h((∇A ⊙ A)⁺)·R from R = I, ∇ of the target logit"
    paper = "Chefer, Gur, Wolf, Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers, ICCV 2021"
    produces = frozenset({"layer_scores", "matrices"})
    summary = "last"
    needs_gradients = True
    cost = "1 forward + 1 backward"

    def compute(self, context: ExplainContext, *, layers: int | Sequence[int] | None = None) -> TokenScores:
        """Relevance ``[L, n]``: the explained position's row of R after each chosen layer."""
        context.require_output_position(self.name)
        chosen = list(context.layers(layers))
        attentions, gradients = context.shared("attention_gradients", lambda: attention_gradients(context))
        weighted = gradient_weighted_attention(attentions, gradients)
        relevance = relevance_rollout(weighted)
        return context.result(
            self.name,
            relevance[chosen, context.position, :].float(),
            f"relevance R after each layer (R = I, R ← R + mean_h((∂logit/∂A ⊙ A)⁺)·R), row of {context.where()}",
            layers=chosen,
            summary="last",
            matrices=weighted[chosen].float(),
        )
