"""Blank-out (occlusion): the model's output with one token replaced at a time (Abnar & Zuidema, ACL 2020, §5).

All n variants of an input and the input itself run batched through :meth:`attrflow.Model.predict_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from attrflow.errors import InvalidInputError
from attrflow.methods.targets import Target
from attrflow.models import Encoding, Model
from attrflow.validation import check_choice

__all__ = ["Replacement", "blankout_probabilities", "blankout_values", "replacement_id", "token_features"]

Replacement = Literal["unk", "mask"]


def replacement_id(model: Model, replacement: Replacement) -> int:
    """The token id that blanks a token out: the tokenizer's UNK or MASK token."""
    check_choice("replacement", replacement, Replacement)
    tokenizer = model.tokenizer
    token_id = getattr(tokenizer, f"{replacement}_token_id", None) if tokenizer is not None else None
    if token_id is None:
        other = "mask" if replacement == "unk" else "unk"
        raise InvalidInputError(
            f"the tokenizer has no {replacement.upper()} token to blank tokens out with; try replacement={other!r}"
        )
    return int(token_id)


def token_features(encoding: Encoding, ids: Sequence[int]) -> dict[str, list[int]]:
    """A tokenised item for :meth:`Model.predict_batch`: ``ids`` with the encoding's segments (same length)."""
    feature = {"input_ids": [int(i) for i in ids]}
    if encoding.segment_ids is not None:
        feature["token_type_ids"] = list(encoding.segment_ids)
    return feature


def _blank_variants(encoding: Encoding, blank: int) -> torch.Tensor:
    """``[1 + n, N]`` input ids: the input, then the input with its i-th token (at its position) set to ``blank``."""
    full = encoding.inputs["input_ids"][0]
    variants = full.unsqueeze(0).repeat(1 + encoding.length, 1)
    for i, position in enumerate(encoding.positions.tolist()):
        variants[1 + i, position] = blank
    return variants


def _encoder_blankout_probabilities(model: Model, encoding: Encoding, blank: int, batch_size: int) -> torch.Tensor:
    """Blank-out for encoder-decoder classifiers: token i is replaced in the encoder's input only.

    The decoder and the classification head keep reading the original ids (BART and T5 classify from the
    end-of-sequence token, which could not be blanked otherwise); this is occlusion of what the explained
    attention, the encoder's, sees.
    """
    variants = _blank_variants(encoding, blank)
    embed = model.input_embedding_module()
    rows = []
    with torch.no_grad():
        for start in range(0, variants.shape[0], batch_size):
            logits = model.run_embeddings(encoding, embed(variants[start : start + batch_size]))
            rows.append(torch.softmax(logits.double(), dim=-1).cpu())
    return torch.cat(rows)


def blankout_probabilities(
    model: Model, encoding: Encoding, replacement: Replacement = "unk", batch_size: int = 32
) -> torch.Tensor:
    """float64 ``[1 + n, C]``: the input's output probabilities, then those with token i blanked out, i = 0..n−1.

    For encoder-decoder classifiers (BART, T5) the token is replaced in the encoder's input only.
    """
    if not encoding.input_ids:
        raise InvalidInputError("blank-out needs token ids; this input has none (image models are not supported)")
    blank = replacement_id(model, replacement)
    if model.is_encoder_decoder:
        return _encoder_blankout_probabilities(model, encoding, blank, batch_size)
    ids = list(encoding.input_ids)
    items = [token_features(encoding, ids)]
    for i in range(len(ids)):
        items.append(token_features(encoding, [*ids[:i], blank, *ids[i + 1 :]]))
    return model.predict_batch(items, batch_size=batch_size).double()


def blankout_values(
    model: Model, encoding: Encoding, target: Target, replacement: Replacement = "unk", batch_size: int = 32
) -> torch.Tensor:
    """float64 ``[1 + n]``: F of ``target`` on the input, then with token i blanked out, i = 0..n−1.

    For targets that read several positions (a continuation span) or log-probabilities (a contrast); the variants
    run as word embeddings (:meth:`Model.run_embeddings`), the targets' own tokens stay the labels.
    """
    if not encoding.input_ids:
        raise InvalidInputError("blank-out needs token ids; this input has none (image models are not supported)")
    blank = replacement_id(model, replacement)
    variants = _blank_variants(encoding, blank)
    embed = model.input_embedding_module()
    values = []
    with torch.no_grad():
        for start in range(0, variants.shape[0], batch_size):
            logits = model.run_embeddings(
                encoding, embed(variants[start : start + batch_size]), positions=target.positions
            )
            values.append(target.values(logits).double().cpu())
    return torch.cat(values)
