"""What an explanation attributes: the model output F, defined once for every method that reads the output.

Every output-reading method (self-attention attribution, the gradients, integrated gradients, blank-out) and
:class:`~attrflow.ExplainContext` compute F through a :class:`Target`:

- ``"output"``: a class index (classifiers) or a next-token id (causal LMs), default the prediction;
  F is its softmax **probability**, the F of the AttAttr paper (Hao et al. 2021) and of Abnar & Zuidema (2020).
- ``"span"`` (causal LMs): a continuation, appended to the input; F is its summed **log-probability**
  ``Σ_t log p(y_t | prompt, y_<t)``, each token read from the logits at its own position (the position before it).
- ``"contrast"`` (causal LMs): two single next tokens a and b; F is ``log p(a) − log p(b)`` at the next position
  (inseq's contrastive attribution). Multi-token alternatives are refused: they are different inputs.

What users write (``target=``): ``None`` (the prediction), an int (class index / token id), a string (a
continuation span), a list of token ids (a span), a pair ``(a, b)`` of strings or ids (a contrast), or a
:class:`Target`. Completeness is meant in F's own units: ``Σ Attr ≈ F(x) − F(baseline)``, a probability
difference for ``"output"`` and a log-probability difference otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias

import numpy as np
import torch

from attrflow.errors import InvalidInputError
from attrflow.models import Encoding, Model

__all__ = ["Target", "TargetKind", "TargetLike", "prepare_target"]

TargetKind = Literal["output", "span", "contrast"]
Quantity = Literal["probability", "log-probability"]


@dataclass(frozen=True)
class Target:
    """The explained output F (see the module docstring for the three kinds).

    Build one with :meth:`output`, :meth:`span` or :meth:`contrast`, or let ``target=`` shorthand be parsed.

    Attributes:
        kind: ``"output"``, ``"span"`` or ``"contrast"``.
        ids: ``"output"``: ``(index,)``, or ``()`` for the prediction until resolved; ``"span"``: the continuation's
            token ids (``()`` until its text is tokenised); ``"contrast"``: ``(a, b)``.
        texts: the strings given: ``(continuation,)`` or ``(a, b)``; empty when ids were given.
        start: ``"span"`` once prepared: the index of the first continuation token among the input's tokens (the
            prompt's length); -1 otherwise.
    """

    kind: TargetKind = "output"
    ids: tuple[int, ...] = ()
    texts: tuple[str, ...] = ()
    start: int = -1

    # ------------------------------------------------------------------ building
    @classmethod
    def output(cls, index: int | None = None) -> Target:
        """A class index or a next-token id (None: the model's prediction); F = its probability."""
        return cls("output", () if index is None else (_token_id(index),))

    @classmethod
    def span(cls, continuation: str | Sequence[int]) -> Target:
        """A continuation (text or token ids) appended to the input; F = its summed log-probability."""
        if isinstance(continuation, str):
            if not continuation:
                raise InvalidInputError("a continuation span must be a non-empty string")
            return cls("span", (), (continuation,))
        ids = tuple(_token_id(i) for i in continuation)
        if not ids:
            raise InvalidInputError("a continuation span needs at least one token id")
        return cls("span", ids)

    @classmethod
    def contrast(cls, a: str | int, b: str | int) -> Target:
        """Two alternative next tokens (strings of one token each, or ids); F = log p(a) − log p(b)."""
        if isinstance(a, str) and isinstance(b, str):
            return cls("contrast", (), (a, b))
        if isinstance(a, str) or isinstance(b, str):
            raise InvalidInputError(f"give both alternatives as strings or both as token ids, got {a!r} and {b!r}")
        return cls("contrast", (_token_id(a), _token_id(b)))

    @classmethod
    def parse(cls, value: TargetLike) -> Target:
        """``target=`` shorthand: None, an int, a string, a list of ids, an ``(a, b)`` pair, or a Target."""
        if isinstance(value, Target):
            return value
        if value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool)):
            return cls.output(None if value is None else int(value))
        if isinstance(value, str):
            return cls.span(value)
        if isinstance(value, tuple) and len(value) == 2:
            return cls.contrast(value[0], value[1])
        if isinstance(value, list):
            return cls.span(value)
        raise InvalidInputError(
            f"target must be None, a class index or token id, a continuation string, a list of token ids, a pair "
            f"(a, b) of alternatives, or an attrflow Target; got {value!r}"
        )

    # ------------------------------------------------------------------ facts
    @property
    def quantity(self) -> Quantity:
        """The unit of F: ``"probability"`` (output) or ``"log-probability"`` (span, contrast)."""
        return "probability" if self.kind == "output" else "log-probability"

    @property
    def index(self) -> int:
        """The output's class index or token id (span: its first token; contrast: a).

        Raises:
            InvalidInputError: the target is not resolved yet (the prediction, or an untokenised text).
        """
        if not self.ids:
            raise InvalidInputError("this target is not resolved yet; prepare it with prepare_target(model, ...)")
        return self.ids[0]

    @property
    def positions(self) -> tuple[int, ...] | None:
        """The real positions whose logits F reads (span: the one before each continuation token); None: the
        explained output position alone."""
        if self.kind != "span":
            return None
        return tuple(range(self.start - 1, self.start - 1 + len(self.ids)))

    def values(self, logits: torch.Tensor) -> torch.Tensor:
        """F of every row, ``[B]``, from the logits ``[B, C]`` (``[B, k, C]`` for a span), in at least float32."""
        wide = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if self.kind == "output":
            return torch.softmax(wide, dim=-1)[:, self.index]
        log_probabilities = torch.log_softmax(wide, dim=-1)
        if self.kind == "contrast":
            return log_probabilities[:, self.ids[0]] - log_probabilities[:, self.ids[1]]
        ids = torch.tensor(self.ids, device=logits.device)
        steps = torch.arange(len(self.ids), device=logits.device)
        return log_probabilities[:, steps, ids].sum(dim=-1)

    def resolved(self, predicted: int) -> Target:
        """The prediction filled in for an ``"output"`` target without an index."""
        return replace(self, ids=(int(predicted),)) if self.kind == "output" and not self.ids else self

    def label(self, model: Model) -> str | None:
        """A readable name: the class label or decoded token, the continuation, or ``a vs b``."""
        if self.kind == "output":
            return model.label_name(self.index) if self.ids else None
        if self.kind == "span":
            return self.texts[0] if self.texts else _decode(model, self.ids)
        a, b = self.texts or (_decode(model, self.ids[:1]), _decode(model, self.ids[1:]))
        return f"{a!r} vs {b!r}"

    def describe(self, model: Model) -> str:
        """F in words, for result descriptions and settings."""
        if self.kind == "output":
            what = "next token" if model.task == "causal-lm" else "class"
            return f"F = p({what} {self.label(model) or self.ids})"
        if self.kind == "contrast":
            return f"F = log p(a) − log p(b) at the next position, {self.label(model)}"
        return (
            f"F = Σ_t log p(y_t | prompt, y_<t) over the {len(self.ids)} tokens of the continuation "
            f"{self.label(model)!r}, each read at its own position"
        )

    def to_dict(self, model: Model | None = None) -> dict[str, Any]:
        """JSON-ready: kind, quantity, ids, texts, start (and the description with a model)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "quantity": self.quantity,
            "ids": list(self.ids),
            "texts": list(self.texts),
            "start": self.start,
        }
        if model is not None:
            out["describe"] = self.describe(model)
        return out


TargetLike: TypeAlias = "Target | int | str | list[int] | tuple[str, str] | tuple[int, int] | None"
"""What ``target=`` accepts (see :meth:`Target.parse`)."""


def _token_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidInputError(f"a target class index or token id is a whole number >= 0, got {value!r}")
    return int(value)


def _decode(model: Model, ids: Sequence[int]) -> str:
    labels = [model.label_name(i) for i in ids]
    return "".join(label if label is not None else f"#{i}" for label, i in zip(labels, ids, strict=True))


def _check_ids(model: Model, ids: Sequence[int]) -> None:
    limit = model.num_outputs
    for i in ids:
        if not 0 <= i < limit:
            what = "vocabulary id" if model.task == "causal-lm" else "class index"
            raise InvalidInputError(f"target must be a {what} in [0, {limit}), got {i!r}")


def prepare_target(
    model: Model, inputs: Any, target: TargetLike, *, truncation: bool = True
) -> tuple[Encoding, Target]:
    """The encoding to run and the parsed target: a span's continuation is tokenised and appended to the input.

    A span target already prepared (``start`` set) with its own encoding passes through unchanged, so a context
    can hand its encoding and target to the methods it calls.

    Raises:
        InvalidInputError: a span or contrast for a model that is not a causal LM, a contrast alternative of
            several tokens, an id outside the vocabulary, or a span that makes the input too long.
    """
    parsed = Target.parse(target)
    if parsed.kind != "output" and model.task != "causal-lm":
        raise InvalidInputError(
            f"{parsed.kind} targets explain causal language models; this {model.task} model takes a class index"
        )
    if parsed.kind == "contrast" and parsed.texts:
        ids: list[int] = []
        for text in parsed.texts:
            tokens = model.continuation_ids(text)
            if len(tokens) != 1:
                raise InvalidInputError(
                    f"contrastive targets compare two single next tokens; {text!r} is {len(tokens)} tokens. Give "
                    "token ids, or explain each continuation as a span (target=text) and subtract the results"
                )
            ids.append(tokens[0])
        parsed = replace(parsed, ids=tuple(ids))
    if parsed.kind == "span" and parsed.start >= 0:
        if not isinstance(inputs, Encoding):
            raise InvalidInputError("a prepared span target goes with the encoding it was prepared on")
        return inputs, parsed
    encoding = model.prepare(inputs, truncation=truncation)
    if parsed.kind == "span":
        span = parsed.ids or model.continuation_ids(parsed.texts[0])
        _check_ids(model, span)
        encoding = _extended(model, encoding, span)
        parsed = replace(parsed, ids=tuple(span), start=encoding.length - len(span))
    else:
        _check_ids(model, parsed.ids)
    return encoding, parsed


def _extended(model: Model, encoding: Encoding, ids: Sequence[int]) -> Encoding:
    """The prompt's real tokens followed by the continuation, as one encoding (read at its last position)."""
    if not encoding.input_ids:
        raise InvalidInputError("a continuation span needs a text input with token ids")
    total = [*encoding.input_ids, *ids]
    limit = model.max_length()
    if limit is not None and len(total) > limit:
        raise InvalidInputError(
            f"the prompt ({encoding.length} tokens) and the continuation ({len(ids)}) exceed the model's maximum of "
            f"{limit} tokens; shorten the prompt"
        )
    tensors = {"input_ids": torch.tensor([total]), "attention_mask": torch.ones(1, len(total), dtype=torch.long)}
    if encoding.segment_ids is not None:  # the continuation stays in the prompt's last segment
        segments = [*encoding.segment_ids, *[encoding.segment_ids[-1]] * len(ids)]
        tensors["token_type_ids"] = torch.tensor([segments])
    return model.from_tensors(tensors)
