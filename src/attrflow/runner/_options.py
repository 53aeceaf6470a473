"""How a dataset-level job runs, as one value: :class:`RunOptions` travels instead of a dozen keyword arguments."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from attrflow.errors import InvalidInputError
from attrflow.validation import check_choice, check_int

__all__ = ["Engine", "RunOptions", "resolve_run_options"]

Engine = Literal["local", "ray"]


@dataclass(frozen=True)
class RunOptions:
    """Where and how :func:`attrflow.runner.run_dataset` runs a task (none of it changes the results).

    Attributes:
        out_dir: the resumable run directory (created, or resumed); None: a temporary one that is removed after.
        engine: ``"local"`` (this process) or ``"ray"`` (replicas on Ray workers; ``attrflow[ray]``).
        address: Ray only: an existing cluster's address (default: start a local Ray, stop it afterwards).
        num_workers: Ray only: task replicas (default: one per CPU).
        examples_per_batch: examples handed to the task at once (speed only). Not to be confused with
            ``batch_size`` elsewhere in attrflow, which is always *rows per forward pass*.
        progress: show a progress bar with ETA (tqdm, stderr).
    """

    out_dir: str | os.PathLike[str] | None = None
    engine: Engine = "local"
    address: str | None = None
    num_workers: int | None = None
    examples_per_batch: int = 8
    progress: bool = True

    def __post_init__(self) -> None:
        check_choice("engine", self.engine, Engine)
        check_int("examples_per_batch", self.examples_per_batch, minimum=1)
        if self.num_workers is not None:
            check_int("num_workers", self.num_workers, minimum=1)
        if self.address is not None and not isinstance(self.address, str):
            raise InvalidInputError(f"address must be a string, got {type(self.address).__name__}")
        if self.engine == "local" and (self.address is not None or self.num_workers not in (None, 1)):
            raise InvalidInputError("address and num_workers need engine='ray'")

    def with_out_dir(self, out_dir: str | os.PathLike[str] | None) -> RunOptions:
        """A copy that writes to ``out_dir``."""
        return replace(self, out_dir=out_dir)

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`attrflow.runner.run_dataset` (``out_dir`` excluded)."""
        return {
            "engine": self.engine,
            "address": self.address,
            "num_workers": self.num_workers,
            "examples_per_batch": self.examples_per_batch,
            "progress": self.progress,
        }

    @property
    def path(self) -> Path | None:
        """``out_dir`` as a Path (None when unset)."""
        return None if self.out_dir is None else Path(self.out_dir)


# the runner keywords dataset-level functions took one by one before RunOptions, and their RunOptions field
# (batch_size: the old name of examples_per_batch where it meant examples per runner batch)
_LEGACY_KEYWORDS = {
    "out_dir": "out_dir",
    "engine": "engine",
    "address": "address",
    "num_workers": "num_workers",
    "examples_per_batch": "examples_per_batch",
    "batch_size": "examples_per_batch",
    "progress": "progress",
}


def resolve_run_options(run: RunOptions | None, legacy: Mapping[str, Any], *, caller: str) -> RunOptions:
    """``run``, or one built from the runner keywords ``caller`` took before RunOptions (with a
    DeprecationWarning): the one place a dataset-level function turns its ``**legacy`` keywords into options.

    Raises:
        TypeError: a keyword that was never a runner option (as Python raises for an unknown keyword).
        InvalidInputError: both ``run`` and old keywords.
    """
    unknown = sorted(set(legacy) - set(_LEGACY_KEYWORDS))
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    if not legacy:
        return run if run is not None else RunOptions()
    if run is not None:
        raise InvalidInputError(
            f"give the runner options either as run=RunOptions(...) or as keywords, not both "
            f"(got run and {', '.join(sorted(legacy))})"
        )
    names = ", ".join(f"{key}=" for key in legacy)
    warnings.warn(
        f"{caller}({names}...) is deprecated and stops working in the next release; pass "
        "run=attrflow.RunOptions(...) (batch_size= is now examples_per_batch=)",
        DeprecationWarning,
        stacklevel=3,
    )
    return RunOptions(**{_LEGACY_KEYWORDS[key]: value for key, value in legacy.items()})
