"""CPU low precision (``asl-edge export --format openvino --precision fp32|bf16|int8``): latency,
parity and accuracy against the fp32 eager model each artifact came from.

    python benchmarks/bench_precision.py [--runs 10] [--work DIR] [--out FILE] [--skip-latency] [--skip-accuracy]

1. Latency: the THUMOS-size network (random weights) at B1, T2304, exported at each precision
   (int8 calibrated on ``--calibration`` features, default: seeded random features of THUMOS's
   size), timed through ``asl_edge.runtime.load`` in one process, each run of an artifact next to
   one of eager fp32 (median of ``--runs`` after 2 warm-up runs each) so that both see the same
   load on the machine.
2. Accuracy: a model trained on the synthetic ``keyframe`` benchmark (``asl-edge synth`` +
   ``asl-edge train``, the preset's CPU recipe; reused from ``--work`` when there), exported at
   each precision (int8 calibrated on the training split) and evaluated through the runtime on the
   validation split: average mAP next to the fp32 eager model's, with each export's parity report.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from timing import cpu_name, emit_report

from asl_edge.bench.stages import random_calibration_features
from asl_edge.config import load_config
from asl_edge.export.exporter import export_checkpoint
from asl_edge.export.spec import ExportSpec
from asl_edge.model import build_model, load_checkpoint, save_checkpoint
from asl_edge.runtime import load
from asl_edge.train.datasets import load_records
from asl_edge.train.synthetic import make_synthetic
from asl_edge.train.trainer import Trainer
from asl_edge.train.validate import evaluate_model

PRECISIONS = ("fp32", "bf16", "int8")


def _parity_summary(report: dict) -> dict:
    return {"passed": report["passed"],
            "max_abs_diff": {k: v["max_abs_diff"] for k, v in report.get("outputs", {}).items()},
            "max_rel_diff": {k: v["max_rel_diff"] for k, v in report.get("outputs", {}).items()},
            "detections_matched": report["detections"]["matched_fraction"],
            "max_score_diff": report["detections"]["max_score_diff_matched"]}


def latency(work: Path, runs: int, calibration: str) -> dict:
    """Eager fp32 vs the OpenVINO artifacts of the THUMOS-size network, alternating run by run."""
    torch.manual_seed(0)
    config = load_config("thumos_i3d")
    ckpt = work / "thumos_random.pt"
    save_checkpoint(build_model(config).eval(), config, ckpt)
    calibration = calibration or str(random_calibration_features(config, work))
    features = torch.randn(1, config.dataset.input_dim, 2304)
    mask = torch.ones(1, 2304, dtype=torch.bool)
    eager = load(ckpt)
    rows = []
    for precision in PRECISIONS:
        spec = ExportSpec(format="openvino", precision=precision, window=2304,
                          calibration=calibration if precision == "int8" else None, calibration_windows=8)
        summary = export_checkpoint(ckpt, spec, work / f"thumos_openvino_{precision}")
        backend = load(work / f"thumos_openvino_{precision}")
        times = {"eager": [], "artifact": []}
        for call in range(runs + 2):
            for name, fn in (("eager", eager.run), ("artifact", backend.run)):
                start = time.perf_counter()
                fn(features, mask)
                if call >= 2:
                    times[name].append(1000 * (time.perf_counter() - start))
        eager_ms, artifact_ms = statistics.median(times["eager"]), statistics.median(times["artifact"])
        rows.append({"precision": precision, "size_mb": summary["size_bytes"] / 1e6,
                     "export_seconds": summary["export_seconds"], "parity": _parity_summary(summary["parity"]),
                     "eager_median_ms": eager_ms, "artifact_median_ms": artifact_ms,
                     "artifact_min_ms": min(times["artifact"]), "ratio_vs_eager": artifact_ms / eager_ms})
        print(f"latency openvino {precision}: {artifact_ms:.0f} ms vs eager fp32 {eager_ms:.0f} ms "
              f"({artifact_ms / eager_ms:.2f}x)", file=sys.stderr)
    return {"batch": 1, "length": 2304, "runs": runs, "formats": rows}


def _trained_keyframe(work: Path, seed: int) -> Path:
    """The keyframe model of ``work`` (trained once with the preset's CPU recipe, then reused)."""
    data = make_synthetic(work / f"keyframe_{seed}", preset="keyframe", seed=seed)
    run = work / f"keyframe_run_{seed}"
    if not (run / "model.pt").exists():
        config = load_config(data["config"], overrides={"init_rand_seed": seed})
        config.train_cfg.eval_interval = 0
        Trainer(config, run, progress=False).fit()
    return run / "model.pt"


def accuracy(work: Path, seed: int) -> dict:
    """Average mAP on keyframe's validation split: eager fp32 and each OpenVINO artifact."""
    ckpt_path = _trained_keyframe(work, seed)
    ckpt = load_checkpoint(ckpt_path)
    config = ckpt.config
    records, _ = load_records(config, config.val_split)
    result, _ = evaluate_model(ckpt.model.eval(), config, records)
    rows = [{"model": "eager fp32", "average_mAP": result["average_mAP"], "mAP_per_tiou": result["mAP_per_tiou"]}]
    for precision in PRECISIONS:
        out = work / f"keyframe_openvino_{precision}"
        spec = ExportSpec(format="openvino", precision=precision, window=config.dataset.max_seq_len,
                          dynamic_length=True)                 # validation videos run at T up to 384
        summary = export_checkpoint(ckpt_path, spec, out)
        backend = load(out)
        result, _ = evaluate_model(backend.network, config, records)
        rows.append({"model": f"openvino {precision}", "average_mAP": result["average_mAP"],
                     "mAP_per_tiou": result["mAP_per_tiou"],
                     "delta_points_vs_fp32": 100 * (result["average_mAP"] - rows[0]["average_mAP"]),
                     "calibration": summary.get("calibration"), "parity": _parity_summary(summary["parity"])})
        print(f"keyframe average mAP, openvino {precision}: {100 * result['average_mAP']:.2f} "
              f"(eager fp32 {100 * rows[0]['average_mAP']:.2f})", file=sys.stderr)
    return {"preset": "keyframe", "seed": seed, "split": config.val_split, "videos": len(records), "models": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--work", default="out/bench_precision", help="folder for checkpoints, data and artifacts")
    parser.add_argument("--calibration", default=None, help="int8 calibration of the latency model (see export)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the keyframe data and training")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "precision", "cpu": cpu_name(), "threads": torch.get_num_threads(),
              "torch": torch.__version__}
    if not args.skip_latency:
        report["latency"] = latency(work, args.runs, args.calibration)
    if not args.skip_accuracy:
        report["accuracy"] = accuracy(work, args.seed)
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
