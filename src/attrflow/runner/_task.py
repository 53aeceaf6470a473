"""The unit of work the runner maps over a dataset: a :class:`DatasetTask`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Batch", "DatasetTask"]

# a batch handed to DatasetTask.process: (example id, example) pairs
Batch = Sequence[tuple[int, Any]]


class DatasetTask(ABC):
    """A per-example computation that :func:`~attrflow.runner.run_dataset` maps over a dataset.

    Life cycle. The task object is built by the caller from plain settings (a model path or builtin name, method
    options) and is *copied* to every worker: the local engine uses it in place, the Ray engine pickles it into
    each worker process. So ``__init__`` must stay light and must not hold a live model; :meth:`setup` loads the
    heavy state (the model replica) once per worker, before the first :meth:`process` call, and
    :meth:`teardown` releases it after the last.

    Identity. :meth:`settings` names everything the results depend on (model, target rule, steps, ...). A run
    directory records them, and a later run into the same directory resumes only if they are equal — options
    that change speed but not results (batch size, number of workers, engine) do not belong there.

    Records. :meth:`process` returns one flat record per example of the batch, in the batch's order: a mapping
    from every column of :meth:`schema` to a value Arrow can store (numbers, strings, lists of floats for
    arrays). The runner adds the ``example_id`` column itself; a record may carry it too, and then it must
    match. Results must not depend on how examples are grouped into batches: the runner promises the same table
    whatever the engine, the batch size or the interruptions.

    Example:
        >>> class Length(DatasetTask):
        ...     def settings(self): return {"unit": "characters"}
        ...     def schema(self): return pa.schema([("length", pa.int64())])
        ...     def process(self, batch): return [{"length": len(ex.text)} for _, ex in batch]
    """

    @property
    def name(self) -> str:
        """A readable name of the task, recorded in the run directory (default: the class name)."""
        return type(self).__qualname__

    @abstractmethod
    def settings(self) -> Mapping[str, Any]:
        """The JSON-serialisable options that identify this task's results (model, method options, version)."""

    @abstractmethod
    def schema(self) -> pa.Schema:
        """The Arrow schema of one record, without the ``example_id`` column the runner adds."""

    def setup(self) -> None:  # noqa: B027 - optional hook, deliberately empty by default
        """Load the heavy state (e.g. the model replica) in the worker; called once before :meth:`process`."""

    @abstractmethod
    def process(self, batch: Batch) -> Sequence[Mapping[str, Any]]:
        """Compute the records of a batch of ``(example_id, example)`` pairs, one per pair, in order."""

    def teardown(self) -> None:  # noqa: B027 - optional hook, deliberately empty by default
        """Release what :meth:`setup` loaded; called once after the last :meth:`process` of a worker."""
