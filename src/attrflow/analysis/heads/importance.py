"""Head importance (Hao et al., AAAI 2021, §4.1): which attention heads a classifier relies on, over a dataset.

:func:`head_importance` scores every head with one ranking of :mod:`~attrflow.analysis.heads.rankings`
(``"attattr"``, ``"taylor"``, ``"attention"``, ``"random"``, or one you register). The per-example work runs
through :func:`attrflow.runner.run_dataset` as a :class:`~attrflow.analysis.heads.HeadScoresTask`, so it is
resumable and can run on Ray; :meth:`HeadImportance.from_run` aggregates the stored table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from attrflow.analysis.heads.rankings import data_ranking_names, get_ranking, label_of, ranking_options
from attrflow.analysis.heads.task import HeadScoresTask, TaylorObjective, resolve_model
from attrflow.analysis.heads.views import ImportanceGrid
from attrflow.data.sampling import sample
from attrflow.errors import InvalidInputError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, Steps
from attrflow.methods.quadrature import Rule
from attrflow.models import Model
from attrflow.runner import RunOptions, RunResult, open_run, resolve_run_options, run_dataset
from attrflow.storage import SCHEMA_VERSION, load_result, register_result_type, write_result
from attrflow.validation import Selection, TargetRule, check_choice, check_fraction, target_rule

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


__all__ = [
    "DEFAULT_EXAMPLES",
    "HeadImportance",
    "ImportanceCorrelation",
    "aggregate",
    "head_importance",
    "pruned_count",
    "random_importance",
]

logger = logging.getLogger(__name__)

DEFAULT_EXAMPLES = 200  # the official pruning script's --num_examples


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
    """The ``[L, H]`` importance of ranking ``method`` from its per-example scores ``[N, L, H]`` (N ≥ 1)."""
    return get_ranking(method).aggregate(per_example)


def pruned_count(fraction: float, total: int) -> int:
    """``⌊fraction · total⌋`` heads, robust to float error (0.7 · 10 is 7, not 6)."""
    value = check_fraction("fractions", fraction)
    return min(total, int(np.floor(value * total + 1e-9)))


@register_result_type
@dataclass(frozen=True, eq=False)
class HeadImportance:
    """Importance of every attention head of a model, from one ranking (Hao et al., AAAI 2021, §4.1).

    Equal when method, scores, per-example scores, ids and settings are equal (``save`` and
    :func:`attrflow.load_result` give an equal object back).

    Attributes:
        method: the ranking's name (``"attattr"``, ``"taylor"``, ``"attention"``, ``"random"``; see
            :mod:`attrflow.analysis.heads.rankings`).
        scores: float32 ``[L, H]``; larger = more important. Pruning removes the smallest first.
        per_example: float32 ``[N, L, H]``: each example's head scores before aggregation (attattr: max
            attribution; attention: max attention; taylor: the signed ``Σ A_h ⊙ ∂L/∂A_h``); ``[0, L, H]`` for
            random.
        example_ids: the dataset ids of the N examples.
        settings: how the scores were computed (model, target, steps, rule, seed, ...).
    """

    kind: ClassVar[str] = "HeadImportance"

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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HeadImportance):
            return NotImplemented
        return (
            self.method == other.method
            and torch.equal(self.scores, other.scores)
            and torch.equal(self.per_example, other.per_example)
            and tuple(self.example_ids) == tuple(other.example_ids)
            and dict(self.settings) == dict(other.settings)
        )

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

    def ranks(self) -> torch.Tensor:
        """``[L, H]`` pruning rank of each head (0 = pruned first)."""
        order = self.order()
        position = torch.empty_like(order)
        position[order] = torch.arange(order.numel())
        return position.view(self.num_layers, self.num_heads)

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
        if self.num_examples == 0:
            raise InvalidInputError(f"{self.method} importance has no examples to take a subset of")
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

        L, H = self.num_layers, self.num_heads
        return pd.DataFrame(
            {
                "layer": np.repeat(np.arange(L), H),
                "head": np.tile(np.arange(H), L),
                "score": self.scores.detach().double().flatten().cpu().numpy(),
                "prune_order": self.ranks().flatten().numpy(),
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

    def grid(self) -> ImportanceGrid:
        """What the page and the heatmap show (:class:`attrflow.viz.heads.ImportanceGrid`)."""

        return ImportanceGrid(
            method=self.method,
            label=label_of(self.method),
            scores=self.scores.detach().double().cpu().tolist(),
            ranks=self.ranks().tolist(),
            num_examples=self.num_examples,
            settings=dict(self.settings),
        )

    def plot(self, *, ax: Axes | None = None) -> Figure:
        """Layer × head heatmap of the scores (a new figure, or drawn on ``ax``)."""
        from attrflow.viz.heads import plot_importance

        return plot_importance(self.grid(), ax=ax)

    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        title: str | None = None,
        back: tuple[str, str] | None = None,
    ) -> str:
        """A self-contained HTML page with the layer × head grid; also written to ``path`` when given."""
        from attrflow.viz.heads import render_heads_page
        from attrflow.viz.page import write_page

        html = render_heads_page(title or f"attrflow: head importance ({self.method})", grids=[self.grid()], back=back)
        if path is not None:
            write_page(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.heads import importance_grid

        return importance_grid(self.grid())

    def __repr__(self) -> str:
        return (
            f"HeadImportance(method={self.method!r}, layers={self.num_layers}, heads={self.num_heads}, "
            f"examples={self.num_examples})"
        )

    # ------------------------------------------------------------------ serialisation
    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)`` for :func:`attrflow.storage.write_result`."""
        meta = {"method": self.method, "example_ids": list(self.example_ids), "settings": dict(self.settings)}
        return meta, {"scores": self.scores.float(), "per_example": self.per_example.float()}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one ``.safetensors`` file (reload with :func:`attrflow.load_result`)."""
        meta, tensors = self.to_parts()
        return write_result(path, self.kind, meta, tensors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HeadImportance:
        """Read a file written by :meth:`save`."""
        result = load_result(path)
        if not isinstance(result, cls):
            raise InvalidInputError(f"{path} holds a {type(result).__name__}, not a HeadImportance")
        return result

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> HeadImportance:
        """Rebuild from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""
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
            method: a data ranking (a column of the run), e.g. ``"attattr"``, ``"taylor"`` or ``"attention"``.
        """
        check_choice("method", method, data_ranking_names())
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
        # only the options this ranking depends on (the run may have computed several)
        others = ({*ranking_options(), "methods"}) - set(get_ranking(method).options)
        settings = {"method": method, **{k: v for k, v in settings.items() if k not in others}, "examples": len(ids)}
        return cls(method, torch.from_numpy(scores).float(), torch.from_numpy(per_example), ids, settings)


def random_importance(num_layers: int, num_heads: int, *, seed: int = 0, method: str = "random") -> HeadImportance:
    """The scores of a ranking that needs no data (default ``"random"``: uniform from
    ``numpy.random.default_rng(seed)``, the pruning floor)."""
    scores = get_ranking(method).scores_without_data(num_layers, num_heads, seed=seed)
    return HeadImportance(
        method,
        torch.from_numpy(scores).float(),
        torch.zeros(0, num_layers, num_heads),
        (),
        {"method": method, "seed": int(seed)},
    )


# ---------------------------------------------------------------------- the entry point
@contextlib.contextmanager
def _run_directory(out_dir: str | os.PathLike[str] | None) -> Iterator[Path]:
    if out_dir is not None:
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory(prefix="attrflow-heads-") as scratch:
        yield Path(scratch) / "run"


def head_importance(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    *,
    method: str = "attattr",
    examples: int | None = DEFAULT_EXAMPLES,
    selection: Selection = "random",
    target: TargetRule | str = "label",
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    taylor_objective: TaylorObjective = "loss",
    seed: int = 0,
    top_k: int = 5,
    batch_size: int | None = None,
    device: str | None = None,
    run: RunOptions | None = None,
    **legacy_run_options: Any,
) -> HeadImportance:
    """Importance of every attention head of a classifier over ``examples`` examples of a dataset.

    ``"attattr"`` (Hao et al., AAAI 2021, §4.1): ``I_h = E_x[max_{i,j} Attr_h(A)_{ij}]``; ``"taylor"`` (Michel et
    al. 2019): ``E_x|Σ A_h ⊙ ∂L/∂A_h|`` normalised per layer; ``"attention"``: ``E_x[max_{i,j} A_h]``;
    ``"random"``: seeded uniform scores. See :mod:`attrflow.analysis.heads.rankings` for the registry.

    Args:
        model: an :class:`attrflow.Model`, a built-in name or a checkpoint directory. ``engine="ray"`` needs a
            name or directory (each worker loads its own replica).
        dataset: a sequence of examples with ``.text``, ``.text_pair`` (or None) and ``.label`` (class index), e.g.
            :func:`attrflow.load_dataset`'s.
        method: a registered ranking name (:func:`~attrflow.analysis.heads.ranking_names`).
        examples: how many examples (official script: 200 dev examples); None = all.
        selection: which (:func:`attrflow.data.sample`): ``"random"`` (default: a seeded sample, in dataset order)
            or ``"first"`` (the official script's choice; only representative for a shuffled dataset).
        target: the class F (AttAttr) and the loss (Taylor) are about: ``"label"`` (official pruning script) or
            ``"predicted"`` (``"gold"``: deprecated spelling of ``"label"``).
        steps: AttAttr quadrature points per layer; default that of :func:`attrflow.attribute`. The official
            script uses 20 left-Riemann points: ``steps=20, rule="riemann-left"`` (docs/heads.md compares them).
        rule: AttAttr quadrature rule.
        taylor_objective: ``"loss"`` (Michel et al.) or ``"logit-sum"`` (the official AttAttr repository).
        seed: seed of the example sample, and of the ``"random"`` ranking.
        top_k: strongest interactions stored per example in the run table (AttAttr).
        batch_size: AttAttr interpolation rows per forward pass (memory only).
        device: device of a model loaded from a name or path.
        run: where and how the per-example work runs (:class:`attrflow.RunOptions`: run directory, engine,
            progress, ...); default a temporary directory, deleted afterwards. The old separate keywords
            (``out_dir=``, ``engine=``, ``examples_per_batch=``, ``progress=``, ...) still work, deprecated.

    Returns:
        The :class:`HeadImportance` (``[L, H]`` scores and the per-example scores).
    """
    options = resolve_run_options(run, legacy_run_options, caller="head_importance")
    ranking = get_ranking(method)
    rule_of_target = target_rule(target)
    if not ranking.needs_data:
        loaded = resolve_model(model, device=device)
        return random_importance(loaded.num_layers, loaded.num_heads, seed=seed, method=method)
    if isinstance(model, Model):
        model.check_dataset(dataset)
    subset = sample(dataset, examples, selection=selection, seed=seed)
    task = HeadScoresTask(
        model,
        methods=(method,),
        target=rule_of_target,
        steps=steps,
        rule=rule,
        taylor_objective=taylor_objective,
        top_k=top_k,
        batch_size=batch_size,
        device=device,
    )
    extra = {"selection": selection, "seed": seed}
    importances, _ = data_importances(task, subset, (method,), options, extra_settings=extra)
    return importances[method]


def data_importances(
    task: HeadScoresTask,
    subset: Sequence[Any],
    methods: Sequence[str],
    options: RunOptions,
    *,
    extra_settings: Mapping[str, Any],
    consolidate: bool = False,
) -> tuple[dict[str, HeadImportance], dict[str, Any]]:
    """Importance of the data rankings ``methods`` (computed by ``task``) over ``subset`` from one runner pass.

    Returns the importance of each (``extra_settings`` added to its settings) and the run's settings.
    ``consolidate`` merges the run's Parquet parts into one file when the run directory is kept.
    """
    if options.engine == "ray" and task.holds_live_model:
        raise InvalidInputError(
            "engine='ray' needs the model as a built-in name or a checkpoint directory (each worker loads its own "
            "replica); a live Model object cannot be sent to the workers"
        )
    with _run_directory(options.out_dir) as directory:
        run = run_dataset(task, subset, out_dir=directory, **options.kwargs())
        if consolidate and options.out_dir is not None:
            run.consolidate()
        importances = {}
        for method in methods:
            importance = HeadImportance.from_run(run, method)
            importances[method] = dataclasses.replace(importance, settings={**importance.settings, **extra_settings})
        return importances, dict(run.settings)
