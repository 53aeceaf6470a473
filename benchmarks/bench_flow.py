"""Attention flow: attrflow against the official algorithm (networkx Edmonds–Karp) and networkx's default solver.

For L = 12 layers and n = 16, 32, 64, 128 tokens it computes the [CLS] row of the last layer (n max-flow
problems) three ways, side by side in one run, on the same random attention (softmax of N(0, 2²) logits, 12
heads, fixed seed), checks that the values agree, and prints times and ratios. Then it times every position of
the last layer at n = 64 (4096 problems).

The official code (Abnar & Zuidema's ``attention_graph_util.py``) builds one dense networkx DiGraph over all L+1
layers and calls ``nx.maximum_flow_value(G, source, sink, flow_func=edmonds_karp)`` for each (source, token)
pair; the networkx rows below do exactly that, with Edmonds–Karp or networkx's default (preflow-push). A
networkx run whose estimate (from the problems done so far) exceeds ``--budget`` seconds is stopped and
reported as an estimate.

    python benchmarks/bench_flow.py                # everything (about 5 minutes on 2 cores)
    python benchmarks/bench_flow.py --sizes 16 32 --budget 60
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import networkx as nx
import numpy as np
import torch

import attrflow

LAYERS = 12
HEADS = 12


def random_attention(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(LAYERS, HEADS, n, n, generator=generator, dtype=torch.float64) * 2.0
    return torch.softmax(logits, dim=-1)


def official_graph(attentions: torch.Tensor) -> nx.DiGraph:
    """The official construction: residual 0.5·W + 0.5·I, one dense DiGraph over all layers."""
    att = attentions.mean(dim=1).numpy()
    n = att.shape[-1]
    graph = 0.5 * att + 0.5 * np.eye(n)
    g = nx.DiGraph()
    for layer in range(1, LAYERS + 1):
        for i in range(n):
            for j in range(n):
                g.add_edge(layer * n + i, (layer - 1) * n + j, capacity=float(graph[layer - 1][i, j]))
    return g


def networkx_row(
    g: nx.DiGraph, n: int, position: int, flow_func: object, budget: float
) -> tuple[np.ndarray | None, float, bool]:
    """Normalised flow row with networkx: (row, seconds, False), or (None, estimated seconds, True) when the
    estimate from the problems done so far exceeds ``budget``."""
    source = LAYERS * n + position
    start = time.perf_counter()
    values = []
    for t in range(n):
        values.append(nx.maximum_flow_value(g, source, t, flow_func=flow_func))
        elapsed = time.perf_counter() - start
        if elapsed / len(values) * n > budget:
            return None, elapsed / len(values) * n, True
    row = np.array(values)
    return row / row.sum(), time.perf_counter() - start, False


def best_of(repeats: int, run: object) -> float:
    """Best wall time of a few runs of attrflow (the machine is shared; the best run is the least disturbed)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def describe(seconds: float, skipped: bool) -> str:
    return f"~{seconds:9.1f} s (estimated, skipped)" if skipped else f"{seconds:10.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[16, 32, 64, 128])
    parser.add_argument("--budget", type=float, default=180.0, help="skip a networkx run estimated to take longer")
    parser.add_argument("--all-positions-n", type=int, default=64)
    args = parser.parse_args()

    attrflow.attention_flow(random_attention(4), positions=[0])  # warm up: imports, first calls
    print(f"attention flow, L={LAYERS}, [CLS] row of the last layer (n max-flow problems); attrflow: best of 3")
    for n in args.sizes:
        attentions = random_attention(n)
        ours = attrflow.attention_flow(attentions, positions=[0]).numpy()[0]
        ours_seconds = best_of(3, lambda a=attentions: attrflow.attention_flow(a, positions=[0]))
        g = official_graph(attentions)
        print(f"\nn={n}: attrflow {ours_seconds:.3f} s")
        for name, func in (
            ("networkx edmonds_karp (official)", nx.algorithms.flow.edmonds_karp),
            ("networkx default", None),
        ):
            row, seconds, skipped = networkx_row(g, n, 0, func, args.budget)
            agreement = "" if row is None else f"   max |diff| {np.abs(row - ours).max():.1e}"
            print(
                f"  {name:34s} {describe(seconds, skipped)}   attrflow is {seconds / ours_seconds:9.0f}x faster{agreement}"
            )

    n = args.all_positions_n
    attentions = random_attention(n, seed=1)
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    every = attrflow.attention_flow(attentions)
    seconds = time.perf_counter() - start  # one run, including the start of the worker processes
    cpu = _cpu_seconds() - cpu_before
    print(
        f"\nevery position of the last layer, L={LAYERS}, n={n} ({n * n} max-flow problems): attrflow {seconds:.2f} s"
    )
    print(f"  CPU time of this process and its workers: {cpu:.2f} s (load average now {os.getloadavg()[0]:.1f})")
    g = official_graph(attentions)
    _, one_row, _ = networkx_row(g, n, 0, None, budget=0.0)  # estimate only
    print(f"  networkx default, estimated from one problem: ~{one_row * n:.0f} s ({one_row * n / seconds:.0f}x)")
    print(f"  rows sum to 1: {bool(torch.allclose(every.sum(dim=1), torch.ones(n, dtype=every.dtype)))}")


if __name__ == "__main__":
    main()
