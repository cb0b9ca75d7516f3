"""The streaming runtime end to end: throughput, decision latency, memory over a long live run.

    python benchmarks/bench_stream.py --throughput [--extractor motion|i3d-rgb] [--seconds S] [--out FILE]
    python benchmarks/bench_stream.py --soak SECONDS [--out FILE]
    python benchmarks/bench_stream.py --video VIDEO|DIR ... --extractor EXPORT_DIR [--seconds 60] [--out FILE]

``--throughput``: a generated video (GStreamer, 320x240, 30 fps, ``--seconds`` long) streamed
unpaced by 1, 2 and 4 streams at once: stream-seconds per wall-second, events, per-stage
latency, decision latency. ``--soak``: a live ``test://`` source at 30 fps for SECONDS with the
``motion`` extractor: RSS at start and end, drops, the stats every minute and the summary.
``--video``: real footage, live on a CPU: the videos, looped and joined into one ``--seconds``
long 30 fps H.264 file (at the first video's size), go through ``asl-edge stream`` (in this
process) with ``--extractor`` (e.g. the int8 OpenVINO export of i3d-rgb): paced like a camera —
served by an RTSP server on loopback (GstRtspServer, a child process), so that the source is live
and a runtime that falls behind drops (and counts) frames as with a camera — and unpaced (the
file read as fast as it goes): stream-seconds per wall-second, dropped frames, per-stage p50/p95,
decision latency; then unpaced again with the network on every core too (``--network-threads``;
by default ``stream`` gives the network 1 torch thread beside an OpenVINO extractor, which keeps
every core), to show what that choice saves.
The network is a randomly initialised small ASL model for the extractor's features (the
throughput of the runtime does not depend on trained weights); default window/hop/guard.
"""

from __future__ import annotations

import onnx  # noqa: F401  - before Gst.init (DESIGN §6)
import onnxruntime  # noqa: F401

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import resource
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

import torch
from timing import cpu_name, emit_report

from asl_edge.config import load_config
from asl_edge.features import load_extractor
from asl_edge.model import build_model, save_checkpoint
from asl_edge.stream import StreamOptions, StreamRunner
from asl_edge.video import gst


def rss_mb() -> float:
    """Resident set size now (MB), from /proc."""
    with open("/proc/self/statm") as fd:
        return int(fd.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def model_for(extractor, folder: Path) -> Path:
    """A small ASL model (64 channels, max_seq_len 128) on the extractor's features."""
    spec = extractor.clip
    config = load_config("thumos_i3d", overrides={
        "dataset": {"input_dim": extractor.dim, "feat_stride": spec.frame_stride, "num_frames": spec.num_frames,
                    "default_fps": spec.fps, "extractor": extractor.name, "max_seq_len": 128, "num_classes": 4,
                    "class_names": ["a", "b", "c", "d"]},
        "model": {"embd_dim": 64, "fpn_dim": 64, "head_dim": 64, "n_head": 4, "n_mha_win_size": 9,
                  "backbone_arch": [2, 2, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}})
    path = folder / f"model_{extractor.name}.pt"
    torch.manual_seed(0)
    save_checkpoint(build_model(config), config, path)
    return path


def make_video(path: Path, seconds: float) -> str:
    Gst = gst()
    pipeline = Gst.parse_launch(f"videotestsrc num-buffers={int(30 * seconds)} pattern=ball ! video/x-raw,format=I420,"
                                f"width=320,height=240,framerate=30/1 ! x264enc speed-preset=ultrafast ! h264parse ! "
                                f"mp4mux ! filesink location={path}")
    pipeline.set_state(Gst.State.PLAYING)
    pipeline.get_bus().timed_pop_filtered(600 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    return str(path)


def throughput(extractor_name: str, seconds: float, folder: Path) -> List[Dict]:
    extractor = load_extractor(extractor_name)
    model = model_for(extractor, folder)
    video = make_video(folder / "clip.mp4", seconds)
    rows = []
    for streams in (1, 2, 4):
        runner = StreamRunner(str(model), [video] * streams, extractor)
        events = sum(1 for item in runner.events() if "status" not in item)
        summary = runner.summary()
        rows.append({"case": "throughput", "extractor": extractor_name, "streams": streams, "video_s": seconds,
                     "events": events, "wall_s": summary["wall_s"],
                     "stream_s_per_wall_s": summary["stream_s_per_wall_s"], "stages": summary["stages"],
                     "decision_latency": summary["decision_latency"], "window": summary["window"],
                     "hop": summary["hop"], "guard": summary["guard"]})
        print(f"{extractor_name}, {streams} stream(s): {summary['stream_s_per_wall_s']:.2f} stream-s per wall-s, "
              f"{events} events", flush=True)
    return rows


def soak(seconds: float, folder: Path) -> Dict:
    extractor = load_extractor("motion")
    model = model_for(extractor, folder)
    runner = StreamRunner(str(model), ["test://ball?fps=30&width=320&height=240"], extractor,
                          StreamOptions(stats_interval=60.0, max_seconds=seconds))
    start_rss, samples, events = rss_mb(), [], 0
    for item in runner.events():
        if item.get("status") == "stats":
            samples.append({"rss_mb": rss_mb(), **{k: item[k] for k in ("wall_s", "frames", "features", "events",
                                                                         "dropped_frames", "fps_in")},
                            "decision_latency": item["decision_latency"]})
            print(f"[{item['wall_s']:.0f} s] rss {samples[-1]['rss_mb']:.0f} MB, {item['frames']} frames, "
                  f"{item['dropped_frames']} dropped, {item['events']} events", flush=True)
        elif "status" not in item:
            events += 1
    return {"case": "soak", "seconds": seconds, "rss_start_mb": start_rss, "rss_end_mb": rss_mb(),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, "events": events,
            "minutes": samples, "summary": runner.summary()}


def join_videos(videos: List[str], seconds: float, path: Path) -> str:
    """The videos (decoded through ``open_source`` at 30 fps), looped in turn until ``seconds``,
    encoded as one H.264 MP4 at the first video's size."""
    from asl_edge.features.extract import find_videos
    from asl_edge.video import Geometry, open_source

    uris = [uri for _, uri in find_videos(videos)]
    if not uris:
        raise SystemExit(f"no video files in {', '.join(videos)}")
    with open_source(uris[0]) as source:
        height, width = next(iter(source)).rgb.shape[:2]
    width, height = width - width % 2, height - height % 2
    Gst = gst()
    pipeline = Gst.parse_launch(f"appsrc name=frames format=time caps=video/x-raw,format=RGB,width={width},"
                                f"height={height},framerate=30/1 ! videoconvert ! video/x-raw,format=I420 ! "
                                f"x264enc speed-preset=ultrafast key-int-max=30 ! h264parse ! mp4mux ! "
                                f"filesink location={path}")
    appsrc = pipeline.get_by_name("frames")
    pipeline.set_state(Gst.State.PLAYING)
    total, count = int(30 * seconds), 0
    while count < total:
        for uri in uris:
            with open_source(uri, geometry=Geometry(width, height), fps=30.0) as source:
                for frame in source:
                    if count == total:
                        break
                    buffer = Gst.Buffer.new_wrapped(frame.rgb.tobytes())
                    buffer.pts, buffer.duration = count * Gst.SECOND // 30, Gst.SECOND // 30
                    appsrc.emit("push-buffer", buffer)
                    count += 1
    appsrc.emit("end-of-stream")
    pipeline.get_bus().timed_pop_filtered(600 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    return str(path)


RTSP_SERVER = """
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( filesrc location=%s ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )" % sys.argv[2])
server.get_mount_points().add_factory("/video", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
"""


@contextlib.contextmanager
def rtsp_camera(video: str) -> Iterator[str]:
    """``video`` served at real-time pace by an RTSP server on a free loopback port: its URI."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", RTSP_SERVER, str(port), video], stdout=subprocess.PIPE)
    try:
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit("the RTSP server did not start (gir1.2-gst-rtsp-server-1.0 missing?)")
        yield f"rtsp://127.0.0.1:{port}/video"
    finally:
        server.terminate()
        server.wait(timeout=10)


def live_video(videos: List[str], extractor_name: str, seconds: float, folder: Path) -> List[Dict]:
    """Real footage through ``asl-edge stream``: paced, unpaced, unpaced with a 1-thread network."""
    from asl_edge.cli import main as cli

    extractor = load_extractor(extractor_name)
    model = model_for(extractor, folder)
    described = {"extractor": extractor_name, "extractor_precision": extractor.precision,
                 "extractor_threads": getattr(extractor, "threads", None), "model_input_dim": extractor.dim}
    del extractor                                   # the command loads its own
    video = join_videos(videos, seconds, folder / "joined.mp4")
    threads = torch.get_num_threads()
    rows = []
    for mode, paced, network_threads in (("paced (RTSP camera)", True, None), ("unpaced", False, None),
                                         (f"unpaced, network on {threads} threads", False, threads)):
        torch.set_num_threads(threads)
        summary_path = folder / "summary.json"
        with rtsp_camera(video) if paced else contextlib.nullcontext(video) as source:
            code = cli(["stream", "--model", str(model), "--source", source, "--extractor", extractor_name,
                        "--out", str(folder / "events.jsonl"), "--summary", str(summary_path),
                        "--reconnect-attempts", "0", "--max-seconds", str(3 * seconds + 60),
                        *(["--network-threads", str(network_threads)] if network_threads else [])])
            used_threads = torch.get_num_threads()           # what the command chose (or was told)
        summary = json.loads(summary_path.read_text())
        rows.append({"case": "live video", "mode": mode, "exit_code": code, **described, "videos": videos,
                     "video_s": seconds, "torch_threads": used_threads,
                     "stream_s_per_wall_s": summary["stream_s_per_wall_s"], "wall_s": summary["wall_s"],
                     "frames": summary["frames"], "features": summary["features"],
                     "dropped_frames": summary["dropped_frames"], "stages": summary["stages"],
                     "decision_latency": summary["decision_latency"], "window": summary["window"],
                     "hop": summary["hop"]})
        stages = ", ".join(f"{k} {v['p50_ms']:.1f}/{v['p95_ms']:.1f} ms" for k, v in summary["stages"].items()
                           if v["p50_ms"] is not None)
        print(f"{mode} (network on {used_threads} torch threads): {summary['stream_s_per_wall_s']:.2f} stream-s "
              f"per wall-s, {summary['dropped_frames']} dropped, "
              f"p50/p95 {stages}", flush=True)
    torch.set_num_threads(threads)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--extractor", default="motion")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the generated video")
    parser.add_argument("--soak", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--video", nargs="+", default=None, metavar="VIDEO|DIR",
                        help="real videos to loop into one --seconds long 30 fps file and stream with --extractor")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="asl-edge-stream-") as folder:
        if args.throughput:
            results += throughput(args.extractor, args.seconds, Path(folder))
        if args.soak:
            results.append(soak(args.soak, Path(folder)))
        if args.video:
            results += live_video(args.video, args.extractor, args.seconds, Path(folder))
    emit_report({"benchmark": "stream", "cpu": cpu_name(), "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "results": results}, args.out)


if __name__ == "__main__":
    main()
