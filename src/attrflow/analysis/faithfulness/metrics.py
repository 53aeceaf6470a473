"""The two faithfulness measures, as pure functions: Spearman rank correlation (Abnar & Zuidema, ACL 2020, §5) and
ERASER's erasure curves, AOPC comprehensiveness and sufficiency (DeYoung et al., ACL 2020).

Comprehensiveness ``p_y(x) − p_y(x without its top-k% tokens)`` and sufficiency ``p_y(x) − p_y(only its top-k%
tokens)``, averaged over the bins k = 10%, 20%, …, 100%. Special tokens ([CLS], [SEP], BOS) are never removed. Every
method's removals of one input run in one batched, deduplicated :meth:`attrflow.Model.predict_batch` call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from attrflow.errors import InvalidInputError
from attrflow.methods.occlusion import replacement_id, token_features
from attrflow.models import Encoding, Model, load_model
from attrflow.validation import check_choice

__all__ = [
    "DEFAULT_BINS",
    "AOPCCurve",
    "Erasures",
    "Removal",
    "aopc",
    "check_bins",
    "erasure_curves",
    "erasure_order",
    "removal_counts",
    "spearman",
]

DEFAULT_BINS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
Removal = Literal["delete", "unk", "mask"]


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two score vectors, ties given their average rank (as ``scipy.stats``).

    Args:
        a, b: vectors of the same length n (tensors, arrays or sequences).

    Returns:
        The Pearson correlation of the ranks, in [−1, 1]; NaN when n < 2, when either vector is constant (no
        ranking to compare) or holds NaN.
    """
    from scipy.stats import rankdata

    x = _vector(a)
    y = _vector(b)
    if x.shape != y.shape:
        raise InvalidInputError(f"spearman needs two vectors of the same length, got {x.size} and {y.size}")
    if x.size < 2 or np.isnan(x).any() or np.isnan(y).any():
        return math.nan
    rx = rankdata(x)
    ry = rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    if denominator == 0.0:
        return math.nan
    return float(np.clip(float(rx @ ry) / denominator, -1.0, 1.0))


def _vector(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64).ravel()


def removal_counts(num_tokens: int, bins: Sequence[float] = DEFAULT_BINS) -> list[int]:
    """How many of ``num_tokens`` removable tokens each bin removes: ``ceil(k · num_tokens)``.

    The ceiling makes every bin remove at least one token (short sentences would otherwise skip the small
    bins); a tiny slack keeps exact products such as 0.3 · 10 at 3.
    """
    return [min(num_tokens, math.ceil(k * num_tokens - 1e-9)) for k in bins]


def erasure_order(scores: Any, special_mask: Sequence[bool]) -> np.ndarray:
    """Positions of the non-special tokens, highest score first (ties: earlier position first)."""
    values = _vector(scores)
    if values.size != len(special_mask):
        raise InvalidInputError(f"got {values.size} scores for {len(special_mask)} tokens")
    candidates = np.flatnonzero(~np.asarray(special_mask, dtype=bool))
    # NaN scores rank last
    keys = np.where(np.isnan(values[candidates]), -np.inf, values[candidates])
    return candidates[np.argsort(-keys, kind="stable")]


def check_bins(bins: Sequence[float]) -> tuple[float, ...]:
    """AOPC bins as a tuple of fractions in (0, 1]."""
    try:
        out = tuple(float(k) for k in bins)
    except (TypeError, ValueError):
        raise InvalidInputError(f"bins must be fractions in (0, 1], got {bins!r}") from None
    if not out or any(not 0.0 < k <= 1.0 for k in out):
        raise InvalidInputError(f"bins must be a non-empty sequence of fractions in (0, 1], got {bins!r}")
    return out


@dataclass(frozen=True, eq=False)
class AOPCCurve:
    """Erasure curves of one method on one input (DeYoung et al., ERASER, ACL 2020).

    Attributes:
        bins: the fractions k of the removable (non-special) tokens.
        counts: ``[K]`` how many tokens each bin removes (or keeps), ``ceil(k · m)`` of m removable tokens.
        comprehensiveness: ``[K]`` ``p_y(x) − p_y(x without the top-k tokens)`` (higher: more faithful).
        sufficiency: ``[K]`` ``p_y(x) − p_y(only the top-k tokens, specials kept)`` (lower: more faithful).
        probability: ``p_y(x)``.
    """

    bins: tuple[float, ...]
    counts: tuple[int, ...]
    comprehensiveness: np.ndarray
    sufficiency: np.ndarray
    probability: float

    @property
    def aopc_comprehensiveness(self) -> float:
        """Comprehensiveness averaged over the bins."""
        return float(np.mean(self.comprehensiveness))

    @property
    def aopc_sufficiency(self) -> float:
        """Sufficiency averaged over the bins."""
        return float(np.mean(self.sufficiency))


def _erased_ids(encoding: Encoding, removed: np.ndarray, removal: Removal, blank: int | None) -> dict[str, list[int]]:
    """A tokenised variant of ``encoding`` with the positions ``removed`` deleted or blanked out."""
    ids = list(encoding.input_ids)
    gone = {int(i) for i in removed}
    if removal == "delete":
        keep = [i for i in range(len(ids)) if i not in gone]
        feature = {"input_ids": [ids[i] for i in keep]}
        if encoding.segment_ids is not None:
            feature["token_type_ids"] = [encoding.segment_ids[i] for i in keep]
        return feature
    assert blank is not None
    return token_features(encoding, [blank if i in gone else t for i, t in enumerate(ids)])


def _key(feature: Mapping[str, Sequence[int]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((name, tuple(values)) for name, values in sorted(feature.items()))


class Erasures:
    """Variants of one input with some positions removed, deduplicated, each run once in batched calls.

    Row 0 is the input itself. :meth:`add` returns the row of a variant (an existing one when the same token ids
    were asked for before); :meth:`probabilities` runs every row not run yet in one
    :meth:`Model.predict_batch` call and returns the target's probability of the rows asked for.

    Args:
        model: the model (with a tokenizer).
        encoding: the input.
        removal: ``"delete"`` the positions, or replace them in place by the ``"unk"`` / ``"mask"`` token.
        target: the class whose probability is read.
        batch_size: rows per forward pass (speed only).
    """

    def __init__(self, model: Model, encoding: Encoding, removal: Removal, target: int, batch_size: int) -> None:
        if not encoding.input_ids:
            raise InvalidInputError("AOPC needs token ids; this input has none (image models are not supported)")
        self.model = model
        self.encoding = encoding
        self.removal = removal
        self.target = target
        self.batch_size = batch_size
        self._blank = None if removal == "delete" else replacement_id(model, removal)
        self._items: list[dict[str, list[int]]] = [token_features(encoding, encoding.input_ids)]
        self._index: dict[tuple[tuple[str, tuple[int, ...]], ...], int] = {_key(self._items[0]): 0}
        self._values = np.empty(0)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, removed: Sequence[int] | np.ndarray) -> int:
        """The row of the input with the positions ``removed`` removed."""
        feature = _erased_ids(self.encoding, np.asarray(removed, dtype=np.int64), self.removal, self._blank)
        key = _key(feature)
        if key not in self._index:
            self._index[key] = len(self._items)
            self._items.append(feature)
        return self._index[key]

    def probabilities(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``p_target`` of ``rows`` (default: every row), float64; new rows run in one batched call."""
        done = self._values.size
        if done < len(self._items):
            fresh = self.model.predict_batch(self._items[done:], batch_size=self.batch_size)
            self._values = np.concatenate([self._values, fresh.double()[:, self.target].numpy()])
        return self._values if rows is None else self._values[np.asarray(rows, dtype=np.int64)]


def erasure_curves(
    model: Model,
    encoding: Encoding,
    scores: Mapping[str, Any],
    target: int,
    bins: tuple[float, ...],
    removal: Removal,
    batch_size: int,
    *,
    erasures: Erasures | None = None,
) -> dict[str, AOPCCurve]:
    """Every method's erasure curves from one batched :meth:`Model.predict_batch` call (variants deduplicated).

    ``erasures``: a shared :class:`Erasures` of this input (its variants are then run together with any others
    already added to it).
    """
    batch = erasures if erasures is not None else Erasures(model, encoding, removal, target, batch_size)
    special = list(encoding.special_mask) or [False] * encoding.length
    plans: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for method, values in scores.items():
        order = erasure_order(values, special)
        counts = removal_counts(order.size, bins)
        dropped = [batch.add(order[:c]) for c in counts]
        kept = [batch.add(order[c:]) for c in counts]
        plans[method] = (counts, dropped, kept)
    probabilities = batch.probabilities()
    base = float(probabilities[0])
    curves = {}
    for method, (counts, dropped, kept) in plans.items():
        if not counts or counts[-1] == 0:
            nan = np.full(len(bins), np.nan)
            curves[method] = AOPCCurve(bins, tuple(counts), nan, nan.copy(), base)
            continue
        curves[method] = AOPCCurve(
            bins=bins,
            counts=tuple(counts),
            comprehensiveness=base - probabilities[dropped],
            sufficiency=base - probabilities[kept],
            probability=base,
        )
    return curves


def aopc(
    model: Model | nn.Module,
    inputs: Any,
    scores: Mapping[str, Any] | torch.Tensor,
    *,
    target: int | None = None,
    bins: Sequence[float] = DEFAULT_BINS,
    removal: Removal = "delete",
    batch_size: int = 32,
) -> dict[str, AOPCCurve]:
    """Comprehensiveness and sufficiency curves of token scores on one input (ERASER, DeYoung et al. 2020).

    For each bin k, the ``ceil(k · m)`` highest-scoring of the m non-special tokens are removed
    (comprehensiveness) or are the only ones kept (sufficiency); [CLS]/[SEP]/BOS always stay. Ties are broken
    by position (earlier first). The AOPC of a method is the curve's mean over the bins.

    Args:
        model: an :class:`attrflow.Model` with a tokenizer.
        inputs: a string, a ``(text, text_pair)`` tuple, a dict of batch-1 tensors, or an ``Encoding``.
        scores: ``[n]`` token scores (a tensor or a :class:`~attrflow.TokenScores`), or a mapping from method names
            to those.
        target: the class y whose probability is measured; default the predicted class.
        bins: the fractions k, each in (0, 1]; default 10%, 20%, …, 100%.
        removal: ``"delete"`` the tokens (ERASER; the input gets shorter), or replace them in place by the
            ``"unk"`` or ``"mask"`` token.
        batch_size: rows per forward pass (speed only).

    Returns:
        ``{method: AOPCCurve}`` (the key ``"scores"`` when a single vector was given).
    """
    wrapped = model if isinstance(model, Model) else load_model(model)
    check_choice("removal", removal, Removal)
    chosen_bins = check_bins(bins)
    encoding = wrapped.prepare(inputs)
    named = dict(scores) if isinstance(scores, Mapping) else {"scores": scores}
    vectors = {name: getattr(values, "overall", values) for name, values in named.items()}
    for name, values in vectors.items():
        if _vector(values).size != encoding.length:
            raise InvalidInputError(f"{name}: got {_vector(values).size} scores for {encoding.length} tokens")
    with torch.no_grad():
        predicted = int(wrapped.run(encoding).argmax(dim=-1)[0])
    y = wrapped.resolve_target(target, predicted)
    return erasure_curves(wrapped, encoding, vectors, y, chosen_bins, removal, batch_size)
