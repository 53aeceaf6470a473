"""Masking attention interactions: exact against a hand-edited forward pass."""

from __future__ import annotations

import pytest
import torch
from transformers import AttentionInterface

import attrflow
from attrflow.analysis.interactions import interaction_effect, masked_probability
from attrflow.errors import InvalidInputError
from attrflow.testing import build, example_inputs

_EDIT: dict = {}


def _editing_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    site = _EDIT["count"]
    _EDIT["count"] += 1
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    probs = torch.softmax(scores, -1)
    if site in _EDIT["masks"]:
        probs = probs * _EDIT["masks"][site]
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


AttentionInterface.register("edit_test", _editing_attention)


def test_masked_probability_equals_hand_edited_forward():
    model = build("bert", init_scale=0.2).eval()
    inputs = {"input_ids": example_inputs("bert")["input_ids"]}
    wrapped = attrflow.load_model(model)
    chosen = {1: [(0, 3), (0, 4)], -1: [(2, 2)]}
    got = masked_probability(wrapped, inputs, chosen, target=1)
    masks = {1: torch.ones(8, 8), 2: torch.ones(8, 8)}
    masks[1][0, 3] = masks[1][0, 4] = 0
    masks[2][2, 2] = 0
    model.set_attn_implementation("edit_test")
    _EDIT.update(count=0, masks=masks)
    with torch.no_grad():
        expected = torch.softmax(model(**inputs).logits, -1)[0, 1].item()
    model.set_attn_implementation("sdpa")
    assert got == pytest.approx(expected, rel=1e-5)
    assert got != pytest.approx(wrapped.predict_proba(inputs)[1].item(), rel=1e-4)


def test_interaction_effect_controls_and_errors():
    wrapped = attrflow.load_model(build("bert", init_scale=0.2))
    inputs = example_inputs("bert")
    effect = interaction_effect(wrapped, inputs, {2: [(0, 1), (0, 2)], 1: [(3, 3)]}, random_draws=3)
    assert effect.count == 3
    assert effect.probability == pytest.approx(wrapped.predict_proba(inputs).max().item(), rel=1e-5)
    assert effect.random_drop_std >= 0
    with pytest.raises(InvalidInputError, match="outside"):
        masked_probability(wrapped, inputs, {0: [(0, 99)]}, target=0)
    with pytest.raises(InvalidInputError, match="out of range"):
        masked_probability(wrapped, inputs, {7: [(0, 1)]}, target=0)


def test_tree_edge_effect_masks_exactly_the_tree_edges():
    wrapped = attrflow.load_model(build("bert", init_scale=0.2))
    inputs = example_inputs("bert")
    result = attrflow.attribute(wrapped, inputs, steps=4)
    tree = attrflow.attribution_tree(result, threshold=0.1)
    assert tree.edges, "threshold low enough to give a tree"
    effect = tree.edge_effect(wrapped, inputs, random_draws=2)
    expected = result.probability - masked_probability(wrapped, inputs, tree.interactions(), target=result.target)
    assert effect.chosen_drop == pytest.approx(expected, abs=1e-6)
    assert effect.count == len(tree.edges)
    assert "top-attention" in effect._repr_html_()
