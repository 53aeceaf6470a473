"""Mined attention patterns and the triggers they give (Hao et al. 2021, §5): the data, its Parquet records and the
:class:`TriggerPatterns` result (save / :func:`attrflow.load_result`, frame, figure, page)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import torch

from attrflow.analysis.triggers._common import DEFAULT_MIN_SCORE, DEFAULT_PAIR_RATIO, SPECIAL, keyword_ax
from attrflow.errors import InvalidInputError, ResultFormatError
from attrflow.storage import atomic_write, register_result_type, write_result
from attrflow.validation import check_optional_int

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PATTERNS_VERSION",
    "Pattern",
    "Trigger",
    "TriggerPatterns",
    "pattern_from_row",
    "pattern_record",
    "pattern_schema",
]

PATTERNS_VERSION = 1
"""Version of the mined records (the run's task settings and the Parquet file carry it)."""
_PATTERNS_FORMAT = "attrflow-trigger-patterns"


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

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready lists and numbers (:meth:`from_dict` reads it back)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trigger:
        """The trigger :meth:`to_dict` gave."""
        source = data.get("source")
        return cls(
            token_ids=tuple(int(i) for i in data["token_ids"]),
            tokens=tuple(str(t) for t in data["tokens"]),
            segments=tuple(int(s) for s in data["segments"]),
            relative_positions=tuple(float(r) for r in data["relative_positions"]),
            score=float(data["score"]),
            label=int(data["label"]),
            source=None if source is None else int(source),
            source_tokens=tuple(str(t) for t in data.get("source_tokens", ())),
            source_indices=tuple(int(i) for i in data.get("source_indices", ())),
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

    def pair_text(self, which: int, *, scores: bool = True) -> str:
        """``"query → key"`` of entry ``which`` (0: largest, 1: second), with its score unless ``scores=False``."""
        query, key = self.interactions[which]
        text = f"{self.tokens[query]} → {self.tokens[key]}"
        return f"{text} ({self.scores[which]:.3g})" if scores else text


# ---------------------------------------------------------------------------------------------- records
def pattern_schema() -> pa.Schema:
    """The Arrow schema of one mined record (the runner adds ``example_id``)."""
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


def pattern_record(pattern: Pattern) -> dict[str, Any]:
    """``pattern`` as a record of :func:`pattern_schema`."""
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


def pattern_from_row(row: Mapping[str, Any]) -> Pattern:
    """The pattern of a record (with its ``example_id``)."""
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


# ---------------------------------------------------------------------------------------------- the result
@register_result_type
@dataclass(frozen=True)
class TriggerPatterns:
    """The mined patterns of a dataset, strongest first (see :func:`~attrflow.mine_patterns`).

    Attributes:
        patterns: one :class:`Pattern` per mined example, sorted by summed score (descending; ties by example id).
        label_names: the name of each class index.
        settings: how they were mined (model, steps, rule, min_score, examples, selection, ...).
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
        check_optional_int("top", top, minimum=1)
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

    # ------------------------------------------------------------------ tables
    def to_table(self) -> pa.Table:
        """An Arrow table: ``rank``, the mined record of each example, and the trigger it gives."""
        rows = []
        for rank, pattern in enumerate(self.patterns):
            trigger = pattern.trigger()
            rows.append(
                {
                    "rank": rank,
                    "example_id": pattern.example_id,
                    **pattern_record(pattern),
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
                *pattern_schema(),
                ("predicted_label", pa.string()),
                ("trigger_tokens", pa.list_(pa.string())),
                ("trigger_segments", pa.list_(pa.int8())),
                ("trigger_positions", pa.list_(pa.float64())),
            ]
        )
        meta = {"format": _PATTERNS_FORMAT, "version": PATTERNS_VERSION}
        meta |= {"label_names": list(self.label_names), "settings": dict(self.settings)}
        return pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(
            {"attrflow.patterns": json.dumps(meta)}
        )

    def to_frame(self) -> pd.DataFrame:
        """:meth:`to_table` as a pandas DataFrame (one row per pattern, strongest first)."""
        frame: pd.DataFrame = self.to_table().to_pandas()
        return frame

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_table` to a Parquet file, atomically (reload with :meth:`read_parquet`)."""
        import pyarrow.parquet as pq

        table = self.to_table()
        return atomic_write(path, lambda handle: pq.write_table(table, handle))

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
        if meta.get("format") != _PATTERNS_FORMAT or meta.get("version", 0) > PATTERNS_VERSION:
            raise ResultFormatError(f"{source}: unsupported patterns file (format {meta.get('format')!r})")
        patterns = tuple(pattern_from_row(row) for row in table.to_pylist())
        return cls(patterns, tuple(meta.get("label_names", ())), dict(meta.get("settings", {})))

    # ------------------------------------------------------------------ one result file
    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: the tokens, names and settings as JSON; every number as a tensor."""
        ps = self.patterns
        meta = {
            "label_names": list(self.label_names),
            "settings": dict(self.settings),
            "tokens": [list(p.tokens) for p in ps],
        }

        def ints(values: Sequence[Any]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.int64)

        def floats(values: Sequence[Any]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64)

        tensors = {
            "example_id": ints([p.example_id for p in ps]),
            "layer": ints([p.layer for p in ps]),
            "head": ints([p.head for p in ps]),
            "predicted": ints([p.predicted for p in ps]),
            "label": ints([p.label for p in ps]),
            "interactions": ints([[list(pair) for pair in p.interactions] for p in ps]).reshape(len(ps), 2, 2),
            "scores": floats([list(p.scores) for p in ps]).reshape(len(ps), 2),
            "probability": floats([p.probability for p in ps]),
            "completeness_gap": floats([p.completeness_gap for p in ps]),
            "lengths": ints([len(p.input_ids) for p in ps]),
            "input_ids": ints([i for p in ps for i in p.input_ids]),
            "segments": ints([s for p in ps for s in p.segments]),
        }
        return meta, tensors

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> TriggerPatterns:
        """The patterns :meth:`to_parts` gave (used by :func:`attrflow.load_result`).

        Raises:
            ValueError: the parts do not fit together.
        """
        tokens = meta["tokens"]
        lengths = tensors["lengths"].tolist()
        count = len(lengths)
        if len(tokens) != count or any(len(t) != n for t, n in zip(tokens, lengths, strict=True)):
            raise ValueError("the patterns' tokens do not match their lengths")
        if any(len(tensors[name]) != count for name in ("example_id", "layer", "head", "scores", "interactions")):
            raise ValueError("the patterns' fields have different lengths")
        if tensors["input_ids"].numel() != sum(lengths) or tensors["segments"].numel() != sum(lengths):
            raise ValueError("the patterns' token ids do not match their lengths")
        ids = iter(tensors["input_ids"].tolist())
        segments = iter(tensors["segments"].tolist())
        columns = {name: tensors[name].tolist() for name in tensors if name not in ("input_ids", "segments")}
        patterns = []
        for p in range(count):
            (q1, k1), (q2, k2) = columns["interactions"][p]
            patterns.append(
                Pattern(
                    example_id=int(columns["example_id"][p]),
                    tokens=tuple(str(t) for t in tokens[p]),
                    input_ids=tuple(int(next(ids)) for _ in range(lengths[p])),
                    segments=tuple(int(next(segments)) for _ in range(lengths[p])),
                    layer=int(columns["layer"][p]),
                    head=int(columns["head"][p]),
                    interactions=((int(q1), int(k1)), (int(q2), int(k2))),
                    scores=(float(columns["scores"][p][0]), float(columns["scores"][p][1])),
                    predicted=int(columns["predicted"][p]),
                    label=int(columns["label"][p]),
                    probability=float(columns["probability"][p]),
                    completeness_gap=float(columns["completeness_gap"][p]),
                )
            )
        return cls(tuple(patterns), tuple(str(n) for n in meta["label_names"]), dict(meta["settings"]))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the patterns to one result file (safetensors + JSON, atomically); :func:`attrflow.load_result`
        reads it back. Returns the path."""
        meta, tensors = self.to_parts()
        return write_result(path, type(self).__name__, meta, tensors)

    # ------------------------------------------------------------------ display (attrflow.viz)
    def plot(self, _ax: Axes | None = None, /, *, ax: Axes | None = None, top: int = 10) -> Figure:
        """Horizontal bars of the ``top`` strongest patterns' scores (first and second entry stacked).

        ``plot(ax)`` with the axes as a positional argument is deprecated: use ``plot(ax=ax)``.
        """
        from attrflow.viz.triggers import plot_patterns

        return plot_patterns(self, ax=keyword_ax(_ax, ax), top=top)

    def to_html(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        top: int = 20,
        title: str | None = None,
        back: tuple[str, str] | None = None,
    ) -> str:
        """The self-contained HTML page of the ``top`` patterns with their source tokens (trigger tokens marked);
        also written to ``path`` when given. ``back``: ``(href, text)`` of a link to an index page."""
        from attrflow.viz.page import write_page
        from attrflow.viz.triggers import render_patterns

        html = render_patterns(self, top=top, title=title, back=back)
        if path is not None:
            write_page(html, path)
        return html

    def _repr_html_(self) -> str:
        from attrflow.viz.page import iframe

        return iframe(self.to_html(top=10), height=600, title="attention patterns")

    def __repr__(self) -> str:
        best = f", best={self.patterns[0].score:.4f}" if self.patterns else ""
        return f"TriggerPatterns({len(self)} patterns{best}, min_score={self.min_score})"


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (JSON-ready)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
