"""``asl-edge bench``: the stages of :mod:`asl_edge.bench.stages`, written by :mod:`.report`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, List

STAGES = ("network", "window", "postprocess", "features", "stream")
# export formats measured on the network, with their precisions (a format that cannot be
# exported or run here becomes a row with its reason)
CPU_FORMATS = [("torchscript", "fp32"), ("exported", "fp32"), ("aoti", "fp32"), ("onnx", "fp32"), ("openvino", "bf16"),
               ("openvino", "int8")]
CUDA_FORMATS = [("torchscript", "fp32"), ("torchscript", "fp16"), ("aoti", "fp16"), ("onnx", "fp32"),
                ("engine", "fp16")]
QUICK_FORMATS = [("torchscript", "fp32")]
# clip extractors (name, format, precision): "eager" is the extractor itself, others its exports;
# i3d-rgb PyTorch eager fp32 is the baseline; the losers stay, measured
CPU_EXTRACTORS = [("motion", "eager", "fp32"), ("i3d-rgb", "eager", "fp32"), ("i3d-rgb", "eager", "bf16"),
                  ("i3d-rgb", "onnx", "fp32"), ("i3d-rgb", "onnx", "int8"), ("i3d-rgb", "openvino", "fp32"),
                  ("i3d-rgb", "openvino", "bf16"), ("i3d-rgb", "openvino", "int8")]
CUDA_EXTRACTORS = [("motion", "eager", "fp32"), ("i3d-rgb", "eager", "fp32"), ("i3d-rgb", "eager", "fp16"),
                   ("i3d-rgb", "torchscript", "fp16")]
QUICK_EXTRACTORS = [("motion", "eager", "fp32")]


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="latency and throughput of every stage against the eager fp32 baseline "
                                     "(JSON, Markdown, plots)")
    p.add_argument("--out", default="out/bench", help="folder for bench.json, bench.md and the plots")
    p.add_argument("--quick", action="store_true",
                   help="the smoke run (under 2 minutes on 2 cores): T 576, batch 1 and 2, TorchScript as the export")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--runs", type=int, default=20,
                   help="timed runs per case after warm-up (default 20); a case where they would take more than "
                        "10 s gets as many as fit, at least 3 (the count is in the report)")
    p.add_argument("--formats", default=None,
                   help="FORMAT:PRECISION comma list of exports to time (default: every one for the device)")
    p.add_argument("--extractors", default=None,
                   help="NAME:FORMAT:PRECISION comma list of clip extractors for the features stage, FORMAT eager "
                        "(the extractor itself), torchscript, onnx or openvino (default: every one for the device, "
                        "e.g. i3d-rgb:openvino:int8)")
    p.set_defaults(func=run)


def _formats(args) -> List:
    if args.formats:
        return [tuple(item.split(":", 1)) if ":" in item else (item, "fp32") for item in args.formats.split(",")]
    if args.quick:
        return QUICK_FORMATS
    return CUDA_FORMATS if args.device.startswith("cuda") else CPU_FORMATS


def _extractors(args) -> List:
    if args.extractors:
        cases = [tuple(item.split(":")) for item in args.extractors.split(",") if item]
        bad = [":".join(case) for case in cases if len(case) != 3]
        if bad:
            from ..stream import StreamError

            raise StreamError(f"--extractors takes NAME:FORMAT:PRECISION items, got {', '.join(bad)}")
        return cases
    if args.quick:
        return QUICK_EXTRACTORS
    return CUDA_EXTRACTORS if args.device.startswith("cuda") else CPU_EXTRACTORS


def run(args) -> int:
    from ..stream import StreamError
    from . import stages as stage_functions
    from .measure import machine
    from .report import SCHEMA, add_ratios, write

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise StreamError(f"--stages: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(STAGES)}")
    if args.runs < 1:
        raise StreamError(f"--runs must be at least 1, got {args.runs}")
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    plan = stage_functions.Plan(windows=(576,) if args.quick else (576, 2304), batches=(1, 2) if args.quick else (1, 8),
                formats=_formats(args), runs=args.runs, warmup=1, device=args.device, work=work,
                extractors=_extractors(args), extractor_batches=(1, 2) if args.quick else (1, 8),
                stream_seconds=20.0 if args.quick else 60.0)
    started = time.perf_counter()
    rows: List[Dict] = []
    for name in stages:                              # the report is rewritten after each stage
        rows += getattr(stage_functions, name)(plan)
        report = {"schema": SCHEMA, "quick": bool(args.quick), "machine": machine(),
                  "baseline": {"case": stage_functions.BASELINE, "precision": "fp32",
                               "postprocess": "pure PyTorch, CPU"},
                  "wall_s": time.perf_counter() - started, "results": add_ratios(rows, stage_functions.BASELINE,
                                                                          stage_functions.FEATURES_BASELINE)}
        written = write(report, out)
    print(f"bench: {len(rows)} results in {report['wall_s']:.0f} s: " + ", ".join(str(p) for p in written),
          file=sys.stderr)
    return 0
