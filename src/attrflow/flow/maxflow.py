"""Attention flow (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020, §4).

The attention graph is a flow network: node ``(l, i)`` is position i after layer l (layer 0: the input
tokens), and the edge ``(l, i) → (l-1, j)`` has capacity ``Ā_l[i, j]``. The flow from ``(l, i)`` to input token
j is the max-flow value between the two nodes; a path's weight is its bottleneck, where rollout multiplies.

The official code runs networkx's Edmonds–Karp once per (source, token) pair on the dense graph of all layers
(minutes per sentence). Here every problem of a source layer shares one pruned network built once, solved by
Dinic's algorithm in compiled code with exact integer scaling and a certified error bound; many sources of a
deep layer are first bounded by a chain of certified bounds that settles nearly all of them with a few small
max flows per token (:mod:`attrflow.flow._maxflow`); large batches run in worker processes. The values are the
same to the certified tolerance; only the time differs (see BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from typing import Literal

import numpy as np
import torch

from attrflow.errors import InvalidInputError
from attrflow.flow import _maxflow
from attrflow.flow._graph import (
    AttentionInput,
    ExcludeSpec,
    HeadFusion,
    as_attention_tensor,
    attention_graph,
    check_choice,
    resolve_exclude,
    resolve_index,
    resolve_positions,
)

__all__ = ["FLOW_MAX_SECONDS", "attention_flow", "estimated_seconds"]

logger = logging.getLogger(__name__)

# Below this many estimated seconds of solving, worker processes cost more than they save.
_PARALLEL_MIN_SECONDS = 0.5
# Rough cost of one max-flow problem per arc (forward and reverse) of its network, measured on the project machine.
_SECONDS_PER_ARC = 3e-8
# The chain of bounds is used only on graphs with at most this share of zero capacities (see `_use_chain`).
_CHAIN_MIN_DENSITY = 0.9
# The smallest tolerance float64 residual capacities can certify.
_MIN_TOLERANCE = 1e-12
# Above this many tokens the estimate grows by n / _PHASES_FROM more (see `estimated_seconds`).
_PHASES_FROM = 128
FLOW_MAX_SECONDS = 600.0
"""Exact flow refuses work estimated above this many seconds on one core (``max_seconds=None`` lifts it)."""


def attention_flow(
    attentions: AttentionInput,
    *,
    layer: int | Literal["all"] = -1,
    positions: int | Sequence[int] | None = None,
    residual: bool = True,
    head_fusion: HeadFusion = "mean",
    head: int | None = None,
    exclude: ExcludeSpec = None,
    tolerance: float = 1e-7,
    workers: int | None = None,
    max_seconds: float | None = FLOW_MAX_SECONDS,
    check_rows: bool = True,
) -> torch.Tensor:
    """Attention flow from output positions to every input token (Abnar & Zuidema, ACL 2020; arXiv 2005.00928).

    Graph: ``Ā_l = 0.5·W_l + 0.5·I`` with ``W_l`` the heads of layer l fused (``residual=False``: ``Ā_l = W_l``);
    node ``(l, i)`` for l = 0..L, edge ``(l, i) → (l-1, j)`` of capacity ``Ā_l[i, j]``. For a source ``(l, p)``::

        flow[p, j] = maxflow((l, p) → (0, j)) / Σ_k maxflow((l, p) → (0, k))

    the sum running over the input tokens not excluded (a source with no flow at all gives a row of zeros).
    After the first layer this equals rollout, and it is exactly what the official implementation computes.

    Args:
        attentions: attention probabilities ``[L, H, n, n]`` (row = query, column = key): a torch tensor, a
            numpy array, or any result with an ``.attentions`` tensor. Causal (zero upper triangle) works.
        layer: the model layer (0-based, negatives count from the end) whose outputs are the sources, i.e.
            graph layer ``layer + 1``; ``"all"`` for every layer.
        positions: the output positions (sources): an index, a sequence of indices (negatives count from the
            end: ``-1`` is the last position, the one a causal LM predicts from), or None for all n.
        residual: add the identity for the residual connection, ``0.5·W + 0.5·I`` (the paper).
        head_fusion: fuse heads by ``"mean"`` (the paper), ``"max"`` or ``"min"`` (rows rescaled to sum to 1).
        head: per-head analysis (appendix A.1): the source layer's edges come from this head alone (with the
            residual), the layers below are head-fused.
        exclude: input tokens to leave out, e.g. [CLS]/[SEP] or a BOS attention sink: a boolean mask ``[n]``, or
            ``"special"`` for the input's ``special_mask``. Their flow is not computed, their columns are 0, and
            each row is normalised over the remaining tokens.
        tolerance: certified bound on the absolute error of every returned value (the solver works in integers
            and proves how far its answer can be from the exact one; see :mod:`attrflow.flow._maxflow`). The
            default, 1e-7, is below float32 resolution and needs one integer stage; down to 1e-12 costs about
            one more stage.
        workers: processes for large batches (None: one per available CPU; 1: in this process). The result
            does not depend on it.
        max_seconds: refuse, before any solving, work estimated above this many seconds on one core (exact flow
            costs ``L·n³`` to ``L·n⁴``: n max flows per source on networks of ``L·n²`` arcs; see
            :func:`estimated_seconds`); None lifts the limit. The message names the largest n that fits and the
            bounded alternative, :func:`attrflow.flow.bounds.attention_flow_bounds`.
        check_rows: require every attention row to sum to 1 (within rounding). False accepts rows that sum to
            less (the attention of pruned heads or masked interactions; flow then runs on those capacities).

    Returns:
        ``[len(positions), n]``, or ``[L, len(positions), n]`` for ``layer="all"``; float64 for float64 input,
        float32 otherwise.

    Raises:
        InvalidInputError: bad shapes or values, an index out of range or an unknown option, or work estimated
            above ``max_seconds``.
    """
    tensor, dtype = as_attention_tensor(attentions)
    num_layers, num_heads, n, _ = tensor.shape
    check_choice("head_fusion", head_fusion, HeadFusion)
    if layer == "all":
        tops = list(range(1, num_layers + 1))
    else:
        tops = [resolve_index("layer", layer, num_layers, "layers") + 1]
    sources = resolve_positions(positions, n)
    head_index = None if head is None else resolve_index("head", head, num_heads, "heads")
    excluded = resolve_exclude(exclude, attentions, n)
    if not isinstance(tolerance, float | int) or not tolerance >= _MIN_TOLERANCE:
        raise InvalidInputError(f"tolerance must be a number ≥ {_MIN_TOLERANCE:g}, got {tolerance!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidInputError(f"workers must be a positive integer or None, got {workers!r}")
    if max_seconds is not None:
        _check_size(tensor, tops, len(sources), int((~excluded).sum()), max_seconds, all_positions=positions is None)

    graph, top_matrices = attention_graph(
        tensor, residual=residual, head_fusion=head_fusion, head=head_index, check_rows=check_rows
    )
    sinks = np.flatnonzero(~excluded)
    # one scale for every block, so that results never depend on how the problems are split between workers
    flow_bound = max(1.0, float(graph.sum(axis=-1).max()), float(top_matrices.sum(axis=-1).max()))
    networks = _maxflow.Networks(graph, flow_bound)
    density = np.count_nonzero(graph) / graph.size
    tasks = _plan(tops, len(sources), len(sinks), n, density, workers)
    lower = np.zeros((len(tops), len(sources), len(sinks)))
    gaps = np.zeros_like(lower)
    for (top, rows, columns, _), (values, value_gaps) in zip(
        tasks, _run(tasks, networks, top_matrices, sources, sinks, n, density, workers), strict=True
    ):
        lower[tops.index(top), rows[:, None], columns[None, :]] = values
        gaps[tops.index(top), rows[:, None], columns[None, :]] = value_gaps

    # normalise each row; the rare values whose certified gap is too large are refined here
    refiner = _Refiner(networks, top_matrices, sinks)
    out = np.zeros((len(tops), len(sources), n))
    bound = 0.0
    for index, top in enumerate(tops):
        for row, position in enumerate(sources):
            refine = partial(refiner, top, int(position))
            out[index, row, sinks], row_bound = _maxflow.normalise_row(
                lower[index, row], gaps[index, row], refine, tolerance
            )
            bound = max(bound, row_bound)
    if bound > tolerance:
        logger.warning("attention flow: certified error bound %.2e exceeds the tolerance %.2e", bound, tolerance)
    result = torch.from_numpy(out if layer == "all" else out[0]).to(dtype)
    return result


def estimated_seconds(num_layers: int, n: int, tops: Sequence[int], sources: int, sinks: int, density: float) -> float:
    """Estimated seconds of exact flow on one core: every source layer's problems times their networks' arcs, times
    ``n / 128`` above 128 tokens for the growing number of Dinic phases (about ``L·n⁴`` in all on flat attention).

    Args:
        num_layers: L (only the graph layers under each source matter).
        n: tokens.
        tops: the graph layers of the sources (model layer + 1).
        sources: source positions per layer.
        sinks: input tokens solved for.
        density: share of non-zero capacities (about 0.5 for causal attention).
    """
    del num_layers
    total = 0.0
    for top in tops:
        chain = _use_chain(top, sources, n, density)
        units = _layer_units(top, sources, sinks, n, chain)
        total += units * 2 * density * n * n * _SECONDS_PER_ARC
    # Dinic's phases grow with n on flat attention (measured: 17-25x from n = 128 to 256 at 8 layers, not 8x)
    return total * max(1.0, n / _PHASES_FROM)


def _check_size(
    tensor: torch.Tensor, tops: list[int], sources: int, sinks: int, max_seconds: float, *, all_positions: bool
) -> None:
    """Refuse exact flow whose estimated solving time exceeds ``max_seconds``, saying what fits and what to use."""
    num_layers, _, n, _ = tensor.shape
    density = float((tensor[:, 0] != 0).float().mean())
    seconds = estimated_seconds(num_layers, n, tops, sources, sinks, density)
    if seconds <= max_seconds:
        return

    def fits(size: int) -> bool:
        count = size if all_positions else sources
        return estimated_seconds(num_layers, size, tops, count, size, density) <= max_seconds

    largest = 2
    while largest < n and fits(largest * 2):
        largest *= 2
    step = largest // 2
    while step >= 1:
        if largest + step < n and fits(largest + step):
            largest += step
        step //= 2
    problems = sources * sinks * len(tops)
    raise InvalidInputError(
        f"exact attention flow here is {problems:,} max-flow problems on networks of up to "
        f"{2 * (max(tops) - 2) * n * n * density:,.0f} arcs, estimated {_duration(seconds)} on one core, over the "
        f"limit of {_duration(max_seconds)}. Exact flow costs L·n³ to L·n⁴; with these {num_layers} layers and "
        f"sources it fits up to about n = {largest} tokens. For longer inputs use "
        "attrflow.flow.bounds.attention_flow_bounds (certified lower and upper bounds on every value, in the time "
        "of rollout) or method 'flow_bounds'; pass max_seconds=None to solve exactly anyway"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


class _Refiner:
    """Re-solves single max-flow values to a smaller certified gap, on unpruned networks."""

    def __init__(self, networks: _maxflow.Networks, top_matrices: np.ndarray, sinks: np.ndarray) -> None:
        self.networks, self.top_matrices, self.sinks = networks, top_matrices, sinks

    def __call__(self, top: int, position: int, k: int, target: float) -> tuple[float, float]:
        network = self.networks.get(top, prune=False)
        sink_caps = self.networks.graph[0][:, self.sinks[k]]
        return network.max_flow(self.top_matrices[top - 1][position], sink_caps, tolerance=target)


# A task: a source layer, its rows (indices into `positions`), its sinks (indices into `sinks`), and whether
# the rows are bounded by the chain first (see `_maxflow.chain_flows`).
_Task = tuple[int, np.ndarray, np.ndarray, bool]


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _layer_units(top: int, num_rows: int, num_sinks: int, n: int, chain: bool) -> float:
    """Work in network layers solved: each problem's network at layer ``top`` has ``top - 2`` dense layers."""
    if top <= 2:
        return 0.0
    if chain:  # per sink: the whole-layer flow (about two stages) and n single-node flows at CHAIN_START
        return num_sinks * (2 * (top - 2) + n * (_maxflow.CHAIN_START - 2))
    return num_rows * num_sinks * (top - 2)


def _use_chain(top: int, num_rows: int, n: int, density: float) -> bool:
    # structural zeros (causal masks) make the chain's bounds miss: a source's flow is limited by the positions
    # it sees, not by the whole layer's bottleneck (measured: 2% of pairs certified for causal attention)
    if top < _maxflow.CHAIN_START + 2 or density < _CHAIN_MIN_DENSITY:
        return False
    # the chain pays when it replaces clearly more work than it costs (its rare uncertified pairs included)
    return _layer_units(top, num_rows, 1, n, chain=False) > 1.5 * _layer_units(top, num_rows, 1, n, chain=True)


def _worker_context() -> BaseContext:
    """The start method of the workers: fork where the platform has it, else spawn.

    Forked workers start in ~0.1 s; spawn (and forkserver) re-import the caller's main module in every worker,
    which for a script importing torch took 12-15 s per pool on the project machine. The workers run only numpy
    and scipy code, never torch, so threads torch may have started in the parent are not used in the child.
    """
    methods = get_all_start_methods()
    return get_context("fork" if "fork" in methods else "spawn")


def _plan(tops: list[int], num_rows: int, num_sinks: int, n: int, density: float, workers: int | None) -> list[_Task]:
    """Split each source layer's rows × sinks into a few tasks per process when it is worth it (load balance)."""
    processes = _available_cpus() if workers is None else workers
    rows, columns = np.arange(num_rows), np.arange(num_sinks)
    tasks: list[_Task] = []
    for top in tops:
        chain = _use_chain(top, num_rows, n, density)
        seconds = _layer_units(top, num_rows, num_sinks, n, chain) * 2 * density * n * n * _SECONDS_PER_ARC
        wanted = 1 if processes == 1 or seconds < _PARALLEL_MIN_SECONDS else 4 * processes
        # the chain shares its work between all rows of a sink, so it splits by sinks only
        row_chunks = 1 if chain else min(num_rows, wanted)
        column_chunks = min(num_sinks, -(-wanted // row_chunks))
        for row_chunk in np.array_split(rows, row_chunks):
            for column_chunk in np.array_split(columns, column_chunks):
                tasks.append((top, row_chunk, column_chunk, chain))
    return tasks


def _run(
    tasks: list[_Task],
    networks: _maxflow.Networks,
    top_matrices: np.ndarray,
    sources: np.ndarray,
    sinks: np.ndarray,
    n: int,
    density: float,
    workers: int | None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    processes = min(_available_cpus() if workers is None else workers, len(tasks))
    units = sum(_layer_units(top, len(rows), len(columns), n, chain) for top, rows, columns, chain in tasks)
    seconds = units * 2 * density * n * n * _SECONDS_PER_ARC
    if processes <= 1 or seconds < _PARALLEL_MIN_SECONDS:
        return [
            _maxflow.raw_flows(networks, top, top_matrices[top - 1][sources[rows]], sinks[columns], chain=chain)
            for top, rows, columns, chain in tasks
        ]
    logger.debug("attention flow: %d tasks on %d processes (about %.1f s of solving)", len(tasks), processes, seconds)
    with ProcessPoolExecutor(
        max_workers=processes,
        mp_context=_worker_context(),
        initializer=_maxflow.install_graph,
        initargs=(networks.graph, top_matrices, networks.flow_bound),
    ) as pool:
        futures = [
            pool.submit(_maxflow.solve_task, top, sources[rows], sinks[columns], chain)
            for top, rows, columns, chain in tasks
        ]
        return [future.result() for future in futures]
