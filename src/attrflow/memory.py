"""How much memory there is, and how much a computation took: the numbers behind ``settings["peak_memory"]``.

:func:`available_memory` is what a computation may still use on a device (CUDA: free device memory; CPU: the
kernel's ``MemAvailable``). :class:`PeakMemory` measures the peak of one block: on CUDA the allocator's
max-allocated bytes above the start (``torch.cuda.max_memory_allocated``, reset on entry); elsewhere the growth of
the process's resident set (RSS) high-water mark above the RSS at entry, reading Linux's ``VmHWM`` after resetting
it (``/proc/self/clear_refs``), or ``getrusage`` where that is not possible (then a block that stays below an
earlier peak of the process reads 0). :attr:`PeakMemory.source` says which.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from types import TracebackType

import torch

__all__ = ["PeakMemory", "available_memory", "format_bytes"]

_PROC = Path("/proc/self")


def format_bytes(count: float) -> str:
    """``1.5 GB``-style text (powers of 1024)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes a computation may still allocate on ``device`` (None when unknown).

    CUDA: the device's free memory plus what torch's allocator holds in reserve unused. CPU (and MPS, whose
    memory is the system's): ``MemAvailable`` from ``/proc/meminfo`` on Linux, None elsewhere.
    """
    where = torch.device(device)
    if where.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(where)
        cached = torch.cuda.memory_reserved(where) - torch.cuda.memory_allocated(where)
        return int(free + cached)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _status_kb(field: str) -> int | None:
    try:
        for line in (_PROC / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _max_rss_kb() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak // 1024 if sys.platform == "darwin" else peak)  # macOS reports bytes, Linux kilobytes


class PeakMemory:
    """Context manager: the peak memory a block took above its start, in bytes (:attr:`peak`).

    ``with PeakMemory(device) as measured: ...`` then ``measured.peak`` and ``measured.source`` (``"cuda
    max-allocated"``, ``"rss high-water (VmHWM)"`` or ``"rss high-water (getrusage)"``). Nested blocks are fine
    on CUDA and with getrusage; with VmHWM an inner block resets the mark the outer one reads (the outer then
    reports at least the inner peak's growth after the reset, never more than the truth).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.peak = 0
        self.source = ""
        self._start = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.source = "cuda max-allocated"
            return self
        rss = _status_kb("VmRSS")
        if rss is not None and _reset_high_water():
            self._start = rss * 1024
            self.source = "rss high-water (VmHWM)"
        else:
            self._start = _max_rss_kb() * 1024
            self.source = "rss high-water (getrusage)"
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.source == "cuda max-allocated":
            torch.cuda.synchronize(self.device)
            end = torch.cuda.max_memory_allocated(self.device)
        elif self.source == "rss high-water (VmHWM)":
            end = (_status_kb("VmHWM") or 0) * 1024
        else:
            end = _max_rss_kb() * 1024
        self.peak = max(0, end - self._start)


def _reset_high_water() -> bool:
    """Reset the process's RSS high-water mark (Linux: write 5 to ``/proc/self/clear_refs``)."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError):
        # a kernel control file, not data: the atomic writers of attrflow.storage do not apply
        (_PROC / "clear_refs").write_text("5")
        return True
    return False
