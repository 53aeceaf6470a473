"""Self-attention attribution (AttAttr): Hao, Dong, Wei, Xu, "Self-Attention Attribution: Interpreting
Information Interactions Inside Transformer", AAAI 2021 (arXiv 2004.11207).

For each layer l, ``Attr(A_l) = A_l ⊙ ∫₀¹ ∂F(α·A_l)/∂A_l dα`` where F(α·A_l) is the model run with layer l's
attention probabilities (all heads) replaced by α·A_l and F is the softmax probability of the target output.
The integral is a quadrature over α (see :mod:`attrflow.methods.quadrature`).

How the work is organised (one forward and one backward pass per input when memory allows): row 0 of the batch is
the clean input; at the block of each attributed layer l, the rows of that layer's interpolation points branch off
row 0 with layer l's attention replaced by α·A, so the layers below l are computed once. The α = 0 row gives F(0)
for the completeness gap; the α = 1 point of rules that have one (gauss-lobatto, riemann-right) needs no row: the
gradient at row 0 gives ∂F/∂A_l at α = 1 for every layer at once. Work in layer-rows: L + Σ_l (L − l)·rows,
against L·L·m for the paper's algorithm run naively.
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

DEFAULT_RULE: Rule = "gauss-lobatto"
DEFAULT_STEPS = 4

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
        rows_alpha, rows_weight, grad_rows, end_weight = _layer_rows(self.alphas, self.weights)
        capacity = self.batch_size or _auto_batch_size(model, encoding)
        grad_sums: dict[int, torch.Tensor] = {}
        baselines: dict[int, float] = {}
        clean: Session | None = None
        target_seen: int | None = target
        predicted = -1
        probability = float("nan")
        for plan in _plan_passes(chosen, len(rows_alpha), capacity):
            branches = {
                layer: (
                    torch.tensor(rows_alpha[rows], dtype=torch.float32, device=model.device),
                    sum(1 for r in rows if r < grad_rows),
                )
                for layer, rows in plan.items()
            }
            first = clean is None
            with torch.enable_grad():
                logits, session = model.run_branches(
                    encoding, branches, require_grad=True, clean_leaves=first and end_weight != 0.0, record=first
                )
                probabilities = torch.softmax(logits.float(), dim=-1)
                if first:
                    clean = session
                    predicted = int(probabilities[0].detach().argmax())
                    target_seen = self._resolve_target(target, predicted)
                    probability = float(probabilities[0, target_seen].detach())
                assert target_seen is not None
                prob = probabilities[:, target_seen]
                wanted = [(layer, session.leaves[layer]) for layer in sorted(plan) if layer in session.leaves]
                wanted += [
                    (-1 - layer, session.clean_row_leaves[layer])
                    for layer in chosen
                    if layer in session.clean_row_leaves
                ]
                grads = torch.autograd.grad(prob.sum(), [leaf for _, leaf in wanted]) if wanted else ()
            for (key, _), grad in zip(wanted, grads, strict=True):
                if key < 0:  # row 0: the alpha = 1 end point of the rule
                    layer, contribution = -1 - key, end_weight * grad[0].double()
                else:
                    layer = key
                    weight = torch.tensor(
                        rows_weight[plan[layer][: grad.shape[0]]], dtype=torch.float64, device=grad.device
                    )
                    contribution = torch.einsum("b,bhij->hij", weight, grad.double())
                grad_sums[layer] = grad_sums[layer] + contribution if layer in grad_sums else contribution
            for layer, rows in plan.items():
                if rows[-1] == len(rows_alpha) - 1:  # the alpha = 0 row: F(0) for the completeness gap
                    first_row, _, _ = session.branches[layer]
                    baselines[layer] = float(prob[first_row + len(rows) - 1].detach())
        assert clean is not None and target_seen is not None
        positions = encoding.positions.to(model.device)
        attentions = torch.stack([_real(r[0], positions) for r in clean.records]).float().cpu()
        stacked = torch.stack(
            [
                _real(clean.records[layer][0].double() * grad_sums.get(layer, 0.0), positions).float().cpu()
                for layer in chosen
            ]
        )
        baseline_probability = torch.tensor([baselines[layer] for layer in chosen], dtype=torch.float32)
        gap = stacked.double().sum(dim=(1, 2, 3)) - (probability - baseline_probability.double())
        return AttentionAttribution(
            tokens=encoding.tokens,
            attributions=stacked,
            attentions=attentions,
            layers=chosen,
            target=target_seen,
            target_label=model.label_name(target_seen),
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
                "target": "predicted" if target_seen == predicted else "given",
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


def _layer_rows(alphas: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
    """The rows one layer needs for a rule: ``(row_alphas, row_weights, grad_rows, end_weight)``.

    The α = 1 point needs no row of its own: row 0 (the clean input) gives ∂F/∂A at α = 1 for every layer in one
    backward pass; ``end_weight`` is its weight. The α = 0 row is always present, last, because it gives F(0) for
    the completeness gap; it carries the rule's weight at α = 0 if any (riemann-left, gauss-lobatto), and otherwise
    gets no gradient. The first ``grad_rows`` rows need gradients.
    """
    end_weight = float(weights[alphas == 1.0].sum())
    zero_weight = float(weights[alphas == 0.0].sum())
    inner = (alphas > 0.0) & (alphas < 1.0)
    row_alphas = np.append(alphas[inner], 0.0)
    row_weights = np.append(weights[inner], zero_weight)
    grad_rows = int(inner.sum()) + (1 if zero_weight != 0.0 else 0)
    return row_alphas, row_weights, grad_rows, end_weight


# the activations one pass may hold (estimated); results never depend on it
_MEMORY_BUDGET = 2 * 1024**3


def _auto_batch_size(model: Model, encoding: Encoding) -> int:
    """Interpolation rows per pass that keep the pass's activations near ``_MEMORY_BUDGET`` (results don't change)."""
    config = model.model.config.get_text_config() if model.task != "image-classification" else model.model.config
    hidden = int(getattr(config, "hidden_size", 768))
    n = int(next(iter(encoding.inputs.values())).shape[-1]) if "input_ids" in encoding.inputs else encoding.length
    per_layer_row = 4 * (6 * model.num_heads * n * n + 16 * n * hidden)
    return max(1, int(_MEMORY_BUDGET // (per_layer_row * model.num_layers)))


def _plan_passes(layers: Sequence[int], rows: int, capacity: int) -> list[dict[int, list[int]]]:
    """Group (layer, interpolation rows) into passes of at most ``capacity`` rows (plus the clean row).

    Every layer's rows are split into chunks of at most ``capacity``; chunks are packed into passes in layer order,
    at most one chunk of a layer per pass.
    """
    chunks = [
        (layer, list(range(start, min(start + capacity, rows))))
        for layer in layers
        for start in range(0, rows, capacity)
    ]
    passes: list[dict[int, list[int]]] = []
    used: list[int] = []
    for layer, chunk in chunks:
        for plan, size in zip(passes, used, strict=True):
            if layer not in plan and size + len(chunk) <= capacity:
                plan[layer] = chunk
                used[passes.index(plan)] += len(chunk)
                break
        else:
            passes.append({layer: chunk})
            used.append(len(chunk))
    return passes


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
        steps: quadrature points m (default 4; see BENCHMARKS.md for the measurements behind the default).
        rule: ``"gauss-lobatto"`` (default: exact for polynomials of degree ≤ 2m − 3, and its end points cost
            almost nothing), ``"gauss-legendre"``, ``"riemann-left"`` (official code, bit-for-bit),
            ``"riemann-right"`` (the paper), ``"riemann-middle"``.
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
