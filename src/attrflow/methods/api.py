"""The one verb that reaches every registered method: :func:`token_scores`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, get_method

if TYPE_CHECKING:
    from torch import nn

    from attrflow.models import Model
    from attrflow.results import TokenScores

__all__ = ["token_scores"]


def token_scores(
    model: Model | nn.Module,
    inputs: Any,
    method: str | Method = "rollout",
    *,
    position: int | None = None,
    target: int | None = None,
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
        target: the output to explain (class index or vocabulary id); default the prediction.
        **options: the method's own options (e.g. ``head_fusion``, ``residual``, ``steps``); an option the method
            does not have is refused with the list of those it has.

    Returns:
        A :class:`~attrflow.TokenScores`: ``.scores`` ``[n]``, or ``[L, n]`` for per-layer methods (bottom to top),
        ``.overall`` ``[n]``, ``.tokens``, ``.method``, ``.position``, ``.settings``.

    Raises:
        InvalidInputError: an unknown method (the message lists the registered ones) or option, a bad input.
        UnsupportedModelError: the method cannot explain this model.
    """
    chosen = get_method(method)
    chosen.check_options(options)
    context = ExplainContext(model, inputs, target=target, position=position)
    chosen.check(context.model)
    return chosen.compute(context, **options)
