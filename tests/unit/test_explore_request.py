"""The explorer without a model: request checking, the Host rule, and the compact array encoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attrflow.explore import ExplainRequest, RequestError, allowed_hosts, decode_array, parse_explain_request
from attrflow.viz.explore import encode_array

MODELS = ["sentiment", "agreement"]


def _refused(body, status: int, words: str, **kw) -> None:
    with pytest.raises(RequestError) as caught:
        parse_explain_request(body, models=MODELS, **kw)
    assert caught.value.status == status
    assert words in caught.value.message


def test_a_plain_request_gets_the_defaults():
    request = parse_explain_request({"text": "the food was amazing"}, models=MODELS)
    assert request == ExplainRequest(model="sentiment", text="the food was amazing")
    assert request.methods is None and request.target is None and request.blank == ()
    assert request.heads == "auto" and request.encoding == "exact" and request.truncation is False


def test_method_names_are_canonical_and_deduplicated():
    request = parse_explain_request(
        {"text": "x", "methods": ["Gradient-L2", "rollout", "gradient_l2", " "], "model": "agreement"}, models=MODELS
    )
    assert request.methods == ("gradient_l2", "rollout") and request.model == "agreement"
    assert parse_explain_request({"text": "x", "methods": "rollout,flow"}, models=MODELS).methods == ("rollout", "flow")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ([1, 2], 400, "must be a JSON object"),
        ({}, 400, "text is missing"),
        ({"text": 3}, 400, "text must be a string, got a number"),
        ({"text": None}, 400, "text must be a string, got null"),
        ({"text": "   "}, 422, "text is empty"),
        ({"text": "x", "model": "bert-large"}, 422, "unknown model 'bert-large'; this explorer serves sentiment"),
        ({"text": "x", "model": 1}, 400, "model must be a model name"),
        ({"text": "x", "methods": ["saliency"]}, 422, "unknown method 'saliency'; registered methods:"),
        ({"text": "x", "methods": [1]}, 400, "each entry of methods must be a method name"),
        ({"text": "x", "methods": []}, 422, "methods is empty"),
        ({"text": "x", "methods": {"a": 1}}, 400, "methods must be a list"),
        ({"text": "x", "target": 1.5}, 400, "target must be null, a whole number or a string"),
        ({"text": "x", "target": True}, 400, "target must be null"),
        ({"text": "x", "blank": [1, "2"]}, 400, "each entry of blank must be a token position"),
        ({"text": "x", "truncation": "yes"}, 400, "truncation must be true or false"),
        ({"text": "x", "heads": "some"}, 400, "heads must be true, false or"),
        ({"text": "x", "encoding": "float64"}, 422, "encoding must be one of"),
        ({"text": "x", "options": {"rollout": 1}}, 400, "options['rollout'] must be an object"),
        ({"text": "x", "options": {"nope": {}}}, 422, "unknown method 'nope'"),
        ({"text": "x", "eval": "1+1"}, 400, "unknown field 'eval'"),
    ],
)
def test_bad_requests_are_refused_with_a_status_and_a_reason(body, status, words):
    _refused(body, status, words)


def test_the_input_size_limit_counts_both_texts():
    parse_explain_request({"text": "a" * 50, "text_pair": "b" * 50}, models=MODELS, max_chars=100)
    _refused({"text": "a" * 50, "text_pair": "b" * 51}, 413, "the input has 101 characters", max_chars=100)


def test_targets_blank_positions_and_options_are_kept_as_given():
    request = parse_explain_request(
        {"text": "x", "target": "7", "blank": [3, 1, 3], "options": {"Rollout": {"head_fusion": "max"}}},
        models=MODELS,
    )
    assert request.target == 7 and request.blank == (1, 3) and request.options == {"rollout": {"head_fusion": "max"}}
    assert parse_explain_request({"text": "x", "target": " Paris"}, models=MODELS).target == " Paris"
    assert parse_explain_request({"text": "x", "target": ""}, models=MODELS).target is None


def test_the_key_changes_with_the_computation_only():
    base = parse_explain_request({"text": "the film"}, models=MODELS)
    sent_differently = parse_explain_request({"text": "the film", "heads": True, "encoding": "lists"}, models=MODELS)
    assert base.key() == sent_differently.key()
    for change in ({"text": "the films"}, {"methods": ["flow"]}, {"target": 0}, {"blank": [1]}, {"model": "agreement"}):
        assert parse_explain_request({"text": "the film", **change}, models=MODELS).key() != base.key()


def test_allowed_hosts_follow_the_bound_host():
    assert set(allowed_hosts("127.0.0.1")) >= {"127.0.0.1", "localhost", "[::1]"}
    assert allowed_hosts("192.168.1.5") == ["192.168.1.5"]
    assert "explorer.lan" in allowed_hosts("192.168.1.5", ["explorer.lan"])
    assert "[::1]" in allowed_hosts("::1")


@pytest.mark.parametrize("encoding", ["exact", "float16", "lists"])
def test_arrays_round_trip_through_every_encoding(encoding):
    g = torch.Generator().manual_seed(0)
    values = torch.randn(3, 2, 5, 5, generator=g) * torch.tensor([1e-4, 1.0, 30.0]).view(3, 1, 1, 1)
    back = decode_array(encode_array(values, encoding))
    assert back.shape == (3, 2, 5, 5)
    if encoding == "float16":  # each 5x5 matrix keeps ~3 significant digits of its own scale
        scale = values.abs().amax(dim=(-1, -2)).numpy()
        error = np.abs(back - values.numpy()).max(axis=(-1, -2))
        assert (error <= scale * 2**-11).all() and (error > 0).any()
    else:
        assert np.array_equal(back, values.numpy())


def test_encoding_handles_zeros_non_finite_values_and_vectors():
    block = encode_array(torch.tensor([[0.0, 0.0], [0.0, 0.0]]), "float16")
    assert block["scales"] == [0.0] and np.array_equal(decode_array(block), np.zeros((2, 2)))
    vector = decode_array(encode_array(torch.tensor([1.0, math.nan, -2.0]), "exact"))
    assert vector.tolist() == [1.0, 0.0, -2.0]
    assert decode_array(None).size == 0


def test_exact_keeps_float64_results_float64():
    values = torch.tensor([[1 / 3, 2 / 7], [1e-300, -5.0]], dtype=torch.float64)
    block = encode_array(values, "exact")
    assert block["dtype"] == "float64"
    back = decode_array(block)
    assert back.dtype == np.float64 and np.array_equal(back, values.numpy())
