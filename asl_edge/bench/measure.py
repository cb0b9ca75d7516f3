"""Timing statistics, peak memory and the machine description every benchmark record carries."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

# CPU flags that decide low-precision speed (shown when present)
# The runs policy: a case gets its asked-for runs unless they would take longer than this; then
# as many as fit, never fewer than MIN_RUNS (the count taken is in every record)
CASE_BUDGET_S = 10.0
MIN_RUNS = 3
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8")


def percentiles(times_s: Sequence[float]) -> Dict[str, float]:
    """p50/p90/p99, mean, min and max in milliseconds (percentiles linearly interpolated
    between the nearest ranks, as ``numpy.percentile`` does) and the number of runs."""
    if not times_s:
        raise ValueError("no timings")
    ms = np.asarray(times_s, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "max_ms": float(ms.max()), "runs": int(len(ms))}


def reset_peak_rss() -> None:
    """Restart the process's peak-RSS counter (Linux: ``/proc/self/clear_refs``), if it can."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> Optional[float]:
    """Peak resident memory since the last :func:`reset_peak_rss` (Linux ``VmHWM``), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def measure(fn: Callable[[], object], runs: int, warmup: int = 2, device: str = "cpu",
            budget_s: float = CASE_BUDGET_S) -> Dict:
    """Time up to ``runs`` calls of ``fn`` after ``warmup`` calls (each followed by a CUDA
    synchronisation on a CUDA ``device``): :func:`percentiles` plus peak memory of the timed
    calls (CPU RSS; on CUDA also the maximum allocated). Where ``runs`` calls would take more
    than ``budget_s`` (judged by the first), only as many as fit are timed, at least
    ``MIN_RUNS``; ``runs`` in the result is the count taken, ``runs_asked`` the one asked."""
    cuda = str(device).startswith("cuda")
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    times: List[float] = []
    planned = runs
    while len(times) < planned:
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if len(times) == 1:
            planned = min(runs, max(MIN_RUNS, int(budget_s / max(times[0], 1e-9))))
    result = percentiles(times)
    result["runs_asked"] = runs
    result["peak_rss_mb"] = peak_rss_mb()
    result["gpu_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None
    return result


def _version(package: str) -> Optional[str]:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> Dict:
    """CPU model, cores, the low-precision flags, GPU, and the versions that matter."""
    cpu, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_flags": [f for f in CPU_FLAGS if f in flags], "gpu": gpu,
            "cuda": torch.version.cuda if gpu else None, "python": platform.python_version(),
            "platform": platform.platform(), "torch": torch.__version__, "onnxruntime": _version("onnxruntime"),
            "openvino": _version("openvino"), "asl_edge": _version("asl-edge"),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
