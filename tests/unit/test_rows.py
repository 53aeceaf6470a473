"""Row queries, flow bounds and the exact-flow size limit, on attention tensors (no model).

The oracles are independent: rollout and raw attention from the whole matrices (:func:`attrflow.attention_rollout`,
``attention_token_scores``), max-flow values from networkx, normalised flow from :func:`attrflow.attention_flow`.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

import attrflow
from attrflow.errors import InvalidInputError
from attrflow.flow.bounds import attention_flow_bounds, flow_value_bounds, normalised_bounds
from attrflow.flow.rows import (
    MaterialisedRows,
    chain_rows,
    column_chain,
    graph_rows,
    rollout_rows,
    row_token_scores,
    sink_share,
)
from attrflow.flow.scores import attention_token_scores
from attrflow.results import TokenScores


def random_attention(layers: int, heads: int, n: int, seed: int, *, causal: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(layers, heads, n, n, generator=generator) * 2
    if causal:
        logits = logits.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -torch.inf)
    return torch.softmax(logits, dim=-1)


def sink_and(n: int, *others: int) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[[0, *others]] = True
    return mask


# ---------------------------------------------------------------- rollout and raw attention from rows


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("block_size", [1, 4, 64])
def test_rollout_rows_equal_the_materialised_rollout(causal, head_fusion, residual, block_size):
    attentions = random_attention(4, 3, 11, seed=block_size, causal=causal)
    rows = MaterialisedRows(attentions, block_size=block_size)
    for exclude in (None, sink_and(11, 5)):
        reference = attrflow.attention_rollout(
            attentions, residual=residual, head_fusion=head_fusion, exclude=None if exclude is None else exclude.numpy()
        )
        every = rollout_rows(rows, positions=None, residual=residual, head_fusion=head_fusion, exclude=exclude)
        torch.testing.assert_close(every, reference, rtol=0, atol=1e-6)
        # the mean over query rows is one weighted chain (plus a bottom-up one for the renormalisation)
        mean = rollout_rows(
            rows, weights=torch.full((1, 11), 1 / 11), residual=residual, head_fusion=head_fusion, exclude=exclude
        )
        torch.testing.assert_close(mean[:, 0], reference.mean(dim=1), rtol=0, atol=1e-6)


def test_rollout_rows_of_chosen_layers_and_positions():
    attentions = random_attention(5, 2, 9, seed=3, causal=True)
    reference = attrflow.attention_rollout(attentions)
    got = rollout_rows(MaterialisedRows(attentions, block_size=2), positions=[-1, 2], layers=[1, -1])
    assert got.shape == (2, 2, 9)
    torch.testing.assert_close(got[1], reference[4][[8, 2]], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[0], reference[1][[8, 2]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("reduction", ["cls", "mean", "max"])
@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_row_token_scores_equal_the_materialised_scores(reduction, head_fusion):
    attentions = random_attention(3, 4, 10, seed=7, causal=True)
    rows = MaterialisedRows(attentions, block_size=3)
    for method in ("attention", "rollout"):
        if method == "rollout" and reduction == "max":
            with pytest.raises(InvalidInputError, match="reduction='max' needs every row"):
                row_token_scores(rows, method=method, reduction=reduction)
            continue
        for exclude in (None, sink_and(10, 9)):
            expected = attention_token_scores(
                attentions, method=method, position=-1, reduction=reduction, head_fusion=head_fusion, exclude=exclude
            )
            got = row_token_scores(
                rows, method=method, position=-1, reduction=reduction, head_fusion=head_fusion, exclude=exclude
            )
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_chains_multiply_the_matrices():
    generator = torch.Generator().manual_seed(0)
    matrices = torch.rand(4, 6, 6, generator=generator, dtype=torch.float64)

    def rows(layer: int, start: int, stop: int) -> torch.Tensor:
        return matrices[layer, start:stop]

    start = torch.rand(2, 6, generator=generator, dtype=torch.float64)
    down = chain_rows(rows, {3: start, 1: start[:1]}, n=6, block_size=4)
    torch.testing.assert_close(down[3], start @ matrices[3] @ matrices[2] @ matrices[1] @ matrices[0])
    torch.testing.assert_close(down[1], start[:1] @ matrices[1] @ matrices[0])
    columns = torch.rand(6, 2, generator=generator, dtype=torch.float64)
    up = column_chain(rows, columns, [0, 2], n=6, block_size=5)
    torch.testing.assert_close(up[0], matrices[0] @ columns)
    torch.testing.assert_close(up[2], matrices[2] @ matrices[1] @ matrices[0] @ columns)


def test_graph_rows_add_the_residual_on_the_block_diagonal():
    probs = torch.full((2, 3, 5), 0.2)
    graph = graph_rows(probs, 2, residual=True, head_fusion="mean")
    expected = torch.full((3, 5), 0.1)
    expected[[0, 1, 2], [2, 3, 4]] += 0.5
    torch.testing.assert_close(graph, expected)


def test_sink_share_is_the_mean_attention_on_the_first_token():
    attentions = random_attention(3, 2, 8, seed=1, causal=True)
    share = sink_share(MaterialisedRows(attentions, block_size=3))
    torch.testing.assert_close(share, attentions[:, :, 1:, 0].mean(dim=-1))
    assert attrflow.sink_share(attentions, rows=[-1]).shape == (3, 2)
    torch.testing.assert_close(attrflow.sink_share(attentions, rows=[-1]), attentions[:, :, -1, 0])
    others = [0, 1, 3, 4, 5, 6, 7]
    torch.testing.assert_close(
        attrflow.sink_share(attentions, sink=2, layers=[1])[0], attentions[1][:, others, 2].mean(-1)
    )


# ---------------------------------------------------------------- flow bounds


def networkx_flows(graph: np.ndarray, top: int, position: int) -> np.ndarray:
    """Max-flow values (not normalised) from node (top, position) to every input token, by networkx."""
    n = graph.shape[-1]
    network = nx.DiGraph()
    for layer in range(1, top + 1):
        for i in range(n):
            for j in range(n):
                network.add_edge((layer, i), (layer - 1, j), capacity=float(graph[layer - 1][i, j]))
    return np.array([nx.maximum_flow_value(network, (top, position), (0, t)) for t in range(n)])


def paper_graph(attentions: torch.Tensor, residual: bool, fusion: str) -> np.ndarray:
    att = attentions.double().numpy()
    fused = {"mean": att.mean(axis=1), "max": att.max(axis=1), "min": att.min(axis=1)}[fusion]
    n = att.shape[-1]
    graph = 0.5 * fused + 0.5 * np.eye(n) if residual else fused
    if fusion != "mean":
        sums = graph.sum(axis=-1, keepdims=True)
        graph = np.where(sums > 0, graph / np.where(sums > 0, sums, 1), 0)
    return graph


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("residual", "fusion"), [(True, "mean"), (False, "mean"), (True, "max")])
def test_flow_value_bounds_hold_against_networkx(causal, residual, fusion):
    attentions = random_attention(4, 3, 6, seed=int(causal), causal=causal)
    graph = paper_graph(attentions, residual, fusion)
    lower, upper = flow_value_bounds(
        MaterialisedRows(attentions, block_size=4),
        layers=[0, 1, 2, 3],
        positions=[5, 2],
        residual=residual,
        head_fusion=fusion,
    )
    for layer in range(4):
        for row, position in enumerate([5, 2]):
            exact = networkx_flows(graph, layer + 1, position)
            assert (lower[layer, row].numpy() <= exact + 1e-7).all()
            assert (exact <= upper[layer, row].numpy() + 1e-7).all()
            if layer < 2:  # the closed forms of exact flow: the bounds meet
                np.testing.assert_allclose(lower[layer, row], exact, atol=1e-7)
                np.testing.assert_allclose(upper[layer, row], exact, atol=1e-7)


@pytest.mark.parametrize("causal", [False, True])
def test_normalised_bounds_contain_exact_flow(causal):
    attentions = random_attention(5, 2, 9, seed=4, causal=causal)
    exclude = sink_and(9)
    for kwargs in ({}, {"exclude": exclude}, {"head_fusion": "min", "residual": False}):
        exact = attrflow.attention_flow(
            attentions,
            layer="all",
            positions=[-1, 0],
            exclude=None if "exclude" not in kwargs else exclude.numpy(),
            head_fusion=kwargs.get("head_fusion", "mean"),
            residual=kwargs.get("residual", True),
        )
        low, high = attention_flow_bounds(attentions, layer="all", positions=[-1, 0], **kwargs)
        assert low.shape == high.shape == (5, 2, 9)
        assert (low <= exact + 1e-6).all() and (exact <= high + 1e-6).all()
        assert (low[0] - high[0]).abs().max() < 1e-6  # the first layer is exact
    low, high = attention_flow_bounds(MaterialisedRows(attentions), layer=2, positions=3, exclude=exclude)
    assert low.shape == (1, 9) and float(low[0, 0]) == float(high[0, 0]) == 0.0


def test_normalised_bounds_of_exact_values_are_the_normalised_values():
    values = torch.tensor([[0.5, 0.25, 0.25, 0.0]], dtype=torch.float64)
    low, high = normalised_bounds(values, values)
    torch.testing.assert_close(low, values.float() / 1.0)
    torch.testing.assert_close(high, values.float())
    low, high = normalised_bounds(torch.zeros(1, 3), torch.zeros(1, 3))
    assert low.sum() == 0 and high.sum() == 0  # no flow at all: a row of zeros, as exact flow gives


def test_token_scores_keep_their_bounds(tmp_path):
    scores = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    bounds = torch.stack([scores - 0.1, scores + 0.1])
    result = TokenScores(method="flow_bounds", tokens=("a", "b"), scores=scores, layers=(0, 1), bounds=bounds)
    again = attrflow.load_result(result.save(tmp_path / "bounds.safetensors"))
    torch.testing.assert_close(again.bounds, bounds)
    with pytest.raises(InvalidInputError, match="bounds must be"):
        TokenScores(method="x", tokens=("a", "b"), scores=scores, layers=(0, 1), bounds=scores)


# ---------------------------------------------------------------- the size limit of exact flow


def test_exact_flow_states_its_limit_instead_of_hanging():
    attentions = torch.full((12, 1, 1500, 1500), 1 / 1500)
    with pytest.raises(InvalidInputError, match=r"fits up to about n = \d+ tokens.*attention_flow_bounds"):
        attrflow.attention_flow(attentions, positions=[-1])
    with pytest.raises(InvalidInputError, match="over the limit of 1 s"):
        attrflow.attention_flow(random_attention(6, 1, 64, seed=0), max_seconds=1.0)
    small = random_attention(3, 2, 6, seed=0)
    torch.testing.assert_close(
        attrflow.attention_flow(small, max_seconds=None), attrflow.attention_flow(small), rtol=0, atol=0
    )


def test_estimated_seconds_grow_as_l_n_to_the_fourth():
    from attrflow.flow.maxflow import estimated_seconds

    base = estimated_seconds(12, 128, [12], 1, 128, 1.0)
    assert 0.5 < base < 3  # BENCHMARKS.md measured 1.26 s for this case
    assert estimated_seconds(12, 256, [12], 1, 256, 1.0) == pytest.approx(16 * base)
