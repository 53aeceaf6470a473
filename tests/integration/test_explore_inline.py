"""The explorer inline (``explore()`` on results): one self-contained page around one computed result, built from
the same data the API sends."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import attrflow
from attrflow.testing import build, word_tokenizer
from attrflow.viz.explore import decode_array, explanation_data

TEXT = "the movie was not <b>very</b> good"


@pytest.fixture(scope="module")
def model():
    return attrflow.load_model(build("bert", init_scale=0.2), tokenizer=word_tokenizer())


@pytest.fixture(scope="module")
def explanation(model):
    return attrflow.explain(model, TEXT, methods=["attattr", "rollout", "blankout"], options={"attattr": {"steps": 2}})


def _data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="attrflow-data">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_explanation_explore_inlines_the_views_with_the_results_data(explanation):
    view = explanation.explore(title="inline <test>")
    html = view.html
    data = _data(html)
    assert data["mode"] == "inline"
    assert data["result"]["tokens"] == list(explanation.tokens)
    assert list(data["result"]["methods"]) == ["attattr", "rollout", "blankout"]
    assert [entry["name"] for entry in data["methods"]] == ["attattr", "rollout", "blankout"]  # registry facts
    assert data["result"]["methods"]["rollout"]["overall"] == explanation.to_dict()["methods"]["rollout"]["overall"]
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert 'data-testid="flow-graph"' in html and "inline &lt;test&gt;" in html
    assert "<b>very</b>" not in html  # the token text travels as escaped JSON only
    stripped = html.replace("http://www.w3.org/2000/svg", "")
    assert "http://" not in stripped and "https://" not in stripped
    frame = view._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts allow-downloads"' in frame


def test_the_data_is_the_explanation(explanation):
    data = explanation_data(explanation, encoding="lists")
    expected = explanation.to_dict()
    for key, value in expected.items():
        if key != "methods":
            assert data[key] == value, key
    for name, entry in expected["methods"].items():
        for key, value in entry.items():
            assert data["methods"][name][key] == value, (name, key)
    auto = explanation_data(explanation, encoding="auto")
    assert auto["encoding"] == "exact" and auto["per_head"] is True
    assert np.array_equal(
        decode_array(auto["matrices"]["attribution"]["data"]), explanation.result.attributions.numpy()
    )


def test_results_and_token_scores_explore_on_their_own(model, explanation, tmp_path):
    result = explanation.result
    attribution = _data(result.explore().html)["result"]
    assert set(attribution["methods"]) == {"attribution", "raw attention"}
    assert attribution["tree"]["root"]["token"] == 0 and attribution["head_scores"] is not None
    recorded = attrflow.explain(model, TEXT, methods=["rollout"]).result
    assert isinstance(recorded, attrflow.RecordedAttention)
    assert set(_data(recorded.explore().html)["result"]["methods"]) == {"raw attention"}
    scores = explanation.scores["rollout"]
    alone = _data(scores.explore().html)["result"]
    assert list(alone["methods"]) == ["rollout"] and alone["matrices"] == {} and alone["tokens"] == list(scores.tokens)
    path = scores.explore().write(tmp_path / "scores.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_long_inputs_embed_means_and_float16():
    n, L, H = 300, 6, 12
    rng = np.random.default_rng(0)
    result = attrflow.RecordedAttention(
        tokens=tuple(f"t{i}" for i in range(n)),
        attentions=torch.softmax(torch.tensor(rng.normal(size=(L, H, n, n)), dtype=torch.float32), dim=-1),
        predicted=0,
        predicted_label="a",
        probability=0.5,
    )
    data = explanation_data(result=result, scores={}, encoding="auto")
    assert data["per_head"] is False and data["matrices"]["attention"]["data"]["shape"] == [L, 1, n, n]
    assert data["encoding"] == "exact"
    assert explanation_data(result=result, encoding="auto", heads=True)["encoding"] == "float16"
