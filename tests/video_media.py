"""Test media made with GStreamer itself, and the skip used when the system GStreamer is absent."""

from __future__ import annotations

import onnx  # noqa: F401  - imported before Gst.init (DESIGN §6)
import onnxruntime  # noqa: F401

import pytest

from asl_edge.video import VideoError, gst


def gst_or_skip():
    """The Gst module; skips with the reason when PyGObject or GStreamer is missing (.ci/run
    installs them, so CI never skips)."""
    try:
        return gst()
    except VideoError as err:
        pytest.skip(str(err))


ENCODERS = {
    "mp4-h264": ("x264enc speed-preset=ultrafast key-int-max=10 ! h264parse ! mp4mux", ".mp4"),
    "avi-mpeg4": ("avenc_mpeg4 ! avimux", ".avi"),
    "webm-vp8": ("vp8enc deadline=1 ! webmmux", ".webm"),
    "avi-mjpeg": ("jpegenc ! avimux", ".avi"),
    "mkv-h264": ("x264enc speed-preset=ultrafast key-int-max=10 ! h264parse ! matroskamux", ".mkv"),
}


def run_pipeline(description: str, timeout_s: float = 60.0) -> None:
    """Run a pipeline to EOS; raise with GStreamer's message on error."""
    Gst = gst_or_skip()
    pipeline = Gst.parse_launch(description)
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(int(timeout_s * Gst.SECOND),
                                                    Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if message is None:
        raise RuntimeError(f"timed out: {description}")
    if message.type == Gst.MessageType.ERROR:
        raise RuntimeError(f"{message.parse_error()[0].message}: {description}")


def make_video(path, kind: str = "mp4-h264", frames: int = 50, fps: int = 25, width: int = 318, height: int = 240,
               pattern: str = "ball") -> str:
    """Encode ``frames`` frames of a videotestsrc pattern; returns the file's path."""
    encoder, suffix = ENCODERS[kind]
    path = str(path) + suffix if not str(path).endswith(suffix) else str(path)
    run_pipeline(f"videotestsrc num-buffers={frames} pattern={pattern} ! video/x-raw,format=I420,width={width},"
                 f"height={height},framerate={fps}/1 ! videoconvert ! {encoder} ! filesink location={path}")
    return path
