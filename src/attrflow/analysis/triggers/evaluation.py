"""The trigger attack (Hao et al. 2021, §5; the official ``run_adver_evaluate.py``), with a random-token control.

A pattern's word-pieces (the first pair, plus the second when its score is at least ``ratio`` × the first's;
special tokens dropped) are inserted into every evaluation example at the same *relative* positions they had in
the source example, per segment for sentence pairs (:mod:`~attrflow.analysis.triggers.insertion`). The same
trigger is used for every input (universal, non-targeted). Accuracy is reported per gold label, before and after.

The paper reports the drop but not what any insertion of that many tokens would do. attrflow adds that control:
the same number of random vocabulary tokens at the same positions, over several seeds (mean ± std).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from attrflow.analysis.triggers._common import (
    DEFAULT_CONTROL_SEEDS,
    DEFAULT_MIN_SCORE,
    DEFAULT_PAIR_RATIO,
    as_model,
    check_classifier,
    label_names,
    resolve_selection,
)
from attrflow.analysis.triggers.insertion import insert, tokenize_for
from attrflow.analysis.triggers.mining import mine_patterns
from attrflow.analysis.triggers.patterns import Pattern, Trigger, TriggerPatterns
from attrflow.analysis.triggers.report import AttackOutcome, AttackReport, accuracies
from attrflow.data import Example, as_example
from attrflow.data import sample as take_sample
from attrflow.errors import InvalidInputError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, Steps
from attrflow.methods.quadrature import Rule
from attrflow.models import Model, TokenizedText
from attrflow.runner import RunOptions
from attrflow.validation import Selection, check_int, check_optional_int

__all__ = ["attack", "control_trigger", "control_vocabulary", "trigger_attack"]

logger = logging.getLogger(__name__)

# inputs per predict_batch call in attack(): how often the progress bar moves (results do not depend on it)
_PROGRESS_CHUNK = 256
# tokens that are vocabulary placeholders rather than word-pieces: BERT's [unused17], <extra_id_0>, ...
_PLACEHOLDER = re.compile(r"^(\[[^\]]*\]|<[^>]*>)$")


# ---------------------------------------------------------------------------------------------- the control
def control_vocabulary(model: Model) -> np.ndarray:
    """Token ids a random control may use: the whole vocabulary except special tokens and placeholders."""
    tokenizer = model.tokenizer
    size = len(tokenizer)
    names = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    allowed = [i for i, name in enumerate(names) if i not in special and name and not _PLACEHOLDER.match(str(name))]
    vocab = int(model.model.config.get_text_config().vocab_size)
    return np.array([i for i in allowed if i < vocab], dtype=np.int64)


def control_trigger(model: Model, trigger: Trigger, allowed: np.ndarray, seed: Sequence[int]) -> Trigger:
    """``trigger`` with its word-pieces replaced by distinct random vocabulary tokens from ``allowed`` (never its
    own), drawn by ``numpy.random.default_rng(seed)``."""
    pool = allowed[~np.isin(allowed, np.array(trigger.token_ids, dtype=np.int64))]
    if pool.size < len(trigger):
        raise InvalidInputError("the vocabulary is too small for a random control of this trigger")
    rng = np.random.default_rng(list(seed))
    ids = rng.choice(pool, size=len(trigger), replace=False).tolist()
    return trigger.with_tokens(ids, [str(t) for t in model.tokenizer.convert_ids_to_tokens(ids)])


# ---------------------------------------------------------------------------------------------- the attack
def _choose_triggers(
    patterns: TriggerPatterns | Sequence[Pattern | Trigger], top: int, ratio: float, min_score: float | None
) -> list[Trigger]:
    if isinstance(patterns, TriggerPatterns):
        triggers = patterns.triggers(top, ratio=ratio, min_score=min_score)
    else:
        given = [p.trigger(ratio=ratio) if isinstance(p, Pattern) else p for p in patterns]
        triggers = [t for t in given if len(t)][:top]
    if not triggers:
        raise InvalidInputError(
            "no trigger to evaluate: no pattern reaches min_score with a non-special token; mine more examples "
            "or lower min_score"
        )
    return triggers


def _labelled(dataset: Sequence[Any], examples: int | None, selection: Selection, seed: int) -> list[Example]:
    """The sampled evaluation examples that carry a gold label."""
    chosen = [as_example(item) for item in take_sample(dataset, examples, selection=selection, seed=seed)]
    labelled = [example for example in chosen if example.label >= 0]
    if len(labelled) < len(chosen):
        logger.warning("skipping %d evaluation examples without a gold label", len(chosen) - len(labelled))
    if not labelled:
        raise InvalidInputError("the evaluation dataset has no labelled examples (label >= 0)")
    return labelled


class _Predictor:
    """Classifies the evaluation examples, clean or with a trigger inserted, moving a progress bar."""

    def __init__(self, model: Model, examples: Sequence[Example], *, batch_size: int, bar: Any) -> None:
        self.model = model
        self.examples = examples
        self.batch_size = batch_size
        self.bar = bar
        self._tokenized: dict[int, list[TokenizedText]] = {}

    def _inputs(self, room: int) -> list[TokenizedText]:
        # one tokenisation per trigger length: each is cut to leave room for that many tokens
        if room not in self._tokenized:
            self._tokenized[room] = [tokenize_for(self.model, example, room) for example in self.examples]
        return self._tokenized[room]

    def __call__(self, trigger: Trigger | None) -> np.ndarray:
        """``[N]`` predicted classes, clean (``trigger=None``) or with ``trigger`` inserted."""
        inputs = self._inputs(0 if trigger is None else len(trigger))
        items = [t.features() if trigger is None else insert(t, trigger).features() for t in inputs]
        predicted = []
        for start in range(0, len(items), _PROGRESS_CHUNK):
            chunk = items[start : start + _PROGRESS_CHUNK]
            predicted.append(self.model.predict_batch(chunk, batch_size=self.batch_size).argmax(dim=-1).numpy())
            self.bar.update(len(chunk))
        return np.concatenate(predicted)


def _evaluate(
    model: Model,
    triggers: Sequence[Trigger],
    examples: Sequence[Example],
    names: Sequence[str],
    *,
    control_seeds: int,
    seed: int,
    batch_size: int,
    progress: bool,
) -> tuple[tuple[AttackOutcome, ...], tuple[tuple[tuple[str, ...], ...], ...]]:
    """The outcomes of every trigger and the tokens of its control draws (``control_seeds=0``: no control)."""
    from tqdm.auto import tqdm

    labels = np.array([example.label for example in examples])
    if int(labels.max()) >= model.num_outputs:
        raise InvalidInputError(f"gold label {int(labels.max())} is outside the model's {model.num_outputs} classes")
    passes = 1 + len(triggers) * (1 + control_seeds)
    bar = tqdm(total=passes * len(examples), unit="ex", desc="attack", disable=not progress, dynamic_ncols=True)
    predict = _Predictor(model, examples, batch_size=batch_size, bar=bar)
    allowed = control_vocabulary(model) if control_seeds else np.zeros(0, dtype=np.int64)
    outcomes: list[AttackOutcome] = []
    control_tokens: list[tuple[tuple[str, ...], ...]] = []
    with contextlib.closing(bar):
        before = predict(None)
        for index, trigger in enumerate(triggers):
            after = predict(trigger)
            draws = [control_trigger(model, trigger, allowed, (seed, index, c)) for c in range(control_seeds)]
            controls = [predict(draw) for draw in draws]
            control_tokens.append(tuple(draw.tokens for draw in draws))
            outcomes.extend(accuracies(index, labels, before, after, controls, names))
            logger.info("trigger #%d %s evaluated on %d examples", index, trigger.describe(), len(examples))
    return tuple(outcomes), tuple(control_tokens)


def attack(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    patterns: TriggerPatterns | Sequence[Pattern | Trigger],
    *,
    top: int = 3,
    control: bool = True,
    control_seeds: int = DEFAULT_CONTROL_SEEDS,
    seed: int = 0,
    ratio: float = DEFAULT_PAIR_RATIO,
    min_score: float | None = None,
    examples: int | None = None,
    selection: Selection = "random",
    batch_size: int = 32,
    progress: bool = False,
    sample: Selection | None = None,
) -> AttackReport:
    """Insert each of the ``top`` triggers into every evaluation example and measure accuracy per gold label.

    Hao et al. 2021, §5 (universal, non-targeted): a trigger's word-pieces go into every example at the relative
    positions they had in the source (per segment; see :func:`~attrflow.insert_trigger`); the re-tokenised inputs
    are classified and compared with the gold labels, per gold-label subset and overall, before and after. The
    control (not in the paper) inserts the same number of distinct random vocabulary tokens (no special tokens,
    no placeholders such as ``[unused3]``, never the trigger's own) at the same positions, one draw per control
    seed shared by all examples, and reports the mean and sample std over seeds.

    Args:
        model: the classifier (a :class:`~attrflow.Model`, built-in name or directory).
        dataset: evaluation examples with ``.text``, ``.text_pair`` and ``.label``; unlabelled ones (-1) are
            skipped.
        patterns: :class:`~attrflow.TriggerPatterns` from :func:`~attrflow.mine_patterns` (its triggers with
            score ≥ min_score are used, strongest first), or patterns / triggers in the order to use them.
        top: how many triggers (the paper reports three).
        control: run the random-token control.
        control_seeds: random draws per trigger.
        seed: base seed of the control draws (draw c of trigger i uses ``[seed, i, c]``) and of the random
            selection of ``examples``.
        ratio: the second pair joins a pattern's trigger when its score ≥ ``ratio`` × the first's.
        min_score: with :class:`~attrflow.TriggerPatterns`, the summed score a pattern needs (default: its own).
        examples: evaluate on this many examples (None: all).
        selection: with ``examples``: ``"random"`` (default) draws them with ``seed``, kept in dataset order
            (:func:`attrflow.data.sample`); ``"first"`` takes the first ones (the built-in splits are sorted by
            label, so their first examples are all negative).
        batch_size: inputs per forward pass (speed only).
        progress: show a progress bar over all the evaluation passes.
        sample: deprecated name of ``selection``.

    Returns:
        The :class:`~attrflow.AttackReport`.
    """
    selection = resolve_selection(selection, sample)
    top = check_int("top", top, minimum=1)
    control_seeds = check_int("control_seeds", control_seeds, minimum=1)
    check_optional_int("examples", examples, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    loaded = as_model(model)
    check_classifier(loaded)
    loaded.check_dataset(dataset)
    triggers = _choose_triggers(patterns, top, ratio, min_score)
    labelled = _labelled(dataset, examples, selection, seed)
    names = label_names(dataset, loaded)

    outcomes, control_tokens = _evaluate(
        loaded,
        triggers,
        labelled,
        names,
        control_seeds=control_seeds if control else 0,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    settings = {
        "model": loaded.name,
        "dataset": str(getattr(dataset, "name", type(dataset).__name__)),
        "split": getattr(dataset, "split", None),
        "examples": len(labelled),
        "selection": selection,
        "top": top,
        "ratio": ratio,
        "min_score": patterns.min_score if min_score is None and isinstance(patterns, TriggerPatterns) else min_score,
        "control_seeds": control_seeds if control else 0,
        "seed": seed,
    }
    return AttackReport(tuple(triggers), outcomes, names, settings, control_tokens)


def trigger_attack(
    model: Model | str | os.PathLike[str],
    mine_dataset: Sequence[Any],
    eval_dataset: Sequence[Any],
    *,
    mine_examples: int | None = 500,
    mine_selection: Selection = "random",
    eval_examples: int | None = None,
    eval_selection: Selection = "random",
    top: int = 3,
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    min_score: float = DEFAULT_MIN_SCORE,
    control_seeds: int = DEFAULT_CONTROL_SEEDS,
    seed: int = 0,
    progress: bool = False,
    run: RunOptions | None = None,
    sample: Selection | None = None,
) -> tuple[TriggerPatterns, AttackReport]:
    """Mine patterns on ``mine_dataset`` and attack ``eval_dataset`` with the ``top`` triggers, in one call.

    A small version for a demo, ``mine_examples=40, eval_examples=200, top=1, control_seeds=3``, costs 40
    attributions and 1,000 classifications. See :func:`~attrflow.mine_patterns` and :func:`~attrflow.attack`
    for the options; ``seed`` seeds both samples and the control.

    Args:
        mine_selection: how ``mine_examples`` are taken (``"random"``, default, or ``"first"``).
        eval_selection: how ``eval_examples`` are taken (``"random"``, default, or ``"first"``).
        progress: show progress bars (mining and attack).
        run: how the mining runs (:class:`attrflow.RunOptions`; default: a temporary directory,
            the local engine, and ``progress``).
        sample: deprecated: sets both ``mine_selection`` and ``eval_selection``.

    Returns:
        ``(patterns, report)``.
    """
    if sample is not None:
        mine_selection = eval_selection = resolve_selection(
            mine_selection, sample, new_name="mine_selection= and eval_selection"
        )
    loaded = as_model(model)
    patterns = mine_patterns(
        loaded,
        mine_dataset,
        examples=mine_examples,
        selection=mine_selection,
        seed=seed,
        steps=steps,
        rule=rule,
        min_score=min_score,
        run=run if run is not None else RunOptions(progress=progress),
    )
    report = attack(
        loaded,
        eval_dataset,
        patterns,
        top=top,
        control_seeds=control_seeds,
        seed=seed,
        examples=eval_examples,
        selection=eval_selection,
        progress=progress,
    )
    return patterns, report
