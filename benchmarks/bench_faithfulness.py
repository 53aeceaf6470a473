"""Faithfulness evaluation: attrflow vs the reference computations, side by side in one run, and the cost per example.

(a) blank-out: attrflow puts the input and its n one-token-blanked variants through one batched
    ``Model.predict_batch`` call; the reference re-evaluates every variant with its own forward pass (HF's
    own attention). Same numbers, ratio printed.
(b) integrated gradients on the embeddings: attrflow runs all quadrature points as one batch; the reference does
    one forward + backward per point (HF's own attention, left Riemann sum as the official AttAttr code).
(c) Spearman: attrflow's rank correlation vs ``scipy.stats.spearmanr``.
(d) the whole per-example protocol (every method, both references, AOPC at 10 bins), per method, and the
    prediction for a 2000-example run.
(e) integrated gradients: the adaptive Gauss–Lobatto panels (``steps="auto"``) vs uniform rules, on the
    sentences where 8 Gauss–Legendre points leave the largest completeness gap.

The model: ``--model`` (a built-in name or checkpoint directory), else a randomly initialised encoder of the
shape of Abnar & Zuidema's agreement model (6 layers, 8 heads, hidden 128, pre-LayerNorm) with a word-level
tokenizer: the cost does not depend on the weights.

Usage:
    python benchmarks/bench_faithfulness.py [--model agreement] [--examples 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
import transformers as T
from scipy import stats

import attrflow
from attrflow.analysis.faithfulness import METHODS, _evaluate, _options, spearman
from attrflow.methods.attribution import DEFAULT_RULE
from attrflow.methods.gradients import embedding_gradients

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tiny_models import WORDS, word_tokenizer


def agreement_shaped() -> attrflow.Model:
    torch.manual_seed(0)
    config = T.RobertaPreLayerNormConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=128,
        num_hidden_layers=6,
        num_attention_heads=8,
        intermediate_size=512,
        max_position_embeddings=80,
        num_labels=2,
        pad_token_id=0,
    )
    model = T.RobertaPreLayerNormForSequenceClassification(config).eval()
    return attrflow.load_model(model, tokenizer=word_tokenizer(64))


def sentences(count: int, model: attrflow.Model) -> list[str]:
    rng = random.Random(0)
    if "agreement" in model.name:
        data = attrflow.load_dataset("agreement", split="test")
        return [data[i].text for i in range(count)]
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) for _ in range(count)]


def timed(function, repeats: int = 1) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def reference_blankout(model: attrflow.Model, text: str) -> torch.Tensor:
    hf = model.model
    encoding = model.prepare(text)
    ids = encoding.inputs["input_ids"]
    unk = model.tokenizer.unk_token_id
    with torch.no_grad():
        clean = torch.softmax(hf(input_ids=ids).logits, -1)[0]
        y = int(clean.argmax())
        scores = []
        for i in range(ids.shape[1]):
            changed = ids.clone()
            changed[0, i] = unk
            scores.append(abs(float(clean[y] - torch.softmax(hf(input_ids=changed).logits, -1)[0, y])))
    return torch.tensor(scores)


def reference_ig(model: attrflow.Model, text: str, steps: int) -> torch.Tensor:
    hf = model.model
    ids = model.prepare(text).inputs["input_ids"]
    embeddings = hf.get_input_embeddings()(ids).detach()
    with torch.no_grad():
        y = int(hf(input_ids=ids).logits.argmax())
    total = torch.zeros_like(embeddings)
    for k in range(steps):
        point = (k / steps * embeddings).requires_grad_(True)
        prob = torch.softmax(hf(inputs_embeds=point).logits, -1)[0, y]
        (grad,) = torch.autograd.grad(prob, point)
        total += grad / steps
    return (embeddings * total).sum(-1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="built-in name or checkpoint (default: agreement-shaped)")
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8, help="quadrature points of (b)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = attrflow.load_model(args.model) if args.model else agreement_shaped()
    texts = sentences(args.examples, model)
    lengths = [model.prepare(t).length for t in texts]
    print(
        f"model {model.name} ({model.num_layers} layers x {model.num_heads} heads), {len(texts)} sentences, "
        f"n = {min(lengths)}..{max(lengths)} tokens (mean {statistics.mean(lengths):.1f}), {args.threads} thread(s)"
    )

    # (a) blank-out
    ours_t, ref_t, diff = [], [], 0.0
    for text in texts:
        t_ours, ours = timed(lambda text=text: attrflow.blankout_scores(model, text))
        t_ref, ref = timed(lambda text=text: reference_blankout(model, text))
        ours_t.append(t_ours)
        ref_t.append(t_ref)
        diff = max(diff, float((ours - ref).abs().max()))
    print(
        f"\n(a) blank-out per example: attrflow {statistics.mean(ours_t) * 1e3:.1f} ms, one forward per variant "
        f"{statistics.mean(ref_t) * 1e3:.1f} ms, ratio {statistics.mean(ref_t) / statistics.mean(ours_t):.1f}x; "
        f"max |difference| {diff:.1e}"
    )

    # (b) integrated gradients, riemann-left so both compute the same sum
    ours_t, ref_t, diff = [], [], 0.0
    for text in texts[: max(3, len(texts) // 4)]:
        t_ours, ours = timed(
            lambda text=text: attrflow.integrated_gradients(model, text, steps=args.steps, rule="riemann-left")
        )
        t_ref, ref = timed(lambda text=text: reference_ig(model, text, args.steps))
        ours_t.append(t_ours)
        ref_t.append(t_ref)
        diff = max(diff, float((ours - ref).abs().max()))
    print(
        f"(b) integrated gradients, {args.steps} points: attrflow {statistics.mean(ours_t) * 1e3:.1f} ms, one "
        f"pass per point {statistics.mean(ref_t) * 1e3:.1f} ms, ratio {statistics.mean(ref_t) / statistics.mean(ours_t):.1f}x; "
        f"max |difference| {diff:.1e} (includes the check pass at alpha = 1 and the F(0) row)"
    )

    # (c) Spearman
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 5, size=20).astype(float), rng.normal(size=20)) for _ in range(2000)]
    t_ours, ours = timed(lambda: [spearman(a, b) for a, b in pairs])
    t_ref, ref = timed(lambda: [stats.spearmanr(a, b).statistic for a, b in pairs])
    diff = float(np.nanmax(np.abs(np.asarray(ours) - np.asarray(ref))))
    print(
        f"(c) Spearman, 2000 pairs of 20 with ties: attrflow {t_ours * 1e3:.0f} ms, scipy {t_ref * 1e3:.0f} ms, "
        f"ratio {t_ref / t_ours:.2f}x; max |difference| {diff:.1e}"
    )

    # (d) the whole protocol per example
    bins = tuple(k / 10 for k in range(1, 11))
    layers = tuple(range(model.num_layers))
    configurations = [(m,) for m in METHODS] + [METHODS]
    print("\n(d) per-example cost of the protocol, steps=auto (each line also computes its reference and AOPC)")
    per_method = {}
    for methods in configurations:
        references = ("blankout",) if methods[0] != "blankout" else ("gradient_l2",)
        options = _options(
            methods,
            references,
            "all",
            "cls",
            "mean",
            True,
            "label",
            bins,
            "delete",
            "unk",
            -1,
            "auto",
            DEFAULT_RULE,
        )
        _evaluate(model, texts[0], options, layers, 64)
        start = time.perf_counter()
        for text in texts:
            _evaluate(model, text, options, layers, 64)
        seconds = (time.perf_counter() - start) / len(texts)
        label = "all methods" if len(methods) > 1 else methods[0]
        per_method[label] = seconds
        print(f"  {label:22s} {seconds * 1e3:7.0f} ms / example")
    total = per_method["all methods"]
    print(f"\nprediction for 2000 examples, every method: {total * 2000 / 60:.0f} min on {args.threads} thread(s)")

    # (e) integrated gradients: adaptive panels vs uniform rules, on the sentences where 8 points fail worst
    pool = sentences(max(args.examples, 100), model)
    coarse = [abs(embedding_gradients(model, t, steps=8, rule="gauss-legendre").completeness_gap) for t in pool]
    hard = [pool[i] for i in np.argsort(coarse)[::-1][:5]]
    print(f"\n(e) integrated gradients on the 5 of {len(pool)} sentences with the largest 8-point gap:")
    for label, options in (
        ("auto (panels)", {}),
        ("gauss-lobatto 32", {"steps": 32}),
        ("gauss-lobatto 128", {"steps": 128}),
    ):
        seconds, results = timed(lambda options=options: [embedding_gradients(model, t, **options) for t in hard])
        gaps = [abs(r.completeness_gap) for r in results]  # type: ignore[union-attr]
        points = [r.steps for r in results]  # type: ignore[union-attr]
        print(
            f"  {label:18s} points {min(points)}..{max(points)}, max |gap| {max(gaps):.1e}, "
            f"{seconds / len(hard) * 1e3:.0f} ms / example"
        )


if __name__ == "__main__":
    main()
