"""Cross-window merging and finalization of one stream's detections (DESIGN §5.2).

Windows overlap, so one action is usually detected by several windows. Each detection of a
window is *pending* until the newest window's end has moved past it by more than the guard band
(the context a later window could still improve it with); then it is *final* and emitted once.

Two detections of the same class from different windows whose overlap covers ``merge_overlap``
of the shorter one are copies of one action. They merge side by side: the start comes from the
copy whose start lay further inside its window, the end likewise, the score from the copy with
the most context on its worse side — so an action cut by one window's end and another's start
comes out whole. A detection joins its closest copy (by IoU) among pending and emitted ones; if
that copy was already emitted, it is dropped. A window's own
detections are kept as its NMS left them, so one window gives what offline inference gives.
A window edge that is the stream's own start or end cuts nothing (its margin is infinite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List


@dataclass
class Candidate:
    """One (possibly merged) detection in stream seconds; ``start_margin``/``end_margin``: seconds
    between its start/end and the edge of the window each came from."""

    label: str
    label_id: int
    start: float
    end: float
    score: float
    start_margin: float
    end_margin: float
    windows: frozenset

    def covers(self, other: "Candidate") -> float:
        """Overlap over the shorter of the two segments."""
        inter = max(0.0, min(self.end, other.end) - max(self.start, other.start))
        shorter = min(self.end - self.start, other.end - other.start)
        return inter / shorter if shorter > 0 else float(inter > 0 or self.start == other.start)

    def iou(self, other: "Candidate") -> float:
        """Intersection over union of the two segments."""
        inter = max(0.0, min(self.end, other.end) - max(self.start, other.start))
        union = max(self.end, other.end) - min(self.start, other.start)
        return inter / union if union > 0 else 1.0

    def merged(self, other: "Candidate") -> "Candidate":
        first = self if self.start_margin >= other.start_margin else other
        last = self if self.end_margin >= other.end_margin else other
        best = max((self, other), key=lambda c: (min(c.start_margin, c.end_margin), c.score))
        return Candidate(self.label, self.label_id, first.start, last.end, best.score, first.start_margin,
                         last.end_margin, self.windows | other.windows)


class EventMerger:
    """Per-stream merge state. ``add_window`` takes one window's detections and returns the events
    that became final; ``flush`` finalizes the rest (end of stream or of a segment)."""

    def __init__(self, stream: str, guard_s: float, merge_overlap: float = 0.5, min_score: float = 0.0):
        self.stream = stream
        self.guard_s = guard_s
        self.merge_overlap = merge_overlap
        self.min_score = min_score
        self.pending: List[Candidate] = []
        self.emitted: List[Candidate] = []     # final events still near enough to suppress copies
        self.windows = 0

    def add_window(self, detections: List[Dict], window_start_s: float, window_end_s: float, decided_at: float,
                   stream_start: bool = False, stream_end: bool = False) -> List[Dict]:
        """``detections``: dicts with label, label_id, start, end, score in stream seconds;
        ``window_*_s``: the span the window's features cover; ``stream_start``/``stream_end``:
        that edge is the stream's own; ``decided_at``: stream time now."""
        self.windows += 1
        for det in detections:
            if det["score"] < self.min_score:
                continue
            start, end = float(det["start"]), float(det["end"])
            self._offer(Candidate(det["label"], int(det["label_id"]), start, end, float(det["score"]),
                                  math.inf if stream_start else start - window_start_s,
                                  math.inf if stream_end else window_end_s - end, frozenset([self.windows])))
        finished = self._finalize(window_end_s - self.guard_s, decided_at)
        # later windows start after this one: what ended before its start cannot be met again
        self.emitted = [e for e in self.emitted if e.end > window_start_s]
        return finished

    def flush(self, decided_at: float) -> List[Dict]:
        """Every pending detection, final now (end of the stream or of a segment)."""
        finished = self._finalize(math.inf, decided_at)
        self.emitted = []
        return finished

    def earliest_pending(self) -> float:
        """The earliest start of a detection still pending (inf when none is)."""
        return min((p.start for p in self.pending), default=math.inf)

    def _same(self, a: Candidate, b: Candidate) -> bool:
        return not (a.windows & b.windows) and a.label_id == b.label_id and a.covers(b) >= self.merge_overlap

    def _offer(self, candidate: Candidate) -> None:
        """Merge ``candidate`` into its closest copy (highest IoU) among the pending detections and
        the emitted events: dropped when that is an emitted one, merged when it is pending, new
        when it has no copy. (Closest, not first: a weak detection beside a strong one must not
        take the strong one's copy from a later window.)"""
        copies = [(candidate.iou(other), i, other) for i, other in enumerate(self.pending + self.emitted)
                  if self._same(candidate, other)]
        if not copies:
            self.pending.append(candidate)
            return
        _, i, other = max(copies, key=lambda c: c[0])
        if i < len(self.pending):
            self.pending[i] = other.merged(candidate)

    def _finalize(self, before_s: float, decided_at: float) -> List[Dict]:
        ready = sorted((p for p in self.pending if p.end <= before_s), key=lambda p: (p.end, p.start, -p.score))
        self.pending = [p for p in self.pending if p.end > before_s]
        self.emitted.extend(ready)
        return [{"stream": self.stream, "label": c.label, "label_id": c.label_id, "start": c.start, "end": c.end,
                 "score": c.score, "decided_at": decided_at, "latency_s": max(0.0, decided_at - c.end)}
                for c in ready]
