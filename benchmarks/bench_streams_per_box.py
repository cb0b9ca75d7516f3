"""How many live ``motion`` demo streams one box holds in real time with 0 dropped frames.

    python benchmarks/bench_streams_per_box.py [--seconds 30] [--max-streams 32] [--out FILE]

Each trial runs ``asl-edge stream --sources cams.yaml`` (a fresh process, as a box runs it) on N
cameras ``test://demo?seed=i&seconds=S`` — live sources paced at their frame rate, which drop (and
count) frames when the runtime falls behind — with the bundled model (``asl_edge/assets/demo_model.pt``)
and its ``motion`` extractor. A trial holds when the run exits 0: no dropped frame, no failed stream,
every event delivered. N doubles from 1 until a trial fails, then a bisection finds the largest N
that holds. Reported per trial: drops, how far the runtime widened the hop between network calls
(it does so before frames drop), network p50/p95, final-event decision latency (wall) and the CPU
the box used (cores). The figure depends on what else the machine runs: take it on a quiet box.
Each run gets ``OMP_WAIT_POLICY=passive`` unless it is set, as the README's systemd unit sets it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import yaml
from timing import cpu_name, emit_report

from asl_edge.compute import usable_cpus

MODEL = Path(__file__).resolve().parent.parent / "asl_edge" / "assets" / "demo_model.pt"


def trial(streams: int, seconds: float, folder: Path) -> Dict:
    """One ``asl-edge stream`` run of ``streams`` demo cameras; what it lost and what it cost."""
    cameras = [{"name": f"cam-{i:03d}", "uri": f"test://demo?seed={i}&seconds={seconds:g}"} for i in range(streams)]
    listing = folder / f"cams_{streams}.yaml"
    listing.write_text(yaml.safe_dump({"cameras": cameras}))
    summary_path = folder / f"summary_{streams}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "asl_edge", "stream", "--model", str(MODEL), "--sources",
                           str(listing), "--out", str(folder / f"events_{streams}.jsonl"), "--summary",
                           str(summary_path)], capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "passive")})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not summary_path.is_file():
        raise SystemExit(f"asl-edge stream with {streams} cameras wrote no summary ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    summary = json.loads(summary_path.read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"streams": streams, "holds": done.returncode == 0, "exit_code": done.returncode,
            "load_average": os.getloadavg()[0],
            "dropped_frames": summary["dropped_frames"],
            "failed_streams": sum(1 for s in summary["streams"] if s["error"]),
            "hop": summary["hops"], "network_ms": summary["stages"]["network"],
            "decision_latency_wall_s": summary["decision_latency_wall"],
            "cores_used": cpu / wall, "wall_s": wall,
            "lost": [line for line in done.stderr.splitlines() if "lost:" in line][:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each demo camera's scene")
    parser.add_argument("--max-streams", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_streams_per_box_"))
    trials: Dict[int, Dict] = {}

    def holds(streams: int) -> bool:
        trials[streams] = trial(streams, args.seconds, folder)
        result = trials[streams]
        print(f"{streams} streams: {'holds' if result['holds'] else 'does not hold'} ({result['dropped_frames']} "
              f"dropped, hop p50 {result['hop']['p50']}, {result['cores_used']:.2f} cores)", file=sys.stderr)
        return result["holds"]

    good, bad = 0, None
    streams = 1
    while streams <= args.max_streams:
        if not holds(streams):
            bad = streams
            break
        good, streams = streams, streams * 2
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if holds(middle) else (good, middle)
    emit_report({"cpu": cpu_name(), "usable_cpus": usable_cpus(), "model": str(MODEL), "extractor": "motion",
                 "seconds": args.seconds, "streams_held": good,
                 "first_failing": bad, "trials": [trials[n] for n in sorted(trials)]}, args.out)


if __name__ == "__main__":
    main()
