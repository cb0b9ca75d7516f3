"""Timing helpers shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_runs(fn: Callable[[], object], warmup: int, runs: int, cuda: bool = False) -> Dict[str, float]:
    """Median/min/max wall time of ``fn`` in ms over ``runs`` calls after ``warmup`` calls;
    with ``cuda`` each call is followed by a device synchronisation."""
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
            "max_ms": 1000 * max(times), "runs": runs}


def emit_report(report: Dict, out: Optional[str]) -> None:
    """Print the JSON report and, with ``out``, also write it there."""
    text = json.dumps(report, indent=1)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
