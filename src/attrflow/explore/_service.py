"""The explorer's engine, without any web framework: loaded models, one worker per model, jobs, a small cache.

Each model has one worker thread, so one model runs one forward at a time however many requests arrive; the web
layer never computes on its event loop. A job reports which method is running and can be cancelled (between
methods: a method that has started finishes first). Identical requests share one job while it runs and are answered
from a byte-bounded cache afterwards.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from attrflow.analysis.explanation import Explanation, default_methods, explain
from attrflow.errors import InvalidInputError
from attrflow.explore._request import ExplainRequest
from attrflow.methods.occlusion import replacement_id
from attrflow.methods.registry import get_method, list_methods, method_names
from attrflow.models import SPECIAL_SEGMENT, Model

if TYPE_CHECKING:
    from attrflow.models import Encoding

__all__ = ["Computed", "Explorer", "Job", "JobCancelledError"]

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024
_TOP_OUTPUTS = 10


class JobCancelledError(Exception):
    """The job was cancelled before it finished."""


@dataclass
class Computed:
    """A finished explanation with what the explorer adds to it.

    Attributes:
        request: the request it answers.
        explanation: what :func:`attrflow.explain` returned.
        probabilities: float32 ``[C]``: the model's output probabilities on the explained input.
        outputs: the most probable outputs (index, label, probability), most probable first.
        truncated: whether the text was cut to the model's maximum length.
        target: the target as passed to ``explain`` (None: the prediction).
        seconds: how long the computation took.
        payloads: serialised responses by ``(heads, encoding)`` (filled by the web layer).
    """

    request: ExplainRequest
    explanation: Explanation
    probabilities: torch.Tensor
    truncated: bool
    target: int | None
    seconds: float
    outputs: list[dict[str, Any]] = field(default_factory=list)
    payloads: dict[tuple[Any, str], bytes] = field(default_factory=dict)

    def nbytes(self) -> int:
        """An estimate of the memory it holds (tensors and serialised payloads)."""
        tensors: list[torch.Tensor] = [self.explanation.result.attentions]
        attributions = getattr(self.explanation.result, "attributions", None)
        if isinstance(attributions, torch.Tensor):
            tensors.append(attributions)
        for scores in self.explanation.scores.values():
            tensors.append(scores.scores)
            if scores.matrices is not None:
                tensors.append(scores.matrices)
        size = sum(t.numel() * t.element_size() for t in tensors)
        return size + sum(len(p) for p in self.payloads.values())


@dataclass
class Job:
    """One explain request being computed (or done).

    Attributes:
        id: the job's id (``GET/DELETE /api/jobs/{id}``).
        key: the request's key (equal requests, equal key); also the id of the result it produces.
        request: the checked request.
        future: resolves to a :class:`Computed`, or raises (:class:`JobCancelledError`, an attrflow error).
        stage: the method computing now ("" before the first and after the last).
        done, total: methods finished and to run.
        started, finished: monotonic times.
    """

    id: str
    key: str
    request: ExplainRequest
    future: concurrent.futures.Future[Computed] = field(default_factory=concurrent.futures.Future)
    stage: str = "queued"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def step(self, method: str, done: int, total: int) -> None:
        """``explain``'s progress callback: record the stage; raise :class:`JobCancelledError` when asked to stop."""
        if self.cancel_event.is_set():
            raise JobCancelledError(f"job {self.id} was cancelled")
        self.stage, self.done, self.total = method, done, total

    @property
    def state(self) -> str:
        """``queued``, ``running``, ``done``, ``error`` or ``cancelled``."""
        if not self.future.done():
            return "queued" if self.stage == "queued" else "running"
        error = self.future.exception()
        if error is None:
            return "done"
        return "cancelled" if isinstance(error, JobCancelledError) else "error"

    def status(self) -> dict[str, Any]:
        """The job as JSON-ready data (no result)."""
        error = self.future.exception() if self.future.done() else None
        return {
            "id": self.id,
            "result": self.key,
            "state": self.state,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "seconds": round((self.finished or time.monotonic()) - self.started, 3),
            "error": None if error is None or isinstance(error, JobCancelledError) else str(error),
        }


def _settle(job: Job, *, result: Computed | None = None, error: BaseException | None = None) -> None:
    """Resolve a job's future once (shutdown may have answered it already)."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)  # type: ignore[arg-type]
    if job.finished is None:
        job.finished = time.monotonic()


class _Worker:
    """One daemon thread running one model's jobs in order (one forward at a time per model)."""

    def __init__(self, name: str, run: Any) -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._run = run
        self._thread = threading.Thread(target=self._loop, name=f"attrflow-explore-{name}", daemon=True)
        self._thread.start()

    def put(self, job: Job) -> None:
        self._queue.put(job)

    def stop(self) -> None:
        self._queue.put(None)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not job.future.done():  # not answered already (cancelled at shutdown)
                self._run(job)


class Explorer:
    """The models an explorer serves, their workers, the running jobs and the cache of results.

    Args:
        models: loaded models by the name clients use.
        cache_bytes: the most memory finished results may hold (least recently used go first).
    """

    def __init__(self, models: Mapping[str, Model], *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if not models:
            raise InvalidInputError("the explorer needs at least one model")
        for name, model in models.items():
            if model.task == "image-classification":
                raise InvalidInputError(f"{name}: the explorer explains text models; this is an image classifier")
        self.models: dict[str, Model] = dict(models)
        self.cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[str, Computed] = collections.OrderedDict()
        self._jobs: dict[str, Job] = {}
        self._running: dict[str, Job] = {}
        self._closed = False
        self._workers = {name: _Worker(name, self._run) for name in self.models}

    # ------------------------------------------------------------------ descriptions
    def models_info(self) -> list[dict[str, Any]]:
        """``GET /api/models``: each model's facts, its output labels and the methods that can explain it."""
        out = []
        for name, model in self.models.items():
            supported, unsupported = [], {}
            for method in method_names():
                reason = get_method(method).unsupported(model)
                if reason:
                    unsupported[method] = reason
                else:
                    supported.append(method)
            labels = None
            if model.task != "causal-lm" and model.num_outputs <= 1000:
                labels = [model.label_name(i) or str(i) for i in range(model.num_outputs)]
            out.append(
                {
                    "name": name,
                    "task": model.task,
                    "architecture": type(model.model).__name__,
                    "layers": model.num_layers,
                    "heads": model.num_heads,
                    "max_length": model.max_length(),
                    "causal": model.causal,
                    "outputs": model.num_outputs,
                    "labels": labels,
                    "methods": supported,
                    "unsupported": unsupported,
                }
            )
        return out

    @staticmethod
    def methods_info() -> list[dict[str, Any]]:
        """``GET /api/methods``: the registry, with which methods ``explain`` runs by default."""
        defaults = set(default_methods())
        return [{**info.to_dict(), "default": info.name in defaults} for info in list_methods()]

    # ------------------------------------------------------------------ jobs
    def submit(self, request: ExplainRequest) -> Job:
        """Start (or join, or answer from the cache) the computation of ``request``."""
        key = request.key()
        with self._lock:
            running = self._running.get(key)
            if running is not None and not running.cancel_event.is_set():
                return running
            job = Job(id=uuid.uuid4().hex[:16], key=key, request=request)
            if self._closed:
                job.future.set_exception(JobCancelledError("the explorer is shutting down"))
                return job
            self._jobs[job.id] = job
            self._forget_old_jobs()
            computed = self._cache.get(key)
            if computed is not None:
                self._cache.move_to_end(key)
                job.stage, job.done, job.total, job.finished = "", 1, 1, time.monotonic()
                job.future.set_result(computed)
                return job
            self._running[key] = job
        self._workers[request.model].put(job)
        return job

    def job(self, job_id: str) -> Job | None:
        """A job by id (kept for the last few hundred jobs)."""
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop (it stops before its next method). False when there is no such job."""
        job = self.job(job_id)
        if job is None:
            return False
        job.cancel_event.set()
        return True

    def computed(self, key: str) -> Computed | None:
        """A finished result by its key, while it is in the cache."""
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
            return found

    def trim(self) -> None:
        """Evict the least recently used results until the cache fits (after serialised payloads were added)."""
        with self._lock:
            self._evict()

    def close(self) -> None:
        """Cancel every job — their requests are answered at once — and stop the workers after the method each is in
        (see :meth:`join`)."""
        with self._lock:
            self._closed = True
            jobs = [job for job in self._jobs.values() if not job.future.done()]
        for job in jobs:
            job.cancel_event.set()
            _settle(job, error=JobCancelledError("the explorer is shutting down"))
        for worker in self._workers.values():
            worker.stop()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the workers to stop; whether they all have. (A method that is running
        finishes first; the threads are daemons, so a process may also exit without waiting.)"""
        deadline = time.monotonic() + timeout
        for worker in self._workers.values():
            worker.join(max(0.0, deadline - time.monotonic()))
        return not any(worker.alive for worker in self._workers.values())

    def _forget_old_jobs(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.future.done()]
        for job_id in finished[: max(0, len(self._jobs) - 256)]:
            del self._jobs[job_id]

    def _evict(self) -> None:
        total = sum(c.nbytes() for c in self._cache.values())
        while len(self._cache) > 1 and total > self.cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            total -= dropped.nbytes()

    # ------------------------------------------------------------------ the work (worker threads)
    def _run(self, job: Job) -> None:
        try:
            if job.cancel_event.is_set():
                raise JobCancelledError(f"job {job.id} was cancelled")
            job.stage = ""
            computed = self._compute(job)
        except BaseException as exc:  # the future carries every failure to the web layer
            job.finished = time.monotonic()
            with self._lock:
                self._running.pop(job.key, None)
            if not isinstance(exc, (JobCancelledError, InvalidInputError)):
                logger.debug("explore job %s failed", job.id, exc_info=True)
            _settle(job, error=exc)
            return
        job.finished = time.monotonic()
        with self._lock:
            self._running.pop(job.key, None)
            self._cache[job.key] = computed
            self._evict()
        _settle(job, result=computed)

    def _compute(self, job: Job) -> Computed:
        request = job.request
        model = self.models[request.model]
        start = time.perf_counter()
        inputs, truncated = self._inputs(model, request)
        target = self._target(model, request.target)
        explanation = explain(
            model,
            inputs,
            methods=request.methods,
            target=target,
            options=request.options,
            progress=job.step,
        )
        if explanation.probabilities is not None:
            probabilities = explanation.probabilities.float()
        else:
            with torch.no_grad():
                probabilities = model.predict_proba(inputs).float()
        top = probabilities.double().argsort(descending=True)[:_TOP_OUTPUTS].tolist()
        outputs = [
            {"index": int(i), "label": model.label_name(int(i)), "probability": float(probabilities[i])} for i in top
        ]
        return Computed(
            request=request,
            explanation=explanation,
            probabilities=probabilities,
            truncated=truncated,
            target=target,
            seconds=time.perf_counter() - start,
            outputs=outputs,
        )

    @staticmethod
    def _inputs(model: Model, request: ExplainRequest) -> tuple[Encoding | dict[str, torch.Tensor], bool]:
        """The encoding to explain: the text (refused over the model's maximum unless truncation is asked for), with
        the ``blank`` positions replaced by the tokenizer's UNK token."""
        limit = model.max_length()
        length = len(model.tokenize(request.text, request.text_pair, max_length=None).input_ids)
        if limit is not None and length > limit and not request.truncation:
            raise InvalidInputError(
                f"the input is {length} tokens; model {request.model!r} takes at most {limit}. Shorten it, or send "
                '"truncation": true to cut it to the first tokens'
            )
        truncated = limit is not None and length > limit
        if not request.blank:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the truncation is reported in the response
                return model.encode(request.text, request.text_pair, truncation=True), truncated
        tokenized = model.tokenize(request.text, request.text_pair)
        ids = list(tokenized.input_ids)
        blank = replacement_id(model, "unk")
        for position in request.blank:
            if not 0 <= position < len(ids):
                raise InvalidInputError(f"blank: position {position} is out of range; the input has {len(ids)} tokens")
            if tokenized.segments[position] == SPECIAL_SEGMENT:
                raise InvalidInputError(f"blank: position {position} is a special token; blank out words only")
            ids[position] = blank
        features = {**tokenized.features(), "input_ids": ids}
        return {key: torch.tensor([value], dtype=torch.long) for key, value in features.items()}, truncated

    @staticmethod
    def _target(model: Model, target: int | str | None) -> int | None:
        """The target as ``explain`` takes it: an int (checked there) or None. A string is a class label, or for
        causal LMs one next token, tokenised here (``explain`` takes ids)."""
        if target is None or isinstance(target, int):
            return target
        if model.task != "causal-lm":
            labels = {model.label_name(i): i for i in range(model.num_outputs)}
            if target in labels:
                return labels[target]
            names = ", ".join(f"{label} ({i})" for label, i in labels.items() if label is not None)
            raise InvalidInputError(f"target {target!r} is not a class of this model; its classes: {names}")
        tokenized = model.tokenize(target, max_length=None)
        ids = [
            i for i, segment in zip(tokenized.input_ids, tokenized.segments, strict=True) if segment != SPECIAL_SEGMENT
        ]
        if len(ids) != 1:
            pieces = ", ".join(repr(model.label_name(i)) for i in ids)
            raise InvalidInputError(
                f"target {target!r} is {len(ids)} tokens ({pieces}); give one next token (text or vocabulary id)"
            )
        return ids[0]
