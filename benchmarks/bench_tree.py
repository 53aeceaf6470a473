"""Attribution tree: attrflow vs the official ``attribution_tree.py`` loop, side by side in one run.

Both build the tree of the same random 12-layer attributions with the official settings (root "top-token",
max without the [CLS] row, sequential scan); the edges must be identical. attrflow's default by-layer scan is
timed too. Prints the best-of-N seconds per tree and the ratio official / attrflow (one thread each).

    PYTHONPATH=src python benchmarks/bench_tree.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))

from test_tree import make_result, official_attribution_tree

from attrflow.analysis.tree import attribution_tree


def best_of(repeats: int, func) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    # one thread for both sides: numpy runs the official loop on one, and on the shared 2-core machine torch's
    # intra-op thread pool turns microsecond reductions into tens of milliseconds
    torch.set_num_threads(1)
    print(f"{'n':>5} {'edges':>6} {'official s':>11} {'attrflow s':>11} {'ratio':>7} {'by-layer s':>11}")
    for n in (32, 64, 128, 256):
        g = torch.Generator().manual_seed(n)
        attributions = (torch.randn(12, 12, n, n, generator=g, dtype=torch.float64) ** 3).float()
        result = make_result(attributions)
        per_head = attributions.numpy()  # the official script loads [L, H, n, n] and sums the heads itself
        official_settings = {
            "root": "top-token",
            "normalization": "layer-max-without-output-row",
            "scan": "sequential",
        }
        expected = official_attribution_tree(per_head.astype("float64").sum(1))
        tree = attribution_tree(result, **official_settings)  # type: ignore[arg-type]
        assert [(e.parent, e.child) for e in tree.edges] == expected, "edges differ from the official script"
        repeats = 5 if n <= 128 else 2
        official = best_of(repeats, lambda: official_attribution_tree(per_head.sum(1, dtype="float64")))  # noqa: B023
        ours = best_of(repeats, lambda: attribution_tree(result, **official_settings))  # type: ignore[arg-type]  # noqa: B023
        by_layer = best_of(repeats, lambda: attribution_tree(result))  # noqa: B023
        print(f"{n:>5} {len(expected):>6} {official:>11.4f} {ours:>11.4f} {official / ours:>7.1f} {by_layer:>11.4f}")


if __name__ == "__main__":
    main()
