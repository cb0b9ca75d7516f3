"""``motion``: a cheap, deterministic clip descriptor with no weights (colour and frame-difference
statistics on a spatial grid). It keeps real time on a 2-core CPU; tests and the demo use it."""

from __future__ import annotations

import numpy as np

from ..video import Geometry
from .base import ClipExtractor, ClipSpec

GRID = 4                 # GRID x GRID cells
DIFF_THRESHOLD = 12.0    # |frame difference| above this counts as a moving pixel (0-255 scale)
STATS = 7                # per cell: mean R, G, B; intensity std; mean |diff|; moving fraction; drift


class MotionExtractor(ClipExtractor):
    """Per cell of a 4x4 grid over a 64x48 frame, over the clip's 8 frames (15 fps, a clip every
    4 frames): mean R, G, B; standard deviation of intensity; mean absolute frame difference;
    fraction of moving pixels; drift of the cell's mean intensity from the first to the last
    frame. 112 values, each roughly in [-1, 1]; a static scene gives zeros in the motion ones."""

    name = "motion"

    def __init__(self, device: str = "cpu", precision: str = "fp32"):
        self.clip = ClipSpec(num_frames=8, frame_stride=4, fps=15.0, geometry=Geometry(64, 48, 1.0))
        self.dim = GRID * GRID * STATS
        self.device, self.precision = "cpu", "fp32"    # numpy on the CPU whatever is asked

    def _extract(self, clips: np.ndarray) -> np.ndarray:
        b, t, h, w, _ = clips.shape
        x = clips.astype(np.float32) / 255.0                                   # (B, T, H, W, 3)
        cells = x.reshape(b, t, GRID, h // GRID, GRID, w // GRID, 3)           # (B, T, gy, ch, gx, cw, 3)
        gray = x.mean(axis=-1)                                                 # (B, T, H, W)
        gcells = gray.reshape(b, t, GRID, h // GRID, GRID, w // GRID)
        colour = cells.mean(axis=(1, 3, 5))                                    # (B, gy, gx, 3)
        spread = gcells.std(axis=(1, 3, 5))                                    # (B, gy, gx)
        diff = np.abs(np.diff(gcells, axis=1)) if t > 1 else np.zeros_like(gcells)
        moving = (diff > DIFF_THRESHOLD / 255.0).mean(axis=(1, 3, 5))          # (B, gy, gx)
        energy = np.minimum(diff.mean(axis=(1, 3, 5)) * 8.0, 1.0)              # (B, gy, gx)
        means = gcells.mean(axis=(3, 5))                                       # (B, T, gy, gx)
        drift = (means[:, -1] - means[:, 0]) * 4.0
        out = np.concatenate([colour.reshape(b, -1), spread.reshape(b, -1) * 4.0, energy.reshape(b, -1),
                              moving.reshape(b, -1), np.clip(drift, -1.0, 1.0).reshape(b, -1)], axis=1)
        return out.astype(np.float32)
