"""``run_dataset``: map a task over a dataset into a resumable Parquet run directory."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import pyarrow as pa

from attrflow import __version__
from attrflow.dependencies import require
from attrflow.errors import InvalidInputError
from attrflow.runner import _store
from attrflow.runner._engines import iter_local, iter_ray
from attrflow.runner._options import Engine
from attrflow.runner._store import ID_COLUMN, RUN_FORMAT, RUN_SCHEMA_VERSION, RunStore
from attrflow.runner._task import Batch, DatasetTask

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunResult", "open_run", "run_dataset"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- the result
@dataclass(frozen=True)
class RunResult:
    """A run directory and what is in it.

    Attributes:
        out_dir: the run directory.
        num_examples: examples in the dataset the run covers.
        num_done: examples with a stored result.
        num_processed: examples computed by the call that returned this (0 from :func:`open_run`).
        metadata: the run's ``run.json``: task name, settings, dataset, columns, attrflow version, creation time.
    """

    out_dir: Path
    num_examples: int
    num_done: int
    num_processed: int
    metadata: Mapping[str, Any]

    @property
    def complete(self) -> bool:
        """Whether every example of the dataset has a stored result."""
        return self.num_done == self.num_examples

    @property
    def settings(self) -> Mapping[str, Any]:
        """The task settings the run was made with."""
        return dict(self.metadata["settings"])

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the run's table (``example_id`` first)."""
        return _store.schema_from_text(self.metadata["arrow_schema"])

    def read_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every stored record as one Arrow table sorted by ``example_id`` (optionally only ``columns``)."""
        return _store.read_parts(self.out_dir, self.schema, columns)

    def to_pandas(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """:meth:`read_table` as a pandas DataFrame (list columns hold numpy arrays)."""
        frame: pd.DataFrame = self.read_table(columns).to_pandas()
        return frame

    def consolidate(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write all records to one Parquet file sorted by ``example_id``, with the run metadata attached.

        The part files stay (they are what a resumed run reads). The metadata sits in the Parquet schema
        metadata under ``attrflow.run`` as JSON.

        Args:
            path: where to write; default ``out_dir/examples.parquet``.

        Returns:
            The path written.
        """
        target = Path(path) if path is not None else self.out_dir / _store.EXAMPLES_FILE
        table = _store.with_run_metadata(self.read_table(), self.metadata)
        _store.atomic_write_table(target, table)
        return target


def open_run(out_dir: str | os.PathLike[str]) -> RunResult:
    """Open an existing run directory (finished, interrupted or being written) for reading.

    Raises:
        ResultFormatError: the directory is not a run directory, or a part is damaged.
    """
    directory = Path(out_dir)
    metadata = _store.read_run_metadata(directory)
    done = _store.finished_ids(directory, _store.schema_from_text(metadata["arrow_schema"]))
    return RunResult(
        out_dir=directory,
        num_examples=int(metadata["dataset"]["num_examples"]),
        num_done=int(done.size),
        num_processed=0,
        metadata=metadata,
    )


# ---------------------------------------------------------------------- the dataset
def _example_ids(dataset: Any) -> np.ndarray:
    """The dataset's ``example_ids`` (unique ints, one per example) when it has them, else the positions."""
    n = len(dataset)
    given = getattr(dataset, "example_ids", None)
    if given is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(list(given))
    if ids.shape != (n,) or (n and not np.issubdtype(ids.dtype, np.integer)):
        raise InvalidInputError(f"dataset.example_ids must hold one integer per example ({n}), got {ids.shape}")
    ids = ids.astype(np.int64)
    if np.unique(ids).size != n:
        raise InvalidInputError("dataset.example_ids must be unique")
    return ids


def _example_key(example: Any) -> str | None:
    """A stable text for an example's content, or None when it has none (objects without value semantics)."""
    if dataclasses.is_dataclass(example) and not isinstance(example, type):
        value: Any = {f.name: getattr(example, f.name) for f in dataclasses.fields(example)}
    elif hasattr(example, "text"):
        value = {k: getattr(example, k, None) for k in ("text", "text_pair", "label")}
    else:
        value = example
    try:
        return json.dumps(value, sort_keys=True, default=_jsonable)
    except (TypeError, ValueError):
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if hasattr(value, "tolist"):  # tensors
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(type(value).__name__)


def _dataset_identity(dataset: Any, ids: np.ndarray) -> dict[str, Any]:
    """``num_examples`` and a content ``fingerprint``: ``dataset.fingerprint`` if given, else a hash of all items."""
    given = getattr(dataset, "fingerprint", None)
    if isinstance(given, str):
        fingerprint: str | None = given
    else:
        digest = hashlib.sha256(ids.tobytes())
        for position in range(len(dataset)):
            key = _example_key(dataset[position])
            if key is None:
                logger.warning(
                    "examples of type %s cannot be fingerprinted; a resumed run only checks the number of "
                    "examples (give the dataset a `fingerprint` string to check its content)",
                    type(dataset[position]).__name__,
                )
                fingerprint = None
                break
            digest.update(key.encode())
            digest.update(b"\0")
        else:
            fingerprint = digest.hexdigest()
    return {"num_examples": len(dataset), "fingerprint": fingerprint}


def _json_settings(task: DatasetTask) -> dict[str, Any]:
    settings = task.settings()
    try:
        # round trip: tuples become lists, so the recorded and the current settings compare equal
        loaded = json.loads(json.dumps(dict(settings), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{task.name}.settings() must return JSON-serialisable values: {exc}") from exc
    assert isinstance(loaded, dict)
    return loaded


def _run_schema(task: DatasetTask) -> pa.Schema:
    schema = task.schema()
    if not isinstance(schema, pa.Schema):
        raise InvalidInputError(f"{task.name}.schema() must return a pyarrow.Schema, got {type(schema).__name__}")
    if ID_COLUMN in schema.names:
        raise InvalidInputError(f"{task.name}.schema() must not declare {ID_COLUMN!r}: the runner adds it")
    if len(set(schema.names)) != len(schema.names):
        raise InvalidInputError(f"{task.name}.schema() declares a column twice: {schema.names}")
    return pa.schema([pa.field(ID_COLUMN, pa.int64(), nullable=False), *schema]).remove_metadata()


# ---------------------------------------------------------------------- the run
def _batches(dataset: Any, ids: np.ndarray, positions: np.ndarray, batch_size: int) -> Iterator[Batch]:
    for start in range(0, positions.size, batch_size):
        chunk = positions[start : start + batch_size].tolist()
        yield [(int(ids[p]), dataset[p]) for p in chunk]


def _to_table(
    task: DatasetTask, ids: list[int], records: Sequence[Any], names: set[str], schema: pa.Schema
) -> pa.Table:
    """The records of one batch as a table of the run's schema, or an error that says what is wrong with them."""
    if len(records) != len(ids):
        raise InvalidInputError(
            f"{task.name}.process() returned {len(records)} records for a batch of {len(ids)} examples; "
            "it must return exactly one record per example, in order"
        )
    out = []
    for example_id, record in zip(ids, records, strict=True):
        if not isinstance(record, Mapping):
            raise InvalidInputError(f"{task.name}.process() must return mappings, got {type(record).__name__}")
        row = dict(record)
        if row.setdefault(ID_COLUMN, example_id) != example_id:
            raise InvalidInputError(
                f"{task.name}.process() returned the record of example {row[ID_COLUMN]} in the place of "
                f"example {example_id}; records must follow the batch's order"
            )
        if row.keys() != names:
            missing, extra = sorted(names - row.keys()), sorted(row.keys() - names)
            raise InvalidInputError(
                f"{task.name}.process() returned a record that does not match its schema() "
                f"(missing: {missing}, not in the schema: {extra})"
            )
        out.append(row)
    try:
        return pa.Table.from_pylist(out, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{task.name}.process() returned values that do not fit its schema() ({exc}); schema: {schema}"
        ) from exc


def _validate(
    engine: str, batch_size: int, num_workers: int | None, address: str | None, part_rows: int, checkpoint: float
) -> None:
    if engine not in get_args(Engine):
        raise InvalidInputError(f"engine must be one of {list(get_args(Engine))}, got {engine!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"examples_per_batch must be a positive integer, got {batch_size!r}")
    if not isinstance(part_rows, int) or part_rows < 1:
        raise InvalidInputError(f"part_rows must be a positive integer, got {part_rows!r}")
    if not isinstance(checkpoint, int | float) or not checkpoint >= 0:
        raise InvalidInputError(f"checkpoint_seconds must be a number >= 0, got {checkpoint!r}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
        raise InvalidInputError(f"num_workers must be a positive integer, got {num_workers!r}")
    if engine == "local" and (address is not None or num_workers not in (None, 1)):
        raise InvalidInputError("address and num_workers apply to engine='ray'; the local engine uses one worker")
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        require("ray")  # raises the error that names the extra to install


def run_dataset(
    task: DatasetTask,
    dataset: Any,
    *,
    out_dir: str | os.PathLike[str],
    engine: Engine = "local",
    address: str | None = None,
    num_workers: int | None = None,
    examples_per_batch: int = 8,
    part_rows: int = 1024,
    checkpoint_seconds: float = 30.0,
    progress: bool = True,
    batch_size: int | None = None,
) -> RunResult:
    """Map ``task`` over every example of ``dataset``, writing one Parquet record per example to ``out_dir``.

    The run is resumable: called again with the same task settings and dataset after any interruption (an
    exception, Ctrl-C, ``kill -9``, a power cut), it computes only the examples without a stored result, and the
    final table is the same as that of an uninterrupted run. Results are stored in immutable part files, each
    made visible by an atomic rename, at most every ``part_rows`` rows or ``checkpoint_seconds`` seconds — the
    most work a hard kill can lose.

    Args:
        task: what to compute per example (see :class:`DatasetTask`).
        dataset: any sequence (``len()`` and integer indexing) of examples; the runner passes examples to the
            task untouched. Example ids are ``dataset.example_ids`` when it has that attribute (unique ints),
            else the positions ``0..len-1``. Its content is fingerprinted (``dataset.fingerprint`` if it has
            one, else a hash of every example) so that a different dataset cannot resume the run.
        out_dir: the run directory: created, or resumed when it holds a run of the same task settings and
            dataset.
        engine: ``"local"`` computes in this process; ``"ray"`` (extra ``attrflow[ray]``) fans the batches out
            over Ray workers that each hold a replica of the task. Same records, same directory, same resume.
        address: Ray only: the address of an existing cluster (``"ray://host:10001"``, ``"host:6379"``). Default:
            attrflow starts a local Ray and stops it afterwards (or uses the Ray this process initialised). The
            cluster's workers must be able to import attrflow and the task's module (install them there, or
            call ``ray.init(address, runtime_env=...)`` yourself before ``run_dataset``, which then uses it).
        num_workers: Ray only: number of task replicas (default: one per CPU of the cluster).
        examples_per_batch: examples per ``task.process`` call (memory and speed only: results do not depend on
            it).
        part_rows: rows per part file at most.
        checkpoint_seconds: write the buffered results at least this often.
        progress: show a progress bar with the remaining time (tqdm, on stderr).
        batch_size: the old name of ``examples_per_batch`` (deprecated: ``batch_size`` means rows per forward
            pass everywhere else in attrflow).

    Returns:
        The :class:`RunResult`: directory, counts, and ``read_table()`` / ``to_pandas()`` / ``consolidate()``.

    Raises:
        RunMismatchError: ``out_dir`` holds a run with other settings or another dataset; the message names the
            differing keys.
        RunLockedError: another process is writing to ``out_dir``.
        InvalidInputError: bad options, or records that do not match ``task.schema()``.
        ResultFormatError: ``out_dir`` is damaged or not a run directory.

    Exceptions raised by the task propagate after the results already computed have been stored.
    """
    if batch_size is not None:
        warnings.warn(
            "run_dataset(batch_size=...) is now examples_per_batch=...; batch_size stops working in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        examples_per_batch = batch_size
    _validate(engine, examples_per_batch, num_workers, address, part_rows, checkpoint_seconds)
    directory = Path(out_dir)
    schema = _run_schema(task)
    ids = _example_ids(dataset)
    metadata = {
        "format": RUN_FORMAT,
        "schema_version": RUN_SCHEMA_VERSION,
        "attrflow_version": __version__,
        "task": task.name,
        "settings": _json_settings(task),
        "dataset": _dataset_identity(dataset, ids),
        "columns": {field.name: str(field.type) for field in schema},
        "arrow_schema": _store.schema_to_text(schema),
    }
    with RunStore.open(directory, metadata) as store:
        done = store.finished_ids()
        if done.size and not np.isin(done, ids).all():
            raise InvalidInputError(f"{directory} stores example ids that the dataset does not have")
        pending = np.flatnonzero(~np.isin(ids, done))
        if done.size:
            logger.info("resuming %s: %d of %d examples already done", directory, done.size, ids.size)
        # a finished run starts no engine (no model is loaded, no Ray is started)
        processed = 0
        if pending.size:
            processed = _compute(
                task,
                store,
                _batches(dataset, ids, pending, examples_per_batch),
                total=int(ids.size),
                initial=int(done.size),
                engine=engine,
                address=address,
                num_workers=num_workers,
                part_rows=part_rows,
                checkpoint_seconds=checkpoint_seconds,
                progress=progress,
            )
        result = RunResult(
            out_dir=directory,
            num_examples=int(ids.size),
            num_done=int(done.size) + processed,
            num_processed=processed,
            metadata=store.metadata,
        )
    logger.info("%s: %d examples computed, %d of %d stored", directory, processed, result.num_done, ids.size)
    return result


def _compute(
    task: DatasetTask,
    store: RunStore,
    batches: Iterator[Batch],
    *,
    total: int,
    initial: int,
    engine: Engine,
    address: str | None,
    num_workers: int | None,
    part_rows: int,
    checkpoint_seconds: float,
    progress: bool,
) -> int:
    """Drive the engine, buffer its records and store them as parts. Returns the number of records stored."""
    from tqdm.auto import tqdm

    names = set(store.schema.names)
    buffer: list[pa.Table] = []
    buffered = 0
    stored = 0
    last_write = time.monotonic()

    def flush() -> None:
        nonlocal buffered, stored, last_write
        if buffer:
            table = pa.concat_tables(buffer).sort_by(ID_COLUMN)
            for start in range(0, table.num_rows, part_rows):
                store.write_part(table.slice(start, part_rows).combine_chunks())
            stored += table.num_rows
            buffer.clear()
            buffered = 0
        last_write = time.monotonic()

    if engine == "ray":
        finished = iter_ray(task, batches, address=address, num_workers=num_workers)
    else:
        finished = iter_local(task, batches)
    bar = tqdm(total=total, initial=initial, unit="ex", desc=task.name, disable=not progress, dynamic_ncols=True)
    try:
        with contextlib.closing(finished):
            for ids, records in finished:
                buffer.append(_to_table(task, ids, records, names, store.schema))
                buffered += len(ids)
                bar.update(len(ids))
                if buffered >= part_rows or time.monotonic() - last_write >= checkpoint_seconds:
                    flush()
    finally:
        # what was computed is kept, whatever stopped the run (an exception, Ctrl-C)
        flush()
        bar.close()
    return stored
