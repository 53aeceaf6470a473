"""The result of a trigger attack: accuracy per gold label before and after each trigger, next to the random-token
control (:class:`AttackReport`: save / :func:`attrflow.load_result`, JSON, frame, figure, page)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from attrflow.analysis.triggers._common import OVERALL, keyword_ax
from attrflow.analysis.triggers.patterns import Trigger
from attrflow.storage import atomic_write_json, register_result_type, write_result

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["AttackOutcome", "AttackReport", "accuracies"]


@dataclass(frozen=True)
class AttackOutcome:
    """Accuracy on one gold-label subset, before and after inserting one trigger.

    Attributes:
        trigger: index into :attr:`AttackReport.triggers`.
        label: the gold label's name, or ``"all"`` for every example.
        label_index: the gold class index (-1 for ``"all"``).
        count: examples in the subset.
        accuracy_before: accuracy on the clean inputs.
        accuracy_after: accuracy with the trigger inserted.
        control_accuracies: accuracy with random tokens at the trigger's positions, one per control seed.
    """

    trigger: int
    label: str
    label_index: int
    count: int
    accuracy_before: float
    accuracy_after: float
    control_accuracies: tuple[float, ...] = ()

    @property
    def control_accuracy_after(self) -> float:
        """Mean accuracy over the random controls (nan without controls)."""
        return float(np.mean(self.control_accuracies)) if self.control_accuracies else math.nan

    @property
    def control_std(self) -> float:
        """Sample standard deviation (ddof = 1) over the control seeds (nan with fewer than two)."""
        values = self.control_accuracies
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


@register_result_type
@dataclass(frozen=True)
class AttackReport:
    """What inserting mined triggers does to a classifier's accuracy, next to random tokens at the same places.

    Attributes:
        triggers: the triggers evaluated, strongest pattern first.
        outcomes: one :class:`AttackOutcome` per trigger and gold label, plus ``"all"``.
        label_names: the name of each class index.
        settings: model, dataset, number of examples, selection, control seeds, seed, ratio, ...
        control_tokens: for each trigger, the random word-pieces of each control seed (in seed order).
    """

    triggers: tuple[Trigger, ...]
    outcomes: tuple[AttackOutcome, ...]
    label_names: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    control_tokens: tuple[tuple[tuple[str, ...], ...], ...] = ()

    def label_name(self, index: int) -> str:
        """Name of class ``index`` (the index itself when no names are known)."""
        return self.label_names[index] if 0 <= index < len(self.label_names) else str(index)

    def overall(self) -> list[AttackOutcome]:
        """The outcomes over every evaluation example (label ``"all"``), one per trigger."""
        return [o for o in self.outcomes if o.label == OVERALL]

    # ------------------------------------------------------------------ the CLI's JSON document
    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``attrflow attack`` (``attack.json``); nan becomes None (null).

        ``{"triggers": [{"tokens", "score", "label"}], "results": [{"trigger", "label", "accuracy_before",
        "accuracy_after", "control_accuracy_after", "control_std"}]}``: ``label`` of a trigger is the class its
        source example was predicted as; ``label`` of a result is a gold label's name or ``"all"``.
        """
        return {
            "triggers": [
                {"tokens": list(t.tokens), "score": _json_float(t.score), "label": self.label_name(t.label)}
                for t in self.triggers
            ],
            "results": [
                {
                    "trigger": o.trigger,
                    "label": o.label,
                    "accuracy_before": _json_float(o.accuracy_before),
                    "accuracy_after": _json_float(o.accuracy_after),
                    "control_accuracy_after": _json_float(o.control_accuracy_after),
                    "control_std": _json_float(o.control_std),
                }
                for o in self.outcomes
            ],
        }

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON, atomically (the ``attack.json`` of the CLI). Returns the path."""
        return atomic_write_json(path, self.to_dict())

    # ------------------------------------------------------------------ one result file
    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: triggers, labels, names and settings as JSON; the outcomes' numbers as tensors."""
        outcomes = self.outcomes
        meta = {
            "triggers": [t.to_dict() for t in self.triggers],
            "outcome_labels": [o.label for o in outcomes],
            "label_names": list(self.label_names),
            "settings": dict(self.settings),
            "control_tokens": [[list(draw) for draw in draws] for draws in self.control_tokens],
        }
        tensors = {
            "trigger": torch.tensor([o.trigger for o in outcomes], dtype=torch.int64),
            "label_index": torch.tensor([o.label_index for o in outcomes], dtype=torch.int64),
            "count": torch.tensor([o.count for o in outcomes], dtype=torch.int64),
            "accuracy_before": torch.tensor([o.accuracy_before for o in outcomes], dtype=torch.float64),
            "accuracy_after": torch.tensor([o.accuracy_after for o in outcomes], dtype=torch.float64),
            "control_counts": torch.tensor([len(o.control_accuracies) for o in outcomes], dtype=torch.int64),
            "control_accuracies": torch.tensor(
                [a for o in outcomes for a in o.control_accuracies], dtype=torch.float64
            ),
        }
        return meta, tensors

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> AttackReport:
        """The report :meth:`to_parts` gave (used by :func:`attrflow.load_result`).

        Raises:
            ValueError: the parts do not fit together.
        """
        labels = [str(label) for label in meta["outcome_labels"]]
        columns = {name: tensors[name].tolist() for name in tensors}
        counts = columns["control_counts"]
        names = ("trigger", "label_index", "count", "accuracy_before", "accuracy_after", "control_counts")
        if any(len(columns[name]) != len(labels) for name in names) or sum(counts) != len(
            columns["control_accuracies"]
        ):
            raise ValueError("the outcomes' fields have different lengths")
        triggers = tuple(Trigger.from_dict(t) for t in meta["triggers"])
        controls = iter(columns["control_accuracies"])
        outcomes = []
        for i, label in enumerate(labels):
            if not 0 <= columns["trigger"][i] < len(triggers):
                raise ValueError(f"an outcome names trigger {columns['trigger'][i]} of {len(triggers)}")
            outcomes.append(
                AttackOutcome(
                    trigger=int(columns["trigger"][i]),
                    label=label,
                    label_index=int(columns["label_index"][i]),
                    count=int(columns["count"][i]),
                    accuracy_before=float(columns["accuracy_before"][i]),
                    accuracy_after=float(columns["accuracy_after"][i]),
                    control_accuracies=tuple(float(next(controls)) for _ in range(counts[i])),
                )
            )
        return cls(
            triggers=triggers,
            outcomes=tuple(outcomes),
            label_names=tuple(str(n) for n in meta["label_names"]),
            settings=dict(meta["settings"]),
            control_tokens=tuple(
                tuple(tuple(str(t) for t in draw) for draw in draws) for draws in meta["control_tokens"]
            ),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the report to one result file (safetensors + JSON, atomically); :func:`attrflow.load_result`
        reads it back. Returns the path.

        A path ending in ``.json`` still writes the JSON document of :meth:`to_json`, as before, with a
        DeprecationWarning (that file cannot be loaded back): use :meth:`to_json` for it.
        """
        if Path(path).suffix.lower() == ".json":
            warnings.warn(
                "AttackReport.save('….json') writing the JSON document is deprecated and stops in the next "
                "release: use report.to_json(path) for attack.json, and save(path) for a result file that "
                "attrflow.load_result reads back",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.to_json(path)
        meta, tensors = self.to_parts()
        return write_result(path, type(self).__name__, meta, tensors)

    # ------------------------------------------------------------------ tables and display (attrflow.viz)
    def to_frame(self) -> pd.DataFrame:
        """One row per trigger and gold label: accuracies before, after, after the random control (mean, std and
        one value per seed), and the drops."""
        import pandas as pd

        rows = []
        for o in self.outcomes:
            trigger = self.triggers[o.trigger]
            rows.append(
                {
                    "trigger": o.trigger,
                    "tokens": " ".join(trigger.tokens),
                    "trigger_label": self.label_name(trigger.label),
                    "score": trigger.score,
                    "label": o.label,
                    "count": o.count,
                    "accuracy_before": o.accuracy_before,
                    "accuracy_after": o.accuracy_after,
                    "control_accuracy_after": o.control_accuracy_after,
                    "control_std": o.control_std,
                    "control_accuracies": list(o.control_accuracies),
                    "drop": o.accuracy_before - o.accuracy_after,
                    "control_drop": o.accuracy_before - o.control_accuracy_after,
                }
            )
        return pd.DataFrame(rows)

    def plot(self, _ax: Axes | None = None, /, *, ax: Axes | None = None) -> Figure:
        """Grouped bars per trigger and gold label: accuracy before, with the trigger, with random tokens (± std).

        ``plot(ax)`` with the axes as a positional argument is deprecated: use ``plot(ax=ax)``.
        """
        from attrflow.viz.triggers import plot_attack

        return plot_attack(self, ax=keyword_ax(_ax, ax))

    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        title: str | None = None,
        back: tuple[str, str] | None = None,
    ) -> str:
        """The self-contained HTML page: the triggers with their sources, and the accuracy table with bars; also
        written to ``path`` when given. ``back``: ``(href, text)`` of a link to an index page."""
        from attrflow.viz.page import write_page
        from attrflow.viz.triggers import render_attack

        html = render_attack(self, title=title, back=back)
        if path is not None:
            write_page(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.page import iframe

        return iframe(self.to_html(), height=700, title="adversarial triggers")

    def __repr__(self) -> str:
        parts = [
            f"#{o.trigger} {' '.join(self.triggers[o.trigger].tokens)!r}: {o.accuracy_before:.3f}→{o.accuracy_after:.3f}"
            f" (control {o.control_accuracy_after:.3f})"
            for o in self.overall()
        ]
        return f"AttackReport({len(self.triggers)} triggers; {'; '.join(parts)})"


def accuracies(
    trigger_index: int,
    labels: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    controls: Sequence[np.ndarray],
    names: Sequence[str],
) -> list[AttackOutcome]:
    """The outcomes of one trigger: over every example (``"all"``), then per gold label that occurs.

    Args:
        trigger_index: the trigger's index in the report.
        labels: ``[N]`` gold labels.
        before: ``[N]`` predictions on the clean inputs.
        after: ``[N]`` predictions with the trigger.
        controls: ``[N]`` predictions with random tokens, one array per control seed.
        names: the name of each class.
    """
    subsets = [(OVERALL, -1, np.ones_like(labels, dtype=bool))]
    subsets += [(names[c], c, labels == c) for c in range(len(names)) if bool((labels == c).any())]
    return [
        AttackOutcome(
            trigger=trigger_index,
            label=name,
            label_index=index,
            count=int(mask.sum()),
            accuracy_before=float((before[mask] == labels[mask]).mean()),
            accuracy_after=float((after[mask] == labels[mask]).mean()),
            control_accuracies=tuple(float((c[mask] == labels[mask]).mean()) for c in controls),
        )
        for name, index, mask in subsets
    ]


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
