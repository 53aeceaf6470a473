"""Faithfulness of every registered token-scoring method over a dataset: the protocol of Abnar & Zuidema (ACL 2020,
§5: Spearman with blank-out and gradients, per layer) and ERASER's AOPC.

The per-example work is one pure function, :func:`evaluate_example`: every method computes from one shared
:class:`~attrflow.methods.context.ExplainContext` (the attention is recorded once, the attribution and the
gradients run once), then every method's erasure variants run in one batched call. :class:`FaithfulnessTask` wraps
it for the dataset runner (progress bar, resumable Parquet run directory, local or Ray engine), and
:func:`faithfulness` aggregates the run into a :class:`~attrflow.analysis.faithfulness.report.FaithfulnessReport`.
No method is named here: methods, their kinds and their options come from the registry.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from torch import nn

from attrflow.analysis.faithfulness.metrics import DEFAULT_BINS, Removal, check_bins, erasure_curves
from attrflow.analysis.faithfulness.report import FaithfulnessReport, NanPolicy
from attrflow.data import as_example, sample
from attrflow.errors import InvalidInputError
from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, get_method, method_names
from attrflow.models import Model, load_model
from attrflow.results import TokenScores
from attrflow.runner import Batch, DatasetTask, RunOptions, run_dataset
from attrflow.validation import Selection, TargetRule, check_choice, check_int, resolve_layers, target_rule

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "QUICK_METHODS",
    "REFERENCES",
    "FaithfulnessOptions",
    "FaithfulnessTask",
    "compute_methods",
    "dataset_name",
    "evaluate_example",
    "example_context",
    "faithfulness",
    "method_plan",
    "quick_faithfulness",
    "ranked_scores",
    "select_examples",
    "shared_options",
]

# blank-out is the paper's ground truth; the gradient's L2 norm replaces its summed gradient, which is rounding
# noise for LayerNorm models (the paper's 'gradient' stays available by name)
REFERENCES: tuple[str, ...] = ("blankout", "gradient_l2")
# no quadrature: a few seconds on a small model, for `attrflow demo`
QUICK_METHODS: tuple[str, ...] = ("attention", "rollout", "flow", "gradient_x_input")
# the records depend on these; bump when the per-example computation or its columns change
_TASK_VERSION = 2


@dataclass(frozen=True)
class FaithfulnessOptions:
    """Everything the per-example records depend on (the run's identity).

    Attributes:
        methods: the evaluated methods (registered names).
        references: the ground truths of the Spearman tables (single-vector methods).
        layers: the layers of the Spearman tables, or ``"all"``.
        target: ``"label"`` (gold; the prediction for unlabelled examples) or ``"predicted"``.
        bins, removal, aopc_layer: the AOPC protocol; per-layer methods are ranked at ``aopc_layer`` (or summed over
            layers when their summary is a sum, like AttAttr).
        options: method options shared by every method that has them (``steps``, ``head_fusion``, ...).
        method_options: options for one method only, by name.
        batch_size: rows per forward pass for the erasure variants (speed only).
    """

    methods: tuple[str, ...]
    references: tuple[str, ...]
    layers: tuple[int, ...] | Literal["all"] = "all"
    target: TargetRule = "label"
    bins: tuple[float, ...] = DEFAULT_BINS
    removal: Removal = "delete"
    aopc_layer: int = -1
    options: Mapping[str, Any] = field(default_factory=dict)
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    batch_size: int = 64

    @property
    def scored(self) -> tuple[str, ...]:
        """Every method computed: the evaluated ones, then the references not among them."""
        return self.methods + tuple(r for r in self.references if r not in self.methods)

    def method(self, name: str) -> Method:
        """The registered method."""
        return get_method(name)

    def options_for(self, name: str) -> dict[str, Any]:
        """The options one method runs with: the shared ones it has, then its own."""
        method = self.method(name)
        return {**method.select_options(self.options), **self.method_options.get(name, {})}

    def settings(self) -> dict[str, Any]:
        """JSON-ready identity (what run.json records)."""
        return {
            "methods": list(self.methods),
            "references": list(self.references),
            "layers": self.layers if self.layers == "all" else list(self.layers),
            "target": self.target,
            "bins": list(self.bins),
            "removal": self.removal,
            "aopc_layer": self.aopc_layer,
            "options": {k: _plain(v) for k, v in sorted(self.options.items())},
            "method_options": {m: {k: _plain(v) for k, v in sorted(o.items())} for m, o in self.method_options.items()},
            "per_layer": [m for m in self.scored if self.method(m).per_layer],
            "signed": [m for m in self.scored if self.method(m).signed],
            "reports": {m: list(self.method(m).reports) for m in self.scored if self.method(m).reports},
        }


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


# ---------------------------------------------------------------------------------------------- one example
def ranked_scores(scores: TokenScores, aopc_layer: int, num_layers: int) -> Any:
    """The one vector a method is judged by: its overall scores, or for cumulative per-layer methods (rollout,
    flow, raw attention) the layer ``aopc_layer`` (the overall scores at the default, the last layer)."""
    if not scores.per_layer or scores.summary == "sum":
        return scores.overall
    return scores.at(aopc_layer % num_layers)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # per-example warnings (e.g. gradient cancellation) are summarised once in the report's notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def example_context(model: Model, example: Any, target: TargetRule) -> tuple[ExplainContext, int | None]:
    """The shared context of one example and its gold label (None when unlabelled).

    ``target="label"`` explains the gold class (the prediction for unlabelled examples or labels the model does
    not have); ``"predicted"`` the prediction.
    """
    item = as_example(example)
    gold = item.label if item.label >= 0 else None
    inputs = item.text if item.text_pair is None else (item.text, item.text_pair)
    use_label = target == "label" and gold is not None and gold < model.num_outputs
    return ExplainContext(model, inputs, target=gold if use_label else None), gold


def method_plan(
    model: Model,
    names: Sequence[str],
    options_for: Callable[[str], dict[str, Any]],
    *,
    table_layers: Sequence[int],
    aopc_layer: int,
) -> dict[str, dict[str, Any]]:
    """Each method's options for one example: its own, plus for per-layer methods the layers the tables and the
    ranking need (all layers for those whose layers add up)."""
    plan: dict[str, dict[str, Any]] = {}
    for name in names:
        method = get_method(name)
        extra = options_for(name)
        if method.per_layer and "layers" in method.options():
            wanted = None if method.summary == "sum" else sorted(set(table_layers) | {aopc_layer % model.num_layers})
            extra = {"layers": wanted, **extra}
        plan[name] = extra
    return plan


def compute_methods(context: ExplainContext, plan: Mapping[str, Mapping[str, Any]]) -> dict[str, TokenScores]:
    """Every planned method's scores from one shared context: each announces its shared work first (so that work
    runs once, in the form the most demanding method needs), then each computes."""
    for name, extra in plan.items():
        get_method(name).prepare(context, **extra)
    with _quiet():
        return {name: get_method(name).compute(context, **extra) for name, extra in plan.items()}


def evaluate_example(model: Model, example: Any, options: FaithfulnessOptions) -> dict[str, Any]:
    """The record of one example: every method's token scores, erasure curves and reported numbers.

    A pure function of the model, the example and the options (what :class:`FaithfulnessTask` wraps).
    """
    context, gold = example_context(model, example, options.target)
    table_layers = resolve_layers(None if options.layers == "all" else list(options.layers), model.num_layers)
    aopc_layer = options.aopc_layer % model.num_layers
    plan = method_plan(model, options.scored, options.options_for, table_layers=table_layers, aopc_layer=aopc_layer)
    results = compute_methods(context, plan)
    ranked = {name: ranked_scores(scores, aopc_layer, model.num_layers) for name, scores in results.items()}
    curves = erasure_curves(
        model, context.encoding, ranked, context.target, options.bins, options.removal, options.batch_size
    )
    record: dict[str, Any] = {
        "label": -1 if gold is None else gold,
        "target": context.target,
        "predicted": context.predicted,
        "probability": float(context.probabilities[context.target]),
        "tokens": list(context.tokens),
        "special_mask": [bool(s) for s in (context.encoding.special_mask or [False] * context.n)],
        "layers": list(table_layers),
    }
    for name, scores in results.items():
        if scores.per_layer:
            record[f"scores.{name}"] = [scores.at(layer).tolist() for layer in table_layers]
        else:
            record[f"scores.{name}"] = scores.scores.tolist()
        for key, value in options.method(name).report_values(scores).items():
            record[f"report.{name}.{key}"] = value
    for name, curve in curves.items():
        record[f"comprehensiveness.{name}"] = curve.comprehensiveness.tolist()
        record[f"sufficiency.{name}"] = curve.sufficiency.tolist()
    return record


class FaithfulnessTask(DatasetTask):
    """The per-example work of :func:`faithfulness`, for :func:`attrflow.runner.run_dataset`.

    Built from plain settings (a model name or path, picklable for the Ray engine) or from a live
    :class:`attrflow.Model` (local engine only). The model is loaded in :meth:`setup`.
    """

    def __init__(
        self, model: str | os.PathLike[str] | Model, options: FaithfulnessOptions, *, device: str | None = None
    ) -> None:
        self._source = model
        self._device = device
        self.options = options
        self._model: Model | None = model if isinstance(model, Model) else None

    @property
    def name(self) -> str:
        return "faithfulness"

    @property
    def model_name(self) -> str:
        """The model's name (built-in name, path, or the loaded model's name)."""
        source = self._source
        return source.name if isinstance(source, Model) else str(source)

    def settings(self) -> dict[str, Any]:
        return {"version": _TASK_VERSION, "model": self.model_name, **self.options.settings()}

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
        for name in self.options.scored:
            method = self.options.method(name)
            kind = pa.list_(pa.list_(pa.float32())) if method.per_layer else pa.list_(pa.float32())
            fields.append(pa.field(f"scores.{name}", kind))
            fields.extend(pa.field(f"report.{name}.{key}", pa.float64()) for key in method.reports)
        for name in self.options.scored:
            fields.append(pa.field(f"comprehensiveness.{name}", pa.list_(pa.float64())))
            fields.append(pa.field(f"sufficiency.{name}", pa.list_(pa.float64())))
        return pa.schema(fields)

    def setup(self) -> None:
        if self._model is None:
            self._model = load_model(self._source, device=self._device)  # type: ignore[arg-type]
        _check_model(self._model, self.options)

    def process(self, batch: Batch) -> list[dict[str, Any]]:
        assert self._model is not None, "setup() was not called"
        return [evaluate_example(self._model, example, self.options) for _, example in batch]

    def teardown(self) -> None:
        if not isinstance(self._source, Model):
            self._model = None


def _check_model(model: Model, options: FaithfulnessOptions) -> None:
    """Refuse a model some chosen method cannot explain, or layers it does not have (before any example runs)."""
    for name in options.scored:
        options.method(name).check(model)
    resolve_layers(None if options.layers == "all" else list(options.layers), model.num_layers)
    resolve_layers(options.aopc_layer, model.num_layers)


# ---------------------------------------------------------------------------------------------- options
def _methods(methods: Sequence[str] | str | None, model: Model | None) -> tuple[str, ...]:
    if methods is None or methods == "all":
        # the floors (random, position) are the leaderboard's; name them to evaluate them here
        names = tuple(n for n in method_names() if not get_method(n).baseline)
        if model is not None:
            names = tuple(n for n in names if get_method(n).unsupported(model) is None)
        return names
    items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    chosen = tuple(dict.fromkeys(get_method(m).name for m in items if m))
    if not chosen:
        raise InvalidInputError(f"methods is empty; choose from {', '.join(method_names())}")
    return chosen


def _references(references: Sequence[str] | str) -> tuple[str, ...]:
    items = [r.strip() for r in references.split(",")] if isinstance(references, str) else list(references)
    chosen = tuple(dict.fromkeys(get_method(r).name for r in items if r))
    if not chosen:
        raise InvalidInputError("references is empty; name at least one single-vector method, e.g. blankout")
    per_layer = [r for r in chosen if get_method(r).per_layer]
    if per_layer:
        raise InvalidInputError(
            f"references must give one score vector per input; {', '.join(per_layer)} give one per layer"
        )
    return chosen


def _layers(layers: int | Sequence[int] | Literal["all"]) -> tuple[int, ...] | Literal["all"]:
    if layers == "all":
        return "all"
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        return (int(layers),)
    if isinstance(layers, Sequence) and not isinstance(layers, str) and layers:
        return tuple(check_int("layer", layer) for layer in layers)
    raise InvalidInputError(f"layers must be 'all', a layer index or a list of them; got {layers!r}")


def shared_options(options: Mapping[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """Shared method options; each must belong to at least one chosen method (typos are refused)."""
    known: set[str] = set()
    for name in methods:
        known |= set(get_method(name).options())
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInputError(
            f"no chosen method has the option {', '.join(map(repr, unknown))}; their options: {', '.join(sorted(known))}"
        )
    return dict(options)


def _run_options(run: RunOptions | None, legacy: dict[str, Any]) -> RunOptions:
    names = {"out_dir", "engine", "address", "num_workers", "progress", "examples_per_batch"}
    old = {k: legacy.pop(k) for k in list(legacy) if k in names}
    if legacy:
        raise InvalidInputError(f"faithfulness() got unexpected arguments: {', '.join(sorted(legacy))}")
    if old:
        warnings.warn(
            f"faithfulness({', '.join(f'{k}=...' for k in sorted(old))}) is deprecated: pass "
            "run=attrflow.RunOptions(...) (the old keywords stop working in the next release)",
            DeprecationWarning,
            stacklevel=3,
        )
    if run is None:
        return RunOptions(**old)
    if old:
        raise InvalidInputError(f"give the run options in run=RunOptions(...), not also as {', '.join(sorted(old))}")
    return run


def dataset_name(dataset: Any) -> str | None:
    """``name:split`` of a dataset that has them (None otherwise)."""
    name = getattr(dataset, "name", None)
    split = getattr(dataset, "split", None)
    if not isinstance(name, str):
        return None
    return f"{name}:{split}" if isinstance(split, str) else name


# ---------------------------------------------------------------------------------------------- the entry points
def faithfulness(
    model: str | os.PathLike[str] | Model | nn.Module,
    dataset: Any,
    *,
    methods: Sequence[str] | str | None = None,
    references: Sequence[str] | str = REFERENCES,
    layers: int | Sequence[int] | Literal["all"] = "all",
    examples: int | Sequence[int] | None = None,
    selection: Selection = "random",
    seed: int = 0,
    target: TargetRule = "label",
    bins: Sequence[float] = DEFAULT_BINS,
    removal: Removal = "delete",
    aopc_layer: int = -1,
    exclude_special: bool = False,
    nan_policy: NanPolicy = "omit",
    magnitude: bool = True,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    run: RunOptions | None = None,
    device: str | None = None,
    batch_size: int = 64,
    **options: Any,
) -> FaithfulnessReport:
    """Evaluate registered token-scoring methods against ground-truth importance, per layer, and by AOPC.

    The protocol of Abnar & Zuidema (ACL 2020, §5, Tables 1–3): for each example and layer, the Spearman
    correlation between a method's scores and a reference's (blank-out, the input gradient), then mean ± std over
    examples; plus ERASER's AOPC comprehensiveness and sufficiency for every method (DeYoung et al., ACL 2020).
    Per-layer methods get a Spearman row per layer; single-vector methods one value per reference. For AOPC,
    per-layer methods are ranked at ``aopc_layer`` (default: the last) or, when their layers add up (AttAttr),
    summed over layers.

    Args:
        model: a built-in name or checkpoint directory (any engine), or a loaded :class:`attrflow.Model` /
            transformers model (local engine only).
        dataset: a sequence of examples with ``text`` (and optionally ``text_pair``, ``label``), e.g. from
            ``attrflow.load_dataset``, or of plain strings.
        methods: registered method names (a list or a comma-separated string), or None / ``"all"`` for every
            registered method that can explain the model (:func:`attrflow.list_methods`).
        references: the ground truths of the Spearman tables (single-vector methods): default ``blankout`` (the
            paper's) and ``gradient_l2`` (the gradient's norm; the paper's summed ``gradient`` is rounding noise
            for LayerNorm models and stays available by name).
        layers: ``"all"`` or layer indices (0-based; the paper's L1 is 0) of the Spearman tables.
        examples: how many examples (drawn by ``selection`` with ``seed``), or a list of positions; default all.
        selection: ``"random"`` (default; the built-in splits are sorted by label) or ``"first"``.
        seed: the seed of the random selection.
        target: the class y: the gold ``"label"`` (the paper; the prediction for unlabelled examples) or the
            ``"predicted"`` class.
        bins: the AOPC fractions k (default 10%, …, 100%).
        removal: how AOPC removes tokens: ``"delete"`` (ERASER), or replace by ``"unk"`` / ``"mask"``.
        aopc_layer: the layer at which cumulative per-layer methods are ranked for AOPC.
        exclude_special: Spearman over the non-special tokens only (a report-time choice).
        nan_policy: an undefined correlation (a constant score vector): ``"omit"`` it (default) or count it as
            ``"zero"`` (the official code). A report-time choice.
        magnitude: Spearman of the signed methods on their magnitudes ``|s|``, like the references (default).
        method_options: options for one method only, e.g. ``{"integrated_gradients": {"steps": 32}}``.
        run: where and how the dataset runner works (:class:`attrflow.RunOptions`: ``out_dir`` for a resumable
            run directory, ``engine="ray"``, progress). The old keyword arguments ``out_dir``, ``engine``,
            ``address``, ``num_workers``, ``progress`` still work.
        device: torch device of the model when it is loaded from a name or path.
        batch_size: rows per forward pass of the erasure variants (speed only).
        **options: method options shared by every chosen method that has them, e.g. ``steps=4``,
            ``rule="gauss-legendre"``, ``reduction="max"``, ``head_fusion="max"``, ``residual=False``,
            ``replacement="mask"`` (``attrflow methods`` lists each method's options).

    Returns:
        A :class:`~attrflow.analysis.faithfulness.report.FaithfulnessReport`.
    """
    legacy = {k: options.pop(k) for k in list(options) if k in _LEGACY}
    legacy_method = {k: legacy.pop(k) for k in ("ig_steps",) if k in legacy}
    if isinstance(model, nn.Module):
        model = load_model(model)
    run_options = _run_options(run, legacy)
    if isinstance(model, Model) and run_options.engine != "local":
        raise InvalidInputError(
            "engine='ray' needs the model as a built-in name or a checkpoint directory (each worker loads its own "
            "replica); a loaded model works with engine='local'"
        )
    if not isinstance(model, (Model, str, os.PathLike)):
        raise InvalidInputError(f"model must be a name, a path or a loaded model, got {type(model).__name__}")
    chosen = _methods(methods, model if isinstance(model, Model) else None)
    refs = _references(references)
    per_method = {get_method(m).name: dict(o) for m, o in (method_options or {}).items()}
    if legacy_method.get("ig_steps") is not None:
        warnings.warn(
            "faithfulness(ig_steps=...) is deprecated: pass method_options={'integrated_gradients': {'steps': ...}}",
            DeprecationWarning,
            stacklevel=2,
        )
        per_method.setdefault("integrated_gradients", {})["steps"] = legacy_method["ig_steps"]
    check_choice("nan_policy", nan_policy, NanPolicy)
    faith = FaithfulnessOptions(
        methods=chosen,
        references=refs,
        layers=_layers(layers),
        target=target_rule(target),
        bins=check_bins(bins),
        removal=check_choice("removal", removal, Removal),
        aopc_layer=check_int("aopc_layer", aopc_layer),
        options=shared_options(options, chosen + refs),
        method_options=per_method,
        batch_size=check_int("batch_size", batch_size, minimum=1),
    )
    for name in faith.scored:
        get_method(name).check_options(faith.options_for(name))
    if not isinstance(model, Model) and run_options.engine == "local":
        model = load_model(
            os.fspath(model), device=device
        )  # loaded once, here: its classes are checked against the data
    if isinstance(model, Model):
        model.check_dataset(dataset)
        _check_model(model, faith)
    subset = select_examples(dataset, examples, selection, seed)
    task = FaithfulnessTask(model, faith, device=device)
    report_options = {"exclude_special": bool(exclude_special), "nan_policy": nan_policy, "magnitude": magnitude}
    with contextlib.ExitStack() as stack:
        out_dir = run_options.out_dir
        if out_dir is None:
            out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="attrflow-faithfulness-"))) / "run"
        result = run_dataset(task, subset, out_dir=out_dir, **run_options.kwargs())
        return FaithfulnessReport.from_run(result, dataset=dataset_name(dataset), **report_options)  # type: ignore[arg-type]


_LEGACY = {
    "out_dir",
    "engine",
    "address",
    "num_workers",
    "progress",
    "examples_per_batch",
    "ig_steps",
}


def select_examples(dataset: Any, examples: int | Sequence[int] | None, selection: Selection, seed: int) -> Any:
    """The examples to evaluate: ``examples`` drawn by :func:`attrflow.data.sample`, or the given positions."""
    if isinstance(examples, (list, tuple, np.ndarray)):
        from attrflow.data import Sample

        size = len(dataset)
        positions = [int(p) for p in examples]
        bad = [p for p in positions if not 0 <= p < size]
        if bad:
            raise InvalidInputError(f"example positions {bad[:5]} are outside the dataset of {size} examples")
        if not positions:
            raise InvalidInputError("no examples to evaluate: the list of positions is empty")
        return Sample(dataset, positions)
    count = None if examples is None else check_int("examples", examples, minimum=1)
    return sample(dataset, count, selection=selection, seed=seed)


def quick_faithfulness(
    model: Model | nn.Module | str,
    dataset: Any,
    *,
    examples: int = 16,
    progress: bool = False,
) -> FaithfulnessReport:
    """A small, fast evaluation for demos: raw attention, rollout and flow against blank-out and the gradient's
    L2 norm (Spearman per layer), with AOPC for those and gradient × input, on ``examples`` examples drawn with
    seed 0. No quadrature, so a few seconds on a small model; print ``report.summary()``."""
    return faithfulness(
        model,
        dataset,
        methods=QUICK_METHODS,
        references=REFERENCES,
        examples=examples,
        run=RunOptions(progress=progress),
    )
