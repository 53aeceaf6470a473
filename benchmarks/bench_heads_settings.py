"""Head importance: how much quadrature the ranking needs. The official pruning script's setting (m = 20 left-
Riemann points) against attrflow's cheaper rules, side by side on the same examples: time per example, agreement
of the importance maps, and the pruning curve each ranking gives.

Also the paper's consistency check (§4.2): the importance from two disjoint halves of the examples, and from
another split of the data, correlated with the full map.

Usage:
    python benchmarks/bench_heads_settings.py [--model sentiment] [--data tweets-sentiment] [--split validation]
        [--other-split test] [--examples 200] [--eval-examples 1000] [--configs riemann-left:20,gauss-lobatto:4]
        [--threads 1] --out DIR

Run directories go to DIR (resumable: run the same command again after an interruption); the curves to
DIR/settings.json and DIR/settings.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

import attrflow
from attrflow.analysis.heads import HeadImportance, prune_curve
from attrflow.data import sample
from attrflow.runner import RunOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--data", default="tweets-sentiment")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--other-split", default="test", help="split for the cross-split consistency check")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--eval-examples", type=int, default=1000)
    parser.add_argument("--configs", default="riemann-left:20,gauss-lobatto:4,gauss-legendre:8,riemann-left:4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)

    model = attrflow.load_model(args.model)
    data = attrflow.load_dataset(args.data, split=args.split)
    evaluation = sample(data, args.eval_examples, seed=1)  # a seeded sample (the splits are label-sorted)
    configs = [(rule, int(steps)) for rule, steps in (c.split(":") for c in args.configs.split(","))]
    print(
        f"{model.name}: {model.num_layers}x{model.num_heads} heads; importance from {args.examples} examples of "
        f"{args.data}/{args.split}, accuracy on {len(evaluation)}; {args.threads} thread(s), "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    importances: dict[str, HeadImportance] = {}
    seconds: dict[str, float] = {}
    for rule, steps in configs:
        name = f"{rule}:{steps}"
        start = time.perf_counter()
        importances[name] = attrflow.head_importance(
            model,
            data,
            method="attattr",
            examples=args.examples,
            steps=steps,
            rule=rule,
            run=RunOptions(out_dir=out / name),
        )
        seconds[name] = time.perf_counter() - start
    reference_name = f"{configs[0][0]}:{configs[0][1]}"
    reference = importances[reference_name]

    print(f"\n| AttAttr setting | s / example | Pearson with {reference_name} | Spearman | halves Spearman |")
    print("|---|---:|---:|---:|---:|")
    for name, importance in importances.items():
        c = importance.correlation(reference)
        half = len(importance.example_ids) // 2
        halves = importance.subset(slice(0, half)).correlation(importance.subset(slice(half, None)))
        print(
            f"| {name} | {seconds[name] / importance.num_examples:.3f} | {c.pearson:.4f} | {c.spearman:.4f} | "
            f"{halves.spearman:.4f} |"
        )

    # the cross-split check uses the second setting (attrflow's default in the default --configs)
    rule, steps = configs[1] if len(configs) > 1 else configs[0]
    other = attrflow.load_dataset(args.data, split=args.other_split)
    start = time.perf_counter()
    other_importance = attrflow.head_importance(
        model,
        other,
        method="attattr",
        examples=args.examples,
        steps=steps,
        rule=rule,  # type: ignore[arg-type]
        run=RunOptions(out_dir=out / f"{args.other_split}-{rule}:{steps}"),
    )
    cross = other_importance.correlation(importances[f"{rule}:{steps}"])
    print(
        f"\n{args.split} vs {args.other_split} ({rule}:{steps}, {args.examples} examples each): "
        f"Pearson {cross.pearson:.4f}, Spearman {cross.spearman:.4f} ({time.perf_counter() - start:.0f} s)"
    )

    rankings = {
        **importances,
        "attention": attrflow.head_importance(model, data, method="attention", examples=args.examples),
        "random": attrflow.head_importance(model, data, method="random"),
    }
    curve = prune_curve(model, evaluation, rankings)
    print()
    print(curve.to_frame().to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print("\nAUC: " + ", ".join(f"{name} {auc:.4f}" for name, auc in curve.auc.items()))
    (out / "settings.json").write_text(json.dumps({"pruning": curve.to_dict(), "seconds": seconds}, indent=2))
    curve.plot().savefig(out / "settings.png", dpi=150)
    print(f"wrote {out / 'settings.json'} and {out / 'settings.png'}")


if __name__ == "__main__":
    main()
