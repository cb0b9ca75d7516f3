"""``asl-edge extract-features``: videos -> (T, C) clip-feature files in ActionFormer's layout, with
the same source and extractor code as live streaming.

For each video, ``OUT/<stem>.npy`` (float32, T x C), an entry in ``OUT/annotations.json`` (the
ActionFormer ``database`` skeleton: subset, fps, duration, no annotations yet, except for the
demo scene, whose script is its ground truth), and for the
folder ``OUT/features.yaml`` (a config fragment: input_dim, feat_stride, num_frames,
default_fps, folder and file layout, extractor name and weights hash) and ``OUT/extractor.json``
(the extractor's whole contract).
Frames after the last whole clip make no feature.

Several processes can share the work: under ``torchrun`` (one share per rank) or with ``--shard K/N``
(one command per host or array job) each takes its share of the videos by id
(:class:`asl_edge.sharding.Shard`) and adds its entries to the one ``annotations.json`` under a
lock on the folder, in the order of the inputs, so the folder ends as one process would leave it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..outputs import atomic_output, write_json
from ..sharding import ShardError, choose_shard, rank_device
from ..video import VideoError, open_source, parse_uri
from ..video.scene import SCENE_DEFAULTS, is_scene, make_script, scene_params
from .base import ClipAssembler, ClipExtractor, ExtractorError

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv"}
ANNOTATIONS = "annotations.json"
EXTRACTOR = "extractor.json"


def extract_video(uri: str, extractor: ClipExtractor, fps: Optional[float], batch: int = 8,
                  progress: bool = False, **source_options) -> Tuple[np.ndarray, Dict]:
    """Features ``float32 [T, dim]`` of one video and what was read: ``fps`` (the rate the clips
    were cut at: ``fps``, or the video's own with None), ``duration`` in seconds (from the
    timestamps), ``frames``, ``gaps`` (pauses in the timestamps longer than a second, as
    ``[from_s, to_s]`` from the first frame, filled with the frames on either side so that
    feature i stays at its time) and the source counters. Every frame is read: a live source
    that cannot wait (a camera, RTSP) is refused. ``source_options`` go to
    :func:`asl_edge.video.open_source`."""
    spec = extractor.clip
    assembler = ClipAssembler(spec.num_frames, spec.frame_stride)
    features: List[np.ndarray] = []
    pending: List[np.ndarray] = []
    with open_source(uri, geometry=spec.geometry, fps=fps or "native", fill_gaps=True, lossless=True,
                     **source_options) as source:
        bar = _frame_bar(progress, uri)
        first = None
        for frame in source:
            first = frame.pts_s if first is None else first
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
        gaps = [[round(a - first, 6), round(b - first, 6)] for a, b in source.gaps]
    if bar is not None:
        bar.close()
    frames = assembler.frames_seen
    if not features:
        raise ExtractorError(f"{uri}: {frames} frames, fewer than one {spec.num_frames}-frame clip")
    return np.concatenate(features).astype(np.float32), {"fps": float(rate), "duration": frames / float(rate),
                                                         "frames": frames, "gaps": gaps, "source": stats}


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
    :func:`source_id` gives it; ``ID=INPUT`` names the video ``ID`` (letters, digits, ``.``, ``_``
    and ``-``), e.g. to tell apart two files of one stem."""
    videos: List[Tuple[str, str]] = []
    for item in inputs:
        named = re.fullmatch(r"([A-Za-z0-9._-]+)=(.+)", item)
        if named and not Path(item).exists():
            videos.append((named.group(1), named.group(2)))
            continue
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
    """A file-name-safe video id for a source URI: ``demo_seed3_60s`` for a demo scene (with its
    size and rate when they are not the defaults: every option that changes the pictures), else
    the URI with every run of other characters than letters, digits, ``-`` and ``.`` made ``_``."""
    spec = parse_uri(uri)
    if is_scene(spec):
        p = scene_params(spec)
        size = "" if (p["width"], p["height"]) == (SCENE_DEFAULTS["width"], SCENE_DEFAULTS["height"]) \
            else f"_{int(p['width'])}x{int(p['height'])}"
        rate = "" if p["fps"] == SCENE_DEFAULTS["fps"] else f"_{p['fps']:g}fps"
        return f"demo_seed{int(p['seed'])}_{p['seconds']:g}s{size}{rate}"
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


@contextlib.contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on folder ``out``: the processes of a sharded run check and update
    its shared files one at a time."""
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record_video(out: Path, video_id: str, entry: Dict, order: Sequence[str], settings: Dict) -> Dict:
    """Put ``entry`` under ``video_id`` in ``out/annotations.json`` (read again under the folder
    lock, so entries other processes added stay) with the videos of ``order`` (the ids of the
    inputs) in that order after any others; returns the database written. When another process
    has since made the folder's features with other ``settings`` (``--overwrite``), the video's
    feature file is deleted and this is an ExtractorError."""
    with _folder_lock(out):
        recorded = json.loads((out / EXTRACTOR).read_text()) if (out / EXTRACTOR).is_file() else {}
        differences = settings_differences(recorded, settings)
        if differences:
            (out / f"{video_id}.npy").unlink(missing_ok=True)
            raise ExtractorError(f"another process now extracts into {out} with other settings "
                                 f"({'; '.join(differences)}): stopped, {video_id}.npy deleted")
        annotations = _read_annotations(out / ANNOTATIONS)
        database = {**annotations["database"], video_id: entry}
        position = {vid: i for i, vid in enumerate(order)}
        annotations["database"] = dict(sorted(database.items(), key=lambda item: position.get(item[0], -1)))
        write_json(annotations, out / ANNOTATIONS)
    return annotations["database"]


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
    write_json(folder_settings(extractor, fps), out / EXTRACTOR)


def folder_settings(extractor: ClipExtractor, fps: Optional[float]) -> Dict:
    """What a feature folder's features were made with (``extractor.json``): the extractor's
    contract and ``fps``, the rate the clips were cut at (None: each video's own)."""
    return {**extractor.describe(), "fps": fps}


def settings_differences(recorded: Dict, settings: Dict) -> List[str]:
    """The settings that change the features (all but the device), where ``recorded`` and
    ``settings`` differ, in words."""
    keys = [k for k in sorted(set(recorded) | set(settings)) if k != "device"]
    return [f"{k} {recorded.get(k)!r} (now {settings.get(k)!r})" for k in keys if recorded.get(k) != settings.get(k)]


def check_earlier_output(out: Path, settings: Dict, videos: List[Tuple[str, str]], overwrite: bool) -> Dict:
    """The folder's ``annotations.json`` to go on with. A folder made with other settings, or whose
    video of an id came from another source, is refused (ExtractorError listing what differs)
    unless ``overwrite``: then its features are deleted and every video is extracted again."""
    annotations = _read_annotations(out / ANNOTATIONS)
    database = annotations["database"]
    problems = []
    recorded_path = out / EXTRACTOR
    if recorded_path.is_file():
        try:
            recorded = json.loads(recorded_path.read_text())
        except ValueError as err:
            raise ExtractorError(f"{recorded_path} exists and is not valid JSON ({err}): move it away or fix it") \
                from err
        differences = settings_differences(recorded, settings)
        if differences:
            problems.append(f"its features were made with {'; '.join(differences)}")
    for video_id, uri in videos:
        earlier = database.get(video_id, {}).get("source")
        if earlier is not None and earlier != uri:
            problems.append(f"{video_id}.npy came from {earlier}, not {uri} (name it ID={uri} to keep both)")
    if not problems:
        return annotations
    if not overwrite:
        raise ExtractorError(f"{out} holds earlier features that do not match this run: {'; '.join(problems)}. "
                             "Use another --out, or --overwrite to extract every video again")
    for video_id in database:
        (out / f"{video_id}.npy").unlink(missing_ok=True)
    emptied = {**annotations, "database": {}}
    write_json(emptied, out / ANNOTATIONS)      # the other processes of a sharded run read it
    return emptied


def add_parser(sub) -> None:
    p = sub.add_parser("extract-features", help="videos -> clip-feature files (.npy) for training and infer",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="VIDEO|DIR|URI",
                   help="video files, folders of them, or source URIs (test://demo?seed=3 also writes the scene's "
                        "ground truth); ID=INPUT names a video's features ID.npy")
    p.add_argument("--out", required=True, help="folder for <video>.npy, annotations.json, features.yaml, "
                                                "extractor.json")
    p.add_argument("--extractor", default="i3d-rgb", help="i3d-rgb, motion, or an exported clip model's path")
    p.add_argument("--fps", default=None,
                   help="frame rate the clips are cut at: a number, or 'native' for each video's own "
                        "(default: the extractor's, e.g. 30 for i3d-rgb)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8, help="clips per extractor call")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    p.add_argument("--preset", default="auto", help="decoder preset: auto, software, jetson, nvidia")
    p.add_argument("--overwrite", action="store_true",
                   help="extract every video again when --out holds features made with other settings or sources "
                        "(they are deleted), or files of something else (left alone)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="extract shard K of N (K from 0) of the videos, split by id; under torchrun each rank takes "
                        "its own share without it. The shards share --out and leave it as one run would")
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
    """The command: every video of this process's share is tried; a failing one is named with its
    reason (exit 1). A re-run skips the videos done before with the same settings and source."""
    from ..outputs import OutputError, claim_output_folder
    from . import load_extractor

    if args.batch < 1:
        raise ExtractorError(f"--batch must be at least 1, got {args.batch}")
    videos = find_videos(args.inputs)
    if not videos:
        raise ExtractorError(f"no video files in {', '.join(args.inputs)}")
    ids: Dict[str, str] = {}
    for video_id, uri in videos:
        if video_id in ids:
            raise ExtractorError(f"{ids[video_id]} and {uri} would both write {video_id}.npy: name one, e.g. "
                                 f"{video_id}_2={uri}")
        ids[video_id] = uri
    try:
        shard = choose_shard(args.shard)
    except ShardError as err:
        raise ExtractorError(str(err)) from None
    out = Path(args.out)
    # under the folder's lock when it exists: the other shards write its shared files under it
    with _folder_lock(out) if out.is_dir() else contextlib.nullcontext():
        try:
            claim_output_folder(out, [EXTRACTOR, ANNOTATIONS, "features.yaml", "*.npy", "*.partial.*"],
                                args.overwrite, "extract-features")
        except OutputError as err:
            raise ExtractorError(str(err)) from err
    extractor = load_extractor(args.extractor, device=rank_device(args.device), precision=args.precision)
    fps = _parse_fps(args.fps, extractor)
    out.mkdir(parents=True, exist_ok=True)
    settings = folder_settings(extractor, fps)
    with _folder_lock(out):     # a shard started with other settings sees this one's extractor.json, and stops
        annotations = check_earlier_output(out, settings, videos, args.overwrite)
        write_config_fragment(out, extractor, fps)
    mine = shard.take(videos, key=lambda video: video[0])
    prefix = f"shard {shard}: " if shard.count > 1 else ""
    if shard.count > 1:
        print(f"{prefix}{len(mine)} of the {len(videos)} videos", file=sys.stderr)
    order = [video_id for video_id, _ in videos]
    failed = 0
    for i, (video_id, uri) in enumerate(mine, 1):
        target = out / f"{video_id}.npy"
        tag = f"{prefix}[{i}/{len(mine)}] {uri}"
        if target.is_file() and video_id in annotations["database"]:
            print(f"{tag}: done before with the same settings, skipped", file=sys.stderr)
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
        entry = {"subset": "training", "fps": info["fps"], "duration": round(info["duration"], 6),
                 "annotations": scene_annotations(uri), "source": uri,
                 **({"gaps": info["gaps"]} if info["gaps"] else {})}
        annotations["database"] = record_video(out, video_id, entry, order, settings)
        seconds = time.perf_counter() - start
        print(f"{tag}: {features.shape[0]} x {features.shape[1]} features from {info['frames']} frames at "
              f"{info['fps']:g} fps ({info['frames'] / seconds:.0f} frames/s)", file=sys.stderr)
        for begin, end in info["gaps"]:
            print(f"{tag}: warning: no frame from {begin:.2f} s to {end:.2f} s; the features there come from the "
                  "frames on either side, so that every later feature keeps its time", file=sys.stderr)
    if shard.count > 1:
        database = _read_annotations(out / ANNOTATIONS)["database"]          # the other shards' entries too
        done = sum(video_id in database for video_id in order)
        rest = "all of them" if done == len(order) else "the other shards' videos are still being extracted or failed"
        print(f"{prefix}finished; {out / ANNOTATIONS} lists {done} of the {len(order)} videos ({rest})",
              file=sys.stderr)
    if failed:
        print(f"{prefix}{failed} of {len(mine)} videos failed; the others are in {out}", file=sys.stderr)
        return 1
    return 0
