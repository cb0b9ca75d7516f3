"""Native asl_edge ops against their pure-PyTorch references, in one process.

    python benchmarks/bench_ops.py [--device cpu|cuda|all] [--runs N] [--out FILE]

Cases (DESIGN §4 targets):
- ``nms1d``, per-class Gaussian soft-NMS, 20 classes x 2,000 random candidates -> top 200 (CPU);
- ``nms1d`` on the THUMOS setting: candidates decoded from random network outputs at T=2304
  (4,536 points x 20 classes, top 2,000 per level), soft-NMS -> 200 kept;
- ``tca_attention`` at B1, T2304, D512, 4 heads, window 19, theta 0.2 (FP32 on CPU; FP32 and
  FP16 on CUDA).
Each case reports the median time of both implementations, their ratio and whether the
outputs agree. Needs the native library (``asl-edge build-ext [--cuda]``).
"""

from __future__ import annotations

import argparse
from typing import Dict, List

import torch
from timing import cpu_name, emit_report, time_runs

from asl_edge.ops import native_state, nms1d_reference, tca_attention_reference
from asl_edge.postprocess import decode_segments


def random_candidates(num_classes: int, per_class: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    n = num_classes * per_class
    start = torch.rand(n, generator=gen) * 2000
    segs = torch.stack([start, start + 1 + torch.rand(n, generator=gen) * 50], dim=1)
    scores = torch.rand(n, generator=gen)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return segs, scores, labels


def thumos_candidates(seed: int = 0):
    """Candidates of one THUMOS-size video (T=2304, 20 classes) decoded from random outputs."""
    gen = torch.Generator().manual_seed(seed)
    lengths = [2304 // 2 ** level for level in range(6)]
    num_points = sum(lengths)
    logits = torch.randn(num_points, 20, generator=gen) * 2 - 3
    offsets = torch.rand(num_points, 2, generator=gen) * 4
    mask = torch.ones(2304, dtype=torch.bool)
    return decode_segments(logits, offsets, mask, [2 ** level for level in range(6)], lengths, 0.001, 2000, 0.05)


def nms_case(name: str, segs, scores, labels, device: str, runs: int, reference_runs: int) -> Dict:
    segs, scores, labels = segs.to(device), scores.to(device), labels.to(device)
    args = ("soft", 0.1, 0.5, 0.001, 200, True, 0.0, int(labels.max()) + 1)
    cuda = device == "cuda"
    native = time_runs(lambda: torch.ops.asl_edge.nms1d(segs, scores, labels, *args), 3, runs, cuda)
    reference = time_runs(lambda: nms1d_reference(segs, scores, labels, *args), 1, reference_runs, cuda)
    got = torch.ops.asl_edge.nms1d(segs, scores, labels, *args)
    want = nms1d_reference(segs, scores, labels, *args)
    count = int(got[3][0])
    return {
        "case": name, "device": device, "candidates": int(segs.shape[0]), "kept": count,
        "native": native, "reference": reference,
        "speedup": reference["median_ms"] / native["median_ms"],
        "same_count": count == int(want[3][0]),
        "same_labels": bool(torch.equal(got[2].cpu(), want[2].cpu())),
        "max_score_diff": float((got[1] - want[1]).abs().max()),
        "max_segment_diff": float((got[0] - want[0]).abs().max()),
    }


def tca_case(device: str, dtype: torch.dtype, runs: int) -> Dict:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 512, 2304, generator=gen).to(device, dtype) for _ in range(3))
    mask = torch.ones(1, 2304, dtype=torch.bool, device=device)
    mask[:, 2000:] = False
    args = (4, 19, 0.2, "time")
    cuda = device == "cuda"
    with torch.inference_mode():
        native = time_runs(lambda: torch.ops.asl_edge.tca_attention(q, k, v, mask, *args), 3, runs, cuda)
        reference = time_runs(lambda: tca_attention_reference(q, k, v, mask, *args), 3, runs, cuda)
        got = torch.ops.asl_edge.tca_attention(q, k, v, mask, *args).float()
        want = tca_attention_reference(q.float(), k.float(), v.float(), mask, *args)
    return {
        "case": "tca_attention B1 T2304 D512 H4 w19 theta0.2", "device": device, "dtype": str(dtype).split(".")[-1],
        "native": native, "reference": reference, "speedup": reference["median_ms"] / native["median_ms"],
        "max_abs_diff_vs_fp32_reference": float((got - want).abs().max()),
        "max_rel_diff_vs_fp32_reference": float(((got - want).abs() / (want.abs() + 1e-3)).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="all: the CPU, and CUDA when available")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--reference-runs", type=int, default=3, help="runs of the (slow) NMS reference")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    state = native_state()
    if not state.loaded:
        raise SystemExit(f"bench_ops: the native ops are not available: {state.reason}")
    devices: List[str] = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not (torch.cuda.is_available() and state.devices.get("cuda")):
        if args.device == "cuda":
            raise SystemExit("bench_ops: no CUDA device or no CUDA kernels (asl-edge build-ext --cuda)")
        devices.remove("cuda")
    cases = []
    for device in devices:
        cases.append(nms_case("nms1d soft per-class 20 x 2000 -> 200", *random_candidates(20, 2000), device,
                              args.runs, args.reference_runs))
        cases.append(nms_case("nms1d soft THUMOS T2304 20 classes -> 200", *thumos_candidates(), device,
                              args.runs, args.reference_runs))
        for dtype in ([torch.float32] if device == "cpu" else [torch.float32, torch.float16]):
            cases.append(tca_case(device, dtype, args.runs))
    report = {
        "benchmark": "ops", "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if "cuda" in devices else None, "cases": cases,
    }
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
