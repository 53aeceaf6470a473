"""Adversarial triggers from attribution patterns (Hao et al., AAAI 2021, §5), with a random-token control.

Mining (the official ``run_adver_connection.py``): for each source example, explain the predicted class with
self-attention attribution over all layers, take the single head that holds the largest attribution entry, and
keep that head's two largest entries ``(query, key)`` — the example's strongest *attention pattern*. Patterns are
ranked by the sum of the two scores.

Attack (the official ``run_adver_evaluate.py``): a pattern's word-pieces (the first pair, plus the second when its
score is at least ``ratio`` × the first's; special tokens dropped) are inserted into every evaluation example at
the same *relative* positions they had in the source example, per segment for sentence pairs. The same trigger is
used for every input (universal, non-targeted). Accuracy is reported per gold label, before and after.

The paper reports the drop but not what any insertion of that many tokens would do. attrflow adds that control:
the same number of random vocabulary tokens at the same positions, over several seeds (mean ± std).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pyarrow as pa
import torch

from attrflow._optional import require
from attrflow.errors import InvalidInputError, ResultFormatError, UnsupportedModelError
from attrflow.methods.attribution import DEFAULT_RULE, DEFAULT_STEPS, Steps, attribute, check_steps
from attrflow.methods.quadrature import RULES, Rule
from attrflow.models import Model, load_model
from attrflow.runner import Batch, DatasetTask, Engine, run_dataset

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_CONTROL_SEEDS",
    "DEFAULT_MIN_SCORE",
    "DEFAULT_PAIR_RATIO",
    "AttackOutcome",
    "AttackReport",
    "Pattern",
    "PatternMiningTask",
    "Sample",
    "Trigger",
    "TriggerPatterns",
    "attack",
    "insert_trigger",
    "mine_pattern",
    "mine_patterns",
    "trigger_attack",
]

logger = logging.getLogger(__name__)

Sample = Literal["first", "random"]

DEFAULT_MIN_SCORE = 0.02
"""Patterns whose summed score is below this are not used as triggers (the official ``pattern_threshold``)."""
DEFAULT_PAIR_RATIO = 0.2
"""The second pair joins the trigger when its score is at least this fraction of the first's (official code)."""
DEFAULT_CONTROL_SEEDS = 5
SPECIAL = -1
"""Segment value of special tokens ([CLS], [SEP], <s>, ...) in :attr:`Pattern.segments`."""
OVERALL = "all"
"""The ``label`` of the rows that count every evaluation example."""

_PATTERNS_FORMAT = "attrflow-trigger-patterns"
_PATTERNS_VERSION = 1
# inputs per predict_batch call in attack(): how often the progress bar moves (results do not depend on it)
_PROGRESS_CHUNK = 256
# tokens that are vocabulary placeholders rather than word-pieces: BERT's [unused17], <extra_id_0>, ...
_PLACEHOLDER = re.compile(r"^(\[[^\]]*\]|<[^>]*>)$")


# ====================================================================== tokenisation and insertion
@dataclass(frozen=True)
class _Tokenized:
    """One input as the model sees it: ids, token types, and the segment of every position (-1: special)."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    segments: tuple[int, ...]

    def features(self) -> dict[str, list[int]]:
        out = {"input_ids": list(self.input_ids), "attention_mask": [1] * len(self.input_ids)}
        if self.token_type_ids is not None:
            out["token_type_ids"] = list(self.token_type_ids)
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        return {key: torch.tensor([value], dtype=torch.long) for key, value in self.features().items()}


def _segments(tokenizer: Any, encoded: Any, ids: Sequence[int], has_pair: bool) -> tuple[int, ...]:
    """The segment (0, 1, or -1 for special tokens) of every position of a tokenised input."""
    try:
        sequence_ids = encoded.sequence_ids(0)
    except (ValueError, AttributeError, TypeError):
        sequence_ids = None
    if sequence_ids is not None and len(sequence_ids) == len(ids):
        return tuple(SPECIAL if s is None else int(s) for s in sequence_ids)
    # slow tokenizers: the non-special tokens form one run per segment, separated by special tokens
    special = tokenizer.get_special_tokens_mask(list(ids), already_has_special_tokens=True)
    segments, segment, previous_special = [], -1, True
    for is_special in special:
        if is_special:
            segments.append(SPECIAL)
        else:
            if previous_special:
                segment += 1
            segments.append(min(segment, 1 if has_pair else 0))
        previous_special = bool(is_special)
    return tuple(segments)


def _tokenize(tokenizer: Any, text: str, text_pair: str | None, max_length: int | None) -> _Tokenized:
    """Tokenise like the model's own encoding (special tokens, truncation to ``max_length``)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"an example has an empty text ({text!r}); remove it from the dataset")
    if max_length is not None and max_length < 1:
        raise InvalidInputError("the model's maximum length leaves no room for the trigger tokens")
    encoded = tokenizer(text, text_pair, truncation=max_length is not None, max_length=max_length)
    ids = tuple(int(i) for i in encoded["input_ids"])
    types = encoded.get("token_type_ids")
    return _Tokenized(
        input_ids=ids,
        token_type_ids=None if types is None else tuple(int(t) for t in types),
        segments=_segments(tokenizer, encoded, ids, text_pair is not None),
    )


def _plan_positions(relative: Sequence[float], length: int) -> list[int]:
    """Indices in a segment of ``length + k`` tokens where k inserted tokens go, from their relative positions.

    A token at relative position r (0 = first word-piece of its segment, 1 = last) lands at index
    ``round(r · (length + k − 1))``. Collisions move a later token one place right, and the plan is then pulled
    left where it would run past the end, so every inserted token keeps its order and a slot of its own.
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


def _insert(tokenized: _Tokenized, trigger: Trigger) -> _Tokenized:
    """``tokenized`` with the trigger's word-pieces inserted at their relative positions in their segments."""
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
        plan = _plan_positions([trigger.relative_positions[t] for t in members], len(where))
        new_ids: list[int] = []
        original = iter(ids[start:end])
        slots = dict(zip(plan, members, strict=True))
        for index in range(len(where) + len(members)):
            new_ids.append(trigger.token_ids[slots[index]] if index in slots else next(original))
        ids[start:end] = new_ids
        segments[start:end] = [segment] * len(new_ids)
        if types is not None:
            types[start:end] = [types[start]] * len(new_ids)
    return _Tokenized(tuple(ids), None if types is None else tuple(types), tuple(segments))


def _texts(example: Any) -> tuple[str, str | None]:
    """``(text, text_pair)`` of a string, a pair tuple, or an example object with ``.text``/``.text_pair``."""
    if isinstance(example, str):
        return example, None
    if isinstance(example, tuple) and len(example) == 2:
        return example[0], example[1]
    text = getattr(example, "text", None)
    if text is None:
        raise InvalidInputError(
            f"cannot read a text from {type(example).__name__}: give examples with .text (and .text_pair), "
            "strings, or (text, text_pair) tuples"
        )
    return text, getattr(example, "text_pair", None)


def _check_classifier(model: Model) -> None:
    if model.task != "sequence-classification":
        raise UnsupportedModelError(
            f"adversarial triggers need a sequence classifier; {model.name} is a {model.task} model"
        )
    if model.tokenizer is None:
        raise InvalidInputError("triggers are word-pieces: this model needs a tokenizer (load_model(..., tokenizer=))")


# ====================================================================== patterns and triggers
@dataclass(frozen=True)
class Trigger:
    """Word-pieces to insert into every input, each at a relative position of a segment.

    Attributes:
        token_ids: the word-piece ids, in the order they had in the source example.
        tokens: their spelling.
        segments: the segment of each (0: text, 1: text_pair).
        relative_positions: where each goes in its segment: 0 = first word-piece, 1 = last, linear in between.
        score: the summed attribution score of the pattern it came from.
        label: the class the source example was predicted as (the pattern's attribution target).
        source: the example id of the source example, if mined.
        source_tokens: the source example's tokens (for display).
        source_indices: where the trigger's tokens sit in ``source_tokens``.
    """

    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    segments: tuple[int, ...]
    relative_positions: tuple[float, ...]
    score: float = math.nan
    label: int = -1
    source: int | None = None
    source_tokens: tuple[str, ...] = ()
    source_indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.token_ids)
        if not (len(self.tokens) == len(self.segments) == len(self.relative_positions) == k):
            raise InvalidInputError("a trigger needs one token, segment and relative position per token id")
        if any(s not in (0, 1) for s in self.segments):
            raise InvalidInputError(f"trigger segments must be 0 or 1, got {self.segments}")
        if any(not 0.0 <= r <= 1.0 for r in self.relative_positions):
            raise InvalidInputError(f"relative positions must lie in [0, 1], got {self.relative_positions}")

    def __len__(self) -> int:
        return len(self.token_ids)

    def with_tokens(self, token_ids: Sequence[int], tokens: Sequence[str]) -> Trigger:
        """The same positions with other word-pieces (the random control)."""
        return dataclasses.replace(self, token_ids=tuple(int(i) for i in token_ids), tokens=tuple(tokens))

    def describe(self) -> str:
        """``token@segment:position`` for every token, e.g. ``"awful@0:0.50 movie@1:1.00"``."""
        return " ".join(
            f"{t}@{s}:{r:.2f}" for t, s, r in zip(self.tokens, self.segments, self.relative_positions, strict=True)
        )


@dataclass(frozen=True)
class Pattern:
    """The strongest attention pattern of one source example (paper §5).

    Attributes:
        example_id: the example's id in the mined dataset.
        tokens: its n tokens (special tokens included).
        input_ids: its n token ids.
        segments: the segment of every token: 0 (text), 1 (text_pair) or -1 (special token).
        layer: the layer of the head holding the example's largest attribution entry.
        head: that head.
        interactions: ``((query, key), (query, key))``: that head's largest and second largest entries, as token
            indices ("query attends to key").
        scores: their attribution scores (to the predicted class's probability).
        predicted: the predicted class (the attribution target).
        label: the gold label (-1 when unknown).
        probability: the predicted class's probability.
        completeness_gap: the largest |completeness gap| over the layers (quadrature quality).
    """

    example_id: int
    tokens: tuple[str, ...]
    input_ids: tuple[int, ...]
    segments: tuple[int, ...]
    layer: int
    head: int
    interactions: tuple[tuple[int, int], tuple[int, int]]
    scores: tuple[float, float]
    predicted: int
    label: int
    probability: float
    completeness_gap: float = math.nan

    @property
    def score(self) -> float:
        """The summed score of the two entries: what patterns are ranked by."""
        return float(self.scores[0] + self.scores[1])

    def positions(self, *, ratio: float = DEFAULT_PAIR_RATIO) -> tuple[int, ...]:
        """Token indices of the trigger: the first pair's, plus the second's when its score ≥ ``ratio`` × the
        first's; duplicates and special tokens removed; ascending."""
        chosen = set(self.interactions[0])
        first, second = self.scores
        if first > 0 and second >= ratio * first:
            chosen |= set(self.interactions[1])
        return tuple(sorted(p for p in chosen if self.segments[p] != SPECIAL))

    def relative_position(self, index: int) -> float:
        """Where token ``index`` sits in its segment: 0 = first word-piece, 1 = last (0 in a 1-token segment)."""
        segment = self.segments[index]
        if segment == SPECIAL:
            raise InvalidInputError(f"token {index} ({self.tokens[index]!r}) is a special token")
        members = [p for p, s in enumerate(self.segments) if s == segment]
        return members.index(index) / (len(members) - 1) if len(members) > 1 else 0.0

    def trigger(self, *, ratio: float = DEFAULT_PAIR_RATIO) -> Trigger:
        """The trigger this pattern gives (possibly empty when both pairs only join special tokens)."""
        positions = self.positions(ratio=ratio)
        return Trigger(
            token_ids=tuple(self.input_ids[p] for p in positions),
            tokens=tuple(self.tokens[p] for p in positions),
            segments=tuple(self.segments[p] for p in positions),
            relative_positions=tuple(self.relative_position(p) for p in positions),
            score=self.score,
            label=self.predicted,
            source=self.example_id,
            source_tokens=self.tokens,
            source_indices=positions,
        )


def _pattern_schema() -> pa.Schema:
    return pa.schema(
        [
            ("tokens", pa.list_(pa.string())),
            ("input_ids", pa.list_(pa.int64())),
            ("segments", pa.list_(pa.int8())),
            ("label", pa.int64()),
            ("predicted", pa.int64()),
            ("probability", pa.float64()),
            ("layer", pa.int64()),
            ("head", pa.int64()),
            ("query_1", pa.int64()),
            ("key_1", pa.int64()),
            ("score_1", pa.float64()),
            ("query_2", pa.int64()),
            ("key_2", pa.int64()),
            ("score_2", pa.float64()),
            ("score", pa.float64()),
            ("completeness_gap", pa.float64()),
        ]
    )


def _record(pattern: Pattern) -> dict[str, Any]:
    (q1, k1), (q2, k2) = pattern.interactions
    return {
        "tokens": list(pattern.tokens),
        "input_ids": list(pattern.input_ids),
        "segments": list(pattern.segments),
        "label": pattern.label,
        "predicted": pattern.predicted,
        "probability": pattern.probability,
        "layer": pattern.layer,
        "head": pattern.head,
        "query_1": q1,
        "key_1": k1,
        "score_1": pattern.scores[0],
        "query_2": q2,
        "key_2": k2,
        "score_2": pattern.scores[1],
        "score": pattern.score,
        "completeness_gap": pattern.completeness_gap,
    }


def _pattern_from_row(row: Mapping[str, Any]) -> Pattern:
    return Pattern(
        example_id=int(row["example_id"]),
        tokens=tuple(str(t) for t in row["tokens"]),
        input_ids=tuple(int(i) for i in row["input_ids"]),
        segments=tuple(int(s) for s in row["segments"]),
        layer=int(row["layer"]),
        head=int(row["head"]),
        interactions=((int(row["query_1"]), int(row["key_1"])), (int(row["query_2"]), int(row["key_2"]))),
        scores=(float(row["score_1"]), float(row["score_2"])),
        predicted=int(row["predicted"]),
        label=int(row["label"]),
        probability=float(row["probability"]),
        completeness_gap=float(row["completeness_gap"]),
    )


def mine_pattern(
    model: Model,
    example: Any,
    *,
    example_id: int = 0,
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
) -> Pattern:
    """The strongest attention pattern of one example (see :class:`Pattern`).

    Attributes every layer's attention (``Attr(A_l) = A_l ⊙ ∫₀¹ ∂F(α·A_l)/∂A_l dα``, F = probability of the
    predicted class), finds the head holding the largest entry of all ``[L, H, n, n]`` entries (the first in
    (layer, head, query, key) order on ties), and returns that head's two largest entries.

    Args:
        model: a sequence classifier with a tokenizer.
        example: a text, a ``(text, text_pair)`` tuple, or an object with ``.text``, ``.text_pair``, ``.label``.
        example_id: the id recorded on the pattern.
        steps: quadrature points of the attribution.
        rule: quadrature rule.

    Returns:
        The example's :class:`Pattern`.
    """
    _check_classifier(model)
    text, text_pair = _texts(example)
    tokenized = _tokenize(model.tokenizer, text, text_pair, model.max_length())
    if len(tokenized.input_ids) < 2:
        raise InvalidInputError("an example has fewer than two tokens; there is no interaction to mine")
    encoding = model.prepare(tokenized.tensors())
    result = attribute(model, encoding, steps=steps, rule=rule)
    attributions = result.attributions  # [L, H, n, n]
    n = attributions.shape[-1]
    # torch.argmax returns the first maximal index: ties go to the lower layer, head, query, key
    layer_row, within = divmod(int(attributions.flatten().argmax()), attributions.shape[1] * n * n)
    head = within // (n * n)
    head_matrix = attributions[layer_row, head].flatten()
    order = torch.sort(head_matrix, descending=True, stable=True).indices[:2].tolist()
    interactions = (divmod(order[0], n), divmod(order[1], n))
    return Pattern(
        example_id=int(example_id),
        tokens=result.tokens,
        input_ids=tuple(tokenized.input_ids),
        segments=tokenized.segments,
        layer=int(result.layers[layer_row]),
        head=int(head),
        interactions=interactions,
        scores=(float(head_matrix[order[0]]), float(head_matrix[order[1]])),
        predicted=int(result.predicted),
        label=int(getattr(example, "label", -1)),
        probability=float(result.probability),
        completeness_gap=float(result.completeness_gap.abs().max()),
    )


# ====================================================================== the mining task (dataset runner)
def _model_source(model: Model) -> str | None:
    """A name or path a Ray worker can load ``model`` from, if it has one."""
    from attrflow import zoo

    name = model.name
    if name in tuple(getattr(zoo, "BUILTIN_MODELS", ())) or (name and Path(name).is_dir()):
        return name
    return None


class PatternMiningTask(DatasetTask):
    """Mine one :class:`Pattern` per example on the dataset runner (local or Ray).

    Args:
        model: a built-in model name or checkpoint directory (loaded in :meth:`setup`, on each worker); or an
            already loaded :class:`~attrflow.Model` for the local engine (Ray pickles the task to its workers and
            needs a name or path).
        steps: quadrature points of the attribution.
        rule: quadrature rule.
        device: where a model loaded by :meth:`setup` runs.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Model,
        *,
        steps: Steps = DEFAULT_STEPS,
        rule: Rule = DEFAULT_RULE,
        device: str | None = None,
    ) -> None:
        if rule not in RULES:
            raise InvalidInputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
        steps = check_steps(steps)
        self._live = model if isinstance(model, Model) else None
        self.model_name = model.name if isinstance(model, Model) else str(model)
        self.steps = steps
        self.rule: Rule = rule
        self.device = device
        self._model: Model | None = self._live

    @property
    def name(self) -> str:
        return "trigger-patterns"

    def __getstate__(self) -> dict[str, Any]:
        if self._live is not None:
            raise InvalidInputError(
                "a PatternMiningTask holding a loaded model cannot be sent to Ray workers; give the model as a "
                "built-in name or a checkpoint directory"
            )
        return {**self.__dict__, "_model": None}

    def settings(self) -> Mapping[str, Any]:
        return {
            "analysis": "trigger-patterns",
            "version": _PATTERNS_VERSION,
            "model": self.model_name,
            "method": "attattr",
            "steps": self.steps,
            "rule": self.rule,
        }

    def schema(self) -> pa.Schema:
        return _pattern_schema()

    def setup(self) -> None:
        if self._model is None:
            self._model = load_model(self.model_name, device=self.device)
        _check_classifier(self._model)

    def process(self, batch: Batch) -> Sequence[Mapping[str, Any]]:
        assert self._model is not None, "setup() was not called"
        return [
            _record(mine_pattern(self._model, example, example_id=eid, steps=self.steps, rule=self.rule))
            for eid, example in batch
        ]

    def teardown(self) -> None:
        if self._live is None:
            self._model = None


class _Subset(Sequence[Any]):
    """Some examples of a dataset, keeping their positions in it as ``example_ids`` (for the runner)."""

    def __init__(self, dataset: Any, positions: Sequence[int]) -> None:
        self._dataset = dataset
        self.example_ids = [int(p) for p in positions]
        fingerprint = getattr(dataset, "fingerprint", None)
        if isinstance(fingerprint, str):
            self.fingerprint = f"{fingerprint}:{json.dumps(self.example_ids)}"

    def __len__(self) -> int:
        return len(self.example_ids)

    def __getitem__(self, index: Any) -> Any:
        return self._dataset[self.example_ids[index]]


# ====================================================================== mined patterns (result)
@dataclass(frozen=True, eq=False)
class TriggerPatterns:
    """The mined patterns of a dataset, strongest first (see :func:`mine_patterns`).

    Attributes:
        patterns: one :class:`Pattern` per mined example, sorted by summed score (descending; ties by example id).
        label_names: the name of each class index.
        settings: how they were mined (model, steps, rule, min_score, examples, ...).
    """

    patterns: tuple[Pattern, ...]
    label_names: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.patterns)

    @property
    def min_score(self) -> float:
        """Summed score a pattern needs to be used as a trigger."""
        return float(self.settings.get("min_score", DEFAULT_MIN_SCORE))

    def label_name(self, index: int) -> str:
        """Name of class ``index`` (the index itself when no names are known)."""
        return self.label_names[index] if 0 <= index < len(self.label_names) else str(index)

    def triggers(
        self, top: int | None = None, *, ratio: float = DEFAULT_PAIR_RATIO, min_score: float | None = None
    ) -> list[Trigger]:
        """The triggers of the strongest patterns with score ≥ ``min_score``, strongest first.

        Patterns whose trigger is empty (both pairs join special tokens only) or repeats a stronger one exactly
        (same word-pieces at the same positions) are skipped. ``top=None`` returns all; ``min_score=None`` uses
        the one the patterns were mined with.
        """
        _positive("top", top, allow_none=True)
        threshold = self.min_score if min_score is None else float(min_score)
        out: list[Trigger] = []
        seen: set[tuple[Any, ...]] = set()
        for pattern in self.patterns:
            if pattern.score < threshold or (top is not None and len(out) >= top):
                break
            trigger = pattern.trigger(ratio=ratio)
            key = (trigger.token_ids, trigger.segments, trigger.relative_positions)
            if len(trigger) == 0 or key in seen:
                continue
            seen.add(key)
            out.append(trigger)
        return out

    def to_table(self) -> pa.Table:
        """An Arrow table: ``rank``, the mined record of each example, and the trigger it gives."""
        rows = []
        for rank, pattern in enumerate(self.patterns):
            trigger = pattern.trigger()
            rows.append(
                {
                    "rank": rank,
                    "example_id": pattern.example_id,
                    **_record(pattern),
                    "predicted_label": self.label_name(pattern.predicted),
                    "trigger_tokens": list(trigger.tokens),
                    "trigger_segments": list(trigger.segments),
                    "trigger_positions": list(trigger.relative_positions),
                }
            )
        schema = pa.schema(
            [
                ("rank", pa.int64()),
                ("example_id", pa.int64()),
                *_pattern_schema(),
                ("predicted_label", pa.string()),
                ("trigger_tokens", pa.list_(pa.string())),
                ("trigger_segments", pa.list_(pa.int8())),
                ("trigger_positions", pa.list_(pa.float64())),
            ]
        )
        meta = {"format": _PATTERNS_FORMAT, "version": _PATTERNS_VERSION}
        meta |= {"label_names": list(self.label_names), "settings": dict(self.settings)}
        return pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(
            {"attrflow.patterns": json.dumps(meta)}
        )

    def to_frame(self) -> pd.DataFrame:
        """:meth:`to_table` as a pandas DataFrame (one row per pattern, strongest first)."""
        return self.to_table().to_pandas()

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_table` to a Parquet file (reload with :meth:`read_parquet`)."""
        import pyarrow.parquet as pq

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.to_table(), target)
        return target

    @classmethod
    def read_parquet(cls, path: str | os.PathLike[str]) -> TriggerPatterns:
        """Load patterns written by :meth:`to_parquet`.

        Raises:
            ResultFormatError: the file is missing or was not written by :meth:`to_parquet`.
        """
        import pyarrow.parquet as pq

        source = Path(path)
        try:
            table = pq.read_table(source)
            meta = json.loads((table.schema.metadata or {})[b"attrflow.patterns"])
        except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
            raise ResultFormatError(f"{source}: not a patterns file written by attrflow ({exc})") from exc
        if meta.get("format") != _PATTERNS_FORMAT or meta.get("version", 0) > _PATTERNS_VERSION:
            raise ResultFormatError(f"{source}: unsupported patterns file (format {meta.get('format')!r})")
        patterns = tuple(_pattern_from_row(row) for row in table.to_pylist())
        return cls(patterns, tuple(meta.get("label_names", ())), dict(meta.get("settings", {})))

    def plot(self, ax: Axes | None = None, *, top: int = 10) -> Figure:
        """Horizontal bars of the ``top`` strongest patterns' scores (first and second entry stacked)."""
        figure, axes = _axes(ax, (8.0, 0.4 * min(top, max(len(self), 1)) + 1.4))
        shown = list(reversed(self.patterns[:top]))
        labels = [
            f"{_pair_text(p, 0, scores=False)}  |  {_pair_text(p, 1, scores=False)}  ({self.label_name(p.predicted)})"
            for p in shown
        ]
        first = [p.scores[0] for p in shown]
        second = [p.scores[1] for p in shown]
        y = np.arange(len(shown))
        axes.barh(y, first, color="#d62728", label="largest entry")
        axes.barh(y, second, left=first, color="#ff9896", label="second entry")
        if shown and self.min_score <= max(p.score for p in shown):
            axes.axvline(self.min_score, color="black", linestyle=":", linewidth=1, label="min_score")
        axes.set_yticks(y, labels, fontsize=8)
        axes.set_xlabel("attribution score (summed)")
        axes.set_title("strongest attention patterns: query → key (predicted class)", fontsize=10)
        axes.legend(fontsize=8, loc="lower right")
        return figure

    def to_html(self, *, top: int = 20) -> str:
        """A self-contained HTML page: the ``top`` patterns with their source tokens (trigger tokens marked)."""
        rows = []
        for rank, pattern in enumerate(self.patterns[:top]):
            trigger = pattern.trigger()
            rows.append(
                "<tr>"
                f"<td>{rank}</td><td>{_num(pattern.score)}</td><td>{_esc(self.label_name(pattern.predicted))}</td>"
                f"<td>L{pattern.layer} H{pattern.head}</td><td>{_esc(_pair_text(pattern, 0))}<br>"
                f"{_esc(_pair_text(pattern, 1))}</td><td>{_source_html(pattern.tokens, trigger.source_indices)}</td>"
                "</tr>"
            )
        table = (
            "<table><thead><tr><th>rank</th><th>score</th><th>predicted</th><th>head</th>"
            "<th>top pairs (query → key)</th><th>source (trigger tokens marked)</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )
        intro = (
            f"<p>{len(self)} examples mined; patterns with summed score ≥ {_num(self.min_score)} can serve as "
            "triggers. Score: self-attention attribution (Hao et al. 2021) of the head holding each example's "
            "largest entry, summed over its two largest entries.</p>"
        )
        return _page("attrflow: attention patterns", intro + table)

    def _repr_html_(self) -> str:
        return self.to_html(top=10)

    def __repr__(self) -> str:
        best = f", best={self.patterns[0].score:.4f}" if self.patterns else ""
        return f"TriggerPatterns({len(self)} patterns{best}, min_score={self.min_score})"


def _pair_text(pattern: Pattern, which: int, *, scores: bool = True) -> str:
    query, key = pattern.interactions[which]
    text = f"{pattern.tokens[query]} → {pattern.tokens[key]}"
    return f"{text} ({pattern.scores[which]:.3g})" if scores else text


def _label_names(dataset: Any, model: Model) -> tuple[str, ...]:
    names = getattr(dataset, "label_names", None)
    if names:
        return tuple(str(n) for n in names)
    return tuple(model.label_name(i) or str(i) for i in range(model.num_outputs))


def _as_model(model: Model | str | os.PathLike[str], device: str | None = None) -> Model:
    return model if isinstance(model, Model) else load_model(os.fspath(model), device=device)


def _positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a whole number >= 1{' or None' if allow_none else ''}, got {value!r}")


def _sample_positions(size: int, examples: int | None, sample: Sample, seed: int) -> list[int]:
    """Positions of ``examples`` of ``size`` examples: the first ones, or a seeded draw kept in dataset order."""
    if sample not in get_args(Sample):
        raise InvalidInputError(f"sample must be one of {', '.join(get_args(Sample))}; got {sample!r}")
    count = size if examples is None else min(examples, size)
    if sample == "first":
        return list(range(count))
    drawn = np.random.default_rng(seed).choice(size, size=count, replace=False)
    return sorted(int(p) for p in drawn)


def mine_patterns(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    *,
    examples: int | None = 500,
    sample: Sample = "first",
    seed: int = 0,
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    min_score: float = DEFAULT_MIN_SCORE,
    min_tokens: int = 0,
    engine: Engine = "local",
    out_dir: str | os.PathLike[str] | None = None,
    address: str | None = None,
    num_workers: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> TriggerPatterns:
    """Mine the strongest attention pattern of each of ``examples`` examples (Hao et al. 2021, §5).

    Per example: target = the predicted class; self-attention attribution of every layer (``[L, H, n, n]``);
    the single head holding the largest entry; that head's two largest ``(query, key)`` entries with their
    scores, tokens, positions (and segments), the predicted and the gold label. The result ranks the patterns by
    the sum of the two scores; those ≥ ``min_score`` can serve as triggers (:meth:`TriggerPatterns.triggers`).

    Runs on the dataset runner: progress bar, results stored in ``out_dir`` as Parquet parts, resumable after an
    interruption (same arguments, same ``out_dir``), and ``engine="ray"`` to spread examples over Ray workers.

    Args:
        model: a :class:`~attrflow.Model`, a built-in name or a checkpoint directory. With ``engine="ray"`` the
            workers load their own replica, so the model must be a name or path (or a Model loaded from one).
        dataset: a sequence of examples with ``.text``, ``.text_pair`` (or None) and ``.label`` (int), e.g.
            from :func:`attrflow.load_dataset`; ``dataset.label_names`` names the classes when present.
        examples: how many examples (official: 500); None for all.
        sample: ``"first"`` takes the first ``examples`` (the official scripts); ``"random"`` draws them without
            replacement with ``seed`` (kept in dataset order) — use it when the dataset is sorted, e.g. by label.
        seed: seed of the ``"random"`` sample.
        steps: quadrature points of the attribution.
        rule: quadrature rule (``"riemann-left"`` = the official code).
        min_score: summed score a pattern needs to become a trigger (official: 0.02).
        min_tokens: skip examples shorter than this many tokens, special tokens included (official SST-2: 15).
        engine: ``"local"`` or ``"ray"``.
        out_dir: the run directory; default a temporary one (no resume).
        address: Ray cluster address (``engine="ray"``).
        num_workers: Ray workers (``engine="ray"``).
        batch_size: examples per runner batch (speed only).
        progress: show a progress bar.

    Returns:
        The :class:`TriggerPatterns`, strongest first.
    """
    _positive("examples", examples, allow_none=True)
    positions = _sample_positions(len(dataset), examples, sample, seed)
    count = len(positions)
    if not isinstance(min_tokens, int) or min_tokens < 0:
        raise InvalidInputError(f"min_tokens must be a whole number >= 0, got {min_tokens!r}")
    if not math.isfinite(min_score):
        raise InvalidInputError(f"min_score must be a finite number, got {min_score!r}")
    loaded = _as_model(model)
    _check_classifier(loaded)
    if engine == "ray":
        source = str(model) if not isinstance(model, Model) else _model_source(model)
        if source is None:
            raise InvalidInputError(
                "engine='ray' loads a replica of the model on every worker, so give the model as a built-in name "
                "or a checkpoint directory (this Model was built from an object in memory)"
            )
        task = PatternMiningTask(source, steps=steps, rule=rule, device=str(loaded.device))
    else:
        task = PatternMiningTask(loaded, steps=steps, rule=rule)

    if min_tokens:
        limit = loaded.max_length()
        positions = [
            p for p in positions if len(_tokenize(loaded.tokenizer, *_texts(dataset[p]), limit).input_ids) >= min_tokens
        ]
        logger.info("%d of the %d examples have >= %d tokens", len(positions), count, min_tokens)
    subset = _Subset(dataset, positions)

    with contextlib.ExitStack() as stack:
        directory = out_dir if out_dir is not None else stack.enter_context(tempfile.TemporaryDirectory())
        run = run_dataset(
            task,
            subset,
            out_dir=directory,
            engine=engine,
            address=address,
            num_workers=num_workers,
            examples_per_batch=batch_size,
            progress=progress,
        )
        rows = run.read_table().to_pylist()
    patterns = sorted((_pattern_from_row(row) for row in rows), key=lambda p: (-p.score, p.example_id))
    settings = {
        **task.settings(),
        "min_score": float(min_score),
        "min_tokens": min_tokens,
        "examples": count,
        "sample": sample,
        "seed": seed if sample == "random" else None,
        "mined": len(patterns),
        "dataset": str(getattr(dataset, "name", type(dataset).__name__)),
        "split": getattr(dataset, "split", None),
    }
    return TriggerPatterns(tuple(patterns), _label_names(dataset, loaded), settings)


# ====================================================================== the attack
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
    _check_classifier(model)
    limit = model.max_length()
    tokenized = _tokenize(model.tokenizer, *_texts(example), None if limit is None else limit - len(trigger))
    return _insert(tokenized, trigger).features()


def _control_vocabulary(model: Model) -> np.ndarray:
    """Token ids a random control may use: the whole vocabulary except special tokens and placeholders."""
    tokenizer = model.tokenizer
    size = len(tokenizer)
    names = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    allowed = [i for i, name in enumerate(names) if i not in special and name and not _PLACEHOLDER.match(str(name))]
    vocab = int(model.model.config.get_text_config().vocab_size)
    return np.array([i for i in allowed if i < vocab], dtype=np.int64)


def _control_trigger(model: Model, trigger: Trigger, allowed: np.ndarray, seed: Sequence[int]) -> Trigger:
    """``trigger`` with its word-pieces replaced by distinct random vocabulary tokens (never its own)."""
    pool = allowed[~np.isin(allowed, np.array(trigger.token_ids, dtype=np.int64))]
    if pool.size < len(trigger):
        raise InvalidInputError("the vocabulary is too small for a random control of this trigger")
    rng = np.random.default_rng(list(seed))
    ids = rng.choice(pool, size=len(trigger), replace=False).tolist()
    return trigger.with_tokens(ids, [str(t) for t in model.tokenizer.convert_ids_to_tokens(ids)])


@dataclass(frozen=True)
class AttackOutcome:
    """Accuracy on one gold-label subset, before and after inserting one trigger.

    Attributes:
        trigger: index into :attr:`AttackReport.triggers`.
        label: the gold label's name, or ``"all"`` for every example.
        label_index: the gold class index (-1 for ``"all"``).
        count: examples in the subset.
        accuracy_before: accuracy on the clean inputs.
        accuracy_after: accuracy with the trigger inserted.
        control_accuracies: accuracy with random tokens at the trigger's positions, one per control seed.
    """

    trigger: int
    label: str
    label_index: int
    count: int
    accuracy_before: float
    accuracy_after: float
    control_accuracies: tuple[float, ...] = ()

    @property
    def control_accuracy_after(self) -> float:
        """Mean accuracy over the random controls (nan without controls)."""
        return float(np.mean(self.control_accuracies)) if self.control_accuracies else math.nan

    @property
    def control_std(self) -> float:
        """Sample standard deviation (ddof = 1) over the control seeds (nan with fewer than two)."""
        values = self.control_accuracies
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


@dataclass(frozen=True, eq=False)
class AttackReport:
    """What inserting mined triggers does to a classifier's accuracy, next to random tokens at the same places.

    Attributes:
        triggers: the triggers evaluated, strongest pattern first.
        outcomes: one :class:`AttackOutcome` per trigger and gold label, plus ``"all"``.
        label_names: the name of each class index.
        settings: model, dataset, number of examples, control seeds, seed, ratio, ...
        control_tokens: for each trigger, the random word-pieces of each control seed (in seed order).
    """

    triggers: tuple[Trigger, ...]
    outcomes: tuple[AttackOutcome, ...]
    label_names: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    control_tokens: tuple[tuple[tuple[str, ...], ...], ...] = ()

    def label_name(self, index: int) -> str:
        """Name of class ``index`` (the index itself when no names are known)."""
        return self.label_names[index] if 0 <= index < len(self.label_names) else str(index)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``attrflow attack`` (``attack.json``); nan becomes null.

        ``{"triggers": [{"tokens", "score", "label"}], "results": [{"trigger", "label", "accuracy_before",
        "accuracy_after", "control_accuracy_after", "control_std"}]}``: ``label`` of a trigger is the class its
        source example was predicted as; ``label`` of a result is a gold label's name or ``"all"``.
        """
        return {
            "triggers": [
                {"tokens": list(t.tokens), "score": _json_float(t.score), "label": self.label_name(t.label)}
                for t in self.triggers
            ],
            "results": [
                {
                    "trigger": o.trigger,
                    "label": o.label,
                    "accuracy_before": _json_float(o.accuracy_before),
                    "accuracy_after": _json_float(o.accuracy_after),
                    "control_accuracy_after": _json_float(o.control_accuracy_after),
                    "control_std": _json_float(o.control_std),
                }
                for o in self.outcomes
            ],
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON (the ``attack.json`` of the CLI)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return target

    def to_frame(self) -> pd.DataFrame:
        """One row per trigger and gold label: accuracies before, after, after the random control (mean, std and
        one value per seed), and the drops."""
        import pandas as pd

        rows = []
        for o in self.outcomes:
            trigger = self.triggers[o.trigger]
            rows.append(
                {
                    "trigger": o.trigger,
                    "tokens": " ".join(trigger.tokens),
                    "trigger_label": self.label_name(trigger.label),
                    "score": trigger.score,
                    "label": o.label,
                    "count": o.count,
                    "accuracy_before": o.accuracy_before,
                    "accuracy_after": o.accuracy_after,
                    "control_accuracy_after": o.control_accuracy_after,
                    "control_std": o.control_std,
                    "control_accuracies": list(o.control_accuracies),
                    "drop": o.accuracy_before - o.accuracy_after,
                    "control_drop": o.accuracy_before - o.control_accuracy_after,
                }
            )
        return pd.DataFrame(rows)

    def plot(self, ax: Axes | None = None) -> Figure:
        """Grouped bars per trigger and gold label: accuracy before, with the trigger, with random tokens (± std)."""
        groups = list(self.outcomes)
        figure, axes = _axes(ax, (max(4.0, 0.9 * len(groups) + 1.5), 3.6))
        x = np.arange(len(groups))
        width = 0.27
        axes.bar(x - width, [o.accuracy_before for o in groups], width, color="#7f7f7f", label="clean")
        axes.bar(x, [o.accuracy_after for o in groups], width, color="#d62728", label="trigger")
        if any(o.control_accuracies for o in groups):
            stds = [0.0 if math.isnan(o.control_std) else o.control_std for o in groups]
            axes.bar(
                x + width,
                [o.control_accuracy_after for o in groups],
                width,
                yerr=stds,
                capsize=2,
                color="#1f77b4",
                label="random tokens (mean ± std)",
            )
        names = [f"#{o.trigger} {' '.join(self.triggers[o.trigger].tokens)}\n{o.label}" for o in groups]
        axes.set_xticks(x, names, fontsize=7)
        axes.set_ylim(0, 1.22)
        axes.set_yticks(np.linspace(0, 1, 6))
        axes.set_ylabel("accuracy")
        axes.set_title("accuracy per gold label: clean, with the trigger, with random tokens")
        axes.legend(fontsize=8, loc="upper center", ncol=3, frameon=False)
        return figure

    def to_html(self) -> str:
        """A self-contained HTML page: the triggers with their sources, and the accuracy table with bars."""
        trigger_rows = []
        for index, trigger in enumerate(self.triggers):
            source = _source_html(trigger.source_tokens, trigger.source_indices) if trigger.source_tokens else ""
            draws = self.control_tokens[index] if index < len(self.control_tokens) else ()
            random_tokens = " | ".join(" ".join(tokens) for tokens in draws) or "—"
            trigger_rows.append(
                f"<tr><td>#{index}</td><td><b>{_esc(' '.join(trigger.tokens))}</b></td>"
                f"<td>{_esc(trigger.describe())}</td><td>{_num(trigger.score)}</td>"
                f"<td>{_esc(self.label_name(trigger.label))}</td><td>{source}</td><td>{_esc(random_tokens)}</td></tr>"
            )
        result_rows = []
        for o in self.outcomes:
            control = (
                f"{_bar(o.control_accuracy_after, '#1f77b4')} ± {_num(o.control_std)}"
                f"<br><small>{_esc(' '.join(f'{a:.3f}' for a in o.control_accuracies))}</small>"
                if o.control_accuracies
                else "—"
            )
            result_rows.append(
                f"<tr><td>#{o.trigger} {_esc(' '.join(self.triggers[o.trigger].tokens))}</td><td>{_esc(o.label)}</td>"
                f"<td>{o.count}</td><td>{_bar(o.accuracy_before, '#7f7f7f')}</td>"
                f"<td>{_bar(o.accuracy_after, '#d62728')}</td><td>{control}</td></tr>"
            )
        settings = self.settings
        intro = (
            "<p>Triggers mined from self-attention attribution patterns (Hao et al. 2021, §5) are inserted into "
            "every evaluation example at the relative positions they had in their source example. The control "
            f"inserts the same number of random vocabulary tokens at the same positions "
            f"({_esc(settings.get('control_seeds', 0))} seeds, mean ± sample std).</p>"
            f"<p>model: {_esc(settings.get('model', '?'))}; evaluation examples: "
            f"{_esc(settings.get('examples', '?'))}</p>"
        )
        body = (
            intro + "<h2>Triggers</h2><table><thead><tr><th></th><th>tokens</th><th>token@segment:position</th>"
            "<th>score</th><th>source predicted</th><th>source example (trigger tokens marked)</th>"
            "<th>random control draws</th></tr></thead>"
            "<tbody>" + "".join(trigger_rows) + "</tbody></table>"
            "<h2>Accuracy</h2><table><thead><tr><th>trigger</th><th>gold label</th><th>n</th><th>clean</th>"
            "<th>with trigger</th><th>random tokens (mean ± std; per seed)</th></tr></thead><tbody>"
            + "".join(result_rows)
            + "</tbody></table>"
        )
        return _page("attrflow: adversarial triggers", body)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        overall = [o for o in self.outcomes if o.label == OVERALL]
        parts = [
            f"#{o.trigger} {' '.join(self.triggers[o.trigger].tokens)!r}: {o.accuracy_before:.3f}→{o.accuracy_after:.3f}"
            f" (control {o.control_accuracy_after:.3f})"
            for o in overall
        ]
        return f"AttackReport({len(self.triggers)} triggers; {'; '.join(parts)})"


def _accuracies(
    trigger_index: int,
    labels: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    controls: Sequence[np.ndarray],
    names: Sequence[str],
) -> list[AttackOutcome]:
    out = []
    subsets = [(OVERALL, -1, np.ones_like(labels, dtype=bool))]
    subsets += [(names[c], c, labels == c) for c in range(len(names)) if bool((labels == c).any())]
    for name, index, mask in subsets:
        out.append(
            AttackOutcome(
                trigger=trigger_index,
                label=name,
                label_index=index,
                count=int(mask.sum()),
                accuracy_before=float((before[mask] == labels[mask]).mean()),
                accuracy_after=float((after[mask] == labels[mask]).mean()),
                control_accuracies=tuple(float((c[mask] == labels[mask]).mean()) for c in controls),
            )
        )
    return out


def attack(
    model: Model | str | os.PathLike[str],
    dataset: Sequence[Any],
    patterns: TriggerPatterns | Sequence[Pattern | Trigger],
    *,
    top: int = 3,
    control: bool = True,
    control_seeds: int = DEFAULT_CONTROL_SEEDS,
    seed: int = 0,
    ratio: float = DEFAULT_PAIR_RATIO,
    min_score: float | None = None,
    examples: int | None = None,
    sample: Sample = "first",
    batch_size: int = 32,
    progress: bool = False,
) -> AttackReport:
    """Insert each of the ``top`` triggers into every evaluation example and measure accuracy per gold label.

    Hao et al. 2021, §5 (universal, non-targeted): a trigger's word-pieces go into every example at the relative
    positions they had in the source (per segment; see :func:`insert_trigger`); the re-tokenised inputs are
    classified and compared with the gold labels, per gold-label subset and overall, before and after. The
    control (not in the paper) inserts the same number of distinct random vocabulary tokens (no special tokens,
    no placeholders such as ``[unused3]``, never the trigger's own) at the same positions, one draw per control
    seed shared by all examples, and reports the mean and sample std over seeds.

    Args:
        model: the classifier (a :class:`~attrflow.Model`, built-in name or directory).
        dataset: evaluation examples with ``.text``, ``.text_pair`` and ``.label``; unlabelled ones (-1) are
            skipped.
        patterns: :class:`TriggerPatterns` from :func:`mine_patterns` (its triggers with score ≥ min_score are
            used, strongest first), or patterns / triggers in the order to use them.
        top: how many triggers (the paper reports three).
        control: run the random-token control.
        control_seeds: random draws per trigger.
        seed: base seed of the control draws (draw c of trigger i uses ``[seed, i, c]``) and of ``sample="random"``.
        ratio: the second pair joins a pattern's trigger when its score ≥ ``ratio`` × the first's.
        min_score: with :class:`TriggerPatterns`, the summed score a pattern needs (default: its own min_score).
        examples: evaluate on this many examples (None: all).
        sample: ``"first"`` evaluates the first ``examples``; ``"random"`` draws them with ``seed`` (kept in
            dataset order) — use it on sorted datasets such as the built-in tweets' splits.
        batch_size: inputs per forward pass (speed only).
        progress: show a progress bar over all the evaluation passes.

    Returns:
        The :class:`AttackReport`.
    """
    _positive("top", top)
    _positive("control_seeds", control_seeds)
    _positive("examples", examples, allow_none=True)
    _positive("batch_size", batch_size)
    from tqdm.auto import tqdm

    loaded = _as_model(model)
    _check_classifier(loaded)
    if isinstance(patterns, TriggerPatterns):
        triggers = patterns.triggers(top, ratio=ratio, min_score=min_score)
    else:
        triggers = [p.trigger(ratio=ratio) if isinstance(p, Pattern) else p for p in patterns]
        triggers = [t for t in triggers if len(t)][:top]
    if not triggers:
        raise InvalidInputError(
            "no trigger to evaluate: no pattern reaches min_score with a non-special token; mine more examples "
            "or lower min_score"
        )
    chosen = [dataset[p] for p in _sample_positions(len(dataset), examples, sample, seed)]
    labelled = [ex for ex in chosen if int(getattr(ex, "label", -1)) >= 0]
    if len(labelled) < len(chosen):
        logger.warning("skipping %d evaluation examples without a gold label", len(chosen) - len(labelled))
    if not labelled:
        raise InvalidInputError("the evaluation dataset has no labelled examples (label >= 0)")
    names = _label_names(dataset, loaded)
    labels = np.array([int(ex.label) for ex in labelled])
    if int(labels.max()) >= loaded.num_outputs:
        raise InvalidInputError(f"gold label {int(labels.max())} is outside the model's {loaded.num_outputs} classes")

    limit = loaded.max_length()
    texts = [_texts(ex) for ex in labelled]
    cache: dict[int, list[_Tokenized]] = {}

    def tokenized(k: int) -> list[_Tokenized]:
        if k not in cache:
            cut = None if limit is None else limit - k
            cache[k] = [_tokenize(loaded.tokenizer, text, pair, cut) for text, pair in texts]
        return cache[k]

    passes = 1 + len(triggers) * (1 + (control_seeds if control else 0))
    bar = tqdm(total=passes * len(labelled), unit="ex", desc="attack", disable=not progress, dynamic_ncols=True)

    def predict(trigger: Trigger | None) -> np.ndarray:
        inputs = tokenized(0 if trigger is None else len(trigger))
        items = [t.features() if trigger is None else _insert(t, trigger).features() for t in inputs]
        predicted = []
        for start in range(0, len(items), _PROGRESS_CHUNK):
            chunk = items[start : start + _PROGRESS_CHUNK]
            predicted.append(loaded.predict_batch(chunk, batch_size=batch_size).argmax(dim=-1).numpy())
            bar.update(len(chunk))
        return np.concatenate(predicted)

    allowed = _control_vocabulary(loaded) if control else np.zeros(0, dtype=np.int64)
    outcomes: list[AttackOutcome] = []
    control_tokens: list[tuple[tuple[str, ...], ...]] = []
    with contextlib.closing(bar):
        before = predict(None)
        for index, trigger in enumerate(triggers):
            after = predict(trigger)
            controls = []
            draws = []
            if control:
                for c in range(control_seeds):
                    random_trigger = _control_trigger(loaded, trigger, allowed, (seed, index, c))
                    draws.append(random_trigger.tokens)
                    controls.append(predict(random_trigger))
            control_tokens.append(tuple(draws))
            outcomes.extend(_accuracies(index, labels, before, after, controls, names))
            logger.info("trigger #%d %s evaluated on %d examples", index, trigger.describe(), len(labelled))
    settings = {
        "model": loaded.name,
        "dataset": str(getattr(dataset, "name", type(dataset).__name__)),
        "split": getattr(dataset, "split", None),
        "examples": len(labelled),
        "sample": sample,
        "top": top,
        "ratio": ratio,
        "min_score": patterns.min_score if min_score is None and isinstance(patterns, TriggerPatterns) else min_score,
        "control_seeds": control_seeds if control else 0,
        "seed": seed,
    }
    return AttackReport(tuple(triggers), tuple(outcomes), names, settings, tuple(control_tokens))


def trigger_attack(
    model: Model | str | os.PathLike[str],
    mine_dataset: Sequence[Any],
    eval_dataset: Sequence[Any],
    *,
    mine_examples: int | None = 500,
    sample: Sample = "first",
    eval_examples: int | None = None,
    top: int = 3,
    steps: Steps = DEFAULT_STEPS,
    rule: Rule = DEFAULT_RULE,
    min_score: float = DEFAULT_MIN_SCORE,
    control_seeds: int = DEFAULT_CONTROL_SEEDS,
    seed: int = 0,
    progress: bool = False,
) -> tuple[TriggerPatterns, AttackReport]:
    """Mine patterns on ``mine_dataset`` and attack ``eval_dataset`` with the ``top`` triggers, in one call.

    A small version for a demo, ``mine_examples=40, sample="random", eval_examples=200, top=1,
    control_seeds=3``, costs 40 attributions and 1,000 classifications (the built-in tweets are sorted by label,
    hence the random samples). See :func:`mine_patterns` and :func:`attack` for the options; ``sample`` applies to
    both datasets, and ``seed`` seeds both samples and the control.

    Returns:
        ``(patterns, report)``.
    """
    loaded = _as_model(model)
    patterns = mine_patterns(
        loaded,
        mine_dataset,
        examples=mine_examples,
        sample=sample,
        seed=seed,
        steps=steps,
        rule=rule,
        min_score=min_score,
        progress=progress,
    )
    report = attack(
        loaded,
        eval_dataset,
        patterns,
        top=top,
        control_seeds=control_seeds,
        seed=seed,
        examples=eval_examples,
        sample=sample,
        progress=progress,
    )
    return patterns, report


# ====================================================================== display helpers
def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.3g}"


def _bar(value: float, colour: str) -> str:
    """A number with a proportional inline bar (0..1)."""
    if not math.isfinite(value):
        return "—"
    width = max(0.0, min(1.0, value)) * 80
    return (
        f'<span class="bar" style="width:{width:.1f}px;background:{colour}"></span><span class="num">{value:.3f}</span>'
    )


def _source_html(tokens: Sequence[str], marked: Sequence[int]) -> str:
    chosen = set(marked)
    return " ".join(f"<mark>{_esc(t)}</mark>" if i in chosen else _esc(t) for i, t in enumerate(tokens))


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:1em 0}"
    "th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}"
    "mark{background:#ffd54f}.bar{display:inline-block;height:10px;margin-right:6px;vertical-align:middle}"
    ".num{font-variant-numeric:tabular-nums}"
)


def _page(title: str, body: str) -> str:
    # no scripts and nothing fetched: the policy lets the browser enforce that
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>{body}</body></html>"
    )


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    require("matplotlib")
    from matplotlib.figure import Figure

    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.subplots()
