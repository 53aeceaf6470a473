"""Dataset-scale execution: map a per-example task over a dataset into a resumable Parquet run directory.

    >>> result = run_dataset(task, dataset, out_dir="runs/heads", engine="ray")   # killed? run it again
    >>> result.to_pandas()

:func:`run_dataset` batches examples for a :class:`DatasetTask`, shows a progress bar, and appends the records to
immutable Parquet parts (atomic renames), so a run stopped at any instant — ``kill -9`` included — continues
where it stopped when started again with the same arguments. Engines: ``local`` (this process) and ``ray``
(replicas of the task on Ray workers; extra ``attrflow[ray]``), with identical output.
"""

from attrflow.runner._options import Engine, RunOptions, resolve_run_options
from attrflow.runner._run import RunResult, open_run, run_dataset
from attrflow.runner._store import run_lock
from attrflow.runner._task import Batch, DatasetTask

__all__ = [
    "Batch",
    "DatasetTask",
    "Engine",
    "RunOptions",
    "RunResult",
    "open_run",
    "resolve_run_options",
    "run_dataset",
    "run_lock",
]
