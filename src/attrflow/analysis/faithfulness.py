"""Faithfulness of token scores: the protocol of Abnar & Zuidema (ACL 2020, §5) and ERASER's AOPC.

Two questions about every token-scoring method (:mod:`attrflow.analysis.token_scores`,
:mod:`attrflow.methods.gradients`):

1. Does it rank tokens like a ground truth does? Per example and layer, the Spearman rank correlation between the
   method's scores and a reference — blank-out (occlusion) or the input gradient — averaged over examples with
   its standard deviation (the paper's Tables 1–3).
2. Does the model need the tokens it ranks highest? AOPC (DeYoung et al., ERASER, ACL 2020): comprehensiveness
   ``p_y(x) − p_y(x without its top-k% tokens)`` and sufficiency ``p_y(x) − p_y(only its top-k% tokens)``,
   averaged over the bins k = 10%, 20%, …, 100%. Special tokens ([CLS], [SEP], BOS) are never removed.

:func:`faithfulness` runs both over a dataset with the dataset runner (progress bar, resumable Parquet run
directory, local or Ray engine) and returns a :class:`~attrflow.analysis.faithfulness_report.FaithfulnessReport`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from attrflow.analysis.faithfulness_report import FaithfulnessReport
from attrflow.analysis.token_scores import (
    Reduction,
    Replacement,
    _blankout_probabilities,
    attattr_token_scores,
    attention_token_scores,
    replacement_id,
    token_features,
)
from attrflow.errors import InvalidInputError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, check_steps, resolve_layers
from attrflow.methods.quadrature import RULES, Rule
from attrflow.models import Encoding, Model, Session, load_model
from attrflow.runner import Batch, DatasetTask

if TYPE_CHECKING:
    import pyarrow as pa

    from attrflow.runner import Engine

__all__ = [
    "DEFAULT_BINS",
    "GRADIENT_METHODS",
    "LAYERWISE_METHODS",
    "METHODS",
    "QUICK_METHODS",
    "REFERENCES",
    "AOPCCurve",
    "FaithfulnessTask",
    "NanPolicy",
    "Removal",
    "TargetRule",
    "aopc",
    "erasure_order",
    "faithfulness",
    "quick_faithfulness",
    "removal_counts",
    "spearman",
]

# methods scored at every layer (Spearman per layer) and the single-vector ones
LAYERWISE_METHODS: tuple[str, ...] = ("attention", "rollout", "flow", "attattr")
GRADIENT_METHODS: tuple[str, ...] = (
    "blankout",
    "gradient",
    "gradient_l2",
    "gradient_x_input",
    "integrated_gradients",
)
METHODS: tuple[str, ...] = LAYERWISE_METHODS + GRADIENT_METHODS
REFERENCES: tuple[str, ...] = ("blankout", "gradient")
# no quadrature: a few seconds on a small model, for `attrflow demo`
QUICK_METHODS: tuple[str, ...] = ("attention", "rollout", "flow", "gradient_x_input")
DEFAULT_BINS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

Removal = Literal["delete", "unk", "mask"]
NanPolicy = Literal["omit", "zero"]
TargetRule = Literal["label", "predicted"]
HeadFusion = Literal["mean", "max", "min"]

# a task's results depend on these; bump when the per-example computation changes
_TASK_VERSION = 1


# ---------------------------------------------------------------------------------------------- metrics
def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two score vectors, ties given their average rank (as ``scipy.stats``).

    Args:
        a, b: vectors of the same length n (tensors, arrays or sequences).

    Returns:
        The Pearson correlation of the ranks, in [−1, 1]; NaN when n < 2, when either vector is constant (no
        ranking to compare) or holds NaN.
    """
    from scipy.stats import rankdata

    x = _vector(a)
    y = _vector(b)
    if x.shape != y.shape:
        raise InvalidInputError(f"spearman needs two vectors of the same length, got {x.size} and {y.size}")
    if x.size < 2 or np.isnan(x).any() or np.isnan(y).any():
        return math.nan
    rx = rankdata(x)
    ry = rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    if denominator == 0.0:
        return math.nan
    return float(np.clip(float(rx @ ry) / denominator, -1.0, 1.0))


def _vector(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64).ravel()


def removal_counts(num_tokens: int, bins: Sequence[float] = DEFAULT_BINS) -> list[int]:
    """How many of ``num_tokens`` removable tokens each bin removes: ``ceil(k · num_tokens)``.

    The ceiling makes every bin remove at least one token (short sentences would otherwise skip the small
    bins); a tiny slack keeps exact products such as 0.3 · 10 at 3.
    """
    return [min(num_tokens, math.ceil(k * num_tokens - 1e-9)) for k in bins]


def erasure_order(scores: Any, special_mask: Sequence[bool]) -> np.ndarray:
    """Positions of the non-special tokens, highest score first (ties: earlier position first)."""
    values = _vector(scores)
    if values.size != len(special_mask):
        raise InvalidInputError(f"got {values.size} scores for {len(special_mask)} tokens")
    candidates = np.flatnonzero(~np.asarray(special_mask, dtype=bool))
    # NaN scores rank last
    keys = np.where(np.isnan(values[candidates]), -np.inf, values[candidates])
    return candidates[np.argsort(-keys, kind="stable")]


def _check_bins(bins: Sequence[float]) -> tuple[float, ...]:
    try:
        out = tuple(float(k) for k in bins)
    except (TypeError, ValueError):
        raise InvalidInputError(f"bins must be fractions in (0, 1], got {bins!r}") from None
    if not out or any(not 0.0 < k <= 1.0 for k in out):
        raise InvalidInputError(f"bins must be a non-empty sequence of fractions in (0, 1], got {bins!r}")
    return out


@dataclass(frozen=True, eq=False)
class AOPCCurve:
    """Erasure curves of one method on one input (DeYoung et al., ERASER, ACL 2020).

    Attributes:
        bins: the fractions k of the removable (non-special) tokens.
        counts: ``[K]`` how many tokens each bin removes (or keeps), ``ceil(k · m)`` of m removable tokens.
        comprehensiveness: ``[K]`` ``p_y(x) − p_y(x without the top-k tokens)`` (higher: more faithful).
        sufficiency: ``[K]`` ``p_y(x) − p_y(only the top-k tokens, specials kept)`` (lower: more faithful).
        probability: ``p_y(x)``.
    """

    bins: tuple[float, ...]
    counts: tuple[int, ...]
    comprehensiveness: np.ndarray
    sufficiency: np.ndarray
    probability: float

    @property
    def aopc_comprehensiveness(self) -> float:
        """Comprehensiveness averaged over the bins."""
        return float(np.mean(self.comprehensiveness))

    @property
    def aopc_sufficiency(self) -> float:
        """Sufficiency averaged over the bins."""
        return float(np.mean(self.sufficiency))


def _erased_ids(encoding: Encoding, removed: np.ndarray, removal: Removal, blank: int | None) -> dict[str, list[int]]:
    """A tokenised variant of ``encoding`` with the positions ``removed`` deleted or blanked out."""
    ids = list(encoding.input_ids)
    gone = set(int(i) for i in removed)
    if removal == "delete":
        keep = [i for i in range(len(ids)) if i not in gone]
        feature = {"input_ids": [ids[i] for i in keep]}
        if encoding.segment_ids is not None:
            feature["token_type_ids"] = [encoding.segment_ids[i] for i in keep]
        return feature
    assert blank is not None
    return token_features(encoding, [blank if i in gone else t for i, t in enumerate(ids)])


def _erasure_curves(
    model: Model,
    encoding: Encoding,
    scores: Mapping[str, Any],
    target: int,
    bins: tuple[float, ...],
    removal: Removal,
    batch_size: int,
) -> dict[str, AOPCCurve]:
    """Every method's erasure curves from one batched :meth:`Model.predict_batch` call (variants deduplicated)."""
    if not encoding.input_ids:
        raise InvalidInputError("AOPC needs token ids; this input has none (image models are not supported)")
    blank = None if removal == "delete" else replacement_id(model, removal)
    items: list[dict[str, list[int]]] = [token_features(encoding, encoding.input_ids)]
    index: dict[tuple[tuple[str, tuple[int, ...]], ...], int] = {_key(items[0]): 0}

    def row_of(feature: dict[str, list[int]]) -> int:
        key = _key(feature)
        if key not in index:
            index[key] = len(items)
            items.append(feature)
        return index[key]

    special = list(encoding.special_mask) or [False] * encoding.length
    plans: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for method, values in scores.items():
        order = erasure_order(values, special)
        counts = removal_counts(order.size, bins)
        dropped = [row_of(_erased_ids(encoding, order[:c], removal, blank)) for c in counts]
        kept = [row_of(_erased_ids(encoding, order[c:], removal, blank)) for c in counts]
        plans[method] = (counts, dropped, kept)
    probabilities = model.predict_batch(items, batch_size=batch_size).double()[:, target].numpy()
    base = float(probabilities[0])
    curves = {}
    for method, (counts, dropped, kept) in plans.items():
        if not counts or counts[-1] == 0:
            nan = np.full(len(bins), np.nan)
            curves[method] = AOPCCurve(bins, tuple(counts), nan, nan.copy(), base)
            continue
        curves[method] = AOPCCurve(
            bins=bins,
            counts=tuple(counts),
            comprehensiveness=base - probabilities[dropped],
            sufficiency=base - probabilities[kept],
            probability=base,
        )
    return curves


def _key(feature: Mapping[str, Sequence[int]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((name, tuple(values)) for name, values in sorted(feature.items()))


def aopc(
    model: Model | nn.Module,
    inputs: Any,
    scores: Mapping[str, Any] | torch.Tensor,
    *,
    target: int | None = None,
    bins: Sequence[float] = DEFAULT_BINS,
    removal: Removal = "delete",
    batch_size: int = 32,
) -> dict[str, AOPCCurve]:
    """Comprehensiveness and sufficiency curves of token scores on one input (ERASER, DeYoung et al. 2020).

    For each bin k, the ``ceil(k · m)`` highest-scoring of the m non-special tokens are removed
    (comprehensiveness) or are the only ones kept (sufficiency); [CLS]/[SEP]/BOS always stay. Ties are broken
    by position (earlier first). The AOPC of a method is the curve's mean over the bins.

    Args:
        model: an :class:`attrflow.Model` with a tokenizer.
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        scores: ``[n]`` token scores, or a mapping from method names to ``[n]`` scores.
        target: the class y whose probability is measured; default the predicted class.
        bins: the fractions k, each in (0, 1]; default 10%, 20%, …, 100%.
        removal: ``"delete"`` the tokens (ERASER; the input gets shorter), or replace them in place by the
            ``"unk"`` or ``"mask"`` token.
        batch_size: rows per forward pass (speed only).

    Returns:
        ``{method: AOPCCurve}`` (the key ``"scores"`` when a single tensor was given).
    """
    from attrflow.methods.gradients import resolve_target

    wrapped = model if isinstance(model, Model) else load_model(model)
    _choice("removal", removal, Removal)
    chosen_bins = _check_bins(bins)
    encoding = wrapped.prepare(inputs)
    named = {"scores": scores} if isinstance(scores, torch.Tensor) else dict(scores)
    for name, values in named.items():
        if _vector(values).size != encoding.length:
            raise InvalidInputError(f"{name}: got {_vector(values).size} scores for {encoding.length} tokens")
    with torch.no_grad():
        predicted = int(wrapped.run(encoding).argmax(dim=-1)[0])
    y = resolve_target(wrapped, target, predicted)
    return _erasure_curves(wrapped, encoding, named, y, chosen_bins, removal, batch_size)


def _choice(name: str, value: object, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise InvalidInputError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


# ---------------------------------------------------------------------------------------------- per example
@dataclass(frozen=True)
class _Options:
    """Everything the per-example records depend on (the run's identity)."""

    methods: tuple[str, ...]
    references: tuple[str, ...]
    layers: tuple[int, ...] | Literal["all"]
    reduction: Reduction
    head_fusion: HeadFusion
    residual: bool
    target: TargetRule
    bins: tuple[float, ...]
    removal: Removal
    replacement: Replacement
    aopc_layer: int
    steps: int | Literal["auto"]
    rule: Rule
    ig_steps: int | Literal["auto"]

    @property
    def scored(self) -> tuple[str, ...]:
        """Every method computed: the evaluated ones, then the references not among them."""
        return self.methods + tuple(r for r in self.references if r not in self.methods)

    @property
    def layerwise(self) -> tuple[str, ...]:
        return tuple(m for m in self.scored if m in LAYERWISE_METHODS)

    @property
    def single(self) -> tuple[str, ...]:
        return tuple(m for m in self.scored if m not in LAYERWISE_METHODS)


def _as_text(example: Any) -> tuple[str | tuple[str, str], int | None]:
    """An example's model input (text or text pair) and gold label (None when unlabelled)."""
    if isinstance(example, str):
        return example, None
    if isinstance(example, Mapping):
        text, pair, label = example.get("text"), example.get("text_pair"), example.get("label")
    elif hasattr(example, "text"):
        text, pair, label = example.text, getattr(example, "text_pair", None), getattr(example, "label", None)
    else:
        raise InvalidInputError(
            f"cannot evaluate an example of type {type(example).__name__}: give strings, or objects/mappings with "
            "`text` (and optionally `text_pair`, `label`)"
        )
    if not isinstance(text, str):
        raise InvalidInputError(f"an example's text must be a string, got {type(text).__name__}")
    gold = None if label is None or isinstance(label, bool) or int(label) < 0 else int(label)
    return (text if pair is None else (text, str(pair))), gold


def _evaluate(model: Model, example: Any, options: _Options, layers: tuple[int, ...], batch_size: int) -> dict:
    """The record of one example: token scores of every method, erasure curves, completeness gaps."""
    from attrflow.methods.attribution import attribute
    from attrflow.methods.gradients import embedding_gradients

    inputs, gold = _as_text(example)
    encoding = model.prepare(inputs)
    n = encoding.length
    aopc_layer = options.aopc_layer % model.num_layers
    with torch.no_grad():
        session = Session(record=True)
        probabilities = torch.softmax(model.run(encoding, session).float(), dim=-1)[0]
    predicted = int(probabilities.argmax())
    use_label = options.target == "label" and gold is not None and gold < model.num_outputs
    target = gold if use_label and gold is not None else predicted
    positions = encoding.positions.to(model.device)
    attentions = torch.stack([r[0].index_select(-1, positions).index_select(-2, positions) for r in session.records])
    attentions = attentions.float().cpu()

    needed = tuple(sorted(set(layers) | {aopc_layer}))
    rows = [needed.index(layer) for layer in layers]
    per_layer: dict[str, torch.Tensor] = {}
    record: dict[str, Any] = {}
    for method in options.layerwise:
        if method == "attattr":
            result = attribute(model, encoding, target=target, steps=options.steps, rule=options.rule)
            all_layers = attattr_token_scores(result.attributions)
            per_layer[method] = all_layers
            record["completeness_gap.attattr"] = float(result.completeness_gap.abs().max())
        else:
            per_layer[method] = attention_token_scores(
                attentions,
                method=method,  # type: ignore[arg-type]
                layers=needed,
                position=encoding.output_position,
                reduction=options.reduction,
                head_fusion=options.head_fusion,
                residual=options.residual,
            )
    single: dict[str, torch.Tensor] = {}
    gradient_methods = {"gradient", "gradient_l2", "gradient_x_input", "integrated_gradients"} & set(options.single)
    if gradient_methods:
        steps = options.ig_steps if "integrated_gradients" in gradient_methods else 0
        grads = embedding_gradients(model, encoding, target=target, steps=steps, rule=options.rule)
        single["gradient"] = grads.gradient
        single["gradient_l2"] = grads.gradient_l2
        single["gradient_x_input"] = grads.gradient_x_input
        record["gradient_cancellation"] = grads.cancellation
        if grads.integrated_gradients is not None:
            single["integrated_gradients"] = grads.integrated_gradients
            record["completeness_gap.integrated_gradients"] = abs(grads.completeness_gap)
    if "blankout" in options.single:
        blanked = _blankout_probabilities(model, encoding, options.replacement, batch_size)
        single["blankout"] = (blanked[0, target] - blanked[1:, target]).abs().float()

    # the vectors AOPC ranks: attention methods at aopc_layer, attattr summed over layers
    ranked: dict[str, torch.Tensor] = {}
    for method in options.scored:
        if method == "attattr":
            ranked[method] = per_layer[method].double().sum(dim=0).float()
        elif method in per_layer:
            ranked[method] = per_layer[method][needed.index(aopc_layer)]
        else:
            ranked[method] = single[method]
    curves = _erasure_curves(model, encoding, ranked, target, options.bins, options.removal, batch_size)

    record.update(
        {
            "label": -1 if gold is None else gold,
            "target": target,
            "predicted": predicted,
            "probability": float(probabilities[target]),
            "tokens": list(encoding.tokens),
            "special_mask": [bool(s) for s in (encoding.special_mask or [False] * n)],
        }
    )
    record["layers"] = list(layers)
    for method in options.layerwise:
        # attattr holds every layer, the attention methods the `needed` ones
        values = per_layer[method][list(layers)] if method == "attattr" else per_layer[method][rows]
        record[f"scores.{method}"] = values.tolist()
    for method in options.single:
        record[f"scores.{method}"] = single[method].tolist()
    for method, curve in curves.items():
        record[f"comprehensiveness.{method}"] = curve.comprehensiveness.tolist()
        record[f"sufficiency.{method}"] = curve.sufficiency.tolist()
    return record


class FaithfulnessTask(DatasetTask):
    """The per-example work of :func:`faithfulness`, for :func:`attrflow.runner.run_dataset`.

    Built from plain settings (a model name or path, picklable for the Ray engine) or from a live
    :class:`attrflow.Model` (local engine only). The model is loaded in :meth:`setup`.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Model,
        options: _Options,
        *,
        device: str | None = None,
        score_batch_size: int = 64,
    ) -> None:
        self._source = model
        self._device = device
        self.options = options
        self.score_batch_size = score_batch_size
        self._model: Model | None = model if isinstance(model, Model) else None
        self._warned = False

    @property
    def name(self) -> str:
        return "faithfulness"

    @property
    def model_name(self) -> str:
        source = self._source
        return source.name if isinstance(source, Model) else str(source)

    def settings(self) -> dict[str, Any]:
        settings = asdict(self.options)
        settings["layers"] = "all" if self.options.layers == "all" else list(self.options.layers)
        return {"version": _TASK_VERSION, "model": self.model_name, **settings}

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        fields = [
            pa.field("label", pa.int64()),
            pa.field("target", pa.int64()),
            pa.field("predicted", pa.int64()),
            pa.field("probability", pa.float64()),
            pa.field("layers", pa.list_(pa.int64())),
            pa.field("tokens", pa.list_(pa.string())),
            pa.field("special_mask", pa.list_(pa.bool_())),
        ]
        for method in self.options.layerwise:
            fields.append(pa.field(f"scores.{method}", pa.list_(pa.list_(pa.float32()))))
        for method in self.options.single:
            fields.append(pa.field(f"scores.{method}", pa.list_(pa.float32())))
        for method in self.options.scored:
            fields.append(pa.field(f"comprehensiveness.{method}", pa.list_(pa.float64())))
            fields.append(pa.field(f"sufficiency.{method}", pa.list_(pa.float64())))
        for method in ("attattr", "integrated_gradients"):
            if method in self.options.scored:
                fields.append(pa.field(f"completeness_gap.{method}", pa.float64()))
        if {"gradient", "gradient_l2", "gradient_x_input", "integrated_gradients"} & set(self.options.scored):
            fields.append(pa.field("gradient_cancellation", pa.float64()))
        return pa.schema(fields)

    def setup(self) -> None:
        if self._model is None:
            self._model = load_model(self._source, device=self._device)  # type: ignore[arg-type]
        self._layers = self._resolve_layers(self._model)

    def _resolve_layers(self, model: Model) -> tuple[int, ...]:
        layers = self.options.layers
        resolved = resolve_layers(None if layers == "all" else list(layers), model.num_layers)
        resolve_layers(self.options.aopc_layer, model.num_layers)
        return resolved

    def process(self, batch: Batch) -> list[dict[str, Any]]:
        assert self._model is not None, "setup() was not called"
        return [self._evaluate(example) for _, example in batch]

    def _evaluate(self, example: Any) -> dict[str, Any]:
        from attrflow.methods.gradients import CANCELLATION_THRESHOLD, warn_cancellation

        assert self._model is not None
        record = _evaluate(self._model, example, self.options, self._layers, self.score_batch_size)
        noise = "gradient" in self.options.scored and record["gradient_cancellation"] < CANCELLATION_THRESHOLD
        if noise and not self._warned:
            # once per worker: the registry that would deduplicate warnings is reset by every catch_warnings()
            self._warned = True
            warn_cancellation()
        return record

    def teardown(self) -> None:
        if not isinstance(self._source, Model):
            self._model = None


# ---------------------------------------------------------------------------------------------- datasets
class _Subset(Sequence[Any]):
    """Some examples of a dataset, keeping their ids (positions in the dataset, or its ``example_ids``)."""

    def __init__(self, dataset: Any, positions: Sequence[int]) -> None:
        self._dataset = dataset
        self._positions = [int(p) for p in positions]
        given = getattr(dataset, "example_ids", None)
        ids = list(given) if given is not None else range(len(dataset))
        self.example_ids = [int(ids[p]) for p in self._positions]

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        return self._dataset[self._positions[index]]


def _select(dataset: Any, examples: int | Sequence[int] | None) -> Any:
    if isinstance(dataset, (str, bytes)) or not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise InvalidInputError(
            "dataset must be a sequence of examples (e.g. attrflow.load_dataset(...), or a list of texts)"
        )
    size = len(dataset)
    if examples is None:
        positions: Sequence[int] = range(size)
    elif isinstance(examples, bool):
        raise InvalidInputError(f"examples must be a number or a list of positions, got {examples!r}")
    elif isinstance(examples, (int, np.integer)):
        if examples < 1:
            raise InvalidInputError(f"examples must be >= 1, got {examples}")
        positions = range(min(int(examples), size))
    else:
        positions = [int(p) for p in examples]
        bad = [p for p in positions if not 0 <= p < size]
        if bad:
            raise InvalidInputError(f"example positions {bad[:5]} are outside the dataset of {size} examples")
    if not len(positions):
        raise InvalidInputError("no examples to evaluate: the dataset is empty")
    return _Subset(dataset, positions)


def _options(
    methods: Sequence[str],
    references: Sequence[str],
    layers: int | Sequence[int] | Literal["all"],
    reduction: Reduction,
    head_fusion: HeadFusion,
    residual: bool,
    target: TargetRule,
    bins: Sequence[float],
    removal: Removal,
    replacement: Replacement,
    aopc_layer: int,
    steps: int | Literal["auto"],
    rule: Rule,
    ig_steps: int | Literal["auto"] | None = None,
) -> _Options:
    chosen = tuple(dict.fromkeys(methods))
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise InvalidInputError(f"methods must be a non-empty selection of {', '.join(METHODS)}; got {list(methods)}")
    refs = tuple(dict.fromkeys(references))
    if not refs or any(r not in GRADIENT_METHODS for r in refs):
        raise InvalidInputError(
            f"references must be a non-empty selection of {', '.join(GRADIENT_METHODS)}; got {list(references)}"
        )
    from attrflow.analysis.token_scores import REDUCTIONS

    if reduction not in REDUCTIONS:
        raise InvalidInputError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    _choice("head_fusion", head_fusion, HeadFusion)
    _choice("target", target, TargetRule)
    _choice("removal", removal, Removal)
    _choice("replacement", replacement, Replacement)
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    chosen_steps = check_steps(steps)
    try:
        chosen_ig_steps = chosen_steps if ig_steps is None else check_steps(ig_steps)
    except InvalidInputError as exc:
        raise InvalidInputError(f"ig_steps: {exc}") from None
    if isinstance(aopc_layer, bool) or not isinstance(aopc_layer, (int, np.integer)):
        raise InvalidInputError(f"aopc_layer must be an integer, got {aopc_layer!r}")
    if layers == "all":
        chosen_layers: tuple[int, ...] | Literal["all"] = "all"
    elif isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        chosen_layers = (int(layers),)
    elif isinstance(layers, Sequence) and not isinstance(layers, str) and layers:
        chosen_layers = tuple(int(layer) for layer in layers)
    else:
        raise InvalidInputError(f"layers must be 'all', a layer index or a list of them; got {layers!r}")
    return _Options(
        methods=chosen,
        references=refs,
        layers=chosen_layers,
        reduction=reduction,
        head_fusion=head_fusion,
        residual=bool(residual),
        target=target,
        bins=_check_bins(bins),
        removal=removal,
        replacement=replacement,
        aopc_layer=int(aopc_layer),
        steps=chosen_steps,
        ig_steps=chosen_ig_steps,
        rule=rule,
    )


def faithfulness(
    model: str | os.PathLike[str] | Model | nn.Module,
    dataset: Any,
    *,
    methods: Sequence[str] = METHODS,
    references: Sequence[str] = REFERENCES,
    layers: int | Sequence[int] | Literal["all"] = "all",
    examples: int | Sequence[int] | None = None,
    reduction: Reduction = "cls",
    head_fusion: HeadFusion = "mean",
    residual: bool = True,
    target: TargetRule = "label",
    bins: Sequence[float] = DEFAULT_BINS,
    removal: Removal = "delete",
    replacement: Replacement = "unk",
    aopc_layer: int = -1,
    exclude_special: bool = False,
    nan_policy: NanPolicy = "omit",
    magnitude: bool = True,
    steps: int | Literal["auto"] = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    ig_steps: int | Literal["auto"] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    engine: Engine = "local",
    address: str | None = None,
    num_workers: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
    device: str | None = None,
) -> FaithfulnessReport:
    """Evaluate token-scoring methods against ground-truth importance, per layer, and by AOPC.

    The protocol of Abnar & Zuidema (ACL 2020, §5, Tables 1–3): for each example and layer, the Spearman
    correlation between an attention-based method's scores and a reference's (blank-out, input gradient), then
    mean ± std over examples; plus ERASER's AOPC comprehensiveness and sufficiency for every method
    (DeYoung et al., ACL 2020). Methods:

    - layer-wise: ``attention`` (raw), ``rollout``, ``flow`` (at each layer, the explained position's row or the
      ``reduction`` over rows), ``attattr`` (self-attention attribution flowing out of each token, summed over
      heads and query rows; see :mod:`attrflow.analysis.token_scores`);
    - single: ``blankout`` (UNK in place, ``|Δp_y|``), ``gradient`` (``|Σ_d ∂p_y/∂e|``), ``gradient_x_input``,
      ``integrated_gradients`` (signed, zero-embedding baseline, the AttAttr quadrature).

    For AOPC the layer-wise attention methods are read at ``aopc_layer`` (default: the last layer) and
    ``attattr`` is summed over all layers.

    Args:
        model: a built-in name or checkpoint directory (any engine), or a loaded :class:`attrflow.Model` /
            transformers model (local engine only).
        dataset: a sequence of examples with ``text`` (and optionally ``text_pair``, ``label``), e.g. from
            ``attrflow.load_dataset``, or of plain strings.
        methods: the methods to evaluate (default: all eight).
        references: the ground truths of the Spearman tables: ``"blankout"`` and/or ``"gradient"`` (or another
            single method).
        layers: ``"all"`` or layer indices (0-based; the paper's L1 is 0) of the Spearman tables.
        examples: the first N examples, or a list of positions; default all.
        reduction: ``"cls"`` (the explained position's row, the paper), ``"max"`` or ``"mean"`` over query rows.
        head_fusion: how attention heads are fused (``"mean"``, the paper).
        residual: add the identity to each layer's graph for rollout and flow (the paper).
        target: the class y: the gold ``"label"`` (the paper; the prediction for unlabelled examples) or the
            ``"predicted"`` class.
        bins: the AOPC fractions k (default 10%, …, 100%).
        removal: how AOPC removes tokens: ``"delete"`` (ERASER), or replace by ``"unk"`` / ``"mask"``.
        replacement: the token that blank-out puts in place: ``"unk"`` (the paper) or ``"mask"``.
        aopc_layer: the layer at which the attention methods are ranked for AOPC.
        exclude_special: compute Spearman over the non-special tokens only (default: all n tokens, as in the
            paper). Does not change what is computed per example, so it can differ between reports of one run.
        nan_policy: an undefined correlation (a constant score vector): ``"omit"`` it from mean and std
            (default), or count it as ``"zero"`` (the official code). Also a report-time choice.
        magnitude: Spearman of the signed methods (``attattr``, ``integrated_gradients``) on their magnitudes
            ``|s|``, like the references (default); False uses the signed scores. A report-time choice.
        steps, rule: quadrature of ``attattr`` and ``integrated_gradients`` (shared with
            :func:`attrflow.attribute`); ``"auto"`` (default) refines each until its completeness gap is
            below 1e-3 (AttAttr per layer up to 32 points, integrated gradients up to 128).
        ig_steps: quadrature points of ``integrated_gradients`` when they should differ from ``steps``: the
            path from the zero embedding can cross a sharp transition (measured on the agreement model with 8
            Gauss–Legendre points: median completeness gap 0.03, 0.9 at the 90th percentile).
        out_dir: the resumable run directory (Parquet, one record per example); default a temporary one.
        engine, address, num_workers, batch_size, progress: as for :func:`attrflow.runner.run_dataset`.
        device: torch device of the model when it is loaded from a name or path.

    Returns:
        A :class:`~attrflow.analysis.faithfulness_report.FaithfulnessReport`.
    """
    from attrflow.runner import run_dataset

    options = _options(
        methods,
        references,
        layers,
        reduction,
        head_fusion,
        residual,
        target,
        bins,
        removal,
        replacement,
        aopc_layer,
        steps,
        rule,
        ig_steps,
    )
    if isinstance(model, nn.Module):
        model = load_model(model)
    if isinstance(model, Model) and engine != "local":
        raise InvalidInputError(
            "engine='ray' needs the model as a built-in name or a checkpoint directory (each worker loads its own "
            "replica); a loaded model works with engine='local'"
        )
    if not isinstance(model, (Model, str, os.PathLike)):
        raise InvalidInputError(f"model must be a name, a path or a loaded model, got {type(model).__name__}")
    subset = _select(dataset, examples)
    task = FaithfulnessTask(model, options, device=device)
    run_kwargs = {
        "engine": engine,
        "address": address,
        "num_workers": num_workers,
        "examples_per_batch": batch_size,
        "progress": progress,
    }
    _choice("nan_policy", nan_policy, NanPolicy)
    report_options = {"exclude_special": bool(exclude_special), "nan_policy": nan_policy, "magnitude": magnitude}
    name = _dataset_name(dataset)
    if out_dir is not None:
        run = run_dataset(task, subset, out_dir=out_dir, **run_kwargs)  # type: ignore[arg-type]
        return FaithfulnessReport.from_run(run, dataset=name, **report_options)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="attrflow-faithfulness-") as tmp:
        run = run_dataset(task, subset, out_dir=Path(tmp) / "run", **run_kwargs)  # type: ignore[arg-type]
        return FaithfulnessReport.from_run(run, dataset=name, **report_options)  # type: ignore[arg-type]


def _dataset_name(dataset: Any) -> str | None:
    name = getattr(dataset, "name", None)
    split = getattr(dataset, "split", None)
    if not isinstance(name, str):
        return None
    return f"{name}:{split}" if isinstance(split, str) else name


def quick_faithfulness(
    model: Model | nn.Module | str,
    dataset: Any,
    *,
    examples: int = 16,
    progress: bool = False,
) -> FaithfulnessReport:
    """A small, fast evaluation for demos: raw attention, rollout and flow against blank-out and the gradient's
    L2 norm (Spearman per layer), with AOPC for those and gradient × input, on the first ``examples`` examples.
    No quadrature, so a few seconds on a small model; print ``report.summary()``.

    The L2 norm replaces the paper's summed gradient, which is rounding noise for LayerNorm models (see
    :mod:`attrflow.methods.gradients`)."""
    return faithfulness(
        model,
        dataset,
        methods=QUICK_METHODS,
        references=("blankout", "gradient_l2"),
        examples=examples,
        progress=progress,
    )
