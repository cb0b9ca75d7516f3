"""Clips sampled evenly from videos, decoded through the package's own video path (the source and
clip schedule that extract-features and streaming use): calibration and parity inputs of
extractor exports, and test clips of the bench."""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np

from ..video import VideoError, open_source
from .base import ClipAssembler, ClipSpec, ExtractorError


def sample_clips(uri: str, spec: ClipSpec, count: int) -> np.ndarray:
    """Up to ``count`` clips ``uint8 [N, T, H, W, 3]`` spread evenly over the video at ``uri``
    (all of them when it has fewer), cut at ``spec``'s fps and geometry. Memory stays within
    2·``count`` clips however long the video: every ``step``-th clip is kept, and when twice
    ``count`` are kept, every other one is dropped and ``step`` doubles. VideoError when the video
    cannot be read, ExtractorError when it is shorter than one clip."""
    if count < 1:
        raise ExtractorError(f"need at least one clip to sample, got {count}")
    assembler = ClipAssembler(spec.num_frames, spec.frame_stride)
    kept: List[np.ndarray] = []
    step = 1
    with open_source(uri, geometry=spec.geometry, fps=spec.fps) as source:
        for frame in source:
            for _, clip in assembler.push(frame.rgb, frame.pts_s):
                if (assembler.clips_made - 1) % step == 0:
                    kept.append(clip.copy())
                    if len(kept) == 2 * count:
                        kept, step = kept[::2], 2 * step
    if not kept:
        raise ExtractorError(f"{uri}: {assembler.frames_seen} frames at {spec.fps:g} fps, fewer than one "
                             f"{spec.num_frames}-frame clip")
    chosen = np.unique(np.linspace(0, len(kept) - 1, min(count, len(kept))).round().astype(int))
    return np.stack([kept[i] for i in chosen])


def sample_videos(uris: Sequence[str], spec: ClipSpec, count: int, what: str) -> Tuple[np.ndarray, List[dict]]:
    """About ``count`` clips from ``uris`` together, an even share from each video, evenly within it,
    and per video ``{"video", "clips"}``. ExtractorError naming ``what`` (e.g. "--calibration")
    and the video when one cannot be read or is too short."""
    share = max(1, math.ceil(count / len(uris)))
    clips, used = [], []
    for uri in uris:
        try:
            sampled = sample_clips(uri, spec, share)
        except (VideoError, ExtractorError) as err:
            raise ExtractorError(f"{what}: {err}") from err
        clips.append(sampled)
        used.append({"video": uri, "clips": len(sampled)})
    return np.concatenate(clips), used
