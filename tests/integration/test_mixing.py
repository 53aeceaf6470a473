"""Context mixing (attention-norm, GlobEnc, ALTI, value zeroing), gradient-weighted rollout and AtMan, each checked
against an independent naive implementation written here from its specification (the project's MIXING.md; Chefer et
al. 2021; Deiseroth et al. 2023), in float64, on tiny models: the naive code reads the stock model's modules by
their paths and runs the model with its own attention, never attrflow's."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
import transformers as T

import attrflow
from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.testing import VOCAB, build, word_tokenizer

TEXT = "the movie was not very good"
NORM = ("attention-norm", "globenc", "alti")
MIXING = (*NORM, "value-zeroing")


def _load(name: str, *, seed: int = 0) -> attrflow.Model:
    return attrflow.load_model(build(name, init_scale=0.2, seed=seed).double().eval(), tokenizer=word_tokenizer())


@pytest.fixture(scope="module")
def models() -> dict[str, attrflow.Model]:
    return {name: _load(name) for name in ("bert", "roberta", "gpt2", "llama", "qwen2", "roberta-prelayernorm")}


def _inputs(model: attrflow.Model) -> dict[str, torch.Tensor]:
    return dict(model.prepare(TEXT).inputs)


def _center(vectors: torch.Tensor) -> torch.Tensor:
    return vectors - vectors.mean(dim=-1, keepdim=True)


def _alti(T_: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MIXING.md §3: c = max(0, ‖y‖₁ − ‖T − y + 1e-6‖₁), rows normalised (torch's pairwise_distance, as the code)."""
    distance = F.pairwise_distance(T_, y.unsqueeze(1).expand_as(T_), p=1)
    c = (y.abs().sum(-1, keepdim=True) - distance).clamp_min(0.0)
    return c / c.sum(-1, keepdim=True)


def _summands(alpha: torch.Tensor, f: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Z_ij = Σ_h α^h_ij f^h(x_j) and R = Z + [i = j]·x_j."""
    Z = torch.einsum("hij,hjd->ijd", alpha, f)
    R = Z.clone()
    n = x.shape[0]
    R[range(n), range(n)] += x
    return Z, R


# ------------------------------------------------------------------------------------------ naive oracles
def _post_norm_layers(model: torch.nn.Module) -> list[tuple]:
    """Per layer ``(query, key, value, dense, LN1, FFN, LN2)``, by each architecture's own module paths."""
    if isinstance(model, T.AlbertForSequenceClassification):
        layer = model.albert.encoder.albert_layer_groups[0].albert_layers[0]  # one layer, shared by all
        a = layer.attention
        return [(a.query, a.key, a.value, a.dense, a.LayerNorm, layer.ff_chunk, layer.full_layer_layer_norm)] * (
            model.config.num_hidden_layers
        )
    if isinstance(model, T.DistilBertForSequenceClassification):
        return [
            (
                b.attention.q_lin,
                b.attention.k_lin,
                b.attention.v_lin,
                b.attention.out_lin,
                b.sa_layer_norm,
                b.ffn,
                b.output_layer_norm,
            )
            for b in model.distilbert.transformer.layer
        ]
    return [
        (
            b.attention.self.query,
            b.attention.self.key,
            b.attention.self.value,
            b.attention.output.dense,
            b.attention.output.LayerNorm,
            lambda h, b=b: b.output.dense(b.intermediate(h)),
            b.output.LayerNorm,
        )
        for b in model.base_model.encoder.layer
    ]


@torch.no_grad()
def naive_post_norm(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """attention-norm, GlobEnc, ALTI of every layer of a post-LayerNorm encoder, literally MIXING.md §1–3."""
    hidden = model(**inputs, output_hidden_states=True).hidden_states
    out: dict[str, list[torch.Tensor]] = {name: [] for name in NORM}
    H = model.config.num_attention_heads
    for l, (query, key, value, dense, ln1, ffn, ln2) in enumerate(_post_norm_layers(model)):
        x = hidden[l][0]
        n, d = x.shape
        dh = d // H
        q, k, v = ((x @ m.weight.T + m.bias).view(n, H, dh).transpose(0, 1) for m in (query, key, value))
        alpha = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dh), dim=-1)
        f = torch.stack([v[h] @ dense.weight[:, h * dh : (h + 1) * dh].T for h in range(H)])
        Z, R = _summands(alpha, f, x)
        u = R.sum(dim=1) + dense.bias
        h1 = ln1(u)
        w = ffn(h1) + h1
        torch.testing.assert_close(ln2(w), hidden[l + 1][0])  # the oracle's algebra is the model's layer
        out["attention-norm"].append(Z.norm(dim=-1))
        P = ln1.weight * _center(R) / torch.sqrt(u.var(-1, unbiased=False) + ln1.eps)[:, None, None]
        C = ln2.weight * _center(P) / torch.sqrt(w.var(-1, unbiased=False) + ln2.eps)[:, None, None]
        out["globenc"].append(C.norm(dim=-1))
        std = u.std(-1, unbiased=False)
        T_ = ln1.weight * _center(R) / std[:, None, None]
        y = T_.sum(dim=1) + ln1.weight * _center(dense.bias) / std[:, None] + ln1.bias
        out["alti"].append(_alti(T_, y))
    return {name: torch.stack(values) for name, values in out.items()}


def _pre_norm_layers(model: torch.nn.Module) -> list[tuple]:
    """Per layer ``(LN1, values of LN1(x) → [n, H_kv·d_h], W_O as z W + b, b_O, module whose input is x + attention)``."""
    if isinstance(model, T.GPT2LMHeadModel):
        d = model.config.n_embd
        return [
            (b.ln_1, lambda z, b=b: b.attn.c_attn(z)[..., 2 * d :], b.attn.c_proj.weight, b.attn.c_proj.bias, b.ln_2)
            for b in model.transformer.h
        ]
    if isinstance(model, (T.LlamaForCausalLM, T.Qwen2ForCausalLM)):
        return [
            (
                b.input_layernorm,
                b.self_attn.v_proj,
                b.self_attn.o_proj.weight.T,
                b.self_attn.o_proj.bias,
                b.post_attention_layernorm,
            )
            for b in model.model.layers
        ]
    return [
        (
            b.attention.LayerNorm,
            b.attention.self.value,
            b.attention.output.dense.weight.T,
            b.attention.output.dense.bias,
            b.intermediate.LayerNorm,
        )
        for b in model.base_model.encoder.layer
    ]


def naive_pre_norm(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The three measures on a pre-norm block as Ferrando et al. 2023 decompose it: f(x_j) from the values of
    LN1(x_j) (bias in), the residual x_i unnormalised, y_i = Σ_j R_ij + b_O; GlobEnc has no normalisation left:
    ‖R_ij‖. The attention probabilities come from the stock model's eager attention (``output_attentions``)."""
    twin = copy.deepcopy(model)
    twin.set_attn_implementation("eager")
    with torch.no_grad():
        output = twin(**inputs, output_hidden_states=True, output_attentions=True)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in NORM}
    H = model.config.num_attention_heads
    for l, (ln1, values, weight, bias, norm2) in enumerate(_pre_norm_layers(twin)):
        with torch.no_grad():
            x = output.hidden_states[l][0]
            alpha = output.attentions[l][0]
            n = x.shape[0]
            dh = weight.shape[0] // H
            v = values(ln1(x)).view(n, -1, dh).transpose(0, 1)
            v = v.repeat_interleave(H // v.shape[0], dim=0)  # grouped-query: head h reads key/value head h // (H/H_kv)
            f = torch.stack([v[h] @ weight[h * dh : (h + 1) * dh] for h in range(H)])
            Z, R = _summands(alpha, f, x)
            y = R.sum(dim=1) + (0.0 if bias is None else bias)
            torch.testing.assert_close(y, _input_of(twin, norm2, inputs))  # the residual stream after attention
        out["attention-norm"].append(Z.norm(dim=-1))
        out["globenc"].append(R.norm(dim=-1))
        out["alti"].append(_alti(R, y))
    return {name: torch.stack(values) for name, values in out.items()}


@torch.no_grad()
def _input_of(model: torch.nn.Module, module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, args, _o: seen.append(args[0][0]))
    try:
        model(**inputs)
    finally:
        handle.remove()
    return seen[0]


def _value_site(model: torch.nn.Module) -> tuple[list[torch.nn.Module], list[torch.nn.Module], slice]:
    """The blocks, the module whose output holds each layer's values, and the values' slice of that output."""
    if isinstance(model, T.GPT2LMHeadModel):
        d = model.config.n_embd
        return list(model.transformer.h), [b.attn.c_attn for b in model.transformer.h], slice(2 * d, 3 * d)
    if isinstance(model, (T.LlamaForCausalLM, T.Qwen2ForCausalLM)):
        layers = list(model.model.layers)
        return layers, [b.self_attn.v_proj for b in layers], slice(None)
    layers = list(model.base_model.encoder.layer)
    return layers, [b.attention.self.value for b in layers], slice(None)


@torch.no_grad()
def naive_value_zeroing(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The official loop (MIXING.md §4): for every layer l and token t, rerun with token t's value vector zeroed in
    layer l (bias included, every head), read block l's own output, 1 − cos per position, clip, normalise rows."""
    blocks, value_modules, columns = _value_site(model)

    def block_output(layer: int, zero: int | None) -> torch.Tensor:
        seen: list[torch.Tensor] = []

        def zeroing(_m: torch.nn.Module, _a: object, output: torch.Tensor) -> torch.Tensor:
            output = output.clone()
            output[:, zero, columns] = 0.0
            return output

        handles = [
            blocks[layer].register_forward_hook(lambda _m, _a, o: seen.append(o[0] if isinstance(o, tuple) else o))
        ]
        if zero is not None:
            handles.append(value_modules[layer].register_forward_hook(zeroing))
        try:
            model(**inputs)
        finally:
            for handle in handles:
                handle.remove()
        return seen[0][0]

    n = inputs["input_ids"].shape[1]
    scores = torch.zeros(len(blocks), n, n, dtype=torch.float64)
    for layer in range(len(blocks)):
        clean = block_output(layer, None)
        for t in range(n):
            changed = block_output(layer, t)
            cosine = F.cosine_similarity(changed.double(), clean.double(), dim=-1)
            scores[layer, :, t] = (1 - cosine).clamp(0, 2)
    return scores / scores.sum(-1, keepdim=True)


def _rollout(matrices: torch.Tensor) -> torch.Tensor:
    joint = matrices[0]
    for layer in range(1, matrices.shape[0]):
        joint = matrices[layer] @ joint
    return joint


# ------------------------------------------------------------------------------------------ equality
@pytest.mark.parametrize("arch", ["bert", "roberta", "electra", "distilbert", "albert"])
@pytest.mark.parametrize("method", NORM)
def test_norm_measures_equal_the_naive_post_norm_oracle(models, arch, method):
    model = models[arch] if arch in models else _load(arch)
    expected = naive_post_norm(model.model, _inputs(model))[method]
    mixing = attrflow.context_mixing(model, TEXT, method=method)
    assert mixing.settings["layout"] == "post-norm"
    torch.testing.assert_close(mixing.matrices, expected, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(mixing.rollout(), _rollout(expected), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("arch", ["gpt2", "roberta-prelayernorm", "llama", "qwen2"])
@pytest.mark.parametrize("method", NORM)
def test_norm_measures_on_pre_norm_blocks_follow_ferrando_2023(models, arch, method):
    """Llama's and Qwen2's eager attention takes its softmax in float32 even for a float64 model: the oracle's
    probabilities are float32-exact there, hence the looser tolerance."""
    model = models[arch]
    expected = naive_pre_norm(model.model, _inputs(model))[method]
    mixing = attrflow.context_mixing(model, TEXT, method=method)
    assert mixing.settings["layout"] == "pre-norm"
    tolerance = 1e-5 if arch in ("llama", "qwen2") else 1e-9
    scale = float(expected.abs().max())
    torch.testing.assert_close(mixing.matrices, expected, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("arch", ["bert", "roberta", "gpt2", "llama", "qwen2"])
def test_value_zeroing_equals_the_official_loop(models, arch):
    model = models[arch]
    expected = naive_value_zeroing(model.model, _inputs(model))
    mixing = attrflow.context_mixing(model, TEXT, method="value-zeroing")
    torch.testing.assert_close(mixing.matrices, expected, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(mixing.rollout(), _rollout(expected), rtol=1e-8, atol=1e-10)


def test_value_zeroing_of_a_float32_model_is_close_to_float64():
    """The cosine in float64 (MIXING.md §4): a float32 model's value zeroing stays close to its float64 twin."""
    single = attrflow.load_model(build("bert", init_scale=0.2), tokenizer=word_tokenizer())
    double = _load("bert")
    a = attrflow.context_mixing(single, TEXT, method="value-zeroing").matrices
    b = attrflow.context_mixing(double, TEXT, method="value-zeroing").matrices
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------------------------------ properties
@pytest.mark.parametrize("arch", ["bert", "gpt2", "qwen2", "roberta-prelayernorm"])
@pytest.mark.parametrize("method", ["alti", "value-zeroing"])
def test_rows_of_alti_and_value_zeroing_sum_to_one(models, arch, method):
    mixing = attrflow.context_mixing(models[arch], TEXT, method=method)
    assert bool((mixing.matrices >= 0).all())
    torch.testing.assert_close(mixing.matrices.sum(-1), torch.ones(mixing.matrices.shape[:2], dtype=torch.float64))
    torch.testing.assert_close(mixing.rollout().sum(-1), torch.ones(len(mixing.tokens), dtype=torch.float64))


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("method", MIXING)
def test_causal_models_mix_nothing_from_later_tokens(models, arch, method):
    """≈ 0 above the diagonal. ALTI keeps the official 10⁻⁶ inside its L1 distance (MIXING.md §3), which leaves
    about d·10⁻⁶ / Σ_k c_ik on a summand that is exactly zero."""
    mixing = attrflow.context_mixing(models[arch], TEXT, method=method)
    above = mixing.matrices.triu(diagonal=1).abs().max()
    assert float(above) <= (1e-5 if method == "alti" else 1e-12) * float(mixing.matrices.abs().max())


@pytest.mark.parametrize("method", MIXING)
def test_same_numbers_for_a_sequence_alone_and_inside_a_padded_batch(models, method):
    """Right-padded BERT (as a batch pads the shorter rows), left-padded Llama (whose rotary embeddings are computed in
    float32 at the shifted absolute positions: equal up to float32 rounding)."""
    for arch, left, tolerance in (("bert", False, 1e-10), ("llama", True, 1e-6)):
        model = models[arch]
        inputs = _inputs(model)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        pad = torch.zeros(1, 3, dtype=ids.dtype)
        padded = {
            "input_ids": torch.cat([pad, ids] if left else [ids, pad], dim=1),
            "attention_mask": torch.cat([pad, mask] if left else [mask, pad], dim=1),
        }
        plain = attrflow.context_mixing(model, inputs, method=method)
        shifted = attrflow.context_mixing(model, padded, method=method)
        torch.testing.assert_close(shifted.matrices, plain.matrices, rtol=tolerance, atol=tolerance)


def test_value_zeroing_does_not_depend_on_batch_size(models):
    model = models["qwen2"]
    whole = attrflow.context_mixing(model, TEXT, method="value-zeroing")
    for batch_size in (1, 3):
        chunked = attrflow.context_mixing(model, TEXT, method="value-zeroing", batch_size=batch_size)
        torch.testing.assert_close(chunked.matrices, whole.matrices, rtol=1e-10, atol=1e-12)


def _fingerprint(model: attrflow.Model) -> tuple:
    module = model.model
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())
    flags = tuple(m.training for m in module.modules())
    return module.config._attn_implementation, hooks, flags, {k: v.clone() for k, v in module.state_dict().items()}


def _same(a: tuple, b: tuple) -> bool:
    return a[:3] == b[:3] and all(torch.equal(a[3][k], b[3][k]) for k in a[3])


@pytest.mark.parametrize("arch", ["albert", "distilbert", "llama"])
def test_the_model_comes_back_unchanged(arch):
    model = _load(arch)
    model.model.train()  # every module's own flag must come back, not just eval
    before = _fingerprint(model)
    for method in (*MIXING, "grad-rollout", "atman"):
        attrflow.token_scores(model, TEXT, method)
    assert _same(before, _fingerprint(model))


def test_the_model_comes_back_unchanged_after_an_exception_inside_a_block_rerun(models):
    model = _load("gpt2")
    model.block_structure()
    before = _fingerprint(model)
    calls = {"n": 0}

    def fail_on_rerun(_module: torch.nn.Module, args: tuple) -> None:
        calls["n"] += 1
        if calls["n"] > 1:  # the clean pass runs; the first rerun raises mid-forward
            raise RuntimeError("boom")

    handle = model.model.transformer.h[1].attn.register_forward_pre_hook(fail_on_rerun)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            attrflow.context_mixing(model, TEXT, method="value-zeroing")
    finally:
        handle.remove()
    assert _same(before, _fingerprint(model))


# ------------------------------------------------------------------------------------------ support
@pytest.fixture(scope="module")
def parallel():
    """GPT-NeoX: attention and MLP read the same input in parallel, so there is no x + attention stream."""
    torch.manual_seed(0)
    config = T.GPTNeoXConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=VOCAB
    )
    return attrflow.load_model(T.GPTNeoXForCausalLM(config).double(), tokenizer=word_tokenizer())


@pytest.fixture(scope="module")
def gemma():
    """Gemma: its RMSNorm scales by 1 + γ, neither LayerNorm nor RMSNorm as the measures define them."""
    torch.manual_seed(0)
    config = T.GemmaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        intermediate_size=64,
        vocab_size=VOCAB,
    )
    return attrflow.load_model(T.GemmaForCausalLM(config).double(), tokenizer=word_tokenizer())


@pytest.mark.parametrize("method", NORM)
def test_blocks_that_do_not_decompose_raise_the_named_error(parallel, gemma, method):
    with pytest.raises(
        UnsupportedModelError, match=rf"method '{method}' cannot explain GPTNeoXForCausalLM: .*x \+ attention"
    ):
        attrflow.token_scores(parallel, TEXT, method)
    with pytest.raises(UnsupportedModelError, match=rf"method '{method}'"):
        attrflow.context_mixing(parallel, TEXT, method=method)
    with pytest.raises(
        UnsupportedModelError, match=rf"method '{method}' cannot explain Gemma.*no LayerNorm or RMSNorm"
    ):
        attrflow.token_scores(gemma, TEXT, method)
    for model in (parallel, gemma):
        assert method not in {info.name for info in attrflow.list_methods(model=model)}


def test_value_zeroing_and_the_cheap_methods_need_only_the_blocks(parallel, gemma):
    for model in (parallel, gemma):
        mixing = attrflow.context_mixing(model, TEXT, method="value-zeroing")
        ones = torch.ones(mixing.matrices.shape[:2], dtype=torch.float64)
        torch.testing.assert_close(mixing.matrices.sum(-1), ones)
        assert {"value-zeroing", "grad-rollout", "atman"} <= {info.name for info in attrflow.list_methods(model=model)}


@pytest.mark.parametrize("arch", ["bart", "t5", "vit"])
def test_the_block_algebra_is_found_by_structure_on_other_architectures(arch):
    """No class names: the probe finds the layout of every other architecture, and the decomposition adds up to the
    block's own tensors (ALTI's reconstruction y_i of the post-norm LN1 output, checked by the probe's pass)."""
    model = _load(arch)
    structure = model.block_structure()
    assert structure.algebra_unsupported is None and structure.blocks_unsupported is None
    expected = "pre-norm" if arch in ("t5", "vit") else "post-norm"
    assert set(structure.layouts) == {expected}
    inputs = attrflow.testing.example_inputs(arch)
    for method in ("alti", "value-zeroing"):
        mixing = attrflow.context_mixing(model, inputs, method=method)
        torch.testing.assert_close(mixing.matrices.sum(-1), torch.ones(mixing.matrices.shape[:2], dtype=torch.float64))


def test_block_tensors_reconstruct_the_block(models):
    """Σ_j R_ij + b_O is the LN1 input (post-norm) resp. the residual stream after attention (pre-norm)."""
    for arch in ("bert", "qwen2"):
        model = models[arch]
        for layer in model.block_tensors(model.prepare(TEXT)).layers:
            mixed = layer.mixed().sum(dim=1) + layer.inputs.double() + layer.out_bias.double()
            target = layer.norm1.inputs if layer.layout == "post-norm" else layer.norm2.inputs
            torch.testing.assert_close(mixed, target.double(), rtol=1e-9, atol=1e-10)


def test_the_capture_passes_record_what_record_gives(models):
    """The passes seed the context's recording (no second forward): they must be the recording."""
    for arch in ("bert", "llama"):
        model = models[arch]
        encoding = model.prepare(TEXT)
        expected = model.record(encoding)
        for recording in (model.block_tensors(encoding).recording, model.block_calls(encoding).recording):
            torch.testing.assert_close(recording.logits, expected.logits, rtol=0, atol=0)
            torch.testing.assert_close(recording.attentions, expected.attentions, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ the result
def test_context_mixing_result_round_trips_and_renders(models, tmp_path):
    model = models["bert"]
    mixing = attrflow.context_mixing(model, TEXT, method="globenc", layers=[0, -1])
    assert mixing.layers == (0, 2) and mixing.matrices.shape == (2, 8, 8) and mixing.tokens[0] == "[CLS]"
    full = attrflow.context_mixing(model, TEXT, method="globenc")
    torch.testing.assert_close(mixing.matrices, full.matrices[[0, 2]])
    torch.testing.assert_close(mixing.rollout(), full.matrices[2] @ full.matrices[0])
    top = attrflow.context_mixing(model, TEXT, method="value-zeroing", layers=-1)  # runs layer 2 alone
    whole = attrflow.context_mixing(model, TEXT, method="value-zeroing")
    torch.testing.assert_close(top.matrices[0], whole.matrices[2], rtol=1e-12, atol=1e-14)
    loaded = attrflow.load_result(mixing.save(tmp_path / "m.safetensors"))
    assert isinstance(loaded, attrflow.ContextMixing) and loaded.layers == mixing.layers
    torch.testing.assert_close(loaded.matrices, mixing.matrices, rtol=0, atol=0)
    frame = mixing.to_frame()
    assert len(frame) == 2 * 8 * 8 and set(frame.columns) >= {"layer", "output_token", "input_token", "value"}
    html = mixing.to_html(tmp_path / "m.html")
    assert "globenc" in html and "[CLS]" in html and (tmp_path / "m.html").exists()
    pytest.importorskip("matplotlib")
    assert mixing.plot().axes and mixing.plot(layer=2).axes


def test_token_scores_read_the_aggregated_row(models):
    model = models["roberta"]
    for method in MIXING:
        scores = attrflow.token_scores(model, TEXT, method)
        mixing = attrflow.context_mixing(model, TEXT, method=method)
        rolled = torch.stack([_rollout(mixing.matrices[: k + 1]) for k in range(3)])
        torch.testing.assert_close(scores.scores.double(), rolled[:, 0].float().double())
        torch.testing.assert_close(scores.matrices.double(), mixing.matrices.float().double())
        row3 = attrflow.token_scores(model, TEXT, method, position=3)
        torch.testing.assert_close(row3.overall.double(), rolled[-1, 3].float().double())


def test_bad_requests_are_refused(models):
    with pytest.raises(InvalidInputError, match="method must be one of"):
        attrflow.context_mixing(models["bert"], TEXT, method="rollout")
    with pytest.raises(InvalidInputError, match="out of range"):
        attrflow.context_mixing(models["bert"], TEXT, method="alti", layers=[5])
    with pytest.raises(InvalidInputError, match="batch_size"):
        attrflow.token_scores(models["bert"], TEXT, "value-zeroing", batch_size=0)


# ------------------------------------------------------------------------------------------ the two cheap methods
def test_grad_rollout_equals_chefer_on_eager_attention(models):
    """Chefer et al. 2021: Ā = mean_h((∂logit/∂A ⊙ A)⁺), R ← R + Ā R from I, with the stock eager attention."""
    model = models["bert"]
    scores = attrflow.token_scores(model, TEXT, "grad-rollout")
    twin = copy.deepcopy(model.model)
    twin.set_attn_implementation("eager")
    out = twin(**_inputs(model), output_attentions=True)
    target = int(out.logits[0].argmax())
    grads = torch.autograd.grad(out.logits[0, target], out.attentions)
    relevance = torch.eye(len(scores.tokens), dtype=torch.float64)
    rows = []
    for attention, grad in zip(out.attentions, grads, strict=True):
        weighted = (grad[0] * attention[0]).clamp(min=0).mean(dim=0)
        relevance = relevance + weighted @ relevance
        rows.append(relevance[0].detach())
    torch.testing.assert_close(scores.scores.double(), torch.stack(rows).float().double())


def test_atman_equals_suppressing_one_column_of_scores_at_a_time(models):
    """Deiseroth et al. 2023: every layer's pre-softmax scores towards token j × 0.1, Δ log p(target)."""
    model = models["bert"]
    scores = attrflow.token_scores(model, TEXT, "atman")
    suppressed: dict[str, int | None] = {"j": None}

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        logits = query @ key.transpose(2, 3) * scaling
        if suppressed["j"] is not None:
            logits[..., suppressed["j"]] *= 0.1
        probs = torch.softmax(logits, dim=-1)
        return (probs @ value).transpose(1, 2), probs

    T.AttentionInterface.register("naive_atman", attention)
    twin = copy.deepcopy(model.model)
    twin.set_attn_implementation("naive_atman")
    inputs = _inputs(model)
    with torch.no_grad():
        base = torch.log_softmax(twin(**inputs).logits[0], -1)
        target = int(base.argmax())
        expected = []
        for j in range(inputs["input_ids"].shape[1]):
            suppressed["j"] = j
            expected.append(float(base[target] - torch.log_softmax(twin(**inputs).logits[0], -1)[target]))
    torch.testing.assert_close(scores.scores.double(), torch.tensor(expected).float().double())
