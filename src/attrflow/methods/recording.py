"""Recording the attention probabilities of every layer on one input (no gradients)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attrflow.models import Model, load_model
from attrflow.results import RecordedAttention


def record_attention(model: Model | nn.Module, inputs: Any, *, truncation: bool = True) -> RecordedAttention:
    """The attention probabilities of every layer, ``[L, H, n, n]`` over the real tokens, with the prediction.

    Works with any model attrflow supports, including SDPA/flash defaults (attrflow computes the probabilities
    itself and restores the model's implementation afterwards). Ready for :func:`attrflow.attention_rollout` and
    :func:`attrflow.attention_flow`.
    """
    wrapped = model if isinstance(model, Model) else load_model(model)
    recording = wrapped.record(inputs, truncation=truncation)
    encoding = recording.encoding
    probabilities = torch.softmax(recording.logits.float(), dim=-1)
    predicted = int(probabilities.argmax())
    return RecordedAttention(
        tokens=encoding.tokens,
        attentions=recording.attentions,
        predicted=predicted,
        predicted_label=wrapped.label_name(predicted),
        probability=float(probabilities[predicted]),
        special_mask=encoding.special_mask,
        output_position=encoding.output_position,
        input_ids=encoding.input_ids,
    )
