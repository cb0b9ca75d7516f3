"""Video decode and clip-feature extraction throughput.

    python benchmarks/bench_features.py [--device cpu|cuda|all] [--runs N] [--frames N] [--out FILE]

- decode: frames/s through ``asl_edge.video.open_source`` for each input kind — generated
  files (H.264 MP4, MPEG-4 AVI, VP8 WebM, MJPEG AVI; 640x480, 25 fps), the ``test://`` source
  unpaced through ``gst:`` — delivered at the i3d-rgb geometry (224x224) and at full size;
- extract: clips/s of each extractor (``motion``; ``i3d-rgb`` when its weights are cached) per
  device, precision and batch, median of ``--runs`` calls on random clips.
The media are generated with GStreamer into a temporary folder. JSON on stdout (and ``--out``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from timing import cpu_name, emit_report, time_runs

import asl_edge.video as video
from asl_edge.features import ExtractorError, load_extractor

ENCODERS = {
    "mp4-h264": ("x264enc speed-preset=ultrafast ! h264parse ! mp4mux", ".mp4"),
    "avi-mpeg4": ("avenc_mpeg4 ! avimux", ".avi"),
    "webm-vp8": ("vp8enc deadline=1 ! webmmux", ".webm"),
    "avi-mjpeg": ("jpegenc ! avimux", ".avi"),
}


def make_media(folder: Path, frames: int) -> Dict[str, str]:
    Gst = video.gst()
    made = {}
    for kind, (encoder, suffix) in ENCODERS.items():
        path = folder / f"{kind}{suffix}"
        pipeline = Gst.parse_launch(f"videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=I420,"
                                    f"width=640,height=480,framerate=25/1 ! {encoder} ! filesink location={path}")
        pipeline.set_state(Gst.State.PLAYING)
        pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        pipeline.set_state(Gst.State.NULL)
        made[kind] = str(path)
    made["gst-testsrc"] = (f"gst:videotestsrc num-buffers={frames} pattern=ball ! "
                           "video/x-raw,width=640,height=480,framerate=25/1")
    return made


def decode_case(kind: str, uri: str, geometry, runs: int) -> Dict:
    rates: List[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        with video.open_source(uri, geometry=geometry) as source:
            count = sum(1 for _ in source)
        rates.append(count / (time.perf_counter() - start))
    size = f"{geometry.width}x{geometry.height}" if geometry else "640x480"
    return {"case": "decode", "input": kind, "output": size, "frames": count,
            "frames_per_s_median": float(np.median(rates)), "runs": runs}


def extract_case(name: str, device: str, precision: str, batch: int, runs: int) -> Dict:
    try:
        extractor = load_extractor(name, device=device, precision=precision)
    except ExtractorError as err:
        return {"case": "extract", "extractor": name, "device": device, "precision": precision, "batch": batch,
                "skipped": str(err)}
    g = extractor.clip.geometry
    clips = np.random.default_rng(0).integers(0, 256, (batch, extractor.clip.num_frames, g.height, g.width, 3),
                                             dtype=np.uint8)
    timing = time_runs(lambda: extractor.extract(clips), 1, runs, cuda=device == "cuda")
    return {"case": "extract", "extractor": name, "device": device, "precision": precision, "batch": batch,
            **timing, "clips_per_s": 1000 * batch / timing["median_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=250, help="frames per generated video")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    results: List[Dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="asl-edge-bench-") as folder:
            for kind, uri in make_media(Path(folder), args.frames).items():
                for geometry in (video.Geometry(224, 224, 224 / 256), None):
                    results.append(decode_case(kind, uri, geometry, max(1, args.runs // 2)))
    except video.VideoError as err:             # a GPU machine without GStreamer: extraction only
        results.append({"case": "decode", "skipped": str(err)})
    for device in devices:
        for batch in (1, 8, 32):
            results.append(extract_case("motion", device, "fp32", batch, args.runs))
        for precision in (["fp32", "fp16"] if device == "cuda" else ["fp32"]):
            for batch in (1, 8):
                results.append(extract_case("i3d-rgb", device, precision, batch, args.runs))
    emit_report({"benchmark": "features", "cpu": cpu_name(), "torch": torch.__version__,
                 "gstreamer": video.video_report().get("gstreamer"), "threads": torch.get_num_threads(),
                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                 "results": results}, args.out)


if __name__ == "__main__":
    main()
