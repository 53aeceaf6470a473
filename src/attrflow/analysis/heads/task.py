"""Per-example head scores: the pure kernel :func:`score_example` and the runner task that wraps it.

One clean forward pass per example (with a gate of ones on every head, so that one backward pass gives the
Taylor scores) feeds every data ranking of :mod:`~attrflow.analysis.heads.rankings`; :class:`HeadScoresTask`
maps the kernel over a dataset through :func:`attrflow.runner.run_dataset` (resumable, local or Ray) and
:meth:`~attrflow.analysis.heads.HeadImportance.from_run` aggregates the stored table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch

from attrflow.analysis.heads.rankings import (
    CleanPass,
    ScoreOptions,
    Scorer,
    data_ranking_names,
    free_ranking_names,
    get_ranking,
)
from attrflow.data.sampling import as_example, example_inputs
from attrflow.errors import InvalidInputError, UnsupportedModelError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, Steps, check_steps
from attrflow.methods.quadrature import RULES, Rule
from attrflow.models import Encoding, Model, load_model
from attrflow.runner import Batch, DatasetTask
from attrflow.validation import TargetRule, check_choice, check_choices, check_int, target_rule

if TYPE_CHECKING:
    import pyarrow as pa

    from attrflow.data import Example

__all__ = [
    "TAYLOR_OBJECTIVES",
    "HeadScoresTask",
    "TaylorObjective",
    "check_classifier",
    "clean_pass",
    "gold_label",
    "resolve_model",
    "score_example",
]

TaylorObjective = Literal["loss", "logit-sum"]
"""What the Taylor ranking differentiates: the loss of the target (Michel et al.) or the sum of the logits."""
TAYLOR_OBJECTIVES: tuple[str, ...] = get_args(TaylorObjective)
TASK_VERSION = 1


def check_classifier(model: Model) -> None:
    """Head importance and pruning need a sequence classifier (gold labels are class indices)."""
    if model.task != "sequence-classification":
        raise UnsupportedModelError(
            f"head importance and pruning need a sequence-classification model; {model.name} is a {model.task} model"
        )


def resolve_model(model: Model | str | os.PathLike[str], *, device: str | None = None) -> Model:
    """``model`` itself, or the model a built-in name or checkpoint path names (a sequence classifier)."""
    if isinstance(model, Model):
        loaded = model
    elif isinstance(model, (str, os.PathLike)):
        loaded = load_model(model if isinstance(model, str) else Path(model), device=device)
    else:
        raise InvalidInputError(
            f"model must be an attrflow Model, a built-in model name or a checkpoint path; got {type(model).__name__}"
        )
    check_classifier(loaded)
    return loaded


def gold_label(example: Example, num_classes: int) -> int:
    """The example's label as a class index of the model, or a clear error (target='label' and accuracy need it)."""
    if not 0 <= example.label < num_classes:
        raise InvalidInputError(
            f"example {example.text!r:.60} has label {example.label!r}, not a class index in [0, {num_classes}); "
            "target='label' and pruning accuracy need gold labels (use target='predicted' for unlabelled data)"
        )
    return int(example.label)


def clean_pass(model: Model, encoding: Encoding, label: int | None, *, with_gradient: bool) -> CleanPass:
    """The clean forward pass of one input with a gate of ones on every head (connected by autograd when
    ``with_gradient``), and the largest attention probability of each head over the real tokens.

    ``label``: the target class, or None for the prediction.
    """
    gate = torch.ones(model.num_layers, model.num_heads, device=model.device, requires_grad=with_gradient)
    with torch.set_grad_enabled(with_gradient):
        forward = model.forward_pass(encoding, gate=gate)
        logits = forward.logits.float()
    attention = forward.attentions.flatten(2).amax(-1)
    target = label if label is not None else int(torch.softmax(logits.detach(), dim=-1).argmax())
    return CleanPass(model, encoding, logits, gate, attention, target)


def score_example(
    model: Model, example: Any, scorers: Sequence[Scorer], *, target: TargetRule, with_gradient: bool
) -> dict[str, Any]:
    """One run-table record: the clean pass of ``example`` and the columns of every ranking's scorer.

    Args:
        model: the classifier.
        example: anything :func:`attrflow.data.as_example` reads (``text``, ``text_pair``, ``label``).
        scorers: per-ranking scorers (:meth:`HeadRanking.scorer`); those that need the gradient come first.
        target: ``"label"`` (the example's gold label) or ``"predicted"``.
        with_gradient: keep the autograd graph from the head gate (a scorer needs it).

    Returns:
        ``tokens``, ``label`` (-1 when absent), ``target``, ``prediction``, ``probability`` (of the prediction),
        ``target_probability`` and the scorers' columns.
    """
    item = as_example(example)
    label = gold_label(item, model.num_outputs) if target == "label" else None
    clean = clean_pass(model, model.prepare(example_inputs(item)), label, with_gradient=with_gradient)
    probabilities = torch.softmax(clean.logits.detach(), dim=-1)
    prediction = int(probabilities.argmax())
    record: dict[str, Any] = {
        "tokens": list(clean.encoding.tokens),
        "label": int(item.label),
        "target": clean.target,
        "prediction": prediction,
        "probability": float(probabilities[prediction]),
        "target_probability": float(probabilities[clean.target]),
    }
    for scorer in scorers:
        record.update(scorer(clean))
    return record


class HeadScoresTask(DatasetTask):
    """Per-example head scores for :func:`~attrflow.runner.run_dataset` (one record per example).

    Columns (plus the runner's ``example_id``): ``tokens``, ``label`` (gold class, -1 when absent), ``target``
    (the explained class), ``prediction``, ``probability`` (of the prediction), ``target_probability``, and the
    columns of each data ranking (:meth:`HeadRanking.fields`): ``attention`` ``[L][H]`` (always: a free ranking,
    it comes from the clean pass every ranking needs); with ``"attattr"``: ``attattr`` ``[L][H]``,
    ``completeness_gap`` ``[L]`` and ``top_interactions`` (the ``top_k`` largest entries ``(layer, head,
    from_index, to_index, score)``, ``from`` = query token); with ``"taylor"``: ``taylor`` ``[L][H]``, the signed
    ``Σ_{i,j} A_h ⊙ ∂objective/∂A_h``.

    Args:
        model: a built-in model name or checkpoint path (loaded in :meth:`setup`: works on Ray workers), or a live
            :class:`~attrflow.Model` (local engine only: a live model cannot be sent to Ray workers).
        methods: the data rankings to compute (registered names, e.g. ``"attattr"``, ``"taylor"``).
        target: ``"label"`` (the example's gold label; the official pruning script) or ``"predicted"``
            (``"gold"``: deprecated spelling of ``"label"``).
        steps, rule: AttAttr quadrature (see :func:`attrflow.attribute`).
        taylor_objective: ``"loss"`` (Michel et al.: cross-entropy of the target) or ``"logit-sum"``.
        top_k: interactions stored per example.
        batch_size: AttAttr interpolation rows per forward pass (memory only).
        device: where a model loaded from a name or path runs.
    """

    def __init__(
        self,
        model: Model | str | os.PathLike[str],
        *,
        methods: Sequence[str] = ("attattr",),
        target: TargetRule | str = "label",
        steps: Steps = DEFAULT_STEPS,
        rule: Rule = DEFAULT_RULE,
        taylor_objective: TaylorObjective = "loss",
        top_k: int = 5,
        batch_size: int | None = None,
        device: str | None = None,
    ) -> None:
        chosen = sorted(check_choices("methods", methods, data_ranking_names(), empty=True))
        self.target: TargetRule = target_rule(target)
        check_choice("rule", rule, RULES)
        check_choice("taylor_objective", taylor_objective, TAYLOR_OBJECTIVES)
        self.options = ScoreOptions(
            steps=check_steps(steps),
            rule=rule,
            taylor_objective=taylor_objective,
            top_k=check_int("top_k", top_k, minimum=1),
            batch_size=batch_size,
        )
        if isinstance(model, Model):
            self._live: Model | None = model
            self.source = model.name
        elif isinstance(model, (str, os.PathLike)):
            self._live = None
            self.source = str(model)
        else:
            raise InvalidInputError(
                f"model must be an attrflow Model, a built-in model name or a checkpoint path; got {type(model).__name__}"
            )
        # the free rankings (attention) first: they come with the clean pass every ranking needs
        self.methods = tuple(dict.fromkeys([*free_ranking_names(), *chosen]))
        self.device = device
        self.model: Model | None = None
        self._scorers: list[Scorer] = []

    def __getstate__(self) -> dict[str, Any]:
        if self._live is not None:
            raise InvalidInputError(
                "a HeadScoresTask holding a live Model cannot be sent to Ray workers; pass the model as a built-in "
                "name or a checkpoint directory (each worker loads its own replica), or use engine='local'"
            )
        return {**self.__dict__, "model": None, "_scorers": []}

    @property
    def name(self) -> str:
        return "head-scores"

    @property
    def holds_live_model(self) -> bool:
        """Whether the task holds a live Model (it cannot be sent to Ray workers)."""
        return self._live is not None

    @property
    def with_gradient(self) -> bool:
        """Whether a ranking needs the gradient from the head gate."""
        return any(get_ranking(method).needs_gradient for method in self.methods)

    def settings(self) -> Mapping[str, Any]:
        settings: dict[str, Any] = {
            "task_version": TASK_VERSION,
            "model": self.source,
            "methods": list(self.methods),
            "target": self.target,
        }
        for method in self.methods:
            settings.update({option: getattr(self.options, option) for option in get_ranking(method).options})
        return settings

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        fields: list[tuple[str, Any]] = [
            ("tokens", pa.list_(pa.string())),
            ("label", pa.int64()),
            ("target", pa.int64()),
            ("prediction", pa.int64()),
            ("probability", pa.float64()),
            ("target_probability", pa.float64()),
        ]
        for method in self.methods:
            fields += get_ranking(method).fields()
        return pa.schema(fields)

    def setup(self) -> None:
        model = self._live if self._live is not None else resolve_model(self.source, device=self.device)
        check_classifier(model)
        self.model = model
        # the rankings that differentiate run first: their autograd graph is freed before the others run
        ordered = sorted((get_ranking(m) for m in self.methods), key=lambda ranking: not ranking.needs_gradient)
        self._scorers = [ranking.scorer(model, self.options) for ranking in ordered]

    def teardown(self) -> None:
        self.model = None
        self._scorers = []

    def process(self, batch: Batch) -> list[dict[str, Any]]:
        if self.model is None:
            raise RuntimeError("HeadScoresTask.process() called before setup()")
        model, scorers, gradient = self.model, self._scorers, self.with_gradient
        return [score_example(model, ex, scorers, target=self.target, with_gradient=gradient) for _, ex in batch]
