"""How much decode and resize choices move clip features: ``i3d-rgb`` features of videos read
through asl-edge's GStreamer source (the recipe of ``extract-features --fps native``) against
the same recipe on frames decoded by ffmpeg (scale the short side to 256, centre crop 224,
frames as decoded). Per-row cosine, min/median/mean, per video.

    python benchmarks/compare_decoders.py VIDEO [VIDEO ...] [--batch 8] [--out FILE]

Needs the ``ffmpeg`` command and the cached i3d-rgb weights (``asl-edge weights i3d``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import numpy as np
from timing import cpu_name, emit_report

from asl_edge.features import load_extractor
from asl_edge.features.extract import extract_video

SHORT_SIDE_256_CROP_224 = "scale='if(gt(iw,ih),-2,256)':'if(gt(iw,ih),256,-2)',crop=224:224"


def ffmpeg_features(path: str, extractor, batch: int) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-fps_mode", "passthrough", "-vf",
                          SHORT_SIDE_256_CROP_224, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 224, 224, 3)
    spec = extractor.clip
    clips = [frames[i:i + spec.num_frames] for i in range(0, len(frames) - spec.num_frames + 1, spec.frame_stride)]
    return np.concatenate([extractor.extract(np.stack(clips[i:i + batch])) for i in range(0, len(clips), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("compare_decoders.py needs the ffmpeg command (Debian: ffmpeg)")
    extractor = load_extractor("i3d-rgb")
    results = []
    for video in args.videos:
        ours, info = extract_video(video, extractor, fps=None, batch=args.batch)
        theirs = ffmpeg_features(video, extractor, args.batch)
        n = min(len(ours), len(theirs))
        cos = (ours[:n] * theirs[:n]).sum(1) / (np.linalg.norm(ours[:n], axis=1) * np.linalg.norm(theirs[:n], axis=1))
        results.append({"video": video, "rows_gstreamer": len(ours), "rows_ffmpeg": len(theirs),
                        "frames_gstreamer": info["frames"], "cosine_min": float(cos.min()),
                        "cosine_median": float(np.median(cos)), "cosine_mean": float(cos.mean())})
        print(f"{video}: cosine min {cos.min():.4f}, median {np.median(cos):.4f}", file=sys.stderr)
    emit_report({"benchmark": "compare_decoders", "cpu": cpu_name(), "results": results}, args.out)


if __name__ == "__main__":
    main()
