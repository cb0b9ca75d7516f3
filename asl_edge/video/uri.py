"""Video source URIs: what each kind of input looks like, parsed into a :class:`SourceSpec`.

| URI | input |
|---|---|
| ``PATH`` or ``file:///abs/path`` | a video file (any container/codec the installed plugins decode) |
| ``rtsp://host[:port]/path`` | an RTSP stream (options ``latency_ms``, ``tcp``) |
| ``v4l2:///dev/videoN`` | a V4L2 camera (raw or MJPEG caps) |
| ``test://PATTERN?fps=F&width=W&height=H&frames=N&live=0`` | ``videotestsrc`` (live unless ``live=0``), e.g. ``test://ball`` |
| ``test://demo?seed=N&seconds=S&fps=F&width=W&height=H&live=0`` | the built-in demo scene (:mod:`.scene`) |
| ``csi://N`` | a Jetson CSI camera (``nvarguscamerasrc sensor-id=N``) |
| ``gst:DESCRIPTION`` | a raw GStreamer pipeline description; the sink is attached to its end |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import UserError


class VideoError(UserError, RuntimeError):
    """A video input that cannot be opened or read; the message names the input and the problem."""


KINDS = ("file", "rtsp", "v4l2", "test", "csi", "gst")
TEST_DEFAULTS = {"fps": 30.0, "width": 320, "height": 240}
TEST_OPTIONS = ("fps", "width", "height", "frames", "live")
SCENE_OPTIONS = ("fps", "width", "height", "seed", "seconds", "live")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source URI. ``location``: file path, RTSP URL, device path, test pattern, sensor id
    or pipeline description; ``params``: the query options of ``test://``."""

    kind: str
    location: str
    params: Dict[str, float] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Frames come at the source's pace whether or not they are read (drop-oldest applies);
        ``test://demo?live=0`` renders as fast as it is read."""
        return self.kind in ("rtsp", "v4l2", "test", "csi") and bool(self.params.get("live", 1))


def _test_params(pattern: str, query: str, uri: str) -> Dict[str, float]:
    params: Dict[str, float] = dict(TEST_DEFAULTS)
    allowed = SCENE_OPTIONS if pattern == "demo" else TEST_OPTIONS
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            raise VideoError(f"{uri}: unknown option {key!r} (test://{pattern} takes {', '.join(allowed)})")
        try:
            number = float(value)
        except ValueError:
            raise VideoError(f"{uri}: option {key}={value!r} is not a number") from None
        fractional = key in ("fps", "seconds")
        low_ok = number >= 0 if key in ("seed", "live") else number > 0
        if not (math.isfinite(number) and low_ok) or (not fractional and not number.is_integer()):
            kind = "number" if fractional else "integer"
            sign = "non-negative" if key in ("seed", "live") else "positive"
            raise VideoError(f"{uri}: option {key}={value!r} must be a {sign} {kind}")
        params[key] = number
    return params


def parse_uri(uri: str) -> SourceSpec:
    """The :class:`SourceSpec` of ``uri``; VideoError for an unknown scheme or a malformed URI.
    A plain path is a file; whether it exists is checked when the source opens."""
    uri = str(uri)
    if uri.startswith("gst:"):
        description = uri[4:].strip()
        if not description:
            raise VideoError("gst: needs a pipeline description, e.g. gst:videotestsrc num-buffers=30")
        return SourceSpec("gst", description)
    if "://" not in uri:
        return SourceSpec("file", str(Path(uri)))
    scheme = uri.split("://", 1)[0].lower()
    parts = urlsplit(uri)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise VideoError(f"{uri}: a file URI takes an absolute path, file:///abs/path ({parts.netloc!r} would be "
                             f"read as a host name); give a relative path as it is: {parts.netloc}{parts.path}")
        return SourceSpec("file", unquote(parts.path))
    if scheme in ("rtsp", "rtsps", "rtspt"):
        if not parts.hostname:
            raise VideoError(f"{uri}: an RTSP URI needs a host: rtsp://host[:port]/path")
        try:
            parts.port
        except ValueError:
            raise VideoError(f"{uri}: the port is not a number") from None
        return SourceSpec("rtsp", uri)
    if scheme == "v4l2":
        if parts.netloc:
            raise VideoError(f"{uri}: a V4L2 URI takes the device's absolute path after three slashes, e.g. "
                             f"v4l2:///dev/video0 ({parts.netloc!r} would be read as a host name)")
        device = unquote(parts.path) or "/dev/video0"
        return SourceSpec("v4l2", device)
    if scheme == "test":
        pattern = parts.netloc or parts.path.strip("/") or "smpte"
        return SourceSpec("test", pattern, _test_params(pattern, parts.query, uri))
    if scheme == "csi":
        sensor = parts.netloc or "0"
        if not sensor.isdigit():
            raise VideoError(f"{uri}: csi://N takes a sensor number, got {sensor!r}")
        return SourceSpec("csi", sensor)
    raise VideoError(f"{uri}: unknown scheme {scheme!r}; use a file path, file://, rtsp://, v4l2:///dev/videoN, "
                     "test://PATTERN, csi://N or gst:PIPELINE")


def fps_fraction(fps: float) -> str:
    """A frame rate as GStreamer caps write it: ``30`` -> ``30/1``, ``29.97`` -> ``2997/100``,
    ``12.5`` -> ``25/2``."""
    for denominator in (1, 2, 4, 5, 10, 100, 1000, 1001):
        numerator = fps * denominator
        if abs(numerator - round(numerator)) < 1e-6:
            return f"{round(numerator)}/{denominator}"
    return f"{round(fps * 1000)}/1000"
