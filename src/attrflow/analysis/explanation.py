"""One input, every view: the registered methods' token scores, the attribution and its tree, ready to render.

:func:`explain` is what ``attrflow explain``, ``attrflow demo``, the report and the explorer run. It iterates the
method registry (:func:`attrflow.list_methods`) and names no method itself: each chosen method computes from one
shared :class:`~attrflow.methods.context.ExplainContext`, so the attention is recorded once and the attribution
runs once however many methods read them. Each token-score row says how it was obtained, because "the attention to
token j" means nothing without naming the layer, the output position and the head fusion.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from attrflow.errors import InvalidInputError
from attrflow.methods.api import measured_compute
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS
from attrflow.methods.context import ExplainContext
from attrflow.methods.quadrature import Rule
from attrflow.methods.registry import Method, get_method, method_names
from attrflow.models import Model
from attrflow.results import AttentionAttribution, RecordedAttention, TokenScores
from attrflow.storage import atomic_write_json
from attrflow.validation import check_finite

if TYPE_CHECKING:
    from torch import nn

    from attrflow.analysis.tree import AttributionTree
    from attrflow.methods.targets import TargetLike

__all__ = ["Explanation", "default_methods", "explain"]

logger = logging.getLogger(__name__)


def default_methods() -> tuple[str, ...]:
    """The methods :func:`explain` runs when none are named (those registered with ``in_explain``)."""
    return tuple(name for name in method_names() if get_method(name).in_explain)


@dataclass(frozen=True, eq=False)
class Explanation:
    """Everything :func:`explain` computed for one input.

    Attributes:
        result: the attribution (when ``attattr`` ran) or the recorded attention.
        scores: each method's :class:`~attrflow.TokenScores`, by method name, in the order asked.
        tree: the attribution tree (None without ``attattr``).
        methods: the methods run.
        skipped: methods left out because they cannot explain this model, with the reason.
        probabilities: float64 ``[C]``: the model's output probabilities on the input at the explained position
            (every class, or the next-token distribution), from the forward pass the methods shared; None when
            built without one.
    """

    result: AttentionAttribution | RecordedAttention
    scores: dict[str, TokenScores] = field(default_factory=dict)
    tree: AttributionTree | None = None
    methods: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    probabilities: torch.Tensor | None = None

    @property
    def token_scores(self) -> dict[str, TokenScores]:
        """Alias of :attr:`scores` (its name before the method registry)."""
        return self.scores

    @property
    def tokens(self) -> tuple[str, ...]:
        """The input's tokens."""
        return self.result.tokens

    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        title: str | None = None,
        back: tuple[str, str] | None = None,
    ) -> str:
        """The self-contained HTML report (written to ``path`` when given); ``back`` links to an index page."""
        if isinstance(self.result, AttentionAttribution):
            return self.result.to_html(
                path, token_scores=self.scores, tree=self.tree, title=title, defaults=False, back=back
            )
        return self.result.to_html(path, token_scores=self.scores, title=title, defaults=not self.scores, back=back)

    def _repr_html_(self) -> str:
        from attrflow.viz.page import iframe

        return iframe(self.to_html())

    def explore(self, *, title: str | None = None, heads: bool | Literal["auto"] = "auto", height: int = 1100) -> Any:
        """The explorer's views of this explanation, inline (Jupyter displays it; ``.write(path)`` saves it).

        The same views as ``attrflow explore`` — token scores of every method, the flow graph, heatmaps, head
        scores, the tree — drawn from this already-computed result: no server, no network, also in a notebook's
        exported HTML. What-if edits need the server (``attrflow explore``).

        Args:
            title: the page's heading.
            heads: embed per-head matrices (``"auto"``: while they stay under 8 MB).
            height: the inline frame's height in pixels.
        """
        from attrflow.viz.explore import explore_view

        return explore_view(self, title=title, heads=heads, height=height)

    def write(
        self, path: str | os.PathLike[str], *, title: str | None = None, back: tuple[str, str] | None = None
    ) -> Path:
        """Write the report to ``path`` and return it."""
        self.to_html(path, title=title, back=back)
        return Path(path)

    def to_frame(self) -> Any:
        """One row per token, one column per method (its overall scores)."""
        import pandas as pd

        frame = pd.DataFrame({"token": list(self.tokens)})
        for name, scores in self.scores.items():
            frame[name] = scores.overall.double().numpy()
        return frame

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: tokens, prediction, every method's scores (and per-layer rows and matrices)."""
        result = self.result
        predicted = result.predicted
        label = result.target_label if isinstance(result, AttentionAttribution) else result.predicted_label
        out: dict[str, Any] = {
            "tokens": list(result.tokens),
            "special_mask": list(result.special_mask),
            "output_position": result.output_position,
            "predicted": predicted,
            "probability": float(result.probability),
            "methods": {},
            "skipped": dict(self.skipped),
        }
        if isinstance(result, AttentionAttribution):
            out["target"] = result.target
            out["target_label"] = label
            out["completeness_gap"] = [float(g) for g in result.completeness_gap.tolist()]
        else:
            out["predicted_label"] = label
        for name, scores in self.scores.items():
            entry: dict[str, Any] = {
                "description": scores.description,
                "overall": [float(v) for v in scores.overall.double().tolist()],
                "scores": scores.scores.double().tolist(),
                "layers": list(scores.layers),
                "summary": scores.summary,
                "position": scores.position,
                "completeness_gap": scores.completeness_gap,
                "diagnostics": dict(scores.diagnostics),
                "settings": dict(scores.settings),
            }
            if scores.matrices is not None:
                entry["matrices"] = scores.matrices.double().tolist()
            out["methods"][name] = entry
        if self.tree is not None:
            out["tree"] = self.tree.to_dict()
        return out

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as a JSON file (atomically)."""
        return atomic_write_json(path, self.to_dict(), indent=None)


def _chosen(methods: Sequence[str | Method] | str | None) -> tuple[list[Method], bool]:
    """The methods to run and whether the caller named them."""
    if methods is None:
        return [get_method(name) for name in default_methods()], False
    items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    chosen: list[Method] = []
    for item in items:
        if item == "":
            continue
        method = get_method(item)
        if method not in chosen:
            chosen.append(method)
    if not chosen:
        raise InvalidInputError(f"methods is empty; choose from {', '.join(method_names())}")
    return chosen, True


def explain(
    model: Model | nn.Module,
    inputs: Any,
    *,
    methods: Sequence[str | Method] | str | None = None,
    target: TargetLike = None,
    position: int | None = None,
    steps: int | Literal["auto"] = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    tree_threshold: float = 0.4,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Explanation:
    """Explain one input with every selected registered method, ready to render.

    Args:
        model: an :class:`attrflow.Model` (a transformers model is wrapped).
        inputs: a string, a ``(text, text_pair)`` tuple, or a dict of batch-1 tensors.
        methods: registered method names (a list or a comma-separated string); default those marked for explain
            (``attrflow.explain.default_methods()``: AttAttr, raw attention, rollout, flow). A named method that
            cannot explain the model is an error; a default one is skipped (see :attr:`Explanation.skipped`).
        target: output to explain (default: the prediction); causal LMs also take a continuation string or a
            ``(a, b)`` contrast (see :func:`attrflow.token_scores`).
        position: the output position attention-derived methods read (default: the model's explained position).
        steps, rule: the quadrature of every method that integrates (AttAttr, integrated gradients).
        tree_threshold: τ of the attribution tree (drawn when ``attattr`` runs).
        options: per-method options, e.g. ``{"rollout": {"head_fusion": "max"}}``.
        progress: called as ``progress(method, k, total)`` before the k-th of ``total`` methods computes, and as
            ``progress("", total, total)`` when all have; an exception it raises stops the run (the explorer
            cancels a request this way, between methods).
    """
    chosen, named = _chosen(methods)
    threshold = check_finite("tree_threshold", tree_threshold)
    per_method = {get_method(name).name: dict(values) for name, values in (options or {}).items()}
    context = ExplainContext(model, inputs, target=target, position=position)
    shared = {"steps": steps, "rule": rule}
    scores: dict[str, TokenScores] = {}
    skipped: dict[str, str] = {}
    runs: list[tuple[Method, dict[str, Any]]] = []
    for method in chosen:
        reason = method.unsupported(context.model)
        if reason:
            if named:
                method.check(context.model)
            skipped[method.name] = reason
            logger.info("explain: %s skipped (%s)", method.name, reason)
            continue
        method_options = {**method.select_options(shared), **per_method.get(method.name, {})}
        method.check_options(method_options)
        runs.append((method, method_options))
    for method, method_options in runs:
        method.prepare(context, **method_options)
    for k, (method, method_options) in enumerate(runs):
        if progress is not None:
            progress(method.name, k, len(runs))
        scores[method.name] = measured_compute(method, context, **method_options)
    if progress is not None:
        progress("", len(runs), len(runs))
    attribution = context.last_attribution
    tree = None
    if attribution is not None and attribution.has_full:
        from attrflow.analysis.tree import attribution_tree

        tree = attribution_tree(attribution, threshold=threshold)
        result: AttentionAttribution | RecordedAttention = attribution
    else:
        result = _recorded(context)
    return Explanation(
        result=result,
        scores=scores,
        tree=tree,
        methods=tuple(m.name for m in chosen),
        skipped=skipped,
        probabilities=context.probabilities,
    )


def _recorded(context: ExplainContext) -> RecordedAttention:
    recording = context.recording
    probabilities = recording.probabilities
    predicted = int(torch.argmax(probabilities))
    return RecordedAttention(
        tokens=context.tokens,
        attentions=recording.attentions,
        predicted=predicted,
        predicted_label=context.model.label_name(predicted),
        probability=float(probabilities[predicted]),
        special_mask=context.encoding.special_mask,
        output_position=context.encoding.output_position,
        input_ids=context.encoding.input_ids,
    )
