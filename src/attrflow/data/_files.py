"""Reading users' own labelled files: CSV, TSV (the GLUE formats included) and JSON Lines.

Every problem is reported as :class:`~attrflow.errors.InvalidInputError` whose message names the file and the
1-based line, so a user can open the file at the right place.

The GLUE tab-separated files (SST-2, MNLI, RTE, MRPC, QNLI, QQP, WNLI) are recognised by their header, so
``load_dataset("glue/MNLI/dev_matched.tsv")`` needs no column names. Like the official GLUE readers, TSV fields
are split on tabs with no quote processing (MNLI sentences contain unbalanced quotes).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from attrflow.data._dataset import UNLABELLED, Dataset, Example
from attrflow.errors import InvalidInputError
from attrflow.validation import option_hint, visible_text

__all__ = ["AUTO", "FileFormat", "read_file", "resolve_split_file"]

logger = logging.getLogger(__name__)

AUTO = "auto"
"""The default of the column options: find the column from the header (see :data:`_PAIR_FORMATS`)."""

FileFormat = Literal["csv", "tsv", "jsonl"]
_FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl")
_SUFFIX_FORMAT: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}

Column = str | int


@dataclass(frozen=True)
class _Layout:
    """Which columns hold the text, the second segment and the label in a known file format."""

    name: str
    text: str
    text_pair: str | None
    label: str


# Checked in order; the first whose columns are all in the header wins. GLUE headers come first.
_LAYOUTS: tuple[_Layout, ...] = (
    _Layout("GLUE MNLI", "sentence1", "sentence2", "gold_label"),
    _Layout("GLUE MRPC", "#1 String", "#2 String", "Quality"),
    _Layout("GLUE QNLI", "question", "sentence", "label"),
    _Layout("GLUE QQP", "question1", "question2", "is_duplicate"),
    _Layout("GLUE RTE/WNLI", "sentence1", "sentence2", "label"),
    _Layout("premise/hypothesis", "premise", "hypothesis", "label"),
    _Layout("text/text_pair", "text", "text_pair", "label"),
)
_TEXT_COLUMNS = ("text", "sentence", "sentence1", "premise", "question", "tweet", "review", "content")
_PAIR_COLUMNS = ("text_pair", "sentence2", "hypothesis")
_LABEL_COLUMNS = ("label", "gold_label", "labels", "sentiment", "class", "category", "Quality", "is_duplicate")

# String label sets with a conventional order (the order of the 🤗 GLUE datasets, which most fine-tuned
# checkpoints' id2label follows). Any other set of strings is sorted; integers are used as they are.
_KNOWN_LABEL_ORDERS: tuple[tuple[str, ...], ...] = (
    ("negative", "positive"),
    ("negative", "neutral", "positive"),
    ("entailment", "neutral", "contradiction"),
    ("entailment", "not_entailment"),
    ("not_equivalent", "equivalent"),
    ("not_duplicate", "duplicate"),
    ("unacceptable", "acceptable"),
)
# Integer labels of headers whose class names are fixed by the benchmark.
_INTEGER_LABEL_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("sentence", "label"): ("negative", "positive"),  # GLUE SST-2 train/dev
    ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"): ("not_equivalent", "equivalent"),  # GLUE MRPC
}

# For a directory and a split: the file stems that hold it, in the order they are tried.
_SPLIT_STEMS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "dev", "dev_matched", "val", "valid"),
    "test": ("test", "test_matched"),
}


@dataclass(frozen=True)
class _Table:
    """The rows of a file as (line, fields) with the column names (positions for headerless files)."""

    path: Path
    columns: tuple[Column, ...]
    rows: list[tuple[int, dict[Column, Any]]]
    header_line: int  # where the column names are defined (the first row for headerless and JSON Lines files)


def read_file(
    path: Path,
    *,
    text: Column = AUTO,
    text_pair: Column | None = AUTO,
    label: Column | None = AUTO,
    label_names: Sequence[str] | None = None,
    format: FileFormat | None = None,
    encoding: str = "utf-8",
    header: bool = True,
    split: str | None = None,
) -> Dataset:
    """Read one labelled file into a :class:`Dataset`; see :func:`attrflow.load_dataset` for the options."""
    file_format = _file_format(path, format)
    if file_format == "jsonl" and not header:
        raise InvalidInputError(f"{path}: JSON Lines files name their fields; header=False applies to CSV/TSV")
    table = _read_table(path, file_format, encoding=encoding, header=header)
    text_column, pair_column, label_column = _resolve_columns(table, text, text_pair, label)

    raw_labels: list[Any] = []
    texts: list[tuple[int, str, str | None]] = []
    for line, row in table.rows:
        first = _field(table, line, row, text_column, role="text")
        second = _field(table, line, row, pair_column, role="text_pair") if pair_column is not None else None
        texts.append((line, first, second))
        if label_column is not None:
            raw_labels.append(_raw_label(table, line, row, label_column))

    if label_column is None:
        names = tuple(label_names) if label_names is not None else ()
        labels = [UNLABELLED] * len(texts)
    else:
        names, labels = _encode_labels(table, raw_labels, label_names)
    examples = [
        Example(text=first, text_pair=second, label=y, meta={"line": line})
        for (line, first, second), y in zip(texts, labels, strict=True)
    ]
    return Dataset(examples, label_names=names, name=str(path), split=split)


def resolve_split_file(directory: Path, split: str) -> Path:
    """The file of ``split`` inside a dataset directory (GLUE layout: ``train.tsv``, ``dev.tsv``, ``test.tsv``).

    ``split`` is ``"train"``, ``"validation"`` or ``"test"`` (also matching ``dev``, ``dev_matched``,
    ``test_matched``), or the stem of a file in the directory such as ``"dev_mismatched"``.
    """
    stems = (*_SPLIT_STEMS.get(split, ()), split)
    for stem in stems:
        for suffix in _SUFFIX_FORMAT:
            candidate = directory / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    present = sorted(p.name for p in directory.iterdir() if p.suffix in _SUFFIX_FORMAT)
    raise InvalidInputError(
        f"{directory}: no file for split {split!r} (looked for {', '.join(stems)} with a .csv/.tsv/.jsonl "
        f"suffix); files here: {', '.join(present) or 'none'}"
    )


def _file_format(path: Path, format: FileFormat | None) -> FileFormat:
    if format is not None:
        if format not in _FORMATS:
            raise InvalidInputError(f"format must be one of {', '.join(_FORMATS)}, got {format!r}")
        return format
    found = _SUFFIX_FORMAT.get(path.suffix.lower())
    if found is None:
        raise InvalidInputError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; pass "
            + option_hint("format", "'csv', 'tsv' or 'jsonl'", cli="csv, tsv or jsonl")
        )
    return found


def _decode(path: Path, encoding: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    if not data.strip():
        raise InvalidInputError(f"{path}: the file is empty")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InvalidInputError(
            f"{path}, line {line}: byte {data[exc.start : exc.start + 1]!r} at column {column} is not valid "
            f"{encoding}; pass the file's encoding (e.g. {option_hint('encoding', repr('latin-1'), cli='latin-1')})"
        ) from exc
    except LookupError as exc:
        raise InvalidInputError(f"unknown encoding {encoding!r}") from exc
    return text.removeprefix("\ufeff")


def _read_table(path: Path, file_format: FileFormat, *, encoding: str, header: bool) -> _Table:
    text = _decode(path, encoding)
    if file_format == "jsonl":
        return _read_jsonl(path, text)
    return _read_delimited(path, text, file_format, header=header)


def _read_delimited(path: Path, text: str, file_format: FileFormat, *, header: bool) -> _Table:
    if file_format == "tsv":
        reader: Iterator[list[str]] = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    previous_end = 0
    try:
        for fields in reader:
            line = previous_end + 1
            previous_end = reader.line_num  # type: ignore[attr-defined]
            if fields and any(f.strip() for f in fields):
                records.append((line, fields))
    except csv.Error as exc:
        raise InvalidInputError(f"{path}, line {previous_end + 1}: malformed {file_format.upper()}: {exc}") from exc
    if not records:
        raise InvalidInputError(f"{path}: the file has no rows")

    columns: tuple[Column, ...]
    header_line = records[0][0]
    if header:
        columns = tuple(name.strip() for name in records[0][1])
        records = records[1:]
        if not records:
            raise InvalidInputError(f"{path}: the file has a header (line {header_line}) but no rows")
    else:
        columns = tuple(range(len(records[0][1])))
    rows: list[tuple[int, dict[Column, Any]]] = []
    for line, fields in records:
        if len(fields) != len(columns):
            raise InvalidInputError(
                f"{path}, line {line}: {len(fields)} fields where the "
                f"{'header has' if header else 'first row has'} {len(columns)}"
            )
        rows.append((line, dict(zip(columns, fields, strict=True))))
    return _Table(path, columns, rows, header_line)


def _read_jsonl(path: Path, text: str) -> _Table:
    rows: list[tuple[int, dict[Column, Any]]] = []
    columns: dict[Column, None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            hint = " (a JSON array? write one object per line)" if raw.lstrip().startswith("[") else ""
            raise InvalidInputError(f"{path}, line {number}: not valid JSON: {exc.msg}{hint}") from exc
        if not isinstance(record, dict):
            hint = "; write one object per line" if isinstance(record, list) else ""
            raise InvalidInputError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}{hint}")
        columns.update(dict.fromkeys(record))
        rows.append((number, record))
    if not rows:
        raise InvalidInputError(f"{path}: the file has no rows")
    return _Table(path, tuple(columns), rows, rows[0][0])


def _resolve_columns(
    table: _Table, text: Column, text_pair: Column | None, label: Column | None
) -> tuple[Column, Column | None, Column | None]:
    header = set(table.columns)
    layout = next(
        (
            lay
            for lay in _LAYOUTS
            if {lay.text, lay.label} <= header and (lay.text_pair is None or lay.text_pair in header)
        ),
        None,
    )
    where = f"{table.path}, line {table.header_line}"

    def pick(role: str, given: Column | None, layout_choice: str | None, candidates: Sequence[str]) -> Column | None:
        if given is None:
            return None
        if given != AUTO:
            if given not in header:
                kind = "column" if isinstance(given, str) else "column position"
                raise InvalidInputError(
                    f"{where}: no {kind} {given!r} for {role} (columns: {_column_list(table)}); pass "
                    f"{option_hint(role, '...', cli='NAME')} with one of them"
                )
            return given
        if layout_choice is not None:
            return layout_choice
        for candidate in candidates:
            if candidate in header:
                return candidate
            lowered = {str(c).lower(): c for c in table.columns}
            if candidate.lower() in lowered:
                return lowered[candidate.lower()]
        return None

    use_layout = layout is not None and text == AUTO
    text_column = pick("text", text, layout.text if use_layout and layout else None, _TEXT_COLUMNS)
    if text_column is None:
        raise InvalidInputError(
            f"{where}: cannot tell which column holds the text (columns: {_column_list(table)}); "
            + f"pass {option_hint('text', 'NAME' if table.columns and isinstance(table.columns[0], str) else 'POSITION')}"
        )
    if text_pair == AUTO and not use_layout and text != AUTO:
        text_pair = None  # a user who names the text column names the pair column too
    pair_column = pick("text_pair", text_pair, layout.text_pair if use_layout and layout else None, _PAIR_COLUMNS)
    label_column = pick("label", label, layout.label if use_layout and layout else None, _LABEL_COLUMNS)
    if label == AUTO and label_column is None:
        raise InvalidInputError(
            f"{where}: cannot tell which column holds the label (columns: {_column_list(table)}); pass "
            f"{option_hint('label', 'NAME')}, or {option_hint('label', 'None', cli='none')} to read the file without "
            "labels"
        )
    if layout is not None and use_layout:
        logger.info("%s: read as %s (text=%r, text_pair=%r)", table.path, layout.name, text_column, pair_column)
    return text_column, pair_column, label_column


def _column_list(table: _Table) -> str:
    return ", ".join(repr(c) for c in table.columns)


def _field(table: _Table, line: int, row: dict[Column, Any], column: Column, *, role: str) -> str:
    if column not in row or row[column] is None:
        raise InvalidInputError(f"{table.path}, line {line}: no value for {role} column {column!r}")
    value = row[column]
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{table.path}, line {line}: {role} column {column!r} holds a {type(value).__name__}, not text"
        )
    if not visible_text(value):
        what = "empty" if not value.strip() else "content-free (only zero-width or control characters)"
        raise InvalidInputError(f"{table.path}, line {line}: {what} {role} in column {column!r}")
    return value


def _raw_label(table: _Table, line: int, row: dict[Column, Any], column: Column) -> str | int:
    if column not in row or row[column] is None:
        raise InvalidInputError(f"{table.path}, line {line}: no value for label column {column!r}")
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInputError(f"{table.path}, line {line}: label {value!r} is neither a class name nor a class index")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise InvalidInputError(f"{table.path}, line {line}: empty label in column {column!r}")
        if _is_integer(value):
            return int(value)
        return value
    return int(value)


def _is_integer(value: str) -> bool:
    return value.lstrip("-").isdigit()


def _encode_labels(
    table: _Table, raw: list[str | int], label_names: Sequence[str] | None
) -> tuple[tuple[str, ...], list[int]]:
    lines = [line for line, _ in table.rows]
    if label_names is not None:
        names = tuple(label_names)
        if len(set(names)) != len(names) or not names:
            raise InvalidInputError(f"label_names must be distinct and non-empty, got {names}")
    else:
        names = _infer_label_names(table, raw)
    index = {name: i for i, name in enumerate(names)}
    labels: list[int] = []
    for line, value in zip(lines, raw, strict=True):
        if str(value) in index:
            labels.append(index[str(value)])
        elif isinstance(value, int) and 0 <= value < len(names):
            labels.append(value)
        else:
            raise InvalidInputError(
                f"{table.path}, line {line}: unknown label {value!r}; the labels are {', '.join(names)} "
                f"(pass {option_hint('label_names', '[...]', cli='A,B,...')} to name all classes in order)"
            )
    return names, labels


def _mixed_labels(table: _Table, raw: list[str | int]) -> str:
    """Why a label column holding class names and class indices is refused, blaming the line of the odd one out:
    the first label of the kind the column holds fewer of (indices among names, or a name among indices)."""
    lines = [line for line, _ in table.rows]
    numbers = [(line, v) for line, v in zip(lines, raw, strict=True) if isinstance(v, int)]
    words = [(line, v) for line, v in zip(lines, raw, strict=True) if isinstance(v, str)]
    odd, usual = (numbers, words) if len(numbers) <= len(words) else (words, numbers)
    line, value = odd[0]
    kind = "a class index" if isinstance(value, int) else "a class name"
    rest = "class names" if usual is words else "class indices"
    examples = ", ".join(repr(v) for v in list(dict.fromkeys(v for _, v in usual))[:5])
    return (
        f"{table.path}, line {line}: label {value!r} is {kind}, but {len(usual)} of the {len(raw)} labels "
        f"{'is a' if len(usual) == 1 else 'are'} {rest[:-1] if len(usual) == 1 else rest} "
        f"(e.g. {examples}); write every label the same way, or pass "
        f"{option_hint('label_names', '[...]', cli='A,B,...')} to say which class is which"
    )


def _infer_label_names(table: _Table, raw: list[str | int]) -> tuple[str, ...]:
    integers = {v for v in raw if isinstance(v, int)}
    strings = {v for v in raw if isinstance(v, str)}
    if strings:
        for order in _KNOWN_LABEL_ORDERS:
            if strings <= set(order) and len(strings) > 1 and not integers:
                return order
        if integers:
            raise InvalidInputError(_mixed_labels(table, raw))
        names = tuple(sorted(strings))
        logger.info("%s: label names sorted alphabetically: %s", table.path, ", ".join(names))
        return names
    negative = sorted(v for v in integers if v < 0)
    if negative:
        line = next(line for (line, _), v in zip(table.rows, raw, strict=True) if v == negative[0])
        raise InvalidInputError(f"{table.path}, line {line}: unknown label {negative[0]}; class indices start at 0")
    fixed = _INTEGER_LABEL_NAMES.get(tuple(str(c) for c in table.columns))
    if fixed is not None and max(integers) < len(fixed):
        return fixed
    return tuple(str(i) for i in range(max(integers) + 1))
