"""The clip-extractor interface and the clip schedule shared by offline extraction and streaming.

An extractor declares what it consumes — ``num_frames`` frames per clip, a clip every
``frame_stride`` frames, at ``fps``, each frame cropped/scaled as ``geometry`` says — and turns a
batch of clips ``uint8 [B, T, H, W, 3]`` into features ``float32 [B, D]``. Feature i covers frames
``[i·frame_stride, i·frame_stride + num_frames)``, the grid ``asl_edge.postprocess`` maps back
to seconds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Deque, Iterator, Optional

import numpy as np

from ..errors import UserError
from ..video import Geometry


class ExtractorError(UserError, RuntimeError):
    """An extractor that cannot be built or run as asked (missing weights, bad input shape)."""


@dataclass(frozen=True)
class ClipSpec:
    """What an extractor consumes: clips of ``num_frames`` frames starting every ``frame_stride``
    frames of a video at ``fps``, each frame cropped and scaled as ``geometry`` says."""

    num_frames: int
    frame_stride: int
    fps: float
    geometry: Geometry


class ClipExtractor(ABC):
    """Clips -> features. Subclasses set ``name``, ``clip``, ``dim``, ``device``, ``precision`` and
    ``weights_sha256`` (None without weights) and implement :meth:`extract`."""

    name: str = ""
    clip: ClipSpec
    dim: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    weights_sha256: Optional[str] = None

    @abstractmethod
    def _extract(self, clips: np.ndarray) -> np.ndarray:
        """uint8 [B, T, H, W, 3] (already checked) -> float32 [B, D]."""

    def extract(self, clips: np.ndarray) -> np.ndarray:
        """Features ``float32 [B, dim]`` of a batch of clips ``uint8 [B, num_frames, H, W, 3]``."""
        clips = np.asarray(clips)
        g = self.clip.geometry
        expected = (self.clip.num_frames, g.height, g.width, 3)
        if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[1:] != expected:
            raise ExtractorError(f"{self.name} takes uint8 clips [B, {', '.join(map(str, expected))}], got "
                                 f"{clips.dtype} {list(clips.shape)}")
        if clips.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._extract(clips)

    def describe(self) -> dict:
        """The extractor's contract as plain data (recorded next to features and in exports)."""
        g = self.clip.geometry
        return {"name": self.name, "num_frames": self.clip.num_frames, "frame_stride": self.clip.frame_stride,
                "fps": self.clip.fps, "width": g.width, "height": g.height, "crop": g.crop, "dim": self.dim,
                "device": str(self.device), "precision": self.precision, "weights_sha256": self.weights_sha256}


class ClipAssembler:
    """Cuts a frame sequence into clips: after frame ``num_frames - 1 + i·frame_stride`` it hands
    out clip i, frames ``[i·frame_stride, i·frame_stride + num_frames)``, with the time of its
    first frame. Frames after the last whole clip make no clip.

    Each frame is copied once, into a uint8 ring of ``capacity`` frames; a clip is a read-only
    view of ``num_frames`` consecutive frames of it (no copy per clip, though clips overlap by
    ``num_frames - frame_stride`` frames; default capacity 4·(num_frames + frame_stride)). A full
    ring is not overwritten: the next frames go to a fresh one that starts with the last
    ``num_frames - 1`` frames, so a clip still queued somewhere never changes under its consumer;
    the old ring is freed with the last such clip."""

    def __init__(self, num_frames: int, frame_stride: int, capacity: int = 0):
        if num_frames < 1 or frame_stride < 1:
            raise ExtractorError(f"clips need num_frames >= 1 and frame_stride >= 1, got {num_frames}, {frame_stride}")
        self.num_frames, self.frame_stride = num_frames, frame_stride
        self.capacity = max(capacity or 4 * (num_frames + frame_stride), num_frames)
        self._ring: Optional[np.ndarray] = None
        self._filled = 0                              # frames of the ring in use
        self._times: Deque[float] = deque(maxlen=num_frames)
        self.frames_seen = 0

    def push(self, rgb: np.ndarray, pts_s: float = 0.0) -> Iterator[tuple]:
        """Add one frame; yields ``(start_s, clip uint8 [T, H, W, 3])`` when a clip completes."""
        rgb = np.asarray(rgb)
        if self._ring is None:
            self._ring = np.empty((self.capacity, *rgb.shape), np.uint8)
        elif rgb.shape != self._ring.shape[1:]:
            raise ExtractorError(f"a frame of shape {list(rgb.shape)} after frames of {list(self._ring.shape[1:])}: "
                                 "clips need frames of one size")
        if self._filled == self.capacity:
            keep = self.num_frames - 1
            ring = np.empty_like(self._ring)
            ring[:keep] = self._ring[self.capacity - keep:]
            self._ring, self._filled = ring, keep
        self._ring[self._filled] = rgb
        self._filled += 1
        self._times.append(pts_s)
        self.frames_seen += 1
        last = self.frames_seen - 1
        if last >= self.num_frames - 1 and (last - self.num_frames + 1) % self.frame_stride == 0:
            clip = self._ring[self._filled - self.num_frames:self._filled]
            clip.flags.writeable = False
            yield self._times[0], clip

    @property
    def clips_made(self) -> int:
        if self.frames_seen < self.num_frames:
            return 0
        return (self.frames_seen - self.num_frames) // self.frame_stride + 1
