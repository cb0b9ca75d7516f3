"""Video decode and clip-feature extraction throughput.

    python benchmarks/bench_features.py [--device cpu|cuda|all] [--runs N] [--frames N] [--exports] [--out FILE]

- decode: frames/s through ``asl_edge.video.open_source`` for each input kind — generated
  files (H.264 MP4, MPEG-4 AVI, VP8 WebM, MJPEG AVI; 640x480, 25 fps), the ``test://`` source
  unpaced through ``gst:`` — delivered at the i3d-rgb geometry (224x224) and at full size;
- extract: clips/s of each extractor (``motion``; ``i3d-rgb`` when its weights are cached) per
  device, precision and batch, median of ``--runs`` calls on random clips;
- ``--exports``: i3d-rgb exported as TorchScript (fp16 on CUDA, fp32 on the CPU) timed the same
  way, with its cosine to the fp32 CPU extractor on those clips, and exported as ONNX in the same
  precision; the commands that make the ONNX clip model and its TensorRT engine (``trtexec``, on a
  Jetson or a GPU box) are printed and recorded. The CPU's fast path (OpenVINO bf16/int8) is ``asl-edge bench --stages features``.
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


def random_clips(extractor, batch: int) -> np.ndarray:
    g = extractor.clip.geometry
    return np.random.default_rng(0).integers(0, 256, (batch, extractor.clip.num_frames, g.height, g.width, 3),
                                             dtype=np.uint8)


def extract_case(name: str, device: str, precision: str, batch: int, runs: int) -> Dict:
    try:
        extractor = load_extractor(name, device=device, precision=precision)
    except ExtractorError as err:
        return {"case": "extract", "extractor": name, "device": device, "precision": precision, "batch": batch,
                "skipped": str(err)}
    clips = random_clips(extractor, batch)
    timing = time_runs(lambda: extractor.extract(clips), 1, runs, cuda=device == "cuda")
    print(f"{name} {precision} on {device}, batch {batch}: {1000 * batch / timing['median_ms']:.1f} clips/s", flush=True)
    return {"case": "extract", "extractor": name, "device": device, "precision": precision, "batch": batch,
            **timing, "clips_per_s": 1000 * batch / timing["median_ms"]}


def export_cases(device: str, runs: int, folder: Path) -> List[Dict]:
    """i3d-rgb as TorchScript on ``device`` (timed, with its cosine to the fp32 CPU extractor) and
    as ONNX (the trtexec line), fp16 on CUDA, fp32 on the CPU."""
    from asl_edge.export.extractor_export import export_extractor, trtexec_command
    from asl_edge.export.spec import ExportError

    precision = "fp16" if device == "cuda" else "fp32"
    rows: List[Dict] = []
    try:
        reference = load_extractor("i3d-rgb")
        summary = export_extractor("i3d-rgb", "torchscript", folder / "torchscript", precision=precision,
                                   device=device, parity=False)
        exported = load_extractor(str(folder / "torchscript"), device=device)
    except (ExtractorError, ExportError) as err:
        return [{"case": "torchscript export", "device": device, "precision": precision, "skipped": str(err)}]
    for batch in (1, 8):
        clips = random_clips(exported, batch)
        timing = time_runs(lambda: exported.extract(clips), 1, runs, cuda=device == "cuda")
        got, want = exported.extract(clips), reference.extract(clips)
        cosine = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
        rows.append({"case": "extract", "extractor": "i3d-rgb TorchScript export", "device": device,
                     "precision": precision, "batch": batch, **timing, "clips_per_s": 1000 * batch / timing["median_ms"],
                     "min_cosine_vs_fp32_cpu": float(cosine.min()), "export_seconds": summary["export_seconds"]})
        print(f"i3d-rgb TorchScript {precision} on {device}, batch {batch}: {rows[-1]['clips_per_s']:.1f} clips/s, "
              f"min cosine {cosine.min():.5f}", flush=True)
    line = (f"asl-edge export --extractor i3d-rgb --format onnx --precision {precision} --batch 8 --out i3d-onnx && "
            + trtexec_command(Path("i3d-onnx/i3d-rgb.onnx"), reference, 8, precision))
    try:                                         # that the export works here (it needs onnx and onnxscript)
        summary = export_extractor("i3d-rgb", "onnx", folder / "onnx", precision=precision, batch=8, parity=False)
        rows.append({"case": "onnx export", "precision": precision, "size_bytes": summary["size_bytes"],
                     "export_seconds": summary["export_seconds"], "trtexec": line})
    except ExportError as err:
        rows.append({"case": "onnx export", "precision": precision, "skipped": str(err).splitlines()[0],
                     "trtexec": line})
    print(f"TensorRT engine of the ONNX clip model: {line}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=250, help="frames per generated video")
    parser.add_argument("--exports", action="store_true",
                        help="also time i3d-rgb's TorchScript export and print the ONNX clip model's trtexec line")
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
        if args.exports:
            with tempfile.TemporaryDirectory(prefix="asl-edge-i3d-") as folder:
                results += export_cases(device, args.runs, Path(folder))
    emit_report({"benchmark": "features", "cpu": cpu_name(), "torch": torch.__version__,
                 "gstreamer": video.video_report().get("gstreamer"), "threads": torch.get_num_threads(),
                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                 "results": results}, args.out)


if __name__ == "__main__":
    main()
