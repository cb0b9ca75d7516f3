"""The streaming runtime end to end: throughput, decision latency, memory over a long live run.

    python benchmarks/bench_stream.py --throughput [--extractor motion|i3d-rgb] [--seconds S] [--out FILE]
    python benchmarks/bench_stream.py --soak SECONDS [--out FILE]

``--throughput``: a generated video (GStreamer, 320x240, 30 fps, ``--seconds`` long) streamed
unpaced by 1, 2 and 4 streams at once: stream-seconds per wall-second, events, per-stage
latency, decision latency. ``--soak``: a live ``test://`` source at 30 fps for SECONDS with the
``motion`` extractor: RSS at start and end, drops, the stats every minute and the summary.
The network is a randomly initialised small ASL model for the extractor's features (the
throughput of the runtime does not depend on trained weights); default window/hop/guard.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Dict, List

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--extractor", default="motion")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the generated video")
    parser.add_argument("--soak", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="asl-edge-stream-") as folder:
        if args.throughput:
            results += throughput(args.extractor, args.seconds, Path(folder))
        if args.soak:
            results.append(soak(args.soak, Path(folder)))
    emit_report({"benchmark": "stream", "cpu": cpu_name(), "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "results": results}, args.out)


if __name__ == "__main__":
    main()
