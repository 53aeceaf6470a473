"""Head pruning curves (Hao et al., AAAI 2021, §4.2; official ``prune_head_with_attr.py``).

For each fraction f of 0, 0.1, …, 1.0, the ``⌊f · L · H⌋`` least important heads of a ranking are gated off
together (all layers at once, no re-training: their attention probabilities are multiplied by 0, so their output
is zero before the output projection while bias and residual still pass) and the classifier's accuracy is measured
on an evaluation set. A better ranking keeps accuracy longer; the area under the accuracy curve summarises it.

:func:`analyze_heads` runs the whole study (importance of several methods through the dataset runner, then the
curves) and is what ``attrflow heads`` calls.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import nan
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from attrflow.analysis.heads import (
    DATA_METHODS,
    DEFAULT_EXAMPLES,
    METHODS,
    HeadImportance,
    Selection,
    Target,
    TaylorObjective,
    _check_choice,
    _gold_label,
    _inputs_of,
    data_importances,
    pruned_count,
    random_importance,
    resolve_model,
    select_examples,
)
from attrflow.errors import InvalidInputError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, Steps
from attrflow.methods.quadrature import Rule
from attrflow.models import Model
from attrflow.results import SCHEMA_VERSION, _atomic_write_bytes, _save, load_result, register_result_type
from attrflow.runner import Engine

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_FRACTIONS",
    "DEMO_FRACTIONS",
    "HeadsAnalysis",
    "PruningCurve",
    "analyze_heads",
    "evaluation_items",
    "heads_demo",
    "prune_curve",
]

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS: tuple[float, ...] = tuple(k / 10 for k in range(11))
DEMO_FRACTIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


@register_result_type
@dataclass(frozen=True, eq=False)
class PruningCurve:
    """Accuracy of a classifier as more and more of its least important heads are pruned, for several rankings.

    Attributes:
        fractions: the fractions of the L·H heads pruned, ascending.
        num_pruned: heads pruned at each fraction (``⌊f · L · H⌋``).
        accuracy: per method (ranking name), the accuracy at each fraction.
        num_examples: size of the evaluation set.
        num_layers, num_heads: L and H of the model.
        orders: per method, the flat head indices ``layer * H + head`` in pruning order (least important first).
        settings: model, evaluation data and anything else worth keeping.
        majority_accuracy: the share of the most frequent gold label in the evaluation set — the accuracy of a
            constant prediction, which is what a model with every head pruned tends to (NaN when unknown).
    """

    fractions: tuple[float, ...]
    num_pruned: tuple[int, ...]
    accuracy: Mapping[str, tuple[float, ...]]
    num_examples: int
    num_layers: int
    num_heads: int
    orders: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    majority_accuracy: float = float("nan")

    def __post_init__(self) -> None:
        if len(self.num_pruned) != len(self.fractions):
            raise InvalidInputError("num_pruned needs one entry per fraction")
        for method, values in self.accuracy.items():
            if len(values) != len(self.fractions):
                raise InvalidInputError(f"accuracy of {method!r} needs one value per fraction")

    @property
    def methods(self) -> tuple[str, ...]:
        """The rankings compared, in the order given."""
        return tuple(self.accuracy)

    @property
    def auc(self) -> dict[str, float]:
        """Area under each accuracy curve over the pruned fraction (trapezoid rule). With the default fractions
        0…1 it is the mean accuracy over the pruning range: higher = the ranking keeps accuracy longer."""
        x = np.asarray(self.fractions, dtype=np.float64)
        return {m: float(np.trapezoid(np.asarray(v, dtype=np.float64), x)) for m, v in self.accuracy.items()}

    def to_frame(self) -> pd.DataFrame:
        """The table: one row per fraction with ``fraction, pruned_heads`` and one accuracy column per method."""
        import pandas as pd

        frame = pd.DataFrame({"fraction": list(self.fractions), "pruned_heads": list(self.num_pruned)})
        for method, values in self.accuracy.items():
            frame[method] = list(values)
        return frame

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{method: {"fractions": [...], "accuracy": [...], "auc": x, "pruned_heads": [...]}}`` (JSON-ready)."""
        auc = self.auc
        return {
            method: {
                "fractions": list(self.fractions),
                "accuracy": list(values),
                "auc": auc[method],
                "pruned_heads": list(self.num_pruned),
            }
            for method, values in self.accuracy.items()
        }

    def plot(self, *, ax: Axes | None = None) -> Figure:
        """Accuracy against the pruned fraction, one line per method, AUC in the legend."""
        from attrflow.analysis._heads_view import plot_curve

        return plot_curve(self, ax=ax)

    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        importances: Mapping[str, HeadImportance] | None = None,
        title: str | None = None,
    ) -> str:
        """A self-contained HTML page: the curves (inline SVG), the table with AUCs, and the importance grids
        when ``importances`` are given. Also written to ``path`` when given."""
        from attrflow.analysis._heads_view import render_heads_page, write_page

        html = render_heads_page(importances or {}, self, title=title or "attrflow: head pruning")
        if path is not None:
            write_page(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.analysis._heads_view import curve_svg

        return curve_svg(self)

    def __repr__(self) -> str:
        aucs = ", ".join(f"{m}={a:.3f}" for m, a in self.auc.items())
        return f"PruningCurve(examples={self.num_examples}, fractions={len(self.fractions)}, auc: {aucs})"

    # ------------------------------------------------------------------ serialisation
    def _meta(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "fractions": list(self.fractions),
            "num_pruned": list(self.num_pruned),
            "methods": list(self.methods),
            "num_examples": self.num_examples,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "orders": {m: list(o) for m, o in self.orders.items()},
            "settings": dict(self.settings),
            "majority_accuracy": self.majority_accuracy if np.isfinite(self.majority_accuracy) else None,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one ``.safetensors`` file (reload with :meth:`load` or :func:`attrflow.load_result`)."""
        accuracy = torch.tensor([list(self.accuracy[m]) for m in self.methods], dtype=torch.float64).view(
            len(self.methods), len(self.fractions)
        )
        return _save(Path(path), type(self).__name__, self._meta(), {"accuracy": accuracy})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PruningCurve:
        """Read a file written by :meth:`save`."""
        result = load_result(path)
        if not isinstance(result, cls):
            raise InvalidInputError(f"{path} holds a {type(result).__name__}, not a PruningCurve")
        return result

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> PruningCurve:
        rows = tensors["accuracy"].tolist()
        return cls(
            fractions=tuple(float(f) for f in meta["fractions"]),
            num_pruned=tuple(int(k) for k in meta["num_pruned"]),
            accuracy={m: tuple(float(a) for a in row) for m, row in zip(meta["methods"], rows, strict=True)},
            num_examples=int(meta["num_examples"]),
            num_layers=int(meta["num_layers"]),
            num_heads=int(meta["num_heads"]),
            orders={m: tuple(int(i) for i in o) for m, o in meta.get("orders", {}).items()},
            settings=dict(meta.get("settings", {})),
            majority_accuracy=float(meta["majority_accuracy"]) if meta.get("majority_accuracy") is not None else nan,
        )


def evaluation_items(model: Model, dataset: Sequence[Any]) -> tuple[list[dict[str, list[int]]], np.ndarray]:
    """Tokenise a labelled dataset once: ``(items for Model.predict_batch, gold labels [N])``."""
    if model.tokenizer is None:
        raise InvalidInputError("pruning evaluation needs the model's tokenizer; this model has none")
    limit = model.max_length()
    items: list[dict[str, list[int]]] = []
    labels = np.empty(len(dataset), dtype=np.int64)
    for index in range(len(dataset)):
        example = dataset[index]
        labels[index] = _gold_label(example, model.num_outputs)
        inputs = _inputs_of(example)
        first, second = (inputs, None) if isinstance(inputs, str) else inputs
        encoded = model.tokenizer(first, second, truncation=limit is not None, max_length=limit)
        items.append({key: list(value) for key, value in encoded.items()})
    return items, labels


def _as_rankings(importance: Any) -> dict[str, HeadImportance]:
    if isinstance(importance, HeadImportance):
        return {importance.method: importance}
    if isinstance(importance, Mapping):
        rankings = dict(importance)
    elif isinstance(importance, Sequence) and not isinstance(importance, str):
        rankings = {}
        for item in importance:
            if not isinstance(item, HeadImportance):
                raise InvalidInputError(f"expected HeadImportance objects, got {type(item).__name__}")
            if item.method in rankings:
                raise InvalidInputError(
                    f"two rankings are both named {item.method!r}; pass a dict {{name: importance}} to tell them apart"
                )
            rankings[item.method] = item
    else:
        raise InvalidInputError(
            f"importance must be a HeadImportance, a sequence of them or a dict of them, got {type(importance).__name__}"
        )
    if not rankings:
        raise InvalidInputError("no importance ranking given")
    for name, item in rankings.items():
        if not isinstance(item, HeadImportance):
            raise InvalidInputError(f"{name!r}: expected a HeadImportance, got {type(item).__name__}")
    return rankings


def prune_curve(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    importance: HeadImportance | Sequence[HeadImportance] | Mapping[str, HeadImportance],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
) -> PruningCurve:
    """Accuracy on ``dataset`` after pruning the least important heads of each ranking (Hao et al. 2021, §4.2).

    For each fraction f, the ``⌊f · L · H⌋`` lowest-scoring heads (all layers at once) are gated to zero with
    :meth:`attrflow.Model.gate_heads` — no re-training — and the accuracy of the argmax prediction against the gold
    labels is measured on every example of ``dataset``. Identical pruned sets (f = 0, f = 1, or rankings that
    agree) are evaluated once.

    Args:
        model: the classifier (an :class:`attrflow.Model`, a built-in name or a checkpoint directory).
        dataset: the evaluation examples (``.text``, ``.text_pair``, ``.label``), e.g. a validation split.
        importance: one :class:`~attrflow.analysis.heads.HeadImportance`, several (named by their method), or a
            dict ``{name: importance}``.
        fractions: fractions of the L·H heads to prune, in [0, 1] (default 0, 0.1, …, 1.0).
        batch_size: examples per forward pass (speed only).
        device: device of a model loaded from a name or path.
        progress: show a progress bar.
        checkpoint: a JSON file that keeps the accuracy of every evaluated pruned set (rewritten atomically after
            each): a run stopped at any moment and started again with the same checkpoint evaluates only the sets
            still missing. A checkpoint written for another model or evaluation set is refused.

    Returns:
        The :class:`PruningCurve`, with the area under each curve in ``auc``.

    Raises:
        InvalidInputError: bad fractions or rankings, an empty dataset, or a checkpoint of another evaluation.
    """
    from tqdm.auto import tqdm

    loaded = resolve_model(model, device=device)
    rankings = _as_rankings(importance)
    L, H = loaded.num_layers, loaded.num_heads
    for name, ranking in rankings.items():
        if (ranking.num_layers, ranking.num_heads) != (L, H):
            raise InvalidInputError(
                f"ranking {name!r} scores {ranking.num_layers}×{ranking.num_heads} heads, the model has {L}×{H}"
            )
    points = [float(f) for f in fractions]
    if not points:
        raise InvalidInputError("fractions is empty")
    counts = [pruned_count(f, L * H) for f in points]
    if any(b <= a for a, b in itertools.pairwise(points)):
        raise InvalidInputError(f"fractions must be strictly increasing, got {points}")
    if len(dataset) == 0:
        raise InvalidInputError("the evaluation dataset is empty")
    items, labels = evaluation_items(loaded, dataset)
    orders = {name: ranking.order().tolist() for name, ranking in rankings.items()}
    pruned_sets = {(name, k): frozenset(orders[name][:k]) for name in rankings for k in counts}
    unique = list(dict.fromkeys(pruned_sets.values()))
    progress_file = _PruningProgress(checkpoint, loaded, items, labels) if checkpoint is not None else None
    accuracy_of: dict[frozenset[int], float] = {}
    if progress_file is not None:
        wanted = set(unique)
        accuracy_of.update({pruned: acc for pruned, acc in progress_file.done.items() if pruned in wanted})
    bar = tqdm(total=len(unique), initial=len(accuracy_of), desc="pruning", unit="mask", disable=not progress)
    try:
        for pruned in unique:
            if pruned in accuracy_of:
                continue
            mask = torch.ones(L * H)
            mask[sorted(pruned)] = 0.0
            with loaded.gate_heads(mask.view(L, H)):
                probabilities = loaded.predict_batch(items, batch_size=batch_size)
            accuracy_of[pruned] = float((probabilities.argmax(dim=-1).numpy() == labels).mean())
            if progress_file is not None:
                progress_file.add(pruned, accuracy_of[pruned])
            bar.update(1)
    finally:
        bar.close()
    logger.info("pruning: %d masks evaluated on %d examples", len(unique), len(items))
    return PruningCurve(
        fractions=tuple(points),
        num_pruned=tuple(counts),
        accuracy={name: tuple(accuracy_of[pruned_sets[name, k]] for k in counts) for name in rankings},
        num_examples=len(items),
        num_layers=L,
        num_heads=H,
        orders={name: tuple(order) for name, order in orders.items()},
        settings={"model": loaded.name, "batch_size": batch_size},
        majority_accuracy=float(np.bincount(labels).max() / labels.size),
    )


class _PruningProgress:
    """The accuracy of each evaluated pruned set, kept in a JSON file that is replaced atomically after each."""

    VERSION = 1

    def __init__(self, path: str | os.PathLike[str], model: Model, items: Sequence[Any], labels: np.ndarray) -> None:
        self.path = Path(path)
        digest = hashlib.sha256(json.dumps([list(items), labels.tolist()], sort_keys=True).encode()).hexdigest()
        self.identity = {
            "version": self.VERSION,
            "model": model.name,
            "layers": model.num_layers,
            "heads": model.num_heads,
            "examples": len(items),
            "evaluation_sha256": digest,
        }
        self.done: dict[frozenset[int], float] = {}
        if self.path.exists():
            try:
                stored = json.loads(self.path.read_text())
                identity, masks = stored["identity"], stored["masks"]
                done = {frozenset(int(h) for h in entry["pruned"]): float(entry["accuracy"]) for entry in masks}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise InvalidInputError(
                    f"{self.path} is not a readable pruning checkpoint ({exc}); delete it to start the evaluation anew"
                ) from exc
            if identity != self.identity:
                changed = sorted(k for k in self.identity if identity.get(k) != self.identity[k])
                raise InvalidInputError(
                    f"{self.path} holds pruning results of another evaluation (different {', '.join(changed)}); "
                    "use another output directory, or delete the file to start anew"
                )
            self.done = done

    def add(self, pruned: frozenset[int], accuracy: float) -> None:
        self.done[pruned] = accuracy
        masks = [{"pruned": sorted(p), "accuracy": a} for p, a in self.done.items()]
        _atomic_write_bytes(self.path, json.dumps({"identity": self.identity, "masks": masks}).encode())


# ---------------------------------------------------------------------- the whole study
@dataclass(frozen=True, eq=False)
class HeadsAnalysis:
    """Head importance of several methods and their pruning curves on one model (what ``attrflow heads`` writes).

    Attributes:
        importances: per method, its :class:`~attrflow.analysis.heads.HeadImportance`.
        curve: the :class:`PruningCurve` of every method.
        settings: the study's options (model, data, examples, target, steps, ...).
    """

    importances: Mapping[str, HeadImportance]
    curve: PruningCurve
    settings: Mapping[str, Any] = field(default_factory=dict)

    def correlations(self) -> dict[str, dict[str, dict[str, float]]]:
        """Pairwise ``{a: {b: {"pearson": r, "spearman": rho}}}`` between the methods' importance maps."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for a, first in self.importances.items():
            out[a] = {}
            for b, second in self.importances.items():
                c = first.correlation(second)
                out[a][b] = {"pearson": c.pearson, "spearman": c.spearman}
        return out

    def to_dict(self) -> dict[str, Any]:
        """``{"importance": {method: [[...H] × L]}, "pruning": {method: {"fractions", "accuracy", "auc"}}, ...}``
        (the ``heads.json`` of ``attrflow heads``; also ``correlation``, ``settings``, ``num_eval_examples``)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "importance": {method: imp.scores.tolist() for method, imp in self.importances.items()},
            "pruning": self.curve.to_dict(),
            "correlation": _finite(self.correlations()),
            "num_eval_examples": self.curve.num_examples,
            "majority_accuracy": _finite(self.curve.majority_accuracy),
            "settings": dict(self.settings),
        }

    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
        """The self-contained HTML page: curves, AUC table, importance grids and their correlations."""
        return self.curve.to_html(path, importances=self.importances, title=title or "attrflow: attention heads")

    def plot(self, *, ax: Axes | None = None) -> Figure:
        """The pruning curves (see :meth:`PruningCurve.plot`)."""
        return self.curve.plot(ax=ax)

    def save(self, out_dir: str | os.PathLike[str], *, figure_formats: Sequence[str] = ("png",)) -> list[Path]:
        """Write ``heads.json``, ``heads.html`` and ``pruning.<fmt>`` for each figure format (png, svg, pdf) to
        ``out_dir``; the figures need matplotlib (``attrflow[viz]``) and are skipped with a warning without it.

        Returns:
            The paths written.
        """
        from attrflow.errors import MissingDependencyError

        directory = Path(out_dir)
        directory.mkdir(parents=True, exist_ok=True)
        from attrflow.analysis._heads_view import write_page

        written = [directory / "heads.json", directory / "heads.html"]
        _atomic_write_bytes(written[0], (json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n").encode())
        write_page(self.to_html(), written[1])
        if figure_formats:
            try:
                figure = self.plot()
            except MissingDependencyError as exc:
                logger.warning("pruning figure skipped: %s", exc)
            else:
                for fmt in figure_formats:
                    target = directory / f"pruning.{fmt}"
                    figure.savefig(target, dpi=150)
                    written.append(target)
        return written

    def summary(self) -> str:
        """A plain-text report: the accuracy table, the AUC of each method (best first) and, when AttAttr is
        among the methods, its agreement with the others."""
        curve = self.curve
        lines = [
            f"{curve.num_layers} layers x {curve.num_heads} heads; importance from {self.settings.get('examples', '?')} "
            f"examples, accuracy on {curve.num_examples} examples",
            "",
            curve.to_frame().to_string(index=False, float_format=lambda x: f"{x:.4f}"),
            "",
            "area under the accuracy curve:",
        ]
        lines += [f"  {method:<10} {auc:.4f}" for method, auc in sorted(curve.auc.items(), key=lambda item: -item[1])]
        if "attattr" in self.importances and len(self.importances) > 1:
            lines += ["", "agreement with attattr (Pearson / Spearman over heads):"]
            for method, importance in self.importances.items():
                if method != "attattr":
                    c = self.importances["attattr"].correlation(importance)
                    lines.append(f"  {method:<10} {c.pearson:.3f} / {c.spearman:.3f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"HeadsAnalysis(methods={list(self.importances)}, {self.curve!r})"


def _finite(value: Any) -> Any:
    """JSON cannot hold NaN: undefined correlations (constant maps) become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def analyze_heads(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    eval_dataset: Sequence[Any] | None = None,
    *,
    methods: Sequence[str] = METHODS,
    examples: int | None = DEFAULT_EXAMPLES,
    eval_examples: int | None = None,
    selection: Selection = "random",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    target: Target = "gold",
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    taylor_objective: TaylorObjective = "loss",
    seed: int = 0,
    top_k: int = 5,
    batch_size: int | None = None,
    eval_batch_size: int = 64,
    out_dir: str | os.PathLike[str] | None = None,
    engine: Engine = "local",
    address: str | None = None,
    num_workers: int | None = None,
    examples_per_batch: int = 8,
    device: str | None = None,
    progress: bool = True,
) -> HeadsAnalysis:
    """Head importance of several methods and their pruning curves: the paper's §4.1–4.2 study in one call.

    The per-example scores of every data method are computed in one pass through the dataset runner (one
    :class:`~attrflow.analysis.heads.HeadScoresTask` computing all of them; resumable in ``out_dir``), the
    importance maps aggregated from that table, and each ranking pruned on the evaluation set.

    Args:
        model: an :class:`attrflow.Model`, a built-in name or a checkpoint directory (``engine="ray"`` needs a
            name or directory for the workers; this process also loads it, to evaluate the pruned model).
        dataset: ``examples`` of these give the importance (the official script: 200 dev examples).
        eval_dataset: where accuracy is measured (default ``dataset``, as the official script evaluates on the
            whole dev set): ``eval_examples`` of it (default all).
        selection: how ``examples`` and ``eval_examples`` are picked: ``"random"`` (seeded by ``seed``) or
            ``"first"`` (see :func:`~attrflow.analysis.heads.select_examples`).
        methods: any of ``"attattr"``, ``"taylor"``, ``"attention"``, ``"random"``.
        fractions: fractions of heads to prune.
        seed: seed of the example samples and of the ``"random"`` ranking.
        target, steps, rule, taylor_objective, top_k, batch_size: as in
            :func:`~attrflow.analysis.heads.head_importance`.
        eval_batch_size: examples per forward pass in the evaluation (speed only).
        out_dir: the run directory of the per-example table (default: temporary).
        engine, address, num_workers, examples_per_batch: where the per-example work runs.
        device: device of a model loaded from a name or path.
        progress: show progress bars.

    Returns:
        The :class:`HeadsAnalysis`; ``.save(dir)`` writes ``heads.json``, ``heads.html`` and ``pruning.png``.
    """
    chosen = list(dict.fromkeys(methods))
    if not chosen:
        raise InvalidInputError("methods is empty; choose from " + ", ".join(METHODS))
    for method in chosen:
        _check_choice("methods", method, METHODS)
    loaded = resolve_model(model, device=device)
    data_methods = [m for m in chosen if m in DATA_METHODS]
    importances: dict[str, HeadImportance] = {}
    run_settings: dict[str, Any] = {}
    subset: Sequence[Any] = []
    by_method: dict[str, HeadImportance] = {}
    if data_methods:
        subset = select_examples(dataset, examples, selection=selection, seed=seed)
        by_method, run_settings = data_importances(
            # the local engine reuses the model loaded here; Ray workers load their own replicas from the name
            loaded if engine == "local" else (model if isinstance(model, Model) else str(model)),
            subset,
            data_methods,
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
            consolidate=True,
        )
    for method in chosen:
        importances[method] = (
            by_method[method]
            if method in by_method
            else random_importance(loaded.num_layers, loaded.num_heads, seed=seed)
        )
    evaluation = select_examples(
        eval_dataset if eval_dataset is not None else dataset, eval_examples, selection=selection, seed=seed
    )
    curve = prune_curve(
        loaded,
        evaluation,
        importances,
        fractions=fractions,
        batch_size=eval_batch_size,
        progress=progress,
        checkpoint=None if out_dir is None else Path(out_dir) / "pruning-progress.json",
    )
    settings = {
        **run_settings,
        "model": loaded.name,
        "methods": chosen,
        "examples": len(subset),
        "eval_examples": curve.num_examples,
        "selection": selection,
        "target": target,
        "seed": seed,
    }
    return HeadsAnalysis(importances, curve, settings)


def heads_demo(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    eval_dataset: Sequence[Any] | None = None,
    *,
    examples: int = 16,
    eval_examples: int = 160,
    methods: Sequence[str] = METHODS,
    fractions: Sequence[float] = DEMO_FRACTIONS,
    steps: int = 4,
    progress: bool = False,
) -> HeadsAnalysis:
    """A small, quick :func:`analyze_heads` for demos: few examples, few quadrature points, 5 pruning fractions.

    The cost is about ``examples`` attributions plus ``(len(methods) · (len(fractions) − 2) + 2) · eval_examples``
    forward passes (identical masks are evaluated once). Print ``.summary()`` or write ``.save(dir)``.
    """
    return analyze_heads(
        model,
        dataset,
        eval_dataset,
        methods=methods,
        examples=examples,
        eval_examples=eval_examples,
        fractions=fractions,
        steps=steps,
        progress=progress,
    )
