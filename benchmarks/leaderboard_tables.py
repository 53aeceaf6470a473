"""The Markdown tables of docs/leaderboard.md from a leaderboard directory (``attrflow leaderboard --out DIR``).

Usage:
    python benchmarks/leaderboard_tables.py runs/leaderboard-agreement
"""

from __future__ import annotations

import argparse
from typing import Any

import attrflow

_GROUPS = ("0", "1", "2+")


def cell(entry: Any, digits: int = 2) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    low, high = entry.get("ci") or [None, None]
    if low is None:
        return f"{entry['mean']:.{digits}f}"
    return f"{entry['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def layer_table(data: dict[str, Any], metric: str) -> str:
    rows = {m: e[metric]["by_layer"] for m, e in data["methods"].items() if e.get(metric, {}).get("by_layer")}
    if not rows:
        return ""
    layers = list(next(iter(rows.values())))
    lines = ["| | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for method, by_layer in rows.items():
        lines.append(f"| {method} | " + " | ".join(cell(by_layer[k]) for k in layers) + " |")
    return "\n".join(lines)


def truth_table(data: dict[str, Any]) -> str:
    head = "| method | subject top, all | 0 attractors | 1 | 2+ | attractor share ↓ |"
    lines = [head, "|---|---|---|---|---|---|"]
    for method, entry in data["methods"].items():
        top = entry.get("subject_top_rate") or {}
        groups = top.get("by_attractors") or {}
        cells = [cell(top), *(cell(groups.get(g)) for g in _GROUPS), cell(entry.get("attractor_share"))]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sanity_table(data: dict[str, Any]) -> str:
    depths = [str(d) for d in data["sanity"]["depths"] or []]
    lines = ["| method | " + " | ".join(f"top {d}" for d in depths) + " | median sanity ρ | flagged |"]
    lines.append("|---|" + "---|" * (len(depths) + 2))
    for method, entry in data["methods"].items():
        sanity = entry.get("sanity_spearman") or {}
        by_depth = sanity.get("by_depth") or {}
        median = sanity.get("median")
        lines.append(
            f"| {method} | "
            + " | ".join(cell(by_depth.get(d)) for d in depths)
            + f" | {'n/a' if median is None else f'{median:.2f}'} | {'⚠' if entry.get('sanity_flagged') else ''} |"
        )
    return "\n".join(lines)


def tree_table(data: dict[str, Any]) -> str:
    tree = data["tree"]
    if not tree.get("examples"):
        return "(no tree experiment)"
    lines = ["| masked | drop of p(target) |", "|---|---|"]
    lines += [f"| {c} | {cell(tree['drops'][c], 4)} |" for c in ("tree", "attention", "rollout", "random")]
    tests = "; ".join(
        f"tree vs {t['b']}: p_Holm = {t['p_holm']:.2g}" + (f", {t['winner']} larger" if t["winner"] else "")
        for t in tree["comparisons"]
    )
    return (
        "\n".join(lines)
        + f"\n\n{tree['examples']} examples, {tree['interactions_per_example']:.1f} interactions each; {tests}."
    )


def wins(data: dict[str, Any], metric: str) -> str:
    beaten: dict[str, list[str]] = {}
    for test in data["comparisons"]:
        if test["metric"] == metric and test["winner"]:
            loser = test["b"] if test["winner"] == test["a"] else test["a"]
            beaten.setdefault(test["winner"], []).append(loser)
    return "; ".join(f"{w} > {', '.join(sorted(ls))}" for w, ls in sorted(beaten.items(), key=lambda kv: -len(kv[1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    args = parser.parse_args()
    board = attrflow.Leaderboard.load(args.directory)
    data = board.to_dict()
    print(f"## {data['model']} on {data['dataset']}, {data['examples']} examples (accuracy {data['accuracy']})\n")
    print(board.to_markdown())
    for metric in ("spearman_blankout", "spearman_gradient"):
        table = layer_table(data, metric)
        if table:
            print(f"\n### {metric} per layer\n\n{table}")
    if any((e.get("subject_top_rate") or {}).get("mean") is not None for e in data["methods"].values()):
        print(f"\n### ground truth\n\n{truth_table(data)}")  # agreement data only
    print(f"\n### sanity\n\n{sanity_table(data)}")
    print(f"\n### tree\n\n{tree_table(data)}")
    print(f"\nNAOPC limits: {data['naopc']}")
    print("\n### significant wins (Wilcoxon, Holm, 5 %)")
    for metric in data["metrics"]:
        print(f"- {metric}: {wins(data, metric) or 'none'}")


if __name__ == "__main__":
    main()
