"""Masking chosen attention interactions, to test whether they carry a prediction.

Hao et al. (AAAI 2021, §4.3) argue that the interactions in the attribution tree are the ones the model relies
on. :func:`interaction_effect` tests that claim on one input: it zeroes the chosen attention entries (query i →
key j, every head of the given layers, no renormalisation — as AttAttr's baseline does) and reports the drop in
the target probability, next to masking the same number of highest-attention entries, of the entries that carry
the most attention rollout (:func:`attrflow.flow.rollout.rollout_edge_weights`) and of random entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attrflow.errors import InvalidInputError
from attrflow.flow.rollout import rollout_edge_weights
from attrflow.models import Model

Interactions = Mapping[int, Sequence[tuple[int, int]]]

__all__ = [
    "InteractionEffect",
    "interaction_effect",
    "masked_probability",
    "random_interactions",
    "top_interactions",
]


def masked_probability(model: Model, inputs: Any, interactions: Interactions, *, target: int) -> float:
    """Probability of ``target`` with the given attention entries zeroed in every head of their layers.

    Args:
        model: an :class:`attrflow.Model`.
        inputs: any input form :meth:`Model.prepare` accepts.
        interactions: ``{layer: [(query_index, key_index), ...]}`` over the real tokens.
        target: the output whose probability is read.
    """
    encoding = model.prepare(inputs)
    with model.mask_interactions(interactions, encoding), torch.no_grad():
        logits = model.run(encoding)
    return float(torch.softmax(logits.float(), dim=-1)[0, target])


def top_interactions(weights: torch.Tensor, counts: Mapping[int, int]) -> dict[int, list[tuple[int, int]]]:
    """The ``counts[layer]`` entries of each layer with the largest ``weights[layer]`` (``[L, n, n]``), as
    ``{layer: [(query, key), ...]}`` (ties: the earlier entry in row-major order)."""
    n = int(weights.shape[-1])
    chosen: dict[int, list[tuple[int, int]]] = {}
    for layer, k in counts.items():
        flat = weights[layer].reshape(-1).double()
        order = torch.argsort(-flat, stable=True)[:k].tolist()
        chosen[layer] = [divmod(int(f), n) for f in order]
    return chosen


def random_interactions(
    n: int, counts: Mapping[int, int], rng: np.random.Generator
) -> dict[int, list[tuple[int, int]]]:
    """``counts[layer]`` distinct entries of each layer's ``n × n`` attention, drawn uniformly by ``rng``."""
    return {layer: [divmod(int(f), n) for f in rng.choice(n * n, size=k, replace=False)] for layer, k in counts.items()}


@dataclass(frozen=True)
class InteractionEffect:
    """Drop of the target probability when interactions are masked, next to two controls.

    Attributes:
        probability: target probability on the clean input.
        count: number of masked entries (per condition).
        chosen_drop: drop when masking the chosen interactions.
        attention_drop: drop when masking the same number of highest-attention entries (head mean) per layer.
        random_drop_mean / random_drop_std: drop when masking as many random entries per layer (several draws).
        rollout_drop: drop when masking as many entries per layer that carry the most of the explained position's
            attention rollout (:func:`attrflow.flow.rollout.rollout_edge_weights`).
    """

    probability: float
    count: int
    chosen_drop: float
    attention_drop: float
    random_drop_mean: float
    random_drop_std: float
    rollout_drop: float = float("nan")

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-ready values."""
        return dict(self.__dict__)

    def _repr_html_(self) -> str:
        rows = [
            ("masked interactions (each condition)", f"{self.count}"),
            ("target probability, clean", f"{self.probability:.4f}"),
            ("drop: chosen interactions", f"{self.chosen_drop:+.4f}"),
            ("drop: as many top-attention entries", f"{self.attention_drop:+.4f}"),
            ("drop: as many top-rollout entries", f"{self.rollout_drop:+.4f}"),
            ("drop: as many random entries", f"{self.random_drop_mean:+.4f} ± {self.random_drop_std:.4f}"),
        ]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>" for k, v in rows)
        return f"<table>{body}</table>"


def interaction_effect(
    model: Model,
    inputs: Any,
    interactions: Interactions,
    *,
    target: int | None = None,
    random_draws: int = 5,
    seed: int = 0,
) -> InteractionEffect:
    """Compare masking ``interactions`` with masking top-attention, top-rollout and random entries of the same layers.

    Args:
        model: an :class:`attrflow.Model`.
        inputs: any input form :meth:`Model.prepare` accepts.
        interactions: ``{layer: [(query_index, key_index), ...]}``, e.g. the edges of an attribution tree.
        target: output to read (default: the prediction).
        random_draws: how many random maskings to average.
        seed: seed of the random maskings.
    """
    if random_draws < 1:
        raise InvalidInputError(f"random_draws must be >= 1, got {random_draws}")
    encoding = model.prepare(inputs)
    with torch.no_grad():
        clean_pass = model.forward_pass(encoding)
    probabilities = torch.softmax(clean_pass.logits.float(), dim=-1)
    target = int(probabilities.argmax()) if target is None else target
    clean = float(probabilities[target])
    n = encoding.length
    counts = {layer % model.num_layers: len(set(pairs)) for layer, pairs in interactions.items() if pairs}
    attentions = clean_pass.attentions.detach().float().cpu()
    top = {}
    for layer, k in counts.items():
        mean = attentions[layer].mean(0)
        flat = torch.topk(mean.flatten(), k).indices.tolist()
        top[layer] = [divmod(int(f), n) for f in flat]
    rollout = top_interactions(rollout_edge_weights(attentions, position=encoding.output_position), counts)
    rng = np.random.default_rng(seed)
    random_drops = []
    for _ in range(random_draws):
        drawn = random_interactions(n, counts, rng)
        random_drops.append(clean - masked_probability(model, encoding, drawn, target=target))
    return InteractionEffect(
        probability=clean,
        count=sum(counts.values()),
        chosen_drop=clean - masked_probability(model, encoding, interactions, target=target),
        attention_drop=clean - masked_probability(model, encoding, top, target=target),
        random_drop_mean=float(np.mean(random_drops)),
        random_drop_std=float(np.std(random_drops)),
        rollout_drop=clean - masked_probability(model, encoding, rollout, target=target),
    )
