"""``asl-edge demo``: the product end to end on a built-in live scene.

A demo scene (:mod:`asl_edge.video.scene`, rendered live by GStreamer at its own pace) goes
through the streaming runtime exactly as ``asl-edge stream`` runs it — ``motion`` clip features,
the bundled ASL model (or any export of it, ``--model``), windows, merge, finalization — and each
event is printed as it is finalized, with its decision latency. At the end: the run's summary
(frames, drops, per-stage latency) and the events' average mAP against the scene's script, the
same evaluation as ``asl-edge eval-detections``. Files in ``--out``: ``events.jsonl``,
``ground_truth.json``, ``detections.json``, ``summary.json`` and ``timeline.png``.

The bundled model (``asl_edge/assets/demo_model.pt``) is made by ``python -m
asl_edge.train.demo_model``: a model of the scene's toy world, not of human actions.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, List

BUNDLED_MODEL = Path(__file__).resolve().parent / "assets" / "demo_model.pt"
VIDEO_ID = "demo"
DEMO_HOP = 32          # features between windows: 8.5 s of video at the model's 15 fps and stride 4
DEMO_GUARD = 16
SHOWN_SCORE = 0.3      # events below are kept (files, mAP) but not printed


class DemoError(RuntimeError):
    """The demo cannot run (no bundled model, bad options)."""


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="live localization of a built-in GStreamer scene with the bundled model, "
                                    "events as they are decided and their mAP")
    p.add_argument("--seed", type=int, default=0, help="which scene (the script follows from the seed)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the scene (default 60)")
    p.add_argument("--out", default="out/demo",
                   help="folder for events.jsonl, summary.json, detections.json, ground_truth.json, timeline.png")
    p.add_argument("--model", default=None,
                   help="an exported artifact of the bundled model (default: the bundled checkpoint)")
    p.add_argument("--video-out", default=None, metavar="FILE", help="also write the annotated video here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fast", action="store_true",
                   help="render the scene as fast as it is processed instead of in real time")
    p.set_defaults(func=run)


def scene_uri(seed: int, seconds: float, live: bool = True) -> str:
    """The demo scene's source URI."""
    return f"test://demo?seed={seed}&seconds={seconds:g}" + ("" if live else "&live=0")


def _print_event(event: Dict) -> None:
    print(f"  [{event['decided_at']:6.1f} s] {event['label']:<6} {event['start']:6.2f} - {event['end']:6.2f} s  "
          f"score {event['score']:.2f}  decided {event['latency_s']:.1f} s after its end", flush=True)


def evaluate_events(events: List[Dict], ground_truth: List[Dict], out: Path, duration: float,
                    tious: List[float]) -> Dict:
    """Write ``ground_truth.json`` and ``detections.json`` in ``out``, and evaluate the events
    as ``asl-edge eval-detections`` does."""
    from .outputs import activitynet_results, write_json
    from .train.evaluation import evaluate_detections, load_ground_truth, load_predictions

    gt_path, pred_path = out / "ground_truth.json", out / "detections.json"
    write_json({"database": {VIDEO_ID: {"subset": "test", "duration": duration, "annotations": ground_truth}}},
               gt_path)
    write_json(activitynet_results({VIDEO_ID: events}), pred_path)
    gt = load_ground_truth(gt_path, "test")
    return evaluate_detections(gt, load_predictions(pred_path, gt), tious)


def run(args) -> int:
    from .outputs import write_json
    from .stream import StreamOptions, StreamRunner
    from .stream.command import flush_on_signals, status_line
    from .stream.sinks import JsonLinesSink
    from .video.scene import make_script

    model = args.model or BUNDLED_MODEL
    if args.model is None and not BUNDLED_MODEL.is_file():
        raise DemoError(f"the bundled model {BUNDLED_MODEL} is missing: make it with "
                        "python -m asl_edge.train.demo_model --install")
    if args.seconds <= 0:
        raise DemoError(f"--seconds must be positive, got {args.seconds}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    script = make_script(args.seed, args.seconds)
    uri = scene_uri(args.seed, args.seconds, live=not args.fast)
    options = StreamOptions(hop=DEMO_HOP, guard=DEMO_GUARD, video_out=args.video_out)
    runner = StreamRunner(str(model), [uri], "motion", options, device=args.device)
    print(f"asl-edge demo: scene {args.seed} ({args.seconds:g} s, {len(script.actions)} actions of "
          f"{len({a.label for a in script.actions})} classes) from {uri}\n"
          f"model {model}; window {options.window} features, hop {options.hop}, guard {options.guard}; "
          "events as they are decided:", flush=True)
    (out / "events.jsonl").unlink(missing_ok=True)
    sink = JsonLinesSink(str(out / "events.jsonl"))
    events: List[Dict] = []
    try:
        with flush_on_signals(runner, "demo"):
            for item in runner.events():
                sink.send(item)
                if "status" not in item:
                    events.append(item)
                    if item["score"] >= SHOWN_SCORE:
                        _print_event(item)
                elif status_line(item) is not None:
                    print(f"  {status_line(item)}", file=sys.stderr)
    finally:
        sink.close()
    summary = runner.summary()
    tious = runner.backend.config.test_cfg.tiou_thresholds
    result = evaluate_events(events, script.annotations(), out, args.seconds, tious)
    summary.update({"average_mAP": result["average_mAP"], "mAP_per_tiou": result["mAP_per_tiou"],
                    "tiou_thresholds": result["tiou_thresholds"], "ap_per_class": result["ap_per_class"],
                    "scene": {"seed": args.seed, "seconds": args.seconds, "uri": uri,
                              "ground_truth": script.annotations()},
                    "model": str(model), "events": len(events), "demo_wall_s": time.perf_counter() - started})
    write_json(summary, out / "summary.json")
    timeline = _timeline(out)
    latency = summary["decision_latency"]
    stages = ", ".join(f"{name} {v['p50_ms']:.1f} ms" for name, v in summary["stages"].items()
                       if v["p50_ms"] is not None)
    print(f"summary: {summary['frames']} frames, {summary['dropped_frames']} dropped, {len(events)} events "
          f"({sum(e['score'] >= SHOWN_SCORE for e in events)} scoring {SHOWN_SCORE:g} or more) for "
          f"{len(script.actions)} actions; decision latency p50 {latency['p50_s'] or 0:.1f} s, "
          f"p95 {latency['p95_s'] or 0:.1f} s; per-stage p50: {stages}\n"
          f"average mAP {result['average_mAP']:.3f} (tIoU {', '.join(f'{t:g}' for t in result['tiou_thresholds'])}: "
          f"{', '.join(f'{m:.3f}' for m in result['mAP_per_tiou'])}); {summary['demo_wall_s']:.0f} s in all\n"
          f"wrote {out / 'events.jsonl'}, {out / 'summary.json'}" + (f", {timeline}" if timeline else ""), flush=True)
    return 0


def _timeline(out: Path):
    """``timeline.png``: ground truth above the events; None (said why) when it cannot be drawn."""
    from .train.plots import PlotError, plot_detections

    try:
        return plot_detections(out / "ground_truth.json", out / "detections.json", out / "timeline.png",
                               split="test")[0]
    except (PlotError, ImportError) as err:
        print(f"no timeline picture: {err}", file=sys.stderr)
        return None
