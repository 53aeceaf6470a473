"""Attention flow against an independent oracle: a plain networkx max flow on the paper's graph.

networkx is only the oracle here (a dev dependency); attrflow never imports it.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

import attrflow
from attrflow.errors import InvalidInputError
from attrflow.flow import _maxflow, maxflow
from attrflow.results import RecordedAttention

# ---------------------------------------------------------------- the oracle


def paper_graph(att: np.ndarray, *, residual: bool = True, fusion: str = "mean") -> np.ndarray:
    """Ā_l = 0.5·W_l + 0.5·I, written out independently of attrflow."""
    fused = {"mean": att.mean(axis=1), "max": att.max(axis=1), "min": att.min(axis=1)}[fusion]
    n = att.shape[-1]
    graph = 0.5 * fused + 0.5 * np.eye(n) if residual else fused
    if fusion != "mean":
        sums = graph.sum(axis=-1, keepdims=True)
        graph = np.where(sums > 0, graph / np.where(sums > 0, sums, 1), 0)
    return graph


def networkx_flow(
    graph: np.ndarray,
    top: int,
    position: int,
    *,
    top_matrix: np.ndarray | None = None,
    sinks: list[int] | None = None,
    flow_func=None,
) -> np.ndarray:
    """Normalised max-flow values from node (top, position) to every input token, as the official code does."""
    n = graph.shape[-1]
    g = nx.DiGraph()
    for layer in range(1, top + 1):
        matrix = top_matrix if (layer == top and top_matrix is not None) else graph[layer - 1]
        for i in range(n):
            for j in range(n):
                g.add_edge((layer, i), (layer - 1, j), capacity=float(matrix[i, j]))
    sinks = list(range(n)) if sinks is None else sinks
    values = np.zeros(n)
    for t in sinks:
        values[t] = nx.maximum_flow_value(g, (top, position), (0, t), flow_func=flow_func)
    total = values.sum()
    return values / total if total > 0 else values


def random_attention(layers: int, heads: int, n: int, seed: int, concentration: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(n, concentration), size=(layers, heads, n))


# ---------------------------------------------------------------- equality with networkx


@pytest.mark.parametrize(("layers", "n", "seed"), [(1, 4, 0), (2, 5, 1), (3, 4, 2), (4, 6, 3), (6, 7, 4), (3, 10, 5)])
def test_every_position_matches_networkx(layers: int, n: int, seed: int) -> None:
    att = random_attention(layers, 3, n, seed)
    graph = paper_graph(att)
    ours = attrflow.attention_flow(att).numpy()
    expected = np.stack([networkx_flow(graph, layers, p) for p in range(n)])
    assert ours.shape == (n, n)
    np.testing.assert_allclose(ours, expected, atol=1e-7, rtol=0)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-12)


def test_every_layer_matches_networkx_and_official_edmonds_karp() -> None:
    att = random_attention(5, 2, 6, seed=7, concentration=1.0)
    graph = paper_graph(att)
    ours = attrflow.attention_flow(att, layer="all", positions=[0, -1]).numpy()
    assert ours.shape == (5, 2, 6)
    for layer in range(5):
        for row, position in enumerate([0, 5]):
            expected = networkx_flow(graph, layer + 1, position, flow_func=nx.algorithms.flow.edmonds_karp)
            np.testing.assert_allclose(ours[layer, row], expected, atol=1e-7, rtol=0)


def test_tight_tolerance_reaches_float64_accuracy() -> None:
    att = random_attention(6, 2, 8, seed=11)
    graph = paper_graph(att)
    ours = attrflow.attention_flow(att, positions=[0, 3], tolerance=1e-12).numpy()
    for row, position in enumerate([0, 3]):
        np.testing.assert_allclose(ours[row], networkx_flow(graph, 6, position), atol=1e-11, rtol=0)


def test_first_layer_flow_equals_rollout_and_second_layer_closed_form() -> None:
    att = random_attention(4, 3, 9, seed=3)
    rollout = attrflow.attention_rollout(att).numpy()
    flow = attrflow.attention_flow(att, layer="all").numpy()
    np.testing.assert_allclose(flow[0], rollout[0], atol=1e-15)
    graph = paper_graph(att)
    expected = np.stack([networkx_flow(graph, 2, p) for p in range(9)])
    np.testing.assert_allclose(flow[1], expected, atol=1e-12)


def test_causal_attention() -> None:
    n = 7
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(4, 2, n, n)) * 2 + np.triu(np.full((n, n), -np.inf), k=1)
    att = np.exp(logits - logits.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)
    graph = paper_graph(att)
    ours = attrflow.attention_flow(att, positions=[-1, 2]).numpy()
    np.testing.assert_allclose(ours[0], networkx_flow(graph, 4, n - 1), atol=1e-7)
    np.testing.assert_allclose(ours[1], networkx_flow(graph, 4, 2), atol=1e-7)
    assert np.all(ours[1, 3:] == 0)  # position 2 cannot reach later tokens


# ---------------------------------------------------------------- degenerate inputs


def test_one_token() -> None:
    att = np.ones((3, 2, 1, 1))
    assert attrflow.attention_flow(att).tolist() == [[1.0]]
    assert attrflow.attention_flow(att, layer="all").shape == (3, 1, 1)


@pytest.mark.parametrize("residual", [True, False])
def test_identical_rows_one_hot_and_zero_rows(residual: bool) -> None:
    n = 5
    uniform = np.full((3, 2, n, n), 1 / n)
    one_hot = np.zeros((3, 2, n, n))
    one_hot[:, :, :, 0] = 1.0  # everything attends to token 0
    zero_rows = random_attention(3, 2, n, seed=1)
    zero_rows[:, :, 2, :] = 0.0  # position 2 attends nowhere in any layer
    for att in (uniform, one_hot, zero_rows):
        graph = paper_graph(att, residual=residual)
        # zero rows are not probabilities: the graph kernel runs on them with check_rows=False
        ours = attrflow.attention_flow(att, residual=residual, check_rows=False).numpy()
        expected = np.stack([networkx_flow(graph, 3, p) for p in range(n)])
        np.testing.assert_allclose(ours, expected, atol=1e-7)
    if not residual:
        # with no residual and a zero row, position 2 of the last layer has no flow at all: a zero row
        assert np.all(attrflow.attention_flow(zero_rows, residual=False, check_rows=False).numpy()[2] == 0)


def test_all_zero_attention_without_residual() -> None:
    flow = attrflow.attention_flow(np.zeros((4, 1, 3, 3)), residual=False, check_rows=False)
    assert torch.equal(flow, torch.zeros(3, 3, dtype=torch.float32))


# ---------------------------------------------------------------- options


def test_per_head_uses_one_head_on_top_of_fused_layers_below() -> None:
    att = random_attention(4, 3, 6, seed=8)
    graph = paper_graph(att)
    head_matrix = 0.5 * att[3, 1] + 0.5 * np.eye(6)
    ours = attrflow.attention_flow(att, head=1, positions=[0, 4]).numpy()
    for row, position in enumerate([0, 4]):
        expected = networkx_flow(graph, 4, position, top_matrix=head_matrix)
        np.testing.assert_allclose(ours[row], expected, atol=1e-7)
    assert not np.allclose(ours, attrflow.attention_flow(att, positions=[0, 4]).numpy())
    # negative head index, and layer="all" uses that head at every layer
    every = attrflow.attention_flow(att, head=-2, layer="all", positions=[0]).numpy()
    np.testing.assert_allclose(every[-1], ours[:1], atol=1e-12)
    np.testing.assert_allclose(
        every[2, 0], networkx_flow(graph, 3, 0, top_matrix=0.5 * att[2, 1] + 0.5 * np.eye(6)), atol=1e-7
    )


def test_exclusion_renormalises_over_the_remaining_tokens() -> None:
    att = random_attention(4, 2, 6, seed=9)
    graph = paper_graph(att)
    exclude = np.array([True, False, False, False, False, True])
    ours = attrflow.attention_flow(att, exclude=exclude, positions=[0, 3]).numpy()
    for row, position in enumerate([0, 3]):
        expected = networkx_flow(graph, 4, position, sinks=[1, 2, 3, 4])
        np.testing.assert_allclose(ours[row], expected, atol=1e-7)
    assert np.all(ours[:, [0, 5]] == 0)


@pytest.mark.parametrize("fusion", ["max", "min"])
def test_max_and_min_head_fusion(fusion: str) -> None:
    att = random_attention(3, 4, 5, seed=12)
    graph = paper_graph(att, fusion=fusion)
    ours = attrflow.attention_flow(att, head_fusion=fusion).numpy()  # type: ignore[arg-type]
    expected = np.stack([networkx_flow(graph, 3, p) for p in range(5)])
    np.testing.assert_allclose(ours, expected, atol=1e-7)


def test_input_types_and_dtypes() -> None:
    att = random_attention(3, 2, 5, seed=2)
    from_numpy = attrflow.attention_flow(att)
    assert from_numpy.dtype == torch.float64
    from_torch32 = attrflow.attention_flow(torch.from_numpy(att).float())
    assert from_torch32.dtype == torch.float32
    np.testing.assert_allclose(from_torch32.numpy(), from_numpy.numpy(), atol=1e-6)

    recorded = RecordedAttention(
        tokens=("[CLS]", "a", "b", "c", "[SEP]"),
        attentions=torch.from_numpy(att).float(),
        predicted=0,
        predicted_label=None,
        probability=1.0,
        special_mask=(True, False, False, False, True),
    )
    special = attrflow.attention_flow(recorded, exclude="special", positions=0)
    masked = attrflow.attention_flow(
        torch.from_numpy(att).float(), exclude=np.array([True, False, False, False, True]), positions=[0]
    )
    assert special.shape == (1, 5)
    assert torch.equal(special, masked)


# ---------------------------------------------------------------- the integer scaling and its certificate


def test_first_stage_certificate_brackets_the_exact_value() -> None:
    """lo ≤ exact ≤ lo + gap, and gap < (arcs in the cut)/scale, also for capacities just below a grid step."""
    rng = np.random.default_rng(4)
    n, depth = 6, 4
    below = rng.dirichlet(np.full(n, 0.5), size=(depth, n))
    scale = 2.0**10  # a coarse scale makes the rounding error large enough to see
    # worst case for flooring: every capacity a hair below the next multiple of 1/scale
    adversarial = (np.floor(below * scale) + 0.999) / scale
    for caps in (below, adversarial):
        net = _maxflow.LayerNetwork.build(caps[:-1], flow_bound=2.0**20, prune=True)
        assert net.scale == 2.0**10
        source = caps[-1][2]
        g = nx.DiGraph()
        for layer in range(1, depth + 1):
            for i in range(n):
                for j in range(n):
                    g.add_edge((layer, i), (layer - 1, j), capacity=float(caps[layer - 1][i, j]))
        for sink in range(n):
            exact = nx.maximum_flow_value(g, (depth, 2), (0, sink))
            lo, gap = net.first_stage(source, caps[0][:, sink])
            assert lo <= exact + 1e-12
            assert exact <= lo + gap + 1e-12
            assert 0 <= gap < (depth - 1) * n * n / scale  # at most every arc of the network
            full = _maxflow.LayerNetwork.build(caps[:-1], flow_bound=1.0, prune=False)
            refined, refined_gap = full.max_flow(source, caps[0][:, sink], tolerance=1e-13)
            assert refined_gap <= 1e-13
            assert abs(refined - exact) <= 1e-12


def test_scaled_capacities_fit_int32() -> None:
    att = random_attention(4, 1, 5, seed=0, concentration=0.05)
    graph = paper_graph(att)
    net = _maxflow.LayerNetwork.build(graph[:3], flow_bound=1.0, prune=True)
    assert net.scale == 2.0**30
    assert net.scaled.max() <= 2**30
    assert np.all(net.remainder >= 0) and np.all(net.remainder < 1 / net.scale)


def test_workers_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    att = random_attention(5, 2, 8, seed=6)
    inline = attrflow.attention_flow(att, workers=1)
    monkeypatch.setattr(maxflow, "_PARALLEL_MIN_SECONDS", 0.0)
    parallel = attrflow.attention_flow(att, workers=2)
    assert torch.equal(inline, parallel)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer": 3}, "layer 3 is out of range"),
        ({"layer": -4}, "layer -4 is out of range"),
        ({"layer": "last"}, "layer must be an integer"),
        ({"positions": [0, 5]}, "position 5 is out of range"),
        ({"positions": []}, "positions is empty"),
        ({"head": 2}, "head 2 is out of range"),
        ({"head_fusion": "sum"}, "head_fusion must be one of"),
        ({"exclude": np.ones(5, dtype=bool)}, "masks every token"),
        ({"exclude": np.zeros(4, dtype=bool)}, "boolean mask of shape"),
        ({"exclude": "special"}, "needs an input with a `special_mask`"),
        ({"tolerance": 0.0}, "tolerance must be"),
        ({"workers": 0}, "workers must be"),
    ],
)
def test_invalid_options(kwargs: dict, message: str) -> None:
    att = random_attention(3, 2, 5, seed=0)
    with pytest.raises(InvalidInputError, match=message):
        attrflow.attention_flow(att, **kwargs)


@pytest.mark.parametrize(
    ("att", "message"),
    [
        (np.full((2, 1, 3, 4), 0.25), "square"),
        (np.full((2, 3, 3), 1 / 3), r"\[layers, heads, n, n\]"),
        (np.full((2, 1, 3, 3), -0.1), "cannot be negative"),
        (np.full((2, 1, 3, 3), np.nan), "NaN"),
        (np.full((2, 1, 3, 3), 0.9), "sum to at most 1"),
        (np.zeros((0, 1, 3, 3)), "at least one layer"),
        ([[1.0]], "torch tensor or numpy array"),
    ],
)
def test_invalid_attention(att: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        attrflow.attention_flow(att)


def test_flows_below_the_integer_resolution_are_refined() -> None:
    """Capacities ~1e-11 floor to 0 at the first stage's scale 2^30; refinement must still find the values."""
    att = random_attention(4, 2, 5, seed=13) * 1e-11
    graph = paper_graph(att, residual=False)
    ours = attrflow.attention_flow(att, residual=False, positions=[0, 2], check_rows=False).numpy()
    for row, position in enumerate([0, 2]):
        np.testing.assert_allclose(ours[row], networkx_flow(graph, 4, position), atol=1e-7)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-9)


# ---------------------------------------------------------------- the chain of bounds (many sources)


def test_chain_is_used_for_many_sources_and_matches_networkx(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = _maxflow.chain_flows

    def spy(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        result = original(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(float(result[2].mean()))
        return result

    monkeypatch.setattr(_maxflow, "chain_flows", spy)
    att = random_attention(7, 2, 12, seed=21, concentration=1.0)
    graph = paper_graph(att)
    ours = attrflow.attention_flow(att, workers=1).numpy()
    assert calls, "the chain should serve every position of a deep layer"
    for position in range(12):
        np.testing.assert_allclose(ours[position], networkx_flow(graph, 7, position), atol=1e-7)


def test_chain_bounds_bracket_the_exact_values() -> None:
    att = random_attention(7, 2, 10, seed=22)
    graph = paper_graph(att)
    networks = _maxflow.Networks(graph, flow_bound=1.0)
    lower, gaps, certified = _maxflow.chain_flows(networks, 7, graph[6], np.arange(10))
    g = nx.DiGraph()
    for layer in range(1, 8):
        for i in range(10):
            for j in range(10):
                g.add_edge((layer, i), (layer - 1, j), capacity=float(graph[layer - 1][i, j]))
    exact = np.array([[nx.maximum_flow_value(g, (7, p), (0, t)) for t in range(10)] for p in range(10)])
    assert np.all(lower <= exact + 1e-12)
    assert np.all(exact <= lower + gaps + 1e-12)
    assert certified.mean() > 0.5  # the point of the chain; the rest is solved exactly


def test_uncertified_chain_pairs_are_solved_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    att = random_attention(7, 2, 12, seed=23, concentration=1.0)
    with_chain = attrflow.attention_flow(att, workers=1)
    monkeypatch.setattr(_maxflow, "_CHAIN_ACCEPT", -1.0)  # certify nothing: every pair falls back
    fallback = attrflow.attention_flow(att, workers=1)
    np.testing.assert_allclose(with_chain.numpy(), fallback.numpy(), atol=1e-7)
    monkeypatch.setattr(maxflow, "_use_chain", lambda *args: False)
    direct = attrflow.attention_flow(att, workers=1)
    assert torch.equal(fallback, direct)


def test_workers_do_not_change_chain_results(monkeypatch: pytest.MonkeyPatch) -> None:
    att = random_attention(7, 2, 12, seed=24, concentration=1.0)
    inline = attrflow.attention_flow(att, workers=1, layer="all")
    monkeypatch.setattr(maxflow, "_PARALLEL_MIN_SECONDS", 0.0)
    parallel = attrflow.attention_flow(att, workers=2, layer="all")
    assert torch.equal(inline, parallel)
