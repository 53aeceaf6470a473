"""What a leaderboard run measures and with which settings: the metrics, and :class:`LeaderboardOptions` (the run's
identity, what a resumed run must match)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from attrflow.analysis.faithfulness.metrics import DEFAULT_BINS, Removal
from attrflow.analysis.faithfulness.naopc import DEFAULT_BEAM_WIDTH, DEFAULT_EXACT_MAX
from attrflow.errors import InvalidInputError
from attrflow.methods.registry import get_method
from attrflow.validation import TargetRule

__all__ = ["METRICS", "REFERENCES", "LeaderboardOptions", "Metric", "metric"]

# the Spearman references: blank-out (Abnar & Zuidema's ground truth) and the gradient's L2 norm (their summed
# gradient is rounding noise for LayerNorm models; docs/faithfulness.md)
REFERENCES: dict[str, str] = {"spearman_blankout": "blankout", "spearman_gradient": "gradient_l2"}


@dataclass(frozen=True)
class Metric:
    """One column of the leaderboard.

    Attributes:
        name: the key in ``leaderboard.json``.
        higher_is_better: its direction (decides "A beats B").
        title: a short heading.
        description: what one example's value is.
    """

    name: str
    higher_is_better: bool
    title: str
    description: str


METRICS: tuple[Metric, ...] = (
    Metric(
        "aopc_comprehensiveness",
        True,
        "AOPC comp.",
        "ERASER: p(y|x) − p(y|x without its top-k% tokens), mean over k = 10 … 100% (DeYoung et al. 2020)",
    ),
    Metric(
        "aopc_sufficiency",
        False,
        "AOPC suff.",
        "ERASER: p(y|x) − p(y|only its top-k% tokens), mean over k (lower is better)",
    ),
    Metric(
        "naopc_comprehensiveness",
        True,
        "NAOPC comp.",
        "Edin et al. 2024: AOPC removing one token at a time, most important first, rescaled by the lowest and "
        "highest AOPC any order reaches on the input (0 = worst order, 1 = best)",
    ),
    Metric(
        "naopc_sufficiency",
        False,
        "NAOPC suff.",
        "the same, least important token first (lower is better)",
    ),
    Metric("spearman_blankout", True, "ρ blank-out", "Spearman with blank-out (Abnar & Zuidema 2020, Table 1)"),
    Metric(
        "spearman_gradient",
        True,
        "ρ gradient",
        "Spearman with the input gradient's L2 norm (Abnar & Zuidema 2020, Table 2, as the L2 norm)",
    ),
    Metric(
        "sanity_spearman",
        False,
        "sanity ρ",
        "Spearman between the scores of the trained model and of the model with its top k layers re-initialised, "
        "mean over the cascade k = 1 … L (Adebayo et al. 2018; high: the method barely depends on the weights)",
    ),
    Metric(
        "subject_top_rate",
        True,
        "subject top",
        "ground truth (agreement): 1 when the subject's head noun outranks every other noun",
    ),
    Metric(
        "attractor_share",
        False,
        "attractor share",
        "ground truth (agreement): the share of the score magnitude on the attractor nouns",
    ),
)


def metric(name: str) -> Metric:
    """The metric called ``name``."""
    for item in METRICS:
        if item.name == name:
            return item
    raise KeyError(name)


@dataclass(frozen=True)
class LeaderboardOptions:
    """Everything the per-example records depend on (the run's identity).

    Attributes:
        methods: every evaluated method (registered names), baselines and references included, in table order.
        target: ``"label"`` (the gold class; the prediction for unlabelled examples) or ``"predicted"``.
        bins, removal: the ERASER AOPC protocol (the removal also serves the normalised AOPC).
        magnitude: judge signed methods by ``|s|`` (Spearman, ground truth, sanity), as the references are
            magnitudes; AOPC always ranks the signed scores.
        exclude_special: Spearman over the non-special tokens only.
        options: method options shared by every method that has them.
        method_options: options for one method only.
        naopc_ids: the examples that get the normalised AOPC (its limits cost up to 2^m or ~B·m² variants).
        exact_max, beam_width: exact limits up to this many removable tokens, a beam of this width beyond.
        sanity_ids: the examples of the randomisation test; ``sanity_depths`` how many top layers are
            re-initialised at each step of the cascade (``sanity_spearman`` is the mean over the steps).
        sanity_seed: the seed of the re-initialised weights.
        timing_ids: the examples on which each method is timed alone.
        tree: measure the attribution tree's interactions (needs the ``attattr`` method).
        tree_threshold: the tree's τ (Hao et al.: 0.4).
        random_draws: random maskings per example for the tree's random control.
        seed: the seed of the random baseline's scores and of the random maskings (mixed with each input).
        batch_size: rows per forward pass of the erasure variants (speed only).
    """

    methods: tuple[str, ...]
    target: TargetRule = "label"
    bins: tuple[float, ...] = DEFAULT_BINS
    removal: Removal = "delete"
    magnitude: bool = True
    exclude_special: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    naopc_ids: frozenset[int] = frozenset()
    exact_max: int = DEFAULT_EXACT_MAX
    beam_width: int = DEFAULT_BEAM_WIDTH
    sanity_ids: frozenset[int] = frozenset()
    sanity_depths: tuple[int, ...] = ()
    sanity_seed: int = 0
    timing_ids: frozenset[int] = frozenset()
    tree: bool = True
    tree_threshold: float = 0.4
    random_draws: int = 5
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        missing = [r for r in REFERENCES.values() if r not in self.methods]
        if missing:
            raise InvalidInputError(
                f"the leaderboard's methods must include its references {', '.join(missing)} (the Spearman metrics "
                "compare every method with them); attrflow.leaderboard adds them for you"
            )

    def options_for(self, name: str) -> dict[str, Any]:
        """The options one method runs with: the shared ones it has, then its own (``seed`` reaches ``random``)."""
        method = get_method(name)
        shared = {**self.options, "seed": self.seed} if "seed" in method.options() else dict(self.options)
        return {**method.select_options(shared), **self.method_options.get(name, {})}

    def settings(self) -> dict[str, Any]:
        """JSON-ready identity (what run.json records)."""
        return {
            "methods": list(self.methods),
            "references": dict(REFERENCES),
            "target": self.target,
            "bins": list(self.bins),
            "removal": self.removal,
            "magnitude": self.magnitude,
            "exclude_special": self.exclude_special,
            "options": {k: _plain(v) for k, v in sorted(self.options.items())},
            "method_options": {m: {k: _plain(v) for k, v in sorted(o.items())} for m, o in self.method_options.items()},
            "naopc_ids": sorted(self.naopc_ids),
            "exact_max": self.exact_max,
            "beam_width": self.beam_width,
            "sanity_ids": sorted(self.sanity_ids),
            "sanity_depths": list(self.sanity_depths),
            "sanity_seed": self.sanity_seed,
            "timing_ids": sorted(self.timing_ids),
            "tree": self.tree,
            "tree_threshold": self.tree_threshold,
            "random_draws": self.random_draws,
            "seed": self.seed,
            "per_layer": [m for m in self.methods if get_method(m).per_layer],
            "signed": [m for m in self.methods if get_method(m).signed],
            "baselines": [m for m in self.methods if get_method(m).baseline],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)
