"""The annotated video of a stream (``StreamOptions.video_out``, ``asl-edge stream --video-out``).

The source's display branch (:func:`asl_edge.video.pipeline.display_chain`) gives frames at the
display size with the source's timestamps; the reader puts them on the stream's time base and
:meth:`VideoOut.add` holds them. Events are final only some time after their frames went by, so a
frame waits until the engine has seen past it by its guard and hop (the *settled* time it passes
to :meth:`VideoOut.decided`), or until the buffer is full (``max_frames`` frames or ``max_bytes``;
the oldest then go out early), and is drawn with what is known then: final events, and the
provisional ones (not final yet) as provisional. Each frame going out gets a timeline strip along
its bottom (a bar per event in its label's colour, an outline for a provisional one, the playhead
at the frame's time) and, through ``textoverlay``, the stream time and the labels of the events
covering it (a provisional one with a question mark); then ``appsrc`` ->
x264 or VP8 -> MP4 (fragmented, so an endless stream keeps a bounded index and a killed run
leaves a playable file), WebM or Matroska -> the file, with the stream time as PTS.

A sink that cannot open its file is reported once and retried a few times; one that fails after
writing frames stops (reopening would overwrite them) and keeps what it wrote. Detection goes on
in both cases.
"""

from __future__ import annotations

import collections
import colorsys
import html
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..video import VideoError, gst
from ..video.pipeline import ELEMENT_PACKAGES, element_names, quote

PAST_S, AHEAD_S = 9.0, 3.0      # the timeline shows this much before and after the playhead
MAX_HELD_FRAMES = 3000
MAX_HELD_BYTES = 192 << 20       # 873 frames at 320x240: 58 s of display frames at 15 fps
QUEUED = 4                      # frames waiting in appsrc at most
RETRIES = 3                     # reopenings of a file that could not be opened (after 1, 2, 4 s)
STALL_S = 10.0                  # an encoder that takes no frame (or no EOS) for this long has failed
BACKGROUND = (40, 40, 40)
H264 = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 ! h264parse"
VP8 = "vp8enc deadline=1 cpu-used=8 keyframe-max-dist=60"
MUXERS = {".mp4": "mp4mux fragment-duration=1000", ".webm": "webmmux", ".mkv": "matroskamux"}


@dataclass(frozen=True)
class Encoding:
    """Where and how a stream's video is written: ``path``, ``codec`` (h264 or vp8), the
    encoder-to-muxer part of the pipeline, and whether labels are drawn (``textoverlay``)."""

    path: str
    codec: str
    elements: str
    text: bool


def choose_encoding(path: str, has_element: Callable[[str], bool]) -> Encoding:
    """H.264 (x264enc) when installed, else VP8; the container from the suffix: ``.mp4`` holds
    H.264 (without x264enc the file becomes ``.webm``), ``.webm`` VP8, ``.mkv`` either.
    VideoError for another suffix or a missing element."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in MUXERS:
        raise VideoError(f"video_out {path}: the file must end in .mp4 (H.264), .webm (VP8) or .mkv (either)")
    codec = "h264" if suffix != ".webm" and has_element("x264enc") and has_element("h264parse") else "vp8"
    if suffix == ".mp4" and codec == "vp8":
        target, suffix = target.with_suffix(".webm"), ".webm"
    elements = f"{H264 if codec == 'h264' else VP8} ! {MUXERS[suffix]}"
    missing = [name for name in element_names(f"appsrc ! videoconvert ! {elements} ! filesink")
               if not has_element(name)]
    if missing:
        hints = ", ".join(f"{name} ({ELEMENT_PACKAGES.get(name, 'a GStreamer plugin')})" for name in missing)
        raise VideoError(f"video_out {path}: missing GStreamer element{'s' if len(missing) > 1 else ''}: {hints}")
    return Encoding(str(target), codec, elements, has_element("textoverlay"))


def stream_path(path: str, index: int) -> str:
    """The file of stream ``index``: ``path`` itself for the first, ``stem.N.ext`` for stream N."""
    if index == 0:
        return path
    target = Path(path)
    return str(target.with_name(f"{target.stem}.{index}{target.suffix}"))


def label_colour(label_id: int) -> Tuple[int, int, int]:
    """A bright colour per class, hues a golden-ratio step apart so neighbours differ."""
    r, g, b = colorsys.hsv_to_rgb((label_id * 0.618034) % 1.0, 0.8, 1.0)
    return round(255 * r), round(255 * g), round(255 * b)


def draw_timeline(rgb: np.ndarray, t: float, events: Sequence[Dict]) -> np.ndarray:
    """A copy of ``rgb`` with the timeline strip along its bottom: ``PAST_S`` seconds before the
    playhead (a white line at ``t``) and ``AHEAD_S`` after, a bar per event in its label's colour
    (higher scores drawn over lower; an event whose ``final`` is False as an outline)."""
    frame = rgb.copy()
    height, width = frame.shape[:2]
    strip = frame[height - max(6, height // 12):]
    strip[:] = BACKGROUND
    scale = width / (PAST_S + AHEAD_S)
    for event in sorted(events, key=lambda e: e["score"]):
        x0, x1 = (min(width, max(0, round((s - t + PAST_S) * scale))) for s in (event["start"], event["end"]))
        if x1 <= x0:
            continue
        colour = label_colour(event["label_id"])
        if event.get("final", True):
            strip[1:-1, x0:x1] = colour
        else:
            strip[[1, -2], x0:x1] = colour
            strip[1:-1, [x0, x1 - 1]] = colour
    playhead = round(PAST_S * scale)
    strip[:, playhead - 1:playhead + 1] = 255
    return frame


def caption(t: float, events: Sequence[Dict]) -> str:
    """Pango markup: the stream time and the label and score of each event covering ``t``, best
    first, in its label's colour (a provisional one in italics, with a question mark)."""
    active = sorted((e for e in events if e["start"] <= t < e["end"]), key=lambda e: -e["score"])
    labels = "".join("  <span foreground=\"#%02x%02x%02x\"" % label_colour(e["label_id"])
                     + ("" if e.get("final", True) else " style=\"italic\"")
                     + f">{html.escape(str(e['label']))}{'' if e.get('final', True) else '?'} {e['score']:.2f}</span>"
                     for e in active)
    return f"{t:.1f} s{labels}"


class VideoOut:
    """One stream's annotated video file. :meth:`add` (the stream's reader) holds display frames
    and writes the settled ones, :meth:`decided` (the network worker) passes the final events and
    the settled time, :meth:`close` (once the stream ended) writes the rest and finalizes the
    file. ``report`` gets a dict for each state change (``state``: writing, failed, done);
    ``wait``: a full encoder queue makes :meth:`add` wait (files) instead of keeping the frames
    held for the next call (live sources)."""

    def __init__(self, encoding: Encoding, size: Tuple[int, int], report: Callable[[Dict], None],
                 wait: bool = True, max_frames: int = MAX_HELD_FRAMES, max_bytes: int = MAX_HELD_BYTES):
        self.encoding, self.size, self.report, self.wait = encoding, size, report, wait
        self.max_frames = max(1, min(max_frames, max_bytes // (3 * size[0] * size[1])))
        self.frames = self.dropped = 0
        self.error: Optional[str] = None
        self._held: Deque[Tuple[float, np.ndarray]] = collections.deque()
        self._events: List[Dict] = []
        self._provisional: List[Dict] = []
        self._settled = -math.inf
        self._closed = False
        self._lock = threading.Lock()       # held frames, events, settled time
        self._writing = threading.Lock()    # the encoder pipeline
        self._pipeline = None
        self._captions: Deque[Tuple[int, str]] = collections.deque()
        self._shown: Optional[str] = None
        self._last_t = -math.inf
        self._tries = 0
        self._retry_at = 0.0

    # --- public ---------------------------------------------------------------------------------
    def add(self, frames: Sequence[Tuple[float, np.ndarray]]) -> None:
        """Hold display frames ``(stream_s, rgb)``; write those whose time is settled, and the
        oldest beyond the buffer's cap. Without ``wait``, frames the encoder has no room for yet
        stay held, and the oldest beyond the cap are dropped."""
        with self._lock:
            self._held.extend((t, rgb) for t, rgb in frames if t >= 0)
            ready = self._take(self._settled)
        waiting = self._write(ready, self.wait)
        with self._lock:
            self._held.extendleft((t, rgb) for t, rgb, _ in reversed(waiting))
            while len(self._held) > self.max_frames:
                self._held.popleft()
                self.dropped += 1
            oldest = self._held[0][0] if self._held else self._last_t
            self._events = [e for e in self._events if e["end"] >= oldest - PAST_S]

    def decided(self, events: Sequence[Dict], settled_s: float, provisional: Sequence[Dict] = ()) -> None:
        """The stream's newly final events, the provisional ones as they stand now (they replace
        the last call's), and the stream time up to which frames may be drawn and written."""
        with self._lock:
            self._events.extend(events)
            self._provisional = [{**e, "final": False} for e in provisional]
            self._settled = max(self._settled, settled_s)

    def close(self) -> None:
        """Write every held frame, end the file (EOS, so the container is finalized) and report
        it (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ready = self._take(math.inf)
        self._write(ready, wait=True)
        with self._writing:
            if self._pipeline is not None:
                self._finish()
        if self.frames:
            self.report({"state": "done", **self.stats()})

    def stats(self) -> Dict:
        """Where the video goes and what was written: path, codec, frames, dropped, error."""
        return {"path": self.encoding.path, "codec": self.encoding.codec, "frames": self.frames,
                "dropped": self.dropped, "error": self.error}

    # --- frames ---------------------------------------------------------------------------------
    def _take(self, until: float) -> List[Tuple[float, np.ndarray, List[Dict]]]:
        """Pop the frames to write now, each with the events its timeline shows (under the lock)."""
        ready = []
        while self._held and (self._held[0][0] <= until or len(self._held) > self.max_frames):
            t, rgb = self._held.popleft()
            ready.append((t, rgb, [e for e in self._events + self._provisional
                                   if e["end"] >= t - PAST_S and e["start"] <= t + AHEAD_S]))
        return ready

    def _write(self, ready: List[Tuple[float, np.ndarray, List[Dict]]], wait: bool) -> List:
        """Draw and push ``ready``; returns those left for later (no ``wait`` and a busy encoder)."""
        with self._writing:
            for i, (t, rgb, events) in enumerate(ready):
                if t <= self._last_t:                   # PTS must grow
                    continue
                if self._pipeline is None:
                    self._open(ready)
                if self._pipeline is not None and self._room(wait):
                    self._push(t, draw_timeline(rgb, t, events), caption(t, events))
                elif self._pipeline is not None:        # busy: the rest waits for the next call
                    return ready[i:]
                if self._pipeline is None:              # the sink is down, or failed on this frame
                    self.dropped += 1
                self._last_t = t
        return []

    # --- the encoder pipeline (under self._writing) ----------------------------------------------
    def _open(self, ready: Sequence[Tuple[float, np.ndarray, List[Dict]]]) -> None:
        """Start the encoder pipeline (the frame rate in its caps estimated from ``ready``), unless
        an earlier failure rules it out for now or for good."""
        if self.error is not None and (self.frames or self._tries > RETRIES or time.monotonic() < self._retry_at):
            return
        Gst = gst()
        width, height = self.size
        times = [t for t, _, _ in ready]
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        fps = (len(times) - 1) / span if span > 0 else 30.0          # nominal: the PTS carry the timing
        overlay = (f"textoverlay name=asl_text auto-resize=false valignment=top halignment=left xpad=6 ypad=4 "
                   f"shaded-background=true font-desc={quote(f'Sans {max(6, height // 24)}')} ! "
                   if self.encoding.text else "")
        description = (f"appsrc name=asl_frames format=time caps=video/x-raw,format=RGB,width={width},"
                       f"height={height},pixel-aspect-ratio=1/1,framerate={round(fps * 100)}/100 ! {overlay}"
                       f"videoconvert ! {self.encoding.elements} ! filesink location={quote(self.encoding.path)}")
        self._tries += 1
        try:
            self._pipeline = Gst.parse_launch(description)
        except Exception as err:  # noqa: BLE001 - GLib.Error: reported like any failure of the sink
            self._fail(f"the pipeline cannot be built: {err}")
            return
        if self.encoding.text:
            self._captions.clear()
            self._shown = None
            overlay_input = self._pipeline.get_by_name("asl_text").get_static_pad("video_sink")
            overlay_input.add_probe(Gst.PadProbeType.BUFFER, self._on_caption)
        if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._fail(self._bus_error(0.5) or "the encoder pipeline did not start")
            return
        self.report({"state": "writing", "path": self.encoding.path, "codec": self.encoding.codec,
                     "size": list(self.size), "labels": self.encoding.text})

    def _on_caption(self, pad, info):
        """Set the overlay's text to the caption of the buffer about to be drawn (a probe on its
        video input, in the encoder's streaming thread)."""
        pts = info.get_buffer().pts
        while self._captions and self._captions[0][0] < pts:
            self._captions.popleft()
        if self._captions and self._captions[0][0] == pts:
            markup = self._captions.popleft()[1]
            if markup != self._shown:
                pad.get_parent_element().set_property("text", markup)
                self._shown = markup
        return gst().PadProbeReturn.OK

    def _room(self, wait: bool) -> bool:
        """Whether appsrc takes another frame now (``wait``: once it does, unless the encoder failed)."""
        source = self._pipeline.get_by_name("asl_frames")
        deadline = time.monotonic() + STALL_S
        while source.get_property("current-level-buffers") >= QUEUED:
            error = self._bus_error(0.002)
            if error is not None or (wait and time.monotonic() > deadline):
                self._fail(error or f"the encoder took no frame for {STALL_S:g} s")
                return False
            if not wait:
                return False
        return True

    def _push(self, t: float, frame: np.ndarray, markup: str) -> None:
        Gst = gst()
        buffer = Gst.Buffer.new_wrapped(frame.tobytes())
        buffer.pts = round(t * Gst.SECOND)
        if self.encoding.text:
            self._captions.append((buffer.pts, markup))
        flow = self._pipeline.get_by_name("asl_frames").emit("push-buffer", buffer)
        error = self._bus_error(0)
        if flow != Gst.FlowReturn.OK or error is not None:
            self._fail(error or f"the encoder refused a frame ({flow.value_nick})")
        else:
            self.frames += 1

    def _bus_error(self, timeout_s: float) -> Optional[str]:
        Gst = gst()
        message = self._pipeline.get_bus().timed_pop_filtered(int(timeout_s * Gst.SECOND), Gst.MessageType.ERROR)
        if message is None:
            return None
        err, _ = message.parse_error()
        return f"{message.src.get_name() if message.src is not None else 'pipeline'}: {err.message}"

    def _finish(self) -> None:
        """EOS through the pipeline and wait for it: the muxer writes its index then."""
        Gst = gst()
        self._pipeline.get_by_name("asl_frames").emit("end-of-stream")
        message = self._pipeline.get_bus().timed_pop_filtered(int(STALL_S * Gst.SECOND),
                                                              Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if message is None or message.type == Gst.MessageType.ERROR:
            self._fail(f"{message.parse_error()[0].message}" if message is not None
                       else f"no end of stream within {STALL_S:g} s: the file may be incomplete")
        else:
            self._pipeline.set_state(Gst.State.NULL)
            self._pipeline = None

    def _fail(self, error: str) -> None:
        """Drop the encoder pipeline and report the first failure; a file that could not be
        opened is tried again later (after 1, 2, 4 s), one that has frames is not."""
        if self._pipeline is not None:
            self._pipeline.set_state(gst().State.NULL)
            self._pipeline = None
        first = self.error is None
        self.error = f"{self.encoding.path}: {error}"
        self._retry_at = time.monotonic() + 2 ** (self._tries - 1)
        if first:
            then = (f"the {self.frames} frames written stay there, no more video for this stream" if self.frames
                    else f"retrying up to {RETRIES} times")
            self.report({"state": "failed", "path": self.encoding.path, "error": f"{self.error}; {then}"})
