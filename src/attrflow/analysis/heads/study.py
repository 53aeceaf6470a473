"""The whole head study (Hao et al., AAAI 2021, §4.1–4.2): the importance of several rankings and their pruning
curves on one model, what ``attrflow heads`` runs and writes.

:func:`analyze_heads` computes every data ranking in one pass through the dataset runner (one
:class:`~attrflow.analysis.heads.HeadScoresTask`, resumable in the run directory), aggregates the importance maps
from that table and prunes each ranking on the evaluation set (resumable too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from attrflow.analysis.heads.importance import (
    DEFAULT_EXAMPLES,
    HeadImportance,
    data_importances,
    random_importance,
)
from attrflow.analysis.heads.pruning import DEFAULT_FRACTIONS, DEMO_FRACTIONS, PruningCurve, prune_curve
from attrflow.analysis.heads.rankings import (
    check_rankings,
    descriptions,
    get_ranking,
    ranking_names,
    reference_name,
)
from attrflow.analysis.heads.task import HeadScoresTask, TaylorObjective, resolve_model
from attrflow.data.sampling import sample
from attrflow.errors import InvalidInputError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, Steps
from attrflow.methods.quadrature import Rule
from attrflow.models import Model
from attrflow.runner import RunOptions, resolve_run_options, run_lock
from attrflow.storage import (
    SCHEMA_VERSION,
    atomic_write_json,
    load_result,
    register_result_type,
    write_result,
)
from attrflow.validation import Selection, TargetRule, check_choices, target_rule

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FIGURE_FORMATS", "HeadsAnalysis", "analyze_heads", "heads_demo"]

logger = logging.getLogger(__name__)

FIGURE_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")


def _finite(value: Any) -> Any:
    """JSON cannot hold NaN: undefined correlations (constant maps) become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


@register_result_type
@dataclass(frozen=True, eq=False)
class HeadsAnalysis:
    """Head importance of several rankings and their pruning curves on one model (what ``attrflow heads`` writes).

    ``save(path)`` writes one result file (:func:`attrflow.load_result` gives an equal object back);
    :meth:`export` writes the study's directory: ``heads.json``, ``heads.html`` and the pruning figures.

    Attributes:
        importances: per ranking, its :class:`~attrflow.analysis.heads.HeadImportance`.
        curve: the :class:`~attrflow.analysis.heads.PruningCurve` of every ranking.
        settings: the study's options (model, data, examples, target, steps, ...).
    """

    kind: ClassVar[str] = "HeadsAnalysis"

    importances: Mapping[str, HeadImportance]
    curve: PruningCurve
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HeadsAnalysis):
            return NotImplemented
        return (
            dict(self.importances) == dict(other.importances)
            and self.curve == other.curve
            and dict(self.settings) == dict(other.settings)
        )

    def correlations(self) -> dict[str, dict[str, dict[str, float]]]:
        """Pairwise ``{a: {b: {"pearson": r, "spearman": rho}}}`` between the rankings' importance maps."""
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

    def to_frame(self) -> pd.DataFrame:
        """One row per ranking and head: ``method, layer, head, score, prune_order, auc`` (the AUC of its curve)."""
        import pandas as pd

        auc = self.curve.auc
        frames = []
        for method, importance in self.importances.items():
            frame = importance.to_frame()
            frame.insert(0, "method", method)
            frame["auc"] = auc.get(method, float("nan"))
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ display
    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        title: str | None = None,
        back: tuple[str, str] | None = None,
    ) -> str:
        """The self-contained HTML page: curves, AUC table, importance grids, their correlations and the rankings'
        descriptions. Also written to ``path`` when given."""
        from attrflow.viz.heads import render_heads_page
        from attrflow.viz.page import write_page

        correlations = {
            a: {b: (c["pearson"], c["spearman"]) for b, c in row.items()} for a, row in self.correlations().items()
        }
        known = descriptions()
        html = render_heads_page(
            title or "attrflow: attention heads",
            chart=self.curve.chart(),
            grids=[importance.grid() for importance in self.importances.values()],
            correlations=correlations,
            rankings={name: known[name] for name in self.importances if name in known},
            back=back,
        )
        if path is not None:
            write_page(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.page import iframe

        return iframe(self.to_html(), title="attrflow heads")

    def plot(self, *, ax: Axes | None = None) -> Figure:
        """The pruning curves (see :meth:`PruningCurve.plot`)."""
        return self.curve.plot(ax=ax)

    def summary(self) -> str:
        """A plain-text report: the accuracy table, the AUC of each ranking (best first) and the agreement of the
        paper's ranking (when among them) with the others."""
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
        reference = reference_name(list(self.importances))
        if reference is not None and len(self.importances) > 1:
            lines += ["", f"agreement with {reference} (Pearson / Spearman over heads):"]
            for method, importance in self.importances.items():
                if method != reference:
                    c = self.importances[reference].correlation(importance)
                    lines.append(f"  {method:<10} {c.pearson:.3f} / {c.spearman:.3f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"HeadsAnalysis(methods={list(self.importances)}, {self.curve!r})"

    # ------------------------------------------------------------------ files
    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)`` for :func:`attrflow.storage.write_result`: the parts of every importance map
        (``importance.<i>.<name>``) and of the curve (``curve.<name>``)."""
        meta: dict[str, Any] = {"settings": dict(self.settings), "importances": []}
        tensors: dict[str, torch.Tensor] = {}
        for index, importance in enumerate(self.importances.values()):
            own_meta, own_tensors = importance.to_parts()
            meta["importances"].append(own_meta)
            tensors.update({f"importance.{index}.{name}": tensor for name, tensor in own_tensors.items()})
        curve_meta, curve_tensors = self.curve.to_parts()
        meta["curve"] = curve_meta
        tensors.update({f"curve.{name}": tensor for name, tensor in curve_tensors.items()})
        meta["names"] = list(self.importances)
        return meta, tensors

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> HeadsAnalysis:
        """Rebuild from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""
        importances = {}
        for index, (name, own_meta) in enumerate(zip(meta["names"], meta["importances"], strict=True)):
            prefix = f"importance.{index}."
            own = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
            importances[str(name)] = HeadImportance.from_parts(own_meta, own)
        curve_tensors = {key[len("curve.") :]: value for key, value in tensors.items() if key.startswith("curve.")}
        curve = PruningCurve.from_parts(meta["curve"], curve_tensors)
        return cls(importances, curve, dict(meta.get("settings", {})))

    def save(self, path: str | os.PathLike[str], *, figure_formats: Sequence[str] | None = None) -> Path:
        """Write the study to one ``.safetensors`` file (reload with :func:`attrflow.load_result`).

        Deprecated: given an existing directory (or ``figure_formats``), it exports the study's files into it
        like :meth:`export` and returns the directory; that use stops working in the next release.
        """
        target = Path(path)
        if target.is_dir() or figure_formats is not None or str(path).endswith(("/", os.sep)):
            warnings.warn(
                "HeadsAnalysis.save(directory) is now HeadsAnalysis.export(directory); save(path) writes one result "
                "file. The directory form stops working in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            self.export(target, figure_formats=("png",) if figure_formats is None else figure_formats)
            return target
        meta, tensors = self.to_parts()
        return write_result(target, self.kind, meta, tensors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HeadsAnalysis:
        """Read a file written by :meth:`save`."""
        result = load_result(path)
        if not isinstance(result, cls):
            raise InvalidInputError(f"{path} holds a {type(result).__name__}, not a HeadsAnalysis")
        return result

    def export(self, out_dir: str | os.PathLike[str], *, figure_formats: Sequence[str] = ("png",)) -> list[Path]:
        """Write ``heads.json``, ``heads.html`` and ``pruning.<fmt>`` for each figure format (png, svg, pdf) to
        ``out_dir`` (what ``attrflow heads --out DIR`` writes); the figures need matplotlib (``attrflow[viz]``)
        and are skipped with a warning without it.

        Returns:
            The paths written.
        """
        from attrflow.errors import MissingDependencyError
        from attrflow.viz.page import write_page

        formats = check_choices("figure_formats", figure_formats, FIGURE_FORMATS, empty=True)
        directory = Path(out_dir)
        written = [atomic_write_json(directory / "heads.json", self.to_dict())]
        written.append(write_page(self.to_html(), directory / "heads.html"))
        if formats:
            try:
                figure = self.plot()
            except MissingDependencyError as exc:
                logger.warning("pruning figure skipped: %s", exc)
            else:
                for fmt in formats:
                    target = directory / f"pruning.{fmt}"
                    figure.savefig(target, dpi=150)
                    written.append(target)
        return written


def _study_importances(
    model: Model,
    source: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    chosen: Sequence[str],
    task_options: Mapping[str, Any],
    options: RunOptions,
    *,
    examples: int | None,
    selection: Selection,
    seed: int,
) -> tuple[dict[str, HeadImportance], dict[str, Any], int]:
    """Every chosen ranking's importance: the data rankings from one runner pass, the others drawn without data.

    Returns the importances in the order chosen, the run's settings and the number of examples used.
    """
    data_methods = [m for m in chosen if get_ranking(m).needs_data]
    by_method: dict[str, HeadImportance] = {}
    run_settings: dict[str, Any] = {}
    used = 0
    if data_methods:
        subset = sample(dataset, examples, selection=selection, seed=seed)
        # the local engine reuses the model loaded here; Ray workers load their own replicas from the name
        task_model = model if options.engine == "local" else (source if isinstance(source, Model) else str(source))
        task = HeadScoresTask(task_model, methods=data_methods, **task_options)
        extra = {"selection": selection, "seed": seed}
        by_method, run_settings = data_importances(
            task, subset, data_methods, options, extra_settings=extra, consolidate=True
        )
        used = len(subset)
    importances = {
        method: by_method[method]
        if method in by_method
        else random_importance(model.num_layers, model.num_heads, seed=seed, method=method)
        for method in chosen
    }
    return importances, run_settings, used


def analyze_heads(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    eval_dataset: Sequence[Any] | None = None,
    *,
    methods: Sequence[str] | str | None = None,
    examples: int | None = DEFAULT_EXAMPLES,
    eval_examples: int | None = None,
    selection: Selection = "random",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    target: TargetRule | str = "label",
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    taylor_objective: TaylorObjective = "loss",
    seed: int = 0,
    top_k: int = 5,
    batch_size: int | None = None,
    eval_batch_size: int = 64,
    device: str | None = None,
    run: RunOptions | None = None,
    **legacy_run_options: Any,
) -> HeadsAnalysis:
    """Head importance of several rankings and their pruning curves: the paper's §4.1–4.2 study in one call.

    Args:
        model: an :class:`attrflow.Model`, a built-in name or a checkpoint directory (``engine="ray"`` needs a
            name or directory for the workers; this process also loads it, to evaluate the pruned model).
        dataset: ``examples`` of these give the importance (the official script: 200 dev examples).
        eval_dataset: where accuracy is measured (default ``dataset``, as the official script evaluates on the
            whole dev set): ``eval_examples`` of it (default all).
        methods: registered ranking names (default: every registered ranking,
            :func:`~attrflow.analysis.heads.ranking_names`).
        selection: how ``examples`` and ``eval_examples`` are picked (:func:`attrflow.data.sample`): ``"random"``
            (seeded by ``seed``) or ``"first"``.
        fractions: fractions of heads to prune.
        seed: seed of the example samples and of the ``"random"`` ranking.
        target, steps, rule, taylor_objective, top_k, batch_size, device: as in
            :func:`~attrflow.analysis.heads.head_importance`.
        eval_batch_size: rows (examples) per forward pass in the evaluation (speed only).
        run: where the per-example work runs (:class:`attrflow.RunOptions`); its ``out_dir`` keeps
            the per-example table and the pruning checkpoint (default: temporary), its ``progress`` shows the
            bars. The old separate keywords (``out_dir=``, ``engine=``, ...) still work, deprecated.

    Returns:
        The :class:`HeadsAnalysis`; ``.export(dir)`` writes ``heads.json``, ``heads.html`` and ``pruning.png``.

    Raises:
        InvalidInputError: the model's classes are not the dataset's (their number or names), or a bad option.
        RunLockedError: another process works in the run directory (it is held for the whole study).
    """
    settings: dict[str, Any] = dict(examples=examples, eval_examples=eval_examples, selection=selection)
    settings.update(fractions=fractions, steps=steps, rule=rule, taylor_objective=taylor_objective, seed=seed)
    settings.update(top_k=top_k, batch_size=batch_size, eval_batch_size=eval_batch_size, device=device)
    options = resolve_run_options(run, legacy_run_options, caller="analyze_heads")
    chosen = check_rankings("methods", ranking_names() if methods is None else methods)
    rule_of_target = target_rule(target)
    # the run directory is held for the whole study (scores, pruning), not only while the runner scores
    with contextlib.nullcontext() if options.out_dir is None else run_lock(options.out_dir):
        return _analyze(model, dataset, eval_dataset, chosen, rule_of_target, options, **settings)


def _analyze(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    eval_dataset: Sequence[Any] | None,
    chosen: Sequence[str],
    rule_of_target: TargetRule,
    options: RunOptions,
    *,
    examples: int | None,
    eval_examples: int | None,
    selection: Selection,
    fractions: Sequence[float],
    steps: Steps,
    rule: Rule,
    taylor_objective: TaylorObjective,
    seed: int,
    top_k: int,
    batch_size: int | None,
    eval_batch_size: int,
    device: str | None,
) -> HeadsAnalysis:
    loaded = resolve_model(model, device=device)
    loaded.check_dataset(dataset)
    if eval_dataset is not None and eval_dataset is not dataset:
        loaded.check_dataset(eval_dataset)
    task_options: dict[str, Any] = dict(target=rule_of_target, steps=steps, rule=rule, top_k=top_k)
    task_options.update(taylor_objective=taylor_objective, batch_size=batch_size, device=device)
    importances, run_settings, used = _study_importances(
        loaded, model, dataset, chosen, task_options, options, examples=examples, selection=selection, seed=seed
    )
    evaluation = sample(
        eval_dataset if eval_dataset is not None else dataset, eval_examples, selection=selection, seed=seed
    )
    # the pruning part is resumable too: its checkpoint lives in the run directory
    checkpoint = None if options.out_dir is None else Path(options.out_dir) / "pruning-progress.json"
    curve = prune_curve(
        loaded,
        evaluation,
        importances,
        fractions=fractions,
        batch_size=eval_batch_size,
        progress=options.progress,
        checkpoint=checkpoint,
    )
    settings = {**run_settings, "model": loaded.name, "methods": list(chosen), "examples": used}
    settings.update(eval_examples=curve.num_examples, selection=selection, target=rule_of_target, seed=seed)
    return HeadsAnalysis(importances, curve, settings)


def heads_demo(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    eval_dataset: Sequence[Any] | None = None,
    *,
    examples: int = 16,
    eval_examples: int = 160,
    methods: Sequence[str] | None = None,
    fractions: Sequence[float] = DEMO_FRACTIONS,
    steps: int = 4,
    progress: bool = False,
) -> HeadsAnalysis:
    """A small, quick :func:`analyze_heads` for demos: few examples, few quadrature points, 5 pruning fractions.

    The cost is about ``examples`` attributions plus ``(len(methods) · (len(fractions) − 2) + 2) · eval_examples``
    forward passes (identical masks are evaluated once). Print ``.summary()`` or write ``.export(dir)``.
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
        run=RunOptions(progress=progress),
    )
