"""Certified lower and upper bounds on attention flow, for inputs too long for exact flow.

Exact attention flow (Abnar & Zuidema, ACL 2020, §4; :func:`attrflow.attention_flow`) solves n max-flow problems
per source on networks of ``L·n²`` arcs: ``L·n³`` to ``L·n⁴`` work, minutes at n = 512 and days at n = 4096. Here every
value of one source is bounded at once, in two top-down passes over blocks of attention rows (the work of
rollout, ``O(L·n²)``, and ``O(L·n)`` memory), so it runs wherever :func:`attrflow.flow.rows.rollout_rows` runs.

Node ``(k, i)`` is position i after layer k−1, edge ``(k, i) → (k−1, j)`` has capacity ``Ā_{k-1}[i, j]``; the
source is ``(l+1, p)``, the sink token t at graph layer 0. For sink t:

* Lower bound (feasible flows). Route one unit from the source down the graph in rollout's proportions: the
  amount reaching node ``(m+1, i)`` is ``x_i``, rollout's row of p through layers ``l..m+1`` (every entry at most 1,
  so every edge carries at most its capacity). Keeping from each path into ``(m+1, i)`` only what edge
  ``(m+1, i) → (m, t)`` can take, and from there only what t's residual edges ``(m, t) → (m−1, t) → … → t`` can
  take, stays feasible: ``v_t ≥ min(Σ_i min(x_i, Ā_m[i, t]), min_{r<m} Ā_r[t, t])`` for every m (m = 0 is
  ``Σ_i min(x_i, Ā_0[i, t])`` ≥ rollout's value); the best m is taken.
* Upper bound (a relaxation). The flow through a node is at most what can reach it, edge by edge, and at most
  its own out-capacity: ``T_{k}(j) = min(Σ_i min(T_{k+1}(i), Ā_k[i, j]), Σ_m Ā_{k-1}[j, m])`` from ``T = 1`` at
  the source, and ``v_t ≤ min(Σ_i min(T_1(i), Ā_0[i, t]), Σ_j Ā_l[p, j])``. On the random attention we tried it
  is the exact value for most tokens; the lower bound is the loose side.

Both are exact for sources at the first two layers (the closed forms of exact flow). Normalised flow is
``v_t / Σ_s v_s``; with ``lo ≤ v ≤ up`` it lies in ``[lo_t / (lo_t + Σ_{s≠t} up_s), up_t / (up_t + Σ_{s≠t} lo_s)]``.
The bounds are certified but widen with depth: they say which tokens can and cannot carry much flow, not the
exact value (BENCHMARKS.md measures their width against exact flow).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from attrflow.errors import InvalidInputError
from attrflow.flow.rows import AttentionRows, MaterialisedRows, graph_rows
from attrflow.validation import HeadFusion, check_choice, resolve_index

__all__ = ["attention_flow_bounds", "flow_value_bounds", "normalised_bounds"]

# Work memory of the elementwise minimum of one sub-block ([chains, rows, n] values).
_MIN_BLOCK_BYTES = 32 * 2**20


def _sum_of_minima(vectors: torch.Tensor, rows: torch.Tensor, begin: int) -> torch.Tensor:
    """``Σ_i min(vectors[:, begin + i], rows[i, :])`` for a block of matrix rows ``[b, n]``: ``[m, n]``."""
    m, (b, n) = vectors.shape[0], rows.shape
    step = max(1, _MIN_BLOCK_BYTES // max(1, m * n * vectors.element_size()))
    total = torch.zeros(m, n, dtype=vectors.dtype, device=vectors.device)
    for start in range(0, b, step):
        stop = min(start + step, b)
        local = vectors[:, begin + start : begin + stop]
        total += torch.minimum(local[:, :, None], rows[None, start:stop, :]).sum(dim=1)
    return total


def flow_value_bounds(
    attention: AttentionRows,
    *,
    layers: Sequence[int],
    positions: Sequence[int],
    residual: bool = True,
    head_fusion: HeadFusion = "mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on the max-flow values (not normalised) from ``(layer + 1, p)`` to every input token.

    Returns:
        ``(lower, upper)``, float64 ``[len(layers), len(positions), n]``: ``lower ≤ max flow ≤ upper``.
    """
    n = attention.n
    probe = attention.attention_rows(0, 0, 1)
    start = torch.zeros(len(positions), n, dtype=torch.float64, device=probe.device)
    start[torch.arange(len(positions)), torch.tensor(list(positions))] = 1.0
    # per chain (one per reported layer): the routed amounts x and the throughput bounds T, each [P, n]; what the
    # routed amounts can hand to each token's node, per layer; and every layer's diagonal (the residual edges)
    routed: dict[int, torch.Tensor] = {}
    through: dict[int, torch.Tensor] = {}
    handed: dict[int, dict[int, torch.Tensor]] = {}
    diagonals = torch.zeros(max(layers) + 1, n, dtype=torch.float64, device=probe.device)
    for layer in range(max(layers), -1, -1):
        if layer in layers:
            routed[layer], through[layer], handed[layer] = start.clone(), start.clone(), {}
        order = sorted(routed)
        x = torch.cat([routed[key] for key in order])
        t = torch.cat([through[key] for key in order])
        new_x, new_t, hand = torch.zeros_like(x), torch.zeros_like(t), torch.zeros_like(x)
        for begin in range(0, n, attention.block_size):
            stop = min(begin + attention.block_size, n)
            # fused in float64, as exact flow builds its graph: a certificate should not depend on rounding
            block = attention.attention_rows(layer, begin, stop).to(torch.float64)
            rows = graph_rows(block, begin, residual=residual, head_fusion=head_fusion)
            diagonals[layer, begin:stop] = rows.diagonal(offset=begin)
            # a node passes on at most its own out-capacity
            t[:, begin:stop] = torch.minimum(t[:, begin:stop], rows.sum(dim=-1)[None, :])
            new_t += _sum_of_minima(t, rows, begin)
            hand += _sum_of_minima(x, rows, begin)
            new_x += x[:, begin:stop] @ rows
        for index, key in enumerate(order):
            span = slice(index * len(positions), (index + 1) * len(positions))
            routed[key], through[key] = new_x[span], new_t[span]
            handed[key][layer] = hand[span]
    lower = torch.stack([_best_handover(handed[layer], diagonals) for layer in layers])
    capacity = _source_capacity(attention, layers, positions, residual, head_fusion).to(start.device)
    upper = torch.stack([through[layer] for layer in layers]).clamp_max(capacity)
    return lower, torch.maximum(upper, lower)


def _best_handover(handed: dict[int, torch.Tensor], diagonals: torch.Tensor) -> torch.Tensor:
    """The best feasible flow among "route like rollout down to layer m, hand over to token t's node, then ride t's
    residual edges down": ``max_m min(handed[m][t], min_{r<m} Ā_r[t, t])`` (m = 0 hands to the sink itself)."""
    best = handed[0].clone()
    below = torch.full_like(diagonals[0], torch.inf)
    for layer in range(1, max(handed) + 1):
        below = torch.minimum(below, diagonals[layer - 1])
        best = torch.maximum(best, torch.minimum(handed[layer], below[None, :]))
    return best


def _source_capacity(
    attention: AttentionRows, layers: Sequence[int], positions: Sequence[int], residual: bool, head_fusion: HeadFusion
) -> torch.Tensor:
    """``[len(layers), P, 1]``: each source's total capacity, which no flow from it exceeds."""
    totals = [
        [
            float(
                graph_rows(
                    attention.attention_rows(layer, p, p + 1).to(torch.float64),
                    p,
                    residual=residual,
                    head_fusion=head_fusion,
                ).sum()
            )
            for p in positions
        ]
        for layer in layers
    ]
    return torch.tensor(totals, dtype=torch.float64)[:, :, None]


def attention_flow_bounds(
    attentions: AttentionRows | torch.Tensor,
    *,
    layer: int | Literal["all"] = -1,
    positions: int | Sequence[int] = -1,
    residual: bool = True,
    head_fusion: HeadFusion = "mean",
    exclude: torch.Tensor | Sequence[bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Certified lower and upper bounds on normalised attention flow, in ``O(L·n²)`` time and ``O(L·n)`` memory.

    The bounded alternative to :func:`attrflow.attention_flow` for long inputs (same graph, same normalisation;
    see the module docstring for the bounds). Every exact flow value lies between the two.

    Args:
        attentions: ``[L, H, n, n]`` probabilities, or rows served by an :class:`attrflow.models.KeyCache`.
        layer: the model layer whose outputs are the sources (negatives from the end), or ``"all"``.
        positions: the output positions (sources); -1 is the last token.
        residual: the graph ``0.5·W + 0.5·I`` (the paper) or ``W``.
        head_fusion: ``"mean"`` (the paper), ``"max"``, ``"min"`` (rows rescaled to sum to 1).
        exclude: boolean ``[n]``: tokens left out of the normalisation (their bounds are 0).

    Returns:
        ``(lower, upper)``: float32 ``[len(positions), n]``, or ``[L, len(positions), n]`` for ``layer="all"``.
    """
    source = attentions if not isinstance(attentions, torch.Tensor) else MaterialisedRows(attentions)
    check_choice("head_fusion", head_fusion, HeadFusion)
    n, num_layers = source.n, source.num_layers
    layers = list(range(num_layers)) if layer == "all" else [resolve_index("layer", layer, num_layers)]
    items = [positions] if isinstance(positions, int) else list(positions)
    if not items:
        raise InvalidInputError("positions is empty")
    sources = [resolve_index("position", p, n) for p in items]
    kept = torch.ones(n, dtype=torch.bool)
    if exclude is not None:
        mask = torch.as_tensor(exclude)
        if mask.shape != (n,) or mask.dtype != torch.bool or bool(mask.all()):
            raise InvalidInputError(f"exclude must be a boolean mask of shape ({n},) leaving at least one token")
        kept = ~mask
    lower, upper = flow_value_bounds(
        source, layers=layers, positions=sources, residual=residual, head_fusion=head_fusion
    )
    normal_low, normal_high = normalised_bounds(lower, upper, kept)
    if layer != "all":
        return normal_low[0], normal_high[0]
    return normal_low, normal_high


def normalised_bounds(
    lower: torch.Tensor, upper: torch.Tensor, kept: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on ``v_t / Σ_s v_s`` (over the ``kept`` tokens) from ``lower ≤ v ≤ upper`` ``[..., n]``: float32.

    ``v_t / Σ v`` grows with ``v_t`` and shrinks with every other value, so it lies between
    ``lo_t / (lo_t + Σ_{s≠t} up_s)`` and ``up_t / (up_t + Σ_{s≠t} lo_s)``; excluded tokens get 0.
    """
    if kept is None:
        kept = torch.ones(lower.shape[-1], dtype=torch.bool)
    lower, upper = lower.double().cpu() * kept, upper.double().cpu() * kept
    lower_total, upper_total = lower.sum(dim=-1, keepdim=True), upper.sum(dim=-1, keepdim=True)
    low_denominator = upper_total - upper + lower
    high_denominator = lower_total - lower + upper
    normal_low = torch.where(low_denominator > 0, lower / low_denominator.clamp_min(1e-300), 0.0)
    # the denominator is 0 only where the value itself is 0 (a row without flow is all zeros, as exact flow has it)
    normal_high = torch.where(high_denominator > 0, upper / high_denominator.clamp_min(1e-300), 0.0)
    normal_high = torch.minimum(normal_high, torch.ones_like(normal_high)) * kept
    return normal_low.float(), normal_high.float()
