"""Live events: the latency-accuracy curve of sliding-window streaming, and what a window costs.

    python benchmarks/bench_live.py curve [--seeds 0-12] [--configs 32/16,16/8,...] [--alerts 0.2,0.3,0.4]
                                          [--model CKPT] [--out DIR]
    python benchmarks/bench_live.py cost [--windows 128,256,576,2304] [--runs N] [--out DIR]

``curve``: held-out demo scenes (60 s each; the bundled model never saw seeds below 1000), each
streamed through the real runtime with the bundled model (or ``--model``: another model of the
demo scenes, e.g. one trained without ``right_cut_prob``) (``StreamRunner``, the scene rendered unpaced, so every run
sees the same windows) with window 128 and every ``hop/guard`` of ``--configs`` at the default
alert score, and the default ``hop/guard`` (``--knee``) at every ``--alerts``; for each the metrics of
``asl-edge eval-stream`` over all scenes: streamed average mAP of the final events, final-event
latency p50/p95 after the action's end (stream time), ``new`` latency p50/p95 after the action's
start (actions of 2 s or more) and precision, cancels; and the offline mAP of the same scenes
(``extract-features`` + one whole-scene window). Writes ``live_curve.json``, ``live_curve.md``
and ``live_curve.png`` (mAP against final-event latency; new-event precision against latency).

``cost``: the network's time per window call (``Backend.detect_batch``, decode and NMS
included) on this CPU, which sets the smallest hop that keeps up with a live source: the bundled
demo model at window 128 (fp32), and a THUMOS-size ASL model (random weights; 2048-d features,
as the network's cost does not depend on the weights) at each ``--windows`` in fp32 and OpenVINO
int8 (NNCF on random features). Writes ``live_cost.json`` and ``live_cost.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
from timing import cpu_name, emit_report, time_runs

from asl_edge.demo import BUNDLED_MODEL, scene_uri
from asl_edge.features import load_extractor
from asl_edge.features.extract import extract_video
from asl_edge.stream import StreamOptions, StreamRunner
from asl_edge.stream.evaluation import stream_metrics
from asl_edge.train.evaluation import load_ground_truth
from asl_edge.video.scene import make_script

SECONDS = 60
WINDOW = 128
STEP_S = 4 / 15          # one feature of the demo model
I3D_FEATURES_PER_S = 7.5  # I3D's recipe: a clip every 4 frames of a 30 fps camera
ALERT = StreamOptions().alert_score


def parse_seeds(text: str) -> List[int]:
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def ground_truth(seeds: List[int], folder: Path):
    """The scenes' scripts as one annotation file (video ``scene<seed>``), read back."""
    path = folder / "ground_truth.json"
    path.write_text(json.dumps({"database": {f"scene{seed}": {"subset": "test", "duration": SECONDS,
                                                              "annotations": make_script(seed, SECONDS).annotations()}
                                             for seed in seeds}}))
    return load_ground_truth(path, "test")


def offline_map(seeds: List[int], gt, runner_backend) -> float:
    """The average mAP of one whole-scene window per scene: offline inference on the same features."""
    from asl_edge.train.evaluation import Prediction, evaluate_detections

    extractor = load_extractor("motion")
    predictions = []
    for seed in seeds:
        features, _ = extract_video(scene_uri(seed, SECONDS), extractor, extractor.clip.fps)
        predictions += [Prediction(f"scene{seed}", d["label"], d["start"], d["end"], d["score"])
                        for d in runner_backend.detect(features, fps=extractor.clip.fps)]
    return evaluate_detections(gt, predictions, runner_backend.config.test_cfg.tiou_thresholds)["average_mAP"]


def streamed(model: str, seeds: List[int], gt, hop: int, guard: int, alert: float) -> Dict:
    """Every scene streamed at ``hop``/``guard``/``alert``; the eval-stream metrics over all."""
    messages, video_of, backend = [], {}, None
    for seed in seeds:
        uri = scene_uri(seed, SECONDS, live=False)
        runner = StreamRunner(backend or model, [uri], "motion",
                              StreamOptions(window=WINDOW, hop=hop, guard=guard, alert_score=alert))
        backend = runner.backend
        messages += [m for m in runner.events() if "status" not in m]
        video_of[uri] = f"scene{seed}"
    metrics = stream_metrics(messages, gt, video_of, backend.config.test_cfg.tiou_thresholds, alert)
    keep = ("average_mAP", "final_latency_s", "new_latency_s", "new_latency_s_2s", "new_precision", "new_events",
            "cancels", "final_events", "actions")
    return {"hop": hop, "guard": guard, "alert_score": alert, **{k: metrics[k] for k in keep}}


def curve(args) -> Dict:
    seeds = parse_seeds(args.seeds)
    configs = [tuple(int(v) for v in c.split("/")) for c in args.configs.split(",")]
    knee = tuple(int(v) for v in args.knee.split("/"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="asl-edge-live-") as folder:
        gt = ground_truth(seeds, Path(folder))
        runs = [(hop, guard, ALERT) for hop, guard in configs]
        runs += [(*knee, float(a)) for a in args.alerts.split(",") if (*knee, float(a)) not in runs]
        for hop, guard, alert in runs:
            row = streamed(args.model, seeds, gt, hop, guard, alert)
            rows.append(row)
            print(f"hop {hop} guard {guard} alert {alert:g}: mAP {row['average_mAP']:.3f}, final p50 "
                  f"{row['final_latency_s']['p50']:.2f} s, new p50 {row['new_latency_s_2s']['p50']} s, precision "
                  f"{row['new_precision']}", flush=True)
        backend = StreamRunner(args.model, [scene_uri(seeds[0], SECONDS)], "motion").backend
        offline = offline_map(seeds, gt, backend)
    report = {"benchmark": "live_curve", "cpu": cpu_name(), "model": args.model, "scenes": seeds, "seconds": SECONDS,
              "window": WINDOW,
              "feature_s": STEP_S, "knee": list(knee), "offline_average_mAP": offline, "rows": rows}
    out = Path(args.out)
    emit_report(report, str(out / "live_curve.json"))
    (out / "live_curve.md").write_text(curve_table(report))
    plot_curve(report, out / "live_curve.png")
    return report


def _s(p: Dict) -> str:
    return "-" if p["p50"] is None else f"{p['p50']:.2f} / {p['p95']:.2f}"


def curve_table(report: Dict) -> str:
    lines = [f"{len(report['scenes'])} held-out demo scenes of {report['seconds']} s, window {report['window']} "
             f"features ({report['window'] * report['feature_s']:.0f} s); offline average mAP "
             f"{report['offline_average_mAP']:.3f}; {report['cpu']}", "",
             "| hop / guard (features) | alert | streamed mAP | final latency p50 / p95 (s) | new latency p50 / p95 "
             "(s, actions >= 2 s) | new precision | new | cancels |", "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        precision = "-" if r["new_precision"] is None else f"{100 * r['new_precision']:.0f} %"
        lines.append(f"| {r['hop']} / {r['guard']} | {r['alert_score']:g} | {r['average_mAP']:.3f} | "
                     f"{_s(r['final_latency_s'])} | {_s(r['new_latency_s_2s'])} | {precision} | {r['new_events']} | "
                     f"{r['cancels']} |")
    return "\n".join(lines) + "\n"


def plot_curve(report: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    base = [r for r in report["rows"] if r["alert_score"] == ALERT]
    for r in base:
        x = r["final_latency_s"]["p50"]
        left.errorbar(x, r["average_mAP"], xerr=[[0], [r["final_latency_s"]["p95"] - x]], fmt="o", color="tab:blue",
                      ecolor="#9ab", capsize=2)
        left.annotate(f"{r['hop']}/{r['guard']}", (x, r["average_mAP"]), textcoords="offset points", xytext=(4, 4),
                      fontsize=8)
    left.axhline(report["offline_average_mAP"], color="gray", linestyle="--", label="offline (one window per scene)")
    left.set_ylim(min([0.9] + [r["average_mAP"] - 0.01 for r in base]), 1.0)
    left.set_xlabel("final events: latency after the action's end, p50 (bar to p95), s")
    left.set_ylabel("average mAP of the final events")
    left.set_title(f"hop / guard (features), alert {ALERT:g}", fontsize=10)
    left.legend(fontsize=8, loc="lower right")
    knee = [r for r in report["rows"] if [r["hop"], r["guard"]] == report["knee"]]
    for r in knee:
        if r["new_latency_s_2s"]["p50"] is None:
            continue
        right.plot(r["new_latency_s_2s"]["p50"], r["new_precision"], "o", color="tab:orange")
        right.annotate(f"alert {r['alert_score']:g}", (r["new_latency_s_2s"]["p50"], r["new_precision"]),
                       textcoords="offset points", xytext=(4, 4), fontsize=8)
    right.set_xlabel("new events: latency after the action's start, p50 (actions >= 2 s), s")
    right.set_ylabel("share of new events that end matching an action")
    right.set_title(f"provisional events at hop/guard {report['knee'][0]}/{report['knee'][1]}", fontsize=10)
    fig.savefig(path, dpi=110)


def cost(args) -> Dict:
    from asl_edge.config import load_config
    from asl_edge.export.exporter import export_checkpoint
    from asl_edge.export.spec import ExportSpec
    from asl_edge.model import build_model, save_checkpoint
    from asl_edge.runtime import load

    rows = []

    def timed(backend, window: int, case: str, precision: str, features_per_s: float) -> None:
        features = np.random.default_rng(0).standard_normal((window, backend.channels)).astype(np.float32)
        stats = time_runs(lambda: backend.detect_batch([features], fps=30.0), warmup=2, runs=args.runs)
        rows.append({"model": case, "precision": precision, "window": window, "features_per_s": features_per_s,
                     "smallest_live_hop": max(1, int(-(-stats["median_ms"] * features_per_s // 1000))), **stats})
        print(f"{case} {precision} window {window}: {stats['median_ms']:.1f} ms per call", flush=True)

    timed(load(str(BUNDLED_MODEL)), WINDOW, "demo (443 k parameters)", "fp32", 1 / STEP_S)
    with tempfile.TemporaryDirectory(prefix="asl-edge-cost-") as folder:
        folder = Path(folder)
        for window in [int(w) for w in args.windows.split(",")]:
            import torch

            torch.manual_seed(0)
            config = load_config("thumos_i3d", overrides={"dataset": {"max_seq_len": window}})
            ckpt = folder / f"thumos_{window}.pt"
            save_checkpoint(build_model(config), config, ckpt)
            timed(load(str(ckpt)), window, "THUMOS-size ASL", "fp32", I3D_FEATURES_PER_S)
            calibration = folder / f"calibration_{window}"
            calibration.mkdir()
            for k in range(4):
                np.save(calibration / f"v{k}.npy",
                        np.random.default_rng(k).standard_normal((window, 2048)).astype(np.float32))
            export_checkpoint(ckpt, ExportSpec(format="openvino", precision="int8", window=window,
                                               calibration=str(calibration)), folder / f"int8_{window}", parity=False)
            timed(load(str(folder / f"int8_{window}")), window, "THUMOS-size ASL", "OpenVINO int8", I3D_FEATURES_PER_S)
    report = {"benchmark": "live_cost", "cpu": cpu_name(), "rows": rows}
    out = Path(args.out)
    emit_report(report, str(out / "live_cost.json"))
    lines = [f"Network time per window call (decode and NMS included), {report['cpu']}, median of {args.runs}", "",
             "| model | precision | window (features) | ms per call | features/s of a live source | smallest hop "
             "that keeps up |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['window']} | {r['median_ms']:.1f} | "
                     f"{r['features_per_s']:g} | {r['smallest_live_hop']} |")
    (out / "live_cost.md").write_text("\n".join(lines) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("curve")
    p.add_argument("--seeds", default="0-12")
    p.add_argument("--configs", default="32/16,16/8,8/4,4/2,2/2,1/2,1/1")
    p.add_argument("--knee", default="1/2", help="the hop/guard the alert sweep runs at")
    p.add_argument("--alerts", default="0.2,0.3,0.4,0.5")
    p.add_argument("--model", default=str(BUNDLED_MODEL))
    p.add_argument("--out", default="out/live")
    p.set_defaults(func=curve)
    p = sub.add_parser("cost")
    p.add_argument("--windows", default="256,576,2304")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--out", default="out/live")
    p.set_defaults(func=cost)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
