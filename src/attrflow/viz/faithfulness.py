"""The faithfulness page: Spearman per layer (the papers' tables and a figure), the single-vector methods, AOPC with
the mean erasure curves, the methods' own caveats, and the settings. Built from a report's numbers only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from attrflow.viz._html import esc, fmt
from attrflow.viz.charts import line_chart
from attrflow.viz.page import Page

if TYPE_CHECKING:
    from attrflow.analysis.faithfulness.report import FaithfulnessReport

__all__ = ["render_faithfulness_page", "table_html"]


def table_html(
    header: Sequence[str], rows: Sequence[Sequence[Any]], *, numeric: bool = True, first_header: bool = True
) -> str:
    """A plain table (escaped cells; numbers formatted and never wrapped)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return fmt(value, 3)
        return esc(value)

    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for index, value in enumerate(row):
            tag = "th" if first_header and index == 0 else "td"
            cells.append(f"<{tag}>{cell(value)}</{tag}>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    kind = "num" if numeric else "kv"
    return f'<div class="scroll"><table class="{kind}"><tr>{head}</tr>{"".join(body)}</table></div>'


def _spearman_section(report: FaithfulnessReport, reference: str) -> str:
    from attrflow.analysis.faithfulness.report import nan_stats

    table = report.reference_table(reference)
    if not table:
        return ""
    frame = report.table(reference)
    rows = [[method, *frame.loc[method].tolist()] for method in frame.index]
    means, stds = {}, {}
    for method, values in table.items():
        mean, std, _ = nan_stats(values)
        means[method], stds[method] = mean.tolist(), std.tolist()
    chart = line_chart(
        means,
        report.layer_names,
        bands=stds,
        y_range=(-1.0, 1.0),
        title=f"Spearman with {reference} per layer (mean ± std over {report.num_examples} examples)",
        x_label="layer",
        y_label="Spearman ρ",
    )
    return (
        f'<section class="spearman" data-reference="{esc(reference)}"><h2>Spearman with {esc(reference)}</h2>'
        '<p class="note">Per example and layer, the rank correlation of a per-layer method\'s scores with the '
        f"reference's; mean±std over examples (Abnar &amp; Zuidema, ACL 2020, Tables 1–3).</p>"
        f"{table_html(['method', *report.layer_names], rows)}<figure>{chart}</figure></section>"
    )


def _single_section(report: FaithfulnessReport) -> str:
    frame = report.token_frame()
    if not len(frame):
        return ""
    rows = [
        [r["method"], r["reference"], float(r["mean"]), float(r["std"]), int(r["count"])]
        for r in frame.to_dict("records")
    ]
    return (
        '<section id="single"><h2>Single-vector methods</h2>'
        '<p class="note">Spearman of each method that gives one score vector with each reference.</p>'
        f"{table_html(['method', 'reference', 'mean', 'std', 'examples'], rows)}</section>"
    )


def _aopc_section(report: FaithfulnessReport) -> str:
    from attrflow.analysis.faithfulness.report import nan_stats

    frame = report.aopc_frame()
    rows = [
        [
            m,
            float(r["comprehensiveness"]),
            float(r["comprehensiveness_std"]),
            float(r["sufficiency"]),
            float(r["sufficiency_std"]),
        ]
        for m, r in frame.iterrows()
    ]
    labels = [f"{k:.0%}" for k in report.bins]
    charts = []
    for metric, curves in (("comprehensiveness", report.comprehensiveness), ("sufficiency", report.sufficiency)):
        series = {m: nan_stats(curves[m])[0].tolist() for m in report.aopc_methods}
        charts.append(
            line_chart(
                series,
                labels,
                title=f"{metric}: Δp when the top-k tokens are {'removed' if metric == 'comprehensiveness' else 'kept'}",
                x_label="top-k of the non-special tokens",
                y_label="Δp",
            )
        )
    removal = esc(str(report.settings.get("removal", "delete")))
    return (
        '<section id="aopc"><h2>AOPC (ERASER)</h2>'
        '<p class="note">Comprehensiveness: higher is more faithful; sufficiency: lower is. Bins '
        f"{esc(', '.join(labels))}; special tokens are never removed; removal <code>{removal}</code> "
        "(DeYoung et al., ACL 2020).</p>"
        f"{table_html(['method', 'comprehensiveness', '± std', 'sufficiency', '± std'], rows)}"
        + "".join(f"<figure>{chart}</figure>" for chart in charts)
        + "</section>"
    )


def _settings_section(report: FaithfulnessReport) -> str:
    rows = [[str(key), str(value)] for key, value in sorted(report.settings.items()) if key != "run"]
    return f'<section id="settings"><h2>Settings</h2>{table_html(["setting", "value"], rows, numeric=False)}</section>'


def render_faithfulness_page(
    report: FaithfulnessReport, *, title: str | None = None, back: tuple[str, str] | None = None
) -> str:
    """The self-contained faithfulness page of a report."""
    settings = report.settings
    subtitle = esc(
        f"{report.num_examples} examples · model {settings.get('model', '?')} · dataset {settings.get('dataset') or '?'}"
        f" · target {settings.get('target', '?')} · special tokens "
        f"{'excluded from' if settings.get('exclude_special') else 'included in'} the correlations · layers L1… are "
        "1-based as in Abnar & Zuidema"
    )
    page = Page(title or "attrflow: faithfulness of token scores", subtitle=subtitle, back=back)
    notes = report.notes()
    if notes:
        page.add('<section id="notes">' + "".join(f'<p class="warning">{esc(n)}</p>' for n in notes) + "</section>")
    for reference in report.references:
        section = _spearman_section(report, reference)
        if section:
            page.add(section)
    for section in (_single_section(report), _aopc_section(report), _settings_section(report)):
        if section:
            page.add(section)
    accuracy = settings.get("accuracy")
    if isinstance(accuracy, float) and np.isfinite(accuracy):
        page.subtitle += esc(f" · accuracy on these examples {accuracy:.3f}")
    return page.render()
