"""Attention sinks: how much attention lands on the first token.

Decoder LLMs park most of their attention on the first token (BOS) whatever it is ("attention sinks", Xiao et al.,
ICLR 2024); rollout and LRP mass then piles onto it too (openvla #185, lxt #10). :func:`sink_share` measures the
share per layer and head; the attention-derived methods report its mean in ``diagnostics["sink_share"]`` and
take ``exclude="sink"`` to leave the first token out when normalising their scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from attrflow.errors import InvalidInputError
from attrflow.flow import rows as _rows
from attrflow.models import Model, load_model

__all__ = ["sink_share"]


def sink_share(
    source: Any,
    inputs: Any = None,
    *,
    sink: int = 0,
    rows: int | Sequence[int] | None = None,
    layers: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """The share of attention mass on the first token (or ``sink``) per layer and head.

    Args:
        source: a model (:class:`attrflow.Model` or a transformers model) with ``inputs``; or attention
            probabilities ``[L, H, n, n]`` (a tensor, or a result with ``.attentions``: ``RecordedAttention``,
            ``AttentionAttribution``).
        inputs: the input, when ``source`` is a model. Its attention is never materialised: rows are recomputed
            in blocks from one forward pass's queries and keys (:meth:`attrflow.Model.capture_keys`), so this
            works on inputs of thousands of tokens.
        sink: the token whose share is measured (0: the first, BOS or [CLS]; negatives count from the end).
        rows: the query rows averaged over; default every row except the sink's own.
        layers: the layers (default all, bottom to top).

    Returns:
        float32 ``[len(layers), H]``: the mean over ``rows`` of the attention each head pays to ``sink``;
        ``.mean(-1)`` gives one share per layer.
    """
    attention: _rows.AttentionRows
    if isinstance(source, (Model, nn.Module)):
        if inputs is None:
            raise InvalidInputError("sink_share(model, inputs): give the input whose attention to measure")
        model = source if isinstance(source, Model) else load_model(source)
        attention = model.capture_keys(inputs)
    else:
        if inputs is not None:
            raise InvalidInputError("inputs are read only with a model; attention tensors are measured as they are")
        attention = _rows.MaterialisedRows(getattr(source, "attentions", source))
    return _rows.sink_share(attention, sink=sink, rows=rows, layers=layers)
