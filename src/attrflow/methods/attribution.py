"""Self-attention attribution (AttAttr): Hao, Dong, Wei, Xu, "Self-Attention Attribution: Interpreting
Information Interactions Inside Transformer", AAAI 2021 (arXiv 2004.11207).

For each layer l, ``Attr(A_l) = A_l ⊙ ∫₀¹ ∂F(α·A_l)/∂A_l dα`` where F(α·A_l) is the model run with layer l's
attention probabilities (all heads) replaced by α·A_l and F is the softmax probability of the target output.
The integral is a quadrature over α (see :mod:`attrflow.methods.quadrature`). All points of a layer run as one
batch, and the layers below l are computed once and reused (their outputs do not depend on α).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from attrflow.errors import InvalidInputError
from attrflow.methods.quadrature import RULES, Rule, quadrature
from attrflow.models import Encoding, Model, Session, load_model
from attrflow.results import AttentionAttribution

logger = logging.getLogger(__name__)

DEFAULT_RULE: Rule = "gauss-legendre"
DEFAULT_STEPS = 8

__all__ = ["DEFAULT_RULE", "DEFAULT_STEPS", "AttentionAttributor", "attribute", "resolve_layers"]


def resolve_layers(layers: int | Sequence[int] | None, num_layers: int) -> tuple[int, ...]:
    """Normalise a layer selection (negative indices count from the end) to sorted unique indices."""
    if layers is None:
        return tuple(range(num_layers))
    chosen = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
    if not chosen:
        raise InvalidInputError("layers is empty; give layer indices or None for all layers")
    out = set()
    for layer in chosen:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise InvalidInputError(f"layer indices must be integers, got {layer!r}")
        if not -num_layers <= layer < num_layers:
            raise InvalidInputError(f"layer {layer} is out of range for a model with {num_layers} layers")
        out.add(int(layer) % num_layers)
    return tuple(sorted(out))


class AttentionAttributor:
    """Self-attention attribution as a method object with one verb (captum style).

    Args:
        model: an :class:`attrflow.Model` (or a transformers model, wrapped on the fly).
        steps: number of quadrature points m (resolution; affects the completeness gap).
        rule: quadrature rule; ``"riemann-left"`` reproduces the official code, ``"riemann-right"`` the paper.
        batch_size: most interpolation points run in one forward pass (memory only; results do not depend on
            it). None runs all points of a layer together.
    """

    def __init__(
        self,
        model: Model | nn.Module,
        *,
        steps: int = DEFAULT_STEPS,
        rule: Rule = DEFAULT_RULE,
        batch_size: int | None = None,
    ) -> None:
        self.model = model if isinstance(model, Model) else load_model(model)
        self.alphas, self.weights = quadrature(rule, steps)
        self.rule = rule
        self.steps = int(steps)
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise InvalidInputError(f"batch_size must be a whole number >= 1 or None, got {batch_size!r}")
        self.batch_size = batch_size

    def attribute(
        self,
        inputs: Any,
        *,
        target: int | None = None,
        layers: int | Sequence[int] | None = None,
        truncation: bool = True,
    ) -> AttentionAttribution:
        """Attribute the target output to every attention interaction of the selected layers.

        Args:
            inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
            target: output to explain (class index, or next-token id for causal LMs); default the prediction.
            layers: layer index or indices (negative ok); default all layers.
            truncation: cut over-long text to the model's maximum with a warning (False raises).

        Returns:
            An :class:`~attrflow.results.AttentionAttribution` with ``attributions`` ``[len(layers), H, n, n]``
            and the completeness gap of each layer.
        """
        model = self.model
        encoding = model.prepare(inputs, truncation=truncation)
        chosen = resolve_layers(layers, model.num_layers)

        clean = Session(record=True)
        with torch.no_grad():
            probabilities = torch.softmax(model.run(encoding, clean).float(), dim=-1)[0]
        predicted = int(probabilities.argmax())
        target = self._resolve_target(target, predicted)
        probability = float(probabilities[target])
        positions = encoding.positions.to(model.device)
        attentions = torch.stack([_real(r[0], positions) for r in clean.records]).float().cpu()

        rows_alpha = np.append(self.alphas, 0.0)  # the last row (α = 0) gives F(0) for the completeness gap
        rows_weight = np.append(self.weights, 0.0)
        chunk = self.batch_size or len(rows_alpha)
        attributions, baselines = [], []
        for layer in chosen:
            grad_sum, baseline = self._integrate(encoding, layer, target, rows_alpha, rows_weight, chunk)
            full_attention = clean.records[layer][0].double()
            attributions.append(_real(full_attention * grad_sum, positions).float().cpu())
            baselines.append(baseline)
        stacked = torch.stack(attributions)
        baseline_probability = torch.tensor(baselines, dtype=torch.float32)
        gap = stacked.double().sum(dim=(1, 2, 3)) - (probability - baseline_probability.double())
        return AttentionAttribution(
            tokens=encoding.tokens,
            attributions=stacked,
            attentions=attentions,
            layers=chosen,
            target=target,
            target_label=model.label_name(target),
            predicted=predicted,
            probability=probability,
            baseline_probability=baseline_probability,
            completeness_gap=gap.float(),
            input_ids=encoding.input_ids,
            segment_ids=encoding.segment_ids,
            special_mask=encoding.special_mask,
            output_position=encoding.output_position,
            settings={
                "method": "attattr",
                "rule": self.rule,
                "steps": self.steps,
                "model": model.name,
                "architecture": type(model.model).__name__,
                "task": model.task,
                "target": "predicted" if target == predicted else "given",
                "truncated": encoding.truncated,
            },
        )

    def _resolve_target(self, target: int | None, predicted: int) -> int:
        if target is None:
            return predicted
        limit = self.model.num_outputs
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < limit:
            what = "vocabulary id" if self.model.task == "causal-lm" else "class index"
            raise InvalidInputError(f"target must be a {what} in [0, {limit}), got {target!r}")
        return int(target)

    def _integrate(
        self,
        encoding: Encoding,
        layer: int,
        target: int,
        alphas: np.ndarray,
        weights: np.ndarray,
        chunk: int,
    ) -> tuple[torch.Tensor, float]:
        """Σ_k w_k ∂F/∂A'|_{A'=α_k·A} for one layer (float64, full padded size) and F(α = 0)."""
        device = self.model.device
        grad_sum: torch.Tensor | None = None
        baseline = float("nan")
        for start in range(0, len(alphas), chunk):
            alpha = torch.tensor(alphas[start : start + chunk], dtype=torch.float32, device=device)
            weight = torch.tensor(weights[start : start + chunk], dtype=torch.float64, device=device)
            session = Session(replace_site=layer, alphas=alpha, require_grad=True)
            with torch.enable_grad():
                logits = self.model.run(encoding, session, batch=len(alpha))
                prob = torch.softmax(logits.float(), dim=-1)[:, target]
                assert session.replaced is not None
                (grad,) = torch.autograd.grad(prob.sum(), session.replaced)
            contribution = torch.einsum("b,bhij->hij", weight, grad.double())
            grad_sum = contribution if grad_sum is None else grad_sum + contribution
            if start + len(alpha) == len(alphas):
                baseline = float(prob[-1].detach())
        assert grad_sum is not None
        return grad_sum, baseline


def _real(matrix: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows and columns of the real (non-padding) positions of a ``[..., N, N]`` tensor."""
    return matrix.index_select(-1, positions).index_select(-2, positions)


def attribute(
    model: Model | nn.Module,
    inputs: Any,
    *,
    target: int | None = None,
    steps: int = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    layers: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    truncation: bool = True,
) -> AttentionAttribution:
    """Self-attention attribution of one input (Hao et al., AAAI 2021).

    ``Attr(A_l) = A_l ⊙ ∫₀¹ ∂F(α·A_l)/∂A_l dα`` for each selected layer l, with F the softmax probability of
    ``target``. Entry ``[l, h, i, j]`` of the result's ``attributions`` (``[len(layers), H, n, n]``) is the
    interaction "token i attends to token j" in head h.

    Args:
        model: an :class:`attrflow.Model` from :func:`attrflow.load_model` (or a transformers model).
        inputs: a string, a ``(text, text_pair)`` tuple, or a dict of batch-1 tensors.
        target: output to explain; default the predicted class (next token for causal LMs).
        steps: quadrature points m. Default 8 Gauss–Legendre points: see BENCHMARKS.md for why.
        rule: one of ``"gauss-legendre"``, ``"riemann-left"`` (official code), ``"riemann-right"`` (paper),
            ``"riemann-middle"``.
        layers: which layers (negative indices ok); default all.
        batch_size: most interpolation points per forward pass (memory only; results do not depend on it).
        truncation: cut over-long text with a warning (False raises).

    Returns:
        The :class:`~attrflow.results.AttentionAttribution`, with ``completeness_gap`` per layer.
    """
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    return AttentionAttributor(model, steps=steps, rule=rule, batch_size=batch_size).attribute(
        inputs, target=target, layers=layers, truncation=truncation
    )
