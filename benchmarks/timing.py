"""Timing helpers shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Optional

from asl_edge.bench.measure import machine, measure


def cpu_name() -> str:
    """The CPU model (``asl_edge.bench.measure.machine``)."""
    return machine()["cpu"]


def time_runs(fn: Callable[[], object], warmup: int, runs: int, cuda: bool = False) -> Dict[str, float]:
    """Median/min/max wall time of ``fn`` in ms over ``runs`` calls after ``warmup`` calls;
    with ``cuda`` each call is followed by a device synchronisation (``asl_edge.bench.measure``)."""
    stats = measure(fn, runs, warmup, "cuda" if cuda else "cpu")
    return {"median_ms": stats["p50_ms"], "min_ms": stats["min_ms"], "max_ms": stats["max_ms"], "runs": runs}


def emit_report(report: Dict, out: Optional[str]) -> None:
    """Print the JSON report and, with ``out``, also write it there."""
    text = json.dumps(report, indent=1)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
