"""Token scores against independent oracles: explicit re-evaluation, finite differences, HF's own attention."""

from __future__ import annotations

import pytest
import torch

import attrflow
from attrflow.analysis.token_scores import attattr_token_scores, attention_token_scores
from attrflow.errors import InvalidInputError
from attrflow.methods.gradients import embedding_gradients
from attrflow.testing import build, example_inputs, word_tokenizer

TEXT = "the movie was not very good but fun"


@pytest.fixture(scope="module")
def bert():
    return attrflow.load_model(build("bert", init_scale=0.2).eval(), tokenizer=word_tokenizer())


@pytest.fixture(scope="module")
def bert64():
    """A float64 copy, so finite differences are accurate."""
    return attrflow.load_model(build("bert", init_scale=0.2).double().eval(), tokenizer=word_tokenizer())


def _probability(model, ids, token_type_ids=None):
    inputs = {"input_ids": torch.tensor([ids])}
    if token_type_ids is not None:
        inputs["token_type_ids"] = torch.tensor([token_type_ids])
    return model.predict_proba(inputs)


@pytest.mark.parametrize("replacement", ["unk", "mask"])
def test_blankout_equals_explicit_reevaluation(bert, replacement):
    encoding = bert.prepare(TEXT)
    ids = list(encoding.input_ids)
    clean = _probability(bert, ids)
    y = int(clean.argmax())
    blank = bert.tokenizer.unk_token_id if replacement == "unk" else bert.tokenizer.mask_token_id
    expected = []
    for i in range(len(ids)):
        changed = ids.copy()
        changed[i] = blank
        expected.append(abs(float(clean[y] - _probability(bert, changed)[y])))
    scores = attrflow.blankout_scores(bert, TEXT, replacement=replacement, batch_size=3)
    torch.testing.assert_close(scores, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_blankout_target_and_pair_segments(bert):
    pair = ("the movie was good", "it is bad")
    encoding = bert.prepare(pair)
    assert encoding.segment_ids is not None and 1 in encoding.segment_ids
    ids, segments = list(encoding.input_ids), list(encoding.segment_ids)
    clean = _probability(bert, ids, segments)
    changed = ids.copy()
    changed[3] = bert.tokenizer.unk_token_id
    expected = abs(float(clean[2] - _probability(bert, changed, segments)[2]))
    scores = attrflow.blankout_scores(bert, pair, target=2)
    assert scores.shape == (len(ids),)
    assert scores[3].item() == pytest.approx(expected, abs=1e-6)


def _target_probability(model, embeddings, target):
    """F with HF's own forward (sdpa attention): the target probability at the explained position."""
    with torch.no_grad():
        logits = model.model(inputs_embeds=embeddings).logits
    logits = logits[0, -1] if logits.dim() == 3 else logits[0]
    return torch.softmax(logits, -1)[target]


def _finite_difference_gradient(model, encoding, target, token, h=1e-5):
    """∂F/∂e_{token, d} for every d by central differences, ``[d]``."""
    embeddings = model.model.get_input_embeddings()(encoding.inputs["input_ids"]).detach()
    grad = torch.zeros(embeddings.shape[-1], dtype=embeddings.dtype)
    for d in range(embeddings.shape[-1]):
        step = torch.zeros_like(embeddings)
        step[0, token, d] = h
        grad[d] = (
            _target_probability(model, embeddings + step, target)
            - _target_probability(model, embeddings - step, target)
        ) / (2 * h)
    return grad, embeddings[0, token]


def test_gradients_equal_finite_differences(bert64):
    encoding = bert64.prepare(TEXT)
    result = embedding_gradients(bert64, encoding, target=1, steps=0)
    grad, embedding = _finite_difference_gradient(bert64, encoding, 1, token=3)
    assert result.gradient_l2[3].item() == pytest.approx(float(grad.norm()), rel=1e-5)
    assert result.gradient_x_input[3].item() == pytest.approx(abs(float(grad @ embedding)), rel=1e-5)
    # gradient x input is the derivative along the embedding itself: one difference per token
    embeddings = bert64.model.get_input_embeddings()(encoding.inputs["input_ids"]).detach()
    h = 1e-5
    for token in range(encoding.length):
        along = torch.zeros_like(embeddings)
        along[0, token] = h * embeddings[0, token]
        upper, lower = (_target_probability(bert64, embeddings + s * along, 1) for s in (1, -1))
        assert result.gradient_x_input[token].item() == pytest.approx(abs(float(upper - lower)) / (2 * h), rel=1e-5)
    # BERT normalises its embeddings: the paper's summed gradient vanishes exactly, and says so
    assert result.cancellation < 1e-10
    assert result.gradient.max().item() < 1e-9 * result.gradient_l2.max().item() + 1e-12
    with pytest.warns(RuntimeWarning, match="rounding noise"):
        attrflow.input_gradient(bert64, TEXT, target=1)
    torch.testing.assert_close(attrflow.input_gradient(bert64, TEXT, target=1, reduction="l2"), result.gradient_l2)
    torch.testing.assert_close(attrflow.gradient_x_input(bert64, TEXT, target=1), result.gradient_x_input)


def test_summed_gradient_equals_finite_differences_without_layernorm():
    # Llama's RMSNorm is not shift-invariant, so Σ_d ∂F/∂e_d is a real directional derivative there
    model = attrflow.load_model(build("llama", init_scale=0.1).double().eval())
    inputs = example_inputs("llama")
    encoding = model.prepare(inputs)
    result = embedding_gradients(model, encoding, target=5, steps=0)
    embeddings = model.model.get_input_embeddings()(encoding.inputs["input_ids"]).detach()
    h = 1e-3  # LlamaRMSNorm computes in float32 even in a float64 model: a smaller step drowns in its rounding
    for token in range(encoding.length):
        ones = torch.zeros_like(embeddings)
        ones[0, token] = h
        expected = (
            _target_probability(model, embeddings + ones, 5) - _target_probability(model, embeddings - ones, 5)
        ) / (2 * h)
        assert result.gradient[token].item() == pytest.approx(abs(float(expected)), rel=1e-3)
    assert result.cancellation > 1e-3


def test_integrated_gradients_equal_naive_loop_and_are_complete(bert64):
    encoding = bert64.prepare(TEXT)
    hf = bert64.model
    embeddings = hf.get_input_embeddings()(encoding.inputs["input_ids"]).detach()
    steps = 5
    total = torch.zeros_like(embeddings)
    for k in range(steps):  # left Riemann sum, one forward+backward per point, HF's own attention
        point = (k / steps * embeddings).requires_grad_(True)
        prob = torch.softmax(hf(inputs_embeds=point).logits, -1)[0, 0]
        (grad,) = torch.autograd.grad(prob, point)
        total += grad / steps
    expected = (embeddings * total).sum(-1)[0].float()
    ours = attrflow.integrated_gradients(bert64, TEXT, target=0, steps=steps, rule="riemann-left", batch_size=2)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-7)

    result = embedding_gradients(bert64, TEXT, target=0, steps=16)
    assert result.integrated_gradients is not None
    total_attribution = float(result.integrated_gradients.double().sum())
    assert total_attribution - (result.probability - result.baseline_probability) == pytest.approx(
        result.completeness_gap, abs=1e-6
    )
    assert abs(result.completeness_gap) < 1e-4
    # a 1-point rule is far from complete: the gap is really measured
    coarse = embedding_gradients(bert64, TEXT, target=0, steps=1, rule="riemann-left")
    assert abs(coarse.completeness_gap) > 10 * abs(result.completeness_gap)


@pytest.mark.parametrize("arch", ["roberta", "distilbert", "gpt2", "llama"])
def test_gradients_run_on_other_architectures(arch):
    model = attrflow.load_model(build(arch, init_scale=0.1).eval())
    inputs = example_inputs(arch)
    result = embedding_gradients(model, inputs, steps=4)
    assert result.gradient.shape == (inputs["input_ids"].shape[1],)
    assert torch.isfinite(result.gradient).all() and (result.gradient >= 0).all()
    assert result.gradient.sum() > 0


def _eager_attentions(model, encoding):
    hf = model.model
    hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = hf(**encoding.inputs, output_attentions=True)
    finally:
        hf.set_attn_implementation("sdpa")
    return torch.stack([a[0] for a in out.attentions])


def test_raw_attention_scores_are_the_head_mean_row(bert):
    encoding = bert.prepare(TEXT)
    attentions = _eager_attentions(bert, encoding)
    for layer in (0, 1, -1):
        torch.testing.assert_close(
            attrflow.raw_attention_scores(bert, TEXT, layer=layer), attentions[layer].mean(0)[0], rtol=1e-5, atol=1e-6
        )
    torch.testing.assert_close(
        attrflow.raw_attention_scores(bert, TEXT, layer=1, reduction="max", head_fusion="max"),
        attentions[1].amax(0).amax(0),
        rtol=1e-5,
        atol=1e-6,
    )
    torch.testing.assert_close(
        attrflow.raw_attention_scores(bert, TEXT, layer=1, reduction="mean"),
        attentions[1].mean(0).mean(0),
        rtol=1e-5,
        atol=1e-6,
    )


def test_rollout_and_flow_scores(bert):
    encoding = bert.prepare(TEXT)
    attentions = _eager_attentions(bert, encoding)
    rollout = attrflow.attention_rollout(attentions)
    torch.testing.assert_close(attrflow.rollout_scores(bert, TEXT, layer=2), rollout[2, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        attrflow.rollout_scores(bert, TEXT, layer=2, reduction="mean"), rollout[2].mean(0), rtol=1e-5, atol=1e-6
    )
    # the paper: layer-1 flow equals layer-1 rollout
    torch.testing.assert_close(
        attrflow.flow_scores(bert, TEXT, layer=0), attrflow.rollout_scores(bert, TEXT, layer=0), rtol=1e-5, atol=1e-6
    )
    flow = attrflow.attention_flow(attentions, layer=-1)
    torch.testing.assert_close(attrflow.flow_scores(bert, TEXT), flow[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attrflow.flow_scores(bert, TEXT, reduction="max"), flow.amax(0), rtol=1e-5, atol=1e-6)
    # the all-layer pure function agrees with the per-layer one
    every = attention_token_scores(attentions, method="flow", reduction="mean")
    torch.testing.assert_close(
        every[1], attention_token_scores(attentions, method="flow", layers=1, reduction="mean")[0]
    )


def test_causal_model_reads_the_last_position():
    model = attrflow.load_model(build("gpt2", init_scale=0.1).eval())
    inputs = example_inputs("gpt2")
    recorded = attrflow.record_attention(model, inputs)
    scores = attrflow.raw_attention_scores(model, inputs, layer=0)
    torch.testing.assert_close(scores, recorded.attentions[0].mean(0)[-1])
    assert scores[-1] > 0 and scores.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_attattr_scores_are_column_sums_and_complete(bert):
    result = attrflow.attribute(bert, TEXT, steps=16)
    per_layer = attattr_token_scores(result.attributions)
    torch.testing.assert_close(per_layer, result.attributions.sum(dim=(1, 2)), rtol=1e-5, atol=1e-7)
    # completeness: each layer's token scores sum to F(A_l) - F(0)
    expected = result.probability - result.baseline_probability
    torch.testing.assert_close(per_layer.sum(-1), expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(attrflow.attattr_scores(bert, TEXT, steps=16), per_layer.sum(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        attrflow.attattr_scores(bert, TEXT, steps=16, layer=-1), per_layer[-1], rtol=1e-5, atol=1e-6
    )


def test_bad_options_raise(bert):
    with pytest.raises(InvalidInputError, match="reduction"):
        attrflow.raw_attention_scores(bert, TEXT, reduction="first")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="out of range"):
        attrflow.rollout_scores(bert, TEXT, layer=7)
    with pytest.raises(InvalidInputError, match="replacement"):
        attrflow.blankout_scores(bert, TEXT, replacement="pad")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="target"):
        attrflow.input_gradient(bert, TEXT, target=9)
    vit = attrflow.load_model(build("vit"))
    with pytest.raises(InvalidInputError, match="token ids"):
        attrflow.input_gradient(vit, example_inputs("vit"))
    with pytest.raises(InvalidInputError, match="attentions"):
        attention_token_scores(torch.zeros(3, 4, 4), method="rollout")


def test_model_is_unchanged_after_gradients(bert):
    hf = bert.model
    implementation = hf.config._attn_implementation
    hf.train()
    try:
        attrflow.integrated_gradients(bert, TEXT, steps=2)
        assert hf.training and hf.config._attn_implementation == implementation
        assert all(p.grad is None for p in hf.parameters())
    finally:
        hf.eval()


def test_integrated_gradients_auto_refines_until_the_gap_is_small(bert64):
    loose = embedding_gradients(bert64, TEXT, target=0, tolerance=1.0)
    assert loose.steps == 7  # two panels: both ends, the middle, two interior points each
    tight = embedding_gradients(bert64, TEXT, target=0, tolerance=1e-7)
    assert tight.steps > 7
    assert abs(tight.completeness_gap) <= 1e-7 or tight.steps > 128 - 5
    assert abs(tight.completeness_gap) < abs(loose.completeness_gap)
    # the panels integrate the same path: close to a fine uniform rule
    fine = embedding_gradients(bert64, TEXT, target=0, steps=64, rule="gauss-legendre")
    torch.testing.assert_close(tight.integrated_gradients, fine.integrated_gradients, rtol=1e-4, atol=1e-6)
    with pytest.raises(InvalidInputError, match="steps"):
        attrflow.integrated_gradients(bert64, TEXT, steps=0)
