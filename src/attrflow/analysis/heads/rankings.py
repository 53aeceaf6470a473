"""The head rankings, as objects in a registry found by name (Hao et al., AAAI 2021, §4.1–4.2).

A *ranking* orders the L·H attention heads of a classifier from least to most important; pruning removes the least
important first. Each ranking is one :class:`HeadRanking` object registered under its name with a one-line
description and its paper:

- ``"attattr"`` (the paper): ``I_h = E_x[max_{i,j} Attr_h(A)_{ij}]``, the mean over examples of the largest
  self-attention attribution entry of the head (signed); F = the probability of the target class (the gold label
  by default, like the official ``prune_head_with_attr.py``, which sums over 200 dev examples: the same ranking).
- ``"taylor"`` (Michel, Levy, Neubig, NeurIPS 2019, eq. 2): ``I_h = E_x |Σ_{i,j} A_h ⊙ ∂L/∂A_h|`` with L the
  cross-entropy loss of the target, then each layer divided by its L2 norm. The inner sum is the derivative of L
  with respect to a gate ξ_h that multiplies the head's probabilities, at ξ = 1, so one backward pass gives every
  head. ``taylor_objective="logit-sum"`` back-propagates the sum of the logits, as the official AttAttr code does.
- ``"attention"`` (the paper's attention baseline): ``I_h = E_x[max_{i,j} A_h[i, j]]`` over the real tokens
  (special tokens included, padding excluded) of the clean input.
- ``"random"``: uniform random scores from ``numpy.random.default_rng(seed)`` (the floor every ranking must beat).

:func:`~attrflow.analysis.heads.head_importance`, :func:`~attrflow.analysis.heads.analyze_heads` and
``attrflow heads`` iterate this registry; a new ranking is one class decorated with :func:`register_ranking`. This module
imports nothing heavy (the command line builds its options from it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from attrflow.errors import InvalidInputError
from attrflow.validation import check_choice, check_choices

if TYPE_CHECKING:
    import pyarrow as pa
    import torch

    from attrflow.methods.attribution import Steps
    from attrflow.methods.quadrature import Rule
    from attrflow.models import Encoding, Model

__all__ = [
    "CleanPass",
    "HeadRanking",
    "Method",
    "ScoreOptions",
    "Scorer",
    "check_rankings",
    "colour_of",
    "data_ranking_names",
    "descriptions",
    "free_ranking_names",
    "get_ranking",
    "label_of",
    "list_rankings",
    "ranking_names",
    "ranking_options",
    "reference_name",
    "register_ranking",
    "unregister_ranking",
]

Method = str
"""A ranking's registered name (``"attattr"``, ``"taylor"``, ``"attention"``, ``"random"``, or one you register)."""


@dataclass(frozen=True)
class ScoreOptions:
    """The options the per-example scores depend on (each ranking declares which in :attr:`HeadRanking.options`).

    Attributes:
        steps, rule: AttAttr quadrature (see :func:`attrflow.attribute`).
        taylor_objective: ``"loss"`` (Michel et al.: cross-entropy of the target) or ``"logit-sum"``.
        top_k: AttAttr interactions stored per example.
        batch_size: AttAttr interpolation rows per forward pass (memory only).
    """

    steps: Steps
    rule: Rule
    taylor_objective: str = "loss"
    top_k: int = 5
    batch_size: int | None = None


@dataclass(frozen=True)
class CleanPass:
    """One example's clean forward pass: what every ranking reads to score its heads.

    Attributes:
        model: the classifier.
        encoding: the example's input.
        logits: ``[C]`` float32 logits; connected to ``gate`` by autograd when a ranking needs gradients.
        gate: ``[L, H]`` ones multiplying every head's probabilities (the Taylor derivative is taken at it).
        attention: ``[L, H]`` the largest attention probability of each head over the real tokens.
        target: the class the scores are about.
    """

    model: Model
    encoding: Encoding
    logits: torch.Tensor
    gate: torch.Tensor
    attention: torch.Tensor
    target: int


Scorer = Callable[[CleanPass], dict[str, Any]]
"""Per-example scoring of one ranking: run-table columns from a :class:`CleanPass`."""


class HeadRanking:
    """One way of ranking heads: a name, a description, its paper, and how its scores are made.

    Data rankings (``needs_data``) score each example (:meth:`scorer`, columns :meth:`fields` of the run table)
    and :meth:`aggregate` the per-example scores ``[N, L, H]`` into the importance ``[L, H]``; the others draw
    their scores without data (:meth:`scores_without_data`).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    paper: ClassVar[str]
    label: ClassVar[str]
    """The legend of its pruning curve."""
    colour: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    """The :class:`ScoreOptions` fields its scores depend on (kept in its settings)."""
    needs_data: ClassVar[bool] = True
    needs_gradient: ClassVar[bool] = False
    """Whether its scorer needs the clean pass's autograd graph from the head gate."""
    free: ClassVar[bool] = False
    """Whether it costs nothing beyond the clean pass (then every run computes it)."""
    baseline: ClassVar[bool] = True
    """False for the paper's own ranking (the others are compared with it)."""

    def fields(self) -> list[tuple[str, pa.DataType]]:
        """The run-table columns its scorer fills (the first one holds the ``[L][H]`` per-example scores)."""
        import pyarrow as pa

        return [(self.name, pa.list_(pa.list_(pa.float32())))]

    def scorer(self, model: Model, options: ScoreOptions) -> Scorer:
        """A per-example scoring function, built once per task replica (may hold state such as an attributor)."""
        raise InvalidInputError(f"the {self.name!r} ranking needs no pass over the data")

    def aggregate(self, per_example: np.ndarray) -> np.ndarray:
        """The ``[L, H]`` importance from the per-example scores ``[N, L, H]`` (default: the mean)."""
        return np.asarray(_checked(per_example).mean(axis=0))

    def scores_without_data(self, num_layers: int, num_heads: int, *, seed: int = 0) -> np.ndarray:
        """``[L, H]`` scores for rankings that need no data."""
        raise InvalidInputError(f"the {self.name!r} ranking is computed from data; run head_importance")

    def __repr__(self) -> str:
        return f"<head ranking {self.name!r}: {self.description} ({self.paper})>"


def _checked(per_example: np.ndarray) -> np.ndarray:
    if per_example.ndim != 3 or per_example.shape[0] == 0:
        raise InvalidInputError(f"need per-example scores [N >= 1, L, H], got shape {per_example.shape}")
    return per_example.astype(np.float64)


def _grid(values: torch.Tensor) -> list[list[float]]:
    return values.detach().float().cpu().tolist()


# ---------------------------------------------------------------------- the registry
_RANKINGS: dict[str, HeadRanking] = {}

_R = TypeVar("_R", bound=type[HeadRanking])


def register_ranking(cls: _R) -> _R:
    """Class decorator: register (an instance of) a :class:`HeadRanking` subclass under its ``name``, like
    :func:`attrflow.methods.registry.register_method` does for explanation methods.

    Raises:
        TypeError: not a HeadRanking subclass, or no name or one-line description.
        InvalidInputError: another ranking is registered under the same name (unregister it first).
    """
    if not (isinstance(cls, type) and issubclass(cls, HeadRanking)):
        raise TypeError("register_ranking decorates subclasses of attrflow.analysis.heads.HeadRanking")
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name.strip() or "," in name:
        raise TypeError(f"{cls.__name__} needs a non-empty `name` without commas")
    if not isinstance(getattr(cls, "description", None), str):
        raise TypeError(f"{cls.__name__} needs a one-line `description`")
    existing = _RANKINGS.get(name)
    if existing is not None and type(existing) is not cls:
        raise InvalidInputError(f"a head ranking named {name!r} is already registered ({type(existing).__name__})")
    _RANKINGS[name] = cls()
    return cls


def unregister_ranking(name: str) -> None:
    """Remove a registered ranking (tests and plug-ins); unknown names are ignored."""
    _RANKINGS.pop(name, None)


def get_ranking(name: str | HeadRanking) -> HeadRanking:
    """The ranking registered under ``name`` (a :class:`HeadRanking` passes through).

    Raises:
        InvalidInputError: no such ranking (the message lists the registered names).
    """
    if isinstance(name, HeadRanking):
        return name
    check_choice("method", name, ranking_names())
    return _RANKINGS[name]


def list_rankings() -> tuple[HeadRanking, ...]:
    """Every registered ranking, in registration order."""
    return tuple(_RANKINGS.values())


def ranking_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_RANKINGS)


def data_ranking_names() -> tuple[str, ...]:
    """The names of the rankings computed from a pass over the data (columns of the run table)."""
    return tuple(name for name, ranking in _RANKINGS.items() if ranking.needs_data)


def free_ranking_names() -> tuple[str, ...]:
    """The data rankings that cost nothing beyond the clean pass (every run computes them)."""
    return tuple(name for name, ranking in _RANKINGS.items() if ranking.needs_data and ranking.free)


def check_rankings(name: str, methods: Iterable[str] | str) -> tuple[str, ...]:
    """Registered ranking names, without repeats, in the given order (a comma-separated string is split)."""
    return check_choices(name, methods, ranking_names())


def reference_name(methods: Iterable[str]) -> str | None:
    """The first of ``methods`` that is not a baseline (the paper's ranking), or None."""
    return next((m for m in methods if m in _RANKINGS and not _RANKINGS[m].baseline), None)


def ranking_options() -> tuple[str, ...]:
    """Every :class:`ScoreOptions` field some registered ranking depends on."""
    return tuple(dict.fromkeys(option for ranking in _RANKINGS.values() for option in ranking.options))


def label_of(name: str) -> str:
    """The legend of a ranking (its name when it is not registered, e.g. a custom ``{name: importance}``)."""
    ranking = _RANKINGS.get(name)
    return ranking.label if ranking is not None else name


def colour_of(name: str) -> str | None:
    """The colour of a registered ranking's curve (None for other names)."""
    ranking = _RANKINGS.get(name)
    return ranking.colour if ranking is not None else None


def descriptions() -> Mapping[str, str]:
    """``{name: "description (paper)"}`` for help texts and pages."""
    return {name: f"{r.description} ({r.paper})" for name, r in _RANKINGS.items()}


# ---------------------------------------------------------------------- the four rankings
@register_ranking
class AttAttrRanking(HeadRanking):
    """Hao et al.'s ranking: the mean over examples of each head's largest attribution entry."""

    name = "attattr"
    description = "mean over examples of the head's largest self-attention attribution entry"
    paper = "Hao et al., AAAI 2021, §4.1"
    label = "AttAttr (max attribution)"
    colour = "#d62728"
    options = ("steps", "rule", "top_k")
    baseline = False

    def fields(self) -> list[tuple[str, pa.DataType]]:
        import pyarrow as pa

        interaction = pa.struct(
            [
                ("layer", pa.int32()),
                ("head", pa.int32()),
                ("from_index", pa.int32()),
                ("to_index", pa.int32()),
                ("score", pa.float32()),
            ]
        )
        return [
            *super().fields(),
            ("completeness_gap", pa.list_(pa.float32())),
            ("top_interactions", pa.list_(interaction)),
        ]

    def scorer(self, model: Model, options: ScoreOptions) -> Scorer:
        from attrflow.methods.attribution import AttentionAttributor

        attributor = AttentionAttributor(model, steps=options.steps, rule=options.rule, batch_size=options.batch_size)
        top_k = options.top_k

        def score(clean: CleanPass) -> dict[str, Any]:
            result = attributor.attribute(clean.encoding, target=clean.target)
            top = result.top_interactions(top_k)
            columns = [top[name].tolist() for name in ("layer", "head", "from_index", "to_index", "score")]
            return {
                "attattr": result.head_scores().tolist(),
                "completeness_gap": result.completeness_gap.tolist(),
                "top_interactions": [
                    {"layer": int(l), "head": int(h), "from_index": int(i), "to_index": int(j), "score": float(v)}
                    for l, h, i, j, v in zip(*columns, strict=True)
                ],
            }

        return score


@register_ranking
class TaylorRanking(HeadRanking):
    """Michel et al.'s ranking: the expected |derivative of the loss| with respect to a gate on each head."""

    name = "taylor"
    description = "mean |Σ A_h ⊙ ∂L/∂A_h| over examples, each layer scaled to unit L2 norm"
    paper = "Michel, Levy, Neubig, NeurIPS 2019"
    label = "Taylor (Michel et al.)"
    colour = "#1f77b4"
    options = ("taylor_objective",)
    needs_gradient = True

    def scorer(self, model: Model, options: ScoreOptions) -> Scorer:
        import torch

        loss = options.taylor_objective == "loss"

        def score(clean: CleanPass) -> dict[str, Any]:
            # Michel et al.: the loss of the target; the official AttAttr repository: the sum of the logits
            objective = -torch.log_softmax(clean.logits, dim=-1)[clean.target] if loss else clean.logits.sum()
            (gradient,) = torch.autograd.grad(objective, clean.gate)
            return {"taylor": _grid(gradient)}

        return score

    def aggregate(self, per_example: np.ndarray) -> np.ndarray:
        mean = np.abs(_checked(per_example)).mean(axis=0)
        norm = np.sqrt((mean**2).sum(axis=1, keepdims=True))
        return np.asarray(mean / (norm + 1e-20))


@register_ranking
class AttentionRanking(HeadRanking):
    """The attention baseline: the mean over examples of each head's largest attention probability."""

    name = "attention"
    description = "mean over examples of the head's largest attention probability"
    paper = "baseline of Hao et al., AAAI 2021, §4.1"
    label = "attention (max probability)"
    colour = "#2ca02c"
    free = True

    def scorer(self, model: Model, options: ScoreOptions) -> Scorer:
        return lambda clean: {"attention": _grid(clean.attention)}


@register_ranking
class RandomRanking(HeadRanking):
    """The floor: uniform random scores from a seeded generator."""

    name = "random"
    description = "uniform random scores from numpy.random.default_rng(seed)"
    paper = "the pruning floor"
    label = "random"
    colour = "#7f7f7f"
    needs_data = False

    def scores_without_data(self, num_layers: int, num_heads: int, *, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).random((num_layers, num_heads))
