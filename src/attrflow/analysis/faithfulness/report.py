"""The result of :func:`attrflow.faithfulness`: per-example correlations and erasure curves, with the tables,
the JSON summary, figures and a page (rendered by :mod:`attrflow.viz.faithfulness`).

Layer columns are named ``L1 … LL`` as in Abnar & Zuidema's tables: ``L1`` is the first layer (index 0).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from attrflow.analysis.faithfulness.metrics import spearman
from attrflow.errors import InvalidInputError, ResultFormatError
from attrflow.storage import SCHEMA_VERSION, atomic_write_json, atomic_write_text, register_result_type, write_result

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.runner import RunResult

__all__ = ["FaithfulnessReport", "NanPolicy"]

NanPolicy = Literal["omit", "zero"]
JSON_FILE = "faithfulness.json"
REPORT_FILE = "faithfulness.safetensors"
HTML_FILE = "faithfulness.html"


def nan_stats(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, population std and count of the non-NaN values along ``axis`` (NaN where none)."""
    count = np.sum(~np.isnan(values), axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=axis) if values.size else np.full(values.shape[1:], np.nan)
        std = np.nanstd(values, axis=axis) if values.size else np.full(values.shape[1:], np.nan)
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64), np.asarray(count)


def paper_number(value: float) -> str:
    """``0.69`` → ``.69``, ``-0.11`` → ``−.11`` (the papers' style)."""
    if math.isnan(value):
        return "n/a"
    text = f"{value:.2f}"
    sign = "−" if text.startswith("-") else ""
    text = text.lstrip("-")
    return sign + (text[1:] if text.startswith("0.") else text)


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# ---------------------------------------------------------------------------------------------- aggregation
def _correlations(
    method_scores: Sequence[np.ndarray], truth: Sequence[np.ndarray], masks: Sequence[np.ndarray], per_layer: bool
) -> np.ndarray:
    """Per-example Spearman of a method with a reference: ``[E, L]`` for per-layer scores, else ``[E]``."""
    if per_layer:
        rows = [
            [spearman(matrix[row][mask], ref[mask]) for row in range(matrix.shape[0])]
            for matrix, ref, mask in zip(method_scores, truth, masks, strict=True)
        ]
        width = method_scores[0].shape[0] if method_scores else 0
        return np.array(rows, dtype=np.float64).reshape(len(method_scores), width)
    return np.array(
        [spearman(v[mask], ref[mask]) for v, ref, mask in zip(method_scores, truth, masks, strict=True)],
        dtype=np.float64,
    )


def _frame_scores(frame: Any, method: str, per_layer: bool, absolute: bool) -> list[np.ndarray]:
    def convert(cell: Any) -> np.ndarray:
        values = np.stack([np.asarray(r, dtype=np.float64) for r in cell]) if per_layer else np.asarray(cell, float)
        return np.abs(values) if absolute else values

    return [convert(cell) for cell in frame[f"scores.{method}"]]


def _curves(frame: Any, prefix: str, methods: Sequence[str], bins: int) -> dict[str, np.ndarray]:
    size = len(frame)
    return {
        m: np.array([np.asarray(v, dtype=np.float64) for v in frame[f"{prefix}.{m}"]]).reshape(size, bins)
        for m in methods
    }


def _reports(frame: Any, reports: Mapping[str, Sequence[str]]) -> dict[str, dict[str, np.ndarray]]:
    return {
        m: {name: frame[f"report.{m}.{name}"].to_numpy(dtype=np.float64) for name in names}
        for m, names in reports.items()
    }


def _accuracy(frame: Any) -> float | None:
    labels = frame["label"].to_numpy()
    labelled = labels >= 0
    if not labelled.any():
        return None
    return float(np.mean(frame["predicted"].to_numpy()[labelled] == labels[labelled]))


@register_result_type
@dataclass(frozen=True, eq=False)
class FaithfulnessReport:
    """Faithfulness of token-scoring methods on a dataset (Abnar & Zuidema, ACL 2020; ERASER AOPC).

    Attributes:
        layers: the model layers (0-based) of the Spearman tables; column ``L{l+1}``.
        methods: the evaluated per-layer methods, with a Spearman row per layer.
        references: the ground truths (e.g. ``blankout``, ``gradient_l2``).
        aopc_methods: every method with erasure curves.
        bins: the AOPC fractions k.
        example_ids: ``[E]`` the evaluated examples.
        spearman: ``{reference: {method: [E, len(layers)]}}`` per-example Spearman correlations (NaN where a
            vector is constant).
        token_spearman: ``{reference: {method: [E]}}`` the same for the single-vector methods.
        comprehensiveness: ``{method: [E, K]}`` ``p_y(x) − p_y(x without the top-k)`` per bin.
        sufficiency: ``{method: [E, K]}`` ``p_y(x) − p_y(only the top-k)`` per bin.
        reports: ``{method: {name: [E]}}`` the numbers methods report about their own accuracy (e.g. the
            |completeness gap| of AttAttr and integrated gradients, the gradient's cancellation).
        settings: model, dataset and every option the numbers depend on.
    """

    layers: tuple[int, ...]
    methods: tuple[str, ...]
    references: tuple[str, ...]
    aopc_methods: tuple[str, ...]
    bins: tuple[float, ...]
    example_ids: np.ndarray
    spearman: Mapping[str, Mapping[str, np.ndarray]]
    token_spearman: Mapping[str, Mapping[str, np.ndarray]]
    comprehensiveness: Mapping[str, np.ndarray]
    sufficiency: Mapping[str, np.ndarray]
    reports: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)

    kind = "FaithfulnessReport"

    def __post_init__(self) -> None:
        E, L, K = len(self.example_ids), len(self.layers), len(self.bins)
        for reference, table in self.spearman.items():
            for method, values in table.items():
                if values.shape != (E, L):
                    raise InvalidInputError(f"spearman[{reference}][{method}] must be [{E}, {L}]")
        for name, curves in (("comprehensiveness", self.comprehensiveness), ("sufficiency", self.sufficiency)):
            for method, values in curves.items():
                if values.shape != (E, K):
                    raise InvalidInputError(f"{name}[{method}] must be [{E}, {K}]")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_run(
        cls,
        run: RunResult | str | os.PathLike[str],
        *,
        exclude_special: bool = False,
        nan_policy: NanPolicy = "omit",
        magnitude: bool = True,
        dataset: str | None = None,
    ) -> FaithfulnessReport:
        """Aggregate a faithfulness run directory (see :func:`attrflow.faithfulness`) into a report.

        Args:
            run: a :class:`~attrflow.runner.RunResult` or the run directory (it may still be running: the
                examples stored so far are used).
            exclude_special: Spearman over the non-special tokens only.
            nan_policy: ``"omit"`` undefined correlations (constant score vectors) from mean and std, or count
                them as ``"zero"`` like the official code.
            magnitude: correlate the magnitudes ``|s|`` of the signed methods with the references, which are
                magnitudes themselves (``|Δp|``, ``‖∂F/∂e‖``); False correlates the signed scores. AOPC always
                ranks by the signed score.
            dataset: a name for the dataset, recorded in ``settings``.
        """
        from attrflow.runner import open_run

        if nan_policy not in ("omit", "zero"):
            raise InvalidInputError(f"nan_policy must be 'omit' or 'zero', got {nan_policy!r}")
        if isinstance(run, (str, os.PathLike)):
            run = open_run(run)
        settings = dict(run.settings)
        if run.metadata.get("task") != "faithfulness" or settings.get("version") != 2:
            raise ResultFormatError(
                f"{run.out_dir} is not a faithfulness run of this attrflow (run it again into a new directory)"
            )
        frame = run.to_pandas()
        methods, references = list(settings["methods"]), list(settings["references"])
        scored = methods + [r for r in references if r not in methods]
        per_layer, signed = set(settings["per_layer"]), set(settings["signed"])
        size = len(frame)
        layers = tuple(int(x) for x in frame["layers"].iloc[0]) if size else ()
        masks = [
            (~np.asarray(s, dtype=bool)) if exclude_special else np.ones(len(s), dtype=bool)
            for s in frame["special_mask"]
        ]
        scores = {m: _frame_scores(frame, m, m in per_layer, magnitude and m in signed) for m in scored}
        truths = {r: _frame_scores(frame, r, False, False) for r in references}
        spearman_tables = {
            r: {m: _correlations(scores[m], truths[r], masks, True) for m in methods if m in per_layer}
            for r in references
        }
        token_tables = {
            r: {m: _correlations(scores[m], truths[r], masks, False) for m in scored if m not in per_layer and m != r}
            for r in references
        }
        if nan_policy == "zero":
            for tables in (spearman_tables, token_tables):
                for table in tables.values():
                    for values in table.values():
                        np.nan_to_num(values, copy=False, nan=0.0)
        bins = tuple(float(k) for k in settings["bins"])
        report_settings = {
            **settings,
            "dataset": dataset,
            "exclude_special": bool(exclude_special),
            "nan_policy": nan_policy,
            "magnitude": bool(magnitude),
            "num_examples": size,
            "targets_from_label": int(np.sum(frame["target"].to_numpy() == frame["label"].to_numpy())) if size else 0,
            "accuracy": _accuracy(frame),
        }
        return cls(
            layers=layers,
            methods=tuple(m for m in methods if m in per_layer),
            references=tuple(references),
            aopc_methods=tuple(scored),
            bins=bins,
            example_ids=frame["example_id"].to_numpy(dtype=np.int64),
            spearman=spearman_tables,
            token_spearman=token_tables,
            comprehensiveness=_curves(frame, "comprehensiveness", scored, len(bins)),
            sufficiency=_curves(frame, "sufficiency", scored, len(bins)),
            reports=_reports(frame, settings.get("reports", {})),
            settings=report_settings,
        )

    # ------------------------------------------------------------------ numbers
    @property
    def num_examples(self) -> int:
        """Number of evaluated examples E."""
        return len(self.example_ids)

    @property
    def layer_names(self) -> list[str]:
        """``L1``, ``L2``, … (1-based, as in the paper)."""
        return [f"L{layer + 1}" for layer in self.layers]

    @property
    def completeness_gaps(self) -> dict[str, np.ndarray]:
        """``{method: [E]}`` |completeness gap| of the methods that integrate (from :attr:`reports`)."""
        return {m: values["completeness_gap"] for m, values in self.reports.items() if "completeness_gap" in values}

    def reference_table(self, reference: str) -> Mapping[str, np.ndarray]:
        """``{method: [E, L]}`` per-example correlations with ``reference``."""
        if reference not in self.spearman:
            raise InvalidInputError(f"no reference {reference!r} in this report; it has {list(self.spearman)}")
        return self.spearman[reference]

    def to_frame(self) -> pd.DataFrame:
        """Spearman summary, long form: ``reference, method, layer, layer_name, mean, std, count``."""
        import pandas as pd

        rows = []
        for reference, table in self.spearman.items():
            for method, values in table.items():
                mean, std, count = nan_stats(values)
                for i, layer in enumerate(self.layers):
                    rows.append(
                        {
                            "reference": reference,
                            "method": method,
                            "layer": layer,
                            "layer_name": f"L{layer + 1}",
                            "mean": mean[i],
                            "std": std[i],
                            "count": int(count[i]),
                        }
                    )
        columns = ["reference", "method", "layer", "layer_name", "mean", "std", "count"]
        return pd.DataFrame(rows, columns=columns)

    def table(self, reference: str | None = None) -> pd.DataFrame:
        """The paper's layout: one row per method, one column per layer, cells ``mean±std`` (e.g. ``.69±.27``)."""
        import pandas as pd

        table = self.reference_table(reference or self.references[0])
        data = {}
        for method, values in table.items():
            mean, std, _ = nan_stats(values)
            data[method] = [f"{paper_number(m)}±{paper_number(s).lstrip('−')}" for m, s in zip(mean, std, strict=True)]
        frame = pd.DataFrame.from_dict(data, orient="index", columns=self.layer_names)
        frame.index.name = "method"
        return frame

    def token_frame(self) -> pd.DataFrame:
        """Spearman of the single-vector methods with each reference: ``reference, method, mean, std, count``."""
        import pandas as pd

        rows = []
        for reference, table in self.token_spearman.items():
            for method, values in table.items():
                mean, std, count = nan_stats(values[:, None])
                rows.append(
                    {"reference": reference, "method": method, "mean": mean[0], "std": std[0], "count": int(count[0])}
                )
        return pd.DataFrame(rows, columns=["reference", "method", "mean", "std", "count"])

    def aopc_frame(self) -> pd.DataFrame:
        """AOPC per method: ``comprehensiveness`` (higher is more faithful) and ``sufficiency`` (lower is), each the
        mean over examples of the per-example mean over bins, with the std over examples."""
        import pandas as pd

        rows = []
        for method in self.aopc_methods:
            entry: dict[str, Any] = {"method": method}
            for name, curves in (("comprehensiveness", self.comprehensiveness), ("sufficiency", self.sufficiency)):
                per_example = curves[method].mean(axis=1) if len(self.bins) else np.full(self.num_examples, np.nan)
                mean, std, count = nan_stats(per_example[:, None])
                entry[name] = mean[0]
                entry[f"{name}_std"] = std[0]
                entry["count"] = int(count[0])
            rows.append(entry)
        columns = ["method", "comprehensiveness", "comprehensiveness_std", "sufficiency", "sufficiency_std", "count"]
        return pd.DataFrame(rows, columns=columns).set_index("method")

    def curves_frame(self) -> pd.DataFrame:
        """Mean erasure curves: ``method, bin, comprehensiveness, sufficiency`` (means over examples)."""
        import pandas as pd

        rows = []
        for method in self.aopc_methods:
            comp, _, _ = nan_stats(self.comprehensiveness[method])
            suff, _, _ = nan_stats(self.sufficiency[method])
            for k, fraction in enumerate(self.bins):
                rows.append({"method": method, "bin": fraction, "comprehensiveness": comp[k], "sufficiency": suff[k]})
        return pd.DataFrame(rows, columns=["method", "bin", "comprehensiveness", "sufficiency"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: ``{"spearman": {reference: {method: {"mean": [per layer], "std": [...]}}},
        "aopc": {"comprehensiveness": {method: x}, "sufficiency": {method: x}}, ...}`` (NaN → null)."""
        spearman_summary: dict[str, Any] = {}
        for reference, table in self.spearman.items():
            spearman_summary[reference] = {}
            for method, values in table.items():
                mean, std, count = nan_stats(values)
                spearman_summary[reference][method] = {
                    "mean": [_json_number(x) for x in mean],
                    "std": [_json_number(x) for x in std],
                    "count": [int(c) for c in count],
                }
        tokens: dict[str, Any] = {}
        for row in self.token_frame().to_dict("records"):
            tokens.setdefault(str(row["reference"]), {})[str(row["method"])] = {
                "mean": _json_number(float(row["mean"])),
                "std": _json_number(float(row["std"])),
                "count": int(row["count"]),
            }
        aopc = self.aopc_frame()
        curves = {
            name: {m: [_json_number(x) for x in nan_stats(values[m])[0]] for m in self.aopc_methods}
            for name, values in (("comprehensiveness", self.comprehensiveness), ("sufficiency", self.sufficiency))
        }
        return {
            "schema_version": SCHEMA_VERSION,
            "layers": self.layer_names,
            "num_examples": self.num_examples,
            "spearman": spearman_summary,
            "spearman_single": tokens,
            "aopc": {
                "comprehensiveness": {m: _json_number(v) for m, v in aopc["comprehensiveness"].items()},
                "sufficiency": {m: _json_number(v) for m, v in aopc["sufficiency"].items()},
                "bins": list(self.bins),
                "curves": curves,
            },
            "completeness_gap": {
                m: {
                    "mean": _json_number(float(np.nanmean(g))) if g.size and not np.isnan(g).all() else None,
                    "max": _json_number(float(np.nanmax(g))) if g.size and not np.isnan(g).all() else None,
                }
                for m, g in self.completeness_gaps.items()
            },
            "settings": dict(self.settings),
        }

    def notes(self) -> list[str]:
        """Caveats about these numbers that a reader must know, from each method's own check (empty when none)."""
        from attrflow.errors import AttrflowError
        from attrflow.methods.registry import get_method

        notes = []
        for method, values in self.reports.items():
            try:
                caveat = get_method(method).caveat(values)
            except AttrflowError:  # a method registered by a plug-in that is not loaded now
                continue
            if caveat:
                notes.append(caveat)
        return notes

    def summary(self) -> str:
        """The tables as plain text (what ``attrflow evaluate`` prints)."""
        import pandas as pd

        parts = [
            f"Faithfulness on {self.num_examples} examples (model {self.settings.get('model', '?')}, "
            f"dataset {self.settings.get('dataset') or '?'})"
        ]
        for reference in self.spearman:
            if self.spearman[reference]:
                parts.append(f"\nSpearman with {reference} (mean±std over examples):")
                parts.append(self.table(reference).to_string())
        tokens = self.token_frame()
        if len(tokens):
            parts.append("\nSpearman of the single-vector methods:")
            parts.append(tokens.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        parts.append(f"\nAOPC over bins {', '.join(f'{k:.0%}' for k in self.bins)} (special tokens never removed):")
        with pd.option_context("display.width", 200):
            parts.append(self.aopc_frame().to_string(float_format=lambda x: f"{x:.4f}"))
        parts.extend(f"\nNote: {note}" for note in self.notes())
        return "\n".join(parts)

    # ------------------------------------------------------------------ display (attrflow.viz)
    def plot(self, reference: str | None = None, *, ax: Axes | None = None) -> Figure:
        """Spearman per layer, mean ± std over examples, one line per method (the papers' figure style)."""
        from attrflow.viz.plots import plot_faithfulness

        return plot_faithfulness(self, reference or self.references[0], ax=ax)

    def plot_aopc(self, metric: str = "comprehensiveness", *, ax: Axes | None = None) -> Figure:
        """Mean erasure curve per method: ``metric`` (comprehensiveness or sufficiency) against k."""
        from attrflow.viz.plots import plot_erasure_curves

        return plot_erasure_curves(self, metric, ax=ax)

    def to_html(self, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
        """The self-contained page (tables, per-layer figure, AOPC curves, notes, settings); written to ``path``."""
        from attrflow.viz.faithfulness import render_faithfulness_page

        html = render_faithfulness_page(self, title=title)
        if path is not None:
            atomic_write_text(path, html)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.page import iframe

        return iframe(self.to_html(), height=900)

    def __repr__(self) -> str:
        return (
            f"FaithfulnessReport(examples={self.num_examples}, layers={len(self.layers)}, methods={list(self.methods)}, "
            f"references={list(self.references)}, aopc_methods={list(self.aopc_methods)})"
        )

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str], *, figures: bool | None = None) -> Path:
        """Write the report to one ``.safetensors`` file (reload with :func:`attrflow.load_result`).

        Passing an existing directory is the old behaviour (everything into the directory, now :meth:`export`);
        it still works, with a DeprecationWarning.
        """
        target = Path(path)
        if target.is_dir():
            warnings.warn(
                "FaithfulnessReport.save(directory) is now export(directory); save(path) writes one file",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.export(target, figures=True if figures is None else figures)
        meta, tensors = self.to_parts()
        return write_result(target, self.kind, meta, tensors)

    def export(self, directory: str | os.PathLike[str], *, figures: bool = True) -> Path:
        """Write everything into ``directory``: ``faithfulness.json`` (the summary), ``spearman_<reference>.csv``
        (paper layout), ``spearman.csv`` (long form), ``spearman_single.csv``, ``aopc.csv``, ``aopc_curves.csv``,
        ``faithfulness.html``, ``faithfulness.safetensors`` (reloadable) and, with ``figures`` (matplotlib),
        ``spearman_<reference>.png`` and ``aopc_<metric>.png``. Returns the directory."""
        target = Path(directory)
        atomic_write_json(target / JSON_FILE, self.to_dict())
        for reference in self.spearman:
            atomic_write_text(target / f"spearman_{reference}.csv", self.table(reference).to_csv())
        atomic_write_text(target / "spearman.csv", self.to_frame().to_csv(index=False))
        atomic_write_text(target / "spearman_single.csv", self.token_frame().to_csv(index=False))
        atomic_write_text(target / "aopc.csv", self.aopc_frame().to_csv())
        atomic_write_text(target / "aopc_curves.csv", self.curves_frame().to_csv(index=False))
        meta, tensors = self.to_parts()
        write_result(target / REPORT_FILE, self.kind, meta, tensors)
        if figures:
            from attrflow.viz.plots import save_figure

            for reference in self.spearman:
                save_figure(self.plot(reference), target / f"spearman_{reference}.png")
            for metric in ("comprehensiveness", "sufficiency"):
                save_figure(self.plot_aopc(metric), target / f"aopc_{metric}.png")
        self.to_html(target / HTML_FILE)
        return target

    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: what :meth:`save` stores."""
        import json

        meta = {
            "layers": list(self.layers),
            "methods": list(self.methods),
            "references": list(self.references),
            "aopc_methods": list(self.aopc_methods),
            "bins": list(self.bins),
            "token_methods": {r: list(t) for r, t in self.token_spearman.items()},
            "reports": {m: list(values) for m, values in self.reports.items()},
            "settings": json.loads(json.dumps(dict(self.settings), default=str)),
        }

        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.tensor(np.ascontiguousarray(values))

        tensors = {"example_ids": torch.tensor(np.asarray(self.example_ids, dtype=np.int64))}
        for reference, table in self.spearman.items():
            tensors.update({f"spearman/{reference}/{m}": tensor(v) for m, v in table.items()})
        for reference, table in self.token_spearman.items():
            tensors.update({f"token_spearman/{reference}/{m}": tensor(v) for m, v in table.items()})
        for method in self.aopc_methods:
            tensors[f"comprehensiveness/{method}"] = tensor(self.comprehensiveness[method])
            tensors[f"sufficiency/{method}"] = tensor(self.sufficiency[method])
        for method, values in self.reports.items():
            tensors.update({f"report/{method}/{name}": tensor(v) for name, v in values.items()})
        return meta, tensors

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> FaithfulnessReport:
        """Rebuild from :meth:`to_parts` (used by :func:`attrflow.load_result`)."""

        def array(key: str) -> np.ndarray:
            return tensors[key].numpy()

        methods = tuple(meta["methods"])
        references = tuple(meta["references"])
        aopc_methods = tuple(meta["aopc_methods"])
        return cls(
            layers=tuple(int(x) for x in meta["layers"]),
            methods=methods,
            references=references,
            aopc_methods=aopc_methods,
            bins=tuple(float(k) for k in meta["bins"]),
            example_ids=array("example_ids"),
            spearman={r: {m: array(f"spearman/{r}/{m}") for m in methods} for r in references},
            token_spearman={
                r: {m: array(f"token_spearman/{r}/{m}") for m in meta["token_methods"].get(r, [])} for r in references
            },
            comprehensiveness={m: array(f"comprehensiveness/{m}") for m in aopc_methods},
            sufficiency={m: array(f"sufficiency/{m}") for m in aopc_methods},
            reports={m: {n: array(f"report/{m}/{n}") for n in names} for m, names in meta.get("reports", {}).items()},
            settings=dict(meta.get("settings", {})),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaithfulnessReport:
        """Load a report written by :meth:`save` or :meth:`export` (give the file or the directory)."""
        from attrflow.storage import load_result

        source = Path(path)
        if source.is_dir():
            source = source / REPORT_FILE
        result = load_result(source)
        if not isinstance(result, cls):
            raise ResultFormatError(f"{source} holds a {type(result).__name__}, not a FaithfulnessReport")
        return result
