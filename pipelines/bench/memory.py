"""Peak-memory probes (CPU: peak RSS over the process's idle baseline; GPU: the torch allocator's peak plus the
process's device memory through NVML), OOM recognition, and the max-batch searches."""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch


class InjectedOOM(torch.OutOfMemoryError):
    """A fake out-of-memory error raised on purpose (testing hook), handled exactly like a real one."""


def is_oom(err: BaseException) -> bool:
    """True for torch's CUDA OOM, a CPU allocator failure, and the injected OOM."""
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far. Linux: VmHWM of /proc/self/status, because ru_maxrss survives
    exec: a worker started by a large parent would report the parent's peak. Elsewhere ru_maxrss (bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class CpuProbe:
    """Peak RSS of a fresh process minus its RSS right after the imports (the idle baseline)."""

    def __init__(self) -> None:
        self.baseline = psutil.Process(os.getpid()).memory_info().rss

    def reset(self) -> None:  # the peak of a process cannot be reset: one measurement per subprocess
        pass

    def peak(self) -> dict[str, int]:
        return {"peak_bytes": peak_rss_bytes() - self.baseline, "baseline_rss_bytes": self.baseline}


class CudaProbe:
    """torch.cuda.max_memory_allocated since `reset`, plus NVML's count of this process's device memory (which
    includes the CUDA context, the caching allocator's reserve and onnxruntime's arena)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline = torch.cuda.memory_allocated(device)

    def reset(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> dict[str, int]:
        torch.cuda.synchronize(self.device)
        return {"peak_bytes": torch.cuda.max_memory_allocated(self.device),
                "reserved_bytes": torch.cuda.max_memory_reserved(self.device),
                "nvml_process_bytes": nvml_process_bytes(self.device)}


def nvml_process_bytes(device: torch.device) -> int:
    """Device memory NVML attributes to this process (-1 when NVML or the per-process count is unavailable)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            index = device.index if device.index is not None else torch.cuda.current_device()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                    return int(proc.usedGpuMemory)
            return -1  # inside containers NVML often reports host pids only
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return -1


@dataclass(frozen=True)
class SearchResult:
    """Largest batch that fit, and the first one that did not (None when the cap was reached)."""

    max_batch: int
    failed_batch: int | None
    failure: str | None  # "OOM: ..." or "over budget: ..."
    tried: tuple[tuple[int, str], ...]

    def to_dict(self) -> dict:
        return {"max_batch": self.max_batch, "failed_batch": self.failed_batch, "failure": self.failure,
                "tried": [list(t) for t in self.tried], "method": "search"}


def search_max_batch(try_batch: Callable[[int], str | None], start: int, cap: int) -> SearchResult:
    """Double from `start` until `try_batch` fails or `cap` is passed, then bisect between the last fit and the
    first failure. `try_batch(b)` returns None when batch b fits, else the reason ("OOM: ...")."""
    tried: list[tuple[int, str]] = []

    def attempt(b: int) -> str | None:
        reason = try_batch(b)
        tried.append((b, reason or "ok"))
        return reason

    good, bad, reason = 0, None, None
    b = max(1, min(start, cap))
    while b <= cap:
        why = attempt(b)
        if why is not None:
            bad, reason = b, why
            break
        good = b
        if b == cap:
            break
        b = min(2 * b, cap)
    if bad is not None:
        while bad - good > 1 and bad - good > max(1, good // 16):  # within ~6% is precise enough
            mid = (good + bad) // 2
            why = attempt(mid)
            if why is None:
                good = mid
            else:
                bad, reason = mid, why
    return SearchResult(good, bad, reason, tuple(tried))


def fit_max_batch(points: list[tuple[int, int]], budget: int, cap: int) -> dict:
    """Largest batch under `budget` from a linear fit peak = fixed + per_item * batch through measured
    (batch, peak bytes) points (the CPU estimate: running the real batch would take too long)."""
    (b1, m1), (b2, m2) = sorted(points)[:1] + sorted(points)[-1:]
    per_item = (m2 - m1) / (b2 - b1) if b2 != b1 else m2 / max(b2, 1)
    per_item = max(per_item, 1.0)
    fixed = m2 - per_item * b2
    estimate = int((budget - fixed) // per_item)
    return {"max_batch": max(0, min(estimate, cap)), "capped": estimate > cap, "method": "linear fit",
            "fixed_bytes": int(fixed), "per_item_bytes": int(per_item), "points": [list(p) for p in points]}
