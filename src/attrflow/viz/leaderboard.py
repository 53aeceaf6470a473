"""The leaderboard page and figures, from the leaderboard's summary (``Leaderboard.to_dict()``: plain numbers with
their intervals, computed by the result; nothing is computed here).

The page: a sortable table of every method and metric (mean with its 95 % interval), where the paired tests say one
method beats another, the per-layer Spearman figure, the AOPC curves, the ground-truth table, the sanity cascade,
cost against faithfulness, the attribution tree's masking experiment and the settings — on the one page skeleton.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attrflow.viz._html import esc, fmt
from attrflow.viz.charts import line_chart, scatter_chart
from attrflow.viz.page import Page

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_leaderboard", "render_leaderboard_page"]

_GROUPS = ("0", "1", "2+")
_TREE = ("tree", "attention", "rollout", "random")


def _mean(entry: Any) -> float:
    value = entry.get("mean") if isinstance(entry, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else math.nan


def _cell(entry: Any, digits: int = 3) -> str:
    """A table cell: the mean, its interval in small print, the mean as the sort key."""
    mean = _mean(entry)
    if math.isnan(mean):
        return '<td data-sort="">n/a</td>'
    low, high = (entry.get("ci") or [None, None]) if isinstance(entry, Mapping) else (None, None)
    interval = (
        f' <span class="ci">[{fmt(low, 2)}, {fmt(high, 2)}]</span>' if low is not None and high is not None else ""
    )
    return f'<td data-sort="{mean!r}">{esc(fmt(mean, digits))}{interval}</td>'


def _present(data: Mapping[str, Any], metric: str) -> bool:
    return any(not math.isnan(_mean(entry.get(metric))) for entry in data["methods"].values())


def _main_table(data: Mapping[str, Any]) -> str:
    metrics = [name for name in data["metrics"] if _present(data, name)]
    arrows = {True: "↑", False: "↓"}
    info = data["metrics"]
    head = "".join(
        f'<th title="{esc(m)}: {esc(info[m]["description"])}">'
        f"{esc(info[m].get('title', m))} {arrows[info[m]['higher_is_better']]}</th>"
        for m in metrics
    )
    rows = []
    baselines = set(data.get("settings", {}).get("baselines", []))
    for method, entry in data["methods"].items():
        flag = ' <span title="fails the randomisation sanity check">⚠</span>' if entry.get("sanity_flagged") else ""
        seconds, memory = entry.get("seconds_per_example"), entry.get("peak_memory_mb")
        cost = "".join(
            f'<td data-sort="{v!r}">{esc(fmt(v, 3))}</td>'
            if isinstance(v, (int, float))
            else '<td data-sort="">n/a</td>'
            for v in (seconds, memory)
        )
        kind = ' class="baseline"' if method in baselines else ""
        cells = "".join(_cell(entry.get(m)) for m in metrics)
        rows.append(f"<tr{kind}><th>{esc(method)}{flag}</th>{cells}{cost}</tr>")
    return (
        '<section id="table"><h2>Every method, one protocol</h2>'
        '<p class="note">Mean over examples with its 95 % bootstrap interval; click a heading to sort. ↑: higher is '
        "better. Baselines in italics; ⚠: fails the randomisation sanity check. Cost: median seconds and peak extra "
        "memory (MB) of the method alone on one example.</p>"
        '<div class="scroll"><table class="num sortable"><thead><tr><th>method</th>'
        f"{head}<th>s / example</th><th>MB</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _wins_section(data: Mapping[str, Any]) -> str:
    wins: dict[str, dict[str, list[str]]] = {}
    for test in data.get("comparisons", []):
        winner = test.get("winner")
        if winner:
            loser = test["b"] if winner == test["a"] else test["a"]
            wins.setdefault(test["metric"], {}).setdefault(winner, []).append(loser)
    if not wins:
        return (
            '<section id="wins"><h2>Where the data say A beats B</h2><p class="note">No paired difference is '
            "significant after Holm's correction.</p></section>"
        )
    blocks = []
    for metric, table in wins.items():
        items = "".join(
            f"<li><b>{esc(w)}</b> beats {esc(', '.join(sorted(losers)))}</li>"
            for w, losers in sorted(table.items(), key=lambda kv: -len(kv[1]))
        )
        blocks.append(f"<h3>{esc(metric)}</h3><ul>{items}</ul>")
    return (
        '<section id="wins"><h2>Where the data say A beats B</h2><p class="note">Wilcoxon signed-rank test on the '
        "examples both methods were measured on, Holm-corrected over every pair of methods of a metric, at 5 %. A "
        "pair not listed is not told apart by these data.</p>" + "".join(blocks) + "</section>"
    )


def _layers_section(data: Mapping[str, Any]) -> str:
    charts = []
    for metric in ("spearman_blankout", "spearman_gradient"):
        series, intervals, labels = {}, {}, []
        for method, entry in data["methods"].items():
            layers = (entry.get(metric) or {}).get("by_layer")
            if not layers:
                continue
            labels = list(layers)
            series[method] = [_mean(layers[k]) for k in labels]
            lows = [(layers[k].get("ci") or [None, None])[0] for k in labels]
            highs = [(layers[k].get("ci") or [None, None])[1] for k in labels]
            intervals[method] = ([_num(v) for v in lows], [_num(v) for v in highs])
        if series:
            chart = line_chart(
                series,
                labels,
                intervals=intervals,
                y_range=(-1.0, 1.0),
                title=f"{metric} per layer (mean, 95 % interval)",
                x_label="layer",
                y_label="Spearman ρ",
            )
            charts.append(f"<figure>{chart}</figure>")
    if not charts:
        return ""
    return (
        '<section id="layers"><h2>Spearman per layer</h2><p class="note">Abnar &amp; Zuidema (ACL 2020), Tables 1–2: '
        "per example and layer, the rank correlation of a per-layer method with blank-out and with the gradient's "
        "L2 norm.</p>" + "".join(charts) + "</section>"
    )


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def _curves_section(data: Mapping[str, Any]) -> str:
    curves = data.get("aopc_curves") or {}
    bins = curves.get("bins") or []
    if not bins:
        return ""
    labels = [f"{k:.0%}" for k in bins]
    charts = []
    for metric, verb in (("comprehensiveness", "removed"), ("sufficiency", "kept")):
        chart = line_chart(
            {m: [_num(v) for v in values] for m, values in curves.get(metric, {}).items()},
            labels,
            title=f"{metric}: Δp when the top-k tokens are {verb}",
            x_label="top-k of the non-special tokens",
            y_label="Δp",
        )
        charts.append(f"<figure>{chart}</figure>")
    return (
        '<section id="aopc"><h2>AOPC curves (ERASER)</h2><p class="note">Mean over examples per bin; '
        "comprehensiveness higher is better, sufficiency lower. The normalised AOPC of the table removes one token "
        "at a time and rescales by the best and worst orders of each input (Edin et al. 2024).</p>"
        + "".join(charts)
        + "</section>"
    )


def _truth_section(data: Mapping[str, Any]) -> str:
    if not _present(data, "subject_top_rate"):
        return ""
    rows = []
    for method, entry in data["methods"].items():
        top = entry.get("subject_top_rate") or {}
        groups = top.get("by_attractors") or {}
        cells = _cell(top) + "".join(_cell(groups.get(g)) for g in _GROUPS) + _cell(entry.get("attractor_share"))
        rows.append(f"<tr><th>{esc(method)}</th>{cells}</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("all", "0 attractors", "1 attractor", "2+ attractors", "attractor share"))
    return (
        '<section id="truth"><h2>Ground truth: the subject decides the verb</h2><p class="note">The agreement '
        "generator knows which noun is the subject's head (it fixes the verb's number) and which intervening nouns "
        "are attractors (the other number). Subject top: how often the subject's score outranks every other noun "
        "(sentences with at least one other noun), by the number of attractors. Attractor share: the share of the "
        "score magnitude on attractors (sentences with attractors; lower is better).</p>"
        '<div class="scroll"><table class="num sortable"><thead><tr><th>method</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _sanity_section(data: Mapping[str, Any]) -> str:
    depths = (data.get("sanity") or {}).get("depths") or []
    series = {}
    for method, entry in data["methods"].items():
        by_depth = (entry.get("sanity_spearman") or {}).get("by_depth")
        if by_depth:
            series[method] = [_mean(by_depth.get(str(d))) for d in depths]
    if not series:
        return ""
    threshold = (data.get("sanity") or {}).get("threshold", 0.8)
    flagged = (data.get("sanity") or {}).get("flagged") or []
    chart = line_chart(
        series,
        [str(d) for d in depths],
        y_range=(-1.0, 1.0),
        title="Spearman with the scores of the re-initialised model (mean)",
        x_label="top layers re-initialised (cascading from the output)",
        y_label="Spearman ρ",
    )
    return (
        '<section id="sanity"><h2>Sanity: model-parameter randomisation</h2><p class="note">Adebayo et al. '
        "(NeurIPS 2018): the head and the top k layers get fresh weights, k = 1 … L, and each method's scores on "
        f"the trained and the randomised model are compared; a method's sanity ρ is the mean over the steps (the area "
        f"under its curve). A method whose median sanity ρ exceeds {esc(threshold)} barely depends on what the "
        "model learnt. Flagged: "
        f"<b>{esc(', '.join(flagged) or 'none')}</b>.</p><figure>{chart}</figure></section>"
    )


def _cost_section(data: Mapping[str, Any]) -> str:
    points = {}
    metric = "naopc_comprehensiveness" if _present(data, "naopc_comprehensiveness") else "aopc_comprehensiveness"
    for method, entry in data["methods"].items():
        seconds = entry.get("seconds_per_example")
        if isinstance(seconds, (int, float)) and seconds > 0:
            points[method] = (float(seconds), _mean(entry.get(metric)))
    if not points:
        return ""
    chart = scatter_chart(
        points, title=f"cost against {metric}", x_label="seconds per example (log)", y_label=metric, log_x=True
    )
    return (
        '<section id="cost"><h2>Cost against faithfulness</h2><p class="note">Seconds: the median over the timed '
        "examples of the method alone on a fresh context (its own forward passes, gradients and blank-out "
        "included).</p>"
        f"<figure>{chart}</figure></section>"
    )


def _tree_section(data: Mapping[str, Any]) -> str:
    tree = data.get("tree") or {}
    if not tree.get("examples"):
        return ""
    drops = tree["drops"]
    rows = "".join(f"<tr><th>{esc(c)}</th>{_cell(drops.get(c), 4)}</tr>" for c in _TREE)
    tests = "".join(
        f"<li>tree vs {esc(t['b'])}: p (Holm) = {esc(fmt(_num(t.get('p_holm')), 2))} — "
        f"{'the tree' if t.get('winner') == 'tree' else ('' + esc(t.get('winner')) if t.get('winner') else 'no difference shown')}"
        "</li>"
        for t in tree.get("comparisons", [])
    )
    return (
        '<section id="tree"><h2>Do the attribution tree\'s edges carry the prediction?</h2><p class="note">Hao et '
        "al. (AAAI 2021, §4.3). Per example, the tree's interactions (query → key, every head of the edge's layer) "
        "are zeroed and the drop of the target's probability is measured, next to zeroing as many interactions per "
        "layer with the highest attention, with the most attention rollout from the output position, and at random. "
        f"{tree['examples']} examples, {fmt(_num(tree.get('interactions_per_example')), 3)} interactions each on "
        "average.</p>"
        f'<table class="num"><thead><tr><th>masked</th><th>drop of p(target)</th></tr></thead><tbody>{rows}</tbody>'
        f"</table><ul>{tests}</ul></section>"
    )


def _settings_section(data: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in sorted((data.get("settings") or {}).items())
    )
    return (
        f'<section id="settings"><h2>Settings</h2><div class="scroll"><table class="kv">{rows}</table></div></section>'
    )


def render_leaderboard_page(
    data: Mapping[str, Any], *, title: str | None = None, back: tuple[str, str] | None = None
) -> str:
    """The self-contained leaderboard page from ``Leaderboard.to_dict()``."""
    naopc = data.get("naopc") or {}
    accuracy = data.get("accuracy")
    subtitle = esc(
        f"{data.get('examples')} examples · model {data.get('model')} · dataset {data.get('dataset')}"
        + (f" · accuracy {accuracy:.3f}" if isinstance(accuracy, float) else "")
        + f" · normalised AOPC limits exact on {naopc.get('exact', 0)}, beam search (width "
        f"{naopc.get('beam_width')}) on {naopc.get('beam', 0)} examples"
    )
    page = Page(title or "attrflow: which explanation can be trusted", subtitle=subtitle, back=back)
    for section in (
        _main_table(data),
        _wins_section(data),
        _layers_section(data),
        _curves_section(data),
        _truth_section(data),
        _sanity_section(data),
        _cost_section(data),
        _tree_section(data),
        _settings_section(data),
    ):
        if section:
            page.add(section)
    page.add_script("sortable.js")
    return page.render()


# ---------------------------------------------------------------------------------------------- matplotlib
def _series(data: Mapping[str, Any], kind: str) -> tuple[dict[str, list[float]], list[str], str, str]:
    out: dict[str, list[float]] = {}
    labels: list[str] = []
    if kind == "spearman":
        for method, entry in data["methods"].items():
            layers = (entry.get("spearman_blankout") or {}).get("by_layer")
            if layers:
                labels = list(layers)
                out[method] = [_mean(layers[k]) for k in labels]
        return out, labels, "layer", "Spearman ρ with blank-out"
    if kind == "aopc":
        curves = data.get("aopc_curves") or {}
        labels = [f"{k:.0%}" for k in curves.get("bins") or []]
        values = {m: [_num(v) for v in vs] for m, vs in (curves.get("comprehensiveness") or {}).items()}
        return values, labels, "top-k removed", "comprehensiveness Δp"
    depths = [str(d) for d in (data.get("sanity") or {}).get("depths") or []]
    for method, entry in data["methods"].items():
        by_depth = (entry.get("sanity_spearman") or {}).get("by_depth")
        if by_depth:
            out[method] = [_mean(by_depth.get(d)) for d in depths]
    return out, depths, "top layers re-initialised", "Spearman ρ with the trained model's scores"


def plot_leaderboard(data: Mapping[str, Any], kind: str = "spearman", *, ax: Axes | None = None) -> Figure:
    """A matplotlib figure of ``Leaderboard.to_dict()``: ``"spearman"`` (per layer, with blank-out), ``"aopc"``
    (comprehensiveness curves), ``"sanity"`` (the randomisation cascade) or ``"cost"`` (seconds per example against
    normalised comprehensiveness, log scale)."""
    from attrflow.errors import InvalidInputError
    from attrflow.viz.plots import _axes

    if kind not in ("spearman", "aopc", "sanity", "cost"):
        raise InvalidInputError(f"kind must be 'spearman', 'aopc', 'sanity' or 'cost', got {kind!r}")
    figure, axes = _axes(ax, (7.5, 4.5))
    if kind == "cost":
        metric = "naopc_comprehensiveness" if _present(data, "naopc_comprehensiveness") else "aopc_comprehensiveness"
        for method, entry in data["methods"].items():
            seconds = entry.get("seconds_per_example")
            if isinstance(seconds, (int, float)) and seconds > 0:
                axes.scatter([seconds], [_mean(entry.get(metric))])
                axes.annotate(
                    method, (seconds, _mean(entry.get(metric))), fontsize=8, xytext=(4, 4), textcoords="offset points"
                )
        axes.set_xscale("log")
        axes.set_xlabel("seconds per example (median, method alone)")
        axes.set_ylabel(metric)
    else:
        series, labels, x_label, y_label = _series(data, kind)
        for method, values in series.items():
            axes.plot(range(len(labels)), values, marker="o", label=method)
        axes.set_xticks(range(len(labels)), labels)
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        if series:
            axes.legend(fontsize=7, ncol=2)
    axes.set_title(f"{data.get('model')} on {data.get('dataset')} ({data.get('examples')} examples)", fontsize=10)
    axes.grid(alpha=0.3)
    return figure
