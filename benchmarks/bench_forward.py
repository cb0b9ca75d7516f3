"""CPU forward latency of the ASL network: eager vs TorchScript, fp32.

Eager mode uses the native attention op when it is built (``ASL_EDGE_OPS``); TorchScript
always runs the pure-PyTorch attention.

    python benchmarks/bench_forward.py [--config thumos_i3d] [--length 2304] [--runs 10] [--out FILE]

Prints and writes JSON with the median (and min/max) over ``--runs`` timed runs after
``--warmup`` untimed ones, for both backends in the same process, and their ratio.
"""

from __future__ import annotations

import argparse

import torch
from timing import cpu_name, emit_report, time_runs

from asl_edge.config import load_config
from asl_edge.model import build_model
from asl_edge.ops import use_native


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="thumos_i3d")
    parser.add_argument("--length", type=int, default=2304)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = load_config(args.config)
    model = build_model(config).eval()
    input_dim = config.dataset.input_dim if isinstance(config.dataset.input_dim, int) else sum(config.dataset.input_dim)
    features = torch.randn(args.batch, input_dim, args.length)
    mask = torch.ones(args.batch, args.length, dtype=torch.bool)
    scripted = torch.jit.script(model)

    with torch.inference_mode():
        eager = time_runs(lambda: model(features, mask), args.warmup, args.runs)
        torchscript = time_runs(lambda: scripted(features, mask), args.warmup, args.runs)
        ref, got = model(features, mask), scripted(features, mask)
    report = {
        "benchmark": "forward",
        "config": args.config,
        "batch": args.batch,
        "length": args.length,
        "dtype": "float32",
        "device": "cpu",
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "eager_attention_op": "native" if use_native("tca_attention", features, features, features, mask) else "reference",
        "eager": eager,
        "torchscript": torchscript,
        "torchscript_speedup_vs_eager": eager["median_ms"] / torchscript["median_ms"],
        "torchscript_max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(ref, got)),
    }
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
