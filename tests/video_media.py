"""Test media made with GStreamer itself, real servers on loopback (RTSP, MQTT) started and waited
for, and the skip used when the system GStreamer is absent."""

from __future__ import annotations

import onnx  # noqa: F401  - imported before Gst.init (DESIGN §6)
import onnxruntime  # noqa: F401

import os
import socket
import subprocess
import sys
import time

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, seconds: float = 15.0) -> subprocess.Popen:
    """``process`` once it listens on ``port``; skips with its output when it died (a missing
    system package), fails when it never opens the port."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stderr.read().decode()[-300:] if process.stderr else ""
            pytest.skip(f"{what} did not start: {output}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"{what} did not open port {port}")


def start_rtsp_server(port: int) -> subprocess.Popen:
    """tests/rtsp_server.py (GstRtspServer, Debian gir1.2-gst-rtsp-server-1.0) on loopback."""
    gst_or_skip()
    server = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "rtsp_server.py"), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return wait_for_port(port, server, "the RTSP test server (gir1.2-gst-rtsp-server-1.0)")


def make_scene_recording(path, seed: int, seconds: float, drop=None, fps: int = 30) -> str:
    """The demo scene ``seed`` rendered into a Matroska file (MJPEG, every frame a key frame), as
    an NVR records it: with ``drop=(a, b)`` the frames from ``a`` to ``b`` seconds are missing and
    the others keep their timestamps. Returns the file's path."""
    from asl_edge.video import parse_uri
    from asl_edge.video.scene import animate, scene_description

    Gst = gst_or_skip()
    spec = parse_uri(f"test://demo?seed={seed}&seconds={seconds:g}&fps={fps}&live=0")
    path = str(path)
    pipeline = Gst.parse_launch(f"{scene_description(spec)} ! videoconvert ! jpegenc name=encoder ! matroskamux ! "
                                f"filesink location={path}")
    animate(pipeline, spec)

    def leave_out(pad, info):
        pts = info.get_buffer().pts / Gst.SECOND
        return Gst.PadProbeReturn.DROP if drop and drop[0] <= pts < drop[1] else Gst.PadProbeReturn.OK

    if drop:
        pipeline.get_by_name("encoder").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, leave_out)
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if message is None or message.type == Gst.MessageType.ERROR:
        raise RuntimeError(f"the scene recording failed: {message.parse_error()[0].message if message else 'timeout'}")
    return path
