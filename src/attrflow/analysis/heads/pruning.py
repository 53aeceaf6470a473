"""Head pruning curves (Hao et al., AAAI 2021, §4.2; official ``prune_head_with_attr.py``).

For each fraction f of 0, 0.1, …, 1.0, the ``⌊f · L · H⌋`` least important heads of a ranking are gated off
together (all layers at once, no re-training: their attention probabilities are multiplied by 0, so their output
is zero before the output projection while bias and residual still pass) and the classifier's accuracy is measured
on an evaluation set. A better ranking keeps accuracy longer; the area under the accuracy curve summarises it.
:func:`prune_curve` keeps the accuracy of every evaluated pruned set in a resumable checkpoint.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import isnan, nan
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from attrflow.analysis.heads.importance import HeadImportance, pruned_count
from attrflow.analysis.heads.rankings import colour_of, label_of
from attrflow.analysis.heads.task import gold_label, resolve_model
from attrflow.analysis.heads.views import CurveLine, PruningChart
from attrflow.data.sampling import as_example
from attrflow.errors import InvalidInputError
from attrflow.models import Model
from attrflow.storage import atomic_write_text, load_result, register_result_type, write_result
from attrflow.validation import check_int

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_FRACTIONS",
    "DEMO_FRACTIONS",
    "PruningCurve",
    "evaluation_items",
    "prune_curve",
    "pruned_accuracy",
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

    kind: ClassVar[str] = "PruningCurve"

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

    def chart(self) -> PruningChart:
        """What the page and the figure show (plain data for :mod:`attrflow.viz.heads`)."""
        auc = self.auc
        lines = [
            CurveLine(method, label_of(method), list(values), auc[method], colour_of(method))
            for method, values in self.accuracy.items()
        ]
        return PruningChart(
            fractions=list(self.fractions),
            num_pruned=list(self.num_pruned),
            lines=lines,
            majority_accuracy=self.majority_accuracy,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            num_examples=self.num_examples,
            settings=dict(self.settings),
        )

    def plot(self, *, ax: Axes | None = None) -> Figure:
        """Accuracy against the pruned fraction, one line per method, AUC in the legend."""
        from attrflow.viz.heads import plot_curve

        return plot_curve(self.chart(), ax=ax)

    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        importances: Mapping[str, HeadImportance] | None = None,
        title: str | None = None,
        back: tuple[str, str] | None = None,
    ) -> str:
        """A self-contained HTML page: the curves (inline SVG), the table with AUCs, and the importance grids
        when ``importances`` are given. Also written to ``path`` when given."""
        from attrflow.viz.heads import render_heads_page
        from attrflow.viz.page import write_page

        grids = [importance.grid() for importance in (importances or {}).values()]
        html = render_heads_page(title or "attrflow: head pruning", chart=self.chart(), grids=grids, back=back)
        if path is not None:
            write_page(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.heads import curve_svg

        return curve_svg(self.chart())

    def __repr__(self) -> str:
        aucs = ", ".join(f"{m}={a:.3f}" for m, a in self.auc.items())
        return f"PruningCurve(examples={self.num_examples}, fractions={len(self.fractions)}, auc: {aucs})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PruningCurve):
            return NotImplemented
        same_majority = self.majority_accuracy == other.majority_accuracy or (
            isnan(self.majority_accuracy) and isnan(other.majority_accuracy)
        )
        return same_majority and self.to_parts()[0] == other.to_parts()[0] and self.accuracy == other.accuracy

    # ------------------------------------------------------------------ serialisation
    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)`` for :func:`attrflow.storage.write_result` (accuracy ``[methods, fractions]``)."""
        meta = {
            "fractions": list(self.fractions),
            "num_pruned": list(self.num_pruned),
            "methods": list(self.methods),
            "num_examples": self.num_examples,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "orders": {m: list(o) for m, o in self.orders.items()},
            "settings": dict(self.settings),
            "majority_accuracy": None if isnan(self.majority_accuracy) else self.majority_accuracy,
        }
        accuracy = torch.tensor([list(self.accuracy[m]) for m in self.methods], dtype=torch.float64)
        return meta, {"accuracy": accuracy.view(len(self.methods), len(self.fractions))}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one ``.safetensors`` file (reload with :func:`attrflow.load_result`)."""
        meta, tensors = self.to_parts()
        return write_result(path, self.kind, meta, tensors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PruningCurve:
        """Read a file written by :meth:`save`."""
        result = load_result(path)
        if not isinstance(result, cls):
            raise InvalidInputError(f"{path} holds a {type(result).__name__}, not a PruningCurve")
        return result

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> PruningCurve:
        """Rebuild from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""
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
    """Tokenise a labelled dataset once (:meth:`attrflow.Model.tokenize`): ``(items for Model.predict_batch,
    gold labels [N])``."""
    items: list[dict[str, list[int]]] = []
    labels = np.empty(len(dataset), dtype=np.int64)
    for index in range(len(dataset)):
        example = as_example(dataset[index])
        labels[index] = gold_label(example, model.num_outputs)
        items.append(model.tokenize(example.text, example.text_pair).features())
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
        batch_size: rows (examples) per forward pass (speed only).
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
    loaded = resolve_model(model, device=device)
    loaded.check_dataset(dataset)
    check_int("batch_size", batch_size, minimum=1)
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
    accuracy_of = _evaluate(loaded, items, labels, unique, batch_size, progress_file, progress=progress)
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


def pruned_accuracy(
    model: Model,
    items: Sequence[Mapping[str, Sequence[int]]],
    labels: np.ndarray,
    pruned: frozenset[int],
    *,
    batch_size: int = 64,
) -> float:
    """Accuracy of ``model`` on tokenised ``items`` with the heads ``pruned`` (flat ``layer * H + head``) gated off."""
    L, H = model.num_layers, model.num_heads
    mask = torch.ones(L * H)
    mask[sorted(pruned)] = 0.0
    with model.gate_heads(mask.view(L, H)):
        probabilities = model.predict_batch(items, batch_size=batch_size)
    return float((probabilities.argmax(dim=-1).numpy() == labels).mean())


def _evaluate(
    model: Model,
    items: Sequence[Mapping[str, Sequence[int]]],
    labels: np.ndarray,
    unique: Sequence[frozenset[int]],
    batch_size: int,
    progress_file: _PruningProgress | None,
    *,
    progress: bool,
) -> dict[frozenset[int], float]:
    """The accuracy of every pruned set, those already in the checkpoint taken from it."""
    from tqdm.auto import tqdm

    accuracy_of: dict[frozenset[int], float] = {}
    if progress_file is not None:
        wanted = set(unique)
        accuracy_of.update({pruned: acc for pruned, acc in progress_file.done.items() if pruned in wanted})
    bar = tqdm(total=len(unique), initial=len(accuracy_of), desc="pruning", unit="mask", disable=not progress)
    try:
        for pruned in unique:
            if pruned in accuracy_of:
                continue
            accuracy_of[pruned] = pruned_accuracy(model, items, labels, pruned, batch_size=batch_size)
            if progress_file is not None:
                progress_file.add(pruned, accuracy_of[pruned])
            bar.update(1)
    finally:
        bar.close()
    return accuracy_of


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
        atomic_write_text(self.path, json.dumps({"identity": self.identity, "masks": masks}))
