"""Encoder-decoder classifiers (BART, T5): the encoder's self-attention is explained, the rest runs unchanged."""

from __future__ import annotations

import pytest
import torch
import transformers as T

import attrflow
from attrflow.analysis.token_scores import blankout_scores
from attrflow.methods.gradients import embedding_gradients
from attrflow.testing import ENCODER_DECODERS, build, naive_attattr, word_tokenizer


def _wrapped(arch: str) -> attrflow.Model:
    return attrflow.load_model(build(arch, init_scale=0.2), tokenizer=word_tokenizer())


@pytest.mark.parametrize("arch", ENCODER_DECODERS)
def test_predict_batch_groups_rows_by_end_of_sequence_count(arch):
    # BART/T5 heads need the same number of </s> per batch: singles and pairs ([SEP] twice) must not be mixed
    model = _wrapped(arch)
    texts = ["the movie was great", ("the plot", "was very boring"), "bad", ("a film", "fun"), "i good"]
    batched = model.predict_batch(texts, batch_size=4)
    single = torch.stack([model.predict_proba(t) for t in texts])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def _encoder_only(model: attrflow.Model, encoder_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Probabilities with the encoder fed ``encoder_ids`` while the decoder and head read ``ids`` (a hook)."""

    def swap(_module, args, kwargs):
        kwargs["input_ids"] = encoder_ids
        return args, kwargs

    handle = model.model.get_encoder().register_forward_pre_hook(swap, with_kwargs=True)
    try:
        with torch.no_grad():
            return torch.softmax(model.model.eval()(input_ids=ids).logits.double(), -1)[0]
    finally:
        handle.remove()


@pytest.mark.parametrize("arch", ENCODER_DECODERS)
def test_blankout_replaces_the_token_in_the_encoder_input_only(arch):
    model = _wrapped(arch)
    text = "the movie was very good"
    encoding = model.prepare(text)
    ids = encoding.inputs["input_ids"]
    clean = model.predict_proba(text).double()
    y = int(clean.argmax())
    scores = blankout_scores(model, text, batch_size=3)
    unk = word_tokenizer().unk_token_id
    expected = []
    for i in range(encoding.length):
        blanked = ids.clone()
        blanked[0, i] = unk
        expected.append(abs(float(clean[y] - _encoder_only(model, blanked, ids)[y])))
    torch.testing.assert_close(scores.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-6)
    assert scores[-1] > 0  # the end-of-sequence token is scored too


@pytest.mark.parametrize("arch", ENCODER_DECODERS)
def test_embedding_gradients_are_taken_on_the_encoder_embeddings(arch):
    model = _wrapped(arch)
    text = "the movie was very good"
    grads = embedding_gradients(model, text, steps=0)
    # independent: differentiate through a hook on the encoder's embedding module
    inner = model.model.get_encoder().get_input_embeddings()
    kept = {}

    def keep(_module, _args, output):
        if "e" not in kept:  # the encoder's call (the first); a shared module may be called by the decoder too
            kept["e"] = output
        return output

    ids = model.prepare(text).inputs["input_ids"]
    handle = inner.register_forward_hook(keep)
    try:
        probabilities = torch.softmax(model.model.eval()(input_ids=ids).logits, -1)[0]
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(probabilities[grads.target], kept["e"])
    torch.testing.assert_close(grads.gradient_l2, grad[0].norm(dim=-1), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("arch", ENCODER_DECODERS)
def test_explain_and_faithfulness_run_on_encoder_decoders(arch, tmp_path):
    model = _wrapped(arch)
    explanation = attrflow.explain(model, "the movie was very good")
    assert explanation.result.attributions.shape == (3, 4, 7, 7)
    path = explanation.write(tmp_path / "report.html")
    assert model.site_names[0] in path.read_text()  # the report names the explained sites
    data = attrflow.load_dataset(
        _jsonl(tmp_path, ["the movie was good", "bad plot and boring acting", "not very good but fun"])
    )
    report = attrflow.faithfulness(
        model,
        data,
        methods=["attattr", "rollout", "flow"],
        references=["blankout", "gradient_l2"],
        steps=4,
        run=attrflow.RunOptions(progress=False),
    )
    assert report.num_examples == 3
    assert torch.isfinite(torch.as_tensor(report.spearman["blankout"]["flow"])).all()


def _jsonl(tmp_path, texts):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(f'{{"text": "{t}", "label": {i % 3}}}\n' for i, t in enumerate(texts)))
    return path


def test_cli_explains_an_encoder_decoder_checkpoint_and_names_its_layers(tmp_path, capsys):
    from attrflow.cli import main

    build("bart", init_scale=0.2).save_pretrained(tmp_path)
    word_tokenizer().save_pretrained(tmp_path)
    assert main(["explain", "the movie was good", "--model", str(tmp_path), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "model.encoder.layers.0.self_attn" in out and "4 self-/cross-attention calls" in out


_BART_LIKE = dict(
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    max_position_embeddings=64,
    init_std=0.1,
)
_T5_LIKE = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4)
_IDS = dict(vocab_size=40, num_labels=3, pad_token_id=0, eos_token_id=3, decoder_start_token_id=3, bos_token_id=2)


@pytest.mark.parametrize(
    "make",
    [
        lambda: T.MBartForSequenceClassification(T.MBartConfig(**_BART_LIKE, **_IDS)),
        lambda: T.PLBartForSequenceClassification(T.PLBartConfig(**_BART_LIKE, **_IDS)),
        lambda: T.MT5ForSequenceClassification(T.MT5Config(**_T5_LIKE, **_IDS)),
        lambda: T.UMT5ForSequenceClassification(T.UMT5Config(**_T5_LIKE, **_IDS)),
    ],
    ids=["mbart", "plbart", "mt5", "umt5"],
)
def test_other_encoder_decoder_families_equal_the_naive_loop(make):
    torch.manual_seed(0)
    model = make()
    inputs = {"input_ids": torch.tensor([[5, 7, 8, 9, 10, 11, 3]])}
    wrapped = attrflow.load_model(model)
    assert wrapped.is_encoder_decoder and wrapped.num_layers == 2 and wrapped._probe.replay_ok
    result = attrflow.attribute(wrapped, inputs, steps=4, rule="riemann-left")
    for row, layer in enumerate(result.layers):
        expected = naive_attattr(model, inputs, layer, result.target, steps=4)
        torch.testing.assert_close(result.attributions[row], expected, rtol=1e-5, atol=1e-6 * expected.abs().max())
