"""AttAttr at long inputs: ``keep=`` gives the reductions of the full tensor without storing it, in streaming
passes whose memory is bounded; ``keep="full"`` says what to pass when it would not fit."""

from __future__ import annotations

import pytest
import torch

import attrflow
from attrflow.errors import InvalidInputError
from attrflow.methods import _kept
from attrflow.models import _interface
from attrflow.testing import ARCHITECTURES, build, example_inputs, word_tokenizer


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize(("rule", "steps"), [("gauss-lobatto", 4), ("gauss-legendre", 3), ("gauss-lobatto", "auto")])
def test_kept_totals_equal_the_full_tensors_reductions(arch, rule, steps):
    model = attrflow.load_model(build(arch, init_scale=0.1))
    inputs = example_inputs(arch)
    full = attrflow.attribute(model, inputs, steps=steps, rule=rule)
    kept = attrflow.attribute(model, inputs, steps=steps, rule=rule, keep="tokens")
    assert not kept.has_full and full.has_full
    assert kept.token_totals is not None and full.token_totals is not None
    scale = full.token_totals.abs().max().item()
    torch.testing.assert_close(kept.token_totals, full.token_totals, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(kept.head_totals, full.head_totals, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(kept.completeness_gap, full.completeness_gap, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(kept.baseline_probability, full.baseline_probability)
    assert kept.settings["steps_per_layer"] == full.settings["steps_per_layer"]
    assert kept.probability == pytest.approx(full.probability, rel=1e-6)


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_top_k_per_head_is_the_full_tensors_with_the_exact_rest(arch):
    model = attrflow.load_model(build(arch, init_scale=0.1))
    inputs = example_inputs(arch)
    full = attrflow.attribute(model, inputs, steps=4)
    kept = attrflow.attribute(model, inputs, steps=4, keep=attrflow.Keep(top_k=5))
    assert kept.top_values is not None and kept.top_indices is not None and kept.top_rest is not None
    values = full.attributions.flatten(2).topk(5, dim=-1).values
    n = len(full.tokens)
    scale = values.abs().max().item()
    torch.testing.assert_close(kept.top_values, values, rtol=1e-4, atol=1e-5 * scale)
    kept_entries = full.attributions.flatten(2).gather(-1, kept.top_indices[..., 0] * n + kept.top_indices[..., 1])
    torch.testing.assert_close(kept_entries, values, rtol=1e-4, atol=1e-5 * scale)  # same entries (up to ties)
    rest = full.attributions.double().sum(dim=(2, 3)) - values.double().sum(-1)
    torch.testing.assert_close(kept.top_rest.double(), rest, rtol=1e-4, atol=1e-5 * scale)
    # exact by construction: what was kept plus what was dropped is the head's total
    torch.testing.assert_close(kept.top_values.double().sum(-1) + kept.top_rest.double(), kept.head_totals.double())
    top = kept.top_interactions(5)
    expected = full.top_interactions(5)
    assert list(top[["layer", "head", "from_index", "to_index"]].itertuples(index=False)) == list(
        expected[["layer", "head", "from_index", "to_index"]].itertuples(index=False)
    )
    torch.testing.assert_close(kept.head_scores(), full.head_scores(), rtol=1e-4, atol=1e-5 * scale)
    with pytest.raises(InvalidInputError, match="top 5 interactions.*top_k=6"):
        kept.top_interactions(6)


def test_the_missing_tensor_says_how_to_get_it(tmp_path):
    model = attrflow.load_model(build("bert"))
    kept = attrflow.attribute(model, example_inputs("bert"), steps=2, keep="tokens")
    with pytest.raises(InvalidInputError, match="keep='full'"):
        _ = kept.attributions
    with pytest.raises(InvalidInputError, match="attentions"):
        _ = kept.attentions
    assert kept.settings["keep"] == {"tokens": True, "heads": True, "top_k": 0}
    assert kept.num_heads == 4 and kept.num_layers == 3
    loaded = attrflow.load_result(kept.save(tmp_path / "kept.safetensors"))
    assert not loaded.has_full
    torch.testing.assert_close(loaded.token_totals, kept.token_totals)
    topped = attrflow.attribute(model, example_inputs("bert"), steps=2, keep=attrflow.Keep(top_k=3))
    again = attrflow.load_result(topped.save(tmp_path / "top.safetensors"))
    torch.testing.assert_close(again.top_indices, topped.top_indices)


@pytest.mark.parametrize("batch_size", [1, 2, None])
def test_kept_results_do_not_depend_on_the_rows_per_pass(batch_size):
    model = attrflow.load_model(build("llama", init_scale=0.1))
    inputs = example_inputs("llama")
    reference = attrflow.attribute(model, inputs, steps=4, keep=attrflow.Keep(top_k=3))
    chunked = attrflow.attribute(model, inputs, steps=4, keep=attrflow.Keep(top_k=3), batch_size=batch_size)
    torch.testing.assert_close(chunked.token_totals, reference.token_totals, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(chunked.top_values, reference.top_values, rtol=1e-5, atol=1e-9)
    if batch_size == 1:
        assert chunked.settings["passes"] > reference.settings["passes"]


def test_padding_is_left_out_of_the_kept_totals():
    model = attrflow.load_model(build("bert"))
    inputs = example_inputs("bert", length=6)
    padded = {
        "input_ids": torch.cat([inputs["input_ids"], torch.zeros(1, 3, dtype=torch.long)], 1),
        "attention_mask": torch.cat([inputs["attention_mask"], torch.zeros(1, 3, dtype=torch.long)], 1),
    }
    plain = attrflow.attribute(model, inputs, steps=3, keep=attrflow.Keep(top_k=4))
    shifted = attrflow.attribute(model, padded, steps=3, keep=attrflow.Keep(top_k=4))
    torch.testing.assert_close(shifted.token_totals, plain.token_totals, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(shifted.top_indices, plain.top_indices)


def test_streaming_passes_materialise_only_the_branched_sites(monkeypatch):
    """No pass of keep= holds the probabilities of a layer it does not attribute at (and none records them)."""
    fused, materialised = [], []
    real_fused, real_on_site = _interface._fused, _interface.Session.on_site

    def counting_fused(*args, **kwargs):
        fused.append(1)
        return real_fused(*args, **kwargs)

    def counting_on_site(self, module, probs):
        materialised.append(self.count in self.branches)
        return real_on_site(self, module, probs)

    model = attrflow.load_model(build("gpt2"))
    monkeypatch.setattr(_interface, "_fused", counting_fused)
    monkeypatch.setattr(_interface.Session, "on_site", counting_on_site)
    result = attrflow.attribute(model, example_inputs("gpt2"), steps=4, keep="tokens", batch_size=1)
    passes = result.settings["passes"]
    assert all(materialised) and len(materialised) == passes  # one branched site per pass here
    # every other site of every pass ran fused, and the blocks above a branch once more, recomputed in the backward
    above = sum(model.num_layers - 1 - layer for layer in range(model.num_layers))
    assert len(fused) == passes * (model.num_layers - 1) + above * passes // model.num_layers


def test_the_model_is_handed_back_as_it_came_also_after_an_error():
    module = build("llama")
    module.model.layers[0].self_attn.q_proj.weight.requires_grad_(False)  # a frozen part stays frozen
    flags = [p.requires_grad for p in module.parameters()]
    model = attrflow.load_model(module)
    attrflow.attribute(model, example_inputs("llama"), steps=2, keep="tokens")
    assert [p.requires_grad for p in module.parameters()] == flags
    handle = module.model.layers[2].register_forward_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        with pytest.raises(RuntimeError, match="boom"):
            attrflow.attribute(model, example_inputs("llama"), steps=2, keep="tokens")
    finally:
        handle.remove()
    assert [p.requires_grad for p in module.parameters()] == flags
    assert module.config._attn_implementation != "attrflow"


def test_full_is_refused_when_it_would_not_fit_and_the_message_says_what_to_pass(monkeypatch):
    from attrflow.methods import attribution

    model = attrflow.load_model(build("gpt2"), tokenizer=word_tokenizer())
    monkeypatch.setattr(attribution, "available_memory", lambda device: 1024)
    with pytest.raises(InvalidInputError, match=r"keep='tokens'.*Keep\(top_k"):
        attrflow.attribute(model, "the movie was not very good", steps=2)
    # the attattr token scores take the kept path by themselves, with the same numbers
    monkeypatch.undo()
    full = attrflow.token_scores(model, "the movie was not very good", "attattr", steps=2)
    monkeypatch.setattr(attribution, "available_memory", lambda device: 1024)
    kept = attrflow.token_scores(model, "the movie was not very good", "attattr", steps=2)
    assert full.matrices is not None and kept.matrices is None and kept.settings["keep"]["top_k"] == 0
    torch.testing.assert_close(kept.scores, full.scores, rtol=1e-4, atol=1e-7)
    monkeypatch.setattr(_kept, "available_memory", lambda device: 1024)
    with pytest.raises(InvalidInputError, match="one interpolation row.*shorten the input"):
        attrflow.attribute(model, "the movie was not very good", steps=2, keep="tokens")


def test_peak_memory_is_reported_and_the_estimates_scale_as_the_memory_model_says():
    from attrflow.methods.attribution import full_memory

    model = attrflow.load_model(build("llama"))
    full = attrflow.attribute(model, example_inputs("llama"), steps=4)
    assert full.settings["peak_memory"] >= 0 and full.settings["peak_memory_source"].startswith(("rss", "cuda"))
    for method in ("rollout", "gradient_l2"):  # every token_scores result (and explain's) carries its peak
        scores = attrflow.token_scores(model, example_inputs("llama"), method)
        assert scores.settings["peak_memory"] >= 0 and scores.settings["peak_memory_source"]
    encodings = {n: model.prepare({"input_ids": torch.randint(5, 20, (1, n))}) for n in (512, 1024)}
    # keep="full" grows with L·H·n²; a streaming pass with L·n·d and one branched site's H·n², so at least L times
    # less than the full tensors (here L = 3)
    ratio = full_memory(model, encodings[1024], range(3), 4) / full_memory(model, encodings[512], range(3), 4)
    assert 3.5 < ratio <= 4.0
    assert _kept.kept_pass_memory(model, encodings[1024], 1) < full_memory(model, encodings[1024], range(3), 4) / 3
