"""One stream's events from overlapping windows: provisional while an action is near the newest
window's end, final once a window sees it with context on both sides (DESIGN §5.2).

Each window's detections (stream seconds, as its NMS left them) are taken best first. The best of
the detections of one class that cover each other (``merge_overlap`` of the shorter) *leads* its
action in this window; the others are the duplicates its NMS kept. Each detection is first
matched to what it may be a copy of: among the tracks no better detection of this window took and
the final events of earlier windows, those of its class that it covers ``merge_overlap`` of, the
closest by IoU (closest, not first: a weak event decided early beside a strong provisional one
must not swallow it). A copy of a final event is dropped. Then, by its margins to the window's
edges (a window edge that is the stream's own start or end has an infinite margin):

* **final**: ``guard_s`` or more of context after its end (and before its start). It is emitted as
  this window sees it — one window decides an action, so a stream inside one window gives exactly
  what offline inference gives, duplicates included.
* **provisional**: less than ``guard_s`` after its end: the action may still be going on. A
  leader continues its track, or starts one; duplicates are not followed (one event per action).
* **cut at the start**: less than ``guard_s`` before its start: an action older than the window's
  reach. It only continues or ends a track, taking the start an earlier window saw (an action
  longer than the window allows); otherwise it is dropped.

Messages (``type``): ``new`` when a track first scores ``alert_score`` or more (or a final
leader scoring that much had no track), ``update`` when an announced track's bounds move by a
feature or more or its score by 0.1 or more (at most one per ``update_interval_s`` of stream
time), ``end`` for every final event (with the id of its track, or a new one), ``cancel`` for an
announced track that no detection of the newest window continued. Ids are never reused.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

SCORE_STEP = 0.1      # a score change that is worth an update
_EMITTED = object()   # what a copy of a decided action matches


@dataclass
class Copy:
    """One window's detection in stream seconds, with its margins to the window's edges."""

    label: str
    label_id: int
    start: float
    end: float
    score: float
    start_margin: float
    end_margin: float

    def covers(self, other: "Copy") -> float:
        """Overlap over the shorter of the two segments."""
        inter = max(0.0, min(self.end, other.end) - max(self.start, other.start))
        shorter = min(self.end - self.start, other.end - other.start)
        return inter / shorter if shorter > 0 else float(inter > 0 or self.start == other.start)

    def iou(self, other: "Copy") -> float:
        """Intersection over union of the two segments."""
        inter = max(0.0, min(self.end, other.end) - max(self.start, other.start))
        union = max(self.end, other.end) - min(self.start, other.start)
        return inter / union if union > 0 else 1.0


@dataclass
class Track:
    """A provisional action followed across windows: its newest copy, the copy whose start had the
    most context before it, whether it was announced (``new``) and what was last said of it."""

    id: int
    latest: Copy
    earliest_start: Copy
    announced: bool = False
    said: Optional[Copy] = None
    said_at: float = -math.inf


@dataclass
class EventMerger:
    """Per-stream event state. :meth:`add_window` takes one window's detections and returns the
    messages it causes; :meth:`flush` ends every track (end of the stream or of a segment).
    ``step_s``: the seconds of one feature (an update moves a bound by at least that much)."""

    stream: str
    guard_s: float
    merge_overlap: float = 0.5
    min_score: float = 0.0
    alert_score: float = 0.4
    update_interval_s: float = 1.0
    step_s: float = 0.0
    ids: Iterator[int] = field(default_factory=itertools.count)
    tracks: List[Track] = field(default_factory=list)
    emitted: List[Copy] = field(default_factory=list)     # final events of earlier windows a later one may see again

    def add_window(self, detections: List[Dict], window_start_s: float, window_end_s: float, decided_at: float,
                   stream_start: bool = False, stream_end: bool = False) -> List[Dict]:
        """``detections``: dicts with label, label_id, start, end, score in stream seconds;
        ``window_*_s``: the span the window's features cover; ``stream_start``/``stream_end``:
        that edge is the stream's own; ``decided_at``: stream time now."""
        copies = sorted((Copy(d["label"], int(d["label_id"]), float(d["start"]), float(d["end"]), float(d["score"]),
                              math.inf if stream_start else float(d["start"]) - window_start_s,
                              math.inf if stream_end else window_end_s - float(d["end"]))
                         for d in detections if d["score"] >= self.min_score), key=lambda c: -c.score)
        messages: List[Dict] = []
        continued: List[Track] = []
        leaders: List[Copy] = []
        decided: List[Copy] = []                                  # this window's final events
        for copy in copies:
            # the strongest copy of an action in this window leads it; the others are the
            # duplicates its NMS kept: final ones are emitted as they are, and no duplicate follows
            # or starts a track (one event per action)
            leads = not any(copy.label_id == other.label_id and copy.covers(other) >= self.merge_overlap
                            for other in leaders)
            track = self._match(copy, continued if leads else self.tracks)
            if track is _EMITTED:
                continue                                          # an action decided before
            if copy.start_margin < self.guard_s and track is None:
                continue                                          # cut at the start, nothing known before it
            if leads:
                leaders.append(copy)
            if copy.end_margin >= self.guard_s:
                if copy.start_margin < self.guard_s:             # longer than the window allows: the start seen before
                    first = track.earliest_start
                    copy = Copy(copy.label, copy.label_id, first.start, copy.end, copy.score, first.start_margin,
                                copy.end_margin)
                if track is not None:
                    self.tracks.remove(track)
                decided.append(copy)
                messages += self._final(copy, track, decided_at, announce=leads)
            elif leads:
                track, said = self._provisional(copy, track, decided_at)
                continued.append(track)
                messages += said
        for track in [t for t in self.tracks if t not in continued]:
            self.tracks.remove(track)
            if track.announced:
                messages.append(self._message("cancel", track.id, track.latest, decided_at))
        # later windows start after this one: what ended before its start cannot be met again
        self.emitted = [e for e in self.emitted + decided if e.end > window_start_s]
        return sorted(messages, key=lambda m: (m["end"], m["start"], m["type"] == "end"))

    def flush(self, decided_at: float) -> List[Dict]:
        """End every track with its newest copy (end of the stream or of a segment)."""
        messages = []
        for track in sorted(self.tracks, key=lambda t: (t.latest.end, t.latest.start)):
            messages += self._final(track.latest, track, decided_at)
        self.tracks, self.emitted = [], []
        return messages

    def provisional(self) -> List[Dict]:
        """The announced events that are not final yet, as they stand (label, bounds, score)."""
        return [self._message("update", t.id, t.latest, t.said_at) for t in self.tracks if t.announced]

    # --- the pieces -----------------------------------------------------------------------------
    def _match(self, copy: Copy, taken: List[Track]):
        """What ``copy`` is a copy of: among the tracks no better copy of this window took and the
        events emitted, those of its class that it covers ``merge_overlap`` of (of the shorter),
        the closest by IoU — a track, ``_EMITTED`` (the action is decided: the copy is dropped), or
        None. (Closest, not first: a weak detection decided early beside a strong one that was
        still provisional must not swallow the strong one when a later window decides it.)"""
        candidates = [(copy.iou(t.latest), t) for t in self.tracks
                      if t not in taken and t.latest.label_id == copy.label_id
                      and copy.covers(t.latest) >= self.merge_overlap]
        candidates += [(copy.iou(e), _EMITTED) for e in self.emitted
                       if e.label_id == copy.label_id and copy.covers(e) >= self.merge_overlap]
        return max(candidates, key=lambda c: c[0])[1] if candidates else None

    def _final(self, copy: Copy, track: Optional[Track], decided_at: float, announce: bool = True) -> List[Dict]:
        messages = []
        if track is None:
            track = Track(next(self.ids), copy, copy)
        if announce and not track.announced and copy.score >= self.alert_score:
            messages.append(self._message("new", track.id, copy, decided_at))
        messages.append(self._message("end", track.id, copy, decided_at))
        return messages

    def _provisional(self, copy: Copy, track: Optional[Track], decided_at: float):
        """``(track, messages)``: ``copy`` continues ``track`` (or starts one)."""
        if track is None:
            track = Track(next(self.ids), copy, copy)
            self.tracks.append(track)
        else:
            track.latest = copy
            if copy.start_margin > track.earliest_start.start_margin:
                track.earliest_start = copy
        if not track.announced:
            if copy.score < self.alert_score:
                return track, []
            track.announced, track.said, track.said_at = True, copy, decided_at
            return track, [self._message("new", track.id, copy, decided_at)]
        said = track.said
        moved = max(abs(copy.start - said.start), abs(copy.end - said.end)) >= max(self.step_s, 1e-9)
        if (moved or abs(copy.score - said.score) >= SCORE_STEP) and \
                decided_at - track.said_at >= self.update_interval_s:
            track.said, track.said_at = copy, decided_at
            return track, [self._message("update", track.id, copy, decided_at)]
        return track, []

    def _message(self, kind: str, event_id: int, copy: Copy, decided_at: float) -> Dict:
        """A lifecycle message; ``latency_s``: for ``end``, seconds after the action's end, else
        after its start (stream time)."""
        reference = copy.end if kind == "end" else copy.start
        return {"type": kind, "id": event_id, "stream": self.stream, "label": copy.label, "label_id": copy.label_id,
                "start": copy.start, "end": copy.end, "score": copy.score, "decided_at": decided_at,
                "latency_s": max(0.0, decided_at - reference)}
