"""Adversarial triggers (Hao et al. 2021, §5) on tiny models: insertion with the model's tokenisation, mining
against a direct computation, a model with a known shortcut token, the random control, mined results saved and
loaded back, the CLI contracts and the deprecated spellings. The model-free parts are in tests/unit."""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import transformers as T

import attrflow
from attrflow.analysis import triggers as tr
from attrflow.analysis.triggers import evaluation
from attrflow.errors import InvalidInputError
from attrflow.runner import RunOptions
from attrflow.testing import SPECIALS, VOCAB, WORDS, build, word_tokenizer
from attrflow.validation import Selection

SHORTCUT = "fun"
QUIET = RunOptions(progress=False)


@dataclass(frozen=True)
class Ex:
    text: str
    text_pair: str | None = None
    label: int = -1


class Named(list):
    """A list of examples with label names, like attrflow.load_dataset's datasets."""

    label_names = ("negative", "positive")


def ids(*words: str) -> list[int]:
    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    return [vocab[w] for w in words]


def trigger(words: list[str], segments: list[int], positions: list[float]) -> tr.Trigger:
    return tr.Trigger(tuple(ids(*words)), tuple(words), tuple(segments), tuple(positions))


@pytest.fixture(scope="module")
def tiny() -> attrflow.Model:
    return attrflow.load_model(build("bert", init_scale=0.2), tokenizer=word_tokenizer())


def synthetic(n: int, seed: int) -> Named:
    """Sentences of filler words; label 1 exactly when the shortcut word occurs."""
    rng = random.Random(seed)
    fillers = [w for w in WORDS if w != SHORTCUT]
    out = Named()
    for i in range(n):
        words = [rng.choice(fillers) for _ in range(rng.randint(4, 9))]
        if i % 2:
            words.insert(rng.randint(0, len(words)), SHORTCUT)
        out.append(Ex(" ".join(words), None, i % 2))
    return out


def train_shortcut_model() -> attrflow.Model:
    """A 2-layer BERT trained (a few seconds) until one word decides the class."""
    torch.manual_seed(0)
    tokenizer = word_tokenizer()
    config = T.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=VOCAB,
        num_labels=2,
        max_position_embeddings=32,
    )
    model = T.BertForSequenceClassification(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = synthetic(512, seed=0)
    model.train()
    for step in range(120):
        batch = [data[(step * 32 + i) % len(data)] for i in range(32)]
        encoded = tokenizer([ex.text for ex in batch], padding=True, return_tensors="pt")
        loss = model(**encoded, labels=torch.tensor([ex.label for ex in batch])).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    return attrflow.load_model(model, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def shortcut_model() -> attrflow.Model:
    return train_shortcut_model()


# ---------------------------------------------------------------------- insertion


def test_insert_single_text_at_relative_positions(tiny):
    tok = tiny.tokenizer
    first_last = tr.insert_trigger(tiny, "the movie was fun", trigger(["great", "bad"], [0, 0], [0.0, 1.0]))
    assert first_last["input_ids"] == tok("great the movie was fun bad")["input_ids"]
    middle = tr.insert_trigger(tiny, Ex("the movie was fun"), trigger(["not"], [0], [0.5]))
    assert middle["input_ids"] == tok("the movie not was fun")["input_ids"]
    assert middle["attention_mask"] == [1] * 7


def test_insert_pair_per_segment_with_token_types(tiny):
    tok = tiny.tokenizer
    both = trigger(["great", "boring"], [0, 1], [1.0, 0.0])
    got = tr.insert_trigger(tiny, ("the movie was fun", "it is bad"), both)
    expected = tok("the movie was fun great", "boring it is bad")
    assert got["input_ids"] == expected["input_ids"]
    assert got["token_type_ids"] == expected["token_type_ids"]
    second_only = tr.insert_trigger(tiny, Ex("the movie", "it is bad"), trigger(["not"], [1], [0.5]))
    assert second_only == dict(tok("the movie", "it is not bad"))  # index round(0.5 · 3) = 2, half up


def test_insert_never_touches_special_tokens_and_fits_the_maximum():
    model = attrflow.load_model(build("bert"), tokenizer=word_tokenizer(max_length=8))
    long_text = "the movie was very good and the plot was fun"
    got = tr.insert_trigger(model, long_text, trigger(["bad", "terrible"], [0, 0], [0.0, 1.0]))
    tokens = model.tokenizer.convert_ids_to_tokens(got["input_ids"])
    assert len(tokens) == 8  # cut to fit, trigger kept
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert tokens[1] == "bad" and tokens[-2] == "terrible"


def test_trigger_for_second_segment_needs_a_pair(tiny):
    with pytest.raises(InvalidInputError, match="text_pair"):
        tr.insert_trigger(tiny, "the movie", trigger(["bad"], [1], [0.0]))


# ---------------------------------------------------------------------- mining
MINING_DATA = [
    Ex("the movie was great", None, 1),
    Ex("a boring plot and bad acting", None, 0),
    Ex("it is not good", "the film was fun", 1),
    Ex("i very bad", "but the acting is good", 0),
    Ex("the plot", None, 1),
]


def _direct(model: attrflow.Model, example: Ex):
    """The official selection, written independently: per-layer argmax, strict improvement, numpy argsort."""
    inputs = example.text if example.text_pair is None else (example.text, example.text_pair)
    result = attrflow.attribute(model, inputs, steps=2)
    attr = result.attributions.double().numpy()
    best, best_layer, best_head = None, -1, -1
    for layer in range(attr.shape[0]):
        heads = attr[layer].reshape(attr.shape[1], -1)
        head = int(np.argmax(heads.max(axis=1)))
        if best is None or heads[head].max() > best.max():
            best, best_layer, best_head = attr[layer, head], layer, head
    n = best.shape[0]
    order = np.argsort(-best.reshape(-1), kind="stable")[:2]
    return best_layer, best_head, [divmod(int(i), n) for i in order], [best.reshape(-1)[i] for i in order], result


def test_mined_patterns_match_a_direct_computation(tiny, tmp_path):
    mined = tr.mine_patterns(tiny, MINING_DATA, steps=2, run=QUIET.with_out_dir(tmp_path / "run"))
    assert sorted(p.example_id for p in mined.patterns) == list(range(len(MINING_DATA)))
    scores = [p.score for p in mined.patterns]
    assert scores == sorted(scores, reverse=True)
    for pattern in mined.patterns:
        example = MINING_DATA[pattern.example_id]
        layer, head, pairs, values, result = _direct(tiny, example)
        assert (pattern.layer, pattern.head) == (layer, head)
        assert [tuple(p) for p in pattern.interactions] == pairs
        assert pattern.scores == pytest.approx(values, rel=1e-5, abs=1e-9)
        assert pattern.tokens == result.tokens and pattern.predicted == result.predicted
        assert pattern.label == example.label
        expected_segments = [-1 if s else 0 for s in result.special_mask]
        if example.text_pair is not None:
            second = result.tokens.index("[SEP]") + 1
            expected_segments = [s if i < second or s == -1 else 1 for i, s in enumerate(expected_segments)]
        assert list(pattern.segments) == expected_segments


def test_mining_is_deterministic_and_independent_of_batching(tiny, tmp_path):
    data = MINING_DATA[1:4]

    def options(per_batch: int, directory: str) -> RunOptions:
        return RunOptions(out_dir=tmp_path / directory, examples_per_batch=per_batch, progress=False)

    first = tr.mine_patterns(tiny, data, steps=2, run=options(1, "a"))
    second = tr.mine_patterns(tiny, data, steps=2, run=options(2, "b"))
    assert first.to_table().equals(second.to_table())
    resumed = tr.mine_patterns(tiny, data, steps=2, run=options(3, "a"))
    assert resumed.to_table().equals(first.to_table())


def test_examples_and_min_tokens_select_the_mined_examples(tiny):
    mined = tr.mine_patterns(tiny, MINING_DATA, examples=4, selection="first", min_tokens=9, steps=2, run=QUIET)
    # [CLS] + words (+ [SEP] + words) + [SEP] >= 9 tokens, among the first four
    assert sorted(p.example_id for p in mined.patterns) == [2, 3]
    assert mined.settings["examples"] == 4 and mined.settings["mined"] == 2


def test_random_sample_is_seeded_and_keeps_dataset_positions(tiny):
    with pytest.warns(UserWarning, match="one class"):  # the three drawn examples are all positive
        mined = tr.mine_patterns(tiny, MINING_DATA, examples=3, seed=3, steps=2, run=QUIET)
    expected = sorted(np.random.default_rng(3).choice(len(MINING_DATA), size=3, replace=False).tolist())
    assert sorted(p.example_id for p in mined.patterns) == expected  # random is the default
    assert mined.settings["selection"] == "random" and mined.settings["seed"] == 3
    with pytest.raises(InvalidInputError, match="selection"):
        tr.mine_patterns(tiny, MINING_DATA, selection="shuffled", run=QUIET)


def test_attack_evaluates_a_seeded_random_sample_of_a_sorted_dataset(shortcut_model):
    data = synthetic(60, seed=5)
    ordered = Named(sorted(data, key=lambda ex: ex.label))  # all negatives first, like the built-in tweets
    only_the_shortcut = [trigger([SHORTCUT], [0], [0.5])]
    with pytest.warns(UserWarning, match="'negative'.*selection='random'"):
        first = tr.attack(shortcut_model, ordered, only_the_shortcut, examples=20, selection="first", control=False)
    assert [o.label for o in first.outcomes] == ["all", "negative"]  # the first 20 are all negative
    drawn = tr.attack(shortcut_model, ordered, only_the_shortcut, examples=20, seed=1, control=False)
    counts = {o.label: o.count for o in drawn.outcomes}
    expected = sorted(np.random.default_rng(1).choice(60, size=20, replace=False).tolist())
    assert counts["all"] == 20 and counts["positive"] == sum(ordered[p].label for p in expected)
    assert drawn.settings["selection"] == "random"  # the default


def test_ray_needs_a_model_it_can_load_by_name(tiny):
    with pytest.raises(InvalidInputError, match="name or a checkpoint directory"):
        tr.mine_patterns(tiny, MINING_DATA, run=RunOptions(engine="ray", progress=False))
    with pytest.raises(InvalidInputError, match="Ray"):
        pickle.dumps(tr.PatternMiningTask(tiny))
    by_name = pickle.loads(pickle.dumps(tr.PatternMiningTask("some/checkpoint", steps=3)))
    assert by_name.settings()["model"] == "some/checkpoint" and by_name.settings()["steps"] == 3


def test_patterns_round_trip_through_parquet(tiny, tmp_path):
    mined = tr.mine_patterns(tiny, MINING_DATA[:3], steps=2, run=QUIET)
    path = mined.to_parquet(tmp_path / "patterns.parquet")
    loaded = tr.TriggerPatterns.read_parquet(path)
    assert loaded.patterns == mined.patterns
    assert loaded.settings == mined.settings and loaded.label_names == mined.label_names
    frame = mined.to_frame()
    assert list(frame["rank"]) == [0, 1, 2] and "trigger_tokens" in frame


# ---------------------------------------------------------------------- the shortcut model
def test_shortcut_token_is_mined_as_the_top_trigger_and_breaks_the_other_class(shortcut_model):
    mined = tr.mine_patterns(shortcut_model, synthetic(24, seed=1), steps=4, run=QUIET)
    top = mined.triggers(1, min_score=0.0)[0]
    assert top.tokens == (SHORTCUT,)
    assert top.label == 1
    report = tr.attack(shortcut_model, synthetic(80, seed=2), mined, top=1, min_score=0.0, control_seeds=3, seed=0)
    rows = {o.label: o for o in report.outcomes}
    assert set(rows) == {"all", "negative", "positive"}
    assert report.settings["selection"] == "random" and report.settings["examples"] == 80
    assert rows["negative"].count == rows["positive"].count == 40
    assert rows["negative"].accuracy_before == 1.0 and rows["positive"].accuracy_before == 1.0
    assert rows["negative"].accuracy_after <= 0.1  # the shortcut word flips negatives to positive
    assert rows["positive"].accuracy_after == 1.0
    assert rows["negative"].control_accuracy_after >= 0.9  # other words at the same place do not
    assert len(rows["negative"].control_accuracies) == 3
    assert len(report.control_tokens) == 1 and len(report.control_tokens[0]) == 3
    assert all(len(draw) == 1 and draw != (SHORTCUT,) for draw in report.control_tokens[0])


# ---------------------------------------------------------------------- the control
def test_control_draws_ordinary_words_only_and_depends_on_the_seed(tiny):
    allowed = evaluation.control_vocabulary(tiny)
    assert sorted(allowed.tolist()) == ids(*WORDS)  # no [PAD] [UNK] [CLS] [SEP] [MASK]
    base = trigger(["great", "bad"], [0, 0], [0.0, 1.0])
    draws = [evaluation.control_trigger(tiny, base, allowed, (0, 0, c)) for c in range(6)]
    for draw in draws:
        assert len(set(draw.token_ids)) == 2 and not set(draw.token_ids) & set(base.token_ids)
        assert draw.relative_positions == base.relative_positions and draw.segments == base.segments
        assert list(draw.tokens) == tiny.tokenizer.convert_ids_to_tokens(list(draw.token_ids))
    assert draws[0] == evaluation.control_trigger(tiny, base, allowed, (0, 0, 0))
    assert len({d.token_ids for d in draws}) > 1


# ---------------------------------------------------------------------- CLI
def test_cli_attack_writes_json_parquet_and_html(shortcut_model, tmp_path, monkeypatch, capsys):
    import attrflow.data
    from attrflow.cli import main

    directory = tmp_path / "model"
    shortcut_model.model.save_pretrained(directory)
    shortcut_model.tokenizer.save_pretrained(directory)
    splits = {"train": synthetic(16, seed=3), "test": synthetic(30, seed=4)}

    def fake_load_dataset(name, *, split=None, **kwargs):
        assert name == "synthetic"
        return splits[split]

    monkeypatch.setattr(attrflow.data, "load_dataset", fake_load_dataset, raising=False)
    out = tmp_path / "out"
    argv = ["attack", "--model", str(directory), "--data", "synthetic", "--out", str(out), "--top", "2"]
    argv += ["--mine-examples", "16", "--min-score", "0", "--steps", "2", "--control-seeds", "2", "--no-progress"]
    assert main(argv) == 0
    data = json.loads((out / "attack.json").read_text())
    assert set(data) == {"triggers", "results"} and 1 <= len(data["triggers"]) <= 2
    assert {r["label"] for r in data["results"]} == {"all", "negative", "positive"}
    assert data["triggers"][0]["tokens"] == [SHORTCUT]
    patterns = tr.TriggerPatterns.read_parquet(out / "patterns.parquet")
    assert len(patterns) == 16
    assert (out / "attack.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "mining" / "run.json").is_file()
    report = attrflow.load_result(out / "attack.safetensors")
    assert isinstance(report, tr.AttackReport) and report.to_dict() == data
    assert report.settings["selection"] == "random"
    assert "trigger #0" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp"))  # every file went through the atomic writer

    # the deprecated flags still work, with a warning, and choose what they chose
    old = tmp_path / "old"
    argv = ["attack", "--model", str(directory), "--data", "synthetic", "--out", str(old), "--top", "1"]
    argv += ["--mine-examples", "6", "--mine-sample", "first", "--eval-examples", "10", "--eval-sample", "first"]
    argv += ["--min-score", "0", "--steps", "2", "--no-control", "--no-progress"]
    with pytest.warns(DeprecationWarning, match="--eval-sample is deprecated"):
        assert main(argv) == 0
    old_report = attrflow.load_result(old / "attack.safetensors")
    assert old_report.settings["selection"] == "first" and old_report.settings["examples"] == 10
    mined = tr.TriggerPatterns.read_parquet(old / "patterns.parquet")
    assert sorted(p.example_id for p in mined.patterns) == list(range(6))
    assert mined.settings["selection"] == "first"


@pytest.mark.slow
def test_ray_mining_equals_local_mining(tiny, tmp_path):
    pytest.importorskip("ray", reason="the Ray engine needs the extra: pip install 'attrflow[ray]'")
    directory = tmp_path / "model"
    tiny.model.save_pretrained(directory)
    tiny.tokenizer.save_pretrained(directory)
    from_disk = attrflow.load_model(directory)
    local = tr.mine_patterns(from_disk, MINING_DATA, steps=2, run=QUIET)
    on_ray = tr.mine_patterns(
        directory,
        MINING_DATA,
        steps=2,
        run=RunOptions(engine="ray", num_workers=2, examples_per_batch=2, progress=False),
    )
    assert on_ray.to_table().equals(local.to_table())


def test_cli_attack_defaults_parse():
    from attrflow.cli import build_parser
    from attrflow.methods.attribution import DEFAULT_STEPS

    args = build_parser().parse_args(["attack", "--data", "d", "--out", "o"])
    expected = (DEFAULT_STEPS, 3, 500, "random", "random")
    assert (args.steps, args.top, args.mine_examples, args.mine_selection, args.eval_selection) == expected
    assert build_parser().parse_args(["attack", "--data", "d", "--out", "o", "--steps", "6"]).steps == 6


# ---------------------------------------------------------------------- results as files


def test_mined_patterns_and_attack_round_trip_through_load_result(shortcut_model, tmp_path):
    mined = tr.mine_patterns(shortcut_model, synthetic(6, seed=1), steps=2, run=QUIET)
    loaded = attrflow.load_result(mined.save(tmp_path / "patterns.safetensors"))
    assert isinstance(loaded, tr.TriggerPatterns) and loaded == mined
    assert loaded.to_table().equals(mined.to_table())
    report = tr.attack(shortcut_model, synthetic(12, seed=2), loaded, top=2, min_score=0.0, control_seeds=2)
    assert attrflow.load_result(report.save(tmp_path / "attack.safetensors")) == report
    empty = tr.TriggerPatterns((), (), {})
    assert attrflow.load_result(empty.save(tmp_path / "empty.safetensors")) == empty


# ---------------------------------------------------------------------- deprecated spellings
def test_deprecated_keywords_still_work_and_warn(tiny, shortcut_model, tmp_path):
    with pytest.warns(DeprecationWarning, match="selection="):
        first = tr.mine_patterns(tiny, MINING_DATA, examples=2, sample="first", steps=2, run=QUIET)
    assert sorted(p.example_id for p in first.patterns) == [0, 1] and first.settings["selection"] == "first"
    with pytest.warns(DeprecationWarning, match="run=attrflow.RunOptions"):
        old = tr.mine_patterns(tiny, MINING_DATA[:2], steps=2, progress=False, batch_size=1, out_dir=tmp_path / "run")
    assert (tmp_path / "run" / "run.json").is_file() and len(old) == 2
    with pytest.raises(InvalidInputError, match="not both"):
        tr.mine_patterns(tiny, MINING_DATA, run=QUIET, progress=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        tr.mine_patterns(tiny, MINING_DATA, run_option=QUIET)
    only_the_shortcut = [trigger([SHORTCUT], [0], [0.5])]
    with pytest.warns(DeprecationWarning, match="selection="):
        report = tr.attack(shortcut_model, synthetic(10, seed=3), only_the_shortcut, examples=4, sample="first")
    assert report.settings["selection"] == "first"
    with pytest.warns(DeprecationWarning, match="mine_selection= and eval_selection="):
        patterns, report = tr.trigger_attack(
            shortcut_model,
            synthetic(4, seed=1),
            synthetic(6, seed=2),
            mine_examples=2,
            eval_examples=3,
            sample="first",
            steps=2,
            top=1,
            min_score=-1.0,
            control_seeds=1,
        )
    assert patterns.settings["selection"] == report.settings["selection"] == "first"
    with pytest.warns(DeprecationWarning, match="Selection"):
        assert tr.Sample is Selection
