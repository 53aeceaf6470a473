"""Pattern mining (Hao et al. 2021, §5; the official ``run_adver_connection.py``).

For each source example: explain the predicted class with self-attention attribution over all layers, take the
single head that holds the largest attribution entry, and keep that head's two largest entries ``(query, key)``:
the example's strongest *attention pattern*. Patterns are ranked by the sum of the two scores.

:func:`strongest_entries` is the pure kernel (a tensor in, indices and scores out), :func:`mine_pattern` the
per-example function, and :class:`PatternMiningTask` wraps it for the dataset runner that :func:`mine_patterns`
drives (progress, resume, Ray).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import torch

from attrflow.analysis.triggers._common import (
    DEFAULT_MIN_SCORE,
    as_model,
    check_classifier,
    label_names,
    resolve_run_options,
    resolve_selection,
)
from attrflow.analysis.triggers.insertion import tokenize_for
from attrflow.analysis.triggers.patterns import (
    PATTERNS_VERSION,
    Pattern,
    TriggerPatterns,
    pattern_from_row,
    pattern_record,
    pattern_schema,
)
from attrflow.data import Sample, as_example
from attrflow.data import sample as take_sample
from attrflow.errors import InvalidInputError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, Steps, attribute, check_steps
from attrflow.methods.quadrature import RULES, Rule
from attrflow.models import Model, load_model
from attrflow.runner import Batch, DatasetTask, RunOptions, run_dataset
from attrflow.validation import Selection, check_choice, check_finite, check_int

__all__ = ["PatternMiningTask", "StrongestEntries", "mine_pattern", "mine_patterns", "strongest_entries"]

logger = logging.getLogger(__name__)


class StrongestEntries(NamedTuple):
    """Where an example's largest attribution entry is, and its head's two largest entries."""

    layer_row: int
    """Row of the layer in the attribution tensor."""
    head: int
    interactions: tuple[tuple[int, int], tuple[int, int]]
    """``((query, key), (query, key))``: the head's largest and second largest entries."""
    scores: tuple[float, float]


def strongest_entries(attributions: torch.Tensor) -> StrongestEntries:
    """The head holding the largest of all ``[L, H, n, n]`` attribution entries, and its two largest entries.

    Ties go to the first in (layer, head, query, key) order (the official loop keeps the first layer that reaches
    the maximum; ``torch.argmax`` returns the first maximal index, and the sort is stable).

    Args:
        attributions: ``[L, H, n, n]`` attribution scores (query rows, key columns), n ≥ 2.
    """
    _, heads, n, _ = attributions.shape
    layer_row, within = divmod(int(attributions.flatten().argmax()), heads * n * n)
    head = within // (n * n)
    head_matrix = attributions[layer_row, head].flatten()
    first, second = torch.sort(head_matrix, descending=True, stable=True).indices[:2].tolist()
    return StrongestEntries(
        layer_row=layer_row,
        head=int(head),
        interactions=(divmod(first, n), divmod(second, n)),
        scores=(float(head_matrix[first]), float(head_matrix[second])),
    )


def mine_pattern(
    model: Model,
    example: Any,
    *,
    example_id: int = 0,
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
) -> Pattern:
    """The strongest attention pattern of one example (see :class:`~attrflow.Pattern`).

    Attributes every layer's attention (``Attr(A_l) = A_l ⊙ ∫₀¹ ∂F(α·A_l)/∂A_l dα``, F = probability of the
    predicted class) and keeps the entries :func:`strongest_entries` picks.

    Args:
        model: a sequence classifier with a tokenizer.
        example: a text, a ``(text, text_pair)`` tuple, or an object with ``.text``, ``.text_pair``, ``.label``.
        example_id: the id recorded on the pattern.
        steps: quadrature points of the attribution.
        rule: quadrature rule.

    Returns:
        The example's :class:`~attrflow.Pattern`.
    """
    check_classifier(model)
    item = as_example(example)
    tokenized = tokenize_for(model, item)
    if len(tokenized.input_ids) < 2:
        raise InvalidInputError("an example has fewer than two tokens; there is no interaction to mine")
    result = attribute(model, model.prepare(tokenized.tensors()), steps=steps, rule=rule)
    strongest = strongest_entries(result.attributions)
    return Pattern(
        example_id=int(example_id),
        tokens=result.tokens,
        input_ids=tuple(tokenized.input_ids),
        segments=tokenized.segments,
        layer=int(result.layers[strongest.layer_row]),
        head=strongest.head,
        interactions=strongest.interactions,
        scores=strongest.scores,
        predicted=int(result.predicted),
        label=item.label,
        probability=float(result.probability),
        completeness_gap=float(result.completeness_gap.abs().max()),
    )


# ---------------------------------------------------------------------------------------------- the runner task
def _model_source(model: Model) -> str | None:
    """A name or path a Ray worker can load ``model`` from, if it has one."""
    from attrflow import zoo

    name = model.name
    if name in tuple(getattr(zoo, "BUILTIN_MODELS", ())) or (name and Path(name).is_dir()):
        return name
    return None


class PatternMiningTask(DatasetTask):
    """Mine one :class:`~attrflow.Pattern` per example on the dataset runner (local or Ray): wraps
    :func:`mine_pattern`.

    Args:
        model: a built-in model name or checkpoint directory (loaded in :meth:`setup`, on each worker); or an
            already loaded :class:`~attrflow.Model` for the local engine (Ray pickles the task to its workers and
            needs a name or path).
        steps: quadrature points of the attribution.
        rule: quadrature rule.
        device: where a model loaded by :meth:`setup` runs.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Model,
        *,
        steps: Steps = DEFAULT_STEPS,
        rule: Rule = DEFAULT_RULE,
        device: str | None = None,
    ) -> None:
        check_choice("rule", rule, RULES)
        self._live = model if isinstance(model, Model) else None
        self.model_name = model.name if isinstance(model, Model) else str(model)
        self.steps = check_steps(steps)
        self.rule: Rule = rule
        self.device = device
        self._model: Model | None = self._live

    @property
    def name(self) -> str:
        return "trigger-patterns"

    def __getstate__(self) -> dict[str, Any]:
        if self._live is not None:
            raise InvalidInputError(
                "a PatternMiningTask holding a loaded model cannot be sent to Ray workers; give the model as a "
                "built-in name or a checkpoint directory"
            )
        return {**self.__dict__, "_model": None}

    def settings(self) -> Mapping[str, Any]:
        return {
            "analysis": "trigger-patterns",
            "version": PATTERNS_VERSION,
            "model": self.model_name,
            "method": "attattr",
            "steps": self.steps,
            "rule": self.rule,
        }

    def schema(self) -> pa.Schema:
        return pattern_schema()

    def setup(self) -> None:
        if self._model is None:
            self._model = load_model(self.model_name, device=self.device)
        check_classifier(self._model)

    def process(self, batch: Batch) -> Sequence[Mapping[str, Any]]:
        model = self._model
        if model is None:
            raise RuntimeError("PatternMiningTask.setup() was not called")
        return [
            pattern_record(mine_pattern(model, example, example_id=eid, steps=self.steps, rule=self.rule))
            for eid, example in batch
        ]

    def teardown(self) -> None:
        if self._live is None:
            self._model = None


def _mining_task(model: Model | str | os.PathLike[str], loaded: Model, engine: str, **method: Any) -> DatasetTask:
    """The task for ``engine``: the loaded model locally; a name or path Ray workers can load from."""
    if engine != "ray":
        return PatternMiningTask(loaded, **method)
    source = str(model) if not isinstance(model, Model) else _model_source(model)
    if source is None:
        raise InvalidInputError(
            "engine='ray' loads a replica of the model on every worker, so give the model as a built-in name "
            "or a checkpoint directory (this Model was built from an object in memory)"
        )
    return PatternMiningTask(source, device=str(loaded.device), **method)


def _long_enough(dataset: Sequence[Any], chosen: Sample, model: Model, min_tokens: int) -> Sample:
    """The examples of ``chosen`` (a sample of ``dataset``) with at least ``min_tokens`` tokens, special tokens
    included."""
    if not min_tokens:
        return chosen
    kept = [
        position
        for position, example in zip(chosen.positions, chosen, strict=True)
        if len(tokenize_for(model, example).input_ids) >= min_tokens
    ]
    logger.info("%d of the %d examples have >= %d tokens", len(kept), len(chosen), min_tokens)
    return Sample(dataset, kept)


def mine_patterns(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    *,
    examples: int | None = 500,
    selection: Selection = "random",
    seed: int = 0,
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    min_score: float = DEFAULT_MIN_SCORE,
    min_tokens: int = 0,
    run: RunOptions | None = None,
    sample: Selection | None = None,
    **deprecated: Any,
) -> TriggerPatterns:
    """Mine the strongest attention pattern of each of ``examples`` examples (Hao et al. 2021, §5).

    Per example: target = the predicted class; self-attention attribution of every layer (``[L, H, n, n]``);
    the single head holding the largest entry; that head's two largest ``(query, key)`` entries with their
    scores, tokens, positions (and segments), the predicted and the gold label. The result ranks the patterns by
    the sum of the two scores; those ≥ ``min_score`` can serve as triggers (:meth:`TriggerPatterns.triggers`).

    Runs on the dataset runner: progress bar, results stored in ``run.out_dir`` as Parquet parts,
    resumable after an interruption (same arguments, same ``out_dir``), and ``engine="ray"`` to spread examples
    over Ray workers.

    Args:
        model: a :class:`~attrflow.Model`, a built-in name or a checkpoint directory. With ``engine="ray"`` the
            workers load their own replica, so the model must be a name or path (or a Model loaded from one).
        dataset: a sequence of examples with ``.text``, ``.text_pair`` (or None) and ``.label`` (int), e.g.
            from :func:`attrflow.load_dataset`; ``dataset.label_names`` names the classes when present.
        examples: how many examples (official: 500); None for all.
        selection: ``"random"`` (default) draws them without replacement with ``seed``, kept in dataset order
            (:func:`attrflow.data.sample`); ``"first"`` takes the first ``examples``, as the official scripts
            do — only representative when the dataset is not sorted (the built-in splits are sorted by label).
        seed: seed of the ``"random"`` selection.
        steps: quadrature points of the attribution.
        rule: quadrature rule (``"riemann-left"`` = the official code).
        min_score: summed score a pattern needs to become a trigger (official: 0.02).
        min_tokens: skip examples shorter than this many tokens, special tokens included (official SST-2: 15).
        run: where and how the runner runs (:class:`attrflow.RunOptions`: ``out_dir``, default a
            temporary directory without resume; ``engine``; ``address``; ``num_workers``; ``examples_per_batch``;
            ``progress``).
        sample: deprecated name of ``selection``.
        **deprecated: the runner options as separate keywords (``out_dir``, ``engine``, ``address``,
            ``num_workers``, ``batch_size`` = examples per runner batch, ``progress``): deprecated, use
            ``run``.

    Returns:
        The :class:`~attrflow.TriggerPatterns`, strongest first.
    """
    selection = resolve_selection(selection, sample)
    options = resolve_run_options(run, deprecated, caller="mine_patterns")
    min_tokens = check_int("min_tokens", min_tokens, minimum=0)
    min_score = check_finite("min_score", min_score)
    chosen = take_sample(dataset, examples, selection=selection, seed=seed)
    loaded = as_model(model)
    check_classifier(loaded)
    loaded.check_dataset(dataset)
    task = _mining_task(model, loaded, options.engine, steps=steps, rule=rule)
    subset = _long_enough(dataset, chosen, loaded, min_tokens)
    with contextlib.ExitStack() as stack:
        directory = options.out_dir
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory())
        rows = run_dataset(task, subset, out_dir=directory, **options.kwargs()).read_table().to_pylist()
    patterns = sorted((pattern_from_row(row) for row in rows), key=lambda p: (-p.score, p.example_id))
    settings = {
        **task.settings(),
        "min_score": min_score,
        "min_tokens": min_tokens,
        "examples": len(chosen),
        "selection": selection,
        "seed": seed if selection == "random" else None,
        "mined": len(patterns),
        "dataset": str(getattr(dataset, "name", type(dataset).__name__)),
        "split": getattr(dataset, "split", None),
    }
    return TriggerPatterns(tuple(patterns), label_names(dataset, loaded), settings)
