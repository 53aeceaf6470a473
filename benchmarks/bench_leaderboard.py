"""The whole leaderboard against running each method's evaluation separately, on the same examples and settings.

(a) the whole leaderboard: every method, the baselines and the references from one shared context per example
    (one recorded pass, one attribution, one gradient pass, one batch of blank-out variants) and one deduplicated
    batch of erasure variants per example;
(b) each method alone: ``leaderboard(methods=[m])`` for every method m — what evaluating one method at a time costs,
    each run recomputing the references (blank-out, the gradient) and the baselines it is judged against.

Both run in this process (local engine, one torch thread), one after the other, with the same sample and subsample
fractions (normalised AOPC, sanity, timing) as the documented run; wall and CPU seconds of this process are printed
with the machine's load. The numbers of (a) and (b) for one method are the same (checked for its AOPC; not for the
summed gradient, which is rounding noise whose ranking follows the float path).

Usage:
    python benchmarks/bench_leaderboard.py [--model sentiment] [--data tweets-sentiment] [--examples 50]
        [--naopc 0.2] [--beam-width 1] [--sanity 0.1] [--depths 1,3,6] [--timing 0.06] [--threads 1]
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
from attrflow.analysis.leaderboard import leaderboard, leaderboard_methods
from attrflow.runner import RunOptions


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(label: str, **kwargs: object) -> tuple[float, float, attrflow.Leaderboard]:
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
    walls, cpus = [], []
    for method in methods:
        wall, cpu, alone = timed(f"(b) {method} alone", methods=[method], **common)
        walls.append(wall)
        cpus.append(cpu)
        a = whole.values["aopc_comprehensiveness"][method]
        b = alone.values["aopc_comprehensiveness"][method]
        # the summed gradient is rounding noise (docs/faithfulness.md): its ranking follows the float path, and in
        # (a) the plain gradients come from the integrated-gradients pass
        if method != "gradient":
            assert np.allclose(a, b, equal_nan=True, atol=1e-6), f"{method}: AOPC differs between (a) and (b)"
    print(
        f"\nsum of (b): wall {sum(walls):.1f} s, cpu {sum(cpus):.1f} s; (a) whole: wall {whole_wall:.1f} s, "
        f"cpu {whole_cpu:.1f} s; separate / whole: wall {sum(walls) / whole_wall:.2f}x, cpu {sum(cpus) / whole_cpu:.2f}x"
    )
    print(f"per example: whole {whole_cpu / n:.2f} s cpu, separate {sum(cpus) / n:.2f} s cpu")


if __name__ == "__main__":
    main()
