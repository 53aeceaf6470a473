"""Normalised AOPC (Edin, Motzfeldt, Christensen, Ruotsalo, Maaløe, Maistro, "Normalized AOPC: Fixing Misleading
Faithfulness Metrics for Feature Attribution Explainability", ACL 2025; arXiv 2408.08137).

AOPC as Edin et al. define it removes the m removable (non-special) tokens one at a time in the order an
explanation gives and averages the drop of the target's probability over every step::

    AOPC(order) = (1/m) Σ_{k=1..m} [ p_y(x) − p_y(x without the first k tokens of order) ]

Comprehensiveness takes the explanation's order from the most to the least important token (higher is better);
sufficiency the reverse (lower is better). Its range depends on the model and the input, so Edin et al. rescale it
by the lowest and highest AOPC any order reaches on that input::

    NAOPC(order) = (AOPC(order) − min_π AOPC(π)) / (max_π AOPC(π) − min_π AOPC(π))

(the same limits for both directions, as in their code). The limits are exact for short inputs — every subset of
the m tokens is evaluated (2^m variants) and the best and worst orders come from a dynamic programme over the
subset lattice, ``best(S) = f(S) + max_{i ∈ S} best(S ∖ {i})``, which is the maximum over all m! orders — and
approximated otherwise by their beam search (one beam up, one down, growing the removed set one token per step).
The beam keeps the best order of each removed set only (a worse order of the same set can never catch up), which
can only tighten the limits; beam limits lie inside the true ones, so a score may fall slightly outside [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from attrflow.analysis.faithfulness.metrics import Erasures, erasure_order
from attrflow.errors import InvalidInputError

__all__ = [
    "AOPCBounds",
    "Search",
    "aopc_bounds",
    "beam_limits",
    "exact_limits",
    "method_orders",
    "normalized_aopc",
    "step_aopc",
    "step_rows",
]

Search = Literal["exact", "beam"]
# Edin et al.'s exact computation stops at 12 tokens with [CLS] and [SEP]: 10 removable ones (1,024 variants)
DEFAULT_EXACT_MAX = 10
DEFAULT_BEAM_WIDTH = 5


@dataclass(frozen=True)
class AOPCBounds:
    """The lowest and highest AOPC any removal order reaches on one input.

    Attributes:
        lower: ``min_π AOPC(π)`` (NaN with fewer than one removable token).
        upper: ``max_π AOPC(π)``.
        search: ``"exact"`` (every subset evaluated) or ``"beam"`` (beam search, limits inside the true ones).
        variants: how many variants of the input the search added (those not already evaluated for the curves).
    """

    lower: float
    upper: float
    search: Search
    variants: int


def step_rows(erasures: Erasures, order: np.ndarray) -> list[int]:
    """The rows of ``erasures`` with the first k positions of ``order`` removed, for k = 1 … len(order)."""
    return [erasures.add(order[:k]) for k in range(1, order.size + 1)]


def step_aopc(probabilities: np.ndarray, rows: list[int]) -> float:
    """Edin et al.'s AOPC from the probabilities of an :class:`Erasures` (row 0 the input) and :func:`step_rows`."""
    if not rows:
        return math.nan
    return float(np.mean(probabilities[0] - probabilities[np.asarray(rows)]))


def method_orders(scores: np.ndarray, special_mask: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """The removal orders of an explanation: most important first (comprehensiveness) and least important first
    (sufficiency), over the non-special positions."""
    order = erasure_order(scores, special_mask)
    return order, order[::-1].copy()


def exact_limits(drops: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` over all orders of ``(1/m) Σ_k drops[S_k]``, ``S_k`` the first k removed positions.

    Args:
        drops: ``[2^m]`` the drop of the target's probability with the positions of each bitmask removed
            (``drops[0]`` unused).

    A dynamic programme over the subset lattice: ``best(S) = drops[S] + max_{i ∈ S} best(S ∖ {i})``, O(2^m·m)
    instead of the m! orders.
    """
    size = drops.size
    m = size.bit_length() - 1
    if size != 1 << m or m < 1:
        raise InvalidInputError(f"drops must hold 2^m values for m >= 1, got {size}")
    best = np.zeros(size)
    worst = np.zeros(size)
    for mask in range(1, size):
        below = [mask & ~(1 << b) for b in range(m) if mask >> b & 1]
        best[mask] = drops[mask] + max(best[s] for s in below)
        worst[mask] = drops[mask] + min(worst[s] for s in below)
    return float(worst[-1] / m), float(best[-1] / m)


def beam_limits(m: int, drops: Callable[[list[int]], np.ndarray], width: int) -> tuple[float, float]:
    """``(min, max)`` of ``(1/m) Σ_k drop(S_k)`` over removal orders, by Edin et al.'s beam search.

    Args:
        m: the number of removable positions (bit b of a mask is position b).
        drops: evaluates a list of bitmasks (all of one step, both directions, in one call) to their drops.
        width: orders kept per step and direction.
    """
    beams: dict[str, list[tuple[float, int]]] = {"up": [(0.0, 0)], "down": [(0.0, 0)]}
    for _ in range(m):
        proposals = {
            direction: [(total, mask | 1 << b) for total, mask in beam for b in range(m) if not mask >> b & 1]
            for direction, beam in beams.items()
        }
        masks = sorted({grown for proposed in proposals.values() for _, grown in proposed})
        values = dict(zip(masks, np.asarray(drops(masks), dtype=np.float64).tolist(), strict=True))
        for direction, proposed in proposals.items():
            sign = -1.0 if direction == "up" else 1.0
            kept: dict[int, float] = {}
            for total, grown in proposed:
                value = total + values[grown]
                if grown not in kept or sign * value < sign * kept[grown]:
                    kept[grown] = value
            ranked = sorted(kept.items(), key=lambda item: sign * item[1])
            beams[direction] = [(value, grown) for grown, value in ranked[:width]]
    return beams["down"][0][0] / m, beams["up"][0][0] / m


def _positions(candidates: np.ndarray, mask: int) -> np.ndarray:
    return candidates[[b for b in range(candidates.size) if mask >> b & 1]]


def aopc_bounds(
    erasures: Erasures,
    special_mask: list[bool],
    *,
    exact_max: int = DEFAULT_EXACT_MAX,
    beam_width: int = DEFAULT_BEAM_WIDTH,
) -> AOPCBounds:
    """The lowest and highest AOPC over every removal order of the input's non-special tokens.

    Args:
        erasures: the input's :class:`Erasures` (its removal mode is the one the limits hold for).
        special_mask: which positions are special (never removed).
        exact_max: inputs with at most this many removable tokens get the exact limits (2^m variants);
            longer ones the beam search.
        beam_width: orders kept per step and direction by the beam search (Edin et al.'s default: 5).

    Returns:
        :class:`AOPCBounds` (NaN limits when nothing can be removed).
    """
    if exact_max < 0 or exact_max > 16:
        raise InvalidInputError(f"exact_max must be in 0 … 16 (2^m variants), got {exact_max}")
    if beam_width < 1:
        raise InvalidInputError(f"beam_width must be >= 1, got {beam_width}")
    candidates = np.flatnonzero(~np.asarray(special_mask, dtype=bool))
    if candidates.size == 0:
        return AOPCBounds(math.nan, math.nan, "exact", 0)
    before = len(erasures)
    if candidates.size <= exact_max:
        rows = np.array([erasures.add(_positions(candidates, mask)) for mask in range(1 << candidates.size)])
        probabilities = erasures.probabilities()
        lower, upper = exact_limits(probabilities[0] - probabilities[rows])
        return AOPCBounds(lower, upper, "exact", len(erasures) - before)

    def drops(masks: list[int]) -> np.ndarray:
        rows = [erasures.add(_positions(candidates, mask)) for mask in masks]
        probabilities = erasures.probabilities()
        return np.asarray(probabilities[0] - probabilities[rows])

    lower, upper = beam_limits(candidates.size, drops, beam_width)
    return AOPCBounds(lower, upper, "beam", len(erasures) - before)


def normalized_aopc(value: float, bounds: AOPCBounds) -> float:
    """``(AOPC − lower) / (upper − lower)``; NaN when the limits coincide (one removable token) or are unknown."""
    span = bounds.upper - bounds.lower
    if not math.isfinite(value) or not math.isfinite(span) or span <= 1e-12:
        return math.nan
    return (value - bounds.lower) / span
