"""Mapping between the feature grid and seconds (DESIGN §3)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from torch import Tensor


def positive_number(value, name: str) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is a positive finite number
    (fps and durations: NaN, inf, 0, negatives, booleans and strings are refused)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return number


def resolve_fps(default_fps: Optional[float], video_fps: Optional[float] = None) -> float:
    """The frame rate that maps a video's feature grid to seconds, by ActionFormer's rule: the
    config's ``dataset.default_fps`` when it is set (the features were extracted at that rate),
    the video's own fps only otherwise. ValueError when there is none or it is not a positive
    finite number."""
    if default_fps is not None:
        return positive_number(default_fps, "dataset.default_fps")
    if video_fps is None:
        raise ValueError("no fps: the config has no dataset.default_fps and the video's fps was not given")
    return positive_number(video_fps, "fps")


@dataclass(frozen=True)
class FeatureGrid:
    """Where feature i sits in a video: it covers frames [i·feat_stride, i·feat_stride + num_frames),
    so its centre is at ``(i·feat_stride + num_frames / 2) / fps`` seconds."""

    feat_stride: float
    num_frames: float
    fps: float

    def to_seconds(self, segs: Tensor, duration: float) -> Tensor:
        """Grid units -> seconds, clamped to [0, duration]."""
        return grid_to_seconds(segs, self.feat_stride, self.num_frames, self.fps, duration)


def grid_to_seconds(segs: Tensor, feat_stride: float, num_frames: float, fps: float, duration: float) -> Tensor:
    """``sec = (x·feat_stride + 0.5·num_frames) / fps``, clamped to [0, duration]."""
    return ((segs * feat_stride + 0.5 * num_frames) / fps).clamp(min=0.0, max=duration)


def seconds_to_grid(seconds: Tensor, feat_stride: float, num_frames: float, fps: float) -> Tensor:
    """Inverse of :func:`grid_to_seconds` without the clamp."""
    return (seconds * fps - 0.5 * num_frames) / feat_stride


def video_grid(num_features: int, feat_stride: float, num_frames: float, fps: float,
               downsample_rate: int = 1, upsample_to: int = 0) -> FeatureGrid:
    """Effective grid of a video's features after the dataset's resampling.

    ``downsample_rate`` > 1 keeps every n-th feature (the stride grows); ``upsample_to`` > 0
    resizes the sequence to that many features, which then tile the span the original features
    covered (ActivityNet-style fixed-length inputs).
    """
    if upsample_to > 0:
        stride = ((num_features - 1) * feat_stride + num_frames) / upsample_to
        return FeatureGrid(feat_stride=stride, num_frames=stride, fps=fps)
    return FeatureGrid(feat_stride=feat_stride * downsample_rate, num_frames=num_frames, fps=fps)


def default_duration(num_features: int, feat_stride: float, num_frames: float, fps: float) -> float:
    """Length in seconds spanned by ``num_features`` clip features (used when none is given)."""
    return ((num_features - 1) * feat_stride + num_frames) / fps

