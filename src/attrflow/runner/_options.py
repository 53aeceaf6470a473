"""How a dataset-level job runs, as one value: :class:`RunOptions` travels instead of a dozen keyword arguments."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from attrflow.errors import InvalidInputError
from attrflow.validation import check_choice, check_int

__all__ = ["Engine", "RunOptions"]

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
