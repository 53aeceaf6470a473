"""Attention rollout: hand-computed values, the recurrence, and every option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attrflow
from attrflow.errors import InvalidInputError


def random_attention(layers: int, heads: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(n, 0.5), size=(layers, heads, n))


def test_two_layers_by_hand() -> None:
    # layer 0: one head attending fully to token 1; layer 1: two heads, uniform and one-hot on token 0
    att = np.zeros((2, 2, 2, 2))
    att[0, :, :, 1] = 1.0
    att[1, 0] = 0.5
    att[1, 1, :, 0] = 1.0
    rollout = attrflow.attention_rollout(att).numpy()
    first = np.array([[0.5, 0.5], [0.0, 1.0]])  # 0.5·[[0,1],[0,1]] + 0.5·I
    second = np.array([[0.875, 0.125], [0.375, 0.625]])  # 0.5·mean(heads) + 0.5·I = 0.5·[[.75,.25],[.75,.25]] + 0.5·I
    np.testing.assert_allclose(rollout[0], first, atol=1e-15)
    np.testing.assert_allclose(rollout[1], second @ first, atol=1e-15)
    np.testing.assert_allclose(rollout[1], [[0.4375, 0.5625], [0.1875, 0.8125]], atol=1e-15)


def test_recurrence_and_row_sums() -> None:
    att = random_attention(5, 3, 7, seed=1)
    graph = 0.5 * att.mean(axis=1) + 0.5 * np.eye(7)
    expected = graph[0]
    rollout = attrflow.attention_rollout(att).numpy()
    for layer in range(5):
        if layer:
            expected = graph[layer] @ expected
        np.testing.assert_allclose(rollout[layer], expected, atol=1e-13)
    np.testing.assert_allclose(rollout.sum(axis=-1), 1.0, atol=1e-12)


def test_start_layer_skips_the_layers_below() -> None:
    att = random_attention(4, 2, 5, seed=2)
    graph = 0.5 * att.mean(axis=1) + 0.5 * np.eye(5)
    rollout = attrflow.attention_rollout(att, start_layer=2).numpy()
    np.testing.assert_allclose(rollout[0], np.eye(5))
    np.testing.assert_allclose(rollout[1], np.eye(5))
    np.testing.assert_allclose(rollout[3], graph[3] @ graph[2], atol=1e-13)
    np.testing.assert_allclose(attrflow.attention_rollout(att, start_layer=-2).numpy(), rollout)


def test_without_residual_and_max_min_fusion() -> None:
    att = random_attention(3, 4, 5, seed=3)
    plain = attrflow.attention_rollout(att, residual=False).numpy()
    mean = att.mean(axis=1)
    np.testing.assert_allclose(plain[2], mean[2] @ mean[1] @ mean[0], atol=1e-13)
    for fusion, fuse in (("max", np.max), ("min", np.min)):
        graph = 0.5 * fuse(att, axis=1) + 0.5 * np.eye(5)
        graph /= graph.sum(axis=-1, keepdims=True)
        rollout = attrflow.attention_rollout(att, head_fusion=fusion).numpy()  # type: ignore[arg-type]
        np.testing.assert_allclose(rollout[2], graph[2] @ graph[1] @ graph[0], atol=1e-13)


def test_per_head_uses_the_head_on_top_of_the_fused_rollout_below() -> None:
    att = random_attention(3, 4, 5, seed=4)
    graph = 0.5 * att.mean(axis=1) + 0.5 * np.eye(5)
    rollout = attrflow.attention_rollout(att, head=2).numpy()
    head_top = 0.5 * att[2, 2] + 0.5 * np.eye(5)
    np.testing.assert_allclose(rollout[2], head_top @ graph[1] @ graph[0], atol=1e-13)
    np.testing.assert_allclose(rollout[0], 0.5 * att[0, 2] + 0.5 * np.eye(5), atol=1e-15)


def test_causal_stays_lower_triangular() -> None:
    n = 6
    att = random_attention(3, 2, n, seed=5) * np.tril(np.ones((n, n)))
    att /= att.sum(axis=-1, keepdims=True)
    rollout = attrflow.attention_rollout(att).numpy()
    assert np.all(np.triu(rollout, k=1) == 0)
    np.testing.assert_allclose(rollout[:, 0, 0], 1.0)  # the first token only sees itself


def test_exclusion_zeroes_and_renormalises() -> None:
    att = random_attention(3, 2, 5, seed=6)
    full = attrflow.attention_rollout(att).numpy()
    exclude = torch.tensor([True, False, False, False, True])
    excluded = attrflow.attention_rollout(att, exclude=exclude).numpy()
    kept = full[:, :, 1:4]
    np.testing.assert_allclose(excluded[:, :, 1:4], kept / kept.sum(axis=-1, keepdims=True), atol=1e-13)
    assert np.all(excluded[:, :, [0, 4]] == 0)


def test_dtypes_and_result_objects() -> None:
    att = random_attention(2, 2, 4, seed=7)
    assert attrflow.attention_rollout(att).dtype == torch.float64
    assert attrflow.attention_rollout(torch.from_numpy(att).half()).dtype == torch.float32

    class Result:
        attentions = torch.from_numpy(att)
        special_mask = (True, False, False, True)

    out = attrflow.attention_rollout(Result(), exclude="special")
    assert out.shape == (2, 4, 4)
    assert torch.all(out[:, :, [0, 3]] == 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_layer": 2}, "start_layer 2 is out of range"),
        ({"head": -3}, "head -3 is out of range"),
        ({"head_fusion": "median"}, "head_fusion must be one of"),
        ({"exclude": [True, False]}, "boolean mask"),
    ],
)
def test_invalid_options(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        attrflow.attention_rollout(random_attention(2, 2, 4, seed=0), **kwargs)
