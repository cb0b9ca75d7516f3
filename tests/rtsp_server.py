"""A real RTSP server for the tests (GstRtspServer): ``python rtsp_server.py PORT`` serves an
H.264 test pattern at rtsp://127.0.0.1:PORT/test until it is killed."""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=25/1 ! "
          "x264enc speed-preset=ultrafast tune=zerolatency key-int-max=5 ! rtph264pay name=pay0 pt=96 )")


def main() -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1])
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    server.attach(None)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
