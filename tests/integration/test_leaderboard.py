"""The leaderboard end to end on a tiny model: every metric per example, properties that can fail (exact NAOPC limits
hold every method's AOPC, ground truth recomputed from the stored scores, baselines fail the sanity check), the
files, resuming, and the randomised copies that never touch the user's model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import attrflow
from attrflow.analysis.leaderboard import METRICS, Leaderboard, ground_truth, leaderboard, leaderboard_methods
from attrflow.data import Dataset, Example
from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.runner import RunOptions
from attrflow.testing import build, word_tokenizer

# word positions: "the movie and the plot was" -> subject movie (1), attractor plot (4)
SENTENCES = [
    ("the movie and the plot was", 0, 1, [4], [1, 4]),
    ("the film was good", 1, 1, [], [1]),
    ("the acting and the movie and the plot is", 0, 1, [4, 7], [1, 4, 7]),
    ("a film and a movie is", 1, 1, [], [1, 4]),
    ("the plot was not very good but fun", 0, 1, [], [1]),
    ("i film it", 1, 1, [], [1, 2]),
    ("the plot and the movie was", 0, 4, [], [1, 4]),  # the subject is not the first noun
]
FAST = {"steps": 2, "rule": "gauss-legendre"}
METHODS = ["attention", "rollout", "attattr", "gradient_x_input"]


def _dataset() -> Dataset:
    examples = [
        Example(
            text,
            label=label,
            meta={"subject_index": subject, "attractor_indices": attractors, "noun_indices": nouns},
        )
        for text, label, subject, attractors, nouns in SENTENCES
    ]
    return Dataset(examples, label_names=("singular", "plural", "other"), name="tiny-agreement", split="test")


@pytest.fixture(scope="module")
def bert():
    return attrflow.load_model(build("bert", init_scale=0.2).eval(), tokenizer=word_tokenizer())


@pytest.fixture(scope="module")
def board(bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("board") / "run"
    return leaderboard(
        bert,
        _dataset(),
        methods=METHODS,
        sanity_examples=3,
        sanity_depths="cascade",
        timing_examples=2,
        run=RunOptions(out_dir=out, progress=False),
        **FAST,
    )


def test_every_method_baseline_and_reference_is_ranked(board, bert):
    assert board.methods == (*METHODS, "random", "position", "blankout", "gradient_l2")
    assert board.methods == leaderboard_methods(bert, METHODS)
    data = board.to_dict()
    assert data["examples"] == len(SENTENCES) and set(data["methods"]) == set(board.methods)
    for entry in data["methods"].values():
        for metric in METRICS:
            assert set(entry[metric.name]) >= {"mean", "ci", "n"}
        assert "seconds_per_example" in entry and "peak_memory_mb" in entry
    assert set(data["methods"]["rollout"]["spearman_blankout"]["by_layer"]) == {"L1", "L2", "L3"}
    assert set(data["methods"]["rollout"]["subject_top_rate"]["by_attractors"]) == {"0", "1", "2+"}
    # blank-out is a method like the others: its Spearman with itself is 1
    assert data["methods"]["blankout"]["spearman_blankout"]["mean"] == pytest.approx(1.0)
    json.dumps(data, allow_nan=False)


def test_exact_normalisation_limits_hold_every_method(board):
    lower, upper = board.examples["naopc_lower"], board.examples["naopc_upper"]
    assert (board.examples["naopc_exact"] == 1).all()  # every input here has at most 10 removable tokens
    for method in board.methods:
        for metric in ("step_comprehensiveness", "step_sufficiency"):
            values = board.values[metric][method]
            finite = np.isfinite(values)
            assert finite.any()
            assert (lower[finite] - 1e-9 <= values[finite]).all() and (values[finite] <= upper[finite] + 1e-9).all()
        naopc = board.values["naopc_comprehensiveness"][method]
        assert np.nanmin(naopc) >= -1e-9 and np.nanmax(naopc) <= 1 + 1e-9


def test_ground_truth_recomputed_from_the_tokens(bert):
    example = _dataset()[0]
    encoding = bert.prepare(example.text)
    truth = ground_truth(example, encoding.tokens, encoding.special_mask)
    assert truth is not None and truth.subject == 2 and truth.attractors == (5,) and truth.nouns == (2, 5)
    # a tokenisation that does not map one word to one token is refused, not guessed
    assert (
        ground_truth(
            Example("the moviegoer was", meta={"subject_index": 1}),
            ("[CLS]", "the", "[UNK]", "[SEP]"),
            (True, False, False, True),
        )
        is None
    )
    assert ground_truth(Example("the movie"), encoding.tokens, encoding.special_mask) is None


def test_subject_top_rate_and_attractor_share_follow_the_scores(board):
    attractors = board.examples["attractors"]
    assert attractors.tolist() == [len(a) for _, _, _, a, _ in SENTENCES]
    top = board.values["subject_top_rate"]["position"]
    # position scores fall with the position: the subject outranks the later nouns, not an earlier one; sentences
    # without another noun have nothing to outrank (NaN)
    expected = [1.0, math.nan, 1.0, 1.0, math.nan, 1.0, 0.0]
    np.testing.assert_array_equal(np.isnan(top), np.isnan(expected))
    np.testing.assert_array_equal(top[~np.isnan(top)], np.array(expected)[~np.isnan(expected)])
    share = board.values["attractor_share"]["position"]
    assert math.isnan(share[1]) and share[0] > 0


def test_baselines_fail_the_sanity_check_and_methods_are_compared(board):
    assert {"random", "position"} <= set(board.flagged())
    sanity = board.sanity["position"]
    measured = np.isfinite(sanity).all(axis=1)
    assert measured.sum() == 3 and np.allclose(sanity[measured], 1.0)
    assert sanity.shape[1] == 3  # the cascade 1, 2, 3 of a 3-layer model
    tests = board.comparisons()
    assert {t.metric for t in tests} >= {"aopc_comprehensiveness", "spearman_blankout"}
    assert all(t.winner in (None, t.a, t.b) for t in tests)


def test_cost_measured_on_the_timing_subsample_only(board):
    seconds = board.values["seconds"]["rollout"]
    assert np.isfinite(seconds).sum() == 2 and (seconds[np.isfinite(seconds)] > 0).all()
    assert board.method_summary("attattr")["seconds_per_example"] > 0


def test_tree_experiment_masks_as_many_interactions(board):
    tree = board.tree_summary()
    counts = board.examples["tree.count"]
    assert tree["examples"] == int(np.isfinite(board.examples["tree.tree"]).sum())
    assert (counts[np.isfinite(board.examples["tree.tree"])] > 0).all()
    assert set(tree["drops"]) == {"tree", "attention", "rollout", "random"}


def test_files_round_trip_and_page(board, tmp_path):
    board.export(tmp_path, figures=False)
    loaded = Leaderboard.load(tmp_path)
    assert loaded.to_dict() == json.loads((tmp_path / "leaderboard.json").read_text())
    assert attrflow.load_result(tmp_path / "leaderboard.safetensors").methods == board.methods
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "leaderboard.parquet")
    assert set(frame.columns) == {"example_id", "method", "metric", "value"}
    assert {"aopc_comprehensiveness", "spearman_blankout@L1", "sanity_spearman"} <= set(frame["metric"])
    html = (tmp_path / "leaderboard.html").read_text()
    assert 'class="num sortable"' in html and "Ground truth" in html and "attribution tree" in html
    assert "sha256-" in html and "<script>" in html  # the sort script, pinned in the CSP
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert markdown.startswith("| method |") and "random ⚠" in markdown


def test_a_second_run_resumes_and_a_changed_one_is_refused(board, bert, tmp_path):
    out = tmp_path / "run"
    small = dict(methods=["rollout"], examples=3, sanity_examples=0, timing_examples=0, tree=False)
    first = leaderboard(bert, _dataset(), run=RunOptions(out_dir=out, progress=False), **small)
    again = leaderboard(bert, _dataset(), run=RunOptions(out_dir=out, progress=False), **small)
    assert again.to_dict()["methods"] == first.to_dict()["methods"]
    with pytest.raises(attrflow.RunMismatchError):
        leaderboard(bert, _dataset(), run=RunOptions(out_dir=out, progress=False), **{**small, "beam_width": 2})


def test_options_are_checked_before_any_work(bert):
    with pytest.raises(InvalidInputError, match="unknown method"):
        leaderboard(bert, _dataset(), methods=["saliency"])
    with pytest.raises(InvalidInputError, match="sanity_depths"):
        leaderboard(bert, _dataset(), methods=["rollout"], sanity_depths=[9])
    with pytest.raises(InvalidInputError, match="no chosen method has the option"):
        leaderboard(bert, _dataset(), methods=["rollout"], stepz=3)


# ------------------------------------------------------------------------------------------ randomised copies
def test_randomized_copy_reinitialises_only_the_top_layers(bert):
    before = {k: v.clone() for k, v in bert.model.state_dict().items()}
    copy = bert.randomized(1, seed=0)
    after = copy.model.state_dict()
    assert all(torch.equal(before[k], v) for k, v in bert.model.state_dict().items())  # the user's model is unchanged
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("bert.encoder.layer.2.") for k in changed)
    assert "classifier.weight" in changed
    assert not any(
        k.startswith(("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1.")) for k in changed
    )
    again = bert.randomized(1, seed=0).model.state_dict()
    assert all(torch.equal(after[k], again[k]) for k in after)
    deeper = bert.randomized(3, seed=0).model.state_dict()
    assert not torch.equal(
        deeper["bert.encoder.layer.0.attention.self.query.weight"],
        before["bert.encoder.layer.0.attention.self.query.weight"],
    )
    with pytest.raises(InvalidInputError):
        bert.randomized(4)


def test_randomized_copy_refuses_shared_layers():
    albert = attrflow.load_model(build("albert", init_scale=0.2), tokenizer=word_tokenizer())
    with pytest.raises(UnsupportedModelError, match="shares one block"):
        albert.randomized(1)


def test_a_dataset_of_other_classes_is_refused_before_any_work(bert, tmp_path):
    two = Dataset([Example("the film was good", label=0)], label_names=("negative", "positive"), name="two")
    out = tmp_path / "run"
    with pytest.raises(InvalidInputError, match="classes|labels"):
        leaderboard(bert, two, methods=["attention"], run=RunOptions(out_dir=out, progress=False))
    assert not out.exists()
