"""How ``Backend.run`` should split a large CPU batch: the THUMOS-size network (random weights,
eager with the native ops) at one batch and window, with ``Backend.CPU_FRAMES_PER_CALL`` set to
each budget in turn (``0`` = the whole batch in one call), the budgets alternated call by call so
that all of them see the same load on the machine.

    python benchmarks/bench_batch_calls.py [--batch 8] [--window 2304] [--budgets 0,2304,4608,9216]
                                           [--runs 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from timing import cpu_name, emit_report

from asl_edge.bench.stages import thumos_checkpoint
from asl_edge.runtime import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=int, default=2304, help="a multiple of 576 up to 2304")
    parser.add_argument("--budgets", default="0,2304,4608,9216",
                        help="comma list of CPU_FRAMES_PER_CALL values; 0: the whole batch in one call")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per budget, after one warm-up each")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    with tempfile.TemporaryDirectory() as work:
        ckpt, config = thumos_checkpoint(Path(work))
        backend = load(ckpt)
    features = torch.randn(args.batch, config.dataset.input_dim, args.window)
    mask = torch.ones(args.batch, args.window, dtype=torch.bool)
    times = {budget: [] for budget in budgets}
    with torch.inference_mode():
        for call in range(args.runs + 1):
            for budget in budgets:
                backend.CPU_FRAMES_PER_CALL = budget or sys.maxsize
                start = time.perf_counter()
                backend.run(features, mask)
                if call:
                    times[budget].append(1000 * (time.perf_counter() - start))
    rows = []
    for budget in budgets:
        backend.CPU_FRAMES_PER_CALL = budget or sys.maxsize
        median = statistics.median(times[budget])
        rows.append({"frames_per_call": budget or None,
                     "rows_per_call": min(args.batch, backend.rows_per_call(args.window)), "median_ms": median,
                     "min_ms": min(times[budget]),
                     "us_per_frame": 1000 * median / (args.batch * args.window)})
        print(f"budget {budget or 'one call'}: {rows[-1]['rows_per_call']} rows a call, {median:.0f} ms",
              file=sys.stderr)
    emit_report({"benchmark": "batch_calls", "cpu": cpu_name(), "threads": torch.get_num_threads(),
                 "torch": torch.__version__, "batch": args.batch, "window": args.window, "runs": args.runs,
                 "results": rows}, args.out)


if __name__ == "__main__":
    main()
