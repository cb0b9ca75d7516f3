"""The streaming runtime (DESIGN §5.2–5.3): sources -> clips -> extractor -> feature ring buffer
-> every ``hop`` features the last ``window`` through a runtime Backend (decode + NMS as offline
inference does them) -> stream seconds -> cross-window merge -> events.

Threads: one reader per source (frames -> clips, into a bounded queue, so a slow consumer makes
a live source drop its oldest frames, counted there), one extractor worker and one network
worker, each batching whatever is ready across streams; with ``video_out``, the readers also hand
display frames to each stream's :class:`VideoOut`. Events come out of :meth:`StreamRunner.events`
(or its callback form :meth:`StreamRunner.run`) in finalization order.
"""

from __future__ import annotations

import collections
import queue
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..features import ClipAssembler, ClipExtractor, load_extractor
from ..model import padded_length
from ..runtime import Backend, load
from ..video import VideoError, has_element, open_source, parse_uri
from .merge import EventMerger
from .video_out import VideoOut, choose_encoding, stream_path

_END = object()


class StreamError(RuntimeError):
    """A stream that cannot run as asked (model and extractor disagree, bad options, bad source)."""


@dataclass
class StreamOptions:
    """``window``: features per network call (default: the model's window); ``hop``: new features
    between calls (default: half the window); ``guard``: features before a window's end within
    which detections stay pending (default: a quarter of the window); ``min_score``: events below
    are not emitted; ``merge_overlap``: overlap (of the shorter) at which two windows' detections
    are one action; ``reconnect_attempts``/``reconnect_interval``: a lost RTSP or V4L2 source (an
    error, an end, or no frame for ``frame_timeout`` seconds) is reopened up to this many times in
    a row, waiting ``interval``, then twice that, ... (at most 30 s); ``video_out``: write an
    annotated video of each stream to this file (stream N > 0 to ``stem.N.ext``; see
    :mod:`asl_edge.stream.video_out`) with frames of ``video_size`` (width, height), drawing the
    events that score ``video_min_score`` or more."""

    window: Optional[int] = None
    hop: Optional[int] = None
    guard: Optional[int] = None
    min_score: float = 0.0
    merge_overlap: float = 0.5
    batch: int = 8
    queue_size: int = 8
    realtime: bool = False
    stats_interval: float = 0.0
    max_seconds: Optional[float] = None
    preset: str = "auto"
    reconnect_attempts: int = 10
    reconnect_interval: float = 1.0
    frame_timeout: float = 5.0
    video_out: Optional[str] = None
    video_size: Tuple[int, int] = (320, 240)
    video_min_score: float = 0.3


@dataclass
class _Stream:
    """Per-stream state: the feature ring buffer, the window schedule and the merger."""

    index: int
    name: str
    uri: str
    merger: EventMerger
    features: Deque[np.ndarray]
    count: int = 0            # features of the current segment
    last_run: int = 0         # feature count at the last window
    total: int = 0            # features of every segment
    frames: int = 0
    error: Optional[str] = None
    source_stats: Dict = field(default_factory=dict)
    offset_s: float = 0.0     # stream time of the current segment's first frame
    gaps: int = 0
    video: Optional[VideoOut] = None


@dataclass
class _Window:
    stream: int
    features: np.ndarray      # (n, D)
    start: int                # index of its first feature in the segment
    offset_s: float           # stream time of the segment's first frame
    final: bool               # the segment ends here: flush
    last: bool                # the stream ends here


@dataclass
class _NewSegment:
    """The source came back after a loss: the next clips start a new segment at ``offset_s``."""

    offset_s: float
    error: str


def check_model_and_extractor(backend: Backend, extractor: ClipExtractor) -> None:
    """StreamError listing every way the model's features differ from what the extractor makes."""
    d = backend.config.dataset
    spec = extractor.clip
    problems = []
    if backend.channels != extractor.dim:
        problems.append(f"input_dim {backend.channels} vs the extractor's {extractor.dim}")
    if d.feat_stride != spec.frame_stride:
        problems.append(f"feat_stride {d.feat_stride} vs the extractor's frame stride {spec.frame_stride}")
    if d.num_frames != spec.num_frames:
        problems.append(f"num_frames {d.num_frames} vs the extractor's clip of {spec.num_frames}")
    if d.default_fps is not None and abs(float(d.default_fps) - spec.fps) > 1e-6:
        problems.append(f"default_fps {d.default_fps:g} vs the extractor's {spec.fps:g} fps")
    if d.extractor is not None and d.extractor != extractor.name:
        problems.append(f"extractor {d.extractor!r} vs {extractor.name!r}")
    if problems:
        raise StreamError(f"the model {backend.artifact} was trained on other features than the {extractor.name} "
                          f"extractor makes: {'; '.join(problems)}")


def _percentiles(values: Sequence[float]) -> Dict[str, float]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "count": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * p95, "count": len(ordered)}


class StreamRunner:
    """Live sliding-window localization on one or more sources.

    ``model``: an artifact path or checkpoint (anything :func:`asl_edge.runtime.load` takes) or
    a loaded Backend; ``sources``: URIs; ``extractor``: a name, a path or a ClipExtractor.
    """

    def __init__(self, model: Union[str, Backend], sources: Sequence[str],
                 extractor: Union[str, ClipExtractor] = "motion", options: Optional[StreamOptions] = None,
                 device: str = "cpu"):
        if not sources:
            raise StreamError("no source: give at least one URI")
        self._kinds = [parse_uri(uri).kind for uri in sources]      # a malformed URI fails here, before any thread
        self.options = options or StreamOptions()
        self.backend = model if isinstance(model, Backend) else load(model, device=device)
        self.extractor = extractor if isinstance(extractor, ClipExtractor) else load_extractor(extractor, device=device)
        check_model_and_extractor(self.backend, self.extractor)
        self._set_window()
        spec = self.extractor.clip
        self.fps, self.stride, self.clip_frames = spec.fps, spec.frame_stride, spec.num_frames
        names = []
        for i, uri in enumerate(sources):
            names.append(uri if uri not in names else f"{uri}#{i}")
        guard_s = self.options.guard * self.stride / self.fps
        o = self.options
        self.streams = [_Stream(i, name, uri, EventMerger(name, guard_s, o.merge_overlap, o.min_score),
                                collections.deque(maxlen=o.window))
                        for i, (name, uri) in enumerate(zip(names, sources))]
        self._clips: "queue.Queue" = queue.Queue(maxsize=max(4, 2 * self.options.batch))
        self._windows: "queue.Queue" = queue.Queue(maxsize=4 * len(self.streams))
        self._out: "queue.Queue" = queue.Queue()
        self._stop = threading.Event()
        self._timings: Dict[str, Deque[float]] = {k: collections.deque(maxlen=2000)
                                                  for k in ("decode", "extract", "network", "merge")}
        self._latencies: Deque[float] = collections.deque(maxlen=2000)
        self._events = 0
        self._started = 0.0
        self._sources: List = [None] * len(self.streams)
        self._failure: Optional[str] = None
        self._closers: List[threading.Thread] = []
        if self.options.video_out is not None:
            self._make_videos()

    # --- set-up ---------------------------------------------------------------------------------
    def _set_window(self) -> None:
        o, config = self.options, self.backend.config
        if o.window is None:
            o.window = config.dataset.max_seq_len if self.backend.dynamic_length else self.backend.window
        if o.hop is None:
            o.hop = max(1, o.window // 2)
        if o.guard is None:
            o.guard = o.window // 4
        if not (o.window >= 1 and 1 <= o.hop <= o.window and 0 <= o.guard < o.window):
            raise StreamError(f"need 1 <= hop <= window and 0 <= guard < window, got window {o.window}, hop {o.hop}, "
                              f"guard {o.guard}")
        if not self.backend.dynamic_length:
            steps = -(-o.window // config.dataset.downsample_rate)
            if padded_length(config, steps) > self.backend.window:
                raise StreamError(f"--window {o.window} does not fit the artifact's fixed T = {self.backend.window}: "
                                  f"use --window {self.backend.window} or less, or a dynamic-length export")

    def _make_videos(self) -> None:
        """A :class:`VideoOut` per stream; its status reports join the event stream."""
        width, height = self.options.video_size
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise StreamError(f"video_size must be even, at least 2x2, got {width}x{height}")
        encoding = choose_encoding(self.options.video_out, has_element)
        for stream in self.streams:
            def report(item: Dict, name: str = stream.name) -> None:
                self._out.put({"stream": name, "status": "video_out", **item})

            stream.video = VideoOut(replace(encoding, path=stream_path(encoding.path, stream.index)),
                                    (width, height), report, wait=not parse_uri(stream.uri).live)

    # --- threads --------------------------------------------------------------------------------
    def _read(self, stream: _Stream) -> None:
        """Reader thread: frames -> clips (blocking put: back-pressure reaches the source's queue).
        A lost RTSP/V4L2 source is reopened with backoff; its frames then start a new segment."""
        reconnects = self._kinds[stream.index] in ("rtsp", "v4l2")
        origin: Optional[float] = None
        attempts, delay, error, lost = 0, self.options.reconnect_interval, None, None
        while True:
            assembler = ClipAssembler(self.clip_frames, self.stride)
            shift = None                                            # stream time minus this source's timestamps
            try:
                source = open_source(stream.uri, geometry=self.extractor.clip.geometry, fps=self.fps,
                                     realtime=self.options.realtime, queue_size=self.options.queue_size,
                                     preset=self.options.preset,
                                     frame_timeout_s=self.options.frame_timeout if reconnects else None,
                                     display=self.options.video_size if stream.video is not None else None)
                self._sources[stream.index] = source
                with source:
                    tick = time.perf_counter()
                    for frame in source:
                        self._timings["decode"].append(time.perf_counter() - tick)
                        if origin is None:
                            origin, shift = time.monotonic(), -frame.pts_s
                        elif lost is not None:                       # first frame after a loss
                            offset = time.monotonic() - origin
                            self._put(self._clips, (stream.index, _NewSegment(offset, lost)), force=True)
                            shift = offset - frame.pts_s
                            lost, attempts, delay = None, 0, self.options.reconnect_interval
                        stream.frames += 1
                        for _, clip in assembler.push(frame.rgb, frame.pts_s):
                            self._put(self._clips, (stream.index, clip))
                        self._show(stream, source, shift)
                        if self._stop.is_set():
                            break
                        tick = time.perf_counter()
                    self._show(stream, source, shift)
                    self._keep_counts(stream, source)
                # a live network source that ends has been lost (rtspsrc ends when the server goes away)
                error = None if not reconnects or self._stop.is_set() else f"{stream.uri}: the stream ended"
            except Exception as err:  # noqa: BLE001 - VideoError, or anything else: the stream ends with it
                error = str(err) if isinstance(err, VideoError) else f"{type(err).__name__}: {err}"
                if self._sources[stream.index] is not None:
                    self._keep_counts(stream, self._sources[stream.index])
            if error is None or not reconnects or self._stop.is_set() \
                    or attempts >= self.options.reconnect_attempts:
                break
            attempts += 1
            lost = lost or error
            self._out.put({"stream": stream.name, "status": "reconnecting", "attempt": attempts,
                           "in_s": delay, "error": error})
            if self._stop.wait(delay):
                break
            delay = min(2 * delay, 30.0)
        self._put(self._clips, (stream.index, error or _END), force=True)

    def _show(self, stream: _Stream, source, shift: Optional[float]) -> None:
        """Hand the source's new display frames, on the stream's time base, to the stream's video."""
        if stream.video is not None and shift is not None:
            stream.video.add([(pts + shift, rgb) for pts, rgb in source.display_frames()])

    def _keep_counts(self, stream: _Stream, source) -> None:
        """Add a closed source's counters to the stream's (a reconnected stream has several)."""
        counts = collections.Counter(stream.source_stats)
        counts.update(source.stats.as_dict())
        stream.source_stats = dict(counts)
        self._sources[stream.index] = None

    def _put(self, q: "queue.Queue", item, force: bool = False) -> None:
        while True:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set() and not force:
                    return

    def _guarded(self, work: Callable[[], None]) -> Callable[[], None]:
        """A worker body whose failure stops every stream and is raised by :meth:`events`."""
        def body():
            try:
                work()
            except Exception as err:  # noqa: BLE001 - any failure ends the run, reported once
                self._failure = f"{type(err).__name__}: {err}"
                self.stop()
                self._out.put(_END)
        return body

    def _extract_worker(self) -> None:
        open_streams = len(self.streams)
        while open_streams:
            items = [self._clips.get()]
            while len(items) < self.options.batch:
                try:
                    items.append(self._clips.get_nowait())
                except queue.Empty:
                    break
            clips = [(i, c) for i, c in items if isinstance(c, np.ndarray)]
            if clips:
                tick = time.perf_counter()
                features = self.extractor.extract(np.stack([c for _, c in clips]))
                self._timings["extract"].append(time.perf_counter() - tick)
                for (i, _), feature in zip(clips, features):
                    self._add_feature(self.streams[i], feature)
            for i, item in items:
                stream = self.streams[i]
                if isinstance(item, _NewSegment):
                    self._new_segment(stream, item)
                elif not isinstance(item, np.ndarray):
                    stream.error = None if item is _END else item
                    self._schedule(stream, final=True, last=True)
                    open_streams -= 1
        self._put(self._windows, None, force=True)

    def _add_feature(self, stream: _Stream, feature: np.ndarray) -> None:
        stream.features.append(feature)
        stream.count += 1
        stream.total += 1
        if stream.count - stream.last_run >= self.options.hop:
            self._schedule(stream, final=False, last=False)

    def _new_segment(self, stream: _Stream, segment: _NewSegment) -> None:
        """Close the segment before a gap (its pending events become final), report the gap, and
        start counting features again at the new segment's time: no feature spans the gap."""
        self._schedule(stream, final=True, last=False)
        before = stream.offset_s + (max(stream.count - 1, 0) * self.stride + self.clip_frames) / self.fps
        stream.features.clear()
        stream.count = stream.last_run = 0
        stream.offset_s = segment.offset_s
        stream.gaps += 1
        self._out.put({"stream": stream.name, "status": "gap", "from_s": before, "to_s": segment.offset_s,
                       "error": segment.error})

    def _schedule(self, stream: _Stream, final: bool, last: bool) -> None:
        fresh = stream.count > stream.last_run
        features = np.stack(stream.features) if fresh and stream.features else np.zeros((0, self.extractor.dim),
                                                                                        np.float32)
        stream.last_run = stream.count
        self._put(self._windows, _Window(stream.index, features, stream.count - len(features), stream.offset_s,
                                         final, last), force=True)

    def _network_worker(self) -> None:
        running = True
        while running:
            jobs = [self._windows.get()]
            while True:
                try:
                    jobs.append(self._windows.get_nowait())
                except queue.Empty:
                    break
            if any(job is None for job in jobs):
                running = False
                jobs = [job for job in jobs if job is not None]
            ready = [job for job in jobs if len(job.features)]
            tick = time.perf_counter()
            detections = self.backend.detect_batch([job.features for job in ready], fps=self.fps) if ready else []
            if ready:
                self._timings["network"].append(time.perf_counter() - tick)
            results = dict(zip(map(id, ready), detections))
            for job in jobs:
                self._finish_window(job, results.get(id(job), []))
        for closer in self._closers:
            closer.join()
        self._out.put(_END)

    def _finish_window(self, job: _Window, detections: List[Dict]) -> None:
        stream = self.streams[job.stream]
        tick = time.perf_counter()
        last = job.start + len(job.features) - 1
        newest = last if len(job.features) else job.start - 1
        decided_at = job.offset_s + max(0.0, (newest * self.stride + self.clip_frames) / self.fps)
        events = []
        if len(job.features):
            shift = job.offset_s + job.start * self.stride / self.fps
            shifted = [{**d, "start": d["start"] + shift, "end": d["end"] + shift} for d in detections]
            centre = self.clip_frames / 2
            events = stream.merger.add_window(shifted, job.offset_s + (job.start * self.stride + centre) / self.fps,
                                              job.offset_s + (last * self.stride + centre) / self.fps, decided_at,
                                              stream_start=job.start == 0, stream_end=job.final)
        if job.final:
            events += stream.merger.flush(decided_at)
        self._timings["merge"].append(time.perf_counter() - tick)
        if stream.video is not None:
            shown = [e for e in events if e["score"] >= self.options.video_min_score]
            stream.video.decided(shown, decided_at if job.final else self._settled(stream, job))
        for event in events:
            self._latencies.append(event["latency_s"])
            self._events += 1
            self._out.put(event)
        if job.last:
            status = {"stream": stream.name, "status": "error" if stream.error else "end",
                      "frames": stream.frames, "features": stream.total, "gaps": stream.gaps}
            if stream.error:
                status["error"] = stream.error
            self._out.put(status)
            if stream.video is not None:                 # finalize the file without holding up the other streams
                closer = threading.Thread(target=stream.video.close, daemon=True, name=f"asl-video-{stream.index}")
                closer.start()
                self._closers.append(closer)

    def _settled(self, stream: _Stream, job: _Window) -> float:
        """The stream time before which every event is final already: detections are clamped to
        their window, every later window of the segment starts at feature ``count + 1 - window``
        or after (``count``: the features so far), and a pending detection starts where it starts."""
        next_start = max(0, job.start + len(job.features) + 1 - self.options.window)
        return min(job.offset_s + next_start * self.stride / self.fps, stream.merger.earliest_pending())

    # --- public ---------------------------------------------------------------------------------
    def events(self) -> Iterator[Dict]:
        """Run the streams; yield each event as it is finalized, and status dicts (``"status"``
        key: ``stats`` every ``stats_interval`` seconds, ``end``/``error`` when a stream ends)."""
        self._started = time.perf_counter()
        threads = [threading.Thread(target=self._read, args=(s,), daemon=True, name=f"asl-read-{s.index}")
                   for s in self.streams]
        threads += [threading.Thread(target=self._guarded(self._extract_worker), daemon=True, name="asl-extract"),
                    threading.Thread(target=self._guarded(self._network_worker), daemon=True, name="asl-network")]
        for thread in threads:
            thread.start()
        next_stats = self._started + self.options.stats_interval
        while True:
            try:
                item = self._out.get(timeout=0.1)
            except queue.Empty:
                item = None
            now = time.perf_counter()
            if self.options.max_seconds is not None and now - self._started > self.options.max_seconds:
                self.stop()
            if self.options.stats_interval > 0 and now >= next_stats:
                next_stats = now + self.options.stats_interval
                yield {"status": "stats", **self.stats()}
            if item is _END:
                break
            if item is not None:
                yield item
        for thread in threads:
            thread.join(timeout=5)
        for stream in self.streams:                     # after a failure: the files are finalized all the same
            if stream.video is not None:
                stream.video.close()
        if self._failure is not None:
            raise StreamError(f"the stream stopped: {self._failure}")

    def run(self, on_event: Callable[[Dict], None]) -> Dict:
        """Call ``on_event`` for every event and status; returns the final :meth:`summary`."""
        for item in self.events():
            on_event(item)
        return self.summary()

    def stop(self) -> None:
        """End every stream now; pending detections are flushed as at the end of a stream."""
        self._stop.set()
        for source in self._sources:
            if source is not None:
                source.close()

    def stats(self) -> Dict:
        """Counters and latencies so far."""
        elapsed = max(1e-9, time.perf_counter() - self._started) if self._started else 0.0
        frames = sum(s.frames for s in self.streams)
        features = sum(s.total for s in self.streams)
        counts = collections.Counter()
        for stream, source in zip(self.streams, self._sources):
            counts.update(stream.source_stats)
            if source is not None:
                counts.update(source.stats.as_dict())
        return {"wall_s": elapsed, "frames": frames, "features": features, "events": self._events,
                "fps_in": frames / elapsed if elapsed else 0.0,
                "fps_processed": features * self.stride / elapsed if elapsed else 0.0,
                "stream_s_per_wall_s": features * self.stride / self.fps / elapsed if elapsed else 0.0,
                "dropped_frames": counts["dropped_queue"], "resampled_away": counts["dropped_resample"],
                "duplicated": counts["duplicated"], "gap_ticks": counts["gap_ticks"],
                "clip_queue": self._clips.qsize(), "window_queue": self._windows.qsize(),
                "stages": {name: _percentiles(list(values)) for name, values in self._timings.items()},
                "decision_latency": {k.replace("_ms", "_s"): (v / 1000 if isinstance(v, float) else v)
                                     for k, v in _percentiles(list(self._latencies)).items()}}

    def summary(self) -> Dict:
        """The final stats plus each stream's counters."""
        return {**self.stats(), "streams": [{"stream": s.name, "frames": s.frames, "features": s.total,
                                             "gaps": s.gaps, "error": s.error,
                                             **{f"source_{k}": v for k, v in s.source_stats.items()},
                                             **({"video_out": s.video.stats()} if s.video is not None else {})}
                                            for s in self.streams],
                "window": self.options.window, "hop": self.options.hop, "guard": self.options.guard}
