"""Masking chosen attention interactions, to test whether they carry a prediction.

Hao et al. (AAAI 2021, §4.3) argue that the interactions in the attribution tree are the ones the model relies
on. :func:`interaction_effect` tests that claim on one input: it zeroes the chosen attention entries (query i →
key j, every head of the given layers, no renormalisation — as AttAttr's baseline does) and reports the drop in
the target probability, next to masking the same number of highest-attention entries and of random entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attrflow.errors import InvalidInputError
from attrflow.models import Model

Interactions = Mapping[int, Sequence[tuple[int, int]]]

__all__ = ["InteractionEffect", "interaction_effect", "masked_probability"]


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


@dataclass(frozen=True)
class InteractionEffect:
    """Drop of the target probability when interactions are masked, next to two controls.

    Attributes:
        probability: target probability on the clean input.
        count: number of masked entries (per condition).
        chosen_drop: drop when masking the chosen interactions.
        attention_drop: drop when masking the same number of highest-attention entries (head mean) per layer.
        random_drop_mean / random_drop_std: drop when masking as many random entries per layer (several draws).
    """

    probability: float
    count: int
    chosen_drop: float
    attention_drop: float
    random_drop_mean: float
    random_drop_std: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-ready values."""
        return dict(self.__dict__)

    def _repr_html_(self) -> str:
        rows = [
            ("masked interactions (each condition)", f"{self.count}"),
            ("target probability, clean", f"{self.probability:.4f}"),
            ("drop: chosen interactions", f"{self.chosen_drop:+.4f}"),
            ("drop: as many top-attention entries", f"{self.attention_drop:+.4f}"),
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
    """Compare masking ``interactions`` with masking top-attention and random entries of the same layers.

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
    top: dict[int, list[tuple[int, int]]] = {}
    for layer, k in counts.items():
        mean = clean_pass.attentions[layer].mean(0)
        flat = torch.topk(mean.flatten(), k).indices.tolist()
        top[layer] = [divmod(int(f), n) for f in flat]
    rng = np.random.default_rng(seed)
    random_drops = []
    for _ in range(random_draws):
        drawn = {
            layer: [divmod(int(f), n) for f in rng.choice(n * n, size=k, replace=False)] for layer, k in counts.items()
        }
        random_drops.append(clean - masked_probability(model, encoding, drawn, target=target))
    return InteractionEffect(
        probability=clean,
        count=sum(counts.values()),
        chosen_drop=clean - masked_probability(model, encoding, interactions, target=target),
        attention_drop=clean - masked_probability(model, encoding, top, target=target),
        random_drop_mean=float(np.mean(random_drops)),
        random_drop_std=float(np.std(random_drops)),
    )
