"""``asl-edge extract-features``: videos -> (T, C) clip-feature files in ActionFormer's layout, with
the same source and extractor code as live streaming.

For each video, ``OUT/<stem>.npy`` (float32, T x C), an entry in ``OUT/annotations.json`` (the
ActionFormer ``database`` skeleton: subset, fps, duration, no annotations yet, except for the
demo scene, whose script is its ground truth), and for the
folder ``OUT/features.yaml`` (a config fragment: input_dim, feat_stride, num_frames,
default_fps, folder and file layout, extractor name and weights hash) and ``OUT/extractor.json``
(the extractor's whole contract).
Frames after the last whole clip make no feature.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..outputs import atomic_output, write_json
from ..video import VideoError, open_source, parse_uri
from ..video.scene import is_scene, make_script, scene_params
from .base import ClipAssembler, ClipExtractor, ExtractorError

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv"}
ANNOTATIONS = "annotations.json"


def extract_video(uri: str, extractor: ClipExtractor, fps: Optional[float], batch: int = 8,
                  progress: bool = False, **source_options) -> Tuple[np.ndarray, Dict]:
    """Features ``float32 [T, dim]`` of one video and what was read: ``fps`` (the rate the clips
    were cut at: ``fps``, or the video's own with None), ``duration`` in seconds, ``frames``,
    and the source counters. ``source_options`` go to :func:`asl_edge.video.open_source`."""
    spec = extractor.clip
    assembler = ClipAssembler(spec.num_frames, spec.frame_stride)
    features: List[np.ndarray] = []
    pending: List[np.ndarray] = []
    with open_source(uri, geometry=spec.geometry, fps=fps, **source_options) as source:
        bar = _frame_bar(progress, uri)
        for frame in source:
            for _, clip in assembler.push(frame.rgb, frame.pts_s):
                pending.append(clip)
                if len(pending) == batch:
                    features.append(extractor.extract(np.stack(pending)))
                    pending.clear()
            if bar is not None:
                bar.update(1)
        if pending:
            features.append(extractor.extract(np.stack(pending)))
        rate = fps or source.native_fps
        stats = source.stats.as_dict()
    if bar is not None:
        bar.close()
    frames = assembler.frames_seen
    if not features:
        raise ExtractorError(f"{uri}: {frames} frames, fewer than one {spec.num_frames}-frame clip")
    if not rate:
        raise ExtractorError(f"{uri}: the video states no frame rate: pass --fps")
    return np.concatenate(features).astype(np.float32), {"fps": float(rate), "duration": frames / float(rate),
                                                         "frames": frames, "source": stats}


def scene_annotations(uri: str) -> List[Dict]:
    """The ground truth of a demo scene URI (its script); nothing for any other input."""
    spec = parse_uri(uri)
    if not is_scene(spec):
        return []
    p = scene_params(spec)
    return make_script(int(p["seed"]), p["seconds"]).annotations()


def _frame_bar(enabled: bool, uri: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(desc=Path(uri).name, unit="frame", dynamic_ncols=True, leave=False, file=sys.stderr)


def find_videos(inputs: List[str]) -> List[Tuple[str, str]]:
    """``(video id, uri)`` of every input: a file's id is its stem (folders give their video
    files, sorted); a URI (``test://demo?seed=3``, ``rtsp://...``) is read as it is, with the id
    :func:`source_id` gives it."""
    videos: List[Tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if "://" in item or item.startswith("gst:"):
            videos.append((source_id(item), item))
        elif path.is_dir():
            videos.extend((p.stem, str(p)) for p in sorted(path.iterdir())
                          if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            videos.append((path.stem, item))
    return videos


def source_id(uri: str) -> str:
    """A file-name-safe video id for a source URI: ``demo_seed3`` for a demo scene, else the URI
    with every run of other characters than letters, digits, ``-`` and ``.`` made ``_``."""
    spec = parse_uri(uri)
    if is_scene(spec):
        return f"demo_seed{int(scene_params(spec)['seed'])}"
    return re.sub(r"[^A-Za-z0-9.-]+", "_", uri).strip("_")


def _read_annotations(path: Path) -> Dict:
    if not path.is_file():
        return {"database": {}}
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ExtractorError(f"{path} exists and is not valid JSON ({err}): move it away or fix it") from err
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise ExtractorError(f"{path} exists and has no 'database' object: move it away or fix it")
    return data


def write_config_fragment(out: Path, extractor: ClipExtractor, fps: Optional[float]) -> None:
    """``features.yaml`` (dataset keys for ``asl-edge train``) and ``extractor.json``."""
    spec = extractor.clip
    default_fps = "null  # each video's own fps (--fps native): annotations.json has it" if fps is None else f"{fps:g}"
    text = ("# clip features by asl-edge extract-features; merge into a training config\n"
            "# (fill in the annotations and class names first)\n"
            "dataset:\n"
            f"  json_file: {json.dumps(str(out / ANNOTATIONS))}\n"
            f"  feat_folder: {json.dumps(str(out))}\n"
            "  file_ext: .npy\n"
            f"  input_dim: {extractor.dim}\n"
            f"  feat_stride: {spec.frame_stride}\n"
            f"  num_frames: {spec.num_frames}\n"
            f"  default_fps: {default_fps}\n"
            f"  extractor: {json.dumps(extractor.name)}\n"
            f"  extractor_weights_sha256: {json.dumps(extractor.weights_sha256)}\n")
    with atomic_output(out / "features.yaml") as tmp:
        tmp.write_text(text)
    write_json({**extractor.describe(), "fps": fps}, out / "extractor.json")


def add_parser(sub) -> None:
    p = sub.add_parser("extract-features", help="videos -> clip-feature files (.npy) for training and infer",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="VIDEO|DIR|URI",
                   help="video files, folders of them, or source URIs (test://demo?seed=3&live=0 also writes "
                        "the scene's ground truth)")
    p.add_argument("--out", required=True, help="folder for <video>.npy, annotations.json, features.yaml")
    p.add_argument("--extractor", default="i3d-rgb", help="i3d-rgb, motion, or an exported clip model's path")
    p.add_argument("--fps", default=None,
                   help="frame rate the clips are cut at: a number, or 'native' for each video's own "
                        "(default: the extractor's, e.g. 30 for i3d-rgb)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8, help="clips per extractor call")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    p.add_argument("--preset", default="auto", help="decoder preset: auto, software, jetson, nvidia")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _parse_fps(value: Optional[str], extractor: ClipExtractor) -> Optional[float]:
    from ..postprocess import positive_number

    if value is None:
        return extractor.clip.fps
    if value == "native":
        return None
    try:
        return positive_number(float(value), "--fps")
    except ValueError as err:
        raise ExtractorError(f"--fps takes a positive number or 'native', got {value!r}") from err


def run(args) -> int:
    """The command: every video is tried; a failing one is named with its reason (exit 1)."""
    from . import load_extractor

    if args.batch < 1:
        raise ExtractorError(f"--batch must be at least 1, got {args.batch}")
    videos = find_videos(args.inputs)
    if not videos:
        raise ExtractorError(f"no video files in {', '.join(args.inputs)}")
    ids: Dict[str, str] = {}
    for video_id, uri in videos:
        if video_id in ids:
            raise ExtractorError(f"{ids[video_id]} and {uri} would both write {video_id}.npy: rename one")
        ids[video_id] = uri
    extractor = load_extractor(args.extractor, device=args.device, precision=args.precision)
    fps = _parse_fps(args.fps, extractor)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    annotations = _read_annotations(out / ANNOTATIONS)
    write_config_fragment(out, extractor, fps)
    failed = 0
    for i, (video_id, uri) in enumerate(videos, 1):
        target = out / f"{video_id}.npy"
        tag = f"[{i}/{len(videos)}] {uri}"
        if target.is_file() and video_id in annotations["database"]:
            print(f"{tag}: done before, skipped", file=sys.stderr)
            continue
        start = time.perf_counter()
        try:
            features, info = extract_video(uri, extractor, fps, batch=args.batch,
                                           progress=not args.no_progress, preset=args.preset)
        except (VideoError, ExtractorError) as err:
            failed += 1
            print(f"{tag}: error: {err}", file=sys.stderr)
            continue
        with atomic_output(target) as tmp:
            np.save(tmp, features)
        annotations["database"][video_id] = {"subset": "training", "fps": info["fps"],
                                             "duration": round(info["duration"], 6),
                                             "annotations": scene_annotations(uri)}
        write_json(annotations, out / ANNOTATIONS)
        seconds = time.perf_counter() - start
        print(f"{tag}: {features.shape[0]} x {features.shape[1]} features from {info['frames']} frames at "
              f"{info['fps']:g} fps ({info['frames'] / seconds:.0f} frames/s)", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(videos)} videos failed; the others are in {out}", file=sys.stderr)
        return 1
    return 0
