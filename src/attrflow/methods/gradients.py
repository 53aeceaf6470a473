"""Gradient-based token scores on the input embeddings: input gradient, gradient × input, integrated gradients.

These are the reference explanations of Abnar & Zuidema (ACL 2020, §5): the input gradient
``|Σ_d ∂F/∂e_{i,d}|`` and gradient × input ``|Σ_d e_{i,d} ∂F/∂e_{i,d}|``, with F the softmax probability of the
explained output and ``e_i`` the embedding of token i. Integrated gradients (Sundararajan et al., ICML 2017)
integrates the gradient along the straight line from the zero embedding to ``e`` with the same quadrature rules
as self-attention attribution (:mod:`attrflow.methods.quadrature`), and keeps its completeness gap.

A caveat the paper does not state: when every read of the embeddings goes through a LayerNorm (BERT-family
encoders normalise the embeddings; pre-LN GPT-2 blocks with a final LayerNorm normalise every read of the
residual stream), moving ``e_i`` along ``(1, …, 1)`` changes nothing, so ``Σ_d ∂F/∂e_{i,d} = 0`` exactly and the
paper's input gradient is floating-point rounding noise. :attr:`EmbeddingGradients.cancellation` measures it
(``max_i |Σ_d g_{i,d}| / Σ_d |g_{i,d}|``) and a warning names the alternative: the gradient's L2 norm
``‖∂F/∂e_i‖₂`` (``reduction="l2"``; method ``"gradient_l2"`` in :func:`attrflow.faithfulness`).

The gradient is taken with respect to the output of the model's input-embedding module
(``get_input_embeddings()``), passed back as ``inputs_embeds``; position and token-type embeddings are added
inside the model as usual. Every quadrature point of an input runs in one batch, with the model routed through
attrflow's attention (so SDPA/flash defaults are restored afterwards).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS
from attrflow.methods.quadrature import RULES, Rule, quadrature
from attrflow.models import Encoding, Model, load_model

__all__ = [
    "CANCELLATION_THRESHOLD",
    "EmbeddingGradients",
    "embedding_gradients",
    "gradient_x_input",
    "input_gradient",
    "integrated_gradients",
]

logger = logging.getLogger(__name__)

# how far the logits of the inputs_embeds path may be from the model's own before we refuse
_CONSISTENCY_ATOL = 1e-4
# below this |Σ_d g| / Σ_d |g| for every token, the summed gradient is rounding error (float32 eps ≈ 1.2e-7)
CANCELLATION_THRESHOLD = 1e-5
GradientReduction = Literal["sum", "l2"]


@dataclass(frozen=True, eq=False)
class EmbeddingGradients:
    """The three gradient explanations of one input, from one batched backward pass.

    Attributes:
        gradient: ``[n]`` input gradient ``|Σ_d ∂F/∂e_{i,d}|`` at the input (the paper's definition).
        gradient_l2: ``[n]`` the gradient's L2 norm ``‖∂F/∂e_i‖₂``.
        gradient_x_input: ``[n]`` ``|Σ_d e_{i,d} ∂F/∂e_{i,d}|`` at the input.
        integrated_gradients: ``[n]`` signed ``Σ_d e_{i,d} ∫₀¹ ∂F(α·e)/∂e_{i,d} dα`` (zero-embedding
            baseline), or None when not requested (``steps=0``).
        probability: F at the input (softmax probability of ``target``).
        baseline_probability: F at the zero embedding (NaN when integrated gradients were not requested).
        completeness_gap: ``Σ_i integrated_gradients[i] − (probability − baseline_probability)``, the quadrature
            error (NaN when integrated gradients were not requested).
        target: the explained output.
        cancellation: ``max_i |Σ_d g_{i,d}| / Σ_d |g_{i,d}|``; about 1e-7 or less means ``gradient`` is rounding
            noise (a LayerNorm makes the sum vanish exactly; see the module docstring).
    """

    gradient: torch.Tensor
    gradient_l2: torch.Tensor
    gradient_x_input: torch.Tensor
    integrated_gradients: torch.Tensor | None
    probability: float
    baseline_probability: float
    completeness_gap: float
    target: int
    cancellation: float


def _wrap(model: Model | nn.Module) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def _word_embeddings(model: Model, encoding: Encoding) -> torch.Tensor:
    """The output of the input-embedding module for the encoding's ids, ``[1, N, d]`` (no grad)."""
    ids = encoding.inputs.get("input_ids")
    if ids is None:
        raise InvalidInputError(
            "gradient token scores need token ids; this input has none (image models are not supported here)"
        )
    getter = getattr(model.model, "get_input_embeddings", None)
    module = getter() if callable(getter) else None
    if not isinstance(module, nn.Module):
        raise UnsupportedModelError(
            f"{type(model.model).__name__} exposes no input-embedding module (get_input_embeddings); "
            "gradient token scores need one"
        )
    with torch.no_grad():
        embeddings = module(ids)
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 3:
        raise UnsupportedModelError(f"{type(model.model).__name__}: the input embeddings are not [batch, n, d]")
    return embeddings.detach()


def _with_embeddings(encoding: Encoding, embeddings: torch.Tensor) -> Encoding:
    inputs = {key: value for key, value in encoding.inputs.items() if key != "input_ids"}
    inputs["inputs_embeds"] = embeddings
    return dataclasses.replace(encoding, inputs=inputs)


def resolve_target(model: Model, target: int | None, predicted: int) -> int:
    """``target`` checked against the model's outputs, or ``predicted`` when None."""
    if target is None:
        return predicted
    limit = model.num_outputs
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < limit:
        what = "vocabulary id" if model.task == "causal-lm" else "class index"
        raise InvalidInputError(f"target must be a {what} in [0, {limit}), got {target!r}")
    return int(target)


def embedding_gradients(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: int | None = None,
    steps: int = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    batch_size: int | None = None,
) -> EmbeddingGradients:
    """Input gradient, gradient × input and integrated gradients of one input in one batched pass.

    Args:
        model: an :class:`attrflow.Model` (or a transformers model, wrapped on the fly).
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        target: output to explain; default the predicted class (next token for causal LMs).
        steps: quadrature points of integrated gradients (0: skip integrated gradients).
        rule: quadrature rule, as for :func:`attrflow.attribute`.
        batch_size: most quadrature points per forward pass (memory only; results do not depend on it).

    Returns:
        :class:`EmbeddingGradients` with ``[n]`` scores over the real tokens.

    Raises:
        UnsupportedModelError: the model has no input-embedding module, or feeding its embeddings back as
            ``inputs_embeds`` does not reproduce its outputs (then its gradients would be of another function).
    """
    wrapped = _wrap(model)
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise InvalidInputError(f"steps must be a whole number >= 0, got {steps!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidInputError(f"batch_size must be a whole number >= 1 or None, got {batch_size!r}")
    encoding = wrapped.prepare(inputs)
    embeddings = _word_embeddings(wrapped, encoding)
    with torch.no_grad():
        clean = wrapped.run(encoding).float()
    probabilities = torch.softmax(clean, dim=-1)[0]
    target = resolve_target(wrapped, target, int(probabilities.argmax()))

    # row 0: α = 1 (the input itself: plain gradient); last row: α = 0 (F of the baseline); quadrature between
    alphas, weights = quadrature(rule, int(steps)) if steps else (np.empty(0), np.empty(0))
    rows_alpha = np.concatenate([[1.0], alphas, [0.0] if steps else []])
    rows_weight = np.concatenate([[0.0], weights, [0.0] if steps else []])
    chunk = batch_size or len(rows_alpha)
    integral = torch.zeros_like(embeddings[0], dtype=torch.float64)
    at_input: torch.Tensor | None = None
    probability = baseline = float("nan")
    for start in range(0, len(rows_alpha), chunk):
        alpha = torch.tensor(rows_alpha[start : start + chunk], dtype=embeddings.dtype, device=embeddings.device)
        weight = torch.tensor(rows_weight[start : start + chunk], dtype=torch.float64, device=embeddings.device)
        leaf = (alpha.view(-1, 1, 1) * embeddings).requires_grad_(True)
        with torch.enable_grad():
            logits = wrapped.run(_with_embeddings(encoding, leaf), batch=len(alpha)).float()
            prob = torch.softmax(logits, dim=-1)[:, target]
            (grad,) = torch.autograd.grad(prob.sum(), leaf)
        if start == 0:
            if not torch.allclose(logits[0].detach(), clean[0], rtol=_CONSISTENCY_ATOL, atol=_CONSISTENCY_ATOL):
                diff = float((logits[0].detach() - clean[0]).abs().max())
                raise UnsupportedModelError(
                    f"{type(wrapped.model).__name__}: running on its own input embeddings (inputs_embeds) changes "
                    f"the outputs by {diff:.2e}, so embedding gradients would explain another function"
                )
            at_input = grad[0]
            probability = float(prob[0].detach())
        integral += torch.einsum("b,bnd->nd", weight, grad.double())
        if steps and start + len(alpha) == len(rows_alpha):
            baseline = float(prob[-1].detach())
    assert at_input is not None
    positions = encoding.positions.to(embeddings.device)
    real_embeddings = embeddings[0].index_select(0, positions).double()
    real_grad = at_input.index_select(0, positions).double()
    gradient = real_grad.sum(dim=-1).abs().float().cpu()
    gradient_l2 = real_grad.norm(dim=-1).float().cpu()
    magnitude = real_grad.abs().sum(dim=-1)
    ratios = real_grad.sum(dim=-1).abs() / magnitude.clamp_min(torch.finfo(torch.float64).tiny)
    cancellation = float(ratios[magnitude > 0].max()) if bool((magnitude > 0).any()) else 0.0
    gradient_x_input = (real_embeddings * real_grad).sum(dim=-1).abs().float().cpu()
    integrated: torch.Tensor | None = None
    gap = float("nan")
    if steps:
        # every position (padding included) carries attribution; only real ones exist for batch-1 inputs
        full = (embeddings[0].double() * integral).sum(dim=-1)
        gap = float(full.sum()) - (probability - baseline)
        integrated = full.index_select(0, positions).float().cpu()
        logger.debug("integrated gradients: completeness gap %.2e", gap)
    return EmbeddingGradients(
        gradient=gradient,
        gradient_l2=gradient_l2,
        gradient_x_input=gradient_x_input,
        integrated_gradients=integrated,
        probability=probability,
        baseline_probability=baseline,
        completeness_gap=gap,
        target=target,
        cancellation=cancellation,
    )


def input_gradient(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: int | None = None,
    reduction: GradientReduction = "sum",
) -> torch.Tensor:
    """Input-gradient token scores, ``[n]`` (Abnar & Zuidema, ACL 2020, §5).

    ``reduction="sum"``: ``|Σ_d ∂F/∂e_{i,d}|`` (the paper); ``"l2"``: ``‖∂F/∂e_i‖₂``. F is the softmax
    probability of ``target`` (default: the predicted class; the next token for causal LMs), ``e_i`` the output of
    the model's input-embedding module for token i. For models whose embeddings are only read through LayerNorms
    (BERT family, pre-LN GPT-2) the sum vanishes exactly and ``"sum"`` returns rounding noise, with a warning.
    """
    if reduction not in ("sum", "l2"):
        raise InvalidInputError(f"reduction must be 'sum' or 'l2', got {reduction!r}")
    result = embedding_gradients(model, inputs, target=target, steps=0)
    if reduction == "l2":
        return result.gradient_l2
    if result.cancellation < CANCELLATION_THRESHOLD:
        warn_cancellation()
    return result.gradient


def warn_cancellation() -> None:
    """Warn (once per call site) that the summed input gradient is rounding noise for this model."""
    warnings.warn(
        "the input gradient |Σ_d ∂F/∂e| is rounding noise for this model: a LayerNorm makes F invariant to "
        "shifting an embedding along (1, …, 1), so the sum vanishes exactly. Use the gradient's L2 norm "
        "(input_gradient(..., reduction='l2'); method 'gradient_l2' in attrflow.faithfulness) instead.",
        RuntimeWarning,
        stacklevel=3,
    )


def gradient_x_input(model: Model | nn.Module, inputs: Any, *, target: int | None = None) -> torch.Tensor:
    """Gradient × input token scores ``|Σ_d e_{i,d} ∂F/∂e_{i,d}|``, ``[n]`` (see :func:`input_gradient`)."""
    return embedding_gradients(model, inputs, target=target, steps=0).gradient_x_input


def integrated_gradients(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: int | None = None,
    steps: int = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Integrated gradients on the input embeddings, ``[n]``, signed (Sundararajan et al., ICML 2017).

    ``IG_i = Σ_d e_{i,d} ∫₀¹ ∂F(α·e)/∂e_{i,d} dα`` with the zero embedding as baseline, so that
    ``Σ_i IG_i ≈ F(e) − F(0)``; the integral uses the quadrature shared with :func:`attrflow.attribute`
    (default 8 Gauss–Legendre points). Use :func:`embedding_gradients` to get the completeness gap too.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidInputError(f"steps must be a whole number >= 1, got {steps!r}")
    result = embedding_gradients(model, inputs, target=target, steps=steps, rule=rule, batch_size=batch_size)
    assert result.integrated_gradients is not None
    return result.integrated_gradients
