"""The one verb that reaches every registered method: :func:`token_scores`."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from attrflow.memory import PeakMemory
from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, get_method

if TYPE_CHECKING:
    from torch import nn

    from attrflow.methods.targets import TargetLike
    from attrflow.models import Model
    from attrflow.results import TokenScores

__all__ = ["measured_compute", "token_scores"]


def measured_compute(method: Method, context: ExplainContext, **options: Any) -> TokenScores:
    """``method.compute(context, **options)`` with its peak memory in ``settings["peak_memory"]`` (bytes above the
    start; ``settings["peak_memory_source"]`` says how it was measured, see :class:`attrflow.memory.PeakMemory`).
    Work the context had cached before is not counted again."""
    with PeakMemory(context.model.device) as measured:
        scores = method.compute(context, **options)
    settings = {**scores.settings, "peak_memory": measured.peak, "peak_memory_source": measured.source}
    return replace(scores, settings=settings)


def token_scores(
    model: Model | nn.Module,
    inputs: Any,
    method: str | Method = "rollout",
    *,
    position: int | None = None,
    target: TargetLike = None,
    **options: Any,
) -> TokenScores:
    """Token scores of one input from any registered method (see :func:`attrflow.list_methods`).

    Args:
        model: an :class:`attrflow.Model` (or a transformers model, wrapped on the fly).
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        method: the registered name, e.g. ``"rollout"``, ``"flow"``, ``"attention"``, ``"attattr"``, ``"blankout"``,
            ``"gradient_l2"``, ``"integrated_gradients"``.
        position: the output position whose row attention-derived methods read (negatives count from the end);
            default the model's explained position ([CLS] for BERT-style classifiers, the last token for decoders).
        target: F, the output to explain (:mod:`attrflow.methods.targets`): a class index or vocabulary id
            (default the prediction; F its probability); for causal LMs also a continuation (a string, e.g.
            ``" Paris, a city of two million"``, or a list of ids: appended to the input, F its summed
            log-probability, each token read at its own position) or a pair ``(" Paris", " London")`` of single
            next tokens (F = log p(a) − log p(b)). ``settings["objective"]`` of the result says what F was.
        **options: the method's own options (e.g. ``head_fusion``, ``residual``, ``steps``); an option the method
            does not have is refused with the list of those it has.

    Returns:
        A :class:`~attrflow.TokenScores`: ``.scores`` ``[n]``, or ``[L, n]`` for per-layer methods (bottom to top),
        ``.overall`` ``[n]``, ``.tokens``, ``.method``, ``.position``, ``.settings`` (with ``"peak_memory"``).

    Raises:
        InvalidInputError: an unknown method (the message lists the registered ones) or option, a bad input.
        UnsupportedModelError: the method cannot explain this model.
    """
    chosen = get_method(method)
    chosen.check_options(options)
    context = ExplainContext(model, inputs, target=target, position=position)
    chosen.check(context.model)
    return measured_compute(chosen, context, **options)
