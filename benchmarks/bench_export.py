"""Every export format of the THUMOS-size network, end to end: file size, export time, parity
with eager PyTorch, and CPU latency through the runtime backend, eager as the baseline.

    python benchmarks/bench_export.py [--formats torchscript,exported,aoti,onnx,onnx-trt]
                                      [--runs 10] [--out FILE] [--work DIR]

The network has random weights (the figures do not depend on training). Latency is the median
of ``--runs`` ``Backend.run`` calls at B1, T2304 after 2 warm-up runs, all in one process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from timing import cpu_name, emit_report, time_runs

from asl_edge.config import load_config
from asl_edge.export.exporter import export_checkpoint
from asl_edge.export.spec import ExportError, ExportSpec
from asl_edge.model import build_model, save_checkpoint
from asl_edge.runtime import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default="torchscript,exported,aoti,onnx,onnx-trt")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--work", default="out/bench_export", help="folder for the checkpoint and artifacts")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = load_config("thumos_i3d")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "thumos_random.pt"
    save_checkpoint(build_model(config).eval(), config, ckpt)
    features = torch.randn(1, 2048, 2304)
    mask = torch.ones(1, 2304, dtype=torch.bool)
    eager = load(ckpt)
    baseline = time_runs(lambda: eager.run(features, mask), 2, args.runs)
    rows = [{"format": "eager (checkpoint)", "size_mb": ckpt.stat().st_size / 1e6, "latency": baseline,
             "ratio_vs_eager": 1.0}]
    for fmt in args.formats.split(","):
        try:
            summary = export_checkpoint(ckpt, ExportSpec(format=fmt, window=2304), work / fmt)
        except ExportError as err:
            rows.append({"format": fmt, "error": str(err)})
            continue
        backend = load(work / fmt)
        latency = time_runs(lambda: backend.run(features, mask), 2, args.runs)
        parity = summary["parity"]
        rows.append({
            "format": fmt, "size_mb": summary["size_bytes"] / 1e6, "export_seconds": summary["export_seconds"],
            "parity_passed": parity["passed"],
            "max_abs_diff": {k: v["max_abs_diff"] for k, v in parity.get("outputs", {}).items()},
            "detections_matched": parity["detections"]["matched_fraction"],
            "max_score_diff": parity["detections"]["max_score_diff_matched"],
            "latency": latency, "ratio_vs_eager": baseline["median_ms"] / latency["median_ms"],
        })
    emit_report({"benchmark": "export", "cpu": cpu_name(), "threads": torch.get_num_threads(),
                 "torch": torch.__version__, "batch": 1, "length": 2304, "formats": rows}, args.out)


if __name__ == "__main__":
    main()
