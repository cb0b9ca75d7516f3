"""``asl-edge demo``: the product end to end on a built-in live scene.

A demo scene (:mod:`asl_edge.video.scene`, rendered live by GStreamer at its own pace) goes
through the streaming runtime exactly as ``asl-edge stream`` runs it — ``motion`` clip features,
the bundled ASL model (or any export of it, ``--model``), windows, merge, finalization — and each
event is printed as it is finalized, with its decision latency. At the end: the run's summary
(frames, drops, per-stage latency) and the events' average mAP against the scene's script, the
same evaluation as ``asl-edge eval-detections``. A run stopped early (Ctrl-C) is scored on the
actions that ended before it stopped, and says so. Files in ``--out``: ``events.jsonl``,
``ground_truth.json``, ``detections.json``, ``summary.json`` and ``timeline.png``.

The bundled model (``asl_edge/assets/demo_model.pt``) is made by ``python -m
asl_edge.train.demo_model``: a model of the scene's toy world, not of human actions.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import UserError

BUNDLED_MODEL = Path(__file__).resolve().parent / "assets" / "demo_model.pt"
VIDEO_ID = "demo"
DEMO_HOP = 1           # a window every feature (0.27 s of video at the model's 15 fps and stride 4)
DEMO_GUARD = 2         # final 2 features after an action's end: the knee of benchmarks/bench_live.py's curve


class DemoError(UserError, RuntimeError):
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


def _print_message(message: Dict) -> None:
    """One line per announcement (new), cancellation and final event (end) of the lifecycle."""
    kind = message["type"]
    since = f"{message['latency_s']:.1f} s after its " + ("end" if kind == "end" else "start")
    print(f"  [{message['decided_at']:6.1f} s] {kind:<6} #{message['id']:<4} {message['label']:<6} "
          f"{message['start']:6.2f} - {message['end']:6.2f} s  score {message['score']:.2f}  {since}", flush=True)


def write_scored_files(events: List[Dict], ground_truth: List[Dict], out: Path, duration: float):
    """``ground_truth.json`` and ``detections.json`` (the final events) in ``out``; returns the
    ground truth as :func:`asl_edge.train.evaluation.load_ground_truth` reads it."""
    from .outputs import activitynet_results, write_json
    from .train.evaluation import load_ground_truth

    write_json({"database": {VIDEO_ID: {"subset": "test", "duration": duration, "annotations": ground_truth}}},
               out / "ground_truth.json")
    write_json(activitynet_results({VIDEO_ID: events}), out / "detections.json")
    return load_ground_truth(out / "ground_truth.json", "test")


def evaluate_events(events: List[Dict], ground_truth: List[Dict], out: Path, duration: float,
                    tious: List[float]) -> Dict:
    """Write ``ground_truth.json`` and ``detections.json`` in ``out``, and evaluate the events
    as ``asl-edge eval-detections`` does."""
    from .train.evaluation import evaluate_detections, load_predictions

    gt = write_scored_files(events, ground_truth, out, duration)
    return evaluate_detections(gt, load_predictions(out / "detections.json", gt), tious)


def check_options(seed: int, seconds: float) -> None:
    """DemoError for a scene that cannot be made or holds no clip of the bundled model's features."""
    from .features import MotionExtractor

    clip = MotionExtractor().clip
    shortest = clip.num_frames / clip.fps
    if seed < 0:
        raise DemoError(f"--seed must be 0 or more, got {seed}")
    if not (math.isfinite(seconds) and seconds >= shortest):
        raise DemoError(f"--seconds must be at least {shortest:g} (one {clip.num_frames}-frame clip at {clip.fps:g} "
                        f"fps), got {seconds}")


def scored_actions(script, summary: Dict) -> Tuple[List[Dict], float, Optional[str]]:
    """The ground truth to score a run on, the seconds it covers, and a note when that is not the
    whole scene: a run stopped early is scored on the actions that ended before it stopped."""
    if not summary["stopped_early"]:
        return script.annotations(), script.seconds, None
    reached = min(script.seconds, summary["streams"][0]["seconds"])
    kept = [a for a in script.annotations() if a["segment"][1] <= reached]
    return kept, reached, (f"stopped at {reached:.1f} s of {script.seconds:g}: scored on the {len(kept)} of "
                           f"{len(script.actions)} actions that ended by then")


def run(args) -> int:
    from .outputs import write_json
    from .stream import StreamOptions, StreamRunner
    from .stream.command import flush_on_signals, losses, status_line
    from .stream.evaluation import format_metrics, stream_metrics
    from .stream.sinks import JsonLinesSink
    from .video.scene import make_script

    model = args.model or BUNDLED_MODEL
    if args.model is None and not BUNDLED_MODEL.is_file():
        raise DemoError(f"the bundled model {BUNDLED_MODEL} is missing: make it with "
                        "python -m asl_edge.train.demo_model --install")
    check_options(args.seed, args.seconds)
    out = Path(args.out)
    started = time.perf_counter()
    script = make_script(args.seed, args.seconds)
    uri = scene_uri(args.seed, args.seconds, live=not args.fast)
    options = StreamOptions(hop=DEMO_HOP, guard=DEMO_GUARD, video_out=args.video_out)
    runner = StreamRunner(str(model), [uri], "motion", options, device=args.device)
    print(f"asl-edge demo: scene {args.seed} ({args.seconds:g} s, {len(script.actions)} actions of "
          f"{len({a.label for a in script.actions})} classes) from {uri}\n"
          f"model {model}; window {options.window} features, hop {options.hop}, guard {options.guard}, alert score "
          f"{options.alert_score:g}; "
          "events as they are decided:", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "events.jsonl").unlink(missing_ok=True)
    sink = JsonLinesSink(str(out / "events.jsonl"))
    messages: List[Dict] = []
    try:
        with flush_on_signals(runner, "demo"):
            for item in runner.events():
                sink.send(item)
                if "status" not in item:
                    messages.append(item)
                    if item["type"] in ("new", "cancel") or (item["type"] == "end"
                                                             and item["score"] >= options.alert_score):
                        _print_message(item)
                elif status_line(item) is not None:
                    print(f"  {status_line(item)}", file=sys.stderr)
    finally:
        sink.close()
    summary = {**runner.summary(), "sinks": [sink.summary()]}
    ground_truth, seconds, note = scored_actions(script, summary)
    events = [m for m in messages if m["type"] == "end"]
    summary.update({"scene": {"seed": args.seed, "seconds": args.seconds, "uri": uri,
                              "ground_truth": script.annotations()},
                    "scored": {"seconds": seconds, "actions": len(ground_truth), "note": note},
                    "model": str(model), "events": len(events)})
    if ground_truth:
        gt = write_scored_files(events, ground_truth, out, seconds)
        metrics = stream_metrics(messages, gt, {runner.streams[0].name: VIDEO_ID},
                                 runner.backend.config.test_cfg.tiou_thresholds, options.alert_score)
        summary.update(metrics)
        score = format_metrics(metrics)
    else:
        summary["average_mAP"] = None
        score = "no mAP: no action " + ("ended before the run stopped" if note else "in this scene (it is too short)")
    summary["demo_wall_s"] = time.perf_counter() - started
    write_json(summary, out / "summary.json")
    timeline = _timeline(out) if ground_truth else None
    stages = ", ".join(f"{name} {v['p50_ms']:.1f} ms" for name, v in summary["stages"].items()
                       if v["p50_ms"] is not None)
    lost = losses(summary)
    print(f"summary: {summary['frames']} frames, {summary['dropped_frames']} dropped, {len(events)} final events "
          f"({summary['alerts']} scoring {options.alert_score:g} or more) for {len(script.actions)} actions; "
          f"per-stage p50: {stages}; {summary['demo_wall_s']:.0f} s in all\n" + (f"{note}\n" if note else "") +
          f"{score}\n"
          f"wrote {out / 'events.jsonl'}, {out / 'summary.json'}" + (f", {timeline}" if timeline else ""), flush=True)
    for what in lost:
        print(f"asl-edge demo: lost: {what}", file=sys.stderr)
    return 1 if lost else 0


def _timeline(out: Path):
    """``timeline.png``: ground truth above the events; None (said why) when it cannot be drawn."""
    from .train.plots import PlotError, plot_detections

    try:
        return plot_detections(out / "ground_truth.json", out / "detections.json", out / "timeline.png",
                               split="test")[0]
    except (PlotError, ImportError) as err:
        print(f"no timeline picture: {err}", file=sys.stderr)
        return None
