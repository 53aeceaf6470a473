"""The per-example work of the leaderboard: one pure function from (model, example, options) to one flat record.

Every method computes from one shared :class:`~attrflow.methods.context.ExplainContext` (the recorded attention,
the attribution, the gradients and the blank-out variants run once for all of them, through the same functions
``faithfulness`` uses); every erasure variant of the example — the ERASER bins of every method, the one-token steps
of the normalised AOPC and the search for its limits — goes into one deduplicated, batched
:class:`~attrflow.analysis.faithfulness.metrics.Erasures`. The records hold per-example metric values; the
statistics come later (:mod:`attrflow.analysis.leaderboard.result`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from attrflow.analysis.faithfulness.evaluate import compute_methods, example_context, method_plan, ranked_scores
from attrflow.analysis.faithfulness.metrics import Erasures, erasure_curves, spearman
from attrflow.analysis.faithfulness.naopc import aopc_bounds, method_orders, normalized_aopc, step_aopc, step_rows
from attrflow.analysis.leaderboard.cost import measure
from attrflow.analysis.leaderboard.options import REFERENCES, LeaderboardOptions
from attrflow.errors import AttrflowError
from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import get_method
from attrflow.models import Model
from attrflow.results import TokenScores

__all__ = ["GroundTruth", "cascade_mean", "ground_truth", "leaderboard_example"]

NAN = math.nan


class GroundTruth:
    """Token positions of the subject's head noun, the attractors and every noun of one agreement sentence."""

    def __init__(self, subject: int, attractors: tuple[int, ...], nouns: tuple[int, ...]) -> None:
        self.subject = subject
        self.attractors = attractors
        self.nouns = nouns


def ground_truth(example: Any, tokens: tuple[str, ...], special: tuple[bool, ...]) -> GroundTruth | None:
    """The ground truth of an example whose ``meta`` names word positions (``subject_index``,
    ``attractor_indices``, ``noun_indices``, as the built-in agreement data does), mapped to token positions.

    The words are the text split on whitespace; the mapping needs one non-special token per word, each spelling its
    word (a word-level tokenizer such as the agreement model's). Returns None when the example has no such meta or
    the tokens do not map one to one (the check that makes the mapping safe).
    """
    meta = example.get("meta") if isinstance(example, Mapping) else getattr(example, "meta", None)
    if not isinstance(meta, Mapping) or "subject_index" not in meta:
        return None
    text = example.get("text") if isinstance(example, Mapping) else getattr(example, "text", None)
    if not isinstance(text, str):
        return None
    words = text.split()
    content = [i for i, s in enumerate(special) if not s]
    if len(content) != len(words) or any(tokens[p].lower() != w.lower() for p, w in zip(content, words, strict=True)):
        return None
    try:
        subject = content[int(meta["subject_index"])]
        attractors = tuple(content[int(i)] for i in meta.get("attractor_indices", ()))
        nouns = tuple(content[int(i)] for i in meta.get("noun_indices", ()))
    except (IndexError, TypeError, ValueError):
        return None
    return GroundTruth(subject, attractors, nouns)


def cascade_mean(row: np.ndarray) -> float:
    """The sanity metric of one example: the mean Spearman over the steps of the randomisation cascade (the area
    under Adebayo et al.'s cascade curve, scaled to [−1, 1]); NaN unless every step was measured."""
    return float(row.mean()) if row.size and np.isfinite(row).all() else NAN


def _judged(scores: TokenScores, vector: torch.Tensor, magnitude: bool) -> np.ndarray:
    values = vector.detach().double().cpu().numpy()
    return np.abs(values) if magnitude and get_method(scores.method).signed else values


def _plausibility(values: np.ndarray, truth: GroundTruth | None, special: np.ndarray) -> tuple[float, float, float]:
    """``(subject_top, attractor_share, subject_share)`` of one method's scores (NaN where undefined)."""
    if truth is None:
        return NAN, NAN, NAN
    others = [p for p in truth.nouns if p != truth.subject]
    top = float(all(values[truth.subject] > values[p] for p in others)) if others else NAN
    mass = np.abs(values)[~special]
    total = float(mass.sum())
    absolute = np.abs(values)
    if total <= 0:
        return top, NAN, NAN
    share = float(absolute[list(truth.attractors)].sum() / total) if truth.attractors else NAN
    return top, share, float(absolute[truth.subject] / total)


def _spearman_columns(
    record: dict[str, Any],
    results: Mapping[str, TokenScores],
    judged: Mapping[str, np.ndarray],
    mask: np.ndarray,
    options: LeaderboardOptions,
) -> None:
    for metric, reference in REFERENCES.items():
        truth = judged[reference][mask]
        for name, scores in results.items():
            record[f"{metric}.{name}"] = spearman(judged[name][mask], truth)
            layers = []
            if scores.per_layer:
                layers = [
                    spearman(_judged(scores, scores.at(l), options.magnitude)[mask], truth) for l in scores.layers
                ]
            record[f"layers_{metric}.{name}"] = layers


def _aopc_columns(
    record: dict[str, Any],
    model: Model,
    context: ExplainContext,
    ranked: Mapping[str, torch.Tensor],
    options: LeaderboardOptions,
    with_naopc: bool,
) -> None:
    special = list(context.encoding.special_mask) or [False] * context.n
    batch = Erasures(model, context.encoding, options.removal, context.target, options.batch_size)
    steps: dict[str, tuple[list[int], list[int]]] = {}
    if with_naopc:
        for name, vector in ranked.items():
            first, last = method_orders(vector.detach().double().cpu().numpy(), special)
            steps[name] = (step_rows(batch, first), step_rows(batch, last))
    curves = erasure_curves(
        model,
        context.encoding,
        ranked,
        context.target,
        options.bins,
        options.removal,
        options.batch_size,
        erasures=batch,
    )
    for name, curve in curves.items():
        record[f"comprehensiveness.{name}"] = curve.comprehensiveness.tolist()
        record[f"sufficiency.{name}"] = curve.sufficiency.tolist()
        record[f"aopc_comprehensiveness.{name}"] = curve.aopc_comprehensiveness
        record[f"aopc_sufficiency.{name}"] = curve.aopc_sufficiency
    lower = upper = NAN
    search = ""
    if with_naopc:
        bounds = aopc_bounds(batch, special, exact_max=options.exact_max, beam_width=options.beam_width)
        lower, upper, search = bounds.lower, bounds.upper, bounds.search
        probabilities = batch.probabilities()
        for name, (down, up) in steps.items():
            for metric, rows in (("comprehensiveness", down), ("sufficiency", up)):
                value = step_aopc(probabilities, rows)
                record[f"step_{metric}.{name}"] = value
                record[f"naopc_{metric}.{name}"] = normalized_aopc(value, bounds)
    else:
        for name in ranked:
            for key in ("step_comprehensiveness", "step_sufficiency", "naopc_comprehensiveness", "naopc_sufficiency"):
                record[f"{key}.{name}"] = NAN
    record.update({"naopc_lower": lower, "naopc_upper": upper, "naopc_search": search, "variants": len(batch)})


def _sanity_columns(
    record: dict[str, Any],
    context: ExplainContext,
    plan: Mapping[str, dict[str, Any]],
    judged: Mapping[str, np.ndarray],
    options: LeaderboardOptions,
    randomized: Callable[[int], Model] | None,
) -> None:
    values = {name: [NAN] * len(options.sanity_depths) for name in plan}
    if randomized is not None:
        for d, depth in enumerate(options.sanity_depths):
            other = ExplainContext(randomized(depth), context.encoding, target=context.target)
            for name, extra in plan.items():
                get_method(name).prepare(other, **extra)
            for name, extra in plan.items():
                try:
                    scores = compute_methods(other, {name: extra})[name]
                except AttrflowError:
                    continue
                vector = _judged(scores, ranked_scores(scores, -1, other.model.num_layers), options.magnitude)
                values[name][d] = spearman(judged[name], vector)
    for name, row in values.items():
        record[f"sanity.{name}"] = row
        record[f"sanity_spearman.{name}"] = cascade_mean(np.asarray(row, dtype=np.float64))


def _cost_columns(
    record: dict[str, Any],
    model: Model,
    context: ExplainContext,
    plan: Mapping[str, dict[str, Any]],
    timed: bool,
) -> None:
    target = context.target if context.target_given else None
    for name, extra in plan.items():
        seconds = cpu = memory = NAN
        if timed:

            def alone(name: str = name, extra: dict[str, Any] = extra) -> TokenScores:
                fresh = ExplainContext(model, context.encoding, target=target)
                return compute_methods(fresh, {name: extra})[name]

            _, cost = measure(alone, device=model.device)
            seconds, cpu, memory = cost.seconds, cost.cpu_seconds, cost.memory_mb
        record[f"seconds.{name}"] = seconds
        record[f"cpu_seconds.{name}"] = cpu
        record[f"memory_mb.{name}"] = memory


def _tree_columns(
    record: dict[str, Any], model: Model, context: ExplainContext, options: LeaderboardOptions, example_id: int
) -> None:
    from attrflow.analysis.interactions import masked_probability, random_interactions, top_interactions
    from attrflow.analysis.tree import attribution_tree
    from attrflow.data.sampling import example_seed
    from attrflow.flow.rollout import rollout_edge_weights

    record.update({f"tree.{k}": NAN for k in ("tree", "attention", "rollout", "random", "probability")})
    record["tree.count"] = 0
    if not options.tree or "attattr" not in options.methods:
        return
    settings = {k: v for k, v in options.options_for("attattr").items() if k != "layers"}
    tree = attribution_tree(context.attribution(**settings), threshold=options.tree_threshold)
    chosen = tree.interactions()
    counts = {layer % model.num_layers: len(set(pairs)) for layer, pairs in chosen.items() if pairs}
    if not counts:
        return
    attentions = context.attentions
    encoding, target = context.encoding, context.target
    clean = masked_probability(model, encoding, {}, target=target)
    controls = {
        "tree": chosen,
        "attention": top_interactions(attentions.mean(dim=1), counts),
        "rollout": top_interactions(rollout_edge_weights(attentions, position=encoding.output_position), counts),
    }
    for key, interactions in controls.items():
        record[f"tree.{key}"] = clean - masked_probability(model, encoding, interactions, target=target)
    rng = np.random.default_rng(example_seed(encoding.input_ids or (example_id,), options.seed))
    draws = [random_interactions(context.n, counts, rng) for _ in range(options.random_draws)]
    record["tree.random"] = float(
        np.mean([clean - masked_probability(model, encoding, d, target=target) for d in draws])
    )
    record["tree.probability"] = clean
    record["tree.count"] = sum(counts.values())


def leaderboard_example(
    model: Model,
    example_id: int,
    example: Any,
    options: LeaderboardOptions,
    *,
    randomized: Callable[[int], Model] | None = None,
) -> dict[str, Any]:
    """The record of one example: every method's per-example metric values.

    A pure function of the model, the example (and its id, which decides whether it belongs to the subsamples of
    the normalised AOPC, the sanity check and the timing) and the options.

    Args:
        model: the trained model.
        example_id: the example's id in the dataset.
        example: the example (its ``meta`` may hold the agreement ground truth).
        options: the run's options.
        randomized: ``depth → the model with its top depth layers re-initialised`` (for the sanity check).
    """
    context, gold = example_context(model, example, options.target)
    aopc_layer = model.num_layers - 1
    plan = method_plan(
        model, options.methods, options.options_for, table_layers=range(model.num_layers), aopc_layer=aopc_layer
    )
    results = compute_methods(context, plan)
    ranked = {name: ranked_scores(scores, aopc_layer, model.num_layers) for name, scores in results.items()}
    judged = {name: _judged(results[name], ranked[name], options.magnitude) for name in results}
    special = np.asarray(context.encoding.special_mask or [False] * context.n, dtype=bool)
    truth = ground_truth(example, context.tokens, tuple(special.tolist()))
    record: dict[str, Any] = {
        "label": -1 if gold is None else gold,
        "target": context.target,
        "predicted": context.predicted,
        "probability": float(context.probabilities[context.target]),
        "length": context.n,
        "attractors": -1 if truth is None else len(truth.attractors),
        "subject": -1 if truth is None else truth.subject,
    }
    mask = ~special if options.exclude_special else np.ones(context.n, dtype=bool)
    _spearman_columns(record, results, judged, mask, options)
    _aopc_columns(record, model, context, ranked, options, example_id in options.naopc_ids)
    for name in results:
        top, attractor, subject = _plausibility(judged[name], truth, special)
        record[f"subject_top_rate.{name}"] = top
        record[f"attractor_share.{name}"] = attractor
        record[f"subject_share.{name}"] = subject
        record[f"scores.{name}"] = ranked[name].detach().float().cpu().tolist()
    with_sanity = example_id in options.sanity_ids and options.sanity_depths
    _sanity_columns(record, context, plan, judged, options, randomized if with_sanity else None)
    _tree_columns(record, model, context, options, example_id)
    _cost_columns(record, model, context, plan, example_id in options.timing_ids)
    return record
