"""Frame-rate conversion by timestamp: output frame k sits at ``t0 + k / fps`` and shows the input
frame nearest to that time. Repeated and skipped input frames are counted, and a gap in the
input longer than ``max_gap_s`` is not filled with copies (the ticks inside it are skipped)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Iterator, Optional, TypeVar

T = TypeVar("T")


@dataclass
class ResampleCounts:
    duplicated: int = 0   # extra copies of input frames emitted
    dropped: int = 0      # input frames never emitted
    gap_ticks: int = 0    # output ticks inside input gaps, left out


class Resampler(Generic[T]):
    """Feed ``(pts_s, item)`` in timestamp order with :meth:`push`; each call yields the
    ``(tick_s, item)`` pairs that are decided; :meth:`finish` yields the rest at the end, up to
    the end of the last input frame (its pts plus ``last_duration_s`` or one input interval)."""

    def __init__(self, fps: float, max_gap_s: float = 1.0):
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive finite number, got {fps!r}")
        self.fps = float(fps)
        self.max_gap_s = max_gap_s
        self.counts = ResampleCounts()
        self._t0: Optional[float] = None
        self._k = 0
        self._prev: Optional[T] = None
        self._prev_pts = 0.0
        self._prev_uses = 0
        self._interval = 0.0

    def _tick(self) -> float:
        return self._t0 + self._k / self.fps

    def _retire_prev(self) -> None:
        if self._prev_uses == 0:
            self.counts.dropped += 1
        else:
            self.counts.duplicated += self._prev_uses - 1

    def push(self, pts_s: float, item: T) -> Iterator:
        if self._t0 is None:
            self._t0, self._prev, self._prev_pts = pts_s, item, pts_s
            return
        if pts_s <= self._prev_pts:             # a repeated timestamp: the newer frame replaces the older
            self._retire_prev()
            self._prev, self._prev_uses = item, 0
            return
        self._interval = pts_s - self._prev_pts
        if self._interval > self.max_gap_s:     # a gap: finish the previous frame's own span, skip the rest
            yield from self._emit_until(self._prev_pts + 0.5 / self.fps)
            skip_to = math.ceil((pts_s - self._t0) * self.fps - 1e-9)
            self.counts.gap_ticks += max(0, skip_to - self._k)
            self._k = max(self._k, skip_to)
        else:
            yield from self._emit_until((self._prev_pts + pts_s) / 2)
        self._retire_prev()
        self._prev, self._prev_pts, self._prev_uses = item, pts_s, 0

    def _emit_until(self, boundary: float) -> Iterator:
        while self._tick() < boundary - 1e-9:
            self._prev_uses += 1
            yield self._tick(), self._prev
            self._k += 1

    def finish(self, last_duration_s: Optional[float] = None) -> Iterator:
        if self._t0 is None:
            return
        duration = last_duration_s if last_duration_s and last_duration_s > 0 else self._interval
        yield from self._emit_until(self._prev_pts + (duration or 1.0 / self.fps))
        self._retire_prev()
        self._t0 = None
