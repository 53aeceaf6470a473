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

Long inputs (``keep="tokens"`` or ``keep=Keep(top_k=k)``): the full result holds ``[L, H, n, n]`` tensors, and
computing it keeps every layer's attention and the gradients at every α. With ``keep`` set, the engine of
:mod:`attrflow.methods._kept` reduces each gradient·A product as soon as it is computed, runs the interpolation
rows in memory-bounded chunks, and never stores ``[L, H, n, n]``; see docs/long-inputs.md for the memory model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from attrflow.errors import InvalidInputError, NonFiniteError
from attrflow.memory import PeakMemory, available_memory, format_bytes
from attrflow.methods.quadrature import RULES, Rule, quadrature
from attrflow.methods.targets import Target, TargetLike, prepare_target
from attrflow.models import BranchPass, Encoding, Model, load_model
from attrflow.results import AttentionAttribution

logger = logging.getLogger(__name__)

DEFAULT_RULE: Rule = "gauss-lobatto"
DEFAULT_STEPS: int | Literal["auto"] = "auto"
# largest completeness gap (in probability) that "auto" accepts per layer before doubling its points
DEFAULT_TOLERANCE = 1e-3

__all__ = [
    "DEFAULT_RULE",
    "DEFAULT_STEPS",
    "DEFAULT_TOLERANCE",
    "AttentionAttributor",
    "Keep",
    "KeepLike",
    "Steps",
    "attribute",
    "check_keep",
    "check_steps",
    "fits_full",
    "full_memory",
    "resolve_layers",
]


Steps = int | Literal["auto"]


@dataclass(frozen=True)
class Keep:
    """What :func:`attribute` keeps of the ``[L, H, n, n]`` attributions when they are too large to keep whole.

    Always kept: the token totals ``Σ_h Σ_i Attr[l, h, i, j]`` (``[L, n]``, what the ``attattr`` token scores
    are) and the head totals ``Σ_i Σ_j Attr[l, h, i, j]`` (``[L, H]``), and the completeness gap of every layer.

    Attributes:
        top_k: also the k largest interactions of every layer and head, with the exact sum of the rest (0: none).
            Needs one ``[H, n, n]`` float32 buffer per layer being integrated (at most two at a time).
    """

    top_k: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            raise InvalidInputError(f"Keep(top_k=...) must be a whole number >= 0, got {self.top_k!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for ``settings["keep"]``)."""
        return {"tokens": True, "heads": True, "top_k": int(self.top_k)}


KeepLike = Literal["full", "tokens"] | Keep
"""``keep=``: ``"full"`` (the ``[L, H, n, n]`` tensors), ``"tokens"`` (token and head totals; ``Keep()``), or a
:class:`Keep`."""


def check_keep(keep: object) -> Keep | None:
    """``keep=`` as a :class:`Keep`, or None for the full tensors."""
    if keep == "full":
        return None
    if keep == "tokens":
        return Keep()
    if isinstance(keep, Keep):
        return keep
    raise InvalidInputError(f"keep must be 'full', 'tokens' or an attrflow.Keep(top_k=...), got {keep!r}")


def check_steps(steps: object) -> Steps:
    """Validate a ``steps`` option early (e.g. when a dataset task is built): ``"auto"`` or a whole number >= 1."""
    if steps == "auto":
        return "auto"
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidInputError(f"steps must be 'auto' or a whole number >= 1, got {steps!r}")
    return int(steps)


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
        steps: int | Literal["auto"] = DEFAULT_STEPS,
        rule: Rule = DEFAULT_RULE,
        batch_size: int | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        max_steps: int = 32,
    ) -> None:
        self.model = model if isinstance(model, Model) else load_model(model)
        checked = check_steps(steps)
        if checked == "auto":
            first = 4 if rule != "riemann-left" and rule != "riemann-right" else 20
            quadrature(rule, first)  # validates the rule
            self.initial_steps, self.adaptive = first, True
        else:
            quadrature(rule, checked)  # validates the rule and the steps it allows
            self.initial_steps, self.adaptive = checked, False
        if not (isinstance(tolerance, (int, float)) and tolerance > 0):
            raise InvalidInputError(f"tolerance must be a positive number, got {tolerance!r}")
        # max_steps bounds steps="auto" only; a fixed number of steps may be larger
        least = self.initial_steps if self.adaptive else 1
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < least:
            raise InvalidInputError(f"max_steps must be a whole number >= {least}, got {max_steps!r}")
        self.rule = rule
        self.steps = steps
        self.tolerance = float(tolerance)
        self.max_steps = max_steps
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise InvalidInputError(f"batch_size must be a whole number >= 1 or None, got {batch_size!r}")
        self.batch_size = batch_size

    def attribute(
        self,
        inputs: Any,
        *,
        target: TargetLike = None,
        layers: int | Sequence[int] | None = None,
        truncation: bool = True,
        keep: KeepLike = "full",
    ) -> AttentionAttribution:
        """Attribute the target output to every attention interaction of the selected layers.

        Args:
            inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
            target: F, the output to explain (:mod:`attrflow.methods.targets`): a class index or next-token id
                (default the prediction; F its probability), or for causal LMs a continuation span (a string or
                a list of ids; F its summed log-probability) or a contrast ``(a, b)`` (F = log p(a) − log p(b)).
            layers: layer index or indices (negative ok); default all layers.
            truncation: cut over-long text to the model's maximum with a warning (False raises).
            keep: ``"full"`` (default): the ``[len(layers), H, n, n]`` attributions and every layer's attention;
                ``"tokens"`` or :class:`Keep`: only their token and head totals (and the top-k interactions of each
                head), computed in memory that grows with n·d rather than L·H·n² (long inputs).

        Returns:
            An :class:`~attrflow.results.AttentionAttribution` with ``attributions`` ``[len(layers), H, n, n]``
            (``keep="full"``) or the kept reductions, the completeness gap of each layer, and
            ``settings["peak_memory"]`` (bytes above the start; ``settings["peak_memory_source"]`` says how it was
            measured).

        Raises:
            InvalidInputError: ``keep="full"`` would need more memory than is available (the message says what to
                pass instead), or a bad target, layer or input.
        """
        model = self.model
        kept = check_keep(keep)
        encoding, objective = prepare_target(model, inputs, target, truncation=truncation)
        chosen = resolve_layers(layers, model.num_layers)
        with PeakMemory(model.device) as measured:
            if kept is None:
                self._check_fits(encoding, chosen)
                outcome = self._integrate_full(encoding, objective, chosen)
            else:
                from attrflow.methods._kept import integrate_kept

                outcome = integrate_kept(self, encoding, objective, chosen, kept)
        outcome.settings.update(peak_memory=measured.peak, peak_memory_source=measured.source)
        return self._result(encoding, chosen, outcome, "full" if kept is None else kept.to_dict())

    def _integrate_full(self, encoding: Encoding, objective: Target, chosen: tuple[int, ...]) -> Outcome:
        """The full ``[L, H, N, N]`` attributions (the engine described in the module docstring)."""
        state = _IntegrationState(encoding, objective)
        steps_of = dict.fromkeys(chosen, self.initial_steps)
        pending = list(chosen)
        attributions: dict[int, torch.Tensor] = {}
        gaps: dict[int, float] = {}
        while pending:
            points = {layer: quadrature(self.rule, steps_of[layer]) for layer in pending}
            self._evaluate(state, points)
            refine = []
            for layer in pending:
                alphas, weights = points[layer]
                integral = sum(float(w) * state.gradient(layer, float(a)) for a, w in zip(alphas, weights, strict=True))
                attributions[layer] = state.attention(layer) * integral
                gaps[layer] = float(attributions[layer].sum()) - (state.probability - state.f0[layer])
                if self.refines(gaps[layer], steps_of[layer]):
                    steps_of[layer] *= 2
                    refine.append(layer)
            pending = refine
        positions = encoding.positions.to(self.model.device)
        assert state.clean is not None
        return Outcome(
            objective=state.objective,
            predicted=state.predicted,
            value=state.probability,
            baseline={layer: state.f0[layer] for layer in chosen},
            steps_of=steps_of,
            attributions=torch.stack([_real(attributions[layer], positions).float().cpu() for layer in chosen]),
            attentions=_real(state.clean, positions).float().cpu(),
        )

    def refines(self, gap: float, steps: int) -> bool:
        """Whether steps="auto" doubles a layer's points after a completeness gap of ``gap`` with ``steps``."""
        return self.adaptive and abs(gap) > self.tolerance and steps * 2 <= self.max_steps

    def _check_fits(self, encoding: Encoding, chosen: tuple[int, ...]) -> None:
        """Refuse ``keep="full"`` when its estimated memory exceeds what is available (say what to pass)."""
        needed = full_memory(self.model, encoding, chosen, self.initial_steps)
        available = available_memory(self.model.device)
        if available is None or needed <= available:
            return
        raise InvalidInputError(
            f"keep='full' at n={encoding.length} would need about {format_bytes(needed)} (the [L, H, n, n] "
            f"attributions, the gradients at every quadrature point and every layer's attention) but about "
            f"{format_bytes(available)} is available on {self.model.device}. Pass keep='tokens' for the token and "
            "head totals in memory that grows with n·d, or keep=attrflow.Keep(top_k=...) for the top interactions "
            "of each head too (or attribute fewer layers=)"
        )

    def _result(
        self, encoding: Encoding, chosen: tuple[int, ...], outcome: Outcome, keep: str | dict[str, Any]
    ) -> AttentionAttribution:
        model = self.model
        objective = outcome.objective
        baseline = torch.tensor([outcome.baseline[layer] for layer in chosen], dtype=torch.float64)
        full = outcome.attributions
        kept = full if full is not None else outcome.token_totals
        bad = [layer for layer, values in zip(chosen, kept, strict=True) if not bool(torch.isfinite(values).all())]
        if bad:
            raise NonFiniteError(
                f"the attribution of layer{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))} is not finite "
                "(NaN or infinite gradients) although the model's output is; attrflow does not return it"
            )
        totals = full.double().sum(dim=(1, 2, 3)) if full is not None else outcome.token_totals.double().sum(dim=-1)
        gap = totals - (outcome.value - baseline)
        return AttentionAttribution(
            tokens=encoding.tokens,
            attributions=outcome.attributions,
            attentions=outcome.attentions,
            layers=chosen,
            target=objective.index,
            target_label=objective.label(model),
            predicted=outcome.predicted,
            probability=outcome.value,
            baseline_probability=baseline.float(),
            completeness_gap=gap.float(),
            input_ids=encoding.input_ids,
            segment_ids=encoding.segment_ids,
            special_mask=encoding.special_mask,
            output_position=encoding.output_position,
            settings={
                "method": "attattr",
                "rule": self.rule,
                "steps": self.steps,
                "steps_per_layer": [outcome.steps_of[layer] for layer in chosen],
                "tolerance": self.tolerance if self.adaptive else None,
                "model": model.name,
                "architecture": type(model.model).__name__,
                "task": model.task,
                "sites": [model.site_names[layer] for layer in chosen],
                "target": "predicted"
                if objective.kind == "output" and objective.index == outcome.predicted
                else "given",
                "objective": objective.to_dict(model),
                "truncated": encoding.truncated,
                "keep": keep,
                "num_layers": model.num_layers,
                **outcome.settings,
            },
            token_totals=None if outcome.attributions is not None else outcome.token_totals.float(),
            head_totals=None if outcome.head_totals is None else outcome.head_totals.float(),
            top_values=outcome.top_values,
            top_indices=outcome.top_indices,
            top_rest=outcome.top_rest,
        )

    def _evaluate(self, state: _IntegrationState, points: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> None:
        """Compute (and cache in ``state``) the gradients at every α the layers' rules need, in as few passes as
        memory allows. α = 1 comes from the clean row of the first pass, α = 0 from the F(0) row."""
        model = self.model
        first = state.clean is None
        weighted_zero = any(float(w[a == 0.0].sum()) != 0.0 for a, w in points.values())
        rows: dict[int, tuple[list[float], int]] = {}
        for layer, (alphas, _) in points.items():
            inner = [float(a) for a in alphas if 0.0 < a < 1.0 and not state.has(layer, float(a))]
            grad_rows = len(inner)
            if layer not in state.f0:
                inner.append(0.0)  # last: gives F(0), and the alpha = 0 gradient when a rule weighs it
                grad_rows += 1 if weighted_zero else 0
            if inner:
                rows[layer] = (inner, grad_rows)
        need_end = first and any(float(a) == 1.0 for alphas, _ in points.values() for a in alphas)
        capacity = self.batch_size or _auto_batch_size(model, state.encoding)
        plans = _plan_passes({layer: len(r[0]) for layer, r in rows.items()}, capacity) or [{}]
        for plan in plans:
            branches = {}
            for layer, chunk in plan.items():
                row_alphas, grad_rows = rows[layer]
                branches[layer] = (
                    torch.tensor([row_alphas[r] for r in chunk], dtype=torch.float64, device=model.device),
                    sum(1 for r in chunk if r < grad_rows),
                )
            record = state.clean is None
            with torch.enable_grad():
                branched = model.run_branches(
                    state.encoding,
                    branches,
                    require_grad=True,
                    clean_leaves=need_end and record,
                    record=record,
                    positions=state.objective.positions,
                )
                if record:
                    state.set_clean(branched)
                prob = state.objective.values(branched.logits)
                wanted = [(layer, branched.leaves[layer]) for layer in sorted(plan) if layer in branched.leaves]
                if need_end and record:
                    wanted += [
                        (-1 - layer, leaf) for layer, leaf in branched.clean_row_leaves.items() if layer in points
                    ]
                grads = torch.autograd.grad(prob.sum(), [leaf for _, leaf in wanted]) if wanted else ()
            for (key, _), grad in zip(wanted, grads, strict=True):
                if key < 0:
                    state.store(-1 - key, 1.0, grad[0])
                    continue
                row_alphas, _ = rows[key]
                for offset, r in enumerate(plan[key][: grad.shape[0]]):
                    state.store(key, row_alphas[r], grad[offset])
            for layer, chunk in plan.items():
                row_alphas, _ = rows[layer]
                if layer not in state.f0 and chunk[-1] == len(row_alphas) - 1:
                    state.f0[layer] = float(prob[branched.row_starts[layer] + len(chunk) - 1].detach())


@dataclass
class Outcome:
    """What an integration engine hands back: F, the baselines, the points used, and the full tensors or the
    reductions that were kept (CPU tensors)."""

    objective: Target
    predicted: int
    value: float
    baseline: dict[int, float]
    steps_of: dict[int, int]
    attributions: torch.Tensor | None = None
    attentions: torch.Tensor | None = None
    token_totals: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    head_totals: torch.Tensor | None = None
    top_values: torch.Tensor | None = None
    top_indices: torch.Tensor | None = None
    top_rest: torch.Tensor | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def first_prediction(logits: torch.Tensor) -> int:
    """The prediction at the first position a target reads, from one row's logits ``[C]`` or ``[k, C]``."""
    first = logits if logits.dim() == 1 else logits[0]
    wide = first.to(torch.promote_types(first.dtype, torch.float32))
    return int(torch.softmax(wide, dim=-1).argmax())


class _IntegrationState:
    """What one attribution has computed so far: the clean pass and the gradients at each α of each layer."""

    def __init__(self, encoding: Encoding, objective: Target) -> None:
        self.encoding = encoding
        self.objective = objective
        # [L, H, N, N] the clean probabilities of every layer (padding included), from the first pass
        self.clean: torch.Tensor | None = None
        self.predicted = -1
        self.probability = float("nan")
        self.f0: dict[int, float] = {}
        self._gradients: dict[int, dict[float, torch.Tensor]] = {}

    def set_clean(self, branched: BranchPass) -> None:
        assert branched.attentions is not None
        self.clean = branched.attentions
        self.predicted = first_prediction(branched.logits[0].detach())
        self.objective = self.objective.resolved(self.predicted)
        self.probability = float(self.objective.values(branched.logits[:1].detach())[0])

    @staticmethod
    def _key(alpha: float) -> float:
        return round(alpha, 12)

    def has(self, layer: int, alpha: float) -> bool:
        return self._key(alpha) in self._gradients.get(layer, {})

    def store(self, layer: int, alpha: float, gradient: torch.Tensor) -> None:
        self._gradients.setdefault(layer, {})[self._key(alpha)] = gradient.detach().double()

    def gradient(self, layer: int, alpha: float) -> torch.Tensor:
        return self._gradients[layer][self._key(alpha)]

    def attention(self, layer: int) -> torch.Tensor:
        assert self.clean is not None
        return self.clean[layer].double()


# the activations one pass may hold (estimated); results never depend on it
_MEMORY_BUDGET = 2 * 1024**3


def model_sizes(model: Model) -> tuple[int, int]:
    """``(hidden, intermediate)`` widths of the model's layers, for memory estimates."""
    config = model.model.config.get_text_config() if model.task != "image-classification" else model.model.config
    hidden = int(getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or 768)
    inner = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
    inner = inner or getattr(config, "d_ff", None) or getattr(config, "encoder_ffn_dim", None) or 4 * hidden
    return hidden, int(inner)


def _auto_batch_size(model: Model, encoding: Encoding) -> int:
    """Interpolation rows per pass that keep the pass's activations near ``_MEMORY_BUDGET`` (results don't change)."""
    hidden, _ = model_sizes(model)
    n = encoding.padded_length
    per_layer_row = 4 * (6 * model.num_heads * n * n + 16 * n * hidden)
    return max(1, int(_MEMORY_BUDGET // (per_layer_row * model.num_layers)))


def full_memory(model: Model, encoding: Encoding, layers: Sequence[int], steps: int) -> int:
    """Estimated peak bytes of ``keep="full"`` with ``steps`` points per layer (the first round of "auto").

    With e = H·N² entries per layer, L layers, L' attributed and s bytes per model number: every layer's clean
    attention (recorded, and kept in the graph for the α = 1 gradients) 2·L·e·s; the float64 gradients at each
    point 8·m·L'·e; the float64 attributions and their float32 copy 12·L'·e; the float32 attentions of the result
    4·L·e; one branching pass of the clean row and one interpolation row (scores, probabilities and their
    gradients at every layer, ``_auto_batch_size``'s count) 2·L·(24·e + 64·N·d).
    """
    hidden, _ = model_sizes(model)
    n = encoding.padded_length
    entries = model.num_heads * n * n
    size = next(model.model.parameters()).element_size()
    num_layers, attributed = model.num_layers, len(layers)
    tensors = num_layers * entries * (2 * size + 4) + attributed * entries * (8 * steps + 12)
    one_pass = 2 * num_layers * (24 * entries + 64 * n * hidden)
    return int(tensors + one_pass)


def fits_full(model: Model, encoding: Encoding, layers: Sequence[int], steps: Steps) -> bool:
    """Whether ``keep="full"`` fits the available memory by :func:`full_memory`'s estimate (4 points for "auto")."""
    available = available_memory(model.device)
    points = 4 if steps == "auto" else int(steps)
    return available is None or full_memory(model, encoding, layers, points) <= available


def _plan_passes(rows: Mapping[int, int], capacity: int) -> list[dict[int, list[int]]]:
    """Group each layer's rows (``rows[layer]`` of them) into passes of at most ``capacity`` rows (+ the clean row).

    A layer's rows are split into chunks of at most ``capacity``, in order; chunks are packed into passes in layer
    order, at most one chunk of a layer per pass.
    """
    chunks = [
        (layer, list(range(start, min(start + capacity, count))))
        for layer, count in sorted(rows.items())
        for start in range(0, count, capacity)
    ]
    passes: list[dict[int, list[int]]] = []
    used: list[int] = []
    for layer, chunk in chunks:
        for index, plan in enumerate(passes):
            if layer not in plan and used[index] + len(chunk) <= capacity:
                plan[layer] = chunk
                used[index] += len(chunk)
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
    target: TargetLike = None,
    steps: int | Literal["auto"] = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    layers: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    truncation: bool = True,
    keep: KeepLike = "full",
) -> AttentionAttribution:
    """Self-attention attribution of one input (Hao et al., AAAI 2021).

    ``Attr(A_l) = A_l ⊙ ∫₀¹ ∂F(α·A_l)/∂A_l dα`` for each selected layer l, with F the softmax probability of
    ``target`` (the paper's) or, for a continuation span or a contrast, a log-probability. Entry ``[l, h, i, j]``
    of the result's ``attributions`` (``[len(layers), H, n, n]``) is the interaction "token i attends to token j"
    in head h. Completeness: ``Σ Attr(A_l) ≈ F(A_l) − F(0)`` per layer, in F's units (``completeness_gap``).

    Args:
        model: an :class:`attrflow.Model` from :func:`attrflow.load_model` (or a transformers model).
        inputs: a string, a ``(text, text_pair)`` tuple, or a dict of batch-1 tensors.
        target: F, the output to explain: default the predicted class (next token for causal LMs); an int (class
            index or token id; F its probability); for causal LMs a string or a list of ids (a continuation
            appended to the input: F = Σ_t log p(y_t | prompt, y_<t), each token read at its own position) or a
            pair ``(a, b)`` of single next tokens (F = log p(a) − log p(b)); see :mod:`attrflow.methods.targets`.
        steps: quadrature points m, or ``"auto"`` (default): start with 4 points (20 for the Riemann rules) and
            double them, up to 32, for each layer whose completeness gap exceeds ``tolerance``. The gradients at
            α = 0 and α = 1 are reused, so a refinement pays only for new interior points of that layer; sharp
            layers are usually the top ones, the cheapest to recompute. See BENCHMARKS.md for the measurements.
        rule: ``"gauss-lobatto"`` (default: exact for polynomials of degree ≤ 2m − 3, and its end points cost
            almost nothing), ``"gauss-legendre"``, ``"riemann-left"`` (official code, bit-for-bit),
            ``"riemann-right"`` (the paper), ``"riemann-middle"``.
        layers: which layers (negative indices ok); default all.
        batch_size: most interpolation points per forward pass (memory only; results do not depend on it).
        tolerance: with ``steps="auto"``, the largest |completeness gap| per layer (in probability) accepted.
        truncation: cut over-long text with a warning (False raises).
        keep: ``"full"`` (default): the ``[len(layers), H, n, n]`` attributions and every layer's attention, for
            short inputs (refused with a message when the estimate exceeds the available memory); ``"tokens"``:
            the token totals ``[len(layers), n]`` and head totals ``[len(layers), H]`` only, computed in memory
            that grows with n·d (each gradient·A product reduced as soon as it exists, rows in bounded chunks);
            ``Keep(top_k=k)``: also every head's k largest interactions with the exact sum of the rest.

    Returns:
        The :class:`~attrflow.results.AttentionAttribution`, with ``completeness_gap`` per layer, the points
        used per layer in ``settings["steps_per_layer"]`` and the peak memory in ``settings["peak_memory"]``.
    """
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    return AttentionAttributor(model, steps=steps, rule=rule, batch_size=batch_size, tolerance=tolerance).attribute(
        inputs, target=target, layers=layers, truncation=truncation, keep=keep
    )
