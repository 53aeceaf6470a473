"""Trigger insertion (Hao et al. 2021, §5): a trigger's word-pieces go into a tokenised input at the relative
positions they had in their source example, per segment.

:func:`plan_positions` and :func:`insert` are pure functions on plain token lists (no model); :func:`insert_trigger`
tokenises an example with the model's own tokenisation (:meth:`attrflow.Model.tokenize`) and inserts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from attrflow.analysis.triggers._common import check_classifier
from attrflow.analysis.triggers.patterns import Trigger
from attrflow.data import as_example
from attrflow.errors import InvalidInputError
from attrflow.models import Model, TokenizedText

__all__ = ["insert", "insert_trigger", "plan_positions", "tokenize_for"]


def plan_positions(relative: Sequence[float], length: int) -> list[int]:
    """Indices in a segment of ``length + k`` tokens where k inserted tokens go, from their relative positions.

    A token at relative position r (0 = first word-piece of its segment, 1 = last) lands at index
    ``round(r · (length + k − 1))`` (halves up). Collisions move a later token one place right, and the plan is
    then pulled left where it would run past the end, so every inserted token keeps its order and a slot of its
    own.
    """
    k = len(relative)
    total = length + k
    plan: list[int] = []
    previous = -1
    for r in relative:
        index = max(math.floor(r * (total - 1) + 0.5), previous + 1)
        plan.append(index)
        previous = index
    following = total
    for t in reversed(range(k)):
        plan[t] = min(plan[t], following - 1)
        following = plan[t]
    return plan


def insert(tokenized: TokenizedText, trigger: Trigger) -> TokenizedText:
    """``tokenized`` with the trigger's word-pieces inserted at their relative positions in their segments.

    Inserted tokens take their segment's token type; special tokens are never moved or replaced.

    Raises:
        InvalidInputError: the trigger has tokens for a segment the input lacks (e.g. no text_pair).
    """
    ids = list(tokenized.input_ids)
    types = None if tokenized.token_type_ids is None else list(tokenized.token_type_ids)
    segments = list(tokenized.segments)
    # right segment first, so the positions of the left one stay valid
    for segment in sorted(set(trigger.segments), reverse=True):
        members = [t for t in range(len(trigger.token_ids)) if trigger.segments[t] == segment]
        where = [p for p, s in enumerate(segments) if s == segment]
        if not where:
            raise InvalidInputError(
                f"the trigger has tokens for segment {segment} but an example has no such segment "
                f"({'no text_pair' if segment == 1 else 'an empty text'}); mine and attack on the same kind of "
                "inputs (single texts or sentence pairs)"
            )
        start, end = where[0], where[-1] + 1
        if end - start != len(where):
            raise InvalidInputError(f"segment {segment} of an example is not contiguous; cannot insert a trigger")
        plan = plan_positions([trigger.relative_positions[t] for t in members], len(where))
        slots = dict(zip(plan, members, strict=True))
        original = iter(ids[start:end])
        new_ids = [
            trigger.token_ids[slots[index]] if index in slots else next(original)
            for index in range(len(where) + len(members))
        ]
        ids[start:end] = new_ids
        segments[start:end] = [segment] * len(new_ids)
        if types is not None:
            types[start:end] = [types[start]] * len(new_ids)
    return TokenizedText(tuple(ids), None if types is None else tuple(types), tuple(segments))


def tokenize_for(model: Model, example: Any, room: int = 0) -> TokenizedText:
    """``example`` tokenised like the model's own encoding, cut to leave ``room`` tokens for a trigger.

    Raises:
        InvalidInputError: an empty text, or a model whose maximum length leaves no room for the trigger.
    """
    item = as_example(example)
    limit = model.max_length()
    if limit is not None and limit - room < 1:
        raise InvalidInputError("the model's maximum length leaves no room for the trigger tokens")
    return model.tokenize(item.text, item.text_pair, max_length=None if limit is None else limit - room)


def insert_trigger(model: Model, example: Any, trigger: Trigger) -> dict[str, list[int]]:
    """Tokenise ``example`` and insert ``trigger``'s word-pieces at their relative positions.

    The example is tokenised like the model's own encoding and cut to the model's maximum length minus the
    trigger's length, so the trigger always fits. In each segment of m word-pieces, a trigger token at relative
    position r lands at index ``round(r · (m + k − 1))`` of the k + m word-pieces after insertion (0 = first
    word-piece after the leading special token). Inserted tokens take their segment's token type.

    Args:
        model: the classifier (its tokenizer and maximum length are used).
        example: a text, a ``(text, text_pair)`` tuple, or an object with ``.text`` and ``.text_pair``.
        trigger: what to insert.

    Returns:
        ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer makes them) as lists, ready
        for :meth:`Model.predict_batch`.
    """
    check_classifier(model)
    return insert(tokenize_for(model, example, len(trigger)), trigger).features()
