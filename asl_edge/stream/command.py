"""``asl-edge stream``: live localization on one or more sources, events as JSON lines."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import signal
import socket
import sys
from typing import Dict, Iterator, List, Optional

from ..outputs import write_json
from .engine import StreamError, StreamOptions, StreamRunner, check_device
from .sinks import JsonLinesSink, MqttSink, check_writable, parse_mqtt_url


def add_parser(sub) -> None:
    p = sub.add_parser("stream", help="live action localization on video sources (files, RTSP, cameras, test://)")
    p.add_argument("--model", required=True, help="an exported artifact (folder) or an asl-edge checkpoint (.pt)")
    p.add_argument("--source", action="append", default=None, metavar="URI",
                   help="a video source (repeat for several): path, rtsp://, v4l2:///dev/videoN, test://PATTERN, "
                        "csi://N, gst:PIPELINE")
    p.add_argument("--sources", default=None, metavar="FILE.yaml",
                   help="a camera list (cameras: [{name, uri, options}]) instead of --source: events carry each "
                        "camera's name; with --shard (or under torchrun) this box runs its share of it")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="with --sources: run shard K of N (K from 0) of the cameras, split by name, so that the same "
                        "file deploys on N boxes (default: the torchrun rank, else every camera)")
    p.add_argument("--box", default=None,
                   help="this box's id, carried by every event and status (default with --sources: the host name)")
    p.add_argument("--extractor", default=None,
                   help="motion, i3d-rgb or an exported clip model (default: the one the model's config names)")
    p.add_argument("--window", type=int, default=None, help="features per network call (default: the model's window)")
    p.add_argument("--hop", type=int, default=None,
                   help="new features between calls (default: 1 for a live source or --realtime, widened when the "
                        "network is slower; half the window for a file read as fast as it decodes)")
    p.add_argument("--guard", type=int, default=2,
                   help="features of context a window must see after a detection's end to make it final "
                        "(default 2: on the demo scenes as accurate as offline, final 1 s after the end)")
    p.add_argument("--min-score", type=float, default=0.0, help="leave out events scoring below this")
    p.add_argument("--alert-score", type=float, default=0.4,
                   help="a provisional event is announced ('new') once it scores this much; the latency statistics "
                        "count the final events that do (default 0.4: measured with benchmarks/bench_live.py)")
    p.add_argument("--events", choices=["all", "final"], default="all",
                   help="all: each event's lifecycle (new, update, end, cancel); final: the final events only "
                        "('end')")
    p.add_argument("--update-interval", type=float, default=1.0, metavar="SECONDS",
                   help="at most one update of an event per this many seconds of stream time (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--network-threads", type=int, default=None, metavar="N",
                   help="torch threads of the network on the CPU (default: 1 beside an OpenVINO or ONNX Runtime "
                        "extractor, which keeps every core, so that the two do not spin against each other; "
                        "otherwise torch's own)")
    p.add_argument("--out", default=None,
                   help="JSON-lines file for events and status, appended to; each run starts with a 'start' line "
                        "(default: stdout)")
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
    p.add_argument("--gap", type=float, default=1.0, metavar="SECONDS",
                   help="a pause in a source's timestamps longer than this ends the segment: a reported gap, no "
                        "feature across it, the next features at their true time (default 1)")
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
    if status in ("behind", "slow"):
        return f"{item['stream']}: warning: {item['error']}"
    if status == "video_out":
        return f"{item['stream']}: {_video_line(item)}"
    if status == "gap":
        return (f"{item['stream']}: gap from {item['from_s']:.1f} s to {item['to_s']:.1f} s ({item['error']}); "
                "the next events are placed at their true time")
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


def _latency(latency: Dict) -> str:
    return f"{latency['p50_s']:.2f}/{latency['p95_s']:.2f} s" if latency["p50_s"] is not None else "-"


def stats_line(stats) -> str:
    """One line of a stats dict: throughput, drops, gaps, queues, per-stage p50/p95 and the decision
    latency (stream time and wall time) of the events at or above the alert score."""
    stages = ", ".join(f"{name} {v['p50_ms']:.1f}/{v['p95_ms']:.1f} ms" for name, v in stats["stages"].items()
                       if v["p50_ms"] is not None)
    per_stream = stats["stream_s_per_wall_s"] / max(1, len(stats["streams"]))
    return (f"[{stats['wall_s']:.0f} s] {stats['frames']} frames ({stats['fps_in']:.1f}/s in, {per_stream:.2f}x real "
            f"time per stream), {stats['dropped_frames']} dropped, {stats['gaps']} gaps, "
            f"{stats['events']} events ({stats['alerts']} at or above {stats['alert_score']:g}); queues clips "
            f"{stats['clip_queue']}, windows {stats['window_queue']}; hop p50 {stats['hops']['p50'] or '-'} (asked "
            f"{'/'.join(map(str, stats['hops']['asked']))}); p50/p95: {stages}; final events "
            f"{_latency(stats['decision_latency'])} after "
            f"the action's end ({_latency(stats['decision_latency_wall'])} wall), new events "
            f"{_latency(stats['new_latency'])} after its start")


def losses(summary: Dict) -> List[str]:
    """What a finished run lost, in words: failed streams, dropped frames, undelivered events, a
    failed annotated video. Empty when nothing was lost."""
    lost = [f"{s['stream']} failed: {s['error']}" for s in summary["streams"] if s["error"]]
    if summary["dropped_frames"]:
        lost.append(f"{summary['dropped_frames']} frames dropped (the run was slower than a live source)")
    lost += [f"{s['lost']} events not delivered to {s['sink']}" for s in summary.get("sinks", []) if s["lost"]]
    lost += [f"{s['stream']}: the annotated video failed: {s['video_out']['error']}" for s in summary["streams"]
             if s.get("video_out", {}).get("error")]
    return lost


def start_record(runner: StreamRunner, model: str, shard: Optional[str] = None) -> Dict:
    """The status line a run's event output starts with (a file collects several runs)."""
    o = runner.options
    return {"status": "start", "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": str(model), "extractor": runner.extractor.name, "sources": [s.uri for s in runner.streams],
            "streams": [s.name for s in runner.streams], **({"shard": shard} if shard else {}),
            "window": o.window, "hop": [s.hop for s in runner.streams], "guard": o.guard, "min_score": o.min_score,
            "alert_score": o.alert_score, "events": o.events}


def chosen_sources(args):
    """``(uris, names, per-stream options, shard)`` from ``--source`` or from ``--sources`` and
    ``--shard`` (or the torchrun rank); names and options None without a camera list, shard None
    when the whole list runs."""
    from ..sharding import ShardError, choose_shard
    from .sources import cameras_of_shard, load_cameras

    if bool(args.source) == bool(args.sources):
        raise StreamError("give the sources as --source URI (repeatable) or as a camera list, --sources FILE.yaml "
                          "(one of the two)")
    if not args.sources:
        if args.shard:
            raise StreamError("--shard splits a camera list: use it with --sources FILE.yaml")
        return args.source, None, None, None
    try:
        shard = choose_shard(args.shard)
    except ShardError as err:
        raise StreamError(str(err)) from None
    cameras = cameras_of_shard(load_cameras(args.sources), shard, args.sources)
    return ([c.uri for c in cameras], [c.name for c in cameras], [c.options for c in cameras],
            str(shard) if shard.count > 1 else None)


def set_network_threads(threads: Optional[int], runner: StreamRunner, device: str) -> None:
    """torch's threads for the network: ``threads`` when given; else 1 on the CPU beside an
    extractor with its own thread pool on every core (OpenVINO, ONNX Runtime): on 2 cores the
    network's spinning OpenMP threads otherwise slow the extractor (3.6 against 2.5 stream-seconds
    per wall-second with the int8 I3D export, benchmarks/bench_stream.py --video)."""
    import torch

    if threads is not None:
        if threads < 1:
            raise StreamError(f"--network-threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    elif device == "cpu" and getattr(runner.extractor, "runtime", None) in ("openvino", "onnxruntime"):
        torch.set_num_threads(1)


def run(args) -> int:
    """The command: exit 2 for what is wrong before it starts, 1 when the run lost something
    (a stream failed, frames were dropped, events were not delivered), 0 otherwise."""
    from ..runtime import load
    from ..sharding import rank_device

    uris, names, own_options, shard = chosen_sources(args)
    box = args.box or (socket.gethostname() if args.sources else None)
    device = rank_device(args.device)          # under torchrun: the GPU of the local rank
    if args.mqtt:
        parse_mqtt_url(args.mqtt)
    if args.summary:
        check_writable(args.summary, "the summary")
    check_device(device)
    backend = load(args.model, device=device)
    extractor = args.extractor or backend.config.dataset.extractor or "motion"
    options = StreamOptions(window=args.window, hop=args.hop, guard=args.guard, min_score=args.min_score,
                            alert_score=args.alert_score, events=args.events, update_interval=args.update_interval,
                            realtime=args.realtime, stats_interval=args.stats_interval,
                            max_seconds=args.max_seconds, gap_s=args.gap, preset=args.preset,
                            reconnect_attempts=args.reconnect_attempts, reconnect_interval=args.reconnect_interval,
                            frame_timeout=args.frame_timeout, video_out=args.video_out, video_size=args.video_size,
                            video_min_score=args.video_min_score)
    runner = StreamRunner(backend, uris, extractor, options, device=device, names=names,
                          stream_options=own_options)
    set_network_threads(args.network_threads, runner, device)
    sinks: List = [JsonLinesSink(args.out)]
    if args.mqtt:
        sinks.append(MqttSink(args.mqtt))
    where = f" (box {box}{f', shard {shard}' if shard else ''}: {', '.join(names)})" if names else ""
    print(f"asl-edge stream: {len(uris)} source(s){where}, extractor {runner.extractor.name}, window "
          f"{options.window}, hop {'/'.join(str(h) for h in sorted({s.hop for s in runner.streams}))}, guard "
          f"{options.guard}", file=sys.stderr)
    for warning in runner.warnings:
        print(f"asl-edge stream: warning: {warning}", file=sys.stderr)
    try:
        for sink in sinks:
            sink.send({**start_record(runner, args.model, shard), **({"box": box} if box else {})})
        with flush_on_signals(runner, "stream"):
            for item in runner.events():
                line = stats_line(item) if item.get("status") == "stats" else status_line(item)
                if line is not None:
                    print(line if item.get("status") == "stats" else f"asl-edge stream: {line}", file=sys.stderr)
                if box:
                    item = {**item, "box": box}
                for sink in sinks:
                    sink.send(item)
    finally:
        for sink in sinks:
            sink.close()
    summary = {**runner.summary(), "sinks": [sink.summary() for sink in sinks]}
    print("summary: " + stats_line(summary), file=sys.stderr)
    lost = losses(summary)
    if args.summary:
        try:
            write_json(summary, args.summary)
        except OSError as err:
            lost.append(f"the summary could not be written to {args.summary}: {err.strerror or err}")
    for what in lost:
        print(f"asl-edge stream: lost: {what}", file=sys.stderr)
    return 1 if lost else 0
