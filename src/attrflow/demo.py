"""The tour of attrflow that ``make demo`` runs: reports for a few inputs on the built-in models and an index.

Everything runs offline on the models shipped with attrflow. Sections that need more time (heads, triggers,
faithfulness, the leaderboard) run on small samples so the whole demo stays within a few minutes on two CPU cores.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

TWEETS = (
    "i love this new phone , the camera is amazing and the battery lasts all day",
    "worst flight ever , delayed three hours and they lost my bag",
    "not bad at all , i actually enjoyed the show tonight",
    "so disappointed with the service today , nobody even said sorry",
)

__all__ = ["TWEETS", "DemoEntry", "run_demo"]


@dataclass(frozen=True)
class DemoEntry:
    """One page of the demo: what it shows and where it is."""

    section: str
    title: str
    path: Path
    summary: str


def _explanation_page(model_name: str, text: str, out: Path, name: str) -> DemoEntry:
    import attrflow
    from attrflow.analysis.explanation import explain

    model = attrflow.load_model(model_name)
    explanation = explain(model, text)
    result = explanation.result
    path = explanation.write(
        out / f"{name}.html", title=f"attrflow — {model_name}: {text}", back=("index.html", "attrflow demo")
    )
    label = model.label_name(result.predicted) or str(result.predicted)
    gap = float(result.completeness_gap.abs().max())  # type: ignore[union-attr]
    summary = f"prediction {label} (p = {result.probability:.3f}), max |completeness gap| {gap:.1e}"
    return DemoEntry(model_name, text, path, summary)


def _faithfulness_page(out: Path, progress: bool = False) -> DemoEntry:
    """Abnar & Zuidema's protocol on a small sample: raw attention, rollout, flow and AttAttr against blank-out."""
    from attrflow import load_dataset
    from attrflow.analysis.faithfulness import QUICK_METHODS, faithfulness
    from attrflow.runner import RunOptions
    from attrflow.viz.faithfulness import render_faithfulness_page
    from attrflow.viz.page import write_page

    test = load_dataset("agreement", split="test")
    report = faithfulness(
        "agreement",
        test,
        methods=(*QUICK_METHODS, "attattr"),
        examples=16,
        steps=4,
        run=RunOptions(progress=progress),
    )
    path = write_page(render_faithfulness_page(report, back=("index.html", "attrflow demo")), out / "faithfulness.html")
    aopc = report.aopc_frame()["comprehensiveness"]
    best = str(aopc.idxmax())
    summary = f"best AOPC comprehensiveness: {best} ({float(aopc[best]):.2f}) on {report.num_examples} sentences"
    return DemoEntry("evaluation", "Spearman with blank-out and gradients, AOPC (16 sentences)", path, summary)


def _leaderboard_page(out: Path, progress: bool = False) -> DemoEntry:
    """A small leaderboard: fast methods and the two baselines on 16 agreement sentences, every metric."""
    from attrflow import load_dataset
    from attrflow.analysis.faithfulness import QUICK_METHODS
    from attrflow.analysis.leaderboard import leaderboard
    from attrflow.runner import RunOptions
    from attrflow.viz.leaderboard import render_leaderboard_page
    from attrflow.viz.page import write_page

    test = load_dataset("agreement", split="test")
    board = leaderboard(
        "agreement",
        test,
        methods=(*QUICK_METHODS, "attattr"),
        examples=16,
        naopc_examples=8,
        exact_max=8,
        sanity_examples=4,
        sanity_depths="full",
        timing_examples=2,
        steps=4,
        run=RunOptions(progress=progress),
    )
    data = board.to_dict()
    page = render_leaderboard_page(
        data, title="attrflow — leaderboard (agreement, 16 sentences)", back=("index.html", "attrflow demo")
    )
    path = write_page(page, out / "leaderboard.html")
    ranked = {m: e["naopc_comprehensiveness"]["mean"] for m, e in data["methods"].items()}
    best = max((m for m in ranked if ranked[m] is not None), key=lambda m: ranked[m])
    summary = f"best normalised AOPC: {best} ({ranked[best]:.2f}); sanity check failed: {', '.join(board.flagged())}"
    return DemoEntry("leaderboard", "every method and two baselines, one protocol (16 sentences)", path, summary)


def _heads_page(out: Path, progress: bool = False) -> DemoEntry:
    """Head importance (AttAttr, Taylor, attention, random) and pruning curves on a small, label-mixed sample."""
    from attrflow import load_dataset
    from attrflow.analysis.heads import heads_demo

    # the built-in splits are sorted by label: take evenly spread examples so both labels occur
    validation = load_dataset("tweets-sentiment", split="validation")
    test = load_dataset("tweets-sentiment", split="test")
    analysis = heads_demo("sentiment", validation[::144], test[::14], examples=16, eval_examples=160, progress=progress)
    path = out / "heads.html"
    title = "attrflow — head importance and pruning (sentiment, small sample)"
    analysis.to_html(path, title=title, back=("index.html", "attrflow demo"))
    summary = analysis.summary().strip().splitlines()[0]
    return DemoEntry("heads", "head importance and pruning curves (16 tweets, accuracy on 160)", path, summary)


def _attack_page(out: Path, progress: bool = False) -> DemoEntry:
    """Hao et al.'s trigger attack on a small sample, next to the random-token control."""
    from attrflow import load_dataset
    from attrflow.analysis.triggers import trigger_attack

    train = load_dataset("tweets-sentiment", split="train")
    test = load_dataset("tweets-sentiment", split="test")
    # the built-in splits are sorted by label: both samples are seeded random draws (the default)
    patterns, report = trigger_attack(
        "sentiment", train, test, mine_examples=40, eval_examples=200, top=1, control_seeds=3, progress=progress
    )
    path = out / "attack.html"
    report.to_html(path, back=("index.html", "attrflow demo"))
    overall = report.overall()
    summary = (
        f"accuracy {overall[0].accuracy_before:.3f} -> {overall[0].accuracy_after:.3f} with the trigger, "
        f"{overall[0].control_accuracy_after:.3f} with random tokens"
        if overall
        else f"{len(patterns)} patterns mined"
    )
    return DemoEntry("attack", "adversarial trigger vs random control (200 tweets)", path, summary)


def _agreement_sentence() -> str:
    from attrflow import load_dataset

    test = load_dataset("agreement", split="test")
    for example in test:
        if example.meta.get("attractors", 0) > 0:
            return str(example.text)
    return str(test[0].text)


def run_demo(
    out_dir: str | Path = "attrflow-demo", *, say: Callable[[str], None] = logger.info, progress: bool = False
) -> list[DemoEntry]:
    """Write the demo reports and ``index.html`` into ``out_dir``; ``say`` receives a line per step, and with
    ``progress`` the long steps (faithfulness, heads, trigger) show progress bars on stderr.

    Returns:
        The pages written, in the order of the index.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, Callable[[], DemoEntry]]] = []
    for i, text in enumerate(TWEETS, 1):
        page = functools.partial(_explanation_page, "sentiment", text, out, f"tweet-{i}")
        jobs.append((f"sentiment: {text}", page))
    jobs.append(
        ("agreement sentence", lambda: _explanation_page("agreement", _agreement_sentence(), out, "agreement-1"))
    )
    jobs.append(("faithfulness: 16 agreement sentences", functools.partial(_faithfulness_page, out, progress)))
    jobs.append(("leaderboard: 16 agreement sentences", functools.partial(_leaderboard_page, out, progress)))
    jobs.append(
        ("head importance and pruning: 16 tweets, accuracy on 160", functools.partial(_heads_page, out, progress))
    )
    jobs.append(("adversarial trigger: mine 40 tweets, attack 200", functools.partial(_attack_page, out, progress)))
    entries = []
    start = time.perf_counter()
    for k, (what, job) in enumerate(jobs, 1):
        say(f"[{k}/{len(jobs)}] {what}")
        entries.append(job())
    index = _write_index(out, entries)
    say(f"done in {time.perf_counter() - start:.0f} s: open {index}")
    return entries


def _write_index(out: Path, entries: list[DemoEntry]) -> Path:
    from attrflow.viz.page import esc, render_page, write_page

    rows = "".join(
        f"<tr><td>{esc(e.section)}</td><td><a href='{esc(e.path.name)}'>{esc(e.title)}</a></td>"
        f"<td>{esc(e.summary)}</td></tr>"
        for e in entries
    )
    intro = (
        "<section><p>Self-attention attribution (Hao et al., AAAI 2021), attention rollout and attention flow "
        "(Abnar &amp; Zuidema, ACL 2020) and the analyses built on them, on the models shipped with attrflow. Each "
        "page is one self-contained file that opens offline and links back here.</p>"
        f'<table class="kv"><tr><th>section</th><th>page</th><th>summary</th></tr>{rows}</table></section>'
    )
    return write_page(render_page("attrflow demo", [intro]), out / "index.html")
