"""The on-disk layout of a run directory, built to survive ``kill -9`` at any instant.

    OUT/run.json              what the run is: task, settings, dataset, columns, versions (written once, atomically)
    OUT/part-000000.parquet   immutable result parts, each written to a hidden temporary name, fsynced, then
    OUT/part-000001.parquet   renamed into place (rename is atomic: a part is either whole or absent)
    OUT/.lock                 held (flock) by the one process writing; the kernel releases it when that dies
    OUT/examples.parquet      optional: all parts in one file sorted by example id (``RunResult.consolidate``)

The set of finished examples is exactly the union of the parts' ``example_id`` columns, so a restarted run
skips them and computes the rest: nothing is lost (a killed run loses at most its unwritten buffer, which is
recomputed) and nothing is duplicated. Leftover temporary files of a killed writer are deleted on restart.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from attrflow.errors import ResultFormatError, RunLockedError, RunMismatchError

__all__ = [
    "ID_COLUMN",
    "RUN_FILE",
    "RUN_FORMAT",
    "RUN_SCHEMA_VERSION",
    "RunStore",
    "atomic_write_bytes",
    "read_run_metadata",
    "run_lock",
]

RUN_FORMAT = "attrflow-run"
RUN_SCHEMA_VERSION = 1
RUN_FILE = "run.json"
LOCK_FILE = ".lock"
EXAMPLES_FILE = "examples.parquet"
ID_COLUMN = "example_id"
_PART_RE = re.compile(r"^part-(\d{6,})\.parquet$")
_TMP_RE = re.compile(r"^\..*\.tmp$")
# keys of run.json that must be equal for a run to resume into the directory
IDENTITY_KEYS = ("task", "settings", "dataset", "columns")

logger = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    # makes a rename durable; not possible on every platform/filesystem, where the rename is still atomic
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(target: Path, write: Any) -> None:
    """Write ``target`` through ``write(file)`` into a hidden temporary file, fsync it, rename it into place."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Replace ``target`` by ``data`` atomically (readers see the old or the new file, never a partial one)."""
    _atomic_write(target, lambda f: f.write(data))


def atomic_write_table(target: Path, table: pa.Table) -> None:
    """Write ``table`` as Parquet to ``target`` atomically."""

    def write(f: IO[bytes]) -> None:
        pq.write_table(table, f)

    _atomic_write(target, write)


def schema_to_text(schema: pa.Schema) -> str:
    """The exact Arrow schema as base64 text (for JSON)."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_text(text: str) -> pa.Schema:
    """Inverse of :func:`schema_to_text`."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def read_run_metadata(out_dir: Path) -> dict[str, Any]:
    """The contents of ``out_dir/run.json``, checked for format and schema version."""
    path = out_dir / RUN_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultFormatError(f"{out_dir} is not an attrflow run directory: it has no {RUN_FILE}") from None
    except (OSError, ValueError) as exc:
        raise ResultFormatError(f"{path} cannot be read ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise ResultFormatError(f"{path} is not the metadata of an attrflow run")
    version = meta.get("schema_version")
    if version != RUN_SCHEMA_VERSION:
        raise ResultFormatError(
            f"{path} has run schema version {version!r}; this attrflow reads version {RUN_SCHEMA_VERSION}. "
            "Use the attrflow version that wrote it, or start a new run in another directory."
        )
    return meta


def _differences(recorded: Any, current: Any, prefix: str) -> list[str]:
    """Readable ``key: recorded X, now Y`` lines for every leaf where two JSON values differ."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(recorded) | set(current), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in current:
                out.append(f"{where}: recorded {json.dumps(recorded[key])}, now absent")
            elif key not in recorded:
                out.append(f"{where}: not recorded, now {json.dumps(current[key])}")
            else:
                out.extend(_differences(recorded[key], current[key], where))
        return out
    if recorded != current:
        return [f"{prefix}: recorded {json.dumps(recorded)}, now {json.dumps(current)}"]
    return []


class RunStore:
    """A run directory opened for writing: holds the lock, knows the finished ids, appends parts.

    Use :meth:`open` (creates or resumes) and :meth:`close` (or ``with``).
    """

    def __init__(self, out_dir: Path, metadata: dict[str, Any], lock_file: _Lock | None) -> None:
        self.out_dir = out_dir
        self.metadata = metadata
        self.schema = schema_from_text(metadata["arrow_schema"])
        self._lock_file = lock_file
        self._next_index = 1 + max((index for index, _ in part_files(out_dir)), default=-1)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, out_dir: Path, metadata: dict[str, Any]) -> RunStore:
        """Create ``out_dir`` for a new run described by ``metadata``, or resume the run recorded there.

        Raises:
            RunMismatchError: the directory holds a run whose identity (task, settings, dataset, columns)
                differs from ``metadata``'s; the message lists the differing keys.
            RunLockedError: another process is writing to the directory.
            ResultFormatError: the directory is not a run directory or is damaged.
        """
        lock_file = _acquire_lock(out_dir)
        try:
            _remove_temporary_files(out_dir)
            if (out_dir / RUN_FILE).exists():
                recorded = read_run_metadata(out_dir)
                diffs: list[str] = []
                for key in IDENTITY_KEYS:
                    diffs.extend(_differences(recorded.get(key), metadata[key], key))
                if diffs:
                    raise RunMismatchError(
                        f"{out_dir} holds a run with different settings, so this run cannot continue it:\n  "
                        + "\n  ".join(diffs)
                        + f"\nChoose another output directory (--out), or delete {out_dir} to start over."
                    )
                if recorded.get("attrflow_version") != metadata.get("attrflow_version"):
                    logger.warning(
                        "%s was started by attrflow %s; continuing it with attrflow %s",
                        out_dir,
                        recorded.get("attrflow_version"),
                        metadata.get("attrflow_version"),
                    )
                metadata = recorded
            else:
                strangers = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK_FILE)
                if strangers:
                    raise ResultFormatError(
                        f"{out_dir} is not empty and is not an attrflow run directory (it holds "
                        f"{', '.join(strangers[:5])}{', ...' if len(strangers) > 5 else ''}); "
                        "choose another output directory (--out)"
                    )
                metadata = {**metadata, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                atomic_write_bytes(out_dir / RUN_FILE, (json.dumps(metadata, indent=2) + "\n").encode())
            return cls(out_dir, metadata, lock_file)
        except BaseException:
            _release_lock(lock_file)
            raise

    def close(self) -> None:
        """Release the directory lock (parts already written stay)."""
        _release_lock(self._lock_file)
        self._lock_file = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading and writing
    def finished_ids(self) -> np.ndarray:
        """The example ids already stored in the parts, int64, sorted."""
        return finished_ids(self.out_dir, self.schema)

    def write_part(self, table: pa.Table) -> Path:
        """Append ``table`` (rows with this run's schema) as the next immutable part file."""
        if table.schema != self.schema:
            raise AssertionError(f"part schema {table.schema} differs from the run schema {self.schema}")
        target = self.out_dir / f"part-{self._next_index:06d}.parquet"
        self._next_index += 1
        atomic_write_table(target, table)
        logger.debug("wrote %s (%d rows)", target.name, table.num_rows)
        return target


@dataclass(frozen=True)
class _Lock:
    """One acquisition of a run directory's lock: the open lock file (None when shared with a :func:`run_lock`
    holding the directory in this context) and what the acquisition created."""

    directory: Path
    file: IO[str] | None
    created_dir: bool = False
    created_file: bool = False


# the run directories held by a run_lock() in this context (this call chain): their runs share the outer lock
_HELD_HERE: ContextVar[frozenset[str]] = ContextVar("attrflow_held_run_directories", default=frozenset())


def _acquire_lock(out_dir: Path) -> _Lock:
    """Create ``out_dir`` if needed and hold its lock; inside a :func:`run_lock` of the same directory, share it."""
    if str(out_dir.resolve()) in _HELD_HERE.get():
        return _Lock(out_dir, None)
    created_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    created_file = not (out_dir / LOCK_FILE).exists()
    try:
        file = _flock(out_dir)
    except BaseException:
        _clean_up(out_dir, created_dir=created_dir, created_file=False)
        raise
    return _Lock(out_dir, file, created_dir, created_file)


def _flock(out_dir: Path) -> IO[str] | None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, single writer is the user's duty
        return None
    f = open(out_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the run's lifetime
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunLockedError(
            f"another attrflow run (pid {holder}) is writing to {out_dir}; wait for it to finish or stop it, "
            "or choose another output directory (--out)"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def _release_lock(lock: _Lock | None) -> None:
    """Give an acquisition back: closing the lock file releases the flock (a shared acquisition does nothing).

    A lock file this acquisition created in a directory that did not become a run directory (no ``run.json``: the
    directory was refused, or the work failed before it started) is removed, and so is a directory it created that
    is left empty: a refused directory is left as it was found.
    """
    if lock is None or lock.file is None:
        return
    # removed while still held, so that no other process takes a lock on a file about to vanish
    _clean_up(lock.directory, created_dir=lock.created_dir, created_file=lock.created_file)
    lock.file.close()


def _clean_up(directory: Path, *, created_dir: bool, created_file: bool) -> None:
    if created_file and not (directory / RUN_FILE).exists():
        with contextlib.suppress(OSError):
            (directory / LOCK_FILE).unlink()
    if created_dir:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock of a run directory for a whole piece of work (created if needed; re-entrant in a process).

    :func:`attrflow.run_dataset` holds it while it computes; an analysis that goes on after the runner (pruning,
    exporting its files into the same directory) holds it for all of it, so that a second process started on the
    same directory is refused at once instead of redoing the work and overwriting the files. Runs started inside
    the block (in the same thread or task) share the lock; any other writer is refused.

    Raises:
        RunLockedError: another process holds the directory.
    """
    directory = Path(out_dir)
    lock = _acquire_lock(directory)
    token = _HELD_HERE.set(_HELD_HERE.get() | {str(directory.resolve())})
    try:
        yield directory
    finally:
        _HELD_HERE.reset(token)
        _release_lock(lock)


def _remove_temporary_files(out_dir: Path) -> None:
    for path in out_dir.iterdir():
        if _TMP_RE.match(path.name):
            logger.info("removing %s, left behind by an interrupted run", path.name)
            path.unlink()


def part_files(out_dir: Path) -> list[tuple[int, Path]]:
    """The finished part files of a run directory as ``(index, path)``, in index order."""
    parts = []
    for path in out_dir.iterdir():
        match = _PART_RE.match(path.name)
        if match:
            parts.append((int(match.group(1)), path))
    return sorted(parts)


def _read_part(path: Path, schema: pa.Schema, columns: list[str] | None) -> pa.Table:
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise ResultFormatError(
            f"result part {path} cannot be read ({exc}). Delete this file and run again with the same "
            "arguments: its examples will be computed again."
        ) from exc
    expected = schema if columns is None else pa.schema([schema.field(c) for c in columns])
    table = table.replace_schema_metadata(None)
    if table.schema != expected:
        raise ResultFormatError(
            f"result part {path} has columns {table.schema} but the run records {expected}. Delete this file "
            "and run again with the same arguments: its examples will be computed again."
        )
    return table


def finished_ids(out_dir: Path, schema: pa.Schema) -> np.ndarray:
    """Sorted int64 example ids stored in the parts of ``out_dir``; a duplicate id is an error."""
    chunks = [_read_part(path, schema, [ID_COLUMN]).column(ID_COLUMN).to_numpy() for _, path in part_files(out_dir)]
    ids = np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.int64)
    duplicated = ids[1:][ids[1:] == ids[:-1]]
    if duplicated.size:
        raise ResultFormatError(
            f"{out_dir} stores example ids {np.unique(duplicated)[:10].tolist()} more than once; were two runs "
            "written into it by hand-copied parts? Delete the directory and run again."
        )
    return ids.astype(np.int64, copy=False)


def read_parts(out_dir: Path, schema: pa.Schema, columns: Iterable[str] | None = None) -> pa.Table:
    """All parts of ``out_dir`` as one table sorted by example id (optionally only some columns)."""
    wanted = None if columns is None else list(dict.fromkeys([ID_COLUMN, *columns]))
    if wanted is not None:
        unknown = [c for c in wanted if c not in schema.names]
        if unknown:
            raise ResultFormatError(f"the run in {out_dir} has no column {unknown}; it has {schema.names}")
    tables = [_read_part(path, schema, wanted) for _, path in part_files(out_dir)]
    target = schema if wanted is None else pa.schema([schema.field(c) for c in wanted])
    table = pa.concat_tables(tables) if tables else target.empty_table()
    table = table.sort_by(ID_COLUMN).combine_chunks()
    ids = table.column(ID_COLUMN).to_numpy()
    if ids.size > 1 and bool((ids[1:] == ids[:-1]).any()):
        raise ResultFormatError(f"{out_dir} stores some example ids more than once; delete it and run again")
    return table


def with_run_metadata(table: pa.Table, metadata: Mapping[str, Any]) -> pa.Table:
    """``table`` carrying the run metadata (run.json) in its schema metadata under ``attrflow.run``."""
    return table.replace_schema_metadata({"attrflow.run": json.dumps(dict(metadata))})
