"""The adversarial-trigger pages and figures (Hao et al. 2021, §5): mined patterns, and the attack's accuracies next
to the random-token control.

Renderers take the results (:class:`~attrflow.TriggerPatterns`, :class:`~attrflow.AttackReport`) and compute
nothing; the pages are built on :mod:`attrflow.viz.page` and every string from a tokenizer or a dataset goes through
:func:`~attrflow.viz._html.esc`. matplotlib is imported on first use by the ``plot_*`` functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from attrflow.viz._html import esc
from attrflow.viz.page import render_page
from attrflow.viz.plots import _axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from attrflow.analysis.triggers import AttackReport, TriggerPatterns

__all__ = ["plot_attack", "plot_patterns", "render_attack", "render_patterns"]

_CLEAN, _TRIGGER, _CONTROL = "#7f7f7f", "#d62728", "#1f77b4"


def _num(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.3g}"


def _bar(value: float, colour: str) -> str:
    """A number in [0, 1] with a proportional inline bar."""
    if not math.isfinite(value):
        return "—"
    width = max(0.0, min(1.0, value)) * 80
    return f'<span class="bar" style="width:{width:.1f}px;background:{colour}"></span>{value:.3f}'


def _marked(tokens: Sequence[str], marked: Sequence[int]) -> str:
    """The tokens, escaped, with those at ``marked`` in ``<mark>``."""
    chosen = set(marked)
    return " ".join(f"<mark>{esc(t)}</mark>" if i in chosen else esc(t) for i, t in enumerate(tokens))


def _table(headers: Sequence[str], rows: Sequence[str]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# ---------------------------------------------------------------------------------------------- pages
def render_patterns(
    patterns: TriggerPatterns,
    *,
    top: int = 20,
    title: str | None = None,
    back: tuple[str, str] | None = None,
) -> str:
    """The page of the ``top`` strongest mined patterns with their source tokens (trigger tokens marked)."""
    rows = []
    for rank, pattern in enumerate(patterns.patterns[:top]):
        trigger = pattern.trigger()
        rows.append(
            f"<tr><td>{rank}</td><td>{_num(pattern.score)}</td><td>{esc(patterns.label_name(pattern.predicted))}</td>"
            f"<td>L{pattern.layer} H{pattern.head}</td><td>{esc(pattern.pair_text(0))}<br>"
            f"{esc(pattern.pair_text(1))}</td><td>{_marked(pattern.tokens, trigger.source_indices)}</td></tr>"
        )
    headers = ("rank", "score", "predicted", "head", "top pairs (query → key)", "source (trigger tokens marked)")
    subtitle = (
        f"{len(patterns)} examples mined; patterns with summed score ≥ {_num(patterns.min_score)} can serve as "
        "triggers. Score: self-attention attribution (Hao et al. 2021) of the head holding each example's largest "
        "entry, summed over its two largest entries."
    )
    section = f"<section><h2>Strongest patterns</h2>{_table(headers, rows)}</section>"
    return render_page(title or "attrflow: attention patterns", [section], subtitle=subtitle, back=back)


def _trigger_rows(report: AttackReport) -> list[str]:
    rows = []
    for index, trigger in enumerate(report.triggers):
        source = _marked(trigger.source_tokens, trigger.source_indices) if trigger.source_tokens else ""
        draws = report.control_tokens[index] if index < len(report.control_tokens) else ()
        random_tokens = " | ".join(" ".join(tokens) for tokens in draws) or "—"
        rows.append(
            f"<tr><td>#{index}</td><td><b>{esc(' '.join(trigger.tokens))}</b></td><td>{esc(trigger.describe())}</td>"
            f"<td>{_num(trigger.score)}</td><td>{esc(report.label_name(trigger.label))}</td><td>{source}</td>"
            f"<td>{esc(random_tokens)}</td></tr>"
        )
    return rows


def _outcome_rows(report: AttackReport) -> list[str]:
    rows = []
    for o in report.outcomes:
        control = (
            f"{_bar(o.control_accuracy_after, _CONTROL)} ± {_num(o.control_std)}"
            f"<br><small>{esc(' '.join(f'{a:.3f}' for a in o.control_accuracies))}</small>"
            if o.control_accuracies
            else "—"
        )
        rows.append(
            f"<tr><td>#{o.trigger} {esc(' '.join(report.triggers[o.trigger].tokens))}</td><td>{esc(o.label)}</td>"
            f"<td>{o.count}</td><td>{_bar(o.accuracy_before, _CLEAN)}</td>"
            f"<td>{_bar(o.accuracy_after, _TRIGGER)}</td><td>{control}</td></tr>"
        )
    return rows


def render_attack(report: AttackReport, *, title: str | None = None, back: tuple[str, str] | None = None) -> str:
    """The page of an attack: the triggers with their sources, and the accuracy table with bars."""
    settings = report.settings
    subtitle = (
        "Triggers mined from self-attention attribution patterns (Hao et al. 2021, §5) are inserted into every "
        "evaluation example at the relative positions they had in their source example. The control inserts the "
        "same number of random vocabulary tokens at the same positions "
        f"({esc(settings.get('control_seeds', 0))} seeds, mean ± sample std).<br>"
        f"model: {esc(settings.get('model', '?'))}; evaluation examples: {esc(settings.get('examples', '?'))}"
    )
    trigger_headers = (
        "",
        "tokens",
        "token@segment:position",
        "score",
        "source predicted",
        "source example (trigger tokens marked)",
        "random control draws",
    )
    outcome_headers = ("trigger", "gold label", "n", "clean", "with trigger", "random tokens (mean ± std; per seed)")
    sections = [
        f"<section><h2>Triggers</h2>{_table(trigger_headers, _trigger_rows(report))}</section>",
        f"<section><h2>Accuracy</h2>{_table(outcome_headers, _outcome_rows(report))}</section>",
    ]
    return render_page(title or "attrflow: adversarial triggers", sections, subtitle=subtitle, back=back)


# ---------------------------------------------------------------------------------------------- figures
def plot_patterns(patterns: TriggerPatterns, *, ax: Axes | None = None, top: int = 10) -> Figure:
    """Horizontal bars of the ``top`` strongest patterns' scores (first and second entry stacked)."""
    import numpy as np

    shown = list(reversed(patterns.patterns[:top]))
    figure, axes = _axes(ax, (8.0, 0.4 * min(top, max(len(patterns), 1)) + 1.4))
    labels = [
        f"{p.pair_text(0, scores=False)}  |  {p.pair_text(1, scores=False)}  ({patterns.label_name(p.predicted)})"
        for p in shown
    ]
    first = [p.scores[0] for p in shown]
    second = [p.scores[1] for p in shown]
    y = np.arange(len(shown))
    axes.barh(y, first, color=_TRIGGER, label="largest entry")
    axes.barh(y, second, left=first, color="#ff9896", label="second entry")
    if shown and patterns.min_score <= max(p.score for p in shown):
        axes.axvline(patterns.min_score, color="black", linestyle=":", linewidth=1, label="min_score")
    axes.set_yticks(y, labels, fontsize=8)
    axes.set_xlabel("attribution score (summed)")
    axes.set_title("strongest attention patterns: query → key (predicted class)", fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    return figure


def plot_attack(report: AttackReport, *, ax: Axes | None = None) -> Figure:
    """Grouped bars per trigger and gold label: accuracy before, with the trigger, with random tokens (± std)."""
    import numpy as np

    groups = list(report.outcomes)
    figure, axes = _axes(ax, (max(4.0, 0.9 * len(groups) + 1.5), 3.6))
    x = np.arange(len(groups))
    width = 0.27
    axes.bar(x - width, [o.accuracy_before for o in groups], width, color=_CLEAN, label="clean")
    axes.bar(x, [o.accuracy_after for o in groups], width, color=_TRIGGER, label="trigger")
    if any(o.control_accuracies for o in groups):
        stds = [0.0 if math.isnan(o.control_std) else o.control_std for o in groups]
        axes.bar(
            x + width,
            [o.control_accuracy_after for o in groups],
            width,
            yerr=stds,
            capsize=2,
            color=_CONTROL,
            label="random tokens (mean ± std)",
        )
    names = [f"#{o.trigger} {' '.join(report.triggers[o.trigger].tokens)}\n{o.label}" for o in groups]
    axes.set_xticks(x, names, fontsize=7)
    axes.set_ylim(0, 1.22)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_ylabel("accuracy")
    axes.set_title("accuracy per gold label: clean, with the trigger, with random tokens")
    axes.legend(fontsize=8, loc="upper center", ncol=3, frameon=False)
    return figure
