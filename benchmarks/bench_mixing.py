"""Context mixing: attrflow vs the official algorithms written naively, side by side in one run, next to one forward.

For each example (tweets of the built-in dataset's test split, drawn with a fixed seed) and model, the time of:

- one plain forward pass of the stock model (its own SDPA attention, no hooks);
- attrflow: ``attrflow.context_mixing(model, text, method=...)`` for the four measures;
- the official algorithms, written here after their code (MIXING.md lists files and lines):
  * value zeroing (``hmohebbi/ValueZeroing`` ``scoring/value_zeroing.py``): a forward with hidden states, then for
    every layer l and token t the layer module called alone on ``hidden_states[l]`` (batch 1) with token t's value
    rows zeroed (a hook on ``attention.self.value``, as ``value_layer[:, :, t] = 0``), sklearn's
    ``cosine_distances(x, y).diagonal()`` against ``hidden_states[l+1]``, rows normalised, ``compute_joint_attention``;
  * ALTI (``mt-upc/transformer-contributions`` ``src/contributions.py``): hooks on every named module, a forward with
    attentions (eager) and hidden states, then per layer the ``[H, n, n, d]`` weighted vectors, ``l_transform`` as
    the einsum with the ``d × d`` centring and γ matrices, ``-pairwise_distance``, ``normalize_contributions``
    ('min_sum'), ``compute_joint_attention``;
  * GlobEnc and attention-norm (``mohsenfayyaz/GlobEnc``, Kobayashi's ``BertNormOutput`` and the LN2 step of
    ``BertLayer``): the same capture, then every output ``BertNormOutput`` computes (the ``[H, n, n, d]`` weighted
    vectors, their norms, the residual, LN1, the mixing ratios) and the LN2 step; the rollout of N resp. N_Enc.
    The official code computes all of Kobayashi's norms in one go, so the naive attention-norm pays for them too.

Work, counted before measuring (one forward = 1; n tokens, L layers, d hidden, H heads):
- value zeroing: official 1 + L·n block calls of one row of n tokens (≈ n forwards of arithmetic, in L·n small calls);
  attrflow 1 forward + L block calls of n rows (the same arithmetic in L large calls). Batching alone cannot change
  the arithmetic: the prediction is the GEMM-efficiency and per-call gain of L large calls over L·n small ones, a
  few times on one CPU thread (more where per-call latency dominates, e.g. a GPU).
- norm-based: attrflow 1 forward (its own attention function, keeping α and V) + per layer O(n·H·d_h·d) for the
  head outputs and O(n²·H²) (attention-norm, GlobEnc: per-token Gram matrices) or O(n²·d) (ALTI) → predicted
  ≤ 1.5 forwards; official: 1 eager forward with hooks on every module + per layer O(H·n²·d) (weighted vectors)
  and, for ALTI, O(n²·d²) (the two d × d einsums).

Usage:
    python benchmarks/bench_mixing.py [--models sentiment,bert-base] [--examples 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# one thread for numpy's BLAS too (sklearn's cosine in the official loop): on a shared machine idle BLAS threads
# spin, and their CPU time would be charged to the official code (measured: 5× on 40-token inputs)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch
import torch.nn.functional as F
import transformers as T
from sklearn.metrics.pairwise import cosine_distances

import attrflow
from attrflow.data import as_example, sample

METHODS = ("attention-norm", "globenc", "alti", "value-zeroing")


# ------------------------------------------------------------------------------------------ official, naively
def compute_joint_attention(att_mat: np.ndarray) -> np.ndarray:
    """ValueZeroing / transformer-contributions ``compute_joint_attention(..., res=False)``."""
    joint = np.zeros(att_mat.shape)
    joint[0] = att_mat[0]
    for i in range(1, att_mat.shape[0]):
        joint[i] = att_mat[i].dot(joint[i - 1])
    return joint


@torch.no_grad()
def official_value_zeroing(model: Any, inputs: dict[str, torch.Tensor], *, float64: bool = True) -> np.ndarray:
    """The official loop; ``float64`` casts the two hidden states before sklearn's cosine (the official code keeps
    float32, where 1 − cos loses the digits of small changes: MIXING.md §4)."""
    outputs = model(**inputs, output_hidden_states=True)
    org_hidden_states = torch.stack(outputs["hidden_states"]).squeeze(1)
    seq_length = inputs["input_ids"].shape[1]
    layers = model.bert.encoder.layer
    score_matrix = np.zeros((len(layers), seq_length, seq_length))
    zero = {"t": -1}

    def zero_value(_module: Any, _args: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, zero["t"]] = 0.0  # value_layer[:, :, t] = 0 on every head, bias included
        return output

    for l, layer_module in enumerate(layers):
        handle = layer_module.attention.self.value.register_forward_hook(zero_value)
        try:
            for t in range(seq_length):
                zero["t"] = t
                layer_outputs = layer_module(org_hidden_states[l].unsqueeze(0), attention_mask=None)
                hidden_states = layer_outputs[0] if isinstance(layer_outputs, tuple) else layer_outputs
                x = hidden_states.squeeze().detach().cpu().numpy()
                y = org_hidden_states[l + 1].detach().cpu().numpy()
                if float64:
                    x, y = x.astype(np.float64), y.astype(np.float64)
                score_matrix[l, :, t] = cosine_distances(x, y).diagonal()
        finally:
            handle.remove()
    score_matrix = score_matrix / np.sum(score_matrix, axis=-1, keepdims=True)
    compute_joint_attention(score_matrix)
    return score_matrix


def _capture(model: Any, inputs: dict[str, torch.Tensor]) -> tuple[Any, dict[str, list[Any]], dict[str, list[Any]]]:
    """The official ``__call__``: forward hooks on every named module, a forward with attentions and hidden states."""
    func_inputs: dict[str, list[Any]] = collections.defaultdict(list)
    func_outputs: dict[str, list[Any]] = collections.defaultdict(list)

    def save_activation(name: str, _mod: Any, inp: Any, out: Any) -> None:
        func_inputs[name].append(inp)
        func_outputs[name].append(out)

    handles = [m.register_forward_hook(partial(save_activation, name)) for name, m in model.named_modules()]
    try:
        output = model(**inputs, output_hidden_states=True, output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
    return output, func_inputs, func_outputs


def _transpose_for_scores(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.view(*x.shape[:-1], heads, x.shape[-1] // heads).permute(0, 2, 1, 3)


@torch.no_grad()
def official_alti(model: Any, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    output, func_inputs, func_outputs = _capture(model, inputs)
    heads = model.config.num_attention_heads
    head_size = model.config.hidden_size // heads
    contributions, resultants = [], []
    for layer in range(model.config.num_hidden_layers):
        prefix = f"bert.encoder.layer.{layer}"
        hidden_states = output.hidden_states[layer]
        attention_probs = output.attentions[layer]
        value_layer = _transpose_for_scores(func_outputs[f"{prefix}.attention.self.value"][0], heads)
        dense_module = model.bert.encoder.layer[layer].attention.output.dense
        layer_norm = model.bert.encoder.layer[layer].attention.output.LayerNorm
        pre_ln_states = func_inputs[f"{prefix}.attention.output.LayerNorm"][0][0]
        dense = dense_module.weight.view(model.config.hidden_size, heads, head_size)
        transformed_layer = torch.einsum("bhsv,dhv->bhsd", value_layer, dense)
        weighted_layer = torch.einsum("bhks,bhsd->bhksd", attention_probs, transformed_layer)
        summed_weighted_layer = weighted_layer.sum(dim=1)
        residual = torch.einsum("sk,bsd->bskd", torch.eye(hidden_states.shape[1]), hidden_states)
        residual_weighted_layer = summed_weighted_layer + residual
        w_ln = layer_norm.weight.data

        def l_transform(x: torch.Tensor, w_ln: torch.Tensor = w_ln) -> torch.Tensor:
            ln_param_transf = torch.diag(w_ln)
            ln_mean_transf = torch.eye(w_ln.size(0)) - 1 / w_ln.size(0) * torch.ones_like(ln_param_transf)
            return torch.einsum("... e , e f , f g -> ... g", x, ln_mean_transf, ln_param_transf)

        transformed_vectors = l_transform(residual_weighted_layer)
        torch.norm(transformed_vectors, dim=-1)
        attn_output = transformed_vectors.sum(dim=2)
        dense_bias_term = l_transform(dense_module.bias)
        ln_std_coef = 1 / (pre_ln_states + layer_norm.eps).std(-1, unbiased=False).view(1, -1, 1)
        resultant = (attn_output + dense_bias_term) * ln_std_coef + layer_norm.bias
        transformed_vectors_std = l_transform(residual_weighted_layer) * ln_std_coef.unsqueeze(-1)
        torch.norm(transformed_vectors_std, dim=-1)
        importance_matrix = -F.pairwise_distance(transformed_vectors_std, resultant.unsqueeze(2), p=1)
        contributions.append(importance_matrix.squeeze(0))
        resultants.append(resultant.squeeze(0))
    contributions_t, resultant_norm = torch.stack(contributions), torch.stack(resultants).norm(p=1, dim=-1)
    # normalize_contributions(scaling='min_sum', resultant_norm=...)
    normalized = (contributions_t + resultant_norm.unsqueeze(-1)).clamp(min=0)
    normalized = normalized / normalized.sum(-1, keepdim=True)
    compute_joint_attention(normalized.numpy())
    return normalized.numpy()


@torch.no_grad()
def official_norms(model: Any, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Kobayashi's ``BertNormOutput`` (every output it computes) and GlobEnc's LN2 step, per layer; then the two
    roll-outs. Returns N (``norms[1]``) and N_Enc (``norms[4]`` after LN2) per layer."""
    output, func_inputs, func_outputs = _capture(model, inputs)
    heads = model.config.num_attention_heads
    head_size = model.config.hidden_size // heads
    n_layers, n_enc = [], []
    for layer in range(model.config.num_hidden_layers):
        prefix = f"bert.encoder.layer.{layer}"
        module = model.bert.encoder.layer[layer]
        hidden_states = output.hidden_states[layer]
        attention_probs = output.attentions[layer]
        value_layer = _transpose_for_scores(func_outputs[f"{prefix}.attention.self.value"][0], heads)
        pre_ln_states = func_inputs[f"{prefix}.attention.output.LayerNorm"][0][0]
        dense = module.attention.output.dense.weight.view(model.config.hidden_size, heads, head_size)
        transformed_layer = torch.einsum("bhsv,dhv->bhsd", value_layer, dense)
        weighted_layer = torch.einsum("bhks,bhsd->bhksd", attention_probs, transformed_layer)
        torch.norm(weighted_layer, dim=-1)
        summed_weighted_layer = weighted_layer.sum(dim=1)
        summed_weighted_norm = torch.norm(summed_weighted_layer, dim=-1)
        residual = torch.einsum("sk,bsd->bskd", torch.eye(hidden_states.shape[1]), hidden_states)
        residual_weighted_layer = summed_weighted_layer + residual
        torch.norm(residual_weighted_layer, dim=-1)
        ln = module.attention.output.LayerNorm
        mean = pre_ln_states.mean(-1, keepdim=True)
        var = (pre_ln_states - mean).pow(2).mean(-1, keepdim=True).unsqueeze(dim=2)
        each_mean = residual_weighted_layer.mean(-1, keepdim=True)
        normalized_layer = torch.div(residual_weighted_layer - each_mean, (var + ln.eps) ** (1 / 2))
        post_ln_layer = torch.einsum("bskd,d->bskd", normalized_layer, ln.weight)
        torch.norm(post_ln_layer, dim=-1)
        for summed in (summed_weighted_layer, residual_weighted_layer, post_ln_layer):  # the three mixing ratios
            preserving = torch.diagonal(summed, dim1=1, dim2=2).permute(0, 2, 1)
            mixing = torch.sum(summed, dim=2) - preserving
            torch.norm(mixing, dim=-1) / (torch.norm(mixing, dim=-1) + torch.norm(preserving, dim=-1))
        # BertLayer's LN2 step (GlobEnc)
        pre_ln2_states = func_inputs[f"{prefix}.output.LayerNorm"][0][0]
        ln2 = module.output.LayerNorm
        each_mean = post_ln_layer.mean(-1, keepdim=True)
        mean2 = pre_ln2_states.mean(-1, keepdim=True)
        var2 = (pre_ln2_states - mean2).pow(2).mean(-1, keepdim=True).unsqueeze(dim=2)
        normalized2 = torch.div(post_ln_layer - each_mean, (var2 + ln2.eps) ** (1 / 2))
        post_ln2 = torch.einsum("bskd,d->bskd", normalized2, ln2.weight)
        n_layers.append(summed_weighted_norm.squeeze(0))
        n_enc.append(torch.norm(post_ln2, dim=-1).squeeze(0))
    result = {"attention-norm": torch.stack(n_layers).numpy(), "globenc": torch.stack(n_enc).numpy()}
    for matrices in result.values():
        compute_joint_attention(matrices)
    return result


# ------------------------------------------------------------------------------------------ models
def sentiment() -> tuple[Any, Any, str]:
    model = attrflow.load_model("sentiment")
    return model.model, model.tokenizer, "sentiment (MiniLM-L6-H384, fine-tuned)"


def bert_base() -> tuple[Any, Any, str]:
    _, tokenizer, _ = sentiment()
    torch.manual_seed(0)
    model = T.BertForSequenceClassification(T.BertConfig(vocab_size=tokenizer.vocab_size, num_labels=2))
    return model, tokenizer, "BERT-base size (12 × 12 × 768), random weights"


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def run(key: str, examples: int, seed: int) -> None:
    model, tokenizer, label = {"sentiment": sentiment, "bert-base": bert_base}[key]()
    model.eval()
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")  # the official hook code reads output.attentions
    wrapped = attrflow.load_model(model, tokenizer=tokenizer)
    dataset = attrflow.load_dataset("tweets-sentiment", split="test")
    texts = [as_example(item).text for item in sample(dataset, examples, seed=seed, warn_one_class=False)]
    encodings = [dict(tokenizer(text, return_tensors="pt")) for text in texts]
    lengths = [int(e["input_ids"].shape[1]) for e in encodings]
    print(f"\n## {label}: L={wrapped.num_layers}, H={wrapped.num_heads}, tokens {lengths}")
    for method in METHODS:  # warm-up (the structure probe runs once per model)
        attrflow.context_mixing(wrapped, encodings[0], method=method)
    official: dict[str, Callable[[dict[str, torch.Tensor]], np.ndarray]] = {
        "attention-norm": lambda enc: official_norms(eager, enc)["attention-norm"],
        "globenc": lambda enc: official_norms(eager, enc)["globenc"],
        "alti": lambda enc: official_alti(eager, enc),
        "value-zeroing": lambda enc: official_value_zeroing(model, enc),
    }
    times: dict[str, list[float]] = collections.defaultdict(list)
    errors: dict[str, float] = collections.defaultdict(float)
    for enc in encodings:  # interleaved: load on the shared machine affects every method alike
        with torch.no_grad():
            times["forward"].append(timed(lambda enc=enc: model(**enc))[1])
        for method in METHODS:
            _, cpu, ours = timed(lambda enc=enc, method=method: attrflow.context_mixing(wrapped, enc, method=method))
            _, cpu_ref, reference = timed(lambda enc=enc, method=method: official[method](enc))
            times[method].append(cpu)
            times[f"official {method}"].append(cpu_ref)
            scale = float(np.abs(reference).max())
            errors[method] = max(errors[method], float(np.abs(ours.matrices.numpy() - reference).max()) / scale)
        # the official loop as shipped takes the cosine in float32 (not timed: the same loop)
        single = official_value_zeroing(model, enc, float64=False)
        errors["float32 cosine"] = max(
            errors["float32 cosine"], float(np.abs(single - official["value-zeroing"](enc)).max())
        )
    forward = statistics.median(times["forward"])
    print(f"one forward pass: {forward * 1e3:.1f} ms CPU (median over examples)")
    print(
        f"{'method':16s} {'attrflow ms':>11s} {'official ms':>11s} {'speed-up':>8s} {'attrflow/fwd':>12s} {'max rel diff':>12s}"
    )
    for method in METHODS:
        ours, ref = statistics.median(times[method]), statistics.median(times[f"official {method}"])
        print(
            f"{method:16s} {ours * 1e3:11.1f} {ref * 1e3:11.1f} {ref / ours:7.1f}x {ours / forward:11.1f}x "
            f"{errors[method]:12.1e}"
        )
    print("(CPU time of this process per example, medians; max rel diff: |attrflow − official| / max |official|)")
    print(f"value zeroing, the official float32 cosine vs float64: max |difference| {errors['float32 cosine']:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sentiment,bert-base")
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for key in args.models.split(","):
        run(key, args.examples, args.seed)


if __name__ == "__main__":
    main()
