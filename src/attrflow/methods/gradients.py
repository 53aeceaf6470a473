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
(``get_input_embeddings()``), passed back as ``inputs_embeds`` (:meth:`attrflow.Model.run_embeddings`); position and
token-type embeddings are added inside the model as usual. For encoder-decoder classifiers these are the encoder's
word embeddings, given to the encoder alone (the decoder and the head keep reading the token ids). Every quadrature
point of an input runs in one batch, with the model routed through attrflow's attention (so SDPA/flash defaults are
restored afterwards).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_TOLERANCE
from attrflow.methods.quadrature import RULES, Rule, quadrature
from attrflow.methods.targets import Target, TargetLike, prepare_target
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
DEFAULT_IG_STEPS: int | Literal["auto"] = "auto"
DEFAULT_IG_MAX_STEPS = 128
# forward rows one halved panel costs: a new middle point and two new interior points on each half
_PANEL_ROWS = 5


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
        steps: the quadrature points integrated gradients finally used (0 when not requested).
        objective: what F is (:class:`~attrflow.methods.targets.Target`); ``probability`` and
            ``baseline_probability`` are log-probabilities for span and contrast targets.
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
    steps: int = 0
    objective: Target | None = None


def _wrap(model: Model | nn.Module) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def _word_embeddings(model: Model, encoding: Encoding) -> torch.Tensor:
    """The output of the input-embedding module for the encoding's ids, ``[1, N, d]`` (no grad)."""
    ids = encoding.inputs.get("input_ids")
    if ids is None:
        raise InvalidInputError(
            "gradient token scores need token ids; this input has none (image models are not supported here)"
        )
    module = model.input_embedding_module()
    with torch.no_grad():
        embeddings = module(ids)
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 3:
        raise UnsupportedModelError(f"{type(model.model).__name__}: the input embeddings are not [batch, n, d]")
    return embeddings.detach()


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
    target: TargetLike = None,
    steps: int | Literal["auto"] = DEFAULT_IG_STEPS,
    rule: Rule = DEFAULT_RULE,
    batch_size: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_steps: int = DEFAULT_IG_MAX_STEPS,
) -> EmbeddingGradients:
    """Input gradient, gradient × input and integrated gradients of one input, batched.

    Args:
        model: an :class:`attrflow.Model` (or a transformers model, wrapped on the fly).
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        target: F, the output to explain (:mod:`attrflow.methods.targets`): default the predicted class (next
            token for causal LMs), F its probability; for causal LMs also a continuation span or a contrast
            ``(a, b)`` (F a log-probability).
        steps: quadrature points of integrated gradients with ``rule`` over [0, 1]; 0 skips integrated
            gradients; ``"auto"`` (default) integrates with composite 4-point Gauss–Lobatto panels, halving the
            panels whose own completeness gap is large until the gaps add up to at most ``tolerance`` (or
            ``max_steps`` points are spent). The path from the zero embedding can switch within a few hundredths
            of α: on the agreement model 128 uniform Gauss–Lobatto points still left gaps of 0.01 where the
            panels reached 1e-3 with 60–90 points (BENCHMARKS.md).
        rule: quadrature rule of a fixed ``steps``, shared with :func:`attrflow.attribute`.
        batch_size: most quadrature points per forward pass (memory only; results do not depend on it).
        tolerance: with ``steps="auto"``, the largest |completeness gap| (in probability) accepted.
        max_steps: with ``steps="auto"``, the most points evaluated.

    Returns:
        :class:`EmbeddingGradients` with ``[n]`` scores over the real tokens.

    Raises:
        UnsupportedModelError: the model has no input-embedding module, or feeding its embeddings back as
            ``inputs_embeds`` does not reproduce its outputs (then its gradients would be of another function).
    """
    wrapped = _wrap(model)
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    if steps != "auto" and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0):
        raise InvalidInputError(f"steps must be 'auto' or a whole number >= 0, got {steps!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidInputError(f"batch_size must be a whole number >= 1 or None, got {batch_size!r}")
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise InvalidInputError(f"tolerance must be a positive number, got {tolerance!r}")
    adaptive = steps == "auto"
    if adaptive:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < _PANEL_ROWS:
            raise InvalidInputError(f"max_steps must be a whole number >= {_PANEL_ROWS}, got {max_steps!r}")
    elif steps:
        quadrature(rule, int(steps))  # validates steps for the rule
    wanted = adaptive or bool(steps)
    encoding, objective = prepare_target(wrapped, inputs, target)
    embeddings = _word_embeddings(wrapped, encoding)
    with torch.no_grad():
        clean = wrapped.run(encoding, positions=objective.positions).float()
    first = clean[0] if clean.dim() == 2 else clean[0, 0]
    objective = objective.resolved(int(torch.softmax(first, dim=-1).argmax()))
    chunk = batch_size

    # α = 1 (the input: the plain gradient, and a check that inputs_embeds reproduces the model) and α = 0
    ends = [1.0, 0.0] if wanted else [1.0]
    end_probs, end_grads = _gradient_rows(wrapped, encoding, embeddings, objective, ends, chunk)
    if not torch.allclose(end_probs.logits[0], clean[0], rtol=_CONSISTENCY_ATOL, atol=_CONSISTENCY_ATOL):
        diff = float((end_probs.logits[0] - clean[0]).abs().max())
        raise UnsupportedModelError(
            f"{type(wrapped.model).__name__}: running on its own input embeddings (inputs_embeds) changes "
            f"the outputs by {diff:.2e}, so embedding gradients would explain another function"
        )
    probability = float(end_probs.values[0])
    baseline = float(end_probs.values[1]) if wanted else float("nan")
    positions = encoding.positions.to(embeddings.device)
    full_embeddings = embeddings[0].double()
    integrated: torch.Tensor | None = None
    gap = float("nan")
    used = 0
    if wanted:
        known = {1.0: (probability, end_grads[0]), 0.0: (baseline, end_grads[1])}
        path = _Path(wrapped, encoding, embeddings, objective, chunk, known)
        if adaptive:
            integral, used = _adaptive_integral(path, full_embeddings, tolerance, max_steps)
        else:
            alphas, weights = quadrature(rule, int(steps))
            integral = path.weighted_sum([float(a) for a in alphas], [float(w) for w in weights])
            used = int(steps)
        attribution = (full_embeddings * integral).sum(dim=-1)
        gap = float(attribution.sum()) - (probability - baseline)
        integrated = attribution.index_select(0, positions).float().cpu()
    logger.debug("integrated gradients: completeness gap %.2e", gap)
    real_embeddings = full_embeddings.index_select(0, positions)
    real_grad = end_grads[0].index_select(0, positions)
    gradient = real_grad.sum(dim=-1).abs().float().cpu()
    gradient_l2 = real_grad.norm(dim=-1).float().cpu()
    gradient_x_input = (real_embeddings * real_grad).sum(dim=-1).abs().float().cpu()
    magnitude = real_grad.abs().sum(dim=-1)
    ratios = real_grad.sum(dim=-1).abs() / magnitude.clamp_min(torch.finfo(torch.float64).tiny)
    cancellation = float(ratios[magnitude > 0].max()) if bool((magnitude > 0).any()) else 0.0
    return EmbeddingGradients(
        gradient=gradient,
        gradient_l2=gradient_l2,
        gradient_x_input=gradient_x_input,
        integrated_gradients=integrated,
        probability=probability,
        baseline_probability=baseline,
        completeness_gap=gap,
        target=objective.index,
        cancellation=cancellation,
        steps=used,
        objective=objective,
    )


@dataclass(frozen=True)
class _Outputs:
    logits: torch.Tensor  # [R, C] float32
    values: torch.Tensor  # [R] F at each row


def _gradient_rows(
    model: Model,
    encoding: Encoding,
    embeddings: torch.Tensor,
    target: Target,
    alphas: list[float],
    chunk: int | None,
    *,
    weights: list[float] | None = None,
) -> tuple[_Outputs, list[torch.Tensor]]:
    """F and ∂F/∂e at ``α·e`` for each α, ``chunk`` rows per pass.

    Returns the outputs and either every row's gradient ``[N, d]`` (float64), or with ``weights`` one entry: the
    weighted sum of the rows' gradients.
    """
    logits_all, values_all = [], []
    grads: list[torch.Tensor] = []
    total: torch.Tensor | None = None
    size = chunk or len(alphas)
    for start in range(0, len(alphas), size):
        part = alphas[start : start + size]
        alpha = torch.tensor(part, dtype=embeddings.dtype, device=embeddings.device)
        leaf = (alpha.view(-1, 1, 1) * embeddings).requires_grad_(True)
        with torch.enable_grad():
            logits = model.run_embeddings(encoding, leaf, positions=target.positions).float()
            prob = target.values(logits)
            (grad,) = torch.autograd.grad(prob.sum(), leaf)
        logits_all.append(logits.detach())
        values_all.append(prob.detach())
        if weights is None:
            grads.extend(g.double() for g in grad)
        else:
            weight = torch.tensor(weights[start : start + size], dtype=torch.float64, device=grad.device)
            contribution = torch.einsum("b,bnd->nd", weight, grad.double())
            total = contribution if total is None else total + contribution
    outputs = _Outputs(torch.cat(logits_all), torch.cat(values_all))
    if weights is not None:
        assert total is not None
        return outputs, [total]
    return outputs, grads


class _Path:
    """F and ∂F/∂e along the straight path α·e, evaluated in batches; the end points' gradients are reused."""

    def __init__(
        self,
        model: Model,
        encoding: Encoding,
        embeddings: torch.Tensor,
        target: Target,
        chunk: int | None,
        known: dict[float, tuple[float, torch.Tensor]],
    ) -> None:
        self.model, self.encoding, self.embeddings, self.target, self.chunk = model, encoding, embeddings, target, chunk
        self.known = dict(known)
        self.rows = 0

    def evaluate(self, alphas: list[float]) -> list[tuple[float, torch.Tensor]]:
        """``(F, ∂F/∂e [N, d] float64)`` at each α (the known points cost nothing)."""
        missing = sorted({a for a in alphas if a not in self.known})
        if missing:
            outputs, grads = _gradient_rows(
                self.model, self.encoding, self.embeddings, self.target, missing, self.chunk
            )
            self.rows += len(missing)
            for alpha, value, grad in zip(missing, outputs.values.tolist(), grads, strict=True):
                self.known[alpha] = (float(value), grad)
        return [self.known[a] for a in alphas]

    def weighted_sum(self, alphas: list[float], weights: list[float]) -> torch.Tensor:
        """``Σ_k w_k ∂F/∂e(α_k·e)``, ``[N, d]`` float64 (interior points are not kept)."""
        ends = [k for k, a in enumerate(alphas) if a in self.known]
        inner = [k for k, a in enumerate(alphas) if a not in self.known]
        total = torch.zeros_like(self.embeddings[0], dtype=torch.float64)
        for k, (_, grad) in zip(ends, self.evaluate([alphas[k] for k in ends]), strict=True):
            total += weights[k] * grad
        if inner:
            _, sums = _gradient_rows(
                self.model,
                self.encoding,
                self.embeddings,
                self.target,
                [alphas[k] for k in inner],
                self.chunk,
                weights=[weights[k] for k in inner],
            )
            self.rows += len(inner)
            total += sums[0]
        return total


def _adaptive_integral(
    path: _Path, embeddings: torch.Tensor, tolerance: float, max_rows: int
) -> tuple[torch.Tensor, int]:
    """``∫₀¹ ∂F(α·e)/∂e dα`` by composite 4-point Gauss–Lobatto panels, refined where completeness fails.

    On a panel [a, b] the exact integral satisfies ``Σ_{i,d} e_{i,d} ∫_a^b ∂F/∂e_{i,d} dα = F(b·e) − F(a·e)``, so
    each panel's own gap is an error estimate that needs no extra evaluation. Panels whose |gap| exceeds their
    share of ``tolerance`` are halved until the gaps add up to at most ``tolerance`` or ``max_rows`` forward rows
    are spent. The path of a LayerNorm model can switch within a few hundredths of α; uniform rules need over a
    hundred points there, the panels a few dozen.

    Returns:
        The integral ``[N, d]`` and the number of points evaluated (both ends included).
    """
    nodes, weights = quadrature("gauss-lobatto", 4)
    inner_nodes = [float(x) for x in nodes[1:-1]]
    panels: dict[tuple[float, float], tuple[torch.Tensor, float]] = {}
    pending = [(0.0, 0.5), (0.5, 1.0)]
    while True:
        path.evaluate(sorted({x for panel in pending for x in panel}))  # the ends, kept for the neighbours
        inner = [a + (b - a) * x for a, b in pending for x in inner_nodes]
        _, inner_grads = _gradient_rows(path.model, path.encoding, path.embeddings, path.target, inner, path.chunk)
        path.rows += len(inner)
        for index, (a, b) in enumerate(pending):
            (fa, ga), (fb, gb) = path.evaluate([a, b])
            grads = [ga, *inner_grads[2 * index : 2 * index + 2], gb]
            contribution = sum((b - a) * float(w) * g for w, g in zip(weights, grads, strict=True))
            assert isinstance(contribution, torch.Tensor)
            local_gap = float((embeddings * contribution).sum()) - (fb - fa)
            panels[(a, b)] = (contribution, local_gap)
        if sum(abs(g) for _, g in panels.values()) <= tolerance:
            break
        share = tolerance / len(panels)
        worst = sorted((p for p, (_, g) in panels.items() if abs(g) > share), key=lambda p: -abs(panels[p][1]))
        budget = max_rows - (path.rows + 2)
        splits = worst[: max(0, budget // _PANEL_ROWS)]
        if not splits:
            break
        pending = []
        for a, b in splits:
            middle = (a + b) / 2
            del panels[(a, b)]
            pending += [(a, middle), (middle, b)]
    integral = torch.zeros_like(embeddings)
    for contribution, _ in panels.values():
        integral += contribution
    return integral, path.rows + 2


def input_gradient(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: TargetLike = None,
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


def gradient_x_input(model: Model | nn.Module, inputs: Any, *, target: TargetLike = None) -> torch.Tensor:
    """Gradient × input token scores ``|Σ_d e_{i,d} ∂F/∂e_{i,d}|``, ``[n]`` (see :func:`input_gradient`)."""
    return embedding_gradients(model, inputs, target=target, steps=0).gradient_x_input


def integrated_gradients(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: TargetLike = None,
    steps: int | Literal["auto"] = DEFAULT_IG_STEPS,
    rule: Rule = DEFAULT_RULE,
    batch_size: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> torch.Tensor:
    """Integrated gradients on the input embeddings, ``[n]``, signed (Sundararajan et al., ICML 2017).

    ``IG_i = Σ_d e_{i,d} ∫₀¹ ∂F(α·e)/∂e_{i,d} dα`` with the zero embedding as baseline, so that
    ``Σ_i IG_i ≈ F(e) − F(0)``. Default: adaptive Gauss–Lobatto panels until the completeness gap is at most
    ``tolerance``; a whole number of ``steps`` uses ``rule`` (the quadrature shared with
    :func:`attrflow.attribute`) over [0, 1]. Use :func:`embedding_gradients` to get the completeness gap too.
    """
    if steps == 0:
        raise InvalidInputError("steps must be 'auto' or a whole number >= 1, got 0")
    result = embedding_gradients(
        model, inputs, target=target, steps=steps, rule=rule, batch_size=batch_size, tolerance=tolerance
    )
    assert result.integrated_gradients is not None
    return result.integrated_gradients
