"""The streaming runtime (DESIGN §5.2–5.3): sources -> clips -> extractor -> feature ring buffer
-> every ``hop`` features the last ``window`` through a runtime Backend (decode + NMS as offline
inference does them) -> stream seconds -> cross-window merge -> events.

Threads: one reader per source (frames -> clips, into a bounded queue, so a slow consumer makes
a live source drop its oldest frames, counted there), one extractor worker and one network
worker, each batching whatever is ready across streams; with ``video_out``, the readers also hand
display frames to each stream's :class:`VideoOut`. Events come out of :meth:`StreamRunner.events`
(or its callback form :meth:`StreamRunner.run`) in finalization order, through a bounded queue.

Stream time comes from the frames' timestamps: a pause longer than ``gap_s`` (a stalled camera, a
recording with missing frames, a source reconnected after a loss) ends the segment, is reported
as a ``gap`` status, and the next segment's features are placed at their true time; no clip and
no window spans a gap.

Stopping: :meth:`StreamRunner.stop` ends the sources and flushes what is pending (the iteration
then ends by itself); leaving :meth:`StreamRunner.events` early (``break``, ``close()``, an
exception in the consumer) or a failing stage aborts: every thread and pipeline stops within about
a second, and a stage's failure is raised as :class:`StreamError`.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
import queue
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError
from ..features import ClipAssembler, ClipExtractor, load_extractor
from ..model import padded_length
from ..runtime import Backend, load
from ..video import VideoError, has_element, open_source, parse_uri, plan_source
from .merge import EventMerger
from .video_out import VideoOut, choose_encoding, stream_path

_END = object()
JOIN_S = 1.0             # how long an abort waits for each thread
OUT_QUEUE = 1024         # events and statuses waiting for a slow consumer; then the network worker waits
BEHIND_CHECK_S = 2.0     # how often live streams are checked for dropped frames
PER_STREAM_OPTIONS = ("hop", "min_score")   # the options one stream may set for itself (``stream_options``)


class StreamError(UserError, RuntimeError):
    """A stream that cannot run as asked (model and extractor disagree, bad options, bad source)."""


@dataclass
class StreamOptions:
    """``window``: features per network call (default: the model's window); ``hop``: new features
    between calls (default: 1 for a live source — widened when the network is slower — and half
    the window for a file read as fast as it decodes); ``guard``: features before a window's end
    within which detections stay provisional: a detection is final once a window sees ``guard``
    features after its end (default 2; chosen on the demo scenes, see ``benchmarks/bench_live.py``);
    ``min_score``: events below are not emitted;
    ``alert_score``: a provisional event is announced (``new``) once it scores this much, and the
    latency statistics count the final events at or above it; ``events``: ``all`` (the lifecycle:
    ``new``, ``update``, ``end``, ``cancel``, see :mod:`asl_edge.stream.merge`) or ``final`` (the
    ``end`` messages only); ``update_interval``: seconds of stream time between two updates of one
    event at most; ``merge_overlap``: overlap (of the shorter) at which two windows' detections are
    one action; ``gap_s``: a pause in a source's timestamps longer than
    this ends the segment (a reported gap); ``reconnect_attempts``/``reconnect_interval``: a lost
    RTSP or V4L2 source (an error, an end, or no frame for ``frame_timeout`` seconds) is reopened
    up to this many times in a row, waiting ``interval``, then twice that, ... (at most 30 s);
    ``video_out``: write an annotated video of each stream to this file (stream N > 0 to
    ``stem.N.ext``; see :mod:`asl_edge.stream.video_out`) with frames of ``video_size`` (width,
    height), drawing the events that score ``video_min_score`` or more."""

    window: Optional[int] = None
    hop: Optional[int] = None
    guard: int = 2
    min_score: float = 0.0
    alert_score: float = 0.4
    events: str = "all"
    update_interval: float = 1.0
    merge_overlap: float = 0.5
    batch: int = 8
    queue_size: int = 8
    realtime: bool = False
    stats_interval: float = 0.0
    max_seconds: Optional[float] = None
    gap_s: float = 1.0
    preset: str = "auto"
    reconnect_attempts: int = 10
    reconnect_interval: float = 1.0
    frame_timeout: float = 5.0
    video_out: Optional[str] = None
    video_size: Tuple[int, int] = (320, 240)
    video_min_score: float = 0.3

    def check(self) -> None:
        """StreamError naming every option out of its range."""
        o, problems = self, []
        for name in ("min_score", "alert_score", "video_min_score"):
            if not 0.0 <= getattr(o, name) <= 1.0:
                problems.append(f"{name} must be within [0, 1], got {getattr(o, name)}")
        if o.events not in ("all", "final"):
            problems.append(f"events must be all or final, got {o.events!r}")
        if not (math.isfinite(o.update_interval) and o.update_interval >= 0):
            problems.append(f"update_interval must be 0 or more seconds, got {o.update_interval}")
        if not 0.0 < o.merge_overlap <= 1.0:
            problems.append(f"merge_overlap must be within (0, 1], got {o.merge_overlap}")
        for name in ("batch", "queue_size"):
            if getattr(o, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(o, name)}")
        for name in ("gap_s", "reconnect_interval", "frame_timeout"):
            value = getattr(o, name)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number of seconds, got {value}")
        if o.max_seconds is not None and not (math.isfinite(o.max_seconds) and o.max_seconds > 0):
            problems.append(f"max_seconds must be a positive number of seconds, got {o.max_seconds}")
        if not (math.isfinite(o.stats_interval) and o.stats_interval >= 0):
            problems.append(f"stats_interval must be 0 (none) or a positive number of seconds, got {o.stats_interval}")
        if o.reconnect_attempts < 0:
            problems.append(f"reconnect_attempts must be 0 or more, got {o.reconnect_attempts}")
        if problems:
            raise StreamError("; ".join(problems))


@dataclass
class _Stream:
    """Per-stream state: the feature ring buffer, the window schedule and the merger."""

    index: int
    name: str
    uri: str
    merger: EventMerger
    features: Deque[np.ndarray]
    arrivals: Deque[Tuple[float, float]]   # (stream time at a clip's end, monotonic arrival of its last frame)
    count: int = 0            # features of the current segment
    last_run: int = 0         # feature count at the last window
    total: int = 0            # features of every segment
    frames: int = 0
    seconds: float = 0.0      # stream time up to the end of the last frame read
    error: Optional[str] = None
    source_stats: Dict = field(default_factory=dict)
    offset_s: float = 0.0     # stream time of the current segment's first frame
    gaps: int = 0
    gap_s: float = 0.0
    dropped_seen: int = 0     # dropped frames already reported as falling behind
    ended: bool = False       # its reader is done
    live: bool = False        # frames come at the source's pace (a late window widens the hop)
    hop: int = 1              # new features between windows
    in_flight: bool = False   # a window of a live stream is with the network: the next waits
    widened: int = 0          # windows that came later than every hop features
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
    """The next clips start a new segment at ``offset_s``: the source paused (or was lost and came
    back) after ``from_s``."""

    from_s: float
    offset_s: float
    reason: str


@dataclass
class _Clip:
    pixels: np.ndarray
    end_s: float              # stream time just after its last frame
    arrived: float            # monotonic time its last frame reached the reader


def check_device(device: str) -> None:
    """StreamError when torch cannot run on ``device`` (an unknown name, a GPU it does not see)."""
    from ..compute import DeviceError, resolve_device

    try:
        resolve_device(device)
    except DeviceError as err:
        raise StreamError(str(err)) from err


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


def model_warnings(backend: Backend, extractor: ClipExtractor, window: int) -> List[str]:
    """What the model and the stream's settings allow but make doubtful: features cut at each video's
    own rate in training (the stream cuts at the extractor's), a window too short for the longest
    actions the model places."""
    config, found = backend.config, []
    if config.dataset.default_fps is None:
        found.append(f"the model was trained on features cut at each video's own frame rate (default_fps: null); "
                     f"the stream cuts them at the extractor's {extractor.clip.fps:g} fps, so actions are timed "
                     "right only if the training videos ran at that rate")
    longest = float(config.model.regression_range[-1][0])
    if window < longest:
        found.append(f"a window of {window} features is shorter than the longest actions the model places (its "
                     f"last pyramid level takes {longest:g} features and more): expect cut or missing actions; the "
                     f"model was trained on windows of {config.dataset.max_seq_len}")
    return found


def _percentiles(values: Sequence[float]) -> Dict[str, float]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "count": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * p95, "count": len(ordered)}


def _in_seconds(stats: Dict[str, float]) -> Dict[str, float]:
    return {k.replace("_ms", "_s"): (v / 1000 if isinstance(v, float) else v) for k, v in stats.items()}


class StreamRunner:
    """Live sliding-window localization on one or more sources.

    ``model``: an artifact path or checkpoint (anything :func:`asl_edge.runtime.load` takes) or
    a loaded Backend; ``sources``: URIs; ``extractor``: a name, a path or a ClipExtractor;
    ``names``: the streams' names in events (default: the URIs); ``stream_options``: per source, a
    dict of the :data:`PER_STREAM_OPTIONS` it sets for itself instead of ``options``. What can
    be checked before a source starts (URIs, files, devices, presets, GStreamer elements, options,
    model against extractor) raises :class:`StreamError` here.
    """

    def __init__(self, model: Union[str, Backend], sources: Sequence[str],
                 extractor: Union[str, ClipExtractor] = "motion", options: Optional[StreamOptions] = None,
                 device: str = "cpu", names: Optional[Sequence[str]] = None,
                 stream_options: Optional[Sequence[Dict]] = None):
        if not sources:
            raise StreamError("no source: give at least one URI")
        self.options = options or StreamOptions()
        self.options.check()
        check_device(device)
        self._kinds = [parse_uri(uri).kind for uri in sources]      # a malformed URI fails here, before any thread
        self.backend = model if isinstance(model, Backend) else load(model, device=device)
        self.extractor = extractor if isinstance(extractor, ClipExtractor) else load_extractor(extractor, device=device)
        check_model_and_extractor(self.backend, self.extractor)
        self._set_window()
        self.warnings = model_warnings(self.backend, self.extractor, self.options.window)
        for uri in sources:
            try:
                plan_source(uri, self.extractor.clip.geometry, preset=self.options.preset)
            except VideoError as err:
                raise StreamError(str(err)) from err
        spec = self.extractor.clip
        self.fps, self.stride, self.clip_frames = spec.fps, spec.frame_stride, spec.num_frames
        if names is None:
            names = []
            for i, uri in enumerate(sources):
                names.append(uri if uri not in names else f"{uri}#{i}")
        elif len(names) != len(sources) or len(set(names)) != len(names):
            raise StreamError(f"need one distinct name per source, got {list(names)} for {len(sources)} sources")
        own = list(stream_options or [{}] * len(sources))
        for name, chosen in zip(names, own):
            problems = [f"{key} is not an option a stream sets for itself ({', '.join(PER_STREAM_OPTIONS)})"
                        for key in chosen if key not in PER_STREAM_OPTIONS]
            if "hop" in chosen and not 1 <= chosen["hop"] <= self.options.window:
                problems.append(f"hop must be within 1..{self.options.window} (the window), got {chosen['hop']}")
            if "min_score" in chosen and not 0.0 <= chosen["min_score"] <= 1.0:
                problems.append(f"min_score must be within [0, 1], got {chosen['min_score']}")
            if problems:
                raise StreamError(f"{name}: {'; '.join(problems)}")
        o, step = self.options, self.stride / self.fps
        ids = itertools.count()                              # event ids, unique across the streams
        self.streams = [_Stream(i, name, uri,
                                EventMerger(name, o.guard * step, o.merge_overlap, chosen.get("min_score", o.min_score),
                                            o.alert_score, o.update_interval, step, ids),
                                collections.deque(maxlen=o.window), collections.deque(maxlen=2 * o.window + 64))
                        for i, (name, uri, chosen) in enumerate(zip(names, sources, own))]
        for stream, chosen in zip(self.streams, own):
            stream.live = parse_uri(stream.uri).live or o.realtime
            stream.hop = chosen.get("hop") or o.hop or (1 if stream.live else max(1, o.window // 2))
        self._clips: "queue.Queue" = queue.Queue(maxsize=max(4, 2 * self.options.batch))
        self._windows: "queue.Queue" = queue.Queue(maxsize=4 * len(self.streams))
        self._out: "queue.Queue" = queue.Queue(maxsize=OUT_QUEUE)
        self._stop = threading.Event()           # end the sources and flush
        self._abort = threading.Event()          # end everything now
        self._timings: Dict[str, Deque[float]] = {k: collections.deque(maxlen=2000)
                                                  for k in ("decode", "read", "extract", "network", "merge")}
        self._latencies: Dict[str, Deque[float]] = {k: collections.deque(maxlen=2000)
                                                    for k in ("final", "final_wall", "new", "new_wall")}
        self._hops: Deque[int] = collections.deque(maxlen=2000)
        self._events = 0
        self._alerts = 0
        self._behind = 0
        self._started = 0.0
        self._stopped_early = False
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
        if not (o.window >= 1 and (o.hop is None or 1 <= o.hop <= o.window) and 0 <= o.guard < o.window):
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
                self._put(self._out, {"stream": name, "status": "video_out", **item})

            stream.video = VideoOut(replace(encoding, path=stream_path(encoding.path, stream.index)),
                                    (width, height), report, wait=not parse_uri(stream.uri).live)

    # --- threads --------------------------------------------------------------------------------
    def _read(self, stream: _Stream) -> None:
        """Reader thread: frames -> clips (blocking put: back-pressure reaches the source's queue).
        Stream time is the frames' timestamps; a pause over ``gap_s`` starts a new segment, and so
        does a lost RTSP/V4L2 source when it is back (reopened with backoff; its new timestamps are
        placed by the wall clock)."""
        reconnects = self._kinds[stream.index] in ("rtsp", "v4l2")
        origin: Optional[float] = None              # monotonic time of the stream's first frame
        last_t: Optional[float] = None              # stream time of the last frame
        step = 1.0 / self.fps
        attempts, delay, error, lost = 0, self.options.reconnect_interval, None, None
        while not self._abort.is_set():
            assembler = ClipAssembler(self.clip_frames, self.stride)
            shift = None                                            # stream time minus this source's timestamps
            try:
                source = open_source(stream.uri, geometry=self.extractor.clip.geometry, fps=self.fps,
                                     realtime=self.options.realtime, queue_size=self.options.queue_size,
                                     preset=self.options.preset, max_gap_s=self.options.gap_s,
                                     frame_timeout_s=self.options.frame_timeout if reconnects else None,
                                     display=self.options.video_size if stream.video is not None else None,
                                     cancel=self._abort)
                self._sources[stream.index] = source
                with source:
                    for frame in source:
                        arrived = time.monotonic()
                        for stage, costs in source.take_costs().items():
                            self._timings[stage].extend(costs)
                        if origin is None:
                            origin, shift = arrived, -frame.pts_s
                        elif shift is None:                       # first frame after a loss: placed by the clock
                            shift = max(arrived - origin, last_t + step) - frame.pts_s
                        t = frame.pts_s + shift
                        if last_t is not None and (lost is not None or t - last_t > 1.5 * step):
                            self._put(self._clips, (stream.index, _NewSegment(
                                last_t + step, t, lost or f"no frame for {t - last_t - step:.1f} s")))
                            assembler = ClipAssembler(self.clip_frames, self.stride)
                        lost, attempts, delay, last_t = None, 0, self.options.reconnect_interval, t
                        stream.frames += 1
                        stream.seconds = t + step
                        for _, pixels in assembler.push(frame.rgb, frame.pts_s):
                            self._put(self._clips, (stream.index, _Clip(pixels, t + step, arrived)))
                        self._show(stream, source, shift)
                        if self._stop.is_set() or self._abort.is_set():
                            break
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
            self._put(self._out, {"stream": stream.name, "status": "reconnecting", "attempt": attempts,
                                  "in_s": delay, "error": error})
            if self._stop.wait(delay):
                break
            delay = min(2 * delay, 30.0)
        stream.ended = True
        self._put(self._clips, (stream.index, error or _END))

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

    def _put(self, q: "queue.Queue", item) -> bool:
        """Put ``item``, waiting for room; False (item dropped) once the run is aborted."""
        while not self._abort.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _get(self, q: "queue.Queue"):
        """The next item, waiting; ``_END`` once the run is aborted."""
        while not self._abort.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass
        return _END

    def _guarded(self, work: Callable[[], None]) -> Callable[[], None]:
        """A worker body whose failure aborts the run; :meth:`events` raises it."""
        def body():
            try:
                work()
            except Exception as err:  # noqa: BLE001 - any failure ends the run, reported once
                self._failure = f"{type(err).__name__}: {err}"
                self._abort_now()
        return body

    def _extract_worker(self) -> None:
        open_streams = len(self.streams)
        while open_streams:
            first = self._get(self._clips)
            if first is _END:
                return
            items = [first]
            while len(items) < self.options.batch:
                try:
                    items.append(self._clips.get_nowait())
                except queue.Empty:
                    break
            clips = [(i, c) for i, c in items if isinstance(c, _Clip)]
            if clips:
                tick = time.perf_counter()
                features = self.extractor.extract(np.stack([c.pixels for _, c in clips]))
                self._timings["extract"].append(time.perf_counter() - tick)
                for (i, clip), feature in zip(clips, features):
                    self._add_feature(self.streams[i], feature, clip)
            for i, item in items:
                stream = self.streams[i]
                if isinstance(item, _NewSegment):
                    self._new_segment(stream, item)
                elif not isinstance(item, _Clip):
                    stream.error = None if item is _END else item
                    self._schedule(stream, final=True, last=True)
                    open_streams -= 1
        self._put(self._windows, None)

    def _add_feature(self, stream: _Stream, feature: np.ndarray, clip: _Clip) -> None:
        stream.features.append(feature)
        stream.arrivals.append((clip.end_s, clip.arrived))
        stream.count += 1
        stream.total += 1
        if stream.count - stream.last_run >= stream.hop and not (stream.live and stream.in_flight):
            self._schedule(stream, final=False, last=False)

    def _new_segment(self, stream: _Stream, segment: _NewSegment) -> None:
        """Close the segment before a gap (its pending events become final), report the gap, and
        start counting features again at the new segment's time: no feature spans the gap."""
        self._schedule(stream, final=True, last=False)
        stream.features.clear()
        stream.count = stream.last_run = 0
        stream.offset_s = segment.offset_s
        stream.gaps += 1
        stream.gap_s += segment.offset_s - segment.from_s
        self._put(self._out, {"stream": stream.name, "status": "gap", "from_s": segment.from_s,
                              "to_s": segment.offset_s, "error": segment.reason})

    def _schedule(self, stream: _Stream, final: bool, last: bool) -> None:
        """Hand the stream's newest window to the network worker. At most one window of a live stream
        is with the network (a final one excepted): when the network is slower than the hop, windows
        come every ``hop`` or more features — counted, and said once per stream. Other sources wait
        for the network instead (back-pressure), so a file gives the same windows on every run."""
        fresh = stream.count > stream.last_run
        features = np.stack(stream.features) if fresh and stream.features else np.zeros((0, self.extractor.dim),
                                                                                        np.float32)
        hop = stream.count - stream.last_run
        if not final:
            stream.in_flight = True
            self._hops.append(hop)
            if hop > stream.hop:
                stream.widened += 1
                if stream.widened == 1:
                    network = _percentiles(list(self._timings["network"]))["p50_ms"] or 0.0
                    self._put(self._out, {"stream": stream.name, "status": "slow", "hop": hop, "error": (
                        f"the network (p50 {network:.0f} ms per call) is slower than a window every "
                        f"{stream.hop} features: windows now come every {hop} or more")})
        stream.last_run = stream.count
        self._put(self._windows, _Window(stream.index, features, stream.count - len(features), stream.offset_s,
                                         final, last))

    def _network_worker(self) -> None:
        running = True
        while running:
            first = self._get(self._windows)
            if first is _END:
                return
            jobs = [first]
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
        self._put(self._out, _END)

    def _finish_window(self, job: _Window, detections: List[Dict]) -> None:
        stream = self.streams[job.stream]
        stream.in_flight = False
        tick = time.perf_counter()
        last = job.start + len(job.features) - 1
        newest = last if len(job.features) else job.start - 1
        decided_at = job.offset_s + max(0.0, (newest * self.stride + self.clip_frames) / self.fps)
        messages = []
        if len(job.features):
            shift = job.offset_s + job.start * self.stride / self.fps
            shifted = [{**d, "start": d["start"] + shift, "end": d["end"] + shift} for d in detections]
            centre = self.clip_frames / 2
            messages = stream.merger.add_window(shifted, job.offset_s + (job.start * self.stride + centre) / self.fps,
                                                job.offset_s + (last * self.stride + centre) / self.fps, decided_at,
                                                stream_start=job.start == 0, stream_end=job.final)
        if job.final:
            messages += stream.merger.flush(decided_at)
        self._timings["merge"].append(time.perf_counter() - tick)
        if stream.video is not None:
            shown = [m for m in messages if m["type"] == "end" and m["score"] >= self.options.video_min_score]
            settled = decided_at - (self.options.guard + stream.hop) * self.stride / self.fps
            stream.video.decided(shown, decided_at if job.final else settled, stream.merger.provisional())
        now = time.monotonic()
        for message in messages:
            kind = message["type"]
            # wall latency: from the arrival of the frame the latency is counted from (an end's end,
            # a new's start) to now
            reference = message["end"] if kind == "end" else message["start"]
            message["latency_wall_s"] = max(0.0, now - self._arrival(stream, reference))
            if kind == "end":
                self._events += 1
                if message["score"] >= self.options.alert_score:
                    self._alerts += 1
                    self._latencies["final"].append(message["latency_s"])
                    self._latencies["final_wall"].append(message["latency_wall_s"])
            elif kind == "new":
                self._latencies["new"].append(message["latency_s"])
                self._latencies["new_wall"].append(message["latency_wall_s"])
            if kind == "end" or self.options.events == "all":
                self._put(self._out, message)
        if job.last:
            status = {"stream": stream.name, "status": "error" if stream.error else "end",
                      "frames": stream.frames, "features": stream.total, "gaps": stream.gaps}
            if stream.error:
                status["error"] = stream.error
            self._put(self._out, status)
            if stream.video is not None:                 # finalize the file without holding up the other streams
                closer = threading.Thread(target=stream.video.close, daemon=True, name=f"asl-video-{stream.index}")
                closer.start()
                self._closers.append(closer)

    @staticmethod
    def _arrival(stream: _Stream, t: float) -> float:
        """Monotonic time at which the frame at stream time ``t`` reached the reader (the first clip
        ending at or after ``t``; the oldest one known for older times)."""
        arrivals = list(stream.arrivals)
        i = bisect.bisect_left(arrivals, (t, -math.inf))
        return arrivals[min(i, len(arrivals) - 1)][1] if arrivals else time.monotonic()

    def _falling_behind(self) -> List[Dict]:
        """A warning per live stream that dropped frames since the last check (the run is slower
        than the source)."""
        warnings = []
        ratio = self.stats()["stream_s_per_wall_s"] / max(1, len(self.streams))
        for stream, source in zip(self.streams, self._sources):
            dropped = stream.source_stats.get("dropped_queue", 0) + (source.stats.dropped_queue if source else 0)
            if dropped > stream.dropped_seen:
                self._behind += 1
                warnings.append({"stream": stream.name, "status": "behind", "dropped_frames": dropped - stream.dropped_seen,
                                 "error": f"falling behind the live source: {dropped - stream.dropped_seen} frames "
                                          f"dropped in the last {BEHIND_CHECK_S:g} s (processing {ratio:.2f} "
                                          "stream-seconds per second per stream)"})
                stream.dropped_seen = dropped
        return warnings

    def _warm_up(self) -> None:
        """One extractor call and one network call on zeros before a live source opens: their first
        calls build kernels (OpenVINO, oneDNN) and would stall the first second of a camera into
        dropped frames."""
        spec = self.extractor.clip
        try:
            self.extractor.extract(np.zeros((1, spec.num_frames, spec.geometry.height, spec.geometry.width, 3),
                                            np.uint8))
            self.backend.detect_batch([np.zeros((self.options.window, self.extractor.dim), np.float32)], fps=self.fps)
        except Exception as err:  # noqa: BLE001 - as a worker's failure would end the run
            raise StreamError(f"the stream stopped: {type(err).__name__}: {err}") from err

    # --- public ---------------------------------------------------------------------------------
    def events(self) -> Iterator[Dict]:
        """Run the streams; yield each event as it is finalized, and status dicts (``"status"``
        key: ``stats`` every ``stats_interval`` seconds, ``gap``, ``reconnecting``, ``behind``
        (dropped frames), ``video_out``, and ``end``/``error`` when a stream ends)."""
        if any(stream.live for stream in self.streams):
            self._warm_up()
        self._started = time.perf_counter()
        threads = [threading.Thread(target=self._read, args=(s,), daemon=True, name=f"asl-read-{s.index}")
                   for s in self.streams]
        threads += [threading.Thread(target=self._guarded(self._extract_worker), daemon=True, name="asl-extract"),
                    threading.Thread(target=self._guarded(self._network_worker), daemon=True, name="asl-network")]
        for thread in threads:
            thread.start()
        next_stats = self._started + self.options.stats_interval
        next_check = self._started + BEHIND_CHECK_S
        finished = False
        try:
            while not self._abort.is_set():
                try:
                    item = self._out.get(timeout=0.1)
                except queue.Empty:
                    item = None
                now = time.perf_counter()
                if self.options.max_seconds is not None and now - self._started > self.options.max_seconds:
                    self.stop()
                if now >= next_check:
                    next_check = now + BEHIND_CHECK_S
                    yield from self._falling_behind()
                if self.options.stats_interval > 0 and now >= next_stats:
                    next_stats = now + self.options.stats_interval
                    yield {"status": "stats", **self.stats()}
                if item is _END:
                    finished = True
                    break
                if item is not None:
                    yield item
        finally:
            self._shut_down(threads, finished)
        if self._failure is not None:
            raise StreamError(f"the stream stopped: {self._failure}")

    def _shut_down(self, threads: List[threading.Thread], finished: bool) -> None:
        """After the run, or when it is left early: abort what still runs, stop the pipelines and
        finalize the annotated videos."""
        if not finished:
            self._abort_now()
        for thread in threads:
            thread.join(timeout=JOIN_S if not finished else 5.0)
        for stream in self.streams:                     # after a failure: the files are finalized all the same
            if stream.video is not None:
                stream.video.close()

    def run(self, on_event: Callable[[Dict], None]) -> Dict:
        """Call ``on_event`` for every event and status; returns the final :meth:`summary`."""
        for item in self.events():
            on_event(item)
        return self.summary()

    def stop(self) -> None:
        """End every stream now; pending detections are flushed as at the end of a stream, and
        the iteration over :meth:`events` ends once they are out."""
        if not self._stop.is_set() and not all(s.ended for s in self.streams):
            self._stopped_early = True
        self._stop.set()
        self._close_sources()

    def _abort_now(self) -> None:
        """End everything at once: no flush; blocked threads give up."""
        self._abort.set()
        self._stop.set()
        self._close_sources()

    def _close_sources(self) -> None:
        for source in self._sources:
            if source is not None:
                source.close()

    def stats(self) -> Dict:
        """Counters and latencies so far, in all and per stream."""
        elapsed = max(1e-9, time.perf_counter() - self._started) if self._started else 0.0
        frames = sum(s.frames for s in self.streams)
        features = sum(s.total for s in self.streams)
        counts = collections.Counter()
        for stream, source in zip(self.streams, self._sources):
            counts.update(stream.source_stats)
            if source is not None:
                counts.update(source.stats.as_dict())
        return {"wall_s": elapsed, "frames": frames, "features": features, "events": self._events,
                "alerts": self._alerts, "alert_score": self.options.alert_score,
                "fps_in": frames / elapsed if elapsed else 0.0,
                "fps_processed": features * self.stride / elapsed if elapsed else 0.0,
                "stream_s_per_wall_s": features * self.stride / self.fps / elapsed if elapsed else 0.0,
                "dropped_frames": counts["dropped_queue"], "resampled_away": counts["dropped_resample"],
                "duplicated": counts["duplicated"], "gaps": sum(s.gaps for s in self.streams),
                "gap_s": sum(s.gap_s for s in self.streams), "behind_warnings": self._behind,
                "hops": {"asked": sorted({s.hop for s in self.streams}),
                         "p50": statistics.median(self._hops) if self._hops else None,
                        "max": max(self._hops, default=None), "widened": sum(s.widened for s in self.streams)},
                "clip_queue": self._clips.qsize(), "window_queue": self._windows.qsize(),
                "stages": {name: _percentiles(list(values)) for name, values in self._timings.items()},
                "decision_latency": _in_seconds(_percentiles(list(self._latencies["final"]))),
                "decision_latency_wall": _in_seconds(_percentiles(list(self._latencies["final_wall"]))),
                "new_latency": _in_seconds(_percentiles(list(self._latencies["new"]))),
                "new_latency_wall": _in_seconds(_percentiles(list(self._latencies["new_wall"]))),
                "streams": [{"stream": s.name, "frames": s.frames, "features": s.total, "gaps": s.gaps,
                             "error": s.error} for s in self.streams]}

    def summary(self) -> Dict:
        """The final stats plus each stream's counters; ``stopped_early``: :meth:`stop` ended the
        run before its sources did (a signal, ``max_seconds``)."""
        return {**self.stats(), "stopped_early": self._stopped_early, "failure": self._failure,
                "warnings": self.warnings,
                "streams": [{"stream": s.name, "frames": s.frames, "features": s.total, "seconds": s.seconds,
                             "gaps": s.gaps, "gap_s": s.gap_s, "error": s.error,
                             **{f"source_{k}": v for k, v in s.source_stats.items()},
                             **({"video_out": s.video.stats()} if s.video is not None else {})}
                            for s in self.streams],
                "window": self.options.window, "hop": [s.hop for s in self.streams], "guard": self.options.guard}
