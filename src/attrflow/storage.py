"""Files: atomic writes, the result file format, and the registry of result types behind :func:`load_result`.

This is the bottom of attrflow (it imports nothing of attrflow but the errors). Every file attrflow writes goes
through :func:`atomic_write` (readers see the old file or the whole new one, never a part, also after ``kill -9``).

A saved result is one safetensors file: the tensors, and in the header's metadata a JSON object with the result's
other fields, the result type's name (its *kind*), a schema version and a SHA-256 checksum of the tensor data.
Nothing is ever pickled. :func:`load_result` checks all of it and hands the parts to the registered type, so a
file whose tensor bytes were damaged (the safetensors header still valid) is refused instead of loading garbage.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import torch

from attrflow.errors import InvalidInputError, ResultFormatError

__all__ = [
    "SCHEMA_VERSION",
    "StoredResult",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_result",
    "read_result",
    "register_result_type",
    "result_kinds",
    "tensor_checksum",
    "write_result",
]

# 2: a checksum of the tensor data in the metadata (version 1 files, without it, still load)
SCHEMA_VERSION = 2
KIND_KEY = "attrflow.kind"
META_KEY = "attrflow.meta"
CHECKSUM_KEY = "attrflow.checksum"

_RESULT_TYPES: dict[str, type[Any]] = {}
# result types whose module is imported only when load_result meets their kind (keeps `import attrflow` cheap)
_LAZY_RESULT_TYPES: dict[str, str] = {
    "AttentionAttribution": "attrflow.results",
    "RecordedAttention": "attrflow.results",
    "TokenScores": "attrflow.results",
    "AttributionTree": "attrflow.analysis.tree",
    "HeadImportance": "attrflow.analysis.heads.importance",
    "PruningCurve": "attrflow.analysis.heads.pruning",
    "HeadsAnalysis": "attrflow.analysis.heads.study",
    "FaithfulnessReport": "attrflow.analysis.faithfulness.report",
    "TriggerPatterns": "attrflow.analysis.triggers.patterns",
    "AttackReport": "attrflow.analysis.triggers.report",
    "Leaderboard": "attrflow.analysis.leaderboard.result",
    "ContextMixing": "attrflow.methods.mixing",
}


# ---------------------------------------------------------------------------------------------- atomic writes
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    # makes a rename durable; not possible on every platform/filesystem, where the rename is still atomic
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` through ``write(file)`` into a hidden temporary file beside it, fsync, rename into place.

    Readers see the old file or the whole new one, never a part; a failure (or ``kill -9``) leaves no partial
    file under ``path``. Missing parent directories are created.

    Raises:
        InvalidInputError: ``path`` is an existing directory, or its parent is a file.
    """
    target = Path(path)
    if target.is_dir():
        raise InvalidInputError(f"{target} is a directory; give a file name")
    parent = target.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise InvalidInputError(f"cannot write {target}: {ancestor} is a file, not a directory")
            break
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{target.name}.{os.getpid()}.{id(write):x}.tmp"
    try:
        with open(tmp, "wb") as handle:
            os.chmod(tmp, 0o666 & ~_umask())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(parent)
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` by ``data`` atomically. Returns the path."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Replace ``path`` by ``text`` (UTF-8) atomically. Returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as strict JSON (NaN and infinities become null) atomically. Returns the path."""
    text = json.dumps(_strict_json(data), indent=indent, allow_nan=False, default=str)
    return atomic_write_text(path, text + "\n")


def _strict_json(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- result files
def tensor_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (hex)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def write_result(
    path: str | os.PathLike[str], kind: str, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> Path:
    """Write one result file: ``tensors`` with safetensors, ``meta`` (JSON) and ``kind`` in its metadata, atomically.

    ``meta`` gets ``schema_version`` added; a checksum of the tensor data is stored beside it.
    """
    from safetensors.torch import save

    payload = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    full_meta = {**meta, "schema_version": SCHEMA_VERSION}
    metadata = {
        KIND_KEY: kind,
        META_KEY: json.dumps(full_meta, allow_nan=True),
        CHECKSUM_KEY: tensor_checksum(payload),
    }
    return atomic_write_bytes(path, save(payload, metadata=metadata))


def read_result(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a result file: ``(kind, meta, tensors)``.

    Raises:
        ResultFormatError: missing, not a safetensors file, not an attrflow result, a schema version this attrflow
            does not know, metadata that is not a JSON object, or tensor data that does not match its checksum.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    source = Path(path)
    if not source.is_file():
        raise ResultFormatError(f"{source}: no such result file")
    try:
        raw = source.read_bytes()
        tensors = load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
        metadata = header.get("__metadata__") or {}
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError, AttributeError) as exc:
        raise ResultFormatError(f"{source}: not a readable attrflow result file ({exc})") from exc
    kind = metadata.get(KIND_KEY)
    if not isinstance(kind, str) or not kind:
        raise ResultFormatError(f"{source}: not an attrflow result (no result kind in its metadata)")
    try:
        meta = json.loads(metadata[META_KEY])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ResultFormatError(f"{source}: result metadata is missing or corrupt") from exc
    if not isinstance(meta, dict):
        raise ResultFormatError(f"{source}: result metadata must be a JSON object, got {type(meta).__name__}")
    version = meta.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise ResultFormatError(
            f"{source}: schema version {version!r} is not one this attrflow reads (1 to {SCHEMA_VERSION}); "
            "a newer attrflow wrote it, or the file is damaged"
        )
    stored = metadata.get(CHECKSUM_KEY)
    checked = version >= 2 or stored is not None
    if checked and (not isinstance(stored, str) or tensor_checksum(tensors) != stored):
        raise ResultFormatError(
            f"{source}: the tensor data does not match its checksum: the file was damaged or edited; "
            "recompute the result"
        )
    return kind, meta, dict(tensors)


@runtime_checkable
class StoredResult(Protocol):
    """What a result type provides to be saved with :func:`write_result` and loaded by :func:`load_result`."""

    kind: ClassVar[str]

    def to_parts(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(meta, tensors)``: JSON-ready fields and the tensors."""
        ...

    @classmethod
    def from_parts(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Any:
        """Rebuild the result from what :meth:`to_parts` gave (raise on anything inconsistent)."""
        ...


_T = TypeVar("_T", bound=type[Any])


def register_result_type(cls: _T) -> _T:
    """Class decorator: make a result type loadable by :func:`load_result` under its ``kind`` (default: its name).

    The class needs ``from_parts(meta, tensors)`` (and, to save, ``to_parts()``).
    """
    kind = getattr(cls, "kind", None) or cls.__name__
    if not callable(getattr(cls, "from_parts", None)):
        raise TypeError(f"{cls.__name__} needs a from_parts(meta, tensors) classmethod to be a result type")
    _RESULT_TYPES[kind] = cls
    return cls


def register_lazy_result_type(kind: str, module: str) -> None:
    """Tell :func:`load_result` which module defines (and registers) ``kind``; it is imported on first need."""
    _LAZY_RESULT_TYPES.setdefault(kind, module)


def result_kinds() -> tuple[str, ...]:
    """Every result kind :func:`load_result` knows (registered or importable on demand)."""
    return tuple(sorted(set(_RESULT_TYPES) | set(_LAZY_RESULT_TYPES)))


def load_result(path: str | os.PathLike[str]) -> Any:
    """Load any result written by a result's ``save(path)``.

    Raises:
        ResultFormatError: the file is missing, not an attrflow result, damaged (checksum), of an unknown schema
            version, or its contents are inconsistent.
    """
    kind, meta, tensors = read_result(path)
    if kind not in _RESULT_TYPES and kind in _LAZY_RESULT_TYPES:
        importlib.import_module(_LAZY_RESULT_TYPES[kind])
    cls = _RESULT_TYPES.get(kind)
    if cls is None:
        raise ResultFormatError(f"{path}: unknown result kind {kind!r} (known: {', '.join(result_kinds())})")
    try:
        return cls.from_parts(meta, tensors)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, InvalidInputError) as exc:
        raise ResultFormatError(f"{path}: result is incomplete or inconsistent ({exc})") from exc
