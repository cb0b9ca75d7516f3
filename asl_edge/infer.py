"""``asl-edge infer``: actions in pre-extracted clip-feature files, through the Localizer, as
ActivityNet result JSON."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from .errors import CommandError


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="localize actions in pre-extracted clip features (T x C: .npy, .npz, .h5)")
    p.add_argument("--ckpt", required=True, help="asl-edge checkpoint (.pt)")
    p.add_argument("--features", required=True, nargs="+",
                   help="one (T, C) feature file per video (.npy, .npz or .h5); the file stem is the video id, "
                        "so two files may not share a stem")
    p.add_argument("--fps", type=float, default=None,
                   help="the videos' frame rate; used only when the config has no dataset.default_fps, which "
                        "otherwise applies (ActionFormer's rule)")
    p.add_argument("--duration", type=float, nargs="+", default=None,
                   help="video length in seconds, one per feature file in the same order, long enough for its "
                        "features (default: the span of each file's features)")
    p.add_argument("--out", default=None, help="file: ActivityNet result JSON (default: stdout); not written "
                                               "when every feature file fails")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from .localizer import FeatureError, Localizer, check_duration, video_ids
    from .outputs import activitynet_results, check_output_file, write_json
    from .model import CheckpointError
    from .postprocess import positive_number, resolve_fps
    from .train.datasets import DatasetError, read_features

    paths = [Path(p) for p in args.features]
    durations: List[Optional[float]] = [None] * len(paths)
    if args.duration is not None:
        if len(args.duration) != len(paths):
            raise CommandError(f"--duration gives {len(args.duration)} value(s) for {len(paths)} feature files: give "
                               "one per file, in the same order (or leave it out: each video then spans its features)")
        try:
            durations = [positive_number(d, "--duration") for d in args.duration]
        except ValueError as err:
            raise CommandError(str(err)) from err
    try:
        ids = video_ids(paths)
        if args.out:
            check_output_file(args.out, inputs=paths)
    except (ValueError, OSError) as err:
        raise CommandError(str(err)) from err
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    if len(missing) == len(paths):
        raise CommandError("; ".join(f"feature file {path} does not exist" for path in paths))
    try:
        localizer = Localizer.from_checkpoint(args.ckpt, device=args.device)
    except (CheckpointError, ValueError) as err:
        raise CommandError(str(err)) from err
    for i in missing:                                   # reported before any fps question
        print(f"[{i + 1}/{len(paths)}] {paths[i]}: error: feature file {paths[i]} does not exist", file=sys.stderr)
    default_fps = localizer.config.dataset.default_fps
    if default_fps is None and args.fps is None:
        raise CommandError("--fps is required: the checkpoint's config has no dataset.default_fps")
    try:
        fps = resolve_fps(default_fps, args.fps)
    except ValueError as err:
        raise CommandError(str(err)) from err
    if args.fps is not None and args.fps != fps:
        print(f"note: --fps {args.fps:g} is not used: the model's config sets dataset.default_fps = {fps:g}, "
              "the rate its features are extracted at (ActionFormer's rule)", file=sys.stderr)
    detections: Dict[str, List[Dict]] = {}
    failures = len(missing)
    for i, (path, video, duration) in enumerate(zip(paths, ids, durations)):
        if i in missing:
            continue
        try:
            feats = read_features(path)
            if duration is not None:
                check_duration(duration, len(feats), localizer.config, fps)
            start = time.perf_counter()
            detections[video] = localizer.detect(feats, fps=fps, duration=duration)
            elapsed = time.perf_counter() - start
        except (DatasetError, FeatureError) as err:
            failures += 1
            print(f"[{i + 1}/{len(paths)}] {path}: error: {err}", file=sys.stderr)
            continue
        print(f"[{i + 1}/{len(paths)}] {video}: {len(detections[video])} detections "
              f"({elapsed * 1000:.0f} ms)", file=sys.stderr)
    if not detections:
        print(f"all {len(paths)} feature files failed: nothing written", file=sys.stderr)
        return 1
    results = activitynet_results(detections)
    if args.out:
        write_json(results, args.out)
        print(f"wrote {args.out} ({len(detections)} videos)", file=sys.stderr)
    else:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    if failures:
        print(f"{failures} of {len(paths)} feature files failed", file=sys.stderr)
        return 1
    return 0
