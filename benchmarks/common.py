"""Measuring helpers shared by the benchmarks: wall time per call and peak memory.

Peak memory:
- on CUDA, ``torch.cuda.max_memory_allocated`` after a reset;
- on CPU, the rise of the process's peak resident set (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs``) over the resident set just before the measured calls. Large
  tensors are freed back to the OS only if glibc serves them with mmap, so the benchmarks run
  with ``MALLOC_MMAP_THRESHOLD_`` set low (``run_isolated`` does this) and each measured
  configuration runs in a fresh process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

import torch


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def reset_peak_memory() -> int:
    """Reset the peak counter; returns the current usage in bytes (the baseline)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    return _proc_status_kib("VmRSS") * 1024


def peak_memory_since(baseline: int) -> int:
    """Peak bytes above ``baseline`` since the last ``reset_peak_memory``."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - baseline
    return _proc_status_kib("VmHWM") * 1024 - baseline


def time_calls(fn: Callable[[], object], iters: int, warmup: int) -> List[float]:
    """Seconds of each of ``iters`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return out


def measure(fn: Callable[[], object], iters: int, warmup: int) -> Dict[str, float]:
    """Median seconds per call and peak memory (bytes above the pre-call usage).

    Memory is measured over the warm-up calls too, so first-call allocations (optimizer state,
    autograd buffers) count.
    """
    baseline = reset_peak_memory()
    times = time_calls(fn, iters, warmup)
    return {
        "median_s": statistics.median(times),
        "mean_s": statistics.fmean(times),
        "peak_bytes": peak_memory_since(baseline),
        "iters": iters,
    }


def run_isolated(argv: List[str]) -> dict:
    """Run ``python argv...`` in a fresh process that prints one JSON line last; return it."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable] + argv, env=env, check=True, stdout=subprocess.PIPE, text=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio_line(name: str, value: float, baseline: float, target: float = None) -> str:
    r = value / baseline if baseline else float("nan")
    verdict = (
        ""
        if target is None
        else ("  (target <= %.2f: %s)" % (target, "met" if r <= target else "MISSED"))
    )
    return f"{name}: {r:.3f}x{verdict}"
