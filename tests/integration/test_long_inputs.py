"""Long inputs: attention rows recomputed from one pass's queries and keys equal the recorded attention, on every
architecture; the attention methods switch to them by themselves and give the same scores; exact flow refuses
what does not fit; the model is left as it was."""

from __future__ import annotations

import pytest
import torch
import transformers as T

import attrflow
import attrflow.methods.context as context_module
from attrflow.errors import InvalidInputError
from attrflow.flow.rows import MaterialisedRows, rollout_rows
from attrflow.models._streaming import StreamingCapture
from attrflow.testing import ARCHITECTURES, VOCAB, build, example_inputs, word_tokenizer


def _model(name: str) -> attrflow.Model:
    return attrflow.load_model(build(name, init_scale=0.3), tokenizer=word_tokenizer())


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny(request):
    return request.param, _model(request.param)


def _all_rows(keys: attrflow.KeyCache, layer: int, block: int) -> torch.Tensor:
    return torch.cat([rows for _, rows in keys.row_blocks(layer, block_size=block)], dim=1)


def test_rows_equal_the_recorded_attention_on_every_architecture(tiny):
    name, model = tiny
    inputs = example_inputs(name, length=9)
    recording = model.record(inputs)
    keys = model.capture_keys(inputs)
    assert (keys.num_layers, keys.num_heads, keys.n) == tuple(recording.attentions.shape[:3])
    torch.testing.assert_close(keys.logits, recording.logits, rtol=1e-5, atol=1e-6)
    for layer in range(model.num_layers):
        torch.testing.assert_close(_all_rows(keys, layer, 4).float(), recording.attentions[layer], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        keys.attention_rows(-1, 2, 3).float(), recording.attentions[-1, :, 2:3], rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("method", ["attention", "rollout", "flow_bounds"])
def test_methods_take_the_row_path_by_themselves_with_the_same_scores(tiny, method, monkeypatch):
    name, model = tiny
    inputs = example_inputs(name, length=9)
    options = [{}, {"exclude": "sink"}] + (
        [{"reduction": "mean", "head_fusion": "max"}] if method != "flow_bounds" else []
    )
    for extra in options:
        recorded = attrflow.token_scores(model, inputs, method, **extra)
        monkeypatch.setattr(context_module, "MATERIALISE_LIMIT_BYTES", 0)
        monkeypatch.setattr(model, "record", _refuse)  # the row path never materialises the attention
        streamed = attrflow.token_scores(model, inputs, method, **extra)
        monkeypatch.undo()
        torch.testing.assert_close(streamed.scores, recorded.scores, rtol=0, atol=2e-6)
        assert streamed.matrices is None and (method == "flow_bounds" or recorded.matrices is not None)
        assert streamed.diagnostics["sink_share"] == pytest.approx(recorded.diagnostics["sink_share"], abs=1e-6)
        assert "attention rows recomputed in blocks" in streamed.description
        assert streamed.predicted == recorded.predicted


def _refuse(*args, **kwargs):
    raise AssertionError("the row path recorded the [L, H, n, n] attention")


def test_flow_is_refused_with_its_size_limit_on_long_inputs(monkeypatch):
    model = _model("llama")
    monkeypatch.setattr(context_module, "MATERIALISE_LIMIT_BYTES", 0)
    with pytest.raises(InvalidInputError, match="MATERIALISE_LIMIT_BYTES.*L·n³ to L·n⁴.*method 'flow_bounds'"):
        attrflow.token_scores(model, example_inputs("llama"), "flow")


def test_flow_bounds_contain_exact_flow(tiny):
    name, model = tiny
    inputs = example_inputs(name, length=9)
    exact = attrflow.token_scores(model, inputs, "flow", exclude="special")
    bounded = attrflow.token_scores(model, inputs, "flow_bounds", exclude="special")
    assert bounded.bounds is not None and bounded.bounds.shape == (2, *exact.scores.shape)
    assert (bounded.bounds[0] <= exact.scores + 1e-5).all() and (exact.scores <= bounded.bounds[1] + 1e-5).all()
    assert bounded.diagnostics["max_bound_width"] == pytest.approx(float((bounded.bounds[1] - bounded.bounds[0]).max()))


def test_rows_with_padding_gates_and_masked_interactions():
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(5, VOCAB, (1, 11), generator=generator)
    for name in ("llama", "bert", "gpt2"):
        model = _model(name)
        for padded in (slice(0, 3), slice(9, 11)):
            mask = torch.ones_like(ids)
            mask[0, padded] = 0
            inputs = {"input_ids": ids, "attention_mask": mask}
            _assert_rows_match(model, inputs)
        plain = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        with model.gate_heads(torch.tensor([[1.0, 0, 1, 1], [0, 1, 1, 0.5], [1, 1, 1, 1]])):
            _assert_rows_match(model, plain)
        encoding = model.prepare(plain)
        with model.mask_interactions({1: [(5, 2), (7, 7)]}, encoding):
            _assert_rows_match(model, encoding)


def _assert_rows_match(model: attrflow.Model, inputs) -> None:
    recording = model.record(inputs)
    keys = model.capture_keys(inputs)
    torch.testing.assert_close(keys.logits, recording.logits, rtol=1e-5, atol=1e-5)
    for layer in range(model.num_layers):
        torch.testing.assert_close(_all_rows(keys, layer, 3).float(), recording.attentions[layer], rtol=0, atol=1e-6)


def test_rows_with_softcap_and_sliding_windows():
    torch.manual_seed(0)
    gemma = T.Gemma2ForCausalLM(
        T.Gemma2Config(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            intermediate_size=64,
            vocab_size=VOCAB,
            sliding_window=4,
            attn_logit_softcapping=5.0,
            query_pre_attn_scalar=8,
            initializer_range=0.5,
        )
    )
    qwen = T.Qwen2ForCausalLM(
        T.Qwen2Config(
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            vocab_size=VOCAB,
            use_sliding_window=True,
            sliding_window=4,
            max_window_layers=1,
            initializer_range=0.5,
        )
    )
    ids = torch.randint(5, VOCAB, (1, 11), generator=torch.Generator().manual_seed(0))
    for network in (gemma, qwen):
        model = attrflow.load_model(network)
        recording = model.record({"input_ids": ids})
        keys = model.capture_keys({"input_ids": ids})
        torch.testing.assert_close(keys.logits, recording.logits, rtol=1e-5, atol=1e-5)
        for layer in range(model.num_layers):
            torch.testing.assert_close(
                _all_rows(keys, layer, 3).float(), recording.attentions[layer], rtol=0, atol=5e-6
            )


def test_capture_keeps_order_n_d_memory_and_logits_at_one_position():
    model = _model("llama")
    ids = torch.randint(5, VOCAB, (1, 30), generator=torch.Generator().manual_seed(1))
    keys = model.capture_keys({"input_ids": ids})
    # per layer: queries [4 heads, 30, 8] and keys [2 key heads, 30, 8], float32; no mask for a causal input
    assert keys.nbytes == 3 * (4 + 2) * 30 * 8 * 4
    assert keys.logits.shape == (model.num_outputs,)
    torch.testing.assert_close(keys.logits, model.record({"input_ids": ids}).logits, rtol=1e-5, atol=1e-5)


def test_the_model_is_unchanged_after_capture_and_after_an_error(monkeypatch):
    model = _model("gpt2")
    implementation, training = model.model.config._attn_implementation, model.model.training
    inputs = example_inputs("gpt2")
    before = model.record(inputs)
    model.capture_keys(inputs)
    assert model.model.config._attn_implementation == implementation

    def broken(self, *args, **kwargs):
        raise RuntimeError("mid-forward")

    monkeypatch.setattr(StreamingCapture, "__call__", broken)
    with pytest.raises(RuntimeError, match="mid-forward"):
        model.capture_keys(inputs)
    monkeypatch.undo()
    assert model.model.config._attn_implementation == implementation
    assert model.model.training == training
    torch.testing.assert_close(model.record(inputs).attentions, before.attentions, rtol=0, atol=0)


def test_sink_share_from_a_model_equals_the_recorded_share():
    model = _model("llama")
    inputs = example_inputs("llama", length=12)
    recorded = attrflow.record_attention(model, inputs)
    share = attrflow.sink_share(model, inputs)
    assert share.shape == (model.num_layers, model.num_heads)
    torch.testing.assert_close(share, attrflow.sink_share(recorded), rtol=0, atol=1e-6)
    torch.testing.assert_close(share, recorded.attentions[:, :, 1:, 0].mean(dim=-1), rtol=0, atol=1e-6)
    with pytest.raises(InvalidInputError, match="give the input"):
        attrflow.sink_share(model)


def test_rollout_rows_from_keys_equal_rollout_of_the_recording():
    model = _model("gpt2")
    inputs = example_inputs("gpt2", length=10)
    keys = model.capture_keys(inputs)
    reference = attrflow.attention_rollout(model.record(inputs).attentions)
    got = rollout_rows(keys, positions=[-1, 3])
    torch.testing.assert_close(got, reference[:, [9, 3]], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        got, rollout_rows(MaterialisedRows(model.record(inputs).attentions), positions=[-1, 3]), rtol=0, atol=1e-6
    )
