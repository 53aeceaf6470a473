"""Self-attention attribution against an independent naive implementation, its axioms, and its contracts."""

from __future__ import annotations

import pytest
import torch

import attrflow
from attrflow.errors import InvalidInputError
from attrflow.testing import ARCHITECTURES, build, example_inputs, naive_attattr


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_riemann_left_equals_naive_loop(arch):
    model = build(arch)
    inputs = example_inputs(arch)
    result = attrflow.attribute(attrflow.load_model(model), inputs, steps=6, rule="riemann-left")
    for row, layer in enumerate(result.layers):
        expected = naive_attattr(model, inputs, layer, result.target, steps=6)
        torch.testing.assert_close(result.attributions[row], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama", "albert"])
@pytest.mark.parametrize(("rule", "steps"), [("riemann-right", 3), ("gauss-lobatto", 4), ("gauss-legendre", 3)])
def test_every_rule_equals_naive_loop_with_the_same_points(arch, rule, steps):
    # riemann-right and gauss-lobatto take their alpha = 1 point from the clean row's gradient: checked here
    model = build(arch, init_scale=0.1)
    inputs = example_inputs(arch)
    result = attrflow.attribute(attrflow.load_model(model), inputs, steps=steps, rule=rule)
    for row, layer in enumerate(result.layers):
        expected = naive_attattr(model, inputs, layer, result.target, steps=steps, rule=rule)
        scale = expected.abs().max().item()
        torch.testing.assert_close(result.attributions[row], expected, rtol=1e-4, atol=1e-5 * scale)


def test_fixed_steps_may_exceed_the_auto_limit():
    # max_steps bounds steps="auto" only (a fixed steps=64 used to be refused by the auto default max_steps=32)
    model = attrflow.load_model(build("bert"))
    result = attrflow.attribute(model, example_inputs("bert"), steps=64, rule="gauss-legendre", layers=0)
    assert result.settings["steps"] == 64 and result.settings["steps_per_layer"] == [64]


@pytest.mark.parametrize("arch", ["t5", "bart", "bert"])
@pytest.mark.parametrize(("rule", "steps"), [("riemann-right", 3), ("gauss-legendre", 3)])
def test_float64_models_are_attributed_in_float64(arch, rule, steps):
    # T5 (no score scaling, relative position bias) amplifies float32 rounding; in float64 the engine, the decoder
    # side of encoder-decoders and the quadrature must agree with the naive loop to the float32 storage precision
    model = build(arch, init_scale=0.1).double()
    inputs = example_inputs(arch)
    result = attrflow.attribute(attrflow.load_model(model), inputs, steps=steps, rule=rule)
    for row, layer in enumerate(result.layers):
        expected = naive_attattr(model, inputs, layer, result.target, steps=steps, rule=rule).float()
        scale = expected.abs().max().item()
        torch.testing.assert_close(result.attributions[row], expected, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("arch", ["bert", "llama", "vit"])
def test_gauss_legendre_gap_shrinks_and_is_small(arch):
    # larger initial weights make the integrand clearly non-linear in alpha
    model = attrflow.load_model(build(arch, init_scale=0.1))
    inputs = example_inputs(arch)
    gaps = {
        m: attrflow.attribute(model, inputs, steps=m, rule="gauss-legendre").completeness_gap.abs().max().item()
        for m in (1, 2, 8)
    }
    riemann = attrflow.attribute(model, inputs, steps=20, rule="riemann-left").completeness_gap.abs().max().item()
    assert gaps[1] > gaps[2] > gaps[8]
    assert gaps[8] < 1e-4
    # 8 Gauss-Legendre points beat 20 left-Riemann points (the official setting) by a wide margin
    assert gaps[8] < riemann / 10


def test_completeness_gap_is_computed_for_real():
    model = attrflow.load_model(build("bert", init_scale=0.2))
    inputs = example_inputs("bert")
    result = attrflow.attribute(model, inputs, steps=1, rule="riemann-left")
    assert result.completeness_gap.abs().max() > 1e-2  # one point at alpha=0 is a poor integral
    # one left-Riemann point is alpha=0: the sum is the gradient at zero attention times A, far from F(A)-F(0)
    expected = result.attributions.sum(dim=(1, 2, 3)) - (result.probability - result.baseline_probability)
    torch.testing.assert_close(result.completeness_gap, expected, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        model.model.eval()
        p = torch.softmax(model.model(**inputs).logits, -1)[0, result.target].item()
    assert result.probability == pytest.approx(p, rel=1e-5)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "albert"])
def test_results_do_not_depend_on_batch_size(arch):
    model = attrflow.load_model(build(arch))
    inputs = example_inputs(arch)
    reference = attrflow.attribute(model, inputs, steps=5)
    for batch_size in (1, 2, 4):
        other = attrflow.attribute(model, inputs, steps=5, batch_size=batch_size)
        torch.testing.assert_close(other.attributions, reference.attributions, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(other.completeness_gap, reference.completeness_gap, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("arch", ["bert", "bart", "t5"])
def test_replay_of_lower_layers_matches_full_recomputation(arch):
    # encoder-decoders replay too: the encoder gets row 0 only, the decoder and head every row
    model = attrflow.load_model(build(arch, init_scale=0.3))
    assert model._probe.replay_ok
    inputs = example_inputs(arch)
    fast = attrflow.attribute(model, inputs, steps=4)
    model._probe.replay_ok = False
    slow = attrflow.attribute(model, inputs, steps=4)
    scale = slow.attributions.abs().max().item()
    torch.testing.assert_close(fast.attributions, slow.attributions, rtol=1e-4, atol=1e-5 * scale)


def test_layer_selection_accepts_negative_indices():
    model = attrflow.load_model(build("bert"))
    inputs = example_inputs("bert")
    full = attrflow.attribute(model, inputs, steps=3)
    last = attrflow.attribute(model, inputs, steps=3, layers=[-1, 0])
    assert last.layers == (0, 2)
    torch.testing.assert_close(last.attributions, full.attributions[[0, 2]])
    with pytest.raises(InvalidInputError, match="out of range"):
        attrflow.attribute(model, inputs, layers=[3])


def test_explicit_target_and_bad_targets():
    model = attrflow.load_model(build("bert"))
    inputs = example_inputs("bert")
    result = attrflow.attribute(model, inputs, steps=2, target=2)
    assert result.target == 2
    for bad in (-1, 3, 1.5, True):
        with pytest.raises(InvalidInputError, match="target"):
            attrflow.attribute(model, inputs, target=bad)


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_bad_steps_raise(steps):
    model = attrflow.load_model(build("bert"))
    with pytest.raises(InvalidInputError, match="steps"):
        attrflow.attribute(model, example_inputs("bert"), steps=steps)


def test_bad_rule_and_batch_size_raise():
    model = attrflow.load_model(build("bert"))
    with pytest.raises(InvalidInputError, match="rule"):
        attrflow.attribute(model, example_inputs("bert"), rule="simpson")
    with pytest.raises(InvalidInputError, match="batch_size"):
        attrflow.attribute(model, example_inputs("bert"), batch_size=0)


def test_causal_lm_explains_next_token_at_last_position():
    model = attrflow.load_model(build("llama"))
    inputs = example_inputs("llama")
    result = attrflow.attribute(model, inputs, steps=2)
    assert result.output_position == len(result.tokens) - 1
    with torch.no_grad():
        logits = model.model(**inputs).logits[0, -1]
    assert result.predicted == int(logits.argmax())
    # causal: nothing attends to the future, so no attribution above the diagonal
    assert torch.all(result.attributions.triu(diagonal=1) == 0)


def test_padding_positions_are_excluded():
    model = attrflow.load_model(build("bert"))
    inputs = example_inputs("bert", length=6)
    padded = {
        "input_ids": torch.cat([inputs["input_ids"], torch.zeros(1, 3, dtype=torch.long)], 1),
        "attention_mask": torch.cat([inputs["attention_mask"], torch.zeros(1, 3, dtype=torch.long)], 1),
    }
    a = attrflow.attribute(model, inputs, steps=3)
    b = attrflow.attribute(model, padded, steps=3)
    assert len(b.tokens) == 6
    torch.testing.assert_close(a.attributions, b.attributions, rtol=1e-4, atol=1e-7)


def test_pass_planner_covers_every_row_once_within_capacity():
    from attrflow.methods.attribution import _plan_passes

    for capacity in (1, 2, 3, 7, 100):
        plans = _plan_passes({0: 5, 2: 5, 5: 5}, capacity=capacity)
        seen = sorted((layer, row) for plan in plans for layer, rows in plan.items() for row in rows)
        assert seen == [(layer, row) for layer in (0, 2, 5) for row in range(5)]
        assert all(sum(len(r) for r in plan.values()) <= capacity for plan in plans)
    assert len(_plan_passes({0: 4, 1: 4, 2: 4}, capacity=100)) == 1
    uneven = _plan_passes({0: 1, 3: 6}, capacity=4)
    assert sorted((layer, row) for plan in uneven for layer, rows in plan.items() for row in rows) == [
        (0, 0),
        *[(3, r) for r in range(6)],
    ]


def test_one_pass_when_memory_allows():
    model = attrflow.load_model(build("bert"))
    calls = {"n": 0}
    handle = model.model.classifier.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    try:
        attrflow.attribute(model, example_inputs("bert"), steps=4)
    finally:
        handle.remove()
    assert calls["n"] == 1  # clean row, every layer's interpolation rows and F(0) rows: one forward pass


@pytest.mark.parametrize("rule", ["gauss-lobatto", "riemann-right"])
def test_frozen_weights_give_the_same_attributions(rule):
    model = build("bert", init_scale=0.1)
    inputs = example_inputs("bert")
    reference = attrflow.attribute(attrflow.load_model(model), inputs, steps=4, rule=rule)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    frozen = attrflow.attribute(attrflow.load_model(model), inputs, steps=4, rule=rule)
    torch.testing.assert_close(frozen.attributions, reference.attributions)


def test_lobatto_rejects_one_point():
    model = attrflow.load_model(build("bert"))
    with pytest.raises(InvalidInputError, match="steps >= 2"):
        attrflow.attribute(model, example_inputs("bert"), steps=1, rule="gauss-lobatto")


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_auto_steps_refine_sharp_layers_and_equal_fixed_steps(arch):
    model = attrflow.load_model(build(arch, init_scale=0.3))
    inputs = example_inputs(arch)
    auto = attrflow.attribute(model, inputs, tolerance=1e-4)
    per_layer = auto.settings["steps_per_layer"]
    assert auto.settings["steps"] == "auto" and max(per_layer) > 4, "a sharp model needs refinement"
    for row, (layer, steps) in enumerate(zip(auto.layers, per_layer, strict=True)):
        assert abs(auto.completeness_gap[row]) <= 1e-4 or steps == 32
        fixed = attrflow.attribute(model, inputs, steps=steps, layers=[layer])
        scale = fixed.attributions.abs().max().item()
        torch.testing.assert_close(auto.attributions[row], fixed.attributions[0], rtol=1e-4, atol=1e-5 * scale)


def test_auto_steps_options_are_validated():
    model = attrflow.load_model(build("bert"))
    with pytest.raises(InvalidInputError, match="tolerance"):
        attrflow.attribute(model, example_inputs("bert"), tolerance=0)
    with pytest.raises(InvalidInputError, match="steps"):
        attrflow.attribute(model, example_inputs("bert"), steps="many")
