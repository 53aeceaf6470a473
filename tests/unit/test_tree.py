"""Attribution tree (Hao et al. 2021 §4.3): hand-built trees, the official script as an oracle, invariants."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attrflow.analysis.tree import (
    AttributionTree,
    attribution_tree,
    normalized_layer_attributions,
    top_token,
)
from attrflow.errors import InvalidInputError
from attrflow.results import AttentionAttribution

TOKENS6 = ("[CLS]", "a", "b", "c", "d", "[SEP]")


def make_result(
    attributions: torch.Tensor,
    *,
    tokens: tuple[str, ...] | None = None,
    layers: tuple[int, ...] | None = None,
    num_layers: int | None = None,
    output_position: int = 0,
) -> AttentionAttribution:
    K, H, n, _ = attributions.shape
    layers = tuple(range(K)) if layers is None else layers
    L = num_layers if num_layers is not None else max(layers) + 1
    return AttentionAttribution(
        tokens=tokens or tuple(f"t{i}" for i in range(n)),
        attributions=attributions,
        attentions=torch.full((L, H, n, n), 1.0 / n),
        layers=layers,
        target=0,
        target_label=None,
        predicted=0,
        probability=0.5,
        baseline_probability=torch.zeros(K),
        completeness_gap=torch.zeros(K),
        special_mask=(True,) + (False,) * (n - 2) + (True,),
        output_position=output_position,
    )


def split_heads(summed: torch.Tensor, heads: int = 2) -> torch.Tensor:
    """[K, n, n] head-summed matrices → [K, heads, n, n] whose head sum is exactly ``summed`` (dyadic values)."""
    parts = [summed * 0.75] + [summed * (0.25 / (heads - 1))] * (heads - 1)
    return torch.stack(parts, dim=1)


def designed() -> torch.Tensor:
    """Three layers over TOKENS6 whose trees are worked out by hand in the tests below (all values dyadic)."""
    S = torch.zeros(3, 6, 6)
    # layer 2 (top), max 1: [CLS] attends a (1.0) and b (0.5); [CLS]→c is 0.375 (on the threshold in one test);
    # c→d and a→d are strong but c is not in the tree and a joins only in this layer
    S[2, 0, 1], S[2, 0, 2], S[2, 0, 3], S[2, 3, 4], S[2, 1, 4] = 1.0, 0.5, 0.375, 0.875, 0.75
    # layer 1, max 1: both a and b attend c (b stronger); c→d inside the same layer
    S[1, 1, 3], S[1, 2, 3], S[1, 3, 4] = 0.5, 1.0, 0.75
    # layer 0, max 2 (in the [CLS] row): [CLS]→[SEP]; c→d; b→a (a already placed)
    S[0, 0, 5], S[0, 3, 4], S[0, 2, 1] = 2.0, 1.0, 1.5
    return split_heads(S)


def edge_tuples(tree: AttributionTree) -> list[tuple[int, int, int, float]]:
    return [(e.layer, e.parent, e.child, e.score) for e in tree.edges]


def test_hand_built_tree_by_layer():
    tree = attribution_tree(make_result(designed(), tokens=TOKENS6))
    assert tree.root.layer == 3 and tree.root.token == 0
    assert edge_tuples(tree) == [
        (2, 0, 1, 1.0),
        (2, 0, 2, 0.5),
        (1, 2, 3, 1.0),  # the strongest parent wins, not the first
        (0, 3, 4, 0.5),  # c joined in layer 1, so it takes children only below it
        (0, 0, 5, 1.0),
    ]
    assert [(n.layer, n.token) for n in tree.nodes] == [(3, 0), (2, 1), (2, 2), (1, 3), (0, 4), (0, 5)]
    assert tree.layers == (2, 1, 0)
    assert tree.edges[2].attribution == pytest.approx(1.0)
    assert tree.edges[3].attribution == pytest.approx(1.0)  # raw head sum, before dividing by the layer max 2


def test_hand_built_tree_sequential_scan_follows_the_official_loop():
    tree = attribution_tree(make_result(designed(), tokens=TOKENS6), scan="sequential")
    # row a comes first in layer 1 and takes c; c, just added, takes d in the same layer; the [CLS] row is never
    # read below the first layer, so [SEP] stays out
    assert edge_tuples(tree) == [(2, 0, 1, 1.0), (2, 0, 2, 0.5), (1, 1, 3, 0.5), (1, 3, 4, 0.75)]
    assert tree.node_of(5) is None


def test_threshold_is_strict_and_lowering_it_changes_the_tree():
    result = make_result(designed(), tokens=TOKENS6)
    at = attribution_tree(result, threshold=0.375)  # [CLS]→c normalises to exactly 0.375: not added
    assert at.parent_edge(3) == attribution_tree(result).parent_edge(3)
    assert at.parent_edge(3).layer == 1
    below = attribution_tree(result, threshold=0.37)
    assert below.parent_edge(3).layer == 2 and below.parent_edge(3).parent == 0
    assert below.parent_edge(4).layer == 1 and below.parent_edge(4).parent == 3  # c now sits higher


def test_threshold_above_every_score_leaves_only_the_root():
    tree = attribution_tree(make_result(designed(), tokens=TOKENS6), threshold=1.0)
    assert tree.edges == () and tree.nodes == (tree.root,)


def test_threshold_zero_takes_every_positive_interaction():
    tree = attribution_tree(make_result(designed(), tokens=TOKENS6), threshold=0.0)
    assert {n.token for n in tree.nodes} == set(range(6))


def test_normalization_values_by_hand():
    attributions = designed()
    paper, summed = normalized_layer_attributions(attributions)
    official, _ = normalized_layer_attributions(attributions, normalization="layer-max-without-output-row")
    assert summed[0, 0, 5] == 2.0
    assert paper[0, 3, 4] == 0.5  # 1.0 / max 2.0 of the whole layer
    assert official[0, 3, 4] == pytest.approx(1.0 / 1.5)  # the [CLS] row's 2.0 is ignored: max is b→a = 1.5
    assert official[0, 0, 5] == pytest.approx(2.0 / 1.5)  # the [CLS] row can exceed 1
    assert paper[1].max() == 1.0


def test_layer_without_positive_maximum_adds_nothing():
    S = torch.zeros(2, 4, 4)
    S[1, 0, 1] = 1.0
    S[0] = -torch.ones(4, 4)  # all negative: max is -1, everything normalises to -1
    tree = attribution_tree(make_result(split_heads(S)), threshold=0.4)
    assert edge_tuples(tree) == [(1, 0, 1, 1.0)]
    S[0] = 0.0
    assert edge_tuples(attribution_tree(make_result(split_heads(S)))) == [(1, 0, 1, 1.0)]


def test_top_token_by_hand():
    S = torch.zeros(1, 1, 4, 4)
    S[0, 0, 0, 1] = 10.0  # the [CLS] row is excluded
    S[0, 0, 1, 1] = 9.0  # diagonal ignored
    S[0, 0, 2, 0], S[0, 0, 2, 3] = 2.0, -5.0  # negatives ignored: row 2 totals 2
    S[0, 0, 3, 0], S[0, 0, 3, 1] = 1.0, 0.5  # row 3 totals 1.5
    assert top_token(S, exclude=0) == 2
    assert top_token(S, exclude=None) == 0


def test_top_token_root_starts_below_the_last_layer():
    g = torch.Generator().manual_seed(3)
    result = make_result(torch.randn(4, 2, 7, 7, generator=g))
    tree = attribution_tree(result, root="top-token")
    assert tree.root.token == top_token(result.attributions, exclude=0)
    assert tree.layers == (2, 1, 0)
    assert tree.root.layer == 3
    assert all(edge.layer <= 2 for edge in tree.edges)


def official_attribution_tree(att_all: np.ndarray, threshold: float = 0.4) -> list[tuple[int, int]]:
    """The loop of the official ``attribution_tree.py`` (12 layers, layer index 10 hard-coded), kept literally."""
    att_all = att_all.copy()
    proportion_all = att_all.copy()
    for i in range(len(proportion_all)):
        proportion_all[i] /= abs(proportion_all[i][1:, :].max())
    proportion_all *= (proportion_all > threshold).astype(int)
    seq_length = len(proportion_all[0])
    fixed_list = [-1 for _ in range(seq_length)]
    edges: list[tuple[int, int]] = []
    att_combine_layer = att_all.sum(0) / abs(att_all.sum(0).max())
    att_combine_layer *= (1 - np.identity(len(att_combine_layer))) * (att_combine_layer > 0)
    att_combine_layer[0] *= 0
    arg_res = np.argsort(att_combine_layer.sum(-1))[::-1]
    top_token_index = arg_res[0] if arg_res[0] != 0 else arg_res[1]
    fixed_list[top_token_index] = 0
    for i in range(seq_length):
        if i != top_token_index and proportion_all[10][top_token_index][i] > threshold:
            fixed_list[i] = 0
            fixed_list[top_token_index] = 1
            edges.append((int(top_token_index), i))
    for layer_index in range(9, -1, -1):
        for i_token in range(1, seq_length):
            for j_token in range(0, seq_length):
                if proportion_all[layer_index][i_token][j_token] < threshold or fixed_list[i_token] == -1:
                    continue
                if fixed_list[j_token] == 1:
                    continue
                if (i_token, j_token) in edges:
                    continue
                if fixed_list[i_token] == 0 and fixed_list[j_token] == 0:
                    continue
                if fixed_list[i_token] == 1 and fixed_list[j_token] == 0:
                    continue
                if fixed_list[i_token] == 0 and fixed_list[j_token] == -1:
                    fixed_list[i_token] = 1
                    fixed_list[j_token] = 0
                if fixed_list[i_token] == 1 and fixed_list[j_token] == -1:
                    fixed_list[j_token] = 0
                edges.append((i_token, j_token))
    return edges


@pytest.mark.parametrize("seed", range(6))
def test_official_settings_reproduce_the_official_script(seed):
    g = torch.Generator().manual_seed(seed)
    n = 9 + seed
    # heavy-tailed attributions so that the threshold keeps a sparse, seed-dependent set of edges
    attributions = (torch.randn(12, 3, n, n, generator=g, dtype=torch.float64) ** 3).float()
    tree = attribution_tree(
        make_result(attributions),
        root="top-token",
        normalization="layer-max-without-output-row",
        scan="sequential",
    )
    expected = official_attribution_tree(attributions.double().sum(1).numpy())
    assert len(expected) > 2
    assert [(e.parent, e.child) for e in tree.edges] == expected


@pytest.mark.parametrize("depth", [1, 3, 12])
@pytest.mark.parametrize("scan", ["by-layer", "sequential"])
def test_any_depth_gives_a_tree_with_each_token_once(depth, scan):
    g = torch.Generator().manual_seed(depth)
    n = 15
    result = make_result(torch.randn(depth, 4, n, n, generator=g))
    tree = attribution_tree(result, scan=scan, threshold=0.3)
    tokens = [node.token for node in tree.nodes]
    assert len(tokens) == len(set(tokens))
    assert tree.root == tree.nodes[0] and tree.root.layer == depth
    assert len(tree.edges) == len(tree.nodes) - 1
    normalized, _ = normalized_layer_attributions(result.attributions)
    placed = {node.token: node for node in tree.nodes}
    for edge in tree.edges:
        assert edge.score > 0.3
        assert edge.score == pytest.approx(float(normalized[edge.layer, edge.parent, edge.child]))
        assert placed[edge.child].layer == edge.layer
        if scan == "by-layer":
            assert placed[edge.parent].layer > edge.layer
        else:
            assert placed[edge.parent].layer >= edge.layer
    # a parent is always placed before its child
    order = {node.token: k for k, node in enumerate(tree.nodes)}
    assert all(order[e.parent] < order[e.child] for e in tree.edges)
    if depth > 1:
        assert len(tree.edges) > 0


def test_tree_is_invariant_to_positive_rescaling():
    g = torch.Generator().manual_seed(11)
    attributions = torch.randn(5, 3, 10, 10, generator=g)
    a = attribution_tree(make_result(attributions))
    b = attribution_tree(make_result(attributions * 37.5))
    assert [(e.layer, e.parent, e.child) for e in a.edges] == [(e.layer, e.parent, e.child) for e in b.edges]


def test_subset_of_layers_and_negative_indices():
    g = torch.Generator().manual_seed(5)
    attributions = torch.randn(2, 2, 6, 6, generator=g)
    result = make_result(attributions, layers=(1, 3), num_layers=4)
    tree = attribution_tree(result)
    assert tree.layers == (3, 1) and tree.root.layer == 4
    assert {e.layer for e in tree.edges} <= {1, 3}
    only_top = attribution_tree(result, layers=[-1])
    assert only_top.layers == (3,)
    assert attribution_tree(result, root="top-token").layers == (1,)
    with pytest.raises(InvalidInputError, match="was not attributed"):
        attribution_tree(result, layers=[0])


def test_decoder_root_is_the_last_position():
    g = torch.Generator().manual_seed(2)
    result = make_result(torch.randn(2, 2, 5, 5, generator=g), output_position=4)
    assert attribution_tree(result).root.token == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": -0.1}, "threshold must be >= 0"),
        ({"threshold": float("nan")}, "finite"),
        ({"threshold": True}, "finite"),
        ({"root": "sep"}, "root must be one of"),
        ({"normalization": "l2"}, "normalization must be one of"),
        ({"scan": "bfs"}, "scan must be one of"),
        ({"layers": []}, "layers is empty"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs, message):
    result = make_result(designed(), tokens=TOKENS6)
    with pytest.raises(InvalidInputError, match=message):
        attribution_tree(result, **kwargs)


def test_cls_root_needs_an_output_position_and_top_token_needs_a_lower_layer():
    result = make_result(designed(), output_position=-1)
    with pytest.raises(InvalidInputError, match="root='top-token'"):
        attribution_tree(result)
    assert attribution_tree(result, root="top-token").root.token == top_token(result.attributions, exclude=None)
    last_only = make_result(designed()[2:], layers=(2,), num_layers=3)
    with pytest.raises(InvalidInputError, match="starts below the last layer"):
        attribution_tree(last_only, root="top-token")


def test_to_dict_and_networkx():
    nx = pytest.importorskip("networkx")
    tree = attribution_tree(make_result(designed(), tokens=TOKENS6))
    data = json.loads(json.dumps(tree.to_dict()))
    assert data["root"] == {"layer": 3, "token": 0}
    assert [(e["parent"], e["child"]) for e in data["edges"]] == [(0, 1), (0, 2), (2, 3), (3, 4), (0, 5)]
    assert data["nodes"][3] == {"layer": 1, "token": 3, "text": "c"}
    graph = tree.to_networkx()
    assert nx.is_arborescence(graph)
    assert graph.nodes[(1, 3)]["text"] == "c"
    assert graph.edges[(1, 3), (0, 4)] == {"layer": 0, "score": 0.5, "attribution": 1.0}
    assert set(graph.successors((3, 0))) == {(2, 1), (2, 2), (0, 5)}
    assert tree.interactions() == {2: [(0, 1), (0, 2)], 1: [(2, 3)], 0: [(3, 4), (0, 5)]}


def test_tree_is_a_result_that_saves_and_renders(tmp_path):
    import attrflow

    tree = attribution_tree(make_result(designed(), tokens=TOKENS6), threshold=0.2)
    assert len(tree.edges) > 1
    loaded = attrflow.load_result(tree.save(tmp_path / "tree.safetensors"))
    assert loaded.to_dict() == tree.to_dict()
    frame = tree.to_frame()
    assert len(frame) == len(tree.edges) and list(frame["child"]) == [e.child for e in tree.edges]
    page = tree.to_html(tmp_path / "tree.html")
    assert "<svg" in page and (tmp_path / "tree.html").read_text() == page
