"""Frame-rate conversion by timestamp: output frame k sits at ``t0 + k / fps`` and shows the input
frame nearest to that time. Repeated and skipped input frames are counted. A pause in the input
longer than ``max_gap_s`` is a *gap*: it is recorded, and its ticks are either left out (the
streaming runtime starts a new segment after it) or filled with the frames on either side of it
(offline extraction, whose features must stay on one regular grid)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Iterator, List, Optional, Tuple, TypeVar

T = TypeVar("T")


@dataclass
class ResampleCounts:
    duplicated: int = 0   # extra copies of input frames emitted
    dropped: int = 0      # input frames never emitted
    gap_ticks: int = 0    # output ticks inside input gaps, left out


class Resampler(Generic[T]):
    """Feed ``(pts_s, item)`` in timestamp order with :meth:`push`; each call yields the
    ``(tick_s, item)`` pairs that are decided; :meth:`finish` yields the rest at the end, up to
    the end of the last input frame (its pts plus ``last_duration_s`` or one input interval; a
    tick within half a frame of that end belongs to the frame that would follow). ``gaps``: the
    ``(from_s, to_s)`` input spans longer than ``max_gap_s`` without a frame; ``fill_gaps``: emit
    their ticks (as any other ticks) instead of leaving them out."""

    def __init__(self, fps: float, max_gap_s: float = 1.0, fill_gaps: bool = False):
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive finite number, got {fps!r}")
        self.fps = float(fps)
        self.max_gap_s = max_gap_s
        self.fill_gaps = fill_gaps
        self.counts = ResampleCounts()
        self.gaps: List[Tuple[float, float]] = []
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
        interval = pts_s - self._prev_pts
        if interval > self.max_gap_s:
            self.gaps.append((self._prev_pts + min(self._interval or 1.0 / self.fps, interval), pts_s))
        if interval > self.max_gap_s and not self.fill_gaps:  # finish the previous frame's own span, skip the rest
            yield from self._emit_until(self._prev_pts + 0.5 / self.fps)
            skip_to = math.ceil((pts_s - self._t0) * self.fps - 1e-9)
            self.counts.gap_ticks += max(0, skip_to - self._k)
            self._k = max(self._k, skip_to)
        else:
            yield from self._emit_until((self._prev_pts + pts_s) / 2)
            if interval <= self.max_gap_s:
                self._interval = interval
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
        duration = duration or 1.0 / self.fps
        # containers round timestamps (Matroska to the millisecond): the end of a 20 s file can read
        # 20.0003 s, and the tick at 20 s is not a frame of it
        yield from self._emit_until(self._prev_pts + duration - 0.5 * min(duration, 1.0 / self.fps))
        self._retire_prev()
        self._t0 = None
