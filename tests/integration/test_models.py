"""The attention engine: models come back unchanged, gating, unsupported architectures, inputs, loading."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import transformers as T

import attrflow
from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.methods.gradients import embedding_gradients
from attrflow.testing import ARCHITECTURES, ENCODER_DECODERS, VOCAB, build, example_inputs, word_tokenizer


def _snapshot(model):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    flags = tuple(m.training for m in model.modules())  # every module's own flag, not just the top one
    return model.config._attn_implementation, flags, hooks


def _outputs(model, inputs):
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        out = model(**inputs).logits.clone()
    for module, training in flags:
        module.training = training
    return out


def _train_with_one_frozen_part(model):
    """Training mode with one submodule (half-way down the module tree) in eval mode, as when part is frozen."""
    model.train()
    modules = list(model.modules())
    frozen = modules[len(modules) // 2]
    frozen.eval()
    assert model.training and not frozen.training
    return model


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_model_is_returned_exactly_as_it_came(arch):
    # a model handed over in training mode, with one part in eval mode, must come back with every flag as it was
    model = _train_with_one_frozen_part(build(arch))
    inputs = example_inputs(arch)
    before, outputs = _snapshot(model), _outputs(model, inputs)
    wrapped = attrflow.load_model(model)
    assert _snapshot(model) == before

    attrflow.attribute(wrapped, inputs, steps=2)
    attrflow.record_attention(wrapped, inputs)
    with wrapped.gate_heads(torch.ones(wrapped.num_layers, wrapped.num_heads)):
        wrapped.predict_proba(inputs)
    if arch != "vit":  # the embedding path (inputs_embeds, or an encoder hook for encoder-decoders)
        embedding_gradients(wrapped, inputs, steps=2)
    assert _snapshot(model) == before
    torch.testing.assert_close(_outputs(model, inputs), outputs)

    with pytest.raises(InvalidInputError):
        attrflow.attribute(wrapped, inputs, target=10**6)
    assert _snapshot(model) == before


def test_model_restored_after_exception_mid_forward():
    model = _train_with_one_frozen_part(build("bert"))
    inputs = example_inputs("bert")
    before, outputs = _snapshot(model), _outputs(model, inputs)
    wrapped = attrflow.load_model(model)
    calls = {"n": 0}

    def explode(_module, _args, _output):
        calls["n"] += 1
        if calls["n"] == 1:  # inside attrflow's branching pass, with its block hooks installed
            raise RuntimeError("boom")

    handle = model.bert.encoder.layer[2].register_forward_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        attrflow.attribute(wrapped, inputs, steps=3)
    handle.remove()
    assert _snapshot(model) == before
    torch.testing.assert_close(_outputs(model, inputs), outputs)
    # and it still works afterwards, handing the model back as it came
    attrflow.attribute(wrapped, inputs, steps=2)
    assert _snapshot(model) == before


def test_gating_a_head_equals_removing_its_values():
    model = build("bert", init_scale=0.2).eval()
    wrapped = attrflow.load_model(model)
    inputs = example_inputs("bert")
    layer, head, d = 1, 2, 32 // 4
    gate = torch.ones(wrapped.num_layers, wrapped.num_heads)
    gate[layer, head] = 0
    with wrapped.gate_heads(gate):
        gated = wrapped.predict_proba(inputs)
        recorded = attrflow.record_attention(wrapped, inputs).attentions
    clean = attrflow.record_attention(wrapped, inputs).attentions
    assert torch.all(recorded[layer, head] == 0)
    # heads other than the gated one, in that layer and below, are untouched
    keep = [h for h in range(4) if h != head]
    torch.testing.assert_close(recorded[layer, keep], clean[layer, keep])
    torch.testing.assert_close(recorded[:layer], clean[:layer])
    # independent check: a head whose value vectors are zero contributes nothing, exactly like a gated head
    value = model.bert.encoder.layer[layer].attention.self.value
    with torch.no_grad():
        value.weight[head * d : (head + 1) * d] = 0
        value.bias[head * d : (head + 1) * d] = 0
        expected = torch.softmax(model(**inputs).logits, -1)[0]
    torch.testing.assert_close(gated, expected, rtol=1e-5, atol=1e-6)
    value.weight.data.copy_(build("bert", init_scale=0.2).bert.encoder.layer[layer].attention.self.value.weight)
    assert not torch.allclose(gated, wrapped.predict_proba(inputs), atol=1e-4)  # the head mattered


def test_gate_shape_is_checked():
    wrapped = attrflow.load_model(build("bert"))
    with pytest.raises(InvalidInputError, match="head mask"), wrapped.gate_heads(torch.ones(2, 2)):
        pass
    with pytest.raises(InvalidInputError, match="gate must be"):
        wrapped.forward_pass(wrapped.prepare(example_inputs("bert")), gate=torch.ones(2, 2))


def test_forward_pass_gate_composes_with_gate_heads_and_differentiates():
    wrapped = attrflow.load_model(build("bert", init_scale=0.2))
    encoding = wrapped.prepare(example_inputs("bert"))
    outer, inner = torch.ones(wrapped.num_layers, wrapped.num_heads), torch.ones(wrapped.num_layers, wrapped.num_heads)
    outer[1, 2] = 0
    inner[0, 1] = 0.5
    with torch.no_grad():
        with wrapped.gate_heads(outer):
            nested = wrapped.forward_pass(encoding, gate=inner)
        both = wrapped.forward_pass(encoding, gate=outer * inner)
        clean = wrapped.forward_pass(encoding)
    torch.testing.assert_close(nested.logits, both.logits, rtol=0, atol=0)
    torch.testing.assert_close(nested.attentions, both.attentions, rtol=0, atol=0)
    assert torch.all(nested.attentions[1, 2] == 0)
    torch.testing.assert_close(nested.attentions[0, 1], 0.5 * clean.attentions[0, 1])
    # the clean pass is what record() stores; a gate of ones that requires grad leaves it unchanged and is in the graph
    recording = wrapped.record(encoding)
    torch.testing.assert_close(recording.logits, clean.logits, rtol=0, atol=0)
    torch.testing.assert_close(recording.attentions, clean.attentions.float(), rtol=0, atol=0)
    gate = torch.ones(wrapped.num_layers, wrapped.num_heads, requires_grad=True)
    with torch.enable_grad():
        live = wrapped.forward_pass(encoding, gate=gate)
        (grad,) = torch.autograd.grad(live.logits[1], gate)
    torch.testing.assert_close(live.logits.detach(), clean.logits)
    # finite difference of one head's gate: the gradient is the model's, not an artefact of the recording
    step = 1e-3
    for layer, head in [(0, 0), (2, 3)]:
        shifted = torch.ones(wrapped.num_layers, wrapped.num_heads)
        shifted[layer, head] += step
        with torch.no_grad():
            up = wrapped.forward_pass(encoding, gate=shifted).logits[1]
            shifted[layer, head] -= 2 * step
            down = wrapped.forward_pass(encoding, gate=shifted).logits[1]
        assert float(grad[layer, head]) == pytest.approx(float(up - down) / (2 * step), rel=2e-2, abs=1e-5)


def test_branch_pass_is_a_frozen_result_in_padded_coordinates():
    wrapped = attrflow.load_model(build("bert", init_scale=0.2))
    ids = example_inputs("bert")["input_ids"]
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # two padding positions at the end
    encoding = wrapped.prepare({"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        clean = wrapped.forward_pass(encoding)
        branched = wrapped.run_branches(encoding, {1: torch.tensor([1.0, 0.5]), 2: torch.ones(1)}, record=True)
    assert dict(branched.row_starts) == {1: 1, 2: 3} and branched.logits.shape[0] == 4
    assert not branched.leaves and not branched.clean_row_leaves  # no require_grad
    # alpha = 1 rows give the clean output; alpha = 0.5 does not
    torch.testing.assert_close(branched.logits[[0, 1, 3]], clean.logits.expand(3, -1), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(branched.logits[2], clean.logits, atol=1e-4)
    assert branched.attentions is not None and branched.attentions.shape[-1] == ids.shape[1]
    real = encoding.positions
    torch.testing.assert_close(branched.attentions[..., real, :][..., real], clean.attentions, rtol=0, atol=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        branched.logits = clean.logits


def test_session_is_private_and_its_old_uses_warn():
    assert "Session" not in attrflow.models.__all__
    with pytest.warns(DeprecationWarning, match="private"):
        session_type = attrflow.models.Session
    wrapped = attrflow.load_model(build("bert"))
    encoding = wrapped.prepare(example_inputs("bert"))
    with pytest.warns(DeprecationWarning, match="forward_pass"), torch.no_grad():
        logits = wrapped.run(encoding, session_type(record=True))
    with torch.no_grad():
        torch.testing.assert_close(logits[0], wrapped.forward_pass(encoding).logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    "model",
    [
        lambda: T.DebertaV2ForSequenceClassification(
            T.DebertaV2Config(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=50
            )
        ),
        lambda: T.MPNetForSequenceClassification(
            T.MPNetConfig(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=50
            )
        ),
    ],
    ids=["deberta-v2", "mpnet"],
)
def test_architectures_that_bypass_the_interface_raise(model):
    m = model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UnsupportedModelError, match="bypasses"):
            attrflow.load_model(m)
    assert m.config._attn_implementation == "eager"


def test_model_without_head_raises():
    with pytest.raises(UnsupportedModelError, match="head"):
        attrflow.load_model(
            T.BertModel(T.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64))
        )


@pytest.mark.parametrize("arch", ENCODER_DECODERS)
def test_encoder_decoder_layers_are_the_named_encoder_self_attention_sites(arch):
    model = build(arch, init_scale=0.2)
    wrapped = attrflow.load_model(model)
    assert wrapped.is_encoder_decoder and wrapped.num_layers == 3 and wrapped.num_heads == 4
    assert not wrapped.causal
    paths = {name for name, _ in model.named_modules()}
    assert all(name in paths for name in wrapped.site_names + wrapped.other_sites)
    assert all(".encoder." in name for name in wrapped.site_names)
    assert len(wrapped.other_sites) == 4 and all(".decoder." in name for name in wrapped.other_sites)
    # the recorded maps are the encoder's own, the ones the model returns as encoder_attentions
    inputs = example_inputs(arch)
    recorded = attrflow.record_attention(wrapped, inputs).attentions
    model.set_attn_implementation("eager")
    with torch.no_grad():
        expected = torch.stack(model.eval()(**inputs, output_attentions=True).encoder_attentions)[:, 0]
    model.set_attn_implementation("sdpa")
    torch.testing.assert_close(recorded, expected, rtol=1e-5, atol=1e-6)
    result = attrflow.attribute(wrapped, inputs, steps=2, layers=[-1])
    assert result.settings["sites"] == [wrapped.site_names[-1]]
    # the explained position is the end-of-sequence token the classification head reads
    assert wrapped.prepare(inputs).output_position == inputs["input_ids"].shape[1] - 1
    # gating an encoder head is seen by the classifier; decoder heads are never gated
    gate = torch.ones(3, 4)
    gate[1] = 0
    with wrapped.gate_heads(gate):
        gated = wrapped.predict_proba(inputs)
    assert not torch.allclose(gated, wrapped.predict_proba(inputs), atol=1e-4)


def test_encoder_decoder_without_a_classification_head_is_refused():
    model = T.BartForConditionalGeneration(
        T.BartConfig(
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            vocab_size=VOCAB,
        )
    )
    with pytest.raises(UnsupportedModelError, match="head"):
        attrflow.load_model(model)
    with pytest.raises(UnsupportedModelError, match="sequence-classification"):
        attrflow.load_model(model, task="causal-lm")


def test_a_model_that_fails_on_its_own_names_the_cause():
    cfg = T.T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=4, d_kv=8, vocab_size=50)
    assert not hasattr(cfg, "decoder_start_token_id")  # a hand-built config lacks what T5's classifier reads
    with pytest.raises(UnsupportedModelError, match="decoder_start_token_id"):
        attrflow.load_model(T.T5ForSequenceClassification(cfg))


def test_grouped_query_attention_is_read_per_query_head():
    wrapped = attrflow.load_model(build("llama"))
    assert wrapped.num_heads == 4 and wrapped.causal
    recorded = attrflow.record_attention(wrapped, example_inputs("llama"))
    assert recorded.attentions.shape[:2] == (3, 4)
    torch.testing.assert_close(recorded.attentions.sum(-1), torch.ones(3, 4, 8))


@pytest.mark.parametrize("arch", ["bert", "llama", "vit", "distilbert"])
def test_recorded_attention_equals_eager_output_attentions(arch):
    model = build(arch, init_scale=0.2).eval()
    inputs = example_inputs(arch)
    recorded = attrflow.record_attention(model, inputs).attentions
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = torch.stack(model(**inputs, output_attentions=True).attentions)[:, 0]
    torch.testing.assert_close(recorded, eager, rtol=1e-5, atol=1e-6)


def _text_model(max_length: int = 32):
    return attrflow.load_model(build("bert"), tokenizer=word_tokenizer(max_length))


def test_text_and_text_pair_inputs():
    model = _text_model()
    single = attrflow.attribute(model, "the movie was great", steps=2)
    assert single.tokens == ("[CLS]", "the", "movie", "was", "great", "[SEP]")
    assert single.special_mask == (True, False, False, False, False, True)
    pair = attrflow.attribute(model, ("the movie", "was great"), steps=2)
    assert pair.tokens == ("[CLS]", "the", "movie", "[SEP]", "was", "great", "[SEP]")
    assert pair.segment_ids == (0, 0, 0, 0, 1, 1, 1)


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_text_raises(text):
    with pytest.raises(InvalidInputError, match="empty"):
        attrflow.attribute(_text_model(), text)


def test_too_long_text_truncates_with_warning_or_raises():
    model = _text_model(max_length=10)
    text = " ".join(["good"] * 30)
    with pytest.warns(UserWarning, match="truncated"):
        result = attrflow.attribute(model, text, steps=2)
    assert len(result.tokens) == 10 and result.settings["truncated"]
    with pytest.raises(InvalidInputError, match="at most 10"):
        attrflow.attribute(model, text, truncation=False)


def test_bad_input_types_and_batches_raise():
    model = _text_model()
    with pytest.raises(InvalidInputError, match="type"):
        attrflow.attribute(model, 42)
    with pytest.raises(InvalidInputError, match="batch size"):
        attrflow.attribute(model, {"input_ids": torch.ones(2, 4, dtype=torch.long)})
    with pytest.raises(InvalidInputError, match="input_ids must lie"):
        attrflow.attribute(model, {"input_ids": torch.tensor([[VOCAB + 5]])})


def test_load_model_from_directory(tmp_path):
    build("bert").save_pretrained(tmp_path)
    word_tokenizer().save_pretrained(tmp_path)
    model = attrflow.load_model(tmp_path)
    assert (model.num_layers, model.num_heads, model.task) == (3, 4, "sequence-classification")
    assert attrflow.attribute(model, "a good film", steps=2).tokens[1:-1] == ("a", "good", "film")


def test_load_model_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="never downloads"):
        attrflow.load_model("no/such/model")
    with pytest.raises(InvalidInputError, match="config.json"):
        attrflow.load_model(tmp_path)


def test_predict_batch_equals_one_at_a_time_and_respects_gates():
    model = attrflow.load_model(build("bert", init_scale=0.2), tokenizer=word_tokenizer())
    texts = ["the movie was great", "bad", ("the plot", "was very boring and not fun"), "i good"]
    batched = model.predict_batch(texts, batch_size=3)
    single = torch.stack([model.predict_proba(t) for t in texts])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    gate = torch.ones(3, 4)
    gate[0] = 0
    with model.gate_heads(gate):
        gated_batch = model.predict_batch(texts)
        gated_single = torch.stack([model.predict_proba(t) for t in texts])
    torch.testing.assert_close(gated_batch, gated_single, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(gated_batch, batched, atol=1e-4)


def test_predict_batch_for_causal_lm_reads_last_real_token():
    tok = word_tokenizer()
    tok.padding_side = "left"
    model = attrflow.load_model(build("llama", init_scale=0.2), tokenizer=tok)
    texts = ["the movie was great", "bad plot"]
    batched = model.predict_batch(texts)
    single = torch.stack([model.predict_proba(t) for t in texts])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-6)


def test_predict_batch_accepts_token_ids():
    tok = word_tokenizer()
    model = attrflow.load_model(build("bert", init_scale=0.2), tokenizer=tok)
    texts = ["the movie was great", ("the plot", "was boring")]
    as_ids = [dict(tok(t)) for t in ["the movie was great"]] + [dict(tok("the plot", "was boring"))]
    torch.testing.assert_close(model.predict_batch(as_ids), model.predict_batch(texts))
    with pytest.raises(InvalidInputError, match="no input_ids"):
        model.predict_batch([{"input_ids": []}])
