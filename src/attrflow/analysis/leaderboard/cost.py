"""What a method costs on one input, measured honestly: the method alone on a fresh
:class:`~attrflow.methods.context.ExplainContext`, so it pays for every piece of shared work it needs (the recorded
forward pass, the gradients, the blank-out variants) and for nothing another method needs.

Time: wall-clock seconds (``time.perf_counter``) and CPU seconds of this process (``time.process_time``, every
thread), from the fresh context to the scores. Memory: the peak *extra* memory during the computation — on CUDA the
peak of ``torch.cuda.max_memory_allocated`` above what was allocated before; on the CPU the peak resident set size
above the size before (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``, after returning freed heap pages to
the system with ``malloc_trim``). Memory the process already holds and reuses is not counted, so the CPU figure is
a lower bound of the method's working memory; NaN where the platform offers neither.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = ["Cost", "measure"]

_T = TypeVar("_T")
_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Cost:
    """Seconds (wall, CPU) and peak extra memory (MB) of one measured call."""

    seconds: float
    cpu_seconds: float
    memory_mb: float


def _kilobytes(field: str) -> float:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return math.nan
    return float(match.group(1)) if match else math.nan


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")  # runs ldconfig: once per process
    try:
        return None if name is None else ctypes.CDLL(name)
    except OSError:
        return None


def _trim() -> None:
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _reset_peak() -> bool:
    try:
        _CLEAR.write_text("5")
    except OSError:
        return False
    return True


def measure(function: Callable[[], _T], *, device: torch.device | None = None) -> tuple[_T, Cost]:
    """Run ``function()`` once and measure it (see the module docstring for what is counted)."""
    gc.collect(0)  # the young generation only: a full collection costs ~1 s in a process holding transformers
    cuda = device is not None and device.type == "cuda" and torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = float(torch.cuda.memory_allocated(device))
    else:
        _trim()
        before = _kilobytes("VmRSS") if _reset_peak() else math.nan
    start, cpu = time.perf_counter(), time.process_time()
    value = function()
    if cuda:
        torch.cuda.synchronize(device)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    if cuda:
        extra = (float(torch.cuda.max_memory_allocated(device)) - before) / 2**20
    else:
        extra = (_kilobytes("VmHWM") - before) / 1024.0
    return value, Cost(seconds, cpu_seconds, max(extra, 0.0) if math.isfinite(extra) else math.nan)
