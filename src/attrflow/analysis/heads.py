"""Head importance (Hao et al., AAAI 2021, §4.1): which attention heads a classifier relies on, over a dataset.

Four importance scores per head h, each a ``[L, H]`` map:

- ``"attattr"`` (the paper): ``I_h = E_x[max_{i,j} Attr_h(A)_{ij}]``, the mean over examples of the largest
  self-attention attribution entry of the head (signed), F = the probability of the gold label by default, like
  the official ``prune_head_with_attr.py`` (which sums over 200 dev examples: the same ranking as the mean).
- ``"taylor"`` (Michel, Levy, Neubig, NeurIPS 2019, eq. 2): ``I_h = E_x |Σ_{i,j} A_h ⊙ ∂L/∂A_h|`` with L the
  cross-entropy loss of the target, followed by a per-layer L2 normalisation of the scores. The inner sum is the
  derivative of L with respect to a gate ξ_h that multiplies the head's probabilities, at ξ = 1, so one backward
  pass gives every head of every layer. ``taylor_objective="logit-sum"`` back-propagates the sum of the logits
  instead of the loss, as the official AttAttr repository does.
- ``"attention"`` (the paper's attention-score baseline): ``I_h = E_x[max_{i,j} A_h[i, j]]``, the same reduction as
  AttAttr applied to the attention probabilities of the clean input instead of their attributions: maximum over
  every query row i and key column j of the real tokens (special tokens included, padding excluded), mean over
  examples.
- ``"random"``: uniform random scores from a seeded generator (the floor every method must beat).

The per-example work runs through :func:`attrflow.runner.run_dataset` as a :class:`HeadScoresTask`, so it is
resumable and can run on Ray; :meth:`HeadImportance.from_run` aggregates the stored table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch

from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, AttentionAttributor, Steps, check_steps
from attrflow.methods.quadrature import RULES, Rule
from attrflow.models import Model, load_model
from attrflow.results import SCHEMA_VERSION, _save, load_result, register_result_type
from attrflow.runner import Batch, DatasetTask, Engine, RunResult, open_run, run_dataset

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_EXAMPLES",
    "METHODS",
    "HeadImportance",
    "HeadScoresTask",
    "ImportanceCorrelation",
    "Method",
    "Selection",
    "Subset",
    "Target",
    "TaylorObjective",
    "head_importance",
    "select_examples",
]

logger = logging.getLogger(__name__)

Method = Literal["attattr", "taylor", "attention", "random"]
METHODS: tuple[str, ...] = get_args(Method)
# the methods that need a pass over the data (their per-example scores are columns of the run table)
DATA_METHODS: tuple[str, ...] = ("attattr", "taylor", "attention")
Target = Literal["gold", "predicted"]
Selection = Literal["random", "first"]
TaylorObjective = Literal["loss", "logit-sum"]

DEFAULT_EXAMPLES = 200  # the official pruning script's --num_examples
TASK_VERSION = 1


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _inputs_of(example: Any) -> str | tuple[str, str]:
    """The model input of a dataset example (anything with ``.text`` and optionally ``.text_pair``)."""
    text = getattr(example, "text", None)
    if not isinstance(text, str):
        raise InvalidInputError(
            f"dataset examples need a .text string (and optionally .text_pair and .label); got {type(example).__name__}"
        )
    pair = getattr(example, "text_pair", None)
    return text if pair is None else (text, pair)


def _gold_label(example: Any, num_classes: int) -> int:
    label = getattr(example, "label", None)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < num_classes:
        raise InvalidInputError(
            f"example {getattr(example, 'text', example)!r:.60} has label {label!r}, not a class index in "
            f"[0, {num_classes}); target='gold' and pruning accuracy need gold labels (use target='predicted' "
            "for unlabelled data)"
        )
    return int(label)


def check_classifier(model: Model) -> None:
    """Head importance and pruning need a sequence classifier (gold labels are class indices)."""
    if model.task != "sequence-classification":
        raise UnsupportedModelError(
            f"head importance and pruning need a sequence-classification model; {model.name} is a {model.task} model"
        )


# ---------------------------------------------------------------------- the per-example task
class HeadScoresTask(DatasetTask):
    """Per-example head scores for :func:`~attrflow.runner.run_dataset` (one record per example).

    Columns (plus the runner's ``example_id``):

    - ``tokens`` (list of str), ``label`` (gold class, -1 when absent), ``target`` (the explained class),
      ``prediction`` (argmax class), ``probability`` (of the prediction), ``target_probability``;
    - ``attention``: ``[L][H]`` max attention probability of each head over the real tokens (always computed: it
      comes from the clean forward pass every method needs);
    - with ``"attattr"`` in ``methods``: ``attattr`` ``[L][H]`` max attribution per head, ``completeness_gap``
      ``[L]``, and ``top_interactions``: the ``top_k`` largest attribution entries as structs
      ``(layer, head, from_index, to_index, score)`` (``from`` = query token, ``to`` = key token);
    - with ``"taylor"``: ``taylor`` ``[L][H]`` the signed ``Σ_{i,j} A_h ⊙ ∂objective/∂A_h``
      (:func:`head_importance` averages its absolute value).

    Args:
        model: a built-in model name or checkpoint path (loaded in :meth:`setup`: works on Ray workers), or a live
            :class:`~attrflow.Model` (local engine only: a live model cannot be sent to Ray workers).
        methods: which of ``"attattr"``, ``"taylor"``, ``"attention"`` to compute.
        target: ``"gold"`` (the example's label; official pruning script) or ``"predicted"``.
        steps, rule: AttAttr quadrature (see :func:`attrflow.attribute`).
        taylor_objective: ``"loss"`` (Michel et al.: cross-entropy of the target) or ``"logit-sum"``.
        top_k: interactions stored per example.
        batch_size: AttAttr interpolation points per forward pass (memory only).
        device: where a model loaded from a name or path runs.
    """

    def __init__(
        self,
        model: Model | str | os.PathLike[str],
        *,
        methods: Sequence[str] = ("attattr",),
        target: Target = "gold",
        steps: Steps = DEFAULT_STEPS,
        rule: Rule = DEFAULT_RULE,
        taylor_objective: TaylorObjective = "loss",
        top_k: int = 5,
        batch_size: int | None = None,
        device: str | None = None,
    ) -> None:
        chosen = sorted(set(methods))
        for method in chosen:
            _check_choice("methods", method, DATA_METHODS)
        _check_choice("target", target, get_args(Target))
        _check_choice("rule", rule, RULES)
        _check_choice("taylor_objective", taylor_objective, get_args(TaylorObjective))
        steps = check_steps(steps)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InvalidInputError(f"top_k must be a whole number >= 1, got {top_k!r}")
        if isinstance(model, Model):
            self._live: Model | None = model
            self.source = model.name
        elif isinstance(model, (str, os.PathLike)):
            self._live = None
            self.source = str(model)
        else:
            raise InvalidInputError(
                f"model must be an attrflow Model, a built-in model name or a checkpoint path; got {type(model).__name__}"
            )
        self.methods = tuple(dict.fromkeys(["attention", *chosen]))
        self.target = target
        self.steps = steps
        self.rule = rule
        self.taylor_objective = taylor_objective
        self.top_k = top_k
        self.batch_size = batch_size
        self.device = device
        self.model: Model | None = None
        self._attributor: AttentionAttributor | None = None

    def __getstate__(self) -> dict[str, Any]:
        if self._live is not None:
            raise InvalidInputError(
                "a HeadScoresTask holding a live Model cannot be sent to Ray workers; pass the model as a built-in "
                "name or a checkpoint directory (each worker loads its own replica), or use engine='local'"
            )
        return {**self.__dict__, "model": None, "_attributor": None}

    @property
    def name(self) -> str:
        return "head-scores"

    def settings(self) -> Mapping[str, Any]:
        settings: dict[str, Any] = {
            "task_version": TASK_VERSION,
            "model": self.source,
            "methods": list(self.methods),
            "target": self.target,
        }
        if "attattr" in self.methods:
            settings.update(steps=self.steps, rule=self.rule, top_k=self.top_k)
        if "taylor" in self.methods:
            settings["taylor_objective"] = self.taylor_objective
        return settings

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        grid = pa.list_(pa.list_(pa.float32()))
        fields: list[tuple[str, Any]] = [
            ("tokens", pa.list_(pa.string())),
            ("label", pa.int64()),
            ("target", pa.int64()),
            ("prediction", pa.int64()),
            ("probability", pa.float64()),
            ("target_probability", pa.float64()),
            ("attention", grid),
        ]
        if "attattr" in self.methods:
            interaction = pa.struct(
                [
                    ("layer", pa.int32()),
                    ("head", pa.int32()),
                    ("from_index", pa.int32()),
                    ("to_index", pa.int32()),
                    ("score", pa.float32()),
                ]
            )
            fields += [
                ("attattr", grid),
                ("completeness_gap", pa.list_(pa.float32())),
                ("top_interactions", pa.list_(interaction)),
            ]
        if "taylor" in self.methods:
            fields.append(("taylor", grid))
        return pa.schema(fields)

    def setup(self) -> None:
        model = self._live if self._live is not None else resolve_model(self.source, device=self.device)
        check_classifier(model)
        self.model = model
        if "attattr" in self.methods:
            self._attributor = AttentionAttributor(model, steps=self.steps, rule=self.rule, batch_size=self.batch_size)

    def teardown(self) -> None:
        self.model = None
        self._attributor = None

    def process(self, batch: Batch) -> list[dict[str, Any]]:
        return [self._record(example) for _, example in batch]

    def _record(self, example: Any) -> dict[str, Any]:
        model = self.model
        if model is None:
            raise RuntimeError("HeadScoresTask.process() called before setup()")
        num_classes = model.num_outputs
        label = getattr(example, "label", None)
        gold = _gold_label(example, num_classes) if self.target == "gold" else None
        encoding = model.prepare(_inputs_of(example))
        taylor = "taylor" in self.methods
        gate = torch.ones(model.num_layers, model.num_heads, device=model.device, requires_grad=taylor)
        with torch.set_grad_enabled(taylor):
            forward = model.forward_pass(encoding, gate=gate)
            logits = forward.logits.float()
        probabilities = torch.softmax(logits.detach(), dim=-1)
        prediction = int(probabilities.argmax())
        target = gold if gold is not None else prediction
        attention = forward.attentions.flatten(2).amax(-1)
        record: dict[str, Any] = {
            "tokens": list(encoding.tokens),
            "label": int(label) if isinstance(label, (int, np.integer)) and not isinstance(label, bool) else -1,
            "target": target,
            "prediction": prediction,
            "probability": float(probabilities[prediction]),
            "target_probability": float(probabilities[target]),
            "attention": attention.float().cpu().tolist(),
        }
        if taylor:
            # Michel et al.: the loss of the target; the official AttAttr repository: the sum of the logits
            objective = -torch.log_softmax(logits, dim=-1)[target] if self.taylor_objective == "loss" else logits.sum()
            (gradient,) = torch.autograd.grad(objective, gate)
            record["taylor"] = gradient.float().cpu().tolist()
        if self._attributor is not None:
            result = self._attributor.attribute(encoding, target=target)
            record["attattr"] = result.head_scores().tolist()
            record["completeness_gap"] = result.completeness_gap.tolist()
            top = result.top_interactions(self.top_k)
            columns = [top[name].tolist() for name in ("layer", "head", "from_index", "to_index", "score")]
            record["top_interactions"] = [
                {"layer": int(l), "head": int(h), "from_index": int(i), "to_index": int(j), "score": float(v)}
                for l, h, i, j, v in zip(*columns, strict=True)
            ]
        return record


# ---------------------------------------------------------------------- the result
@dataclass(frozen=True)
class ImportanceCorrelation:
    """Agreement of two head-importance maps over their L·H heads (the paper's universality check).

    Attributes:
        pearson: Pearson correlation of the two score vectors.
        spearman: Spearman rank correlation (agreement of the pruning orders).
        num_heads: the number of heads compared.
    """

    pearson: float
    spearman: float
    num_heads: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-ready values."""
        return {"pearson": self.pearson, "spearman": self.spearman, "num_heads": self.num_heads}


def aggregate(method: str, per_example: np.ndarray) -> np.ndarray:
    """The ``[L, H]`` importance of ``method`` from its per-example scores ``[N, L, H]`` (N ≥ 1).

    ``attattr`` and ``attention``: the mean. ``taylor``: the mean of the absolute values, then each layer divided
    by its L2 norm (Michel et al. 2019).
    """
    if per_example.ndim != 3 or per_example.shape[0] == 0:
        raise InvalidInputError(f"need per-example scores [N >= 1, L, H], got shape {per_example.shape}")
    values = per_example.astype(np.float64)
    if method == "taylor":
        mean = np.abs(values).mean(axis=0)
        norm = np.sqrt((mean**2).sum(axis=1, keepdims=True))
        return mean / (norm + 1e-20)
    if method in ("attattr", "attention"):
        return values.mean(axis=0)
    raise InvalidInputError(f"no per-example aggregation for method {method!r}")


@register_result_type
@dataclass(frozen=True, eq=False)
class HeadImportance:
    """Importance of every attention head of a model, from one method (Hao et al., AAAI 2021, §4.1).

    Attributes:
        method: ``"attattr"``, ``"taylor"``, ``"attention"`` or ``"random"`` (see :mod:`attrflow.analysis.heads`).
        scores: float32 ``[L, H]``; larger = more important. Pruning removes the smallest first.
        per_example: float32 ``[N, L, H]``: each example's head scores before aggregation (attattr: max
            attribution; attention: max attention; taylor: the signed ``Σ A_h ⊙ ∂L/∂A_h``); ``[0, L, H]`` for
            random.
        example_ids: the dataset ids of the N examples.
        settings: how the scores were computed (model, target, steps, rule, seed, ...).
    """

    method: str
    scores: torch.Tensor
    per_example: torch.Tensor
    example_ids: tuple[int, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scores.dim() != 2:
            raise InvalidInputError(f"scores must be [layers, heads], got {tuple(self.scores.shape)}")
        if self.per_example.dim() != 3 or tuple(self.per_example.shape[1:]) != tuple(self.scores.shape):
            raise InvalidInputError(
                f"per_example must be [N, {self.scores.shape[0]}, {self.scores.shape[1]}], "
                f"got {tuple(self.per_example.shape)}"
            )
        if len(self.example_ids) != self.per_example.shape[0]:
            raise InvalidInputError("example_ids must name one example per row of per_example")

    # ------------------------------------------------------------------ shapes and orders
    @property
    def num_layers(self) -> int:
        """L."""
        return int(self.scores.shape[0])

    @property
    def num_heads(self) -> int:
        """H (heads per layer)."""
        return int(self.scores.shape[1])

    @property
    def num_examples(self) -> int:
        """N, the examples the scores average over (0 for random)."""
        return int(self.per_example.shape[0])

    def order(self) -> torch.Tensor:
        """Flat head indices ``layer * H + head`` from least to most important (the pruning order).

        Ties keep the layer-major order (a stable sort), so the order is deterministic.
        """
        flat = self.scores.detach().double().flatten().cpu().numpy()
        return torch.from_numpy(np.argsort(flat, kind="stable").astype(np.int64))

    def prune_mask(self, fraction: float) -> torch.Tensor:
        """Head gate ``[L, H]`` (1 keep, 0 prune) that removes the ``⌊fraction · L · H⌋`` least important heads.

        The count rounds down like the official ``prune_head_with_attr.py``. Use with
        :meth:`attrflow.Model.gate_heads`.
        """
        count = pruned_count(fraction, self.num_layers * self.num_heads)
        mask = torch.ones(self.num_layers * self.num_heads)
        mask[self.order()[:count]] = 0.0
        return mask.view(self.num_layers, self.num_heads)

    def subset(self, rows: Sequence[int] | slice | np.ndarray) -> HeadImportance:
        """The importance recomputed from some of the examples (rows of :attr:`per_example`).

        Use it for the paper's consistency check on disjoint subsets:
        ``imp.subset(slice(0, 100)).correlation(imp.subset(slice(100, 200)))``.
        """
        if self.method == "random":
            raise InvalidInputError("random importance has no examples to take a subset of")
        index = np.arange(self.num_examples)[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        if index.size == 0:
            raise InvalidInputError("the subset is empty")
        per_example = self.per_example[torch.from_numpy(index)]
        scores = torch.from_numpy(aggregate(self.method, per_example.numpy())).float()
        ids = tuple(self.example_ids[int(i)] for i in index)
        return HeadImportance(self.method, scores, per_example, ids, {**self.settings, "examples": len(ids)})

    def correlation(self, other: HeadImportance) -> ImportanceCorrelation:
        """Pearson and Spearman correlation between this map and ``other`` over all L·H heads.

        The paper (§4.2) compares importance computed on related datasets; values close to 1 mean the same heads
        matter.
        """
        from scipy import stats

        if tuple(other.scores.shape) != tuple(self.scores.shape):
            raise InvalidInputError(
                f"cannot correlate importance maps of shapes {tuple(self.scores.shape)} and {tuple(other.scores.shape)}"
            )
        a = self.scores.detach().double().flatten().cpu().numpy()
        b = other.scores.detach().double().flatten().cpu().numpy()
        if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
            return ImportanceCorrelation(float("nan"), float("nan"), int(a.size))
        pearson = float(np.corrcoef(a, b)[0, 1])
        spearman = float(stats.spearmanr(a, b).statistic)
        return ImportanceCorrelation(pearson, spearman, int(a.size))

    # ------------------------------------------------------------------ tables and display
    def to_frame(self) -> pd.DataFrame:
        """One row per head: ``layer, head, score, prune_order`` (0 = pruned first), layer-major."""
        import pandas as pd

        order = self.order().numpy()
        position = np.empty_like(order)
        position[order] = np.arange(order.size)
        L, H = self.num_layers, self.num_heads
        return pd.DataFrame(
            {
                "layer": np.repeat(np.arange(L), H),
                "head": np.tile(np.arange(H), L),
                "score": self.scores.detach().double().flatten().cpu().numpy(),
                "prune_order": position,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: method, scores ``[[...H] × L]``, per-example scores, ids and settings."""
        return {
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "scores": self.scores.tolist(),
            "per_example": self.per_example.tolist(),
            "example_ids": list(self.example_ids),
            "settings": dict(self.settings),
        }

    def plot(self, *, ax: Axes | None = None) -> Figure:
        """Layer × head heatmap of the scores (a new figure, or drawn on ``ax``)."""
        from attrflow.analysis._heads_view import plot_importance

        return plot_importance(self, ax=ax)

    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
        """A self-contained HTML page with the layer × head grid; also written to ``path`` when given."""
        from attrflow.analysis._heads_view import render_heads_page, write_page

        html = render_heads_page({self.method: self}, None, title=title or f"attrflow: head importance ({self.method})")
        if path is not None:
            write_page(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.analysis._heads_view import importance_grid

        return importance_grid(self)

    def __repr__(self) -> str:
        return (
            f"HeadImportance(method={self.method!r}, layers={self.num_layers}, heads={self.num_heads}, "
            f"examples={self.num_examples})"
        )

    # ------------------------------------------------------------------ serialisation
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one ``.safetensors`` file (reload with :meth:`load` or :func:`attrflow.load_result`)."""
        meta = {
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "example_ids": list(self.example_ids),
            "settings": dict(self.settings),
        }
        tensors = {"scores": self.scores.float(), "per_example": self.per_example.float()}
        return _save(Path(path), type(self).__name__, meta, tensors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HeadImportance:
        """Read a file written by :meth:`save`."""
        result = load_result(path)
        if not isinstance(result, cls):
            raise InvalidInputError(f"{path} holds a {type(result).__name__}, not a HeadImportance")
        return result

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> HeadImportance:
        return cls(
            method=str(meta["method"]),
            scores=tensors["scores"],
            per_example=tensors["per_example"],
            example_ids=tuple(int(i) for i in meta.get("example_ids", [])),
            settings=dict(meta.get("settings", {})),
        )

    @classmethod
    def from_run(cls, run: RunResult | str | os.PathLike[str], method: str) -> HeadImportance:
        """Aggregate the per-example scores of a :class:`HeadScoresTask` run directory.

        Args:
            run: the :class:`~attrflow.runner.RunResult` or its directory (complete or not: the stored examples
                are used).
            method: ``"attattr"``, ``"taylor"`` or ``"attention"`` (a column of the run).
        """
        _check_choice("method", method, DATA_METHODS)
        result = run if isinstance(run, RunResult) else open_run(run)
        settings = dict(result.settings)
        if method not in settings.get("methods", []):
            raise InvalidInputError(
                f"the run in {result.out_dir} has no {method!r} scores (it computed {settings.get('methods')})"
            )
        table = result.read_table(columns=[method])
        if table.num_rows == 0:
            raise InvalidInputError(f"the run in {result.out_dir} has no finished examples yet")
        per_example = np.stack([np.asarray(grid, dtype=np.float32) for grid in table.column(method).to_pylist()])
        scores = aggregate(method, per_example)
        ids = tuple(int(i) for i in table.column("example_id").to_pylist())
        # only the options this method depends on (the run may have computed several methods)
        own = {"attattr": ("steps", "rule", "top_k"), "taylor": ("taylor_objective",)}.get(method, ())
        others = {"steps", "rule", "top_k", "taylor_objective", "methods"} - set(own)
        settings = {"method": method, **{k: v for k, v in settings.items() if k not in others}, "examples": len(ids)}
        return cls(method, torch.from_numpy(scores).float(), torch.from_numpy(per_example), ids, settings)


def pruned_count(fraction: float, total: int) -> int:
    """``⌊fraction · total⌋`` heads, robust to float error (0.7 · 10 is 7, not 6)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 <= fraction <= 1:
        raise InvalidInputError(f"fractions must lie in [0, 1], got {fraction!r}")
    return min(total, int(np.floor(float(fraction) * total + 1e-9)))


def random_importance(num_layers: int, num_heads: int, *, seed: int = 0) -> HeadImportance:
    """Uniform random scores ``[L, H]`` from ``numpy.random.default_rng(seed)`` (the pruning floor)."""
    scores = np.random.default_rng(seed).random((num_layers, num_heads))
    return HeadImportance(
        "random",
        torch.from_numpy(scores).float(),
        torch.zeros(0, num_layers, num_heads),
        (),
        {"method": "random", "seed": int(seed)},
    )


# ---------------------------------------------------------------------- the entry point
class Subset(list[Any]):
    """Some examples of a dataset, with their positions in it as ``example_ids`` (what the runner records)."""

    def __init__(self, examples: Sequence[Any], example_ids: Sequence[int]) -> None:
        super().__init__(examples)
        self.example_ids = [int(i) for i in example_ids]


def select_examples(
    dataset: Sequence[Any], count: int | None, *, selection: Selection = "random", seed: int = 0
) -> Subset:
    """``count`` examples of ``dataset`` (all when None or larger than it), in dataset order.

    ``selection="random"`` draws them with ``numpy.random.default_rng(seed)`` without replacement;
    ``"first"`` takes the first ``count``, as the official script takes the first 200 dev examples — only
    representative when the dataset is shuffled (a dataset sorted by label would give a single class).
    The subset's ``example_ids`` are the positions in ``dataset`` (or its own ``example_ids``).
    """
    _check_choice("selection", selection, get_args(Selection))
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise InvalidInputError(f"the number of examples must be a whole number >= 1 or None, got {count!r}")
    total = len(dataset)
    if total == 0:
        raise InvalidInputError("the dataset is empty")
    if count is None or count >= total:
        positions = np.arange(total)
    elif selection == "first":
        positions = np.arange(count)
    else:
        positions = np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))
    given = getattr(dataset, "example_ids", None)
    ids = [int(given[p]) for p in positions] if given is not None else positions.tolist()
    return Subset([dataset[int(p)] for p in positions], ids)


def resolve_model(model: Model | str | os.PathLike[str], *, device: str | None = None) -> Model:
    """``model`` itself, or the model a built-in name or checkpoint path names."""
    if isinstance(model, Model):
        loaded = model
    else:
        loaded = load_model(model if isinstance(model, str) else Path(model), device=device)
    check_classifier(loaded)
    return loaded


@contextlib.contextmanager
def _run_directory(out_dir: str | os.PathLike[str] | None) -> Any:
    if out_dir is not None:
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="attrflow-heads-") as scratch:
        yield Path(scratch) / "run"


def head_importance(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    *,
    method: Method = "attattr",
    examples: int | None = DEFAULT_EXAMPLES,
    selection: Selection = "random",
    target: Target = "gold",
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    taylor_objective: TaylorObjective = "loss",
    seed: int = 0,
    top_k: int = 5,
    batch_size: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    engine: Engine = "local",
    address: str | None = None,
    num_workers: int | None = None,
    examples_per_batch: int = 8,
    device: str | None = None,
    progress: bool = True,
) -> HeadImportance:
    """Importance of every attention head of a classifier over the first ``examples`` examples of a dataset.

    ``"attattr"`` (Hao et al., AAAI 2021, §4.1): ``I_h = E_x[max_{i,j} Attr_h(A)_{ij}]``; ``"taylor"`` (Michel et
    al. 2019): ``E_x|Σ A_h ⊙ ∂L/∂A_h|`` normalised per layer; ``"attention"``: ``E_x[max_{i,j} A_h]``;
    ``"random"``: seeded uniform scores. See :mod:`attrflow.analysis.heads` for the exact definitions.

    Args:
        model: an :class:`attrflow.Model`, a built-in name or a checkpoint directory. ``engine="ray"`` needs a
            name or directory (each worker loads its own replica).
        dataset: a sequence of examples with ``.text``, ``.text_pair`` (or None) and ``.label`` (class index), e.g.
            :func:`attrflow.load_dataset`'s.
        method: ``"attattr"``, ``"taylor"``, ``"attention"`` or ``"random"``.
        examples: how many examples (official script: 200 dev examples); None = all.
        selection: which: ``"random"`` (default: a seeded sample, in dataset order) or ``"first"`` (the official
            script's choice; only representative for a shuffled dataset — the built-in tweet splits, for one, list
            every negative example before the positives).
        target: the class F (AttAttr) and the loss (Taylor) are about: ``"gold"`` (official pruning script) or
            ``"predicted"``.
        steps: AttAttr quadrature points per layer; default that of :func:`attrflow.attribute`. The official
            script uses 20 left-Riemann points: ``steps=20, rule="riemann-left"`` (docs/heads.md compares them).
        rule: AttAttr quadrature rule.
        taylor_objective: ``"loss"`` (Michel et al.) or ``"logit-sum"`` (the official AttAttr repository).
        seed: seed of the example sample, and of the ``"random"`` ranking.
        top_k: strongest interactions stored per example in the run table (AttAttr).
        batch_size: AttAttr interpolation points per forward pass (memory only).
        out_dir: keep the per-example table in this resumable run directory (see
            :func:`attrflow.runner.run_dataset`); default a temporary directory, deleted afterwards.
        engine, address, num_workers: where the per-example work runs (``"local"`` or ``"ray"``).
        examples_per_batch: examples handed to a worker at once (speed only).
        device: device of a model loaded from a name or path.
        progress: show a progress bar.

    Returns:
        The :class:`HeadImportance` (``[L, H]`` scores and the per-example scores).
    """
    _check_choice("method", method, METHODS)
    if method == "random":
        loaded = resolve_model(model, device=device)
        return random_importance(loaded.num_layers, loaded.num_heads, seed=seed)
    subset = select_examples(dataset, examples, selection=selection, seed=seed)
    importances, _ = data_importances(
        model,
        subset,
        (method,),
        target=target,
        steps=steps,
        rule=rule,
        taylor_objective=taylor_objective,
        top_k=top_k,
        batch_size=batch_size,
        device=device,
        out_dir=out_dir,
        engine=engine,
        address=address,
        num_workers=num_workers,
        examples_per_batch=examples_per_batch,
        progress=progress,
        extra_settings={"selection": selection, "seed": seed},
    )
    return importances[method]


def data_importances(
    model: Model | str | os.PathLike[str],
    subset: Sequence[Any],
    methods: Sequence[str],
    *,
    target: Target,
    steps: Steps,
    rule: Rule,
    taylor_objective: TaylorObjective,
    top_k: int,
    batch_size: int | None,
    device: str | None,
    out_dir: str | os.PathLike[str] | None,
    engine: Engine,
    address: str | None,
    num_workers: int | None,
    examples_per_batch: int,
    progress: bool,
    extra_settings: Mapping[str, Any],
    consolidate: bool = False,
) -> tuple[dict[str, HeadImportance], dict[str, Any]]:
    """Importance of the data methods over ``subset`` from one runner pass (one task computes all of them).

    Returns the importance of each method (``extra_settings`` added to its settings) and the run's settings.
    ``consolidate`` merges the run's Parquet parts into one file when ``out_dir`` is kept.
    """
    if engine == "ray" and isinstance(model, Model):
        raise InvalidInputError(
            "engine='ray' needs the model as a built-in name or a checkpoint directory (each worker loads its own "
            "replica); a live Model object cannot be sent to the workers"
        )
    task = HeadScoresTask(
        model,
        methods=tuple(methods),
        target=target,
        steps=steps,
        rule=rule,
        taylor_objective=taylor_objective,
        top_k=top_k,
        batch_size=batch_size,
        device=device,
    )
    with _run_directory(out_dir) as directory:
        run = run_dataset(
            task,
            subset,
            out_dir=directory,
            engine=engine,
            address=address,
            num_workers=num_workers,
            examples_per_batch=examples_per_batch,
            progress=progress,
        )
        if consolidate and out_dir is not None:
            run.consolidate()
        importances = {}
        for method in methods:
            importance = HeadImportance.from_run(run, method)
            importances[method] = dataclasses.replace(importance, settings={**importance.settings, **extra_settings})
        return importances, dict(run.settings)
