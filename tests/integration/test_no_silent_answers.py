"""No answer that looks fine and is wrong: non-finite outputs, content-free or unknown text, inputs longer than the
model's positions, base models without a head, models run on data they were not trained for, damaged checkpoints.

Each test states the class of inputs it stands for and runs more than one member of it.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

import attrflow
from attrflow.data import Dataset, Example
from attrflow.errors import InvalidInputError, NonFiniteError, UnsupportedModelError
from attrflow.methods.registry import list_methods
from attrflow.testing import build, word_tokenizer

TEXT = "the movie was not good"


@pytest.fixture
def bert() -> attrflow.Model:
    model = build("bert", init_scale=0.2)
    model.config.id2label = {0: "bad", 1: "neutral", 2: "good"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    return attrflow.load_model(model, tokenizer=word_tokenizer())


def _poison(model: attrflow.Model, word: str, value: float = float("nan")) -> int:
    """Set the input-embedding row of ``word`` to ``value`` (a NaN row is how a damaged checkpoint looks)."""
    token_id = int(model.tokenizer.convert_tokens_to_ids(word))
    with torch.no_grad():
        model.input_embedding_module().weight[token_id] = value
    return token_id


# ---------------------------------------------------------------------------------------------- non-finite outputs
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_embedding_row_is_named_not_explained(bert, value) -> None:
    token_id = _poison(bert, "good", value)
    with pytest.raises(NonFiniteError, match=rf"'good' \(id {token_id}\)"):
        attrflow.attribute(bert, TEXT, steps=2)
    with pytest.raises(NonFiniteError, match="not finite"):
        attrflow.explain(bert, TEXT)
    with pytest.raises(NonFiniteError, match=r"item 1 of 2.*'good'"):
        bert.predict_batch(["the movie was bad", TEXT])
    # a text without the poisoned token is still answered
    assert torch.isfinite(attrflow.attribute(bert, "the movie was bad", steps=2).attributions).all()


def test_every_registered_method_refuses_a_non_finite_output(bert) -> None:
    _poison(bert, "good")
    for info in list_methods():  # every method reads the model through the one checked seam
        with pytest.raises(NonFiniteError):
            attrflow.token_scores(bert, TEXT, info.name)


def test_non_finite_weights_are_named(bert) -> None:
    with torch.no_grad():
        bert.model.classifier.weight[0, 0] = float("inf")
        bert.model.classifier.weight[0, 1] = float("-inf")
    with pytest.raises(NonFiniteError, match="classifier.weight"):
        bert.predict_proba(TEXT)


def test_non_finite_gradients_are_refused_although_the_output_is_finite(bert, monkeypatch) -> None:
    from attrflow.methods import attribution

    original = attribution._IntegrationState.gradient

    def nan_gradient(self, layer, alpha):
        return original(self, layer, alpha) * (float("nan") if layer == 1 else 1.0)

    monkeypatch.setattr(attribution._IntegrationState, "gradient", nan_gradient)
    with pytest.raises(NonFiniteError, match="attribution of layer 1 is not finite"):
        attrflow.attribute(bert, TEXT, steps=2)


def test_a_model_whose_own_output_is_nan_is_refused_with_the_real_reason() -> None:
    model = build("bert")
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[5:11] = float("nan")  # the probe's plain input: ids 5..10
    with pytest.raises(NonFiniteError, match="own output is not finite on a plain") as caught:
        attrflow.load_model(model, tokenizer=word_tokenizer())
    assert "does not reproduce" not in str(caught.value)


# ---------------------------------------------------------------------------------------------- text
@pytest.mark.parametrize(
    "text",
    ["", "   ", "\u200b", "\u200b\u200c\u200d\ufeff", "\x00\x01\x7f", " \u2028\u2029\t\n", "\u200e\u200f\u2060"],
)
def test_content_free_text_is_the_empty_text_error(bert, text: str) -> None:
    for call in (lambda: bert.encode(text), lambda: attrflow.explain(bert, text), lambda: bert.tokenize(text)):
        with pytest.raises(InvalidInputError, match="empty"):
            call()
    with pytest.raises(InvalidInputError, match="text_pair is empty"):
        bert.encode("the movie", text)


def test_text_the_tokenizer_turns_into_special_tokens_only_is_refused() -> None:
    tokenizer = word_tokenizer()
    model = attrflow.load_model(build("bert"), tokenizer=tokenizer)
    original = tokenizer.__class__.__call__

    def dropping(self, text, *args, **kwargs):  # a tokenizer that keeps nothing of this text
        return original(self, "" if text == "~~~" else text, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tokenizer.__class__, "__call__", dropping)
        with pytest.raises(InvalidInputError, match="special tokens only"):
            model.encode("~~~")


def test_mostly_unknown_words_warn_with_the_share_and_the_words(bert) -> None:
    with pytest.warns(UserWarning, match=r"5 of 6 tokens .* unknown .*'quick', 'brown', 'fox', 'jumps', 'over'"):
        bert.encode("the quick brown fox jumps over")
    with pytest.warns(UserWarning, match="2 of 2 tokens"):
        bert.encode("zebra", "quantum")  # the pair counts too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bert.encode("the movie was not good")  # known words: no warning
        bert.encode("the zebra movie was not good")  # one unknown word in six: below the share


def test_agreement_model_warns_on_words_outside_its_grammar() -> None:
    model = attrflow.load_model("agreement")
    with pytest.warns(UserWarning, match="unknown to the model's tokenizer"):
        model.encode("the quick brown fox jumps over the lazy dog")


# ---------------------------------------------------------------------------------------------- tensors
def test_inputs_longer_than_the_models_positions_are_refused_up_front(bert) -> None:
    limit = bert.max_length()
    assert limit is not None
    too_long = {"input_ids": torch.full((1, limit + 1), 5), "attention_mask": torch.ones(1, limit + 1)}
    for call in (
        lambda: attrflow.attribute(bert, too_long, steps=2),
        lambda: attrflow.token_scores(bert, too_long, "rollout"),
        lambda: bert.predict_batch([{"input_ids": [5] * (limit + 1)}]),
    ):
        with pytest.raises(InvalidInputError, match=f"at most {limit}"):
            call()
    with pytest.raises(InvalidInputError, match="must agree"):
        bert.prepare({"input_ids": torch.full((1, 4), 5), "attention_mask": torch.ones(1, 3)})
    with pytest.raises(InvalidInputError, match="integer token ids"):
        bert.prepare({"input_ids": torch.full((1, 4), 5.0)})
    assert bert.prepare({"input_ids": torch.full((1, limit), 5)}).length == limit  # the limit itself is fine


@pytest.mark.parametrize(
    ("base", "task"),
    [
        (
            lambda: BertModel(
                BertConfig(
                    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=99
                )
            ),
            "sequence-classification",
        ),
        (lambda: GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99)), "causal-lm"),
    ],
)
def test_a_base_model_without_a_head_is_refused_when_loaded(base, task) -> None:
    with pytest.raises(UnsupportedModelError, match=f"has no {task} head"):
        attrflow.load_model(base(), task=task)
    with pytest.raises(UnsupportedModelError, match="no head"):
        attrflow.load_model(base())


def test_explain_takes_a_raw_transformers_model_like_attribute() -> None:
    raw = build("bert", init_scale=0.2)
    inputs = {"input_ids": torch.tensor([[2, 5, 9, 3]])}
    explanation = attrflow.explain(raw, inputs, methods=["attattr", "rollout"])
    direct = attrflow.attribute(raw, inputs)
    assert torch.equal(explanation.result.attributions, direct.attributions)


# ---------------------------------------------------------------------------------------------- devices, files
@pytest.mark.parametrize("device", ["nonsense", "cuda:99", "mps:7"])
def test_a_device_that_does_not_exist_here_is_one_clear_error(device) -> None:
    if device == "mps:7" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(InvalidInputError, match="device|torch device"):
        attrflow.load_model(build("bert"), device=device)


@pytest.mark.parametrize("damage", ["truncated config", "no weights", "garbage weights", "wrong shapes"])
def test_a_damaged_checkpoint_directory_is_named(tmp_path, damage: str) -> None:
    model = build("bert")
    model.save_pretrained(tmp_path)
    word_tokenizer().save_pretrained(tmp_path)
    config = tmp_path / "config.json"
    weights = tmp_path / "model.safetensors"
    if damage == "truncated config":
        config.write_text(config.read_text()[:40])
    elif damage == "no weights":
        weights.unlink()
    elif damage == "garbage weights":
        weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json" + b"\0" * 100)
    else:
        data = json.loads(config.read_text())
        data["hidden_size"], data["intermediate_size"] = 64, 128
        config.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match=str(tmp_path)):
        attrflow.load_model(str(tmp_path))


# ---------------------------------------------------------------------------------------------- models and data
def _dataset(names: tuple[str, ...], name: str = "my-data") -> Dataset:
    examples = [Example(text=t, label=i % len(names)) for i, t in enumerate(["the movie was good", "a bad film"] * 3)]
    return Dataset(examples, label_names=names, name=name, split="test")


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (("negative", "positive"), "another number of classes"),
        (("x", "y", "z"), "other classes"),
        (("good", "neutral", "bad"), "in another order"),
        (("0", "1", "2", "3"), "another number of classes"),
    ],
)
def test_a_model_is_refused_on_data_labelled_otherwise(bert, names, problem) -> None:
    with pytest.raises(InvalidInputError, match=rf"predicts 3 classes .*bad, neutral, good.*{problem}"):
        bert.check_dataset(_dataset(names))


def test_matching_data_passes(bert) -> None:
    bert.check_dataset(_dataset(("bad", "neutral", "good")))
    bert.check_dataset(_dataset(("BAD", "Neutral", "good")))  # names compare without case
    bert.check_dataset(_dataset(("0", "1")))  # class indices from a file need not cover every class
    bert.check_dataset(["the movie", "a film"])  # no label names: nothing to compare


def test_every_dataset_analysis_refuses_mismatched_data_before_any_work(bert, tmp_path) -> None:
    other = _dataset(("negative", "positive"))
    calls = {
        "faithfulness": lambda: attrflow.faithfulness(bert, other, methods=["attention"], examples=2),
        "head_importance": lambda: attrflow.head_importance(bert, other, examples=2),
        "prune_curve": lambda: attrflow.prune_curve(bert, other, attrflow.head_importance(bert, [], method="random")),
        "analyze_heads": lambda: attrflow.analyze_heads(bert, other, examples=2),
        "mine_patterns": lambda: attrflow.mine_patterns(bert, other, examples=2),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidInputError, match="predicts 3 classes"):
            call()
        assert not list(tmp_path.iterdir()), name


def test_a_builtin_dataset_names_its_builtin_model() -> None:
    sentiment = attrflow.load_model("sentiment")
    agreement = attrflow.load_dataset("agreement", split="test")
    with pytest.raises(InvalidInputError, match=r"singular, plural.*model='agreement'"):
        sentiment.check_dataset(agreement)
    attrflow.load_model("agreement").check_dataset(agreement)
