"""The embedded models: LoRA merge exactness, the layer cache used in training, the shipped checkpoints (offline,
fast to load, far above chance on held-out data), seeded training, and the ``attrflow zoo`` command."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification

import attrflow.data
from attrflow.cli import main
from attrflow.data import load_dataset
from attrflow.errors import InvalidInputError
from attrflow.zoo import BUILTIN_MODELS, load_builtin, weights_dir
from attrflow.zoo._lora import LoRALinear, add_lora, lora_factors, merge_lora

MB = 1024 * 1024


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models run faster on one thread, and far faster on a machine whose cores are oversubscribed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32, num_labels=2
    )
    return BertForSequenceClassification(config).eval()


def _inputs() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[2, 7, 9, 11, 3], [2, 5, 3, 0, 0], [2, 8, 8, 3, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def test_builtin_names():
    # every built-in name resolves to a model card whose dataset loads (the listing `attrflow zoo list` prints)
    from attrflow import load_dataset
    from attrflow.zoo import builtin_info

    for name in BUILTIN_MODELS:
        info = builtin_info(name)
        assert info.name == name and len(load_dataset(info.dataset, split="test")) > 0
    with pytest.raises(InvalidInputError, match="built-in models are sentiment, agreement"):
        load_builtin("gpt5")


# -------------------------------------------------------------------------------------------------- LoRA


def test_lora_starts_as_the_base_model():
    model = _tiny_bert()
    with torch.no_grad():
        before = model(**_inputs()).logits
    names = add_lora(model, ("query", "value", "intermediate.dense"), rank=4, alpha=8)
    assert len(names) == 9 and all(isinstance(model.get_submodule(n), LoRALinear) for n in names)
    with torch.no_grad():
        assert torch.equal(model(**_inputs()).logits, before)


def test_merged_lora_equals_the_adapted_model():
    base = _tiny_bert()
    adapted = copy.deepcopy(base)
    add_lora(adapted, ("query", "key", "value", "output.dense"), rank=3, alpha=6, dropout=0.5)
    torch.manual_seed(1)
    for module in adapted.modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_b, std=0.3)
    adapted.eval()  # LoRA dropout off, like the merged model
    with torch.no_grad():
        expected = adapted(**_inputs()).logits
        merge_lora(base, lora_factors(adapted), scaling=2.0)
        merged = base(**_inputs()).logits
    assert not torch.allclose(expected, _tiny_bert()(**_inputs()).logits, atol=1e-3)  # the update matters
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)


def test_frozen_bottom_cache_matches_the_model():
    from attrflow.zoo.sentiment import _FrozenBottom

    model = _tiny_bert()
    wrapper = _FrozenBottom(model, frozen_layers=2).eval()
    inputs = _inputs()
    with torch.no_grad():
        expected = model(**inputs).logits
        first = wrapper(inputs["input_ids"], inputs["attention_mask"]).logits
        # the same rows in another batch, with other padding: served from the cache
        again = wrapper(inputs["input_ids"][1:, :4], inputs["attention_mask"][1:, :4]).logits
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, expected[1:], atol=1e-5, rtol=1e-5)
    assert len(wrapper._cache) == 3
    wrapper.train()
    assert not model.bert.encoder.layer[1].training and model.bert.encoder.layer[2].training


def test_sentiment_delta_roundtrip(tmp_path):
    """What _save_delta writes, load_sentiment merges back into the same function (up to float16 storage)."""
    from attrflow.zoo import sentiment

    recipe = sentiment.SentimentRecipe(lora_rank=4, frozen_layers=3)
    model, tokenizer = sentiment._base_classifier()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(sentiment._trainable(name, recipe.frozen_layers))
    for layer in model.bert.encoder.layer[recipe.frozen_layers :]:
        add_lora(layer, sentiment._LORA_TARGETS, rank=recipe.lora_rank, alpha=recipe.lora_alpha)
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.02 * torch.randn_like(parameter))
    model.eval()
    inputs = tokenizer(["what a lovely morning", "worst service ever"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits
    sentiment._save_delta(model, recipe, tmp_path)
    loaded, _ = sentiment.load_sentiment(tmp_path)
    with torch.no_grad():
        got = loaded(**inputs).logits
    assert not any(isinstance(m, LoRALinear) for m in loaded.modules())
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=0)
    stored = load_file(tmp_path / "delta.safetensors")
    assert not any(".layer.0." in key or ".layer.1." in key for key in stored)  # frozen layers are not shipped


# ------------------------------------------------------------------------------------- the shipped models


def _balanced(dataset, per_class: int):
    """The first ``per_class`` examples of each label (the tweets file is sorted by label)."""
    picked = [[e for e in dataset if e.label == y][:per_class] for y in range(len(dataset.label_names))]
    return [e for group in picked for e in group]


def _predict(model, tokenizer, texts: list[str]) -> list[int]:
    with torch.no_grad():
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        return model(**inputs).logits.argmax(-1).tolist()


def test_sentiment_loads_offline_fast_and_classifies():
    assert (weights_dir("sentiment") / "delta.safetensors").stat().st_size <= 5 * MB
    start = time.perf_counter()
    model, tokenizer = load_builtin("sentiment")
    assert time.perf_counter() - start < 10
    assert not model.training
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.num_hidden_layers == 6 and model.config.num_attention_heads == 12
    examples = _balanced(load_dataset("tweets-sentiment", split="test"), 48)
    predictions = _predict(model, tokenizer, [e.text for e in examples])
    accuracy = sum(p == e.label for p, e in zip(predictions, examples, strict=True)) / len(examples)
    assert accuracy >= 0.8  # chance is 0.5 on this balanced slice
    assert set(predictions) == {0, 1}


def test_agreement_is_a_standard_checkpoint_and_classifies():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = weights_dir("agreement")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 5 * MB
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert type(model).__name__ == "RobertaPreLayerNormForSequenceClassification"
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size) == (6, 8, 128)
    assert config.id2label == {0: "singular", 1: "plural"}
    assert next(model.parameters()).dtype == torch.float32

    test = load_dataset("agreement", split="test")
    encoded = tokenizer(test[0].text)
    assert encoded["input_ids"][0] == tokenizer.cls_token_id and encoded["input_ids"][-1] == tokenizer.sep_token_id
    ids = tokenizer(test[:200].texts)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)

    model, tokenizer = load_builtin("agreement")
    assert not model.training
    for subset in (test[:200], test.filter(lambda e: e.meta["attractors"] > 0)[:200]):
        predictions = _predict(model, tokenizer, subset.texts)
        accuracy = sum(p == y for p, y in zip(predictions, subset.labels, strict=True)) / len(subset)
        assert accuracy >= 0.9


def test_shipped_reports_meet_the_targets():
    from attrflow.zoo import shipped_report

    sentiment, agreement = shipped_report("sentiment"), shipped_report("agreement")
    assert sentiment is not None and agreement is not None
    assert sentiment["test_accuracy"] >= 0.88
    assert agreement["test_accuracy"] >= 0.95 and agreement["test_examples"] >= 2000


# ------------------------------------------------------------------------------------------ training runs


@pytest.fixture
def tiny_agreement_data(monkeypatch):
    original = attrflow.data.load_dataset

    def small(name, *, split=None, **kwargs):
        data = original(name, split=split, **kwargs)
        return data[:48] if split == "train" else data[:16]

    monkeypatch.setattr(attrflow.data, "load_dataset", small)


def test_agreement_training_is_seeded(tmp_path, tiny_agreement_data):
    from attrflow.zoo.agreement import AgreementRecipe, train_agreement

    recipe = AgreementRecipe(epochs=1, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, batch_size=16)
    first = train_agreement(tmp_path / "a", recipe, progress=False)
    second = train_agreement(tmp_path / "b", recipe, progress=False)
    other = train_agreement(tmp_path / "c", replace(recipe, seed=1), progress=False)
    weights = [load_file(tmp_path / run / "model.safetensors") for run in "abc"]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert first["epoch_loss"] == second["epoch_loss"] != other["epoch_loss"]
    assert json.loads((tmp_path / "a" / "training.json").read_text())["test_accuracy"] == first["test_accuracy"]
    model, _ = load_builtin("agreement", weights=tmp_path / "a")
    assert model.config.num_hidden_layers == 2


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_list(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "sentiment" in out and "agreement" in out and "test accuracy" in out


def test_cli_evaluate_agreement(capsys):
    assert main(["zoo", "evaluate", "agreement", "--limit", "64", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["examples"] == 64 and figures["accuracy"] >= 0.9
    assert 0 < figures["attractor_examples"] < 64


def test_cli_rejects_unknown_model(capsys):
    assert main(["zoo", "train", "gpt5", "--out", "unused"]) == 1
    assert "no built-in model 'gpt5'" in capsys.readouterr().err
