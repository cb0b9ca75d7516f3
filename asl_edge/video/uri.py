"""Video source URIs: what each kind of input looks like, parsed into a :class:`SourceSpec`.

| URI | input |
|---|---|
| ``PATH`` or ``file:///abs/path`` | a video file (any container/codec the installed plugins decode) |
| ``rtsp://host[:port]/path`` | an RTSP stream (options ``latency_ms``, ``tcp``) |
| ``v4l2:///dev/videoN`` | a V4L2 camera (raw or MJPEG caps) |
| ``test://PATTERN?fps=F&width=W&height=H&frames=N`` | ``videotestsrc`` (live), e.g. ``test://ball`` |
| ``csi://N`` | a Jetson CSI camera (``nvarguscamerasrc sensor-id=N``) |
| ``gst:DESCRIPTION`` | a raw GStreamer pipeline description; the sink is attached to its end |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict
from urllib.parse import parse_qsl, unquote, urlsplit


class VideoError(RuntimeError):
    """A video input that cannot be opened or read; the message names the input and the problem."""


KINDS = ("file", "rtsp", "v4l2", "test", "csi", "gst")
TEST_DEFAULTS = {"fps": 30.0, "width": 320, "height": 240}


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source URI. ``location``: file path, RTSP URL, device path, test pattern, sensor id
    or pipeline description; ``params``: the query options of ``test://``."""

    kind: str
    location: str
    params: Dict[str, float] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Frames come at the source's pace whether or not they are read (drop-oldest applies)."""
        return self.kind in ("rtsp", "v4l2", "test", "csi")


def _test_params(query: str, uri: str) -> Dict[str, float]:
    params: Dict[str, float] = dict(TEST_DEFAULTS)
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in ("fps", "width", "height", "frames"):
            raise VideoError(f"{uri}: unknown option {key!r} (test:// takes fps, width, height, frames)")
        try:
            number = float(value)
        except ValueError:
            raise VideoError(f"{uri}: option {key}={value!r} is not a number") from None
        if not (math.isfinite(number) and number > 0) or (key != "fps" and not number.is_integer()):
            kind = "number" if key == "fps" else "integer"
            raise VideoError(f"{uri}: option {key}={value!r} must be a positive {kind}")
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
        return SourceSpec("file", unquote(parts.path))
    if scheme in ("rtsp", "rtsps", "rtspt"):
        return SourceSpec("rtsp", uri)
    if scheme == "v4l2":
        device = unquote(parts.path) or "/dev/video0"
        return SourceSpec("v4l2", device)
    if scheme == "test":
        pattern = parts.netloc or parts.path.strip("/") or "smpte"
        return SourceSpec("test", pattern, _test_params(parts.query, uri))
    if scheme == "csi":
        sensor = parts.netloc or "0"
        if not sensor.isdigit():
            raise VideoError(f"{uri}: csi://N takes a sensor number, got {sensor!r}")
        return SourceSpec("csi", sensor)
    raise VideoError(f"{uri}: unknown scheme {scheme!r}; use a file path, file://, rtsp://, v4l2:///dev/videoN, "
                     "test://PATTERN, csi://N or gst:PIPELINE")
