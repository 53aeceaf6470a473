"""Targets LLM users ask for (a continuation span, a contrast, the next token) against independent autograd
computations on tiny float64 causal LMs with a word-level tokenizer."""

from __future__ import annotations

import pytest
import torch

import attrflow
from attrflow.errors import InvalidInputError
from attrflow.methods.context import ExplainContext
from attrflow.methods.gradients import embedding_gradients
from attrflow.testing import build, naive_attattr, word_tokenizer

PROMPT = "the movie was"
SPAN = " very good and fun"  # 4 words of the tiny vocabulary
CONTRAST = (" good", " bad")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request):
    model = build(request.param, init_scale=0.2).double().eval()  # no dropout in the independent passes
    return attrflow.load_model(model, tokenizer=word_tokenizer())


def _ids(model: attrflow.Model, text: str, *, specials: bool = True) -> list[int]:
    return list(model.tokenizer(text, add_special_tokens=specials)["input_ids"])


def _span_value(logits: torch.Tensor, start: int, span: list[int]) -> torch.Tensor:
    """Σ_t log p(span_t) read at position start − 1 + t of ``[1, N, V]`` logits: the definition, written out."""
    log_probabilities = torch.log_softmax(logits[0].double(), dim=-1)
    return sum(log_probabilities[start - 1 + t, token] for t, token in enumerate(span))  # type: ignore[return-value]


def _contrast_value(logits: torch.Tensor, a: int, b: int) -> torch.Tensor:
    log_probabilities = torch.log_softmax(logits[0, -1].double(), dim=-1)
    return log_probabilities[a] - log_probabilities[b]


def _independent(lm: attrflow.Model, target: str | tuple[str, str]):
    """The input ids, F as a function of the logits, and F's gradient by the word embeddings (plain autograd)."""
    prompt = _ids(lm, PROMPT)
    if isinstance(target, str):
        span = _ids(lm, target, specials=False)
        ids = prompt + span

        def value(logits: torch.Tensor) -> torch.Tensor:
            return _span_value(logits, len(prompt), span)

    else:
        a, b = (_ids(lm, t, specials=False)[0] for t in target)
        ids = prompt

        def value(logits: torch.Tensor) -> torch.Tensor:
            return _contrast_value(logits, a, b)

    tensor = torch.tensor([ids])
    embeddings = lm.model.get_input_embeddings()(tensor).detach().requires_grad_(True)
    lm.model.set_attn_implementation("sdpa")  # float64 throughout (eager takes its softmax in float32)
    # the word tokenizer gives token types (all 0 here), which GPT-2 adds as embeddings
    out = value(lm.model(inputs_embeds=embeddings, token_type_ids=torch.zeros_like(tensor)).logits)
    (grad,) = torch.autograd.grad(out, embeddings)
    return ids, value, float(out.detach()), grad[0], embeddings[0].detach()


@pytest.mark.parametrize("target", [SPAN, CONTRAST])
def test_gradients_equal_plain_autograd_of_the_definition(lm, target):
    ids, _, value, grad, embeddings = _independent(lm, target)
    context = ExplainContext(lm, PROMPT, target=target)
    assert list(context.encoding.input_ids) == ids
    assert context.value == pytest.approx(value, rel=1e-10, abs=1e-12)
    # the gradient methods read the logits in float32 (as for every model): float32 agreement
    l2 = attrflow.token_scores(lm, PROMPT, "gradient_l2", target=target)
    torch.testing.assert_close(l2.scores.double(), grad.norm(dim=-1), rtol=1e-4, atol=1e-7)
    x_input = attrflow.token_scores(lm, PROMPT, "gradient_x_input", target=target)
    torch.testing.assert_close(x_input.scores.double(), (grad * embeddings).sum(-1).abs(), rtol=1e-4, atol=1e-7)
    assert l2.settings["objective"]["quantity"] == "log-probability"
    assert l2.probability == pytest.approx(value, rel=1e-10)


@pytest.mark.parametrize("target", [SPAN, CONTRAST])
def test_integrated_gradients_are_complete_in_log_probability(lm, target):
    _, value, f, _, embeddings = _independent(lm, target)
    result = embedding_gradients(lm, PROMPT, target=target, steps="auto", tolerance=1e-4)
    with torch.no_grad():
        zeros = torch.zeros_like(embeddings)[None]
        baseline = float(
            value(lm.model(inputs_embeds=zeros, token_type_ids=torch.zeros(zeros.shape[:2], dtype=torch.long)).logits)
        )
    # embedding_gradients reads the logits in float32 (as for every model)
    assert result.probability == pytest.approx(f, rel=1e-6)
    assert result.baseline_probability == pytest.approx(baseline, rel=1e-6)
    assert result.integrated_gradients is not None
    gap = float(result.integrated_gradients.double().sum()) - (f - baseline)
    assert result.completeness_gap == pytest.approx(gap, rel=1e-5, abs=1e-5)
    if type(lm.model).__name__.startswith("GPT2"):
        # (Llama's RMSNorm makes the path from the zero embedding blow up near 0: a known baseline problem)
        assert abs(gap) < 1e-3


@pytest.mark.parametrize("target", [SPAN, CONTRAST])
@pytest.mark.parametrize("keep", ["full", "tokens"])
def test_attattr_equals_the_naive_loop_and_is_complete(lm, target, keep):
    ids, value, f, _, _ = _independent(lm, target)
    result = attrflow.attribute(lm, PROMPT, target=target, steps=3, rule="gauss-legendre", keep=keep)
    assert result.probability == pytest.approx(f, rel=1e-10)
    inputs = {"input_ids": torch.tensor([ids]), "token_type_ids": torch.zeros(1, len(ids), dtype=torch.long)}
    for row, layer in enumerate(result.layers):
        expected = naive_attattr(lm.model, inputs, layer, 0, steps=3, rule="gauss-legendre", value=value)
        # the oracle reads A from eager attention, whose softmax is float32: agreement to float32 rounding
        scale = expected.abs().max().item()
        if keep == "full":
            torch.testing.assert_close(result.attributions[row].double(), expected, rtol=1e-5, atol=1e-5 * scale)
        assert result.token_totals is not None
        columns = expected.sum(dim=(0, 1))
        torch.testing.assert_close(result.token_totals[row].double(), columns, rtol=1e-5, atol=1e-5 * scale)
    # F(0) of each layer, evaluated on another path: every interaction of the layer masked, no branching
    encoding = lm.prepare(
        {"input_ids": torch.tensor([ids]), "token_type_ids": torch.zeros(1, len(ids), dtype=torch.long)}
    )
    everything = [(i, j) for i in range(len(ids)) for j in range(len(ids))]
    for row, layer in enumerate(result.layers):
        with lm.mask_interactions({layer: everything}, encoding), torch.no_grad():
            logits = lm.run(encoding, positions=range(len(ids)))
        assert float(result.baseline_probability[row]) == pytest.approx(float(value(logits)), rel=1e-6, abs=1e-6)
    if type(lm.model).__name__.startswith("GPT2"):  # Σ Attr ≈ F(A) − F(0), in log-probability
        dense = attrflow.attribute(lm, PROMPT, target=target, steps=12, rule="gauss-legendre", keep=keep)
        assert dense.completeness_gap.abs().max() < 1e-4
    assert result.settings["objective"]["kind"] == ("span" if isinstance(target, str) else "contrast")


def test_span_positions_and_tokens(lm):
    context = ExplainContext(lm, PROMPT, target=SPAN)
    prompt = _ids(lm, PROMPT)
    objective = context.objective
    assert objective.kind == "span" and objective.start == len(prompt)
    assert objective.positions == tuple(range(len(prompt) - 1, len(prompt) + 3))
    assert context.tokens[-4:] == ("very", "good", "and", "fun")
    scores = attrflow.token_scores(lm, PROMPT, "attattr", target=SPAN, steps=2, rule="gauss-legendre")
    # the last continuation token is read by nothing F looks at: its information flows nowhere
    assert scores.overall[-1].abs() < 1e-12
    assert scores.target_label == SPAN and "continuation" in scores.description


@pytest.mark.parametrize("target", [SPAN, CONTRAST])
def test_blankout_equals_explicit_reevaluation(lm, target):
    ids, value, f, _, _ = _independent(lm, target)
    unk = lm.tokenizer.unk_token_id
    expected = []
    for i in range(len(ids)):
        changed = list(ids)
        changed[i] = unk
        with torch.no_grad():
            types = torch.zeros(1, len(ids), dtype=torch.long)
            expected.append(
                abs(f - float(value(lm.model(input_ids=torch.tensor([changed]), token_type_ids=types).logits)))
            )
    scores = attrflow.token_scores(lm, PROMPT, "blankout", target=target)
    torch.testing.assert_close(
        scores.scores.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-9
    )


def test_next_token_default_and_token_ids_are_unchanged(lm):
    by_default = attrflow.token_scores(lm, PROMPT, "gradient_l2")
    by_id = attrflow.token_scores(lm, PROMPT, "gradient_l2", target=by_default.target)
    torch.testing.assert_close(by_default.scores, by_id.scores)
    assert by_default.settings["objective"]["quantity"] == "probability"
    assert by_default.probability == pytest.approx(float(lm.predict_proba(PROMPT)[by_default.target]), rel=1e-5)


def test_explain_takes_a_span(lm):
    explanation = attrflow.explain(lm, PROMPT, target=SPAN, steps=2, methods=["attattr", "rollout"])
    assert explanation.tokens[-4:] == ("very", "good", "and", "fun")
    assert explanation.result.settings["objective"]["kind"] == "span"


def test_refusals_say_what_to_do(lm):
    with pytest.raises(InvalidInputError, match="single next tokens.*2 tokens"):
        attrflow.token_scores(lm, PROMPT, "gradient_l2", target=(" very good", " bad"))
    with pytest.raises(InvalidInputError, match="maximum of 32"):
        attrflow.token_scores(lm, PROMPT, "gradient_l2", target=" very" * 40)
    with pytest.raises(InvalidInputError, match="vocabulary id"):
        attrflow.attribute(lm, PROMPT, target=[1, 10_000], steps=2)
    classifier = attrflow.load_model(build("bert"), tokenizer=word_tokenizer())
    with pytest.raises(InvalidInputError, match="causal language models"):
        attrflow.token_scores(classifier, PROMPT, "gradient_l2", target=" good")
    assert attrflow.token_scores(classifier, PROMPT, "gradient_l2", target=1).target == 1
