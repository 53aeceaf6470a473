"""The leaderboard's pure parts: bootstrap intervals, Holm's correction, paired Wilcoxon comparisons, the normalised
AOPC limits against a brute force over every order, rollout edge weights against a loop, balanced sampling."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from attrflow.analysis.faithfulness.naopc import AOPCBounds, beam_limits, exact_limits, normalized_aopc
from attrflow.analysis.leaderboard.stats import bootstrap_interval, holm, paired_comparisons
from attrflow.data import Example, sample
from attrflow.data.sampling import example_seed
from attrflow.errors import InvalidInputError
from attrflow.flow.rollout import attention_rollout, rollout_edge_weights


# ------------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_interval_is_seeded_contains_the_mean_and_skips_nan():
    rng = np.random.default_rng(1)
    values = rng.normal(0.5, 1.0, size=200)
    with_nan = np.concatenate([values, [np.nan, np.nan]])
    a = bootstrap_interval(with_nan, seed=3)
    b = bootstrap_interval(values, seed=3)
    assert a == b and a.n == 200 and a.mean == pytest.approx(values.mean())
    assert a.low < a.mean < a.high
    # the interval of a mean shrinks like 1/sqrt(n): about ±1.96·σ/√n here
    assert a.high - a.low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(200), rel=0.2)
    assert bootstrap_interval(values, seed=4) != a
    empty = bootstrap_interval([np.nan])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert bootstrap_interval([2.0]).to_dict() == {"mean": 2.0, "ci": [2.0, 2.0], "n": 1}
    with pytest.raises(InvalidInputError):
        bootstrap_interval(values, level=1.5)


def test_holm_step_down_by_hand():
    # sorted p: .01 (×3 = .03), .02 (×2 = .04), .04 (×1 = .04, monotone); NaN is no test
    adjusted = holm([0.04, 0.01, np.nan, 0.02])
    assert adjusted[1] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.04)
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[2])
    assert holm([0.5, 0.9])[1] == pytest.approx(1.0)


def test_paired_comparisons_name_a_winner_only_when_significant():
    rng = np.random.default_rng(0)
    base = rng.normal(size=60)
    values = {"good": base + 1.0 + rng.normal(scale=0.1, size=60), "bad": base, "same": base.copy()}
    tests = {(c.a, c.b): c for c in paired_comparisons("m", values, higher_is_better=True)}
    assert tests[("good", "bad")].winner == "good" and tests[("good", "bad")].p_holm < 0.05
    # identical values: every difference is 0, p = 1, no winner
    assert tests[("bad", "same")].winner is None and tests[("bad", "same")].p == 1.0
    # lower is better: the same test names the other method
    lower = {(c.a, c.b): c for c in paired_comparisons("m", values, higher_is_better=False)}
    assert lower[("good", "bad")].winner == "bad"
    # NaN (not measured) examples drop out of the pair; too few left: no test
    sparse = {"a": np.array([1.0, 2.0, np.nan, np.nan]), "b": np.array([0.0, 0.0, 1.0, np.nan])}
    (only,) = paired_comparisons("m", sparse, higher_is_better=True)
    assert only.n == 2 and math.isnan(only.p) and only.winner is None


def test_paired_comparisons_match_scipy_without_ties():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=40), rng.normal(size=40) - 0.3
    (test,) = paired_comparisons("m", {"a": a, "b": b}, higher_is_better=True)
    reference = stats.wilcoxon(a - b, method="approx")
    assert test.p == pytest.approx(reference.pvalue) and test.p_holm == pytest.approx(reference.pvalue)


# ------------------------------------------------------------------------------------------ normalised AOPC
def _brute_force(drops: np.ndarray, m: int) -> tuple[float, float]:
    values = []
    for order in itertools.permutations(range(m)):
        mask, total = 0, 0.0
        for position in order:
            mask |= 1 << position
            total += drops[mask]
        values.append(total / m)
    return min(values), max(values)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 6])
def test_exact_limits_equal_the_best_and_worst_of_every_order(m):
    rng = np.random.default_rng(m)
    drops = rng.normal(size=1 << m)
    drops[0] = 0.0
    assert exact_limits(drops) == pytest.approx(_brute_force(drops, m))


def test_beam_limits_lie_inside_the_exact_ones_and_reach_them_when_wide():
    rng = np.random.default_rng(7)
    for m in (4, 6):
        drops = rng.normal(size=1 << m)
        low, high = exact_limits(drops)
        calls = []

        def evaluate(masks, drops=drops, calls=calls):
            calls.append(len(masks))
            return drops[masks]

        beam_low, beam_high = beam_limits(m, evaluate, 1)
        assert low - 1e-12 <= beam_low and beam_high <= high + 1e-12
        assert len(calls) == m  # one batched evaluation per step, both directions together
        assert beam_limits(m, lambda masks, drops=drops: drops[masks], 10**6) == pytest.approx((low, high))


def test_normalized_aopc_rescales_and_refuses_a_degenerate_range():
    bounds = AOPCBounds(0.1, 0.5, "exact", 8)
    assert normalized_aopc(0.3, bounds) == pytest.approx(0.5)
    assert normalized_aopc(0.5, bounds) == pytest.approx(1.0)
    assert math.isnan(normalized_aopc(0.3, AOPCBounds(0.2, 0.2, "exact", 2)))
    assert math.isnan(normalized_aopc(math.nan, bounds))


# ------------------------------------------------------------------------------------------ rollout edges
def test_rollout_edge_weights_equal_a_loop_over_paths():
    rng = np.random.default_rng(2)
    raw = rng.random((3, 2, 4, 4))
    attentions = torch.from_numpy(raw / raw.sum(-1, keepdims=True))
    weights = rollout_edge_weights(attentions, position=1).numpy()
    graph = 0.5 * attentions.numpy().mean(1) + 0.5 * np.eye(4)
    for layer in range(3):
        above = np.eye(4)
        for upper in range(2, layer, -1):
            above = above @ graph[upper]
        expected = above[1][:, None] * 0.5 * attentions.numpy()[layer].mean(0)
        np.testing.assert_allclose(weights[layer], expected, atol=1e-12)
        # half of the output position's rollout crosses attention edges in every layer
        assert weights[layer].sum() == pytest.approx(0.5)
    # the top layer's weights are the attention row of the output position
    np.testing.assert_allclose(weights[-1][1], 0.5 * attentions.numpy()[-1].mean(0)[1])
    assert attention_rollout(attentions).shape == (3, 4, 4)


# ------------------------------------------------------------------------------------------ sampling, seeds
def test_balanced_sample_draws_equal_labels_in_dataset_order():
    data = [Example(f"t{i}", label=0 if i < 70 else 1) for i in range(100)]
    chosen = sample(data, 20, balanced=True, seed=1)
    labels = [data[p].label for p in chosen.positions]
    assert labels.count(0) == labels.count(1) == 10 and list(chosen.positions) == sorted(chosen.positions)
    assert sample(data, 20, balanced=True, seed=1).positions == chosen.positions
    # a label with too few examples gives all it has; the other fills the rest
    skewed = [Example(f"t{i}", label=0 if i < 95 else 1) for i in range(100)]
    labels = [skewed[p].label for p in sample(skewed, 20, balanced=True).positions]
    assert labels.count(1) == 5 and labels.count(0) == 15
    with pytest.raises(InvalidInputError, match="selection='random'"):
        sample(data, 20, balanced=True, selection="first")


def test_example_seed_depends_on_the_tokens_only():
    assert example_seed((2, 5, 7, 3), 0) == example_seed((2, 5, 7, 3), 0)
    assert example_seed((2, 5, 7, 3), 0) != example_seed((2, 5, 8, 3), 0)
    assert example_seed((2, 5, 7, 3), 0) != example_seed((2, 5, 7, 3), 1)


# ------------------------------------------------------------------------------------------ cost
def test_measure_counts_the_extra_memory_of_the_call():
    import sys

    from attrflow.analysis.leaderboard.cost import measure

    def allocate() -> float:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        return float(block[-1])

    value, cost = measure(allocate)
    assert value == 1.0 and cost.seconds > 0 and cost.cpu_seconds >= 0
    if sys.platform.startswith("linux"):
        assert 48 <= cost.memory_mb <= 200
        _, small = measure(lambda: 1 + 1)
        assert small.memory_mb < 16
