"""From per-example values to the leaderboard's numbers: each metric's mean with a bootstrap interval per method,
per layer, per attractor count and per randomisation depth; the cost; the sanity flags; the paired comparisons;
and the attribution tree's masking experiment. Pure functions of arrays (what :class:`Leaderboard` holds)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from attrflow.analysis.leaderboard.options import METRICS, Metric
from attrflow.analysis.leaderboard.stats import Comparison, Interval, bootstrap_interval, paired_comparisons

__all__ = [
    "ATTRACTOR_GROUPS",
    "TREE_CONDITIONS",
    "attractor_groups",
    "comparisons",
    "interval_text",
    "median",
    "method_summary",
    "tree_summary",
]

ATTRACTOR_GROUPS: tuple[str, ...] = ("0", "1", "2+")
TREE_CONDITIONS: tuple[str, ...] = ("tree", "attention", "rollout", "random")


def median(values: np.ndarray) -> float:
    """The median of the finite values (NaN when none)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if finite.size else math.nan


def attractor_groups(attractors: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the examples with 0, 1 and 2+ attractors (unknown counts, −1, belong to none)."""
    counts = np.asarray(attractors)
    return {"0": counts == 0, "1": counts == 1, "2+": counts >= 2}


def method_summary(
    method: str,
    values: Mapping[str, np.ndarray],
    layer_values: Mapping[str, np.ndarray],
    sanity: np.ndarray | None,
    attractors: np.ndarray,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON entry of one method: ``{METRIC: {"mean", "ci", "n", ...}, "seconds_per_example", ...}``.

    Args:
        method: the method's name.
        values: ``{metric: [E]}`` its per-example values (every :data:`METRICS` name, the costs).
        layer_values: ``{spearman metric: [E, L]}`` (per-layer methods only).
        sanity: ``[E, D]`` Spearman with the randomised model per depth, or None.
        attractors: ``[E]`` attractor counts (−1: no ground truth).
        settings: the leaderboard's settings (``resamples``, ``level``, ``sanity_depths``, ``sanity_threshold``).
    """
    resamples, level = int(settings.get("resamples", 1000)), float(settings.get("level", 0.95))
    seed = int(settings.get("bootstrap_seed", 0))

    def interval(data: np.ndarray) -> dict[str, Any]:
        return bootstrap_interval(data, resamples=resamples, level=level, seed=seed).to_dict()

    entry: dict[str, Any] = {}
    for item in METRICS:
        data = values.get(item.name)
        if data is None:
            continue
        entry[item.name] = interval(data)
        if item.name in layer_values:
            table = layer_values[item.name]
            entry[item.name]["by_layer"] = {f"L{l + 1}": interval(table[:, l]) for l in range(table.shape[1])}
        if item.name == "subject_top_rate":
            masks = attractor_groups(attractors)
            entry[item.name]["by_attractors"] = {g: interval(data[masks[g]]) for g in ATTRACTOR_GROUPS}
    if sanity is not None and sanity.size:
        depths = list(settings.get("sanity_depths", range(1, sanity.shape[1] + 1)))
        entry["sanity_spearman"]["by_depth"] = {str(d): interval(sanity[:, i]) for i, d in enumerate(depths)}
        middle = median(values["sanity_spearman"])
        entry["sanity_spearman"]["median"] = None if math.isnan(middle) else middle
        entry["sanity_flagged"] = bool(math.isfinite(middle) and middle > float(settings.get("sanity_threshold", 0.8)))
    for key, column in (
        ("seconds_per_example", "seconds"),
        ("cpu_seconds_per_example", "cpu_seconds"),
        ("peak_memory_mb", "memory_mb"),
    ):
        value = median(values[column]) if column in values else math.nan
        entry[key] = None if math.isnan(value) else value
    entry["timed_examples"] = int(np.isfinite(values["seconds"]).sum()) if "seconds" in values else 0
    return entry


def comparisons(
    values: Mapping[str, Mapping[str, np.ndarray]],
    methods: Sequence[str],
    *,
    metrics: Sequence[Metric] = METRICS,
    alpha: float = 0.05,
) -> list[Comparison]:
    """Paired comparisons of every two methods on every metric (Wilcoxon signed-rank, Holm per metric)."""
    out: list[Comparison] = []
    for item in metrics:
        table = values.get(item.name, {})
        present = {m: table[m] for m in methods if m in table and np.isfinite(table[m]).any()}
        if len(present) >= 2:
            out.extend(paired_comparisons(item.name, present, higher_is_better=item.higher_is_better, alpha=alpha))
    return out


def tree_summary(tree: Mapping[str, np.ndarray], settings: Mapping[str, Any], *, alpha: float = 0.05) -> dict[str, Any]:
    """The attribution tree's claim (Hao et al. §4.3) over the sample: the drop in the target probability when the
    tree's interactions are masked, next to as many top-attention, top-rollout and random interactions."""
    count = np.asarray(tree.get("count", np.zeros(0)), dtype=np.float64)
    measured = np.isfinite(np.asarray(tree.get("tree", np.zeros(0)), dtype=np.float64))
    if not measured.any():
        return {"examples": 0}
    seed = int(settings.get("bootstrap_seed", 0))
    drops = {c: bootstrap_interval(np.asarray(tree[c])[measured], seed=seed) for c in TREE_CONDITIONS}
    tests = paired_comparisons(
        "tree_drop", {c: np.asarray(tree[c])[measured] for c in TREE_CONDITIONS}, higher_is_better=True, alpha=alpha
    )
    return {
        "examples": int(measured.sum()),
        "interactions_per_example": float(count[measured].mean()),
        "drops": {c: drops[c].to_dict() for c in TREE_CONDITIONS},
        "comparisons": [t.to_dict() for t in tests if t.a == "tree"],
    }


def interval_text(value: Mapping[str, Any] | Interval | None, digits: int = 2) -> str:
    """``0.62 [0.58, 0.66]`` (``n/a`` when unmeasured)."""
    if value is None:
        return "n/a"
    data = value.to_dict() if isinstance(value, Interval) else value
    mean, ci = data.get("mean"), data.get("ci") or [None, None]
    if mean is None:
        return "n/a"
    low, high = ci
    if low is None or high is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
