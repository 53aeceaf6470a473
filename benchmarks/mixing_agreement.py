"""Do the context-mixing methods put more weight on the subject than raw attention and rollout? (docs/mixing.md)

On the built-in ``agreement`` model (a 6-layer pre-norm encoder that predicts the number of the verb that follows a
sentence prefix, Abnar & Zuidema's setting) the generator knows the answer: the subject noun decides the verb's
number, the attractors are nouns of the other number in between. For a seeded random sample of the test split, every
method's token scores for [CLS] (what the classifier reads) at the last layer are checked against it:

- ``subject top``: the subject scores higher than every other noun of the sentence (sentences with another noun);
  also split by the number of attractors (0, 1, 2+) and, separately, on the sentences whose subject is *not* their
  first noun (a preamble such as "the women hear that …" puts a noun first): a method that merely favours early
  words gets those wrong. The row ``first noun`` is that heuristic (score = −position), for comparison;
- ``subject share``: the subject's share of the summed |scores| over the words (special tokens left out);
- ``subject top by layer``: the same rate at every layer, for the per-layer methods.

Chance for ``subject top`` is 1 / (number of nouns), printed as ``chance``.

Usage:
    python benchmarks/mixing_agreement.py [--examples 500] [--seed 0] [--out mixing_agreement.json]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

import attrflow
from attrflow.data import sample
from attrflow.methods.context import ExplainContext
from attrflow.storage import atomic_write_json

METHODS = ("attention", "rollout", "attention-norm", "globenc", "alti", "value-zeroing", "grad-rollout", "atman")
BASELINE = "first noun"


def _bucket(attractors: int) -> str:
    return "0" if attractors == 0 else "1" if attractors == 1 else "2+"


def evaluate(examples: int, seed: int) -> dict[str, Any]:
    model = attrflow.load_model("agreement")
    dataset = attrflow.load_dataset("agreement", split="test")
    chosen = sample(dataset, examples, seed=seed)
    top: dict[str, list[bool]] = collections.defaultdict(list)
    late: dict[str, list[bool]] = collections.defaultdict(list)  # the subject is not the first noun
    by_attractors: dict[str, dict[str, list[bool]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    by_layer: dict[str, list[list[bool]]] = collections.defaultdict(list)
    share: dict[str, list[float]] = collections.defaultdict(list)
    chance: list[float] = []
    seconds: dict[str, float] = collections.defaultdict(float)
    for example in chosen:
        meta = example.meta
        context = ExplainContext(model, example.text)
        subject = meta["subject_index"] + 1  # [CLS] comes first: token position = word position + 1
        assert context.tokens[subject] == example.text.split()[meta["subject_index"]]
        others = [i + 1 for i in meta["noun_indices"] if i != meta["subject_index"]]
        words = [i for i, special in enumerate(context.encoding.special_mask) if not special]
        if others:
            chance.append(1 / (1 + len(others)))
        for name in (*METHODS, BASELINE):
            start = time.process_time()
            if name == BASELINE:
                scores = None
                overall = -torch.arange(context.n, dtype=torch.float64)
            else:
                scores = attrflow.get_method(name).compute(context)
                overall = scores.overall.double()
            seconds[name] += time.process_time() - start
            share[name].append(float(overall[subject].abs() / overall[words].abs().sum()))
            if not others:
                continue
            wins = bool(overall[subject] > overall[others].max())
            top[name].append(wins)
            by_attractors[name][_bucket(len(meta["attractor_indices"]))].append(wins)
            if min(others) < subject:
                late[name].append(wins)
            if scores is not None and scores.per_layer:
                by_layer[name].append([bool(row[subject] > row[others].max()) for row in scores.scores])
    return {
        "model": "agreement",
        "examples": len(chosen),
        "seed": seed,
        "with_other_nouns": len(chance),
        "chance": statistics.fmean(chance),
        "methods": {
            name: {
                "subject_top": statistics.fmean(top[name]),
                "subject_top_not_first_noun": {
                    "rate": statistics.fmean(late[name]),
                    "wins": sum(late[name]),
                    "n": len(late[name]),
                },
                "subject_top_by_attractors": {
                    k: {"rate": statistics.fmean(v), "n": len(v)} for k, v in sorted(by_attractors[name].items())
                },
                "subject_top_by_layer": (
                    [statistics.fmean(column) for column in zip(*by_layer[name], strict=True)]
                    if by_layer[name]
                    else None
                ),
                "subject_share": statistics.fmean(share[name]),
                "cpu_seconds_per_example": seconds[name] / len(chosen),
            }
            for name in (*METHODS, BASELINE)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = evaluate(args.examples, args.seed)
    print(
        f"agreement model, {result['examples']} test sentences (seed {result['seed']}), "
        f"{result['with_other_nouns']} with another noun; chance of 'subject top' {result['chance']:.3f}"
    )
    print(
        "| method | subject top | 0 attractors | 1 | 2+ | subject not first noun | subject share | "
        "top by layer 0…5 | CPU ms/ex |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, row in result["methods"].items():
        buckets = row["subject_top_by_attractors"]
        layers = row["subject_top_by_layer"]
        late = row["subject_top_not_first_noun"]
        per_layer = " ".join(f"{v:.2f}" for v in layers) if layers else "—"
        print(
            f"| {name} | {row['subject_top']:.3f} | "
            + " | ".join(f"{buckets[k]['rate']:.3f}" if k in buckets else "—" for k in ("0", "1", "2+"))
            + f" | {late['rate']:.3f} ({late['wins']}/{late['n']}) | {row['subject_share']:.3f} | {per_layer} | "
            f"{row['cpu_seconds_per_example'] * 1e3:.1f} |"
        )
    first = next(iter(result["methods"].values()))
    counts = {k: v["n"] for k, v in first["subject_top_by_attractors"].items()}
    print(
        f"(sentences per attractor bucket: {counts}; subject not the first noun: {first['subject_top_not_first_noun']['n']})"
    )
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
