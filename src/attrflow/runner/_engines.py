"""Engines: where a task's batches are computed. Each yields ``(example ids, records)`` as batches finish.

``local`` computes in this process. ``ray`` fans the batches out over Ray actors, each holding its own replica of
the task (its own model), on a local Ray that attrflow starts and stops, on an existing cluster (``address``), or
on the Ray this process already initialised. Results come back to this process, which alone writes the output,
so both engines produce the same run directory.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from attrflow.dependencies import require
from attrflow.errors import InvalidInputError
from attrflow.runner._task import Batch, DatasetTask

__all__ = ["iter_local", "iter_ray"]

logger = logging.getLogger(__name__)

Finished = tuple[list[int], Sequence[Any]]


def iter_local(task: DatasetTask, batches: Iterator[Batch]) -> Generator[Finished, None, None]:
    """Compute every batch in this process, in order."""
    task.setup()
    try:
        for batch in batches:
            yield [example_id for example_id, _ in batch], task.process(batch)
    finally:
        task.teardown()


class _TaskActor:
    """A Ray actor holding one replica of a task (set up once, in the worker process)."""

    def __init__(self, task: DatasetTask) -> None:
        self.task = task
        self.task.setup()

    def ready(self) -> bool:
        return True

    def process(self, batch: Batch) -> Sequence[Any]:
        return list(self.task.process(batch))

    def teardown(self) -> None:
        self.task.teardown()


def start_local_ray(ray: Any, num_workers: int | None) -> None:
    """``ray.init`` a local Ray whose workers import modules the way this process does.

    The workers are started by Ray's daemons, which inherit this process's environment at ``init``: exporting
    ``sys.path`` as ``PYTHONPATH`` for that moment lets them unpickle tasks defined in modules this process
    found through ``sys.path`` changes (tests, notebooks, scripts beside it). A ``runtime_env`` would do the same
    but costs seconds per worker.
    """
    cpus = max(os.cpu_count() or 1, num_workers or 1)
    logger.info("starting a local Ray with %d CPUs", cpus)
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


def iter_ray(
    task: DatasetTask,
    batches: Iterator[Batch],
    *,
    address: str | None,
    num_workers: int | None,
    batches_in_flight: int = 2,
) -> Generator[Finished, None, None]:
    """Compute the batches on Ray actors, ``batches_in_flight`` queued per actor; yield them as they finish.

    Ray is started here (and stopped afterwards) unless this process already initialised it; ``address``
    connects to an existing cluster instead (disconnected afterwards, the cluster keeps running).
    """
    ray = require("ray")
    started = False
    if ray.is_initialized():
        if address is not None:
            raise InvalidInputError(
                f"Ray is already initialised in this process, so address={address!r} cannot be used; "
                "leave address out to use the running Ray, or call ray.shutdown() first"
            )
    elif address is not None:
        logger.info("connecting to the Ray cluster at %s", address)
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise InvalidInputError(
                f"cannot connect to the Ray cluster at {address!r} ({exc}). Check the address (the one "
                "`ray start --head` printed, or ray://HOST:10001 for Ray Client); if the cluster uses token "
                "authentication, set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN, or the token file) here as well."
            ) from exc
        started = True
    else:
        start_local_ray(ray, num_workers)
        started = True
    actors: list[Any] = []
    try:
        total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        workers = num_workers or max(1, int(total_cpus))
        # Ray accepts fractions of a CPU below 1 and whole numbers above
        per_worker = total_cpus // workers if total_cpus >= workers else 1 / math.ceil(workers / total_cpus)
        actor_class = ray.remote(num_cpus=per_worker)(_TaskActor)
        actors = [actor_class.remote(task) for _ in range(workers)]
        logger.info("Ray: %d workers with %s CPU each hold a replica of %s", workers, per_worker, task.name)
        ray.get([actor.ready.remote() for actor in actors])  # a failing setup() raises here
        in_flight: dict[Any, tuple[Any, list[int]]] = {}

        def submit(actor: Any) -> bool:
            batch = next(batches, None)
            if batch is None:
                return False
            in_flight[actor.process.remote(batch)] = (actor, [example_id for example_id, _ in batch])
            return True

        for _ in range(batches_in_flight):
            for actor in actors:
                submit(actor)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            actor, ids = in_flight.pop(ready[0])
            records = ray.get(ready[0])
            submit(actor)
            yield ids, records
        ray.get([actor.teardown.remote() for actor in actors])
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
