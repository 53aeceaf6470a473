"""AttAttr head importance over a dataset: the official one-example-at-a-time loop vs attrflow's runner (local and
Ray), side by side in one run, on the same examples with the same settings.

(a) official-style loop, written here independently of attrflow's engine, as ``prune_head_with_attr.py`` does it:
    for every example (batch size 1) and every layer, a clean forward pass for the layer's attention A, then one
    forward + backward of the whole model on the m interpolation points α·A batched together (α = k/m, k = 0..m−1,
    left Riemann, gold-label probability), attribution = A/m ⊙ Σ gradients, head score = max over (i, j).
(b) attrflow, local engine: ``run_dataset(HeadScoresTask(model, methods=["attattr"]))`` in this process (the
    layers below each attributed layer are computed once; every layer's rows branch off one clean pass).
(c) attrflow, Ray engine, ``--workers`` replicas (one torch thread each) on a local Ray started beforehand; the
    time includes creating the workers and loading a model replica in each.
(d) for the record, attrflow local with its default quadrature (fewer points), compared by ranking agreement.

The per-example head scores of (b) and (c) are checked against (a) before any figure is printed.

Usage:
    python benchmarks/bench_runner.py [--model sentiment] [--data tweets-sentiment] [--split validation]
        [--examples 40] [--steps 20] [--rule riemann-left] [--threads 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

import attrflow
from attrflow.analysis.heads import HeadImportance, HeadScoresTask
from attrflow.data import sample
from attrflow.runner import run_dataset
from attrflow.testing import naive_attattr_layers


def official_head_scores(hf_model: Any, inputs: dict[str, torch.Tensor], label: int, steps: int) -> np.ndarray:
    """Max attribution per head ``[L, H]`` of one example, gold-label target, left Riemann sum with ``steps``
    (the official algorithm, attrflow.testing.naive_attattr_layers)."""
    attributions, _ = naive_attattr_layers(hf_model, inputs, target=label, steps=steps, completeness=False)
    return attributions.flatten(2).amax(-1).numpy()


def official_loop(model: attrflow.Model, examples: list[Any], steps: int) -> np.ndarray:
    hf_model = model.model.eval()
    rows = []
    for example in examples:
        inputs = model.tokenizer(example.text, example.text_pair, return_tensors="pt", truncation=True)
        rows.append(official_head_scores(hf_model, dict(inputs), example.label, steps))
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentiment", help="built-in name or checkpoint directory")
    parser.add_argument("--data", default="tweets-sentiment")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--steps", type=int, default=20, help="m (official pruning script: 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (a and b)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (one thread each)")
    parser.add_argument("--examples-per-batch", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = attrflow.load_model(args.model)
    dataset = attrflow.load_dataset(args.data, split=args.split)
    examples = list(sample(dataset, args.examples))  # a seeded sample: the built-in splits are label-sorted
    lengths = [len(model.tokenizer(e.text, e.text_pair)["input_ids"]) for e in examples]
    print(
        f"{model.name}: {model.num_layers} layers x {model.num_heads} heads; {len(examples)} examples of "
        f"{args.data}/{args.split} (mean {np.mean(lengths):.1f} tokens); m = {args.steps} left-Riemann points, "
        f"gold-label target; {args.threads} torch thread(s) here, {args.workers} Ray workers x 1 thread; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    options = {"methods": ["attattr"], "steps": args.steps, "rule": "riemann-left", "target": "label"}
    timings: dict[str, float] = {}
    scores: dict[str, np.ndarray] = {}

    start = time.perf_counter()
    scores["official loop"] = official_loop(model, examples, args.steps)
    timings["official loop"] = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="bench-runner-") as scratch:
        start = time.perf_counter()
        local = run_dataset(
            HeadScoresTask(model, **options),
            examples,
            out_dir=Path(scratch) / "local",
            examples_per_batch=args.examples_per_batch,
            progress=False,
        )
        timings["attrflow local"] = time.perf_counter() - start
        scores["attrflow local"] = HeadImportance.from_run(local, "attattr").per_example.numpy()

        import ray

        from attrflow.runner._engines import start_local_ray

        start = time.perf_counter()
        start_local_ray(ray, args.workers)
        ray_start = time.perf_counter() - start
        try:
            start = time.perf_counter()
            remote = run_dataset(
                HeadScoresTask(args.model, **options),
                examples,
                out_dir=Path(scratch) / "ray",
                engine="ray",
                num_workers=args.workers,
                examples_per_batch=args.examples_per_batch,
                progress=False,
            )
            key = f"attrflow ray x{args.workers}"
            timings[key] = time.perf_counter() - start
            scores[key] = HeadImportance.from_run(remote, "attattr").per_example.numpy()
        finally:
            ray.shutdown()

        # for the record: attrflow's default quadrature (not m = 20 left Riemann, so compared by ranking only)
        start = time.perf_counter()
        default = run_dataset(
            HeadScoresTask(model, methods=["attattr"], target="label"),
            examples,
            out_dir=Path(scratch) / "default",
            examples_per_batch=args.examples_per_batch,
            progress=False,
        )
        default_seconds = time.perf_counter() - start
        default_importance = HeadImportance.from_run(default, "attattr")
        official = HeadImportance.from_run(local, "attattr")

    reference = scores["official loop"]
    scale = float(np.abs(reference).max())
    for name, values in scores.items():
        diff = float(np.abs(values - reference).max())
        assert diff <= 1e-4 * scale + 1e-7, f"{name} differs from the official loop by {diff:.2e}"
        print(f"check: {name:<18} max |difference| to the official loop = {diff:.1e} (scores up to {scale:.2e})")
    print()
    print("| engine | seconds | examples/s | speed-up vs official loop |")
    print("|---|---:|---:|---:|")
    base = len(examples) / timings["official loop"]
    for name, seconds in timings.items():
        rate = len(examples) / seconds
        print(f"| {name} | {seconds:.1f} | {rate:.3f} | {rate / base:.2f} |")
    rate = len(examples) / default_seconds
    agreement = default_importance.correlation(official)
    settings = default_importance.settings
    print(
        f"| attrflow local, default {settings['rule']}:{settings['steps']} | {default_seconds:.1f} | {rate:.3f} | "
        f"{rate / base:.2f} |"
    )
    print(
        f"\n(starting the local Ray itself took {ray_start:.1f} s, not included above; the default-quadrature "
        f"importance agrees with the m = {args.steps} one at Spearman {agreement.spearman:.4f}, Pearson "
        f"{agreement.pearson:.4f} over the {official.num_layers * official.num_heads} heads)"
    )


if __name__ == "__main__":
    main()
