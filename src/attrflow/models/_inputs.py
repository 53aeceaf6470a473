"""Inputs of :class:`~attrflow.models.Model`: text, text pairs, tensors and token ids into :class:`Encoding` values.

A mixin of the model wrapper (its methods take the wrapper as ``self``); the tokenisation itself lives in
:mod:`attrflow.models._encoding`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import torch

from attrflow.errors import InvalidInputError
from attrflow.models import _encoding
from attrflow.models._encoding import Encoding, TokenizedText
from attrflow.models._interface import Session

if TYPE_CHECKING:
    from attrflow.models._model import Model

InputLike = Any  # str | tuple[str, str] | Mapping[str, Tensor] | Encoding


class InputMethods:
    """How :class:`~attrflow.models.Model` turns what users pass into encodings."""

    def max_length(self) -> int | None:
        """Longest input in tokens the model accepts (None when unbounded or unknown)."""
        wrapper = cast("Model", self)
        return _encoding.max_length(wrapper.model, wrapper.tokenizer)

    def encode(self, text: str, text_pair: str | None = None, *, truncation: bool = True) -> Encoding:
        """Tokenise ``text`` (and ``text_pair``) into an :class:`Encoding` of batch size 1.

        Args:
            text: the input text; must not be empty or only whitespace.
            text_pair: optional second segment (sentence-pair tasks).
            truncation: cut inputs longer than the model's maximum (with a warning); False raises instead.

        Raises:
            InvalidInputError: empty text, or too long with ``truncation=False``, or no tokenizer.
        """
        wrapper = cast("Model", self)
        if wrapper.tokenizer is None:
            raise InvalidInputError("this model has no tokenizer: pass inputs as a dict of tensors, or give tokenizer=")
        _encoding.check_text(
            text,
            text_pair,
            message="{label} is empty or holds only whitespace, zero-width or control characters; give text with words in it",
        )
        tensors, truncated = _encoding.encode_text(
            wrapper.tokenizer, text, text_pair, limit=wrapper.max_length(), truncation=truncation
        )
        encoding = wrapper.from_tensors(tensors)
        return Encoding(**{**encoding.__dict__, "truncated": truncated})

    def from_tensors(self, inputs: Mapping[str, Any]) -> Encoding:
        """Wrap a dict of batch-1 tensors (``input_ids``/``attention_mask``/... or ``pixel_values``)."""
        wrapper = cast("Model", self)
        tensors = _encoding.batch1_tensors(inputs, wrapper.device)
        if "pixel_values" in tensors:
            session = Session(record=True)
            with wrapper.engaged(), torch.no_grad():
                wrapper._forward(tensors, session)
            return _encoding.image_encoding(tensors, wrapper.model.config, int(session.records[0].shape[-1]))
        # decoders read the last position; encoder-decoder classifiers read the end-of-sequence token (last)
        return _encoding.text_encoding(
            tensors,
            wrapper.tokenizer,
            vocab_size=int(wrapper.model.config.get_text_config().vocab_size),
            reads_last=wrapper.causal or wrapper.task == "causal-lm" or wrapper.is_encoder_decoder,
            limit=wrapper.max_length(),
        )

    def prepare(self, inputs: InputLike, *, truncation: bool = True) -> Encoding:
        """Turn any accepted input form into an :class:`Encoding`.

        Accepted: a string; a ``(text, text_pair)`` tuple; a dict of batch-1 tensors; an :class:`Encoding`.
        """
        wrapper = cast("Model", self)
        if isinstance(inputs, Encoding):
            return inputs
        if isinstance(inputs, str):
            return wrapper.encode(inputs, truncation=truncation)
        if isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs):
            return wrapper.encode(inputs[0], inputs[1], truncation=truncation)
        if isinstance(inputs, Mapping):
            return wrapper.from_tensors(inputs)
        raise InvalidInputError(
            f"cannot explain an input of type {type(inputs).__name__}: give a string, a (text, text_pair) tuple, "
            "or a dict of tensors with batch size 1"
        )

    def tokenize(
        self, text: str, text_pair: str | None = None, *, max_length: int | Literal["model"] | None = "model"
    ) -> TokenizedText:
        """Tokenise like the model's own encoding (special tokens; truncation to ``max_length``), as plain ints.

        For dataset-level work that edits token ids before running them (trigger insertion, deletion for AOPC):
        the result's :meth:`TokenizedText.features` go to :meth:`predict_batch`. ``max_length="model"`` (default)
        truncates to :meth:`max_length`; an int truncates shorter (e.g. to leave room for inserted tokens); None
        never truncates.

        Raises:
            InvalidInputError: no tokenizer, an empty text, or a ``max_length`` below 1.
        """
        wrapper = cast("Model", self)
        if wrapper.tokenizer is None:
            raise InvalidInputError("this model has no tokenizer; give inputs as tensors")
        _encoding.check_text(
            text, text_pair, message="an example has an empty {label} ({value!r}); remove it from the dataset"
        )
        limit = wrapper.max_length() if max_length == "model" else max_length
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidInputError(f"max_length must be a whole number >= 1, 'model' or None; got {max_length!r}")
        return _encoding.tokenize(wrapper.tokenizer, text, text_pair, limit=limit)

    def continuation_ids(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` to append to an input (no special tokens), e.g. a continuation to explain.

        Raises:
            InvalidInputError: no tokenizer, an empty text, or a text that gives no tokens.
        """
        wrapper = cast("Model", self)
        if wrapper.tokenizer is None:
            raise InvalidInputError("this model has no tokenizer: give the continuation as token ids")
        if not isinstance(text, str) or not text:
            raise InvalidInputError(f"a continuation must be a non-empty string, got {text!r}")
        ids = _encoding.continuation_ids(wrapper.tokenizer, text)
        if not ids:
            raise InvalidInputError(f"the continuation {text!r} gives no tokens")
        return ids
