"""Inputs for the model: tokenising text, wrapping tensors, naming image patches, batching tokenised items.

The only place in attrflow that calls a tokenizer. :class:`~attrflow.models.Model` exposes these steps as
``encode``, ``from_tensors``, ``prepare``, ``tokenize``, ``max_length`` and ``predict_batch``; the functions here
take the pieces they need (tokenizer, config) rather than the model wrapper.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attrflow.errors import InvalidInputError
from attrflow.validation import visible_text

SPECIAL_SEGMENT = -1
"""The segment of a special token ([CLS], [SEP], ...) in :attr:`TokenizedText.segments`."""

# a tokenised item for predict_batch: input_ids (and token_type_ids, attention_mask) as lists of ints
Features = dict[str, list[int]]


@dataclass(frozen=True)
class Encoding:
    """One input, ready for the model.

    Attributes:
        inputs: model keyword arguments, batch size 1 (``input_ids``, ``attention_mask``, ... or ``pixel_values``).
        tokens: the names of the n real positions (tokens, or patches for images).
        positions: ``[n]`` indices of the real positions inside the padded sequence.
        special_mask: True for special tokens.
        input_ids: the n token ids (empty for images).
        segment_ids: segment of each real token, if the model has token types.
        output_position: index (among the n real positions) whose output the model's prediction reads.
        truncated: whether the text was cut to the model's maximum length.
    """

    inputs: Mapping[str, torch.Tensor]
    tokens: tuple[str, ...]
    positions: torch.Tensor
    special_mask: tuple[bool, ...]
    input_ids: tuple[int, ...] = ()
    segment_ids: tuple[int, ...] | None = None
    output_position: int = 0
    truncated: bool = False

    @property
    def length(self) -> int:
        """Number of real positions n."""
        return len(self.tokens)

    @property
    def padded_length(self) -> int:
        """Number of positions N of the sequence the model runs on (n plus any padding)."""
        if "input_ids" in self.inputs:
            return int(next(iter(self.inputs.values())).shape[1])
        return self.length


@dataclass(frozen=True)
class TokenizedText:
    """A text (or text pair) tokenised exactly as the model's own encoding does, as plain lists of ints.

    Attributes:
        input_ids: the token ids, special tokens included.
        token_type_ids: the token types, when the tokenizer produces them.
        segments: per position 0 (first text), 1 (second text) or -1 (:data:`SPECIAL_SEGMENT`) for special tokens.
    """

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    segments: tuple[int, ...]

    def features(self) -> Features:
        """A tokenised item for :meth:`Model.predict_batch` / ``Model.prepare``."""
        out = {"input_ids": list(self.input_ids), "attention_mask": [1] * len(self.input_ids)}
        if self.token_type_ids is not None:
            out["token_type_ids"] = list(self.token_type_ids)
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """Batch-1 tensors for :meth:`Model.prepare`."""
        return {key: torch.tensor([value], dtype=torch.long) for key, value in self.features().items()}


def max_length(model: Any, tokenizer: Any) -> int | None:
    """Longest input in tokens ``model`` (with ``tokenizer``) accepts; None when unbounded or unknown."""
    limits = []
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_max, int) and tokenizer_max < 1_000_000:
        limits.append(tokenizer_max)
    config = model.config.get_text_config()
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style position ids start after the padding index
        roberta = type(model).__name__.startswith(("Roberta", "XLMRoberta", "Camembert"))
        limits.append(positions - ((config.pad_token_id + 1) if roberta else 0))
    return min(limits) if limits else None


UNKNOWN_SHARE_WARNING = 0.25
"""A text whose tokens are unknown to the tokenizer (``[UNK]``) in a larger share than this is warned about."""


def check_text(text: object, text_pair: object, *, message: str) -> None:
    """Raise when ``text`` or ``text_pair`` (if given) is not a string with visible content (only whitespace,
    zero-width or control characters count as empty); ``message`` is formatted with ``label`` (the argument's
    name) and ``value``."""
    for label, value in (("text", text), ("text_pair", text_pair)):
        if value is not None and (not isinstance(value, str) or not visible_text(value)):
            raise InvalidInputError(message.format(label=label, value=value))


def content_ids(tokenizer: Any, ids: Sequence[int]) -> list[int]:
    """The ids of ``ids`` that stand for the text: special tokens left out, the unknown token kept."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    special = set(getattr(tokenizer, "all_special_ids", []) or []) - {unknown}
    return [i for i in ids if i not in special]


def warn_unknown(tokenizer: Any, ids: Sequence[int], texts: Sequence[str]) -> None:
    """Warn when more than :data:`UNKNOWN_SHARE_WARNING` of the text's tokens are the unknown token, naming the
    share and the words the tokenizer does not know."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    content = content_ids(tokenizer, ids)
    count = sum(1 for i in content if i == unknown)
    if unknown is None or not content or count / len(content) <= UNKNOWN_SHARE_WARNING:
        return
    words = [
        word
        for text in texts
        for word in dict.fromkeys(text.split())
        if unknown in tokenizer(word, add_special_tokens=False)["input_ids"]
    ]
    shown = ", ".join(repr(w) for w in words[:6]) + (", ..." if len(words) > 6 else "")
    warnings.warn(
        f"{count} of {len(content)} tokens of the input are unknown to the model's tokenizer and become "
        f"{tokenizer.unk_token} (words: {shown or 'none whole'}); the explanation is about {tokenizer.unk_token} "
        "tokens, not those words: check that the text suits the model",
        UserWarning,
        stacklevel=2,
    )


def encode_text(
    tokenizer: Any, text: str, text_pair: str | None, *, limit: int | None, truncation: bool
) -> tuple[dict[str, torch.Tensor], bool]:
    """Batch-1 tensors of ``text`` (and ``text_pair``), and whether they were cut to ``limit`` tokens.

    Over-long text is truncated with a warning, or refused with ``truncation=False``. Text the tokenizer turns into
    special tokens only is refused like empty text; a large share of unknown tokens is warned about.
    """
    ids = list(tokenizer(text, text_pair, truncation=False)["input_ids"])
    if not content_ids(tokenizer, ids):
        raise InvalidInputError(
            "the input has no content the model's tokenizer keeps (it becomes special tokens only); give text "
            "with words in it"
        )
    warn_unknown(tokenizer, ids, [text] if text_pair is None else [text, text_pair])
    length = len(ids)
    truncated = False
    if limit is not None and length > limit:
        if not truncation:
            raise InvalidInputError(
                f"the input has {length} tokens but the model accepts at most {limit}; shorten it or allow "
                "truncation (truncation=True, the default)"
            )
        warnings.warn(f"input of {length} tokens truncated to the model's maximum of {limit}", stacklevel=3)
        truncated = True
    encoded = tokenizer(
        text, text_pair, truncation=truncated, max_length=limit if truncated else None, return_tensors="pt"
    )
    return dict(encoded), truncated


def batch1_tensors(inputs: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """``inputs`` as batch-1 tensors on ``device`` (1-D token tensors get a batch dimension)."""
    tensors: dict[str, torch.Tensor] = {}
    for key, value in inputs.items():
        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        if tensor.dim() == 1 and key != "pixel_values":
            tensor = tensor.unsqueeze(0)
        if tensor.shape[0] != 1:
            raise InvalidInputError(f"{key} has batch size {tensor.shape[0]}; attrflow explains one input at a time")
        tensors[key] = tensor.to(device)
    return tensors


def check_length(length: int, limit: int | None, what: str) -> None:
    """Refuse ``length`` token positions when the model accepts at most ``limit`` (its position embeddings)."""
    if limit is not None and length > limit:
        raise InvalidInputError(
            f"{what} has {length} positions but the model accepts at most {limit}; shorten it (text inputs are "
            "truncated for you)"
        )


def text_encoding(
    tensors: dict[str, torch.Tensor],
    tokenizer: Any,
    *,
    vocab_size: int,
    reads_last: bool,
    limit: int | None = None,
) -> Encoding:
    """The :class:`Encoding` of batch-1 token tensors (an all-ones ``attention_mask`` is added when missing).

    Args:
        tensors: ``input_ids`` and optionally ``attention_mask``/``token_type_ids``, batch size 1.
        tokenizer: names the tokens and marks the special ones (None: tokens are named ``#id``).
        vocab_size: the model's vocabulary size (ids must lie below it).
        reads_last: whether the prediction reads the last real position (decoders, encoder-decoder classifiers)
            rather than the first.
        limit: the most positions the model accepts (None: unbounded).
    """
    ids = tensors.get("input_ids")
    if ids is None:
        raise InvalidInputError("inputs need 'input_ids' (text models) or 'pixel_values' (image models)")
    if ids.numel() == 0:
        raise InvalidInputError("input_ids is empty")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise InvalidInputError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
    check_length(int(ids.shape[-1]), limit, "input_ids")
    for key in ("attention_mask", "token_type_ids"):
        value = tensors.get(key)
        if value is not None and value.shape != ids.shape:
            raise InvalidInputError(
                f"{key} has shape {tuple(value.shape)}, input_ids {tuple(ids.shape)}; they must agree"
            )
    if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
        raise InvalidInputError(f"input_ids must lie in [0, {vocab_size}) for this model")
    mask = tensors.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
        tensors["attention_mask"] = mask
    positions = torch.nonzero(mask[0].bool(), as_tuple=False).flatten()
    if positions.numel() == 0:
        raise InvalidInputError("attention_mask masks every token")
    id_list = [int(i) for i in ids[0, positions]]
    if tokenizer is None:
        tokens = tuple(f"#{i}" for i in id_list)
    else:
        tokens = tuple(str(t) for t in tokenizer.convert_ids_to_tokens(id_list))
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    segments = tensors.get("token_type_ids")
    return Encoding(
        inputs=tensors,
        tokens=tokens,
        positions=positions.cpu(),
        special_mask=tuple(i in special_ids for i in id_list),
        input_ids=tuple(id_list),
        segment_ids=None if segments is None else tuple(int(s) for s in segments[0, positions]),
        output_position=len(id_list) - 1 if reads_last else 0,
    )


def image_encoding(tensors: dict[str, torch.Tensor], config: Any, length: int) -> Encoding:
    """The :class:`Encoding` of batch-1 ``pixel_values`` whose attention runs over ``length`` positions.

    Positions are named after the patch grid (``patch(row,col)``) when the config gives a patch size, with the
    extra leading positions as ``[CLS]``, ``[DIST]``, ...
    """
    patch = getattr(config, "patch_size", None)
    size = tensors["pixel_values"].shape[-1]
    grid = size // patch if isinstance(patch, int) and patch > 0 else 0
    extra = length - grid * grid if grid else 0
    names = ["[CLS]", "[DIST]"][:extra] + [f"[TOK{i}]" for i in range(2, extra)]
    names += [f"patch({r},{c})" for r in range(grid) for c in range(grid)] if grid else [f"#{i}" for i in range(length)]
    return Encoding(
        inputs=tensors,
        tokens=tuple(names[:length]),
        positions=torch.arange(length),
        special_mask=tuple(i < extra for i in range(length)),
        output_position=0,
    )


def _segments(tokenizer: Any, encoded: Any, ids: Sequence[int], has_pair: bool) -> tuple[int, ...]:
    """The segment (0, 1, or -1 for special tokens) of every position of a tokenised input."""
    try:
        sequence_ids = encoded.sequence_ids(0)
    except (ValueError, AttributeError, TypeError):
        sequence_ids = None
    if sequence_ids is not None and len(sequence_ids) == len(ids):
        return tuple(SPECIAL_SEGMENT if s is None else int(s) for s in sequence_ids)
    # slow tokenizers: the non-special tokens form one run per segment, separated by special tokens
    special = tokenizer.get_special_tokens_mask(list(ids), already_has_special_tokens=True)
    segments, segment, previous_special = [], -1, True
    for is_special in special:
        if is_special:
            segments.append(SPECIAL_SEGMENT)
        else:
            if previous_special:
                segment += 1
            segments.append(min(segment, 1 if has_pair else 0))
        previous_special = bool(is_special)
    return tuple(segments)


def tokenize(tokenizer: Any, text: str, text_pair: str | None, *, limit: int | None) -> TokenizedText:
    """``text`` (and ``text_pair``) tokenised with special tokens, truncated to ``limit`` tokens (None: never)."""
    encoded = tokenizer(text, text_pair, truncation=limit is not None, max_length=limit)
    ids = tuple(int(i) for i in encoded["input_ids"])
    types = encoded.get("token_type_ids")
    return TokenizedText(
        input_ids=ids,
        token_type_ids=None if types is None else tuple(int(t) for t in types),
        segments=_segments(tokenizer, encoded, ids, text_pair is not None),
    )


def continuation_ids(tokenizer: Any, text: str) -> tuple[int, ...]:
    """The token ids of ``text`` as a continuation: no special tokens added (a leading space stays a word start)."""
    return tuple(int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"])


def batch_features(
    tokenizer: Any,
    items: Sequence[str | tuple[str, str | None] | Mapping[str, Sequence[int]]],
    *,
    limit: int | None,
) -> list[Any]:
    """Tokenised features of texts, ``(text, text_pair)`` tuples or already tokenised mappings (kept as given,
    with an all-ones ``attention_mask`` added when missing); texts are truncated to ``limit`` silently."""
    features: list[Any] = []
    for item in items:
        if isinstance(item, Mapping):
            ids = list(item["input_ids"])
            if not ids:
                raise InvalidInputError("a tokenised item has no input_ids")
            check_length(len(ids), limit, "a tokenised item")
            feature = {key: list(value) for key, value in item.items()}
            feature.setdefault("attention_mask", [1] * len(ids))
            features.append(feature)
            continue
        first, second = (item, None) if isinstance(item, str) else (item[0], item[1])
        features.append(tokenizer(first, second, truncation=limit is not None, max_length=limit))
    return features


def length_chunks(features: Sequence[Any], batch_size: int, *, eos: int | None) -> tuple[list[int], list[list[int]]]:
    """Indices of ``features`` sorted by length, and those indices cut into batches of at most ``batch_size``.

    Similar lengths go together: less padding, same results (rows are independent). With ``eos`` (encoder-decoder
    classifiers such as BART and T5, which read every row's end-of-sequence tokens) a batch also holds only rows
    with the same number of ``eos`` tokens.
    """

    def group(i: int) -> int:
        return 0 if eos is None else list(features[i]["input_ids"]).count(eos)

    order = sorted(range(len(features)), key=lambda i: (group(i), len(features[i]["input_ids"])))
    chunks: list[list[int]] = []
    for i in order:
        if not chunks or len(chunks[-1]) == batch_size or group(chunks[-1][0]) != group(i):
            chunks.append([])
        chunks[-1].append(i)
    return order, chunks


def pad(tokenizer: Any, features: Sequence[Any], device: torch.device) -> dict[str, torch.Tensor]:
    """One padded batch of tokenised ``features``, on ``device``."""
    encoded = tokenizer.pad(list(features), return_tensors="pt")
    return {key: value.to(device) for key, value in encoded.items()}
