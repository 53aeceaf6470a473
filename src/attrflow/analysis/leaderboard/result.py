"""The result of :func:`attrflow.leaderboard`: every method's per-example metric values, with the summary
(bootstrap intervals, paired comparisons, sanity flags, cost), the tables, the files and the page."""

from __future__ import annotations

import copy
import functools
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from attrflow.analysis.leaderboard import summary as _summary
from attrflow.analysis.leaderboard.kernel import cascade_mean
from attrflow.analysis.leaderboard.options import METRICS
from attrflow.analysis.leaderboard.stats import Comparison
from attrflow.errors import InvalidInputError, ResultFormatError
from attrflow.storage import (
    SCHEMA_VERSION,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    register_result_type,
    write_result,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.runner import RunResult

__all__ = ["EXTRA_VALUES", "Leaderboard"]

# per-example values kept besides the metrics
EXTRA_VALUES: tuple[str, ...] = (
    "step_comprehensiveness",
    "step_sufficiency",
    "subject_share",
    "seconds",
    "cpu_seconds",
    "memory_mb",
)
_EXAMPLE_FACTS = ("label", "target", "predicted", "probability", "length", "attractors", "naopc_lower", "naopc_upper")
_SPEARMAN = ("spearman_blankout", "spearman_gradient")
_FILE = "leaderboard"


def _matrix(cells: Any, width: int) -> np.ndarray:
    rows = [np.asarray(c, dtype=np.float64) for c in cells]
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        out[i, : min(width, row.size)] = row[:width]
    return out


@register_result_type
@dataclass(frozen=True, eq=False)
class Leaderboard:
    """Which explanation can be trusted: every method on one protocol, per example.

    Attributes:
        methods: the evaluated methods (baselines ``random`` and ``position`` and the references included).
        example_ids: ``[E]`` the examples.
        values: ``{metric: {method: [E]}}`` per-example values of every metric (:data:`METRICS`) and of
            :data:`EXTRA_VALUES` (NaN: not measured on that example — e.g. outside the timing subsample).
        layer_values: ``{spearman metric: {method: [E, L]}}`` per layer, for the per-layer methods.
        curves: ``{"comprehensiveness" | "sufficiency": {method: [E, K]}}`` the ERASER curves per bin.
        sanity: ``{method: [E, D]}`` Spearman with the re-initialised model at each depth of the cascade.
        examples: ``{fact: [E]}`` per-example facts: ``label``, ``target``, ``predicted``, ``probability``,
            ``length``, ``attractors`` (−1: no ground truth), ``naopc_lower/upper``, ``naopc_exact`` (1 exact,
            0 beam, −1 none), ``tree.*`` (the tree experiment's drops and interaction counts).
        settings: model, dataset and every option the numbers depend on.
    """

    methods: tuple[str, ...]
    example_ids: np.ndarray
    values: Mapping[str, Mapping[str, np.ndarray]]
    layer_values: Mapping[str, Mapping[str, np.ndarray]]
    curves: Mapping[str, Mapping[str, np.ndarray]]
    sanity: Mapping[str, np.ndarray]
    examples: Mapping[str, np.ndarray]
    settings: Mapping[str, Any] = field(default_factory=dict)

    kind = "Leaderboard"

    def __post_init__(self) -> None:
        size = len(self.example_ids)
        for metric, table in self.values.items():
            for method, column in table.items():
                if column.shape != (size,):
                    raise InvalidInputError(f"values[{metric}][{method}] must be [{size}]")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_run(cls, run: RunResult | str | os.PathLike[str], *, dataset: str | None = None) -> Leaderboard:
        """Aggregate a leaderboard run directory (it may still be running: the stored examples are used)."""
        from attrflow.analysis.leaderboard.task import TASK_VERSION
        from attrflow.runner import open_run

        if isinstance(run, (str, os.PathLike)):
            run = open_run(run)
        settings = dict(run.settings)
        if run.metadata.get("task") != "leaderboard" or settings.get("version") != TASK_VERSION:
            raise ResultFormatError(
                f"{run.out_dir} is not a leaderboard run of this attrflow (run it into a new directory)"
            )
        frame = run.to_pandas()
        methods = tuple(settings["methods"])
        size = len(frame)
        per_layer = set(settings.get("per_layer", []))
        depths = len(settings.get("sanity_depths", []))
        num_layers = max((len(c) for m in per_layer for c in frame[f"layers_spearman_blankout.{m}"]), default=0)
        values = {
            metric: {m: frame[f"{metric}.{m}"].to_numpy(dtype=np.float64) for m in methods}
            for metric in (*(item.name for item in METRICS), *EXTRA_VALUES)
        }
        sanity = {m: _matrix(frame[f"sanity.{m}"], depths) for m in methods}
        # the sanity metric from the stored cascade (the same rule as the kernel's, whatever version wrote the run)
        values["sanity_spearman"] = {m: np.array([cascade_mean(row) for row in sanity[m]]) for m in methods}
        layer_values = {
            metric: {m: _matrix(frame[f"layers_{metric}.{m}"], num_layers) for m in methods if m in per_layer}
            for metric in _SPEARMAN
        }
        bins = len(settings["bins"])
        curves = {
            c: {m: _matrix(frame[f"{c}.{m}"], bins) for m in methods} for c in ("comprehensiveness", "sufficiency")
        }
        search = frame["naopc_search"].to_numpy()
        examples = {k: frame[k].to_numpy(dtype=np.float64) for k in _EXAMPLE_FACTS}
        examples["naopc_exact"] = np.where(search == "exact", 1.0, np.where(search == "beam", 0.0, -1.0))
        for key in ("count", *_summary.TREE_CONDITIONS, "probability"):
            examples[f"tree.{key}"] = frame[f"tree.{key}"].to_numpy(dtype=np.float64)
        report = {
            **settings,
            "dataset": dataset,
            "num_examples": size,
            "num_layers": num_layers,
            "accuracy": _accuracy(examples),
            "resamples": 1000,
            "level": 0.95,
            "bootstrap_seed": 0,
            "sanity_threshold": settings.get("sanity_threshold", 0.8),
        }
        return cls(
            methods=methods,
            example_ids=frame["example_id"].to_numpy(dtype=np.int64),
            values=values,
            layer_values=layer_values,
            curves=curves,
            sanity=sanity,
            examples=examples,
            settings=report,
        )

    # ------------------------------------------------------------------ numbers
    @property
    def num_examples(self) -> int:
        """Number of evaluated examples E."""
        return len(self.example_ids)

    def method_summary(self, method: str) -> dict[str, Any]:
        """One method's entry of ``leaderboard.json`` (see :func:`~attrflow.analysis.leaderboard.summary.method_summary`)."""
        if method not in self.methods:
            raise InvalidInputError(f"no method {method!r} in this leaderboard; it has {', '.join(self.methods)}")
        values = {metric: table[method] for metric, table in self.values.items() if method in table}
        layers = {metric: table[method] for metric, table in self.layer_values.items() if method in table}
        sanity = self.sanity.get(method)
        return _summary.method_summary(method, values, layers, sanity, self.examples["attractors"], self.settings)

    def comparisons(self, *, alpha: float = 0.05) -> list[Comparison]:
        """Every pair of methods on every metric: Wilcoxon signed-rank on the common examples, Holm-corrected per
        metric; ``winner`` is set only where the corrected p-value is below ``alpha``."""
        return _summary.comparisons(self.values, self.methods, alpha=alpha)

    def tree_summary(self) -> dict[str, Any]:
        """The attribution tree's masking experiment (Hao et al. §4.3) over the sample, with intervals."""
        tree = {key.split(".", 1)[1]: v for key, v in self.examples.items() if key.startswith("tree.")}
        return _summary.tree_summary(tree, self.settings)

    def flagged(self) -> list[str]:
        """The methods whose scores barely change when the model's top layers are re-initialised (median over
        examples of the cascade's mean Spearman above ``settings["sanity_threshold"]``, Adebayo et al. 2018)."""
        return [m for m in self.methods if self.method_summary(m).get("sanity_flagged")]

    def naopc_search(self) -> dict[str, int]:
        """How many examples got exact normalisation limits, how many beam-search ones."""
        exact = self.examples["naopc_exact"]
        return {"exact": int(np.sum(exact == 1)), "beam": int(np.sum(exact == 0))}

    def to_dict(self) -> dict[str, Any]:
        """``leaderboard.json``: ``{"model", "dataset", "examples", "methods": {NAME: {METRIC: {"mean", "ci", "n"},
        ..., "seconds_per_example", "peak_memory_mb"}}, "comparisons": [...], "tree", "naopc", "sanity", ...}``.

        Computed once (the bootstrap and the tests take a moment on large runs); each call returns a copy."""
        return copy.deepcopy(self._summary)

    @functools.cached_property
    def _summary(self) -> dict[str, Any]:
        settings = json.loads(json.dumps(dict(self.settings), default=str))
        for key in ("naopc_ids", "sanity_ids", "timing_ids"):
            settings[key] = len(settings.get(key, []))
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.settings.get("model"),
            "dataset": self.settings.get("dataset"),
            "examples": self.num_examples,
            "accuracy": self.settings.get("accuracy"),
            "methods": {m: self.method_summary(m) for m in self.methods},
            "comparisons": [c.to_dict() for c in self.comparisons()],
            "tree": self.tree_summary(),
            "naopc": {
                **self.naopc_search(),
                "exact_max": settings.get("exact_max"),
                "beam_width": settings.get("beam_width"),
            },
            "sanity": {
                "depths": settings.get("sanity_depths"),
                "threshold": settings.get("sanity_threshold"),
                "flagged": self.flagged(),
            },
            "metrics": {
                m.name: {"title": m.title, "higher_is_better": m.higher_is_better, "description": m.description}
                for m in METRICS
            },
            "aopc_curves": self.mean_curves(),
            "settings": settings,
        }

    def mean_curves(self) -> dict[str, Any]:
        """The ERASER curves averaged over examples: ``{"bins", "comprehensiveness": {method: [K]}, ...}``."""
        out: dict[str, Any] = {"bins": list(self.settings.get("bins", []))}
        for name, table in self.curves.items():
            out[name] = {m: [_json(v) for v in _nanmean(curves)] for m, curves in table.items()}
        return out

    def table(self) -> pd.DataFrame:
        """One row per method, one column per metric (mean), plus the cost."""
        import pandas as pd

        rows = {}
        for method in self.methods:
            entry = self.method_summary(method)
            row = {m.name: (entry.get(m.name) or {}).get("mean") for m in METRICS}
            row["seconds_per_example"] = entry["seconds_per_example"]
            row["peak_memory_mb"] = entry["peak_memory_mb"]
            rows[method] = row
        frame = pd.DataFrame.from_dict(rows, orient="index").astype(float)
        frame.index.name = "method"
        return frame

    def to_frame(self) -> pd.DataFrame:
        """Long form, one row per example, method and metric: ``example_id, method, metric, value`` (NaN: not
        measured), with the per-layer Spearman values as ``spearman_blankout@L1``, ... (what the Parquet holds)."""
        import pandas as pd

        parts = []
        ids = self.example_ids
        for metric, table in self.values.items():
            for method, column in table.items():
                parts.append(pd.DataFrame({"example_id": ids, "method": method, "metric": metric, "value": column}))
        for metric, table in self.layer_values.items():
            for method, matrix in table.items():
                for layer in range(matrix.shape[1]):
                    name = f"{metric}@L{layer + 1}"
                    parts.append(
                        pd.DataFrame({"example_id": ids, "method": method, "metric": name, "value": matrix[:, layer]})
                    )
        if not parts:
            return pd.DataFrame(columns=["example_id", "method", "metric", "value"])
        return pd.concat(parts, ignore_index=True)

    def to_markdown(self, *, digits: int = 2) -> str:
        """The leaderboard as a Markdown table to paste into a paper: mean [95 % interval] per metric."""
        columns = [m for m in METRICS if any(np.isfinite(self.values[m.name][x]).any() for x in self.methods)]
        arrows = {True: "↑", False: "↓"}
        head = ["method", *(f"{m.title} {arrows[m.higher_is_better]}" for m in columns), "s / example", "MB"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method in self.methods:
            entry = self.method_summary(method)
            cells = [_summary.interval_text(entry.get(m.name), digits) for m in columns]
            seconds, memory = entry["seconds_per_example"], entry["peak_memory_mb"]
            cost = ["n/a" if seconds is None else f"{seconds:.3g}", "n/a" if memory is None else f"{memory:.3g}"]
            flag = " ⚠" if entry.get("sanity_flagged") else ""
            lines.append("| " + " | ".join([f"{method}{flag}", *cells, *cost]) + " |")
        lines.append("")
        lines.append(
            f"{self.num_examples} examples, model {self.settings.get('model')}, dataset {self.settings.get('dataset')}; "
            f"mean [95 % bootstrap interval]; ⚠: fails the randomisation sanity check (median ρ > "
            f"{self.settings.get('sanity_threshold', 0.8)}); cost: median over the timed examples."
        )
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """A plain-text summary (what ``attrflow leaderboard`` prints)."""
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_columns", 20):
            table = self.table().to_string(float_format=lambda x: f"{x:.3f}")
        flagged = self.flagged()
        lines = [
            f"Leaderboard: {self.num_examples} examples, model {self.settings.get('model')}, dataset "
            f"{self.settings.get('dataset')}",
            table,
            f"sanity check failed (scores barely change with re-initialised top layers): {', '.join(flagged) or 'none'}",
        ]
        tree = self.tree_summary()
        if tree.get("examples"):
            drops = tree["drops"]
            lines.append(
                "attribution tree: drop when masking its interactions "
                + ", ".join(f"{c} {_summary.interval_text(drops[c], 3)}" for c in _summary.TREE_CONDITIONS)
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------ display (attrflow.viz)
    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
        """The self-contained, sortable page; written to ``path`` when given."""
        from attrflow.viz.leaderboard import render_leaderboard_page

        html = render_leaderboard_page(self.to_dict(), title=title)
        if path is not None:
            atomic_write_text(path, html)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.page import iframe

        return iframe(self.to_html(), height=1000)

    def plot(self, kind: str = "spearman", *, ax: Axes | None = None) -> Figure:
        """A matplotlib figure: ``"spearman"`` (per layer, with blank-out), ``"aopc"`` (comprehensiveness curves),
        ``"cost"`` (seconds per example against normalised comprehensiveness) or ``"sanity"`` (the cascade)."""
        from attrflow.viz.leaderboard import plot_leaderboard

        return plot_leaderboard(self.to_dict(), kind, ax=ax)

    def __repr__(self) -> str:
        return f"Leaderboard(examples={self.num_examples}, methods={list(self.methods)})"

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to one ``.safetensors`` file (reload with :func:`attrflow.load_result`)."""
        meta, tensors = self.to_parts()
        return write_result(Path(path), self.kind, meta, tensors)

    def write_parquet(self, path: str | os.PathLike[str]) -> Path:
        """:meth:`to_frame` as Parquet (written atomically)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(self.to_frame(), preserve_index=False), buffer)
        return atomic_write_bytes(path, buffer.getvalue())

    def export(self, directory: str | os.PathLike[str], *, figures: bool = True) -> Path:
        """Write ``leaderboard.json``, ``leaderboard.parquet``, ``leaderboard.html``, ``leaderboard.md``,
        ``leaderboard.safetensors`` and, with ``figures`` (matplotlib), PNG and SVG figures into ``directory``."""
        target = Path(directory)
        atomic_write_json(target / f"{_FILE}.json", self.to_dict())
        self.write_parquet(target / f"{_FILE}.parquet")
        atomic_write_text(target / f"{_FILE}.md", self.to_markdown())
        self.save(target / f"{_FILE}.safetensors")
        self.to_html(target / f"{_FILE}.html")
        if figures:
            from attrflow.viz.plots import save_figure

            for kind in ("spearman", "aopc", "cost", "sanity"):
                figure = self.plot(kind)
                for suffix in ("png", "svg"):
                    save_figure(figure, target / f"{_FILE}_{kind}.{suffix}")
        return target

    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: what :meth:`save` stores."""

        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.tensor(np.ascontiguousarray(values))

        tensors = {"example_ids": torch.tensor(np.asarray(self.example_ids, dtype=np.int64))}
        for group, tables in (("values", self.values), ("layers", self.layer_values), ("curves", self.curves)):
            for metric, table in tables.items():
                tensors.update({f"{group}/{metric}/{m}": tensor(v) for m, v in table.items()})
        tensors.update({f"sanity/{m}": tensor(v) for m, v in self.sanity.items()})
        tensors.update({f"examples/{k}": tensor(v) for k, v in self.examples.items()})
        meta = {
            "methods": list(self.methods),
            "groups": {
                "values": {k: list(v) for k, v in self.values.items()},
                "layers": {k: list(v) for k, v in self.layer_values.items()},
                "curves": {k: list(v) for k, v in self.curves.items()},
            },
            "sanity": list(self.sanity),
            "examples": list(self.examples),
            "settings": json.loads(json.dumps(dict(self.settings), default=str)),
        }
        return meta, tensors

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Leaderboard:
        """Rebuild from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""

        def group(name: str, prefix: str) -> dict[str, dict[str, np.ndarray]]:
            return {
                k: {m: tensors[f"{prefix}/{k}/{m}"].numpy() for m in methods}
                for k, methods in meta["groups"][name].items()
            }

        return cls(
            methods=tuple(meta["methods"]),
            example_ids=tensors["example_ids"].numpy(),
            values=group("values", "values"),
            layer_values=group("layers", "layers"),
            curves=group("curves", "curves"),
            sanity={m: tensors[f"sanity/{m}"].numpy() for m in meta["sanity"]},
            examples={k: tensors[f"examples/{k}"].numpy() for k in meta["examples"]},
            settings=dict(meta.get("settings", {})),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Leaderboard:
        """Load a leaderboard written by :meth:`save` or :meth:`export` (give the file or the directory)."""
        from attrflow.storage import load_result

        source = Path(path)
        if source.is_dir():
            source = source / f"{_FILE}.safetensors"
        result = load_result(source)
        if not isinstance(result, cls):
            raise ResultFormatError(f"{source} holds a {type(result).__name__}, not a Leaderboard")
        return result


def _nanmean(curves: np.ndarray) -> np.ndarray:
    finite = np.isfinite(curves)
    counts = finite.sum(axis=0)
    sums = np.where(finite, curves, 0.0).sum(axis=0)
    mean: np.ndarray = np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)
    return mean


def _json(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _accuracy(examples: Mapping[str, np.ndarray]) -> float | None:
    labels, predicted = examples["label"], examples["predicted"]
    labelled = labels >= 0
    if not labelled.any():
        return None
    value = float(np.mean(predicted[labelled] == labels[labelled]))
    return None if math.isnan(value) else value
