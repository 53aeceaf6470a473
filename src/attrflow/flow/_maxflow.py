"""Exact maximum flow on the layered attention graph, fast (numpy + scipy only, so worker processes start fast).

The attention graph of Abnar & Zuidema (ACL 2020) is a layered DAG: node ``(l, i)`` has an edge to every node
``(l-1, j)`` of the layer below with capacity ``Ā_l[i, j]``. A problem asks for the max-flow value from a source
``(top, p)`` to an input token ``(0, t)``. What makes it fast:

* Only layers ``1..top-1`` and one row of layer ``top`` matter; the nodes of layer 0 other than ``t`` are dead
  ends. All problems with the same ``top`` therefore share one network whose only varying arcs are the n source
  arcs (row p of ``Ā_top``) and the n sink arcs (column t of ``Ā_1``): it is built once per block of problems.
* ``top = 1`` and ``top = 2`` have closed forms, ``Ā_1[p, t]`` and ``Σ_i min(Ā_2[p, i], Ā_1[i, t])`` (the paths of
  a two-layer network share no edge, so each carries its bottleneck).
* The rest is solved by Dinic's algorithm in compiled code (:func:`scipy.sparse.csgraph.maximum_flow`).

Exactness with integer capacities (scipy's solver needs them). A stage scales the capacities by a power of two
``s`` and floors them, ``c' = ⌊s·c⌋``, so ``0 ≤ c − c'/s < 1/s`` on every arc; the scaling itself is exact. The
integer max flow ``f'`` is exact and ``f'/s`` is a feasible flow of the real network, so ``value ≥ |f'|/s``. The
arcs leaving the set ``R`` of nodes reachable from the source in the integer residual network are a minimum cut
of the integer problem (``Σ c' = |f'|``), and their *real* capacity bounds the max flow from above. The
difference, ``gap = Σ_{e ∈ δ(R)} (c_e − c'_e/s) < |δ(R)|/s``, is a certified bound on the error of the value.
(When the integer flow saturates the source's own arcs, or the sink's, those arcs are such a min cut and the
search for ``R`` is skipped.) When a gap is too large, the next stage solves the max flow of the real residual network (``c − f'/s``
forwards, ``f'/s`` backwards; its max flow is exactly the missing value, at most ``gap``) with capacities clipped
at ``gap`` (no path of a path decomposition carries more than the whole value, so clipping changes nothing)
and the scale ``≈ 2^30/gap``. Each stage shrinks the gap by about ``2^30 / |δ(R)|``.

Many sources of a deep layer (:func:`chain_flows`). For token t, the flow from any source is at most
``min(its total capacity, V_t)``, with ``V_t`` the max flow from the whole layer under the sources; exact flows
from the single nodes of layer :data:`CHAIN_START`, carried up with the submodular bound
``h(X) ≥ max_{i∈X} h({i})``, bound it from below. On dense attention the bounds meet for nearly every pair, which
replaces n max flows per token on the full depth by one, plus n on a 3-layer network; the pairs where they do
not meet are solved as above.

Normalised rows. The caller wants each source's values divided by their sum. With lower bounds ``lo_t`` and gaps
``g_t``, the returned ``lo_t / Σ lo`` is within ``Σ g / Σ lo`` of the exact normalised value. On attention
graphs one stage (``s = 2^30``) gives ``Σ g / Σ lo ≈ 2e-8``; further stages run only for the values that must
shrink to meet a tighter tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

__all__ = [
    "CHAIN_START",
    "LayerNetwork",
    "Networks",
    "bound_from_singles",
    "chain_flows",
    "closed_form_flows",
    "install_graph",
    "normalise_row",
    "raw_flows",
    "solve_task",
]

# The largest scaled capacity: scipy's solver is int32 and neither an arc's flow nor the value may overflow.
_SCALE_LIMIT = 2.0**30
_MAX_STAGES = 6
# Refinement rounds of a row (each re-solves the values whose gaps are the largest).
_MAX_ROUNDS = 4
# The layer whose exact single-node flows start the chain of lower bounds (see `chain_flows`): the lowest at
# which every node's own flow already reached the bottleneck on the random and peaked attention we measured.
CHAIN_START = 4
# Bounds closer than this (about the gap of one integer stage at n = 64) are accepted as the value.
_CHAIN_ACCEPT = 2.0**-24


def _power_of_two_scale(bound: float) -> float:
    return 2.0 ** math.floor(math.log2(_SCALE_LIMIT / bound))


@dataclass(frozen=True, eq=False)
class LayerNetwork:
    """The flow network shared by every source at graph layer ``top = len(below) + 1 ≥ 3``, as CSR arcs.

    Node 0 is the source, node ``1 + (l-1)·n + i`` is ``(l, i)`` for ``l = 1..top-1``, the last node the sink.
    Every arc has its reverse arc (capacity 0) in the pattern, so the flow scipy returns is aligned with the
    arrays here entry by entry.

    A *pruned* network serves :meth:`first_stage` at the fixed scale ``scale``: it leaves out the fixed arcs
    whose scaled capacity floors to 0. They cannot carry integer flow nor open a residual path, so the integer
    max flow and the reachable set are unchanged; their capacity still counts in the certified gap, which is
    computed on the dense matrices. :meth:`max_flow` (refinement) needs an unpruned network.
    """

    indptr: np.ndarray  # int32 [N + 1]
    heads: np.ndarray  # int32 [M]
    tails: np.ndarray  # int32 [M]
    capacity: np.ndarray  # float64 [M]: 0 on reverse arcs and on the varying arcs
    source_arcs: np.ndarray  # [n]: arc index of source -> (top-1, i)
    sink_arcs: np.ndarray  # [n]: arc index of (1, i) -> sink
    scale: float
    scaled: np.ndarray  # int32 [M]: ⌊scale·capacity⌋; the varying arcs are overwritten per problem
    remainder: np.ndarray  # float64 [top-2, n, n]: Ā_l − ⌊scale·Ā_l⌋/scale for l = 2..top-1, in [0, 1/scale)
    pruned: bool
    # the forward arcs alone, in the same order: scipy adds the reverse arcs itself ~20% faster than it accepts
    # them, and returns its flow on the full pattern above (checked once by build; if not, these are the full
    # pattern)
    solver_indptr: np.ndarray
    solver_heads: np.ndarray
    solver_scaled: np.ndarray
    solver_source_arcs: np.ndarray
    solver_sink_arcs: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def sink(self) -> int:
        return self.num_nodes - 1

    @classmethod
    def build(cls, below: np.ndarray, *, flow_bound: float, prune: bool) -> LayerNetwork:
        """Network for sources at graph layer ``len(below) + 1``.

        Args:
            below: float64 ``[top-1, n, n]``, ``below[l-1] = Ā_l`` for ``l = 1..top-1``; ``top - 1 ≥ 2``.
            flow_bound: an upper bound on every capacity and on the total capacity of every source row that
                will be solved; it fixes the first stage's scale, so it must not depend on how problems are
                split into blocks (the results would then depend on the split).
            prune: leave out the fixed arcs whose capacity floors to 0 at the first stage's scale.
        """
        depth, n, _ = below.shape
        assert depth >= 2, "tops 1 and 2 have closed forms"
        scale = _power_of_two_scale(flow_bound)
        fixed_floor = np.floor(below[1:] * scale)
        keep = fixed_floor > 0 if prune else below[1:] > 0
        sink = 1 + depth * n
        tails_parts: list[np.ndarray] = []
        heads_parts: list[np.ndarray] = []
        caps_parts: list[np.ndarray] = []
        # layers 2..depth: (l, i) -> (l-1, j); zero-capacity arcs (causal masks) are left out
        for layer in range(2, depth + 1):
            rows, cols = np.nonzero(keep[layer - 2])
            tails_parts.append(1 + (layer - 1) * n + rows)
            heads_parts.append(1 + (layer - 2) * n + cols)
            caps_parts.append(below[layer - 1][rows, cols])
        num_fixed = sum(len(part) for part in tails_parts)
        # the varying arcs are always present; their capacities are set per problem
        tails_parts += [np.zeros(n, dtype=np.int64), 1 + np.arange(n)]
        heads_parts += [1 + (depth - 1) * n + np.arange(n), np.full(n, sink)]
        caps_parts += [np.zeros(n), np.zeros(n)]
        forward_tails = np.concatenate(tails_parts)
        forward_heads = np.concatenate(heads_parts)
        num_forward = len(forward_tails)
        # a DAG has no antiparallel arcs, so every reverse arc is new
        tails = np.concatenate([forward_tails, forward_heads])
        heads = np.concatenate([forward_heads, forward_tails])
        capacity = np.concatenate([*caps_parts, np.zeros(num_forward)])
        order = np.lexsort((heads, tails))
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(tails, minlength=sink + 1))]).astype(np.int32)
        capacity = capacity[order]
        heads, tails = heads[order].astype(np.int32), tails[order].astype(np.int32)
        scaled = np.floor(capacity * scale).astype(np.int32)
        source_arcs = position[num_fixed : num_fixed + n]
        sink_arcs = position[num_fixed + n : num_fixed + 2 * n]
        forward = np.sort(position[:num_forward])
        solver_indptr = np.concatenate([[0], np.cumsum(np.bincount(tails[forward], minlength=sink + 1))])
        solver = (solver_indptr.astype(np.int32), heads[forward], scaled[forward])
        probe = maximum_flow(csr_array(solver[::-1], shape=(sink + 1, sink + 1)), 0, sink).flow
        if not (np.array_equal(probe.indptr, indptr) and np.array_equal(probe.indices, heads)):
            forward = np.arange(len(heads))  # scipy changed its layout: give it the full pattern
            solver = (indptr, heads, scaled)
        return cls(
            indptr=indptr,
            heads=heads,
            tails=tails,
            capacity=capacity,
            source_arcs=source_arcs,
            sink_arcs=sink_arcs,
            scale=scale,
            scaled=scaled,
            remainder=below[1:] - fixed_floor / scale,
            pruned=prune,
            solver_indptr=solver[0],
            solver_heads=solver[1],
            solver_scaled=solver[2].copy(),
            solver_source_arcs=np.searchsorted(forward, source_arcs),
            solver_sink_arcs=np.searchsorted(forward, sink_arcs),
        )

    def _reachable(self, scaled: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """Nodes reachable from the source through arcs with residual capacity (``scaled - flow > 0``)."""
        shape = (self.num_nodes, self.num_nodes)
        # a closed arc becomes a harmless self-loop
        open_heads = np.where(scaled > flow, self.heads, self.tails)
        residual_graph = csr_array((np.ones(len(open_heads)), open_heads, self.indptr), shape=shape)
        reached = np.zeros(self.num_nodes, dtype=bool)
        reached[breadth_first_order(residual_graph, 0, directed=True, return_predecessors=False)] = True
        return reached

    def first_stage(self, source_caps: np.ndarray, sink_caps: np.ndarray) -> tuple[float, float]:
        """One integer stage at the block's scale: ``(value, gap)`` with ``value ≤ max flow ≤ value + gap``."""
        if source_caps.sum() <= 0.0 or sink_caps.sum() <= 0.0:
            return 0.0, 0.0
        source_floor = np.floor(source_caps * self.scale)
        sink_floor = np.floor(sink_caps * self.scale)
        # the templates are reused: only the varying arcs change between problems
        self.scaled[self.source_arcs] = source_floor
        self.scaled[self.sink_arcs] = sink_floor
        self.solver_scaled[self.solver_source_arcs] = source_floor
        self.solver_scaled[self.solver_sink_arcs] = sink_floor
        shape = (self.num_nodes, self.num_nodes)
        result = maximum_flow(
            csr_array((self.solver_scaled, self.solver_heads, self.solver_indptr), shape=shape), 0, self.sink
        )
        value = int(result.flow_value)
        source_remainder = source_caps - source_floor / self.scale
        sink_remainder = sink_caps - sink_floor / self.scale
        # when the source's (or the sink's) own arcs are a min cut of the integer problem, no search is needed
        if value == int(source_floor.sum()):
            return value / self.scale, float(source_remainder.sum())
        if value == int(sink_floor.sum()):
            return value / self.scale, float(sink_remainder.sum())
        reached = self._reachable(self.scaled, result.flow.data)
        # gap = the remainders of the arcs leaving the reached set: fixed layers (dense), source and sink arcs
        depth = self.remainder.shape[0] + 1
        layers = reached[1:-1].reshape(depth, -1).astype(np.float64)
        upper, lower_unreached = layers[1:], 1.0 - layers[:-1]
        fixed_gap = float(((self.remainder @ lower_unreached[:, :, None])[:, :, 0] * upper).sum())
        source_gap = float(source_remainder[layers[-1] == 0].sum())
        sink_gap = float(sink_remainder[layers[0] == 1].sum())
        return value / self.scale, fixed_gap + source_gap + sink_gap

    def max_flow(self, source_caps: np.ndarray, sink_caps: np.ndarray, *, tolerance: float) -> tuple[float, float]:
        """Max-flow value, refined by stages until its certified gap is at most ``tolerance``: ``(value, gap)``."""
        assert not self.pruned, "refinement needs every arc"
        bound = min(float(source_caps.sum()), float(sink_caps.sum()))
        if bound <= 0.0:
            return 0.0, 0.0
        residual = self.capacity.copy()
        residual[self.source_arcs] = source_caps
        residual[self.sink_arcs] = sink_caps
        total = 0.0
        gap = bound
        for _ in range(_MAX_STAGES):
            scale = _power_of_two_scale(bound)
            clipped = np.minimum(residual, bound)
            floored = np.floor(clipped * scale)
            scaled = floored.astype(np.int32)
            result = maximum_flow(
                csr_array((scaled, self.heads, self.indptr), shape=(self.num_nodes,) * 2), 0, self.sink
            )
            flow = np.asarray(result.flow.data, dtype=np.int64)
            reached = self._reachable(scaled, flow)
            total += int(result.flow_value) / scale
            cut = reached[self.tails] & ~reached[self.heads]
            gap = float((clipped - floored / scale)[cut].sum())
            if gap <= tolerance or gap == 0.0:
                break
            # the real residual network: its max flow is exactly the value still missing, at most `gap`
            residual = residual - flow / scale
            bound = gap
        return total, gap


def closed_form_flows(source_caps: np.ndarray, below: np.ndarray) -> np.ndarray:
    """Max-flow values for sources at graph layer 1 or 2, ``[P, n]``.

    Args:
        source_caps: ``[P, n]`` rows of ``Ā_top``.
        below: the ``top - 1`` layers under the sources: ``[0, n, n]``, or ``[1, n, n]`` holding ``Ā_1``.

    Returns:
        ``a_t`` for ``top = 1``; ``Σ_i min(a_i, Ā_1[i, t])`` for ``top = 2``.
    """
    if len(below) == 0:
        return source_caps.copy()
    assert len(below) == 1, "only tops 1 and 2 have closed forms"
    flows: np.ndarray = np.minimum(source_caps[:, :, None], below[0][None, :, :]).sum(axis=1)
    return flows


class Networks:
    """The networks of one graph, built on first use and kept: one per source layer (pruned or not)."""

    def __init__(self, graph: np.ndarray, flow_bound: float) -> None:
        self.graph = graph
        self.flow_bound = flow_bound
        self._built: dict[tuple[int, bool], LayerNetwork] = {}

    def get(self, top: int, *, prune: bool = True) -> LayerNetwork:
        """The network for sources at graph layer ``top ≥ 3``."""
        key = (top, prune)
        if key not in self._built:
            self._built[key] = LayerNetwork.build(self.graph[: top - 1], flow_bound=self.flow_bound, prune=prune)
        return self._built[key]


def bound_from_singles(source_caps: np.ndarray, singles: np.ndarray) -> np.ndarray:
    """Lower bounds of max flows from sources into a layer whose nodes each carry at least ``singles`` alone.

    A source with capacities ``a`` into the layer has max flow ``min_X [a(X^c) + h(X)]`` over the sets X of the
    layer's nodes, where ``h(X)`` is the max flow from X to the sink. As ``h(X) ≥ max_{i∈X} singles_i``, the max
    flow is at least ``min_X [a(X^c) + max_{i∈X} singles_i]``, whose minimum lies among the prefixes of the nodes
    sorted by ``singles`` (and X = ∅, the source's total).

    Args:
        source_caps: ``[P, n]`` capacities from each source into the layer.
        singles: ``[n]`` lower bounds of each node's own max flow to the sink.

    Returns:
        ``[P]`` lower bounds.
    """
    totals = source_caps.sum(axis=1)
    order = np.argsort(singles, kind="stable")
    beyond = totals[:, None] - np.cumsum(source_caps[:, order], axis=1)  # a(X^c) for X = the first k+1 nodes
    bounds: np.ndarray = np.minimum(totals, (np.maximum(beyond, 0.0) + singles[order][None, :]).min(axis=1))
    return bounds


def chain_flows(
    networks: Networks, top: int, source_caps: np.ndarray, sinks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Certified bounds on many sources' flows at layer ``top`` from a few max flows per sink.

    For sink t: the upper bound is ``min(Σa, V_t)``, where ``V_t`` is the max flow from the whole layer under the
    sources (one max flow per sink). The lower bound starts from the exact single-node flows of layer
    :data:`CHAIN_START` (n small max flows per sink) and climbs with :func:`bound_from_singles`, one layer at a
    time. On attention graphs the two meet (to the precision of one integer stage) for nearly every pair, as
    flows from single nodes a few layers up already reach the bottleneck ``V_t``; pairs where they do not are
    reported as uncertified, for an exact solve.

    Returns:
        ``(lower, gaps, certified)``, each ``[P, T]``.
    """
    graph = networks.graph
    top_network = networks.get(top, prune=False)
    start_network = networks.get(CHAIN_START)
    out_capacity = graph[top - 2].sum(axis=1)  # the whole layer top-1 with unlimited supply
    totals = source_caps.sum(axis=1)
    lower = np.zeros((len(source_caps), len(sinks)))
    upper = np.zeros_like(lower)
    for k, sink in enumerate(sinks):
        sink_caps = graph[0][:, sink]
        whole_layer, whole_layer_gap = top_network.max_flow(out_capacity, sink_caps, tolerance=_CHAIN_ACCEPT / 16)
        singles = np.array([start_network.first_stage(row, sink_caps)[0] for row in graph[CHAIN_START - 1]])
        for layer in range(CHAIN_START + 1, top):
            singles = bound_from_singles(graph[layer - 1], singles)
        lower[:, k] = bound_from_singles(source_caps, singles)
        upper[:, k] = np.minimum(totals, whole_layer + whole_layer_gap)
    gaps = np.maximum(upper - lower, 0.0)
    return lower, gaps, gaps <= _CHAIN_ACCEPT


def raw_flows(
    networks: Networks, top: int, source_caps: np.ndarray, sinks: np.ndarray, *, chain: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Max-flow values (one integer stage) and their certified gaps; the unit of work of a worker.

    Args:
        networks: the graph ``Ā`` ``[L, n, n]`` and its networks.
        top: the graph layer of the sources (1..L).
        source_caps: float64 ``[P, n]``, the capacities from each source to the layer under it.
        sinks: int ``[T]``, the input tokens.
        chain: bound the values first with :func:`chain_flows` (worth it for many sources; ``top`` at least
            ``CHAIN_START + 2``) and solve only the pairs it does not certify.

    Returns:
        ``(lower, gaps)``, float64 ``[P, T]``: ``lower ≤ max flow ≤ lower + gaps`` for every pair.
    """
    below = networks.graph[: top - 1]
    if top <= 2:
        values = closed_form_flows(source_caps, below)[:, sinks]
        return values, np.zeros_like(values)
    if chain:
        lower, gaps, certified = chain_flows(networks, top, source_caps, sinks)
    else:
        lower, gaps = np.zeros((len(source_caps), len(sinks))), np.zeros((len(source_caps), len(sinks)))
        certified = np.zeros(lower.shape, dtype=bool)
    net = networks.get(top)
    first = below[0]
    for row, k in zip(*np.nonzero(~certified), strict=True):
        lower[row, k], gaps[row, k] = net.first_stage(source_caps[row], first[:, sinks[k]])
    return lower, gaps


def normalise_row(
    lower: np.ndarray, gaps: np.ndarray, refine: Callable[[int, float], tuple[float, float]], tolerance: float
) -> tuple[np.ndarray, float]:
    """Divide a row of max-flow values by their sum, refining values until the result is within ``tolerance``.

    With ``lo_t ≤ v_t ≤ lo_t + g_t``, the returned ``lo_t / Σ lo`` is within ``Σ g / Σ lo`` of ``v_t / Σ v``. While
    that bound exceeds ``tolerance``, the values with the largest gaps are re-solved by ``refine(k, target)``
    (returning a new ``(lo, gap)`` with ``gap ≤ target``), the fewest that leave the others half the budget.

    Returns:
        The normalised row (zeros when there is no flow at all) and its certified error bound.
    """
    lower = lower.copy()
    gaps = gaps.copy()
    for _ in range(_MAX_ROUNDS):
        total = float(lower.sum())
        if gaps.sum() <= tolerance * total:
            break
        budget = tolerance * total / 2
        order = np.argsort(gaps)[::-1]
        kept = np.cumsum(gaps[order][::-1])[::-1]  # kept[m]: the gap sum of order[m:]
        count = max(int(np.argmax(kept <= budget)) if kept[-1] <= budget else len(order), 1)
        # with no flow found yet, shrink the largest gaps by a large factor instead
        target = budget / count if total > 0 else float(gaps.max()) * 1e-9
        for k in order[:count]:
            lower[k], gaps[k] = refine(int(k), target)
    total = float(lower.sum())
    if total <= 0:
        return np.zeros_like(lower), 0.0 if gaps.sum() == 0 else math.inf
    return lower / total, float(gaps.sum()) / total


# ---------------------------------------------------------------- worker processes
# The graph is sent once per worker (initializer), not once per task, which bounds memory and transfer; each
# worker builds the networks it needs once and reuses them for all its tasks.
_WORKER_STATE: dict[str, object] = {}


def install_graph(graph: np.ndarray, tops: np.ndarray, flow_bound: float) -> None:
    """Worker initializer: keep ``Ā`` ``[L, n, n]``, the source-layer matrices ``[L, n, n]`` and the bound."""
    _WORKER_STATE.clear()
    _WORKER_STATE.update(networks=Networks(graph, flow_bound), tops=tops)


def solve_task(top: int, positions: np.ndarray, sinks: np.ndarray, chain: bool) -> tuple[np.ndarray, np.ndarray]:
    """Worker task: :func:`raw_flows` from the sources ``(top, p)``, ``p in positions``, on the installed graph."""
    networks, tops = _WORKER_STATE["networks"], _WORKER_STATE["tops"]
    assert isinstance(networks, Networks) and isinstance(tops, np.ndarray)
    return raw_flows(networks, top, tops[top - 1][positions], sinks, chain=chain)
