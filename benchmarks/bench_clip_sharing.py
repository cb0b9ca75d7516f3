"""Less work per frame, measured: I3D's first layers once over a run of clips instead of per clip.

    python benchmarks/bench_clip_sharing.py [VIDEO|DIR ...] [--run 8] [--shared pool_3a,Mixed_3c,Mixed_4f] [--out FILE]

At 16-frame clips every 4 frames each frame goes through I3D four times. Up to ``pool_3a`` (and
through Mixed_3c) the network is at T/2, where clip i covers positions [2i, 2i + 8); after
``pool_4a`` at T/4, positions [i, i + 4). So the steps up to one of those points can run once
over a run of ``--run`` consecutive clips (4·(run - 1) + 16 frames), the remaining steps per clip
on its slice. Each clip's own zero padding at its edges is then replaced by its neighbours'
frames, so the features change: each variant reports its speed (PyTorch fp32, the same run of
clips) and the per-clip cosine to the per-clip features a model is trained on (min, median,
mean), against the int8 tolerance (mean >= 0.98, min >= 0.95). Videos: the given ones (i3d-rgb's
geometry and 30 fps, through ``asl_edge.video.open_source``), else a generated demo scene.
"""

from __future__ import annotations

import onnx  # noqa: F401  - before Gst.init (DESIGN §6)
import onnxruntime  # noqa: F401

import argparse
import time
from typing import Dict, List

import numpy as np
import torch
from timing import cpu_name, emit_report

from asl_edge.features import load_extractor
from asl_edge.features.extract import find_videos
from asl_edge.video import open_source

GENERATED = "test://demo?seed=1&seconds=10&live=0"
# where the shared part ends, and the grid there: positions per clip start (frames 4 apart), clip length
SPLITS = {"pool_3a": (2, 8), "Mixed_3c": (2, 8), "Mixed_4f": (1, 4)}


def frames_of(uri: str, extractor) -> np.ndarray:
    spec = extractor.clip
    with open_source(uri, geometry=spec.geometry, fps=spec.fps) as source:
        return np.stack([frame.rgb for frame in source])


def normalized(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> (B, 3, T, H, W) in [-1, 1], as the extractor feeds its network."""
    return torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def shared_features(network, frames: np.ndarray, split: str, run: int) -> np.ndarray:
    """Features of every clip, the steps through ``split`` run once per ``run`` clips."""
    steps = network.steps()
    cut = [name for name, _ in steps].index(split) + 1
    per_start, length = SPLITS[split]
    clips = (len(frames) - 16) // 4 + 1
    out = []
    with torch.inference_mode():
        for first in range(0, clips, run):
            count = min(run, clips - first)
            x = network.conv_1a(normalized(frames[None, 4 * first:4 * (first + count - 1) + 16]))
            for _, step in steps[:cut]:
                x = step(x)
            x = torch.cat([x[:, :, per_start * i:per_start * i + length] for i in range(count)])
            for _, step in steps[cut:]:
                x = step(x)
            out.append(x.mean(dim=(2, 3, 4)).numpy())
    return np.concatenate(out)


def cosines(got: np.ndarray, want: np.ndarray) -> Dict[str, float]:
    c = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return {"min_cosine": float(c.min()), "median_cosine": float(np.median(c)), "mean_cosine": float(c.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", help="video files or folders (default: a generated demo scene)")
    parser.add_argument("--run", type=int, default=8, help="clips per shared run (default 8)")
    parser.add_argument("--shared", default=",".join(SPLITS), help="steps to share through, comma list")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    extractor = load_extractor("i3d-rgb")
    uris = [uri for _, uri in find_videos(args.videos)] if args.videos else [GENERATED]
    videos = [frames_of(uri, extractor) for uri in uris]
    reference, seconds = [], 0.0
    for frames in videos:
        clips = np.stack([frames[4 * i:4 * i + 16] for i in range((len(frames) - 16) // 4 + 1)])
        start = time.perf_counter()
        reference.append(np.concatenate([extractor.extract(clips[i:i + args.run])
                                         for i in range(0, len(clips), args.run)]))
        seconds += time.perf_counter() - start
    total = sum(len(r) for r in reference)
    rows: List[Dict] = [{"case": "per clip", "clips": total, "clips_per_s": total / seconds}]
    print(f"per clip: {total / seconds:.2f} clips/s", flush=True)
    for split in args.shared.split(","):
        start = time.perf_counter()
        got = [shared_features(extractor.network, frames, split, args.run) for frames in videos]
        rate = total / (time.perf_counter() - start)
        quality = cosines(np.concatenate(got), np.concatenate(reference))
        passes = quality["mean_cosine"] >= 0.98 and quality["min_cosine"] >= 0.95
        rows.append({"case": f"shared through {split}, runs of {args.run} clips", "clips": total,
                     "clips_per_s": rate, "speed_vs_per_clip": rate * seconds / total, **quality,
                     "passes_int8_tolerance": passes})
        print(f"shared through {split}: {rate:.2f} clips/s, cosine min {quality['min_cosine']:.4f} mean "
              f"{quality['mean_cosine']:.4f} ({'passes' if passes else 'fails'} the tolerance)", flush=True)
    emit_report({"benchmark": "clip sharing", "cpu": cpu_name(), "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "videos": uris, "results": rows}, args.out)


if __name__ == "__main__":
    main()
