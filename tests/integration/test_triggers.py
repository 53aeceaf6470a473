"""Adversarial triggers (Hao et al. 2021, §5): insertion, mining against a direct computation, a model with a known
shortcut token, the random control, and the result and CLI contracts."""

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
from attrflow.errors import InvalidInputError
from attrflow.testing import SPECIALS, VOCAB, WORDS, build, word_tokenizer

SHORTCUT = "fun"


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
def test_plan_positions_hand_computed():
    assert tr._plan_positions([0.0], 4) == [0]
    assert tr._plan_positions([1.0], 4) == [4]
    assert tr._plan_positions([0.5], 4) == [2]
    assert tr._plan_positions([0.5, 0.5], 3) == [2, 3]  # a collision moves the later token right
    assert tr._plan_positions([1.0, 1.0], 2) == [2, 3]  # ... and the end pulls both back in
    assert tr._plan_positions([0.0, 1.0], 0) == [0, 1]  # an empty segment
    for relative in ([0.1, 0.1, 0.1], [0.0, 0.2, 0.9, 1.0], [1.0, 1.0, 1.0]):
        for length in range(0, 6):
            plan = tr._plan_positions(relative, length)
            assert plan == sorted(set(plan)) and plan[0] >= 0 and plan[-1] < length + len(relative)


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


def test_trigger_validates_its_fields():
    with pytest.raises(InvalidInputError):
        tr.Trigger((5,), ("x",), (2,), (0.0,))
    with pytest.raises(InvalidInputError):
        tr.Trigger((5,), ("x",), (0,), (1.5,))


# ---------------------------------------------------------------------- patterns -> triggers
def _pattern(scores: tuple[float, float], interactions=((0, 2), (5, 1))) -> tr.Pattern:
    tokens = ("[CLS]", "a", "b", "[SEP]", "c", "d", "[SEP]")
    return tr.Pattern(
        example_id=7,
        tokens=tokens,
        input_ids=(2, 10, 11, 3, 12, 13, 3),
        segments=(-1, 0, 0, -1, 1, 1, -1),
        layer=1,
        head=0,
        interactions=interactions,
        scores=scores,
        predicted=1,
        label=0,
        probability=0.9,
    )


def test_second_pair_joins_only_above_the_ratio_and_specials_are_dropped():
    both = _pattern((0.1, 0.03)).trigger()
    assert both.tokens == ("a", "b", "d") and both.segments == (0, 0, 1)
    assert both.relative_positions == (0.0, 1.0, 1.0)
    assert both.token_ids == (10, 11, 13) and both.source_indices == (1, 2, 5)
    assert both.score == pytest.approx(0.13) and both.label == 1 and both.source == 7
    first_only = _pattern((0.1, 0.019)).trigger()
    assert first_only.tokens == ("b",) and first_only.relative_positions == (1.0,)
    assert _pattern((0.1, 0.019)).trigger(ratio=0.1).tokens == ("a", "b", "d")


def test_pattern_set_skips_empty_weak_and_repeated_triggers():
    only_special = _pattern((0.5, 0.4), interactions=((0, 3), (6, 0)))
    strong = _pattern((0.3, 0.01))
    repeat = _pattern((0.2, 0.01))
    weak = _pattern((0.01, 0.001), interactions=((1, 4), (1, 1)))
    patterns = tr.TriggerPatterns((only_special, strong, repeat, weak), ("neg", "pos"), {"min_score": 0.02})
    chosen = patterns.triggers()
    assert [t.tokens for t in chosen] == [("b",)]
    assert [t.tokens for t in patterns.triggers(min_score=0.0)] == [("b",), ("a", "c")]
    assert len(patterns.triggers(1, min_score=0.0)) == 1


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
    mined = tr.mine_patterns(tiny, MINING_DATA, steps=2, progress=False, out_dir=tmp_path / "run")
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
    first = tr.mine_patterns(tiny, data, steps=2, batch_size=1, progress=False, out_dir=tmp_path / "a")
    second = tr.mine_patterns(tiny, data, steps=2, batch_size=2, progress=False, out_dir=tmp_path / "b")
    assert first.to_table().equals(second.to_table())
    resumed = tr.mine_patterns(tiny, data, steps=2, batch_size=3, progress=False, out_dir=tmp_path / "a")
    assert resumed.to_table().equals(first.to_table())


def test_examples_and_min_tokens_select_the_mined_examples(tiny):
    mined = tr.mine_patterns(tiny, MINING_DATA, examples=4, min_tokens=9, steps=2, progress=False)
    # [CLS] + words (+ [SEP] + words) + [SEP] >= 9 tokens, among the first four
    assert sorted(p.example_id for p in mined.patterns) == [2, 3]
    assert mined.settings["examples"] == 4 and mined.settings["mined"] == 2


def test_random_sample_is_seeded_and_keeps_dataset_positions(tiny):
    mined = tr.mine_patterns(tiny, MINING_DATA, examples=3, sample="random", seed=3, steps=2, progress=False)
    expected = sorted(np.random.default_rng(3).choice(len(MINING_DATA), size=3, replace=False).tolist())
    assert sorted(p.example_id for p in mined.patterns) == expected
    assert mined.settings["sample"] == "random" and mined.settings["seed"] == 3
    with pytest.raises(InvalidInputError, match="sample"):
        tr.mine_patterns(tiny, MINING_DATA, sample="shuffled", progress=False)


def test_attack_evaluates_a_seeded_random_sample_of_a_sorted_dataset(shortcut_model):
    data = synthetic(60, seed=5)
    ordered = Named(sorted(data, key=lambda ex: ex.label))  # all negatives first, like the built-in tweets
    only_the_shortcut = [trigger([SHORTCUT], [0], [0.5])]
    first = tr.attack(shortcut_model, ordered, only_the_shortcut, examples=20, control=False)
    assert [o.label for o in first.outcomes] == ["all", "negative"]  # the first 20 are all negative
    drawn = tr.attack(shortcut_model, ordered, only_the_shortcut, examples=20, sample="random", seed=1, control=False)
    counts = {o.label: o.count for o in drawn.outcomes}
    expected = sorted(np.random.default_rng(1).choice(60, size=20, replace=False).tolist())
    assert counts["all"] == 20 and counts["positive"] == sum(ordered[p].label for p in expected)
    assert drawn.settings["sample"] == "random"


def test_ray_needs_a_model_it_can_load_by_name(tiny):
    with pytest.raises(InvalidInputError, match="name or a checkpoint directory"):
        tr.mine_patterns(tiny, MINING_DATA, engine="ray", progress=False)
    with pytest.raises(InvalidInputError, match="Ray"):
        pickle.dumps(tr.PatternMiningTask(tiny))
    by_name = pickle.loads(pickle.dumps(tr.PatternMiningTask("some/checkpoint", steps=3)))
    assert by_name.settings()["model"] == "some/checkpoint" and by_name.settings()["steps"] == 3


def test_patterns_round_trip_through_parquet(tiny, tmp_path):
    mined = tr.mine_patterns(tiny, MINING_DATA[:3], steps=2, progress=False)
    path = mined.to_parquet(tmp_path / "patterns.parquet")
    loaded = tr.TriggerPatterns.read_parquet(path)
    assert loaded.patterns == mined.patterns
    assert loaded.settings == mined.settings and loaded.label_names == mined.label_names
    frame = mined.to_frame()
    assert list(frame["rank"]) == [0, 1, 2] and "trigger_tokens" in frame


# ---------------------------------------------------------------------- the shortcut model
def test_shortcut_token_is_mined_as_the_top_trigger_and_breaks_the_other_class(shortcut_model):
    mined = tr.mine_patterns(shortcut_model, synthetic(24, seed=1), steps=4, progress=False)
    top = mined.triggers(1, min_score=0.0)[0]
    assert top.tokens == (SHORTCUT,)
    assert top.label == 1
    report = tr.attack(shortcut_model, synthetic(80, seed=2), mined, top=1, min_score=0.0, control_seeds=3, seed=0)
    rows = {o.label: o for o in report.outcomes}
    assert set(rows) == {"all", "negative", "positive"}
    assert report.settings["sample"] == "first" and report.settings["examples"] == 80
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
    allowed = tr._control_vocabulary(tiny)
    assert sorted(allowed.tolist()) == ids(*WORDS)  # no [PAD] [UNK] [CLS] [SEP] [MASK]
    base = trigger(["great", "bad"], [0, 0], [0.0, 1.0])
    draws = [tr._control_trigger(tiny, base, allowed, (0, 0, c)) for c in range(6)]
    for draw in draws:
        assert len(set(draw.token_ids)) == 2 and not set(draw.token_ids) & set(base.token_ids)
        assert draw.relative_positions == base.relative_positions and draw.segments == base.segments
        assert list(draw.tokens) == tiny.tokenizer.convert_ids_to_tokens(list(draw.token_ids))
    assert draws[0] == tr._control_trigger(tiny, base, allowed, (0, 0, 0))
    assert len({d.token_ids for d in draws}) > 1


# ---------------------------------------------------------------------- report contracts
def _report() -> tr.AttackReport:
    evil = tr.Trigger((5,), ("<script>alert(1)</script>",), (0,), (0.5,), score=0.3, label=1)
    outcomes = (
        tr.AttackOutcome(0, "all", -1, 4, 0.75, 0.5, (0.75, 0.5)),
        tr.AttackOutcome(0, "neg<1>", 0, 2, 1.0, 0.0, (1.0, 0.5)),
        tr.AttackOutcome(0, "pos", 1, 2, 0.5, 1.0, ()),
    )
    return tr.AttackReport(
        (evil,), outcomes, ("neg<1>", "pos"), {"model": "m", "control_seeds": 2}, ((("<i>",), ("x",)),)
    )


def test_report_json_has_exactly_the_cli_schema(tmp_path):
    report = _report()
    data = json.loads(report.save(tmp_path / "attack.json").read_text())
    assert set(data) == {"triggers", "results"}
    assert data["triggers"] == [{"tokens": ["<script>alert(1)</script>"], "score": 0.3, "label": "pos"}]
    keys = {"trigger", "label", "accuracy_before", "accuracy_after", "control_accuracy_after", "control_std"}
    assert all(set(row) == keys for row in data["results"])
    assert data["results"][0]["control_accuracy_after"] == pytest.approx(0.625)
    assert data["results"][0]["control_std"] == pytest.approx(np.std([0.75, 0.5], ddof=1))
    assert data["results"][2]["control_accuracy_after"] is None and data["results"][2]["control_std"] is None


def test_report_html_is_escaped_and_frame_and_plot_work():
    report = _report()
    page = report.to_html()
    assert "<script>" not in page and "&lt;script&gt;" in page and "neg&lt;1&gt;" in page
    assert "<i>" not in page and "&lt;i&gt; | x" in page  # the control's random draws, escaped
    assert page.startswith("<!DOCTYPE html>") and "default-src 'none'" in page
    assert not any(outside in page for outside in ("://", "src=", "href=", "<script", "<img"))  # self-contained
    frame = report.to_frame()
    assert list(frame["drop"]) == pytest.approx([0.25, 1.0, -0.5])
    assert list(frame["control_accuracies"][0]) == [0.75, 0.5]
    figure = report.plot()
    assert len(figure.axes) == 1 and len(figure.axes[0].patches) == 9  # clean, trigger, control x 3
    patterns = tr.TriggerPatterns((_pattern((0.1, 0.03)),), ("neg", "<b>pos</b>"), {"min_score": 0.02})
    assert "&lt;b&gt;pos&lt;/b&gt;" in patterns.to_html() and "<b>pos" not in patterns.to_html()
    assert len(patterns.plot().axes) == 1


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
    assert "trigger #0" in capsys.readouterr().out


@pytest.mark.slow
def test_ray_mining_equals_local_mining(tiny, tmp_path):
    pytest.importorskip("ray", reason="the Ray engine needs the extra: pip install 'attrflow[ray]'")
    directory = tmp_path / "model"
    tiny.model.save_pretrained(directory)
    tiny.tokenizer.save_pretrained(directory)
    from_disk = attrflow.load_model(directory)
    local = tr.mine_patterns(from_disk, MINING_DATA, steps=2, progress=False)
    on_ray = tr.mine_patterns(
        directory, MINING_DATA, steps=2, engine="ray", num_workers=2, batch_size=2, progress=False
    )
    assert on_ray.to_table().equals(local.to_table())


def test_cli_attack_defaults_parse():
    from attrflow.cli import build_parser
    from attrflow.methods.attribution import DEFAULT_STEPS

    args = build_parser().parse_args(["attack", "--data", "d", "--out", "o"])
    assert (args.steps, args.top, args.mine_examples, args.mine_sample) == (DEFAULT_STEPS, 3, 500, "first")
    assert build_parser().parse_args(["attack", "--data", "d", "--out", "o", "--steps", "6"]).steps == 6
