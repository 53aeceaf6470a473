"""The whole leaderboard against running each method's evaluation separately, on the same examples and settings.

(a) the whole leaderboard: every method, the baselines and the references from one shared context per example
    (one recorded pass, one attribution, one gradient pass, one batch of blank-out variants) and one deduplicated
    batch of erasure variants per example;
(b) each method alone: ``leaderboard(methods=[m])`` for every method m — what evaluating one method at a time costs,
    each run recomputing the references (blank-out, the gradient) and the baselines it is judged against; on the
    first ``--separate`` examples of the same sample (default all of them), as (b) costs about fifteen times (a);
(c) with ``--ray W``: the whole leaderboard again on Ray (a local Ray started for the run, W replicas with one torch
    thread each), the same examples as (a).

(a) and (b) run in this process (local engine, one torch thread), one after the other, with the same sample and
subsample fractions (normalised AOPC, sanity, timing) as the documented run; wall and CPU seconds of this process are
printed with the machine's load ((c)'s CPU seconds are its workers', not this process's: only its wall is compared).
The numbers of (a), (b) and (c) for one method are the same (checked for its AOPC; not for the summed gradient, which
is rounding noise whose ranking follows the float path). Per-example figures and their extrapolation to
``--extrapolate`` examples close the output; an extrapolated figure is labelled so.

Usage:
    python benchmarks/bench_leaderboard.py [--model sentiment] [--data tweets-sentiment] [--examples 50]
        [--naopc 0.2] [--beam-width 1] [--sanity 0.1] [--depths 1,3,6] [--timing 0.06] [--threads 1]
        [--separate K] [--ray W] [--extrapolate 500]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

import attrflow
from attrflow.analysis.leaderboard import Leaderboard, leaderboard, leaderboard_methods
from attrflow.runner import RunOptions


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(label: str, **kwargs: object) -> tuple[float, float, Leaderboard]:
    start, cpu = time.perf_counter(), time.process_time()
    board = leaderboard(**kwargs)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{label:<28} wall {wall:8.1f} s   cpu {cpu:8.1f} s   load {load()}", flush=True)
    return wall, cpu, board


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--data", default="tweets-sentiment")
    parser.add_argument("--split", default="test")
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--naopc", type=float, default=0.2, help="fraction of the examples with normalised AOPC")
    parser.add_argument("--beam-width", type=int, default=1)
    parser.add_argument("--sanity", type=float, default=0.1, help="fraction of the examples of the sanity check")
    parser.add_argument("--depths", default="1,3,6")
    parser.add_argument("--timing", type=float, default=0.06, help="fraction of the examples timed per method")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--separate", type=int, default=None, help="examples of (b) (default: all of them)")
    parser.add_argument("--ray", type=int, default=0, help="(c): the whole leaderboard on Ray with this many workers")
    parser.add_argument("--extrapolate", type=int, default=500, help="examples of the per-example extrapolation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = attrflow.load_model(args.model)
    dataset = attrflow.load_dataset(args.data, split=args.split)
    n = args.examples
    common = dict(
        model=model,
        dataset=dataset,
        examples=n,
        balanced=True,
        naopc_examples=round(args.naopc * n),
        beam_width=args.beam_width,
        sanity_examples=round(args.sanity * n),
        sanity_depths=[int(d) for d in args.depths.split(",")],
        timing_examples=max(1, round(args.timing * n)),
        run=RunOptions(progress=False),
    )
    methods = [m for m in leaderboard_methods(model) if not attrflow.get_method(m).baseline]
    print(f"{args.model} on {args.data}:{args.split}, {n} examples, methods {', '.join(methods)}; load {load()}")
    whole_wall, whole_cpu, whole = timed("(a) whole leaderboard", methods="all", **common)
    per_example = {"(a) whole, local": (whole_wall / n, whole_cpu / n)}

    if args.ray:
        ray_run = RunOptions(engine="ray", num_workers=args.ray, progress=False)
        # the workers load the model by its name (a loaded model does not travel to them)
        on_ray_options = {**common, "model": args.model, "run": ray_run}
        ray_wall, _, on_ray = timed(f"(c) whole, Ray x{args.ray}", methods="all", **on_ray_options)
        for method in methods:
            same(method, whole, on_ray)
        per_example[f"(c) whole, Ray x{args.ray}"] = (ray_wall / n, float("nan"))

    k = n if args.separate is None else min(args.separate, n)
    walls, cpus = [], []
    # the same examples as (a): the first k of its sample, in its order
    separate = {**common, "examples": list(whole.example_ids[:k])} if k < n else common
    if k < n:
        separate.update(
            naopc_examples=round(args.naopc * k),
            sanity_examples=round(args.sanity * k),
            timing_examples=max(1, round(args.timing * k)),
            balanced=False,
        )
    for method in methods:
        wall, cpu, alone = timed(f"(b) {method} alone ({k} ex.)", methods=[method], **separate)
        walls.append(wall)
        cpus.append(cpu)
        if k == n:
            same(method, whole, alone)
    per_example["(b) sum of each alone"] = (sum(walls) / k, sum(cpus) / k)
    print(
        f"\nsum of (b) on {k} examples: wall {sum(walls):.1f} s, cpu {sum(cpus):.1f} s; (a) whole on {n}: "
        f"wall {whole_wall:.1f} s, cpu {whole_cpu:.1f} s"
    )
    base_wall, base_cpu = per_example["(a) whole, local"]
    print(f"\nper example, and extrapolated to {args.extrapolate} examples (per-example figure x {args.extrapolate}):")
    for label, (wall, cpu) in per_example.items():
        print(
            f"  {label:<24} wall {wall:7.2f} s  cpu {cpu:7.2f} s   x{args.extrapolate}: wall {wall * args.extrapolate:8.0f} s"
            f"   wall / (a) {wall / base_wall:5.2f}x   cpu / (a) {cpu / base_cpu:5.2f}x"
        )


def same(method: str, a: Leaderboard, b: Leaderboard) -> None:
    """The method's AOPC is the same in both runs (the summed gradient excepted: rounding noise, docs/faithfulness.md;
    in a whole run its plain gradients come from the integrated-gradients pass)."""
    if method == "gradient":
        return
    x = a.values["aopc_comprehensiveness"][method]
    y = b.values["aopc_comprehensiveness"][method]
    assert np.allclose(x, y, equal_nan=True, atol=1e-6), f"{method}: AOPC differs between the runs"


if __name__ == "__main__":
    main()
