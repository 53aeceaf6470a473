"""The statistics of the leaderboard, as pure functions on per-example values: a percentile bootstrap interval of
the mean, and paired comparisons of methods on the same examples (Wilcoxon signed-rank, Holm's correction).

A page may say "A beats B" only where the paired test, corrected for every comparison made on that metric, says
so at the chosen level.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attrflow.errors import InvalidInputError

__all__ = ["Comparison", "Interval", "bootstrap_interval", "holm", "paired_comparisons"]


@dataclass(frozen=True)
class Interval:
    """A mean over examples with its bootstrap interval.

    Attributes:
        mean: the mean of the finite values (NaN when none).
        low, high: the percentile bootstrap interval of the mean.
        n: how many finite values.
    """

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """``{"mean", "ci": [low, high], "n"}`` with NaN as None (JSON)."""
        return {"mean": _number(self.mean), "ci": [_number(self.low), _number(self.high)], "n": self.n}


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> Interval:
    """The mean of the finite ``values`` and its percentile bootstrap interval (Efron & Tibshirani 1993, §13.3).

    Args:
        values: per-example values; NaN (not measured) is left out.
        resamples: bootstrap resamples of the examples, drawn with ``numpy.random.default_rng(seed)``.
        level: the interval's coverage (0.95: the 2.5th and 97.5th percentiles of the resampled means).
        seed: the seed (the same values give the same interval).
    """
    if not 0.0 < level < 1.0:
        raise InvalidInputError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise InvalidInputError(f"resamples must be >= 1, got {resamples}")
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[np.isfinite(data)]
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if data.size == 1:
        return Interval(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(mean, float(low), float(high), int(data.size))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): NaN stays NaN and does not count as a test."""
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """One paired comparison of two methods on one metric.

    Attributes:
        metric: the metric.
        a, b: the methods (``a`` listed first).
        n: examples where both have a value.
        mean_difference: mean of ``a − b`` over those examples.
        statistic: the Wilcoxon signed-rank statistic (NaN when every difference is 0).
        p: the two-sided p-value (1 when every difference is 0).
        p_holm: ``p`` after Holm's correction over all comparisons of this metric.
        winner: the better method when ``p_holm < alpha`` (by the metric's direction and the side holding more of
            the signed ranks), else None.
    """

    metric: str
    a: str
    b: str
    n: int
    mean_difference: float
    statistic: float
    p: float
    p_holm: float
    winner: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        return {
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "n": self.n,
            "mean_difference": _number(self.mean_difference),
            "statistic": _number(self.statistic),
            "p": _number(self.p),
            "p_holm": _number(self.p_holm),
            "winner": self.winner,
        }


def _wilcoxon(differences: np.ndarray) -> tuple[float, float, float]:
    """``(statistic, p, direction)``: direction > 0 when the positive differences hold more rank than the negative
    ones (``a`` tends to exceed ``b``)."""
    from scipy.stats import rankdata, wilcoxon

    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return math.nan, (1.0 if differences.size else math.nan), 0.0
    ranks = rankdata(np.abs(nonzero))
    direction = float(ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum())
    magnitudes = np.abs(nonzero)
    # the exact null distribution when it is defined (few differences, no ties); the normal approximation with the
    # tie correction otherwise (scipy would fall back to a permutation test, seconds per pair)
    exact = nonzero.size <= 25 and np.unique(magnitudes).size == magnitudes.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = wilcoxon(nonzero, alternative="two-sided", method="exact" if exact else "approx")
    return float(result.statistic), float(result.pvalue), direction


def paired_comparisons(
    metric: str,
    values: Mapping[str, np.ndarray],
    *,
    higher_is_better: bool,
    alpha: float = 0.05,
    min_examples: int = 5,
) -> list[Comparison]:
    """Every pair of methods compared on the examples both have a value for (Wilcoxon signed-rank, two-sided),
    with Holm's correction over all pairs of this metric.

    Args:
        metric: the metric's name (recorded).
        values: ``{method: [E]}`` per-example values on the same examples (NaN: not measured).
        higher_is_better: the metric's direction (decides the winner).
        alpha: the family-wise error rate.
        min_examples: pairs with fewer common examples are not tested (p = NaN, no winner).
    """
    names = list(values)
    pairs: list[tuple[str, str, np.ndarray]] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            x = np.asarray(values[a], dtype=np.float64)
            y = np.asarray(values[b], dtype=np.float64)
            both = np.isfinite(x) & np.isfinite(y)
            pairs.append((a, b, x[both] - y[both]))
    tests = [_wilcoxon(d) if d.size >= min_examples else (math.nan, math.nan, 0.0) for _, _, d in pairs]
    adjusted = holm([p for _, p, _ in tests])
    out = []
    for (a, b, d), (statistic, p, direction), p_holm in zip(pairs, tests, adjusted, strict=True):
        mean = float(d.mean()) if d.size else math.nan
        winner = None
        if math.isfinite(p_holm) and p_holm < alpha and direction != 0.0:
            winner = a if (direction > 0) == higher_is_better else b
        out.append(Comparison(metric, a, b, int(d.size), mean, statistic, p, float(p_holm), winner))
    return out
