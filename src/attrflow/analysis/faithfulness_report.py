"""The result of :func:`attrflow.faithfulness`: per-example correlations and erasure curves, with tables,
figures, a JSON summary and a self-contained HTML page.

Layer columns are named ``L1 … LL`` as in Abnar & Zuidema's tables: ``L1`` is the first layer (index 0).
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from attrflow.errors import InvalidInputError, ResultFormatError
from attrflow.results import SCHEMA_VERSION, _atomic_write_bytes, _save, register_result_type

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.runner import RunResult

__all__ = ["FaithfulnessReport"]

LAYERWISE = ("attention", "rollout", "flow", "attattr")
# methods whose scores carry a sign (support or oppose the explained class)
SIGNED = ("attattr", "integrated_gradients")
JSON_FILE = "faithfulness.json"
REPORT_FILE = "faithfulness.safetensors"
HTML_FILE = "faithfulness.html"


def _nan_stats(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, population std and count of the non-NaN values along ``axis`` (NaN where none)."""
    count = np.sum(~np.isnan(values), axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=axis) if values.size else np.full(values.shape[1:], np.nan)
        std = np.nanstd(values, axis=axis) if values.size else np.full(values.shape[1:], np.nan)
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64), np.asarray(count)


def _paper_number(value: float) -> str:
    """``0.69`` → ``.69``, ``-0.11`` → ``−.11`` (the papers' style)."""
    if math.isnan(value):
        return "n/a"
    text = f"{value:.2f}"
    sign = "−" if text.startswith("-") else ""
    text = text.lstrip("-")
    return sign + (text[1:] if text.startswith("0.") else text)


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@register_result_type
@dataclass(frozen=True, eq=False)
class FaithfulnessReport:
    """Faithfulness of token-scoring methods on a dataset (Abnar & Zuidema, ACL 2020; ERASER AOPC).

    Attributes:
        layers: the model layers (0-based) of the Spearman tables; column ``L{l+1}``.
        methods: the layer-wise methods with a Spearman row per layer (``attention``, ``rollout``, ``flow``,
            ``attattr``).
        references: the ground truths (``blankout``, ``gradient``).
        aopc_methods: every method with erasure curves.
        bins: the AOPC fractions k.
        example_ids: ``[E]`` the evaluated examples.
        spearman: ``{reference: {method: [E, len(layers)]}}`` per-example Spearman correlations (NaN where a
            vector is constant).
        token_spearman: ``{reference: {method: [E]}}`` the same for the single-vector methods (the other
            reference, gradient × input, integrated gradients).
        comprehensiveness: ``{method: [E, K]}`` ``p_y(x) − p_y(x without the top-k)`` per bin.
        sufficiency: ``{method: [E, K]}`` ``p_y(x) − p_y(only the top-k)`` per bin.
        completeness_gaps: ``{method: [E]}`` |quadrature error| of ``attattr`` (largest over layers) and
            ``integrated_gradients``.
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
    completeness_gaps: Mapping[str, np.ndarray] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)

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
        nan_policy: str = "omit",
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
            magnitude: correlate the magnitudes ``|s|`` of the signed methods (``attattr``,
                ``integrated_gradients``) with the references, which are magnitudes themselves (``|Δp|``,
                ``|∂F/∂e|``); False correlates the signed scores. AOPC always ranks by the signed score.
            dataset: a name for the dataset, recorded in ``settings``.
        """
        if nan_policy not in ("omit", "zero"):
            raise InvalidInputError(f"nan_policy must be 'omit' or 'zero', got {nan_policy!r}")
        from attrflow.analysis.faithfulness import spearman
        from attrflow.runner import open_run

        if isinstance(run, (str, os.PathLike)):
            run = open_run(run)
        settings = dict(run.settings)
        if run.metadata.get("task") != "faithfulness":
            raise ResultFormatError(f"{run.out_dir} is not a faithfulness run")
        frame = run.to_pandas()
        scored = list(settings["methods"]) + [r for r in settings["references"] if r not in settings["methods"]]
        layerwise = tuple(m for m in settings["methods"] if m in LAYERWISE)
        singles = tuple(m for m in scored if m not in LAYERWISE)
        references = tuple(settings["references"])
        E = len(frame)
        layers = tuple(int(x) for x in frame["layers"].iloc[0]) if E else ()
        masks = [
            (~np.asarray(special, dtype=bool)) if exclude_special else np.ones(len(special), dtype=bool)
            for special in frame["special_mask"]
        ]

        def layer_matrix(cell: Any) -> np.ndarray:
            return np.stack([np.asarray(row, dtype=np.float64) for row in cell])

        reference_scores = {r: [np.asarray(v, dtype=np.float64) for v in frame[f"scores.{r}"]] for r in references}

        def prepared(method: str, values: np.ndarray) -> np.ndarray:
            return np.abs(values) if magnitude and method in SIGNED else values

        per_layer = {m: [prepared(m, layer_matrix(v)) for v in frame[f"scores.{m}"]] for m in layerwise}
        single_scores = {
            m: [prepared(m, np.asarray(v, dtype=np.float64)) for v in frame[f"scores.{m}"]] for m in singles
        }
        spearman_tables: dict[str, dict[str, np.ndarray]] = {}
        token_tables: dict[str, dict[str, np.ndarray]] = {}
        for reference in references:
            truth = reference_scores[reference]
            spearman_tables[reference] = {
                method: np.array(
                    [
                        [spearman(matrix[row][mask], ref[mask]) for row in range(len(layers))]
                        for matrix, ref, mask in zip(per_layer[method], truth, masks, strict=True)
                    ],
                    dtype=np.float64,
                ).reshape(E, len(layers))
                for method in layerwise
            }
            token_tables[reference] = {
                method: np.array(
                    [
                        spearman(values[mask], ref[mask])
                        for values, ref, mask in zip(single_scores[method], truth, masks, strict=True)
                    ],
                    dtype=np.float64,
                )
                for method in singles
                if method != reference
            }
        if nan_policy == "zero":
            for tables in (spearman_tables, token_tables):
                for table in tables.values():
                    for values in table.values():
                        np.nan_to_num(values, copy=False, nan=0.0)
        bins = tuple(float(k) for k in settings["bins"])

        def curves(prefix: str) -> dict[str, np.ndarray]:
            return {
                m: np.array([np.asarray(v, dtype=np.float64) for v in frame[f"{prefix}.{m}"]]).reshape(E, len(bins))
                for m in scored
            }

        gaps = {
            m: frame[f"completeness_gap.{m}"].to_numpy(dtype=np.float64)
            for m in ("attattr", "integrated_gradients")
            if f"completeness_gap.{m}" in frame
        }
        report_settings = {
            **settings,
            "dataset": dataset,
            "exclude_special": bool(exclude_special),
            "nan_policy": nan_policy,
            "magnitude": bool(magnitude),
            "num_examples": E,
            "gradient_rounding_noise": _noise_fraction(frame),
            "targets_from_label": int(np.sum(frame["target"].to_numpy() == frame["label"].to_numpy())) if E else 0,
            "accuracy": _accuracy(frame),
            "run": str(run.out_dir),
        }
        return cls(
            layers=layers,
            methods=layerwise,
            references=references,
            aopc_methods=tuple(scored),
            bins=bins,
            example_ids=frame["example_id"].to_numpy(dtype=np.int64),
            spearman=spearman_tables,
            token_spearman=token_tables,
            comprehensiveness=curves("comprehensiveness"),
            sufficiency=curves("sufficiency"),
            completeness_gaps=gaps,
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

    def _reference(self, reference: str) -> Mapping[str, np.ndarray]:
        if reference not in self.spearman:
            raise InvalidInputError(f"no reference {reference!r} in this report; it has {list(self.spearman)}")
        return self.spearman[reference]

    def to_frame(self) -> pd.DataFrame:
        """Spearman summary, long form: ``reference, method, layer, layer_name, mean, std, count``."""
        import pandas as pd

        rows = []
        for reference, table in self.spearman.items():
            for method, values in table.items():
                mean, std, count = _nan_stats(values)
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

    def table(self, reference: str = "blankout") -> pd.DataFrame:
        """The paper's layout: one row per method, one column per layer, cells ``mean±std`` (e.g. ``.69±.27``)."""
        import pandas as pd

        table = self._reference(reference)
        data = {}
        for method, values in table.items():
            mean, std, _ = _nan_stats(values)
            data[method] = [
                f"{_paper_number(m)}±{_paper_number(s).lstrip('−')}" for m, s in zip(mean, std, strict=True)
            ]
        frame = pd.DataFrame.from_dict(data, orient="index", columns=self.layer_names)
        frame.index.name = "method"
        return frame

    def token_frame(self) -> pd.DataFrame:
        """Spearman of the single-vector methods with each reference: ``reference, method, mean, std, count``."""
        import pandas as pd

        rows = []
        for reference, table in self.token_spearman.items():
            for method, values in table.items():
                mean, std, count = _nan_stats(values[:, None])
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
                mean, std, count = _nan_stats(per_example[:, None])
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
            comp, _, _ = _nan_stats(self.comprehensiveness[method])
            suff, _, _ = _nan_stats(self.sufficiency[method])
            for k, bin_fraction in enumerate(self.bins):
                rows.append(
                    {"method": method, "bin": bin_fraction, "comprehensiveness": comp[k], "sufficiency": suff[k]}
                )
        return pd.DataFrame(rows, columns=["method", "bin", "comprehensiveness", "sufficiency"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: ``{"spearman": {reference: {method: {"mean": [per layer], "std": [...]}}},
        "aopc": {"comprehensiveness": {method: x}, "sufficiency": {method: x}}, ...}`` (NaN → null)."""
        spearman: dict[str, Any] = {}
        for reference, table in self.spearman.items():
            spearman[reference] = {}
            for method, values in table.items():
                mean, std, count = _nan_stats(values)
                spearman[reference][method] = {
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
        return {
            "schema_version": SCHEMA_VERSION,
            "layers": [f"L{layer + 1}" for layer in self.layers],
            "num_examples": self.num_examples,
            "spearman": spearman,
            "spearman_single": tokens,
            "aopc": {
                "comprehensiveness": {m: _json_number(v) for m, v in aopc["comprehensiveness"].items()},
                "sufficiency": {m: _json_number(v) for m, v in aopc["sufficiency"].items()},
                "bins": list(self.bins),
                "curves": {
                    name: {m: [_json_number(x) for x in _nan_stats(curves[m])[0]] for m in self.aopc_methods}
                    for name, curves in (
                        ("comprehensiveness", self.comprehensiveness),
                        ("sufficiency", self.sufficiency),
                    )
                },
            },
            "completeness_gap": {
                m: {
                    "mean": _json_number(float(np.nanmean(g))) if g.size else None,
                    "max": _json_number(float(np.nanmax(g))) if g.size else None,
                }
                for m, g in self.completeness_gaps.items()
            },
            "settings": dict(self.settings),
        }

    def notes(self) -> list[str]:
        """Caveats about these numbers that a reader must know (empty when there are none)."""
        notes = []
        noise = self.settings.get("gradient_rounding_noise")
        if noise and "gradient" in self.aopc_methods:
            notes.append(
                f"'gradient' (|Σ_d ∂F/∂e|, the paper's definition) is floating-point rounding noise on {noise:.0%} "
                "of the examples: a LayerNorm makes the model invariant to shifting an embedding along (1, …, 1), "
                "so the sum vanishes exactly. Read 'gradient_l2' (‖∂F/∂e‖₂) instead."
            )
        for method, gaps in self.completeness_gaps.items():
            if gaps.size and float(np.nanmax(gaps)) > 1e-2:
                notes.append(
                    f"{method}: the largest |completeness gap| is {float(np.nanmax(gaps)):.2g}; raise steps for a "
                    "more exact integral"
                )
        return notes

    def summary(self) -> str:
        """The tables as plain text (what ``attrflow evaluate`` prints)."""
        import pandas as pd

        parts = [
            f"Faithfulness on {self.num_examples} examples "
            f"(model {self.settings.get('model', '?')}, reduction {self.settings.get('reduction', '?')})"
        ]
        for reference in self.spearman:
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

    # ------------------------------------------------------------------ display
    def plot(self, reference: str = "blankout", *, ax: Axes | None = None) -> Figure:
        """Spearman per layer, mean ± std over examples, one line per method (the papers' figure style)."""
        from attrflow._optional import require

        plt = require("matplotlib.pyplot")
        table = self._reference(reference)
        if ax is None:
            figure, ax = plt.subplots(figsize=(5.5, 3.6))
        else:
            figure = ax.figure
        x = np.arange(1, len(self.layers) + 1)
        for method, values in table.items():
            mean, std, _ = _nan_stats(values)
            (line,) = ax.plot(x, mean, marker="o", label=method)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.12, linewidth=0)
        ax.axhline(0.0, color="grey", linewidth=0.6)
        ax.set_xticks(x, self.layer_names)
        ax.set_xlabel("layer")
        ax.set_ylabel(f"Spearman with {reference}")
        ax.set_ylim(-1.0, 1.0)
        ax.set_title(f"{self.settings.get('model', '')}: {self.num_examples} examples", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        figure.tight_layout()
        return figure

    def plot_aopc(self, metric: str = "comprehensiveness", *, ax: Axes | None = None) -> Figure:
        """Mean erasure curve per method: ``metric`` (comprehensiveness or sufficiency) against k."""
        from attrflow._optional import require

        if metric not in ("comprehensiveness", "sufficiency"):
            raise InvalidInputError(f"metric must be 'comprehensiveness' or 'sufficiency', got {metric!r}")
        plt = require("matplotlib.pyplot")
        curves = self.comprehensiveness if metric == "comprehensiveness" else self.sufficiency
        if ax is None:
            figure, ax = plt.subplots(figsize=(5.5, 3.6))
        else:
            figure = ax.figure
        x = np.asarray(self.bins) * 100
        for method in self.aopc_methods:
            ax.plot(x, _nan_stats(curves[method])[0], marker=".", label=method)
        ax.set_xlabel("top-k% of tokens " + ("removed" if metric == "comprehensiveness" else "kept"))
        ax.set_ylabel(f"{metric} (Δp)")
        ax.legend(fontsize=8)
        figure.tight_layout()
        return figure

    def _figures_svg(self) -> list[tuple[str, str]]:
        """(title, inline SVG) of every figure, or nothing when matplotlib is missing."""
        from attrflow.errors import MissingDependencyError

        try:
            from attrflow._optional import require

            plt = require("matplotlib.pyplot")
        except MissingDependencyError:
            return []
        out = []
        makers = [(f"Spearman with {r}", lambda r=r: self.plot(r)) for r in self.spearman]
        makers += [(f"AOPC {m}", lambda m=m: self.plot_aopc(m)) for m in ("comprehensiveness", "sufficiency")]
        for title, make in makers:
            figure = make()
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg")
            plt.close(figure)
            svg = buffer.getvalue()
            out.append((title, svg[svg.index("<svg") :]))
        return out

    def to_html(self, *, figures: bool = True) -> str:
        """A self-contained HTML page: settings, the paper-style tables, AOPC, and the figures as inline SVG."""
        e = html.escape
        settings = self.settings
        blocks = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>attrflow faithfulness</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
            "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:right}th:first-child,td:first-child{text-align:left}caption{text-align:left;"
            "font-weight:bold;padding:4px 0}.fig{display:inline-block;margin:0 1em 1em 0}code{background:#f4f4f4}"
            "</style></head><body>",
            "<h1>Faithfulness of token scores</h1>",
            f"<p>{self.num_examples} examples; model <code>{e(str(settings.get('model', '?')))}</code>; dataset "
            f"<code>{e(str(settings.get('dataset')))}</code>; reduction <code>{e(str(settings.get('reduction')))}"
            f"</code>; target <code>{e(str(settings.get('target')))}</code>; special tokens "
            f"{'excluded from' if settings.get('exclude_special') else 'included in'} the correlations. Layer "
            "columns L1… are 1-based as in Abnar &amp; Zuidema (ACL 2020).</p>",
        ]
        for reference in self.spearman:
            blocks.append(f"<h2>Spearman with {e(reference)} (mean±std over examples)</h2>")
            blocks.append(self.table(reference).to_html(border=0))
        tokens = self.token_frame()
        if len(tokens):
            blocks.append("<h2>Single-vector methods</h2>")
            blocks.append(tokens.to_html(index=False, border=0, float_format=lambda x: f"{x:.3f}"))
        blocks.append(
            "<h2>AOPC (ERASER)</h2><p>Comprehensiveness: higher is more faithful; sufficiency: lower is."
            f" Bins {', '.join(f'{k:.0%}' for k in self.bins)}; special tokens are never removed; removal "
            f"<code>{e(str(settings.get('removal')))}</code>.</p>"
        )
        blocks.append(self.aopc_frame().to_html(border=0, float_format=lambda x: f"{x:.4f}"))
        blocks.extend(f"<p><b>Note.</b> {e(note)}</p>" for note in self.notes())
        if figures:
            for title, svg in self._figures_svg():
                blocks.append(f"<div class='fig'><h3>{e(title)}</h3>{svg}</div>")
        blocks.append("<h2>Settings</h2><pre>" + e(json.dumps(dict(settings), indent=2, default=str)) + "</pre>")
        blocks.append("</body></html>")
        return "\n".join(blocks)

    def _repr_html_(self) -> str:
        return self.to_html(figures=False)

    def __repr__(self) -> str:
        return (
            f"FaithfulnessReport(examples={self.num_examples}, layers={len(self.layers)}, methods={list(self.methods)}, "
            f"references={list(self.references)}, aopc_methods={list(self.aopc_methods)})"
        )

    # ------------------------------------------------------------------ files
    def save(self, directory: str | os.PathLike[str], *, figures: bool = True) -> Path:
        """Write everything into ``directory``: ``faithfulness.json`` (the summary), ``spearman_<reference>.csv``
        (paper layout), ``spearman.csv`` (long form), ``aopc.csv``, ``aopc_curves.csv``, ``faithfulness.html``,
        ``faithfulness.safetensors`` (the per-example numbers, reloadable with :meth:`load`) and, with
        ``figures`` (needs matplotlib), ``spearman_<reference>.png`` and ``aopc_<metric>.png``.

        Returns:
            The directory.
        """
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        _atomic_write_bytes(target / JSON_FILE, json.dumps(self.to_dict(), indent=2, default=str).encode())
        for reference in self.spearman:
            _atomic_write_bytes(target / f"spearman_{reference}.csv", self.table(reference).to_csv().encode())
        _atomic_write_bytes(target / "spearman.csv", self.to_frame().to_csv(index=False).encode())
        _atomic_write_bytes(target / "spearman_single.csv", self.token_frame().to_csv(index=False).encode())
        _atomic_write_bytes(target / "aopc.csv", self.aopc_frame().to_csv().encode())
        _atomic_write_bytes(target / "aopc_curves.csv", self.curves_frame().to_csv(index=False).encode())
        _save(target / REPORT_FILE, type(self).__name__, self._meta(), self._tensors())
        if figures:
            from attrflow._optional import require

            plt = require("matplotlib.pyplot")
            for reference in self.spearman:
                figure = self.plot(reference)
                figure.savefig(target / f"spearman_{reference}.png", dpi=150)
                plt.close(figure)
            for metric in ("comprehensiveness", "sufficiency"):
                figure = self.plot_aopc(metric)
                figure.savefig(target / f"aopc_{metric}.png", dpi=150)
                plt.close(figure)
        _atomic_write_bytes(target / HTML_FILE, self.to_html(figures=figures).encode())
        return target

    def _meta(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "layers": list(self.layers),
            "methods": list(self.methods),
            "references": list(self.references),
            "aopc_methods": list(self.aopc_methods),
            "bins": list(self.bins),
            "token_methods": {r: list(t) for r, t in self.token_spearman.items()},
            "settings": json.loads(json.dumps(dict(self.settings), default=str)),
        }

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"example_ids": torch.tensor(np.asarray(self.example_ids, dtype=np.int64))}
        for reference, table in self.spearman.items():
            for method, values in table.items():
                tensors[f"spearman/{reference}/{method}"] = torch.tensor(np.ascontiguousarray(values))
        for reference, table in self.token_spearman.items():
            for method, values in table.items():
                tensors[f"token_spearman/{reference}/{method}"] = torch.tensor(np.ascontiguousarray(values))
        for method in self.aopc_methods:
            tensors[f"comprehensiveness/{method}"] = torch.tensor(np.ascontiguousarray(self.comprehensiveness[method]))
            tensors[f"sufficiency/{method}"] = torch.tensor(np.ascontiguousarray(self.sufficiency[method]))
        for method, gaps in self.completeness_gaps.items():
            tensors[f"completeness_gap/{method}"] = torch.tensor(np.ascontiguousarray(gaps, dtype=np.float64))
        return tensors

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> FaithfulnessReport:
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
            completeness_gaps={
                key.split("/", 1)[1]: value.numpy()
                for key, value in tensors.items()
                if key.startswith("completeness_gap/")
            },
            settings=dict(meta.get("settings", {})),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaithfulnessReport:
        """Load a report written by :meth:`save` (give the directory or its ``faithfulness.safetensors``)."""
        from attrflow.results import load_result

        source = Path(path)
        if source.is_dir():
            source = source / REPORT_FILE
        result = load_result(source)
        if not isinstance(result, cls):
            raise ResultFormatError(f"{source} holds a {type(result).__name__}, not a FaithfulnessReport")
        return result


def _accuracy(frame: Any) -> float | None:
    labels = frame["label"].to_numpy()
    labelled = labels >= 0
    if not labelled.any():
        return None
    return float(np.mean(frame["predicted"].to_numpy()[labelled] == labels[labelled]))


def _noise_fraction(frame: Any) -> float | None:
    """Share of examples whose summed input gradient is rounding noise (see :mod:`attrflow.methods.gradients`)."""
    from attrflow.methods.gradients import CANCELLATION_THRESHOLD

    if "gradient_cancellation" not in frame or not len(frame):
        return None
    return float(np.mean(frame["gradient_cancellation"].to_numpy() < CANCELLATION_THRESHOLD))
