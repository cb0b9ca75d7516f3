"""``open_source(uri, ...)``: one way in for every video input, yielding :class:`Frame` objects.

GStreamer's streaming thread only hands samples to a bounded queue (for live sources the oldest is
dropped and counted when the reader falls behind; files wait for the reader). The reader —
whoever iterates the source — maps each buffer, copies its rows (honouring the negotiated row
stride), unmaps it, and resamples to the asked fps by timestamp. Bus errors surface as
:class:`VideoError`: before the first frame where they happen at start-up, after the frames
already decoded otherwise.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from .pipeline import (DISPLAY_NAME, ELEMENT_PACKAGES, PRESETS, SINK_NAME, Geometry, build_pipeline, choose_preset,
                       element_names)
from .resample import Resampler
from .scene import animate, is_scene
from .uri import SourceSpec, VideoError, parse_uri

log = logging.getLogger("asl_edge.video")

_GST = None


def gst():
    """The initialised ``Gst`` module. onnx and onnxruntime, when installed, are imported first:
    imported after ``Gst.init()`` their first C++ exception kills the process (DESIGN §6)."""
    global _GST
    if _GST is not None:
        return _GST
    for name in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(name) is not None:
            __import__(name)
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstVideo", "1.0")
        gi.require_version("GstPbutils", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError) as err:
        raise VideoError(f"GStreamer is not usable from Python here ({err}): install the system packages "
                         "(Debian: gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
                         "gstreamer1.0-libav gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0) and "
                         "pip install 'asl-edge[stream]'") from err
    Gst.init(None)
    _GST = Gst
    return Gst


def has_element(name: str) -> bool:
    """Whether the GStreamer element factory ``name`` is installed."""
    return gst().ElementFactory.find(name) is not None


def auto_preset() -> str:
    """The hardware preset this machine supports (jetson, nvidia), else software."""
    return choose_preset(has_element)[0]


def video_report() -> Dict:
    """For ``asl-edge doctor``: the GStreamer version, the preset ``auto`` picks and which preset
    elements are installed (or why GStreamer cannot be used)."""
    try:
        Gst = gst()
    except VideoError as err:
        return {"gstreamer": None, "reason": str(err)}
    preset, found = choose_preset(has_element)
    return {"gstreamer": Gst.version_string(), "auto_preset": preset, "preset_elements": found}


@dataclass
class Frame:
    """One RGB frame: ``pts_s`` from the buffer timestamp (resampled: the output tick), ``rgb``
    uint8 (H, W, 3)."""

    pts_s: float
    rgb: np.ndarray


@dataclass
class SourceStats:
    """Counters of one source: frames the pipeline decoded, frames delivered to the reader,
    frames dropped (queue full on a live source, or by fps resampling) and duplicated (by
    resampling), gaps in the input's timestamps longer than the resampler's ``max_gap_s`` (their
    count and seconds; output ticks left out inside them), and timestamps repaired (missing, or not
    after the previous frame's, as AVI files with B-frames have: previous + one interval)."""

    decoded: int = 0
    delivered: int = 0
    dropped_queue: int = 0
    dropped_resample: int = 0
    duplicated: int = 0
    gap_ticks: int = 0
    gaps: int = 0
    gap_s: float = 0.0
    repaired_pts: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_queue + self.dropped_resample

    def as_dict(self) -> Dict[str, int]:
        return {"decoded": self.decoded, "delivered": self.delivered, "dropped": self.dropped,
                "dropped_queue": self.dropped_queue, "dropped_resample": self.dropped_resample,
                "duplicated": self.duplicated, "gap_ticks": self.gap_ticks, "gaps": self.gaps,
                "gap_s": round(self.gap_s, 6), "repaired_pts": self.repaired_pts}


@dataclass
class _Handoff:
    """The bounded queue between GStreamer's streaming thread and the reader."""

    capacity: int
    live: bool
    samples: Deque = field(default_factory=collections.deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False


class VideoSource:
    """An open video input; iterate it for :class:`Frame` objects, ``close()`` it (or use it as a
    context manager) when done. Made by :func:`open_source`."""

    def __init__(self, uri: str, geometry: Optional[Geometry] = None, fps: Union[None, float, str] = None,
                 realtime: bool = False, queue_size: int = 8, preset: str = "auto", latency_ms: int = 200,
                 tcp: bool = True, start_timeout_s: float = 10.0, frame_timeout_s: Optional[float] = None,
                 display: Optional[Tuple[int, int]] = None, max_gap_s: float = 1.0, fill_gaps: bool = False,
                 lossless: bool = False, cancel: Optional[threading.Event] = None):
        self.uri = str(uri)
        self.geometry = geometry
        self.frame_timeout_s = frame_timeout_s
        self.stats = SourceStats()
        self._cancel = cancel
        self.spec, self.preset, self.description = plan_source(
            self.uri, geometry, preset=preset, realtime=realtime, queue_size=queue_size, latency_ms=latency_ms,
            tcp=tcp, display=display, lossless=lossless)
        log.info("%s: %s", self.uri, self.description)
        Gst = gst()
        try:
            self.pipeline = Gst.parse_launch(self.description)
        except Exception as err:  # GLib.Error: a malformed description (gst: sources) or a bad property
            raise VideoError(f"{self.uri}: the pipeline cannot be built: {err} (pipeline: {self.description})") from err
        self.scene = animate(self.pipeline, self.spec) if is_scene(self.spec) else None
        self._bus = self.pipeline.get_bus()
        self._handoff = _Handoff(capacity=max(1, queue_size), live=self.spec.live)
        self._fps, self._max_gap_s, self._fill_gaps = fps, max_gap_s, fill_gaps
        self._resampler: Optional[Resampler] = None if fps in (None, "native") else \
            Resampler(fps, max_gap_s=max_gap_s, fill_gaps=fill_gaps)
        self._costs: Dict[str, Deque[float]] = {stage: collections.deque(maxlen=512) for stage in ("decode", "read")}
        self._thread_cpu: Dict[int, float] = {}
        self._video_seen = False
        self._ready: Deque[Frame] = collections.deque()
        self._error: Optional[str] = None
        self._eos = False
        self._finished = False
        self.native_fps: Optional[float] = None
        self.frame_size: Optional[tuple] = None      # (height, width) of the delivered frames
        self._last_duration: Optional[float] = None
        self._last_pts: Optional[float] = None
        # the pipeline holds these bound methods, and so this object: close() undoes them, or every
        # source ever opened (each reconnect) would stay in memory with its pipeline
        self._callbacks: List[Callable[[], None]] = []
        self._install_geometry_probe()
        sink = self.pipeline.get_by_name(SINK_NAME)
        handler = sink.connect("new-sample", self._on_sample)
        self._callbacks.append(lambda: sink.disconnect(handler))
        self._display = self.pipeline.get_by_name(DISPLAY_NAME) if display is not None else None
        self._start(start_timeout_s)

    # --- set-up ---------------------------------------------------------------------------------
    def _install_geometry_probe(self) -> None:
        Gst = gst()
        first = self.pipeline.get_by_name("asl_in")
        pad = first.get_static_pad("sink")
        self._callbacks.append(lambda: pad.remove_probe(probe))
        probe = pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, self._on_caps_event)

    def _on_caps_event(self, pad, info):
        """Note that video reached the pipeline's own part; with a geometry, set the crop (and the
        pre-crop scale) from the negotiated input size, before the caps reach the cropping element."""
        Gst = gst()
        event = info.get_event()
        if event.type != Gst.EventType.CAPS:
            return Gst.PadProbeReturn.OK
        self._video_seen = True
        if self.geometry is None:
            return Gst.PadProbeReturn.OK
        structure = event.parse_caps().get_structure(0)
        ok_w, width = structure.get_int("width")
        ok_h, height = structure.get_int("height")
        if not (ok_w and ok_h):
            return Gst.PadProbeReturn.OK
        g = self.geometry
        if self.preset == "nvidia":
            scaled_w, scaled_h = g.scaled_input(width, height)
            caps = Gst.Caps.from_string(f"video/x-raw(memory:CUDAMemory),width={scaled_w},height={scaled_h}")
            self.pipeline.get_by_name("asl_scale").set_property("caps", caps)
            left, top = (scaled_w - g.width) // 2, (scaled_h - g.height) // 2
            crop, box = self.pipeline.get_by_name("asl_crop"), (left, scaled_w - g.width - left, top,
                                                                 scaled_h - g.height - top)
        else:
            crop, box = self.pipeline.get_by_name("asl_in"), g.crop_box(width, height)
        left, right, top, bottom = box
        if self.preset == "jetson":                     # nvvidconv takes the kept rectangle's corners
            right, bottom = width - right, height - bottom
        for name, value in zip(("left", "right", "top", "bottom"), (left, right, top, bottom)):
            crop.set_property(name, int(value))
        return Gst.PadProbeReturn.OK

    def _start(self, timeout_s: float) -> None:
        Gst = gst()
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._poll_bus(0.5)
            self.close()
            raise VideoError(self._error or f"{self.uri}: the pipeline failed to start")
        deadline = time.monotonic() + timeout_s
        while True:                                     # wait for a first frame, an error or EOS
            with self._handoff.cond:
                if self._handoff.samples:
                    return
            self._poll_bus(0.05)
            if self._error is not None:
                self.close()
                raise VideoError(self._error)
            if self._eos:
                with self._handoff.cond:
                    if self._handoff.samples:
                        return
                self.close()
                raise VideoError(f"{self.uri}: the input ended before any video frame (no video stream?)")
            if time.monotonic() > deadline:
                self.close()
                raise VideoError(f"{self.uri}: no video frame within {timeout_s:g} s")
            if self._cancel is not None and self._cancel.is_set():
                self.close()
                raise VideoError(f"{self.uri}: cancelled while starting")

    # --- streaming thread -----------------------------------------------------------------------
    def _on_sample(self, sink):
        Gst = gst()
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        self._note_decode_cost()
        h = self._handoff
        with h.cond:
            self.stats.decoded += 1
            if h.live:
                if len(h.samples) >= h.capacity:
                    h.samples.popleft()
                    self.stats.dropped_queue += 1
            else:
                while len(h.samples) >= h.capacity and not h.closed:
                    h.cond.wait(0.1)
                if h.closed:
                    return Gst.FlowReturn.FLUSHING
            h.samples.append(sample)
            h.cond.notify_all()
        return Gst.FlowReturn.OK

    def _note_decode_cost(self) -> None:
        """CPU seconds the calling streaming thread spent since its previous frame: demuxing,
        decoding and converting this one (a decoder's own worker threads are not included)."""
        thread, now = threading.get_ident(), time.thread_time()
        before = self._thread_cpu.get(thread)
        self._thread_cpu[thread] = now
        if before is not None:
            self._costs["decode"].append(now - before)

    def take_costs(self) -> Dict[str, List[float]]:
        """Per-frame costs in seconds measured since the last call: ``decode`` (CPU time of the
        GStreamer streaming thread that decodes and converts each frame) and ``read`` (the reader's
        own work: map, copy, unmap and resample)."""
        taken = {}
        for stage, costs in self._costs.items():
            taken[stage] = [costs.popleft() for _ in range(len(costs))]
        return taken

    # --- reader ---------------------------------------------------------------------------------
    def _poll_bus(self, timeout_s: float) -> None:
        Gst = gst()
        kinds = Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.ELEMENT
        message = self._bus.timed_pop_filtered(int(timeout_s * Gst.SECOND), kinds)
        while message is not None:
            self._handle(message)
            message = self._bus.timed_pop_filtered(0, kinds)

    def _handle(self, message) -> None:
        Gst = gst()
        if message.type == Gst.MessageType.EOS:
            self._eos = True
        elif message.type == Gst.MessageType.ELEMENT:
            from gi.repository import GstPbutils

            if GstPbutils.is_missing_plugin_message(message) and self._error is None:
                what = GstPbutils.missing_plugin_message_get_description(message)
                self._error = (f"{self.uri}: no GStreamer plugin for {what}: install gstreamer1.0-libav and "
                               "gstreamer1.0-plugins-good/-bad/-ugly")
        elif message.type == Gst.MessageType.ERROR and self._error is None:
            err, debug = message.parse_error()
            source = message.src.get_name() if message.src is not None else "pipeline"
            text = f"{self.uri}: {source}: {err.message}"
            if "not-linked" in (debug or "") and not self._video_seen:
                text = f"{self.uri}: no video stream in the input (GStreamer: {source}: {err.message})"
            elif "not-negotiated" in (debug or "") or "not negotiated" in err.message.lower():
                text += (" — caps not negotiated: the source cannot produce video this pipeline can convert "
                         "(check the size, format and frame rate asked for)")
            self._error = text

    def _next_sample(self):
        """The next sample, or None at the end (EOS, error or close). Waits on the hand-off (a new
        sample wakes it at once) and looks at the bus between waits."""
        h = self._handoff
        waiting_since = time.monotonic()
        while True:
            if self.frame_timeout_s is not None and time.monotonic() - waiting_since > self.frame_timeout_s \
                    and self._error is None:
                self._error = f"{self.uri}: no frame for {self.frame_timeout_s:g} s (the source stalled or is gone)"
            with h.cond:
                if not h.samples and not h.closed:
                    h.cond.wait(0.01)
                if h.samples:
                    sample = h.samples.popleft()
                    h.cond.notify_all()
                    return sample
                if h.closed:
                    return None
            if self._eos or self._error is not None:
                with h.cond:                            # the last samples may land after the message
                    if not h.samples:
                        return None
                continue
            self._poll_bus(0)

    def _rgb(self, sample):
        """The sample's RGB pixels, copied row by row through the negotiated stride, and its VideoInfo."""
        from gi.repository import GstVideo

        Gst = gst()
        buffer = sample.get_buffer()
        info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        width, height = info.width, info.height
        stride = info.stride[0]
        meta = GstVideo.buffer_get_video_meta(buffer)
        offset = 0
        if meta is not None:
            stride, offset = meta.stride[0], meta.offset[0]
        ok, mapped = buffer.map(Gst.MapFlags.READ)
        if not ok:
            raise VideoError(f"{self.uri}: a buffer could not be mapped")
        try:
            data = np.frombuffer(mapped.data, dtype=np.uint8)
            rows = np.lib.stride_tricks.as_strided(data[offset:], shape=(height, width * 3), strides=(stride, 1),
                                                   writeable=False)
            return np.ascontiguousarray(rows).reshape(height, width, 3), info
        finally:
            buffer.unmap(mapped)

    def _to_frame(self, sample) -> Frame:
        Gst = gst()
        buffer = sample.get_buffer()
        rgb, info = self._rgb(sample)
        width, height = info.width, info.height
        if self.native_fps is None and info.fps_n > 0 and info.fps_d > 0:
            self.native_fps = info.fps_n / info.fps_d
        if buffer.duration != Gst.CLOCK_TIME_NONE:
            self._last_duration = buffer.duration / Gst.SECOND
        self.frame_size = (height, width)
        pts = None if buffer.pts == Gst.CLOCK_TIME_NONE else buffer.pts / Gst.SECOND
        if self._last_pts is not None and (pts is None or pts <= self._last_pts):
            interval = 1.0 / self.native_fps if self.native_fps else (self._last_duration or 1.0 / 30)
            pts = self._last_pts + interval
            self.stats.repaired_pts += 1
        self._last_pts = pts if pts is not None else 0.0
        return Frame(pts_s=self._last_pts, rgb=rgb)

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        while not self._ready:
            if self._finished:
                self._raise_if_failed()
                raise StopIteration
            sample = self._next_sample()
            if sample is None:
                self._finished = True
                if self._resampler is not None:
                    self._ready.extend(Frame(t, rgb) for t, rgb in self._resampler.finish(self._last_duration))
                    self._sync_resample_counts()
                continue
            started = time.perf_counter()
            frame = self._to_frame(sample)
            if self._resampler is None and self._fps == "native":
                self._resampler = self._native_resampler()
            if self._resampler is None:
                self._ready.append(frame)
            else:
                self._ready.extend(Frame(t, rgb) for t, rgb in self._resampler.push(frame.pts_s, frame.rgb))
                self._sync_resample_counts()
            self._costs["read"].append(time.perf_counter() - started)
        self.stats.delivered += 1
        return self._ready.popleft()

    def display_frames(self) -> List[Tuple[float, np.ndarray]]:
        """The display frames (``display`` size, RGB) decoded since the last call, as ``(pts_s,
        rgb)`` with the source's own timestamps (not resampled); never waits. Empty without a
        display branch. The branch keeps the newest few: call it about once per frame."""
        Gst = gst()
        frames = []
        while self._display is not None:
            sample = self._display.emit("try-pull-sample", 0)
            if sample is None:
                break
            pts = sample.get_buffer().pts
            if pts != Gst.CLOCK_TIME_NONE:
                frames.append((pts / Gst.SECOND, self._rgb(sample)[0]))
        return frames

    def _native_resampler(self) -> Resampler:
        if not self.native_fps:
            self.close()
            raise VideoError(f"{self.uri}: the video states no frame rate: give one (--fps)")
        return Resampler(self.native_fps, max_gap_s=self._max_gap_s, fill_gaps=self._fill_gaps)

    def _sync_resample_counts(self) -> None:
        r = self._resampler
        self.stats.dropped_resample, self.stats.duplicated = r.counts.dropped, r.counts.duplicated
        self.stats.gap_ticks, self.stats.gaps = r.counts.gap_ticks, len(r.gaps)
        self.stats.gap_s = sum(end - start for start, end in r.gaps)

    @property
    def gaps(self) -> List[Tuple[float, float]]:
        """The ``(from_s, to_s)`` spans of the input's timestamps longer than ``max_gap_s`` without
        a frame, so far (source timestamps)."""
        return list(self._resampler.gaps) if self._resampler is not None else []

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None       # raised once; later calls just stop
            self.close()
            raise VideoError(f"{error} (after {self.stats.delivered} frames)")

    def close(self) -> None:
        """Stop the pipeline and release it (idempotent)."""
        h = self._handoff if hasattr(self, "_handoff") else None
        if h is not None:
            with h.cond:
                h.closed = True
                h.samples.clear()
                h.cond.notify_all()
        pipeline = getattr(self, "pipeline", None)
        if pipeline is not None:
            pipeline.set_state(gst().State.NULL)
        for undo in getattr(self, "_callbacks", ()):
            undo()
        self._callbacks = []

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def plan_source(uri: str, geometry: Optional[Geometry] = None, preset: str = "auto", realtime: bool = False,
                queue_size: int = 8, latency_ms: int = 200, tcp: bool = True,
                display: Optional[Tuple[int, int]] = None, lossless: bool = False) -> Tuple[SourceSpec, str, str]:
    """``(spec, preset, pipeline description)`` of a source, checked as far as it can be without
    starting it (the URI, the file or device, the preset, the GStreamer elements); VideoError
    naming the problem otherwise. :func:`open_source` starts from it."""
    spec = parse_uri(uri)
    check_input(spec, uri)
    if lossless:
        spec = lossless_spec(spec, uri)
    if preset != "auto" and preset not in PRESETS:
        raise VideoError(f"unknown preset {preset!r}; choose auto or one of {', '.join(PRESETS)}")
    chosen = auto_preset() if preset == "auto" else preset
    description = build_pipeline(spec, geometry, chosen, realtime=realtime, queue_size=max(2, queue_size),
                                 latency_ms=latency_ms, tcp=tcp, display=display)
    missing = [name for name in element_names(description) if not has_element(name)]
    if missing:
        hints = ", ".join(f"{name} ({ELEMENT_PACKAGES.get(name, 'a GStreamer plugin package')})" for name in missing)
        raise VideoError(f"{uri}: missing GStreamer element{'s' if len(missing) > 1 else ''}: {hints}")
    return spec, chosen, description


def check_input(spec: SourceSpec, uri: str) -> None:
    """VideoError for what can be known wrong before a pipeline is built: a missing or unreadable
    file, a camera device that does not exist."""
    if spec.kind == "file":
        path = Path(spec.location)
        named = uri if str(path) == uri else f"{uri} ({path})"
        if not path.is_file():
            raise VideoError(f"{named}: video file not found" if not path.exists() else f"{named}: not a file")
        if not os.access(path, os.R_OK):
            raise VideoError(f"{named}: the file is not readable")
    if spec.kind == "v4l2" and not Path(spec.location).exists():
        raise VideoError(f"{uri}: no such camera device {spec.location} (is it plugged in? "
                         "v4l2-ctl --list-devices lists them)")


def lossless_spec(spec: SourceSpec, uri: str) -> SourceSpec:
    """``spec`` read without losing a frame: a test pattern or scene rendered as fast as it is
    read; VideoError for a camera or a network stream, which cannot wait for a slow reader."""
    if spec.kind in ("rtsp", "v4l2", "csi"):
        raise VideoError(f"{uri}: a live {spec.kind.upper()} source cannot wait for a reader that is slower than "
                         "it, so frames would be lost: record it to a file first (or run asl-edge stream, which "
                         "drops and counts)")
    if spec.kind == "test":
        return dataclasses.replace(spec, params={**spec.params, "live": 0.0})
    return spec


def open_source(uri: str, geometry: Optional[Geometry] = None, fps: Union[None, float, str] = None,
                **options) -> VideoSource:
    """Open any video input (see :mod:`asl_edge.video.uri` for the URIs) and start it.

    ``geometry``: crop/scale of the delivered frames (None: native size); ``fps``: resample to this
    rate by timestamp (``"native"``: to the video's own stated rate; None: as decoded);
    ``max_gap_s``: a pause in the timestamps longer than this is a gap (see :attr:`VideoSource.gaps`),
    whose ticks are left out unless ``fill_gaps``; ``lossless``: never drop a frame (a test source
    renders as fast as it is read; a camera or RTSP stream is refused); ``realtime``: pace files at
    their own rate (live sources always are); ``queue_size``: frames held between GStreamer and the
    reader; ``cancel``: an Event that makes a source still waiting for its first frame give up; ``preset``: auto,
    software, jetson or nvidia; ``latency_ms``/``tcp``: RTSP options; ``start_timeout_s``: how long
    to wait for the first frame; ``frame_timeout_s``: a source that then delivers no frame for
    this long is an error (a stalled camera or stream); ``display``: (width, height) of a second,
    unresampled branch read with :meth:`VideoSource.display_frames` (None: no such branch). Errors
    that can be found before the first frame raise :class:`VideoError` here.
    """
    return VideoSource(uri, geometry=geometry, fps=fps, **options)
