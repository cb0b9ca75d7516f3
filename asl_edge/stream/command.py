"""``asl-edge stream``: live localization on one or more sources, events as JSON lines."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import Dict, Iterator, List, Optional

from ..outputs import write_json
from .engine import StreamOptions, StreamRunner
from .sinks import JsonLinesSink, MqttSink


def add_parser(sub) -> None:
    p = sub.add_parser("stream", help="live action localization on video sources (files, RTSP, cameras, test://)")
    p.add_argument("--model", required=True, help="an exported artifact (folder) or an asl-edge checkpoint (.pt)")
    p.add_argument("--source", action="append", required=True, metavar="URI",
                   help="a video source (repeat for several): path, rtsp://, v4l2:///dev/videoN, test://PATTERN, "
                        "csi://N, gst:PIPELINE")
    p.add_argument("--extractor", default=None,
                   help="motion, i3d-rgb or an exported clip model (default: the one the model's config names)")
    p.add_argument("--window", type=int, default=None, help="features per network call (default: the model's window)")
    p.add_argument("--hop", type=int, default=None, help="new features between calls (default: half the window)")
    p.add_argument("--guard", type=int, default=None,
                   help="features before a window's end within which detections wait for the next window "
                        "(default: a quarter of the window)")
    p.add_argument("--min-score", type=float, default=0.0, help="leave out events scoring below this")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="JSON-lines file for events and status (default: stdout)")
    p.add_argument("--mqtt", default=None, metavar="URL", help="also publish to mqtt://host[:port]/topic (QoS 1)")
    p.add_argument("--realtime", action="store_true", help="pace files at their own frame rate, like a camera")
    p.add_argument("--stats-interval", type=float, default=0.0, help="seconds between stats lines (0: none)")
    p.add_argument("--summary", default=None, help="write the final summary here as JSON")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--preset", default="auto", help="decoder preset: auto, software, jetson, nvidia")
    p.add_argument("--reconnect-attempts", type=int, default=10,
                   help="times in a row a lost RTSP/V4L2 source is reopened before its stream ends (default 10)")
    p.add_argument("--reconnect-interval", type=float, default=1.0,
                   help="seconds before the first reopening; doubles each time, at most 30 (default 1)")
    p.add_argument("--frame-timeout", type=float, default=5.0,
                   help="seconds without a frame after which an RTSP/V4L2 source counts as lost (default 5)")
    p.add_argument("--video-out", default=None, metavar="FILE",
                   help="write an annotated video (labels and a timeline) of each stream: FILE.mp4 (H.264, VP8 in "
                        ".webm without x264enc), .webm or .mkv; stream N > 0 goes to FILE's stem.N.ext")
    p.add_argument("--video-size", type=_size, default=(320, 240), metavar="WxH",
                   help="frame size of --video-out (default 320x240)")
    p.add_argument("--video-min-score", type=float, default=0.3,
                   help="--video-out draws the events scoring this or more (default 0.3)")
    p.set_defaults(func=run)


def _size(text: str):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x240, got {text!r}") from None
    return width, height


def _video_line(item) -> str:
    if item["state"] == "failed":
        return f"video failed: {item['error']}"
    if item["state"] == "writing":
        labels = "" if item["labels"] else "; no labels: textoverlay is missing (gstreamer1.0-x)"
        return f"video: writing {item['path']} ({item['codec']}){labels}"
    return f"video: {item['frames']} frames in {item['path']}, {item['dropped']} dropped"


def status_line(item: Dict) -> Optional[str]:
    """What a status item says on stderr (None for events and the stats, printed elsewhere)."""
    status = item.get("status")
    if status in ("error", "reconnecting"):
        return f"{item['stream']}: {status}: {item['error']}"
    if status == "video_out":
        return f"{item['stream']}: {_video_line(item)}"
    if status == "gap":
        return f"{item['stream']}: back after a gap from {item['from_s']:.1f} s to {item['to_s']:.1f} s"
    return None


@contextlib.contextmanager
def flush_on_signals(runner: StreamRunner, command: str) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM stop the runner (pending events are flushed and the run
    ends normally); a second signal forces (KeyboardInterrupt)."""
    count = 0

    def on_signal(number, frame):
        nonlocal count
        count += 1
        if count > 1:
            raise KeyboardInterrupt
        print(f"asl-edge {command}: {signal.Signals(number).name}: flushing pending events (again to force)",
              file=sys.stderr)
        runner.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stats_line(stats) -> str:
    stages = ", ".join(f"{name} {v['p50_ms']:.1f}/{v['p95_ms']:.1f} ms" for name, v in stats["stages"].items()
                       if v["p50_ms"] is not None)
    latency = stats["decision_latency"]
    decided = f"{latency['p50_s']:.2f}/{latency['p95_s']:.2f} s" if latency["p50_s"] is not None else "-"
    return (f"[{stats['wall_s']:.0f} s] {stats['frames']} frames ({stats['fps_in']:.1f}/s in, "
            f"{stats['fps_processed']:.1f}/s processed), {stats['dropped_frames']} dropped, {stats['events']} events; "
            f"queues clips {stats['clip_queue']}, windows {stats['window_queue']}; p50/p95: {stages}; "
            f"decision latency {decided}")


def run(args) -> int:
    from ..runtime import load

    backend = load(args.model, device=args.device)
    extractor = args.extractor or backend.config.dataset.extractor or "motion"
    options = StreamOptions(window=args.window, hop=args.hop, guard=args.guard, min_score=args.min_score,
                            realtime=args.realtime, stats_interval=args.stats_interval, max_seconds=args.max_seconds,
                            preset=args.preset, reconnect_attempts=args.reconnect_attempts,
                            reconnect_interval=args.reconnect_interval, frame_timeout=args.frame_timeout,
                            video_out=args.video_out, video_size=args.video_size,
                            video_min_score=args.video_min_score)
    runner = StreamRunner(backend, args.source, extractor, options, device=args.device)
    sinks: List = [JsonLinesSink(args.out)]
    if args.mqtt:
        sinks.append(MqttSink(args.mqtt))
    print(f"asl-edge stream: {len(args.source)} source(s), extractor {runner.extractor.name}, window "
          f"{options.window}, hop {options.hop}, guard {options.guard}", file=sys.stderr)
    try:
        with flush_on_signals(runner, "stream"):
            for item in runner.events():
                line = _stats_line(item) if item.get("status") == "stats" else status_line(item)
                if line is not None:
                    print(line if item.get("status") == "stats" else f"asl-edge stream: {line}", file=sys.stderr)
                for sink in sinks:
                    sink.send(item)
    finally:
        for sink in sinks:
            sink.close()
    summary = runner.summary()
    print("summary: " + _stats_line(summary), file=sys.stderr)
    if args.summary:
        write_json(summary, args.summary)
    failed = [s for s in summary["streams"] if s["error"]]
    return 1 if failed and len(failed) == len(summary["streams"]) else 0
