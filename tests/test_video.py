"""Video input: every source kind, exact frames and timestamps from generated files, row-stride
padding, fps resampling, live drop-oldest, RTSP from a real loopback server, preset pipeline
strings, and the errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
from video_media import ENCODERS, free_port, gst_or_skip, make_video, start_rtsp_server

from asl_edge.video import Geometry, Resampler, VideoError, build_pipeline, open_source, parse_uri
from asl_edge.video.pipeline import choose_preset, element_names


# ------------------------------------------------------------------------ pure parts (no GStreamer)


def test_uris_parse_into_source_kinds():
    assert parse_uri("clip.mp4").kind == "file" and parse_uri("file:///data/a%20b.mkv").location == "/data/a b.mkv"
    assert parse_uri("rtsp://cam.local:8554/live").kind == "rtsp"
    assert parse_uri("v4l2:///dev/video2").location == "/dev/video2"
    test = parse_uri("test://ball?fps=12.5&width=64&height=48&frames=9")
    assert (test.kind, test.location, test.params) == ("test", "ball", {"fps": 12.5, "width": 64, "height": 48,
                                                                         "frames": 9})
    assert parse_uri("csi://1").location == "1" and parse_uri("gst:videotestsrc").location == "videotestsrc"
    assert parse_uri("test://ball").live and not parse_uri("a.mp4").live
    for bad, message in [("ftp://x/y", "unknown scheme 'ftp'"), ("test://ball?fps=0", "positive"),
                         ("test://ball?size=3", "unknown option"), ("csi://left", "sensor number"),
                         ("gst:", "pipeline description"),
                         ("v4l2://dev/video0", "three slashes, e.g. v4l2:///dev/video0"),
                         ("file://relative/clip.mp4", "give a relative path as it is: relative/clip.mp4"),
                         ("rtsp://", "needs a host"), ("rtsp:///live", "needs a host"),
                         ("rtsp://cam:port/live", "the port is not a number")]:
        with pytest.raises(VideoError, match=message):
            parse_uri(bad)


def test_crop_boxes_follow_the_recipe():
    i3d = Geometry(224, 224, 224 / 256)
    # 340x256: short side already 256 -> a centred 224x224 crop
    assert i3d.crop_box(340, 256) == (58, 58, 16, 16)
    # 1920x1080: the short side scales to 256 (x 0.237); 224 of it is 945 input pixels
    left, right, top, bottom = i3d.crop_box(1920, 1080)
    assert (1920 - left - right, 1080 - top - bottom) == (945, 945) and left == 487 and top == 67
    # 4:3 output from 16:9 input keeps the full height; sizes are stored pixels (PAR not applied)
    assert Geometry(64, 48).crop_box(1280, 720) == (160, 160, 0, 0)
    assert Geometry(64, 48).crop_box(720, 576) == (0, 0, 18, 18)
    assert Geometry(224, 224, 0.875).scaled_input(340, 256) == (340, 256)
    assert Geometry(224, 224, 0.875).scaled_input(1920, 1080) == (455, 256)


@pytest.mark.parametrize("preset", ["software", "jetson", "nvidia"])
def test_pipeline_strings_of_every_preset(preset):
    g = Geometry(224, 224, 0.875)
    file_ = build_pipeline(parse_uri("/v/a b.mp4"), g, preset)
    rtsp = build_pipeline(parse_uri("rtsp://h/s"), g, preset, latency_ms=50, tcp=False)
    test = build_pipeline(parse_uri("test://ball?fps=30"), None, preset, realtime=True)
    assert file_.startswith('filesrc location="/v/a b.mp4" ! ')
    assert "rtspsrc location=\"rtsp://h/s\" latency=50 buffer-mode=none !" in rtsp and "protocols" not in rtsp
    assert "videotestsrc pattern=ball is-live=true ! video/x-raw,width=320,height=240,framerate=30/1" in test
    assert "drop=true sync=true" in test and "drop=false sync=false" in file_
    expected = {
        "software": ["filesrc", "decodebin", "videocrop", "videoscale", "videoconvert", "appsink"],
        "jetson": ["filesrc", "parsebin", "nvv4l2decoder", "nvvidconv", "videoconvert", "appsink"],
        "nvidia": ["filesrc", "decodebin", "cudaupload", "cudaconvertscale", "capsfilter", "cudadownload",
                   "videocrop", "videoconvert", "appsink"],
    }[preset]
    assert element_names(file_) == expected
    assert "width=224,height=224" in file_
    if preset == "jetson":
        assert "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM)" in build_pipeline(parse_uri("csi://0"), g,
                                                                                             preset)
    else:
        with pytest.raises(VideoError, match="needs the jetson preset"):
            build_pipeline(parse_uri("csi://0"), g, preset)


def test_hardware_presets_are_chosen_when_their_elements_exist():
    assert choose_preset(lambda name: True)[0] == "jetson"
    assert choose_preset(lambda name: name.startswith("cuda"))[0] == "nvidia"
    assert choose_preset(lambda name: False)[0] == "software"


def resample(fps_in, fps_out, frames):
    rs = Resampler(fps_out)
    out = []
    for i in range(frames):
        out += list(rs.push(i / fps_in, i))
    return out + list(rs.finish()), rs.counts


def test_resampling_by_timestamp():
    out, counts = resample(25, 30, 25)                       # 1 s: 30 ticks, 5 repeats
    assert len(out) == 30 and counts.duplicated == 5 and counts.dropped == 0
    assert [t for t, _ in out] == pytest.approx([k / 30 for k in range(30)])
    assert [i for _, i in out][:7] == [0, 1, 2, 3, 3, 4, 5]  # each tick shows the nearest frame
    out, counts = resample(60, 30, 60)
    assert [i for _, i in out] == list(range(0, 60, 2)) and counts.dropped == 30 and counts.duplicated == 0
    rs = Resampler(10.0, max_gap_s=0.5)                      # a 2 s gap is not filled with copies
    got = [t for p in (0.0, 0.1, 2.1, 2.2) for t, _ in rs.push(p, p)] + [t for t, _ in rs.finish()]
    assert got == pytest.approx([0.0, 0.1, 2.1, 2.2]) and rs.counts.gap_ticks == 19
    assert rs.gaps == [pytest.approx((0.2, 2.1))]               # recorded: from the end of the frame before


def test_a_filled_gap_keeps_every_later_tick_at_its_time():
    rs = Resampler(10.0, max_gap_s=0.5, fill_gaps=True)
    out = [pair for p in (0.0, 0.1, 2.1, 2.2) for pair in rs.push(p, p)] + list(rs.finish())
    assert [t for t, _ in out] == pytest.approx([k / 10 for k in range(23)])     # 2.3 s: 23 ticks, none left out
    # each tick shows the nearest frame: the one before the gap up to its middle, the one after from there
    assert [item for _, item in out] == [0.0] + [0.1] * 10 + [2.1] * 11 + [2.2]
    assert rs.gaps == [pytest.approx((0.2, 2.1))] and rs.counts.gap_ticks == 0


def test_a_container_rounding_its_timestamps_gives_no_extra_frame():
    # Matroska stores milliseconds: 600 frames at 30 fps end at 19.967 s + 0.033333 s = 20.0003 s
    for fps_out, ticks in ((15.0, 300), (30.0, 600), (60.0, 1200)):
        rs = Resampler(fps_out)
        out = [pair for i in range(600) for pair in rs.push(round(i / 30, 3), i)] + list(rs.finish(0.033333333))
        assert len(out) == ticks, fps_out
    rs = Resampler(30.0)                                       # slower input: the last frame fills its span
    out = [pair for i in range(200) for pair in rs.push(i / 10, i)] + list(rs.finish(0.1))
    assert len(out) == 600


# ----------------------------------------------------------------------------------- GStreamer


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    gst_or_skip()
    folder = tmp_path_factory.mktemp("media")
    files = {kind: make_video(folder / kind, kind) for kind in ENCODERS}
    files["60fps"] = make_video(folder / "fast", "mp4-h264", frames=60, fps=60, width=64, height=48)
    return files


@pytest.mark.parametrize("kind", list(ENCODERS))
def test_every_container_decodes_every_frame_with_its_timestamp(media, kind):
    with open_source(media[kind]) as source:
        frames = list(source)
    assert len(frames) == 50 and source.stats.decoded == 50 and source.stats.delivered == 50
    assert [f.pts_s for f in frames] == pytest.approx([i / 25 for i in range(50)], abs=2e-3)
    assert frames[0].rgb.shape == (240, 318, 3) and frames[0].rgb.dtype == np.uint8     # 318 px: padded rows
    assert source.native_fps == pytest.approx(25.0)
    moved = np.abs(frames[10].rgb.astype(int) - frames[0].rgb.astype(int)).mean()
    assert moved > 1.0                                                                  # the ball moves


def test_rows_are_read_through_the_stride():
    # 318 x 3 = 954 bytes per row, padded to 956: a wrong stride would rotate the channels
    with open_source("gst:videotestsrc num-buffers=3 pattern=solid-color foreground-color=0xff204060 ! "
                     "video/x-raw,width=318,height=7,format=RGB") as source:
        frames = list(source)
    assert len(frames) == 3
    assert (frames[0].rgb == np.array([0x20, 0x40, 0x60], np.uint8)).all()


def test_geometry_is_applied_on_the_pipeline(media):
    with open_source(media["mp4-h264"], geometry=Geometry(64, 32, 0.5)) as source:
        first = next(iter(source))
    assert first.rgb.shape == (32, 64, 3)


@pytest.mark.parametrize("fps_in, fps_out, frames_in, frames_out", [(25, 30, 50, 60), (60, 30, 60, 30)])
def test_resampling_a_decoded_file(media, fps_in, fps_out, frames_in, frames_out):
    path = media["mp4-h264"] if fps_in == 25 else media["60fps"]
    with open_source(path, fps=fps_out) as source:
        frames = list(source)
    assert len(frames) == frames_out and source.stats.decoded == frames_in
    assert [f.pts_s for f in frames] == pytest.approx([k / fps_out for k in range(frames_out)], abs=1e-6)
    if fps_in < fps_out:
        assert source.stats.duplicated == frames_out - frames_in and source.stats.dropped == 0
    else:
        assert source.stats.dropped == frames_in - frames_out and source.stats.duplicated == 0


def test_test_and_gst_sources():
    with open_source("test://smpte?fps=50&width=32&height=16&frames=10") as source:
        frames = list(source)
    assert len(frames) == 10 and frames[0].rgb.shape == (16, 32, 3)
    assert frames[-1].pts_s - frames[0].pts_s == pytest.approx(9 / 50, abs=5e-3)
    with open_source("gst:videotestsrc num-buffers=4 ! video/x-raw,width=20,height=10") as source:
        assert len(list(source)) == 4


def test_a_slow_reader_of_a_live_source_drops_the_oldest_frames_and_counts_them():
    with open_source("test://ball?fps=200&width=32&height=24&frames=200", queue_size=2) as source:
        delivered = []
        for frame in source:
            delivered.append(frame.pts_s)
            time.sleep(0.02)                              # 50 frames/s against 200 produced
    stats = source.stats
    assert stats.decoded == 200 and stats.dropped_queue > 100
    assert stats.delivered == len(delivered) == stats.decoded - stats.dropped_queue
    assert delivered == sorted(delivered)                 # the newest survive, in order


def test_a_file_is_not_paced_unless_asked(media):
    start = time.perf_counter()
    with open_source(media["mp4-h264"]) as source:
        list(source)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    with open_source(media["mp4-h264"], realtime=True) as source:
        list(source)
    assert fast < 1.0 < time.perf_counter() - start < 4.0     # 50 frames at 25 fps take ~2 s


@pytest.fixture
def rtsp_server():
    """A real RTSP server (GstRtspServer) on loopback serving an H.264 test pattern."""
    port = free_port()
    server = start_rtsp_server(port)
    yield f"rtsp://127.0.0.1:{port}/test"
    server.kill()
    server.wait()


def test_rtsp_source(rtsp_server):
    with open_source(rtsp_server, geometry=Geometry(64, 48), latency_ms=50, start_timeout_s=20) as source:
        frames = [frame for _, frame in zip(range(10), source)]
    assert len(frames) == 10 and frames[0].rgb.shape == (48, 64, 3)
    assert all(b.pts_s > a.pts_s for a, b in zip(frames, frames[1:]))


def test_errors_name_the_input_and_the_problem(tmp_path):
    gst_or_skip()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    cases = [
        ("bogus://x", "unknown scheme 'bogus'"),
        (str(tmp_path / "missing.mp4"), "video file not found"),
        ("v4l2:///dev/video99", "no such camera device /dev/video99"),
        ("gst:videotestsrc ! nosuchelement", "missing GStreamer element: nosuchelement"),
        ("gst:videotestsrc num-buffers=3 ! video/x-bayer,format=rggb,width=8,height=8", "can't handle caps"),
        (str(text), str(text)),
    ]
    for uri, message in cases:
        with pytest.raises(VideoError, match=message.replace("(", r"\(").replace(")", r"\)")):
            open_source(uri)


def test_an_error_mid_stream_keeps_the_frames_already_delivered():
    source = open_source("gst:videotestsrc num-buffers=30 ! video/x-raw,width=16,height=8 ! identity error-after=10")
    delivered = []
    with pytest.raises(VideoError, match="identity") as info:
        for frame in source:
            delivered.append(frame)
    assert len(delivered) == 9 and "after 9 frames" in str(info.value)


def test_a_missing_file_given_as_a_uri_names_its_path(tmp_path):
    gst_or_skip()
    with pytest.raises(VideoError, match=f"file://{tmp_path}/gone.mp4 \\({tmp_path}/gone.mp4\\): video file not found"):
        open_source(f"file://{tmp_path}/gone.mp4")


def test_an_audio_only_file_says_it_has_no_video_stream(tmp_path):
    gst_or_skip()
    from video_media import run_pipeline

    audio = tmp_path / "talk.ogg"
    run_pipeline(f"audiotestsrc num-buffers=20 ! audioconvert ! vorbisenc ! oggmux ! filesink location={audio}")
    with pytest.raises(VideoError, match="no video stream in the input"):
        open_source(str(audio))


def test_a_lossless_reader_gets_every_frame_of_a_live_test_source():
    gst_or_skip()
    with open_source("test://ball?fps=200&width=32&height=24&frames=100", queue_size=2, lossless=True) as source:
        delivered = []
        for frame in source:
            delivered.append(frame.pts_s)
            time.sleep(0.01)                              # slower than the source's 200 frames/s
    assert len(delivered) == 100 and source.stats.dropped_queue == 0
    assert np.diff(delivered) == pytest.approx(np.full(99, 1 / 200), abs=1e-6)    # timestamps as produced
    with pytest.raises(VideoError, match="cannot wait for a reader that is slower than it"):
        open_source("rtsp://127.0.0.1:9/x", lossless=True)


def test_native_rate_resampling_fills_a_gap_and_measures_costs(tmp_path):
    gst_or_skip()
    from video_media import make_scene_recording

    path = make_scene_recording(tmp_path / "gap.mkv", seed=2, seconds=6, drop=(2.0, 3.5), fps=10)
    with open_source(path, geometry=Geometry(64, 48), fps="native", fill_gaps=True) as source:
        frames = list(source)
        costs = source.take_costs()
    assert len(frames) == 60 and source.native_fps == 10                    # 6 s at 10 fps, the gap filled
    assert [f.pts_s for f in frames] == pytest.approx([k / 10 for k in range(60)])
    assert source.gaps == [pytest.approx((2.0, 3.5), abs=1e-3)] and source.stats.gaps == 1
    assert len(costs["decode"]) >= 40 and len(costs["read"]) == 45                # 45 frames decoded
    assert 0 <= max(costs["decode"]) < 1.0


@pytest.mark.parametrize("kind", ["mkv-h264", "webm-vp8"])
def test_a_container_with_millisecond_timestamps_gives_no_extra_frame(tmp_path, kind):
    gst_or_skip()
    path = make_video(tmp_path / "clip", kind, frames=60, fps=30, width=64, height=48)   # 2 s, ends at 2.0003 s
    for fps, count in ((15.0, 30), (30.0, 60)):
        with open_source(path, fps=fps) as source:
            assert len(list(source)) == count, fps


def test_a_closed_source_is_freed_with_its_pipeline():
    # the pipeline's callbacks hold the source; close() must undo them, or every reconnect of a
    # long-running stream would keep one more pipeline in memory (the soak's RSS growth)
    gst_or_skip()
    import gc
    import weakref

    for uri in ("test://ball?fps=30&width=64&height=48&live=1", "test://ball?fps=30&width=64&height=48&frames=5"):
        source = open_source(uri, geometry=Geometry(32, 32), fps=15.0)
        next(iter(source))
        source.close()
        pipeline, alive = weakref.ref(source.pipeline), weakref.ref(source)
        del source
        gc.collect()
        assert alive() is None and pipeline() is None, uri


def test_reconnecting_to_an_rtsp_server_leaves_no_socket_open(rtsp_server):
    # each leaked pipeline kept its RTSP sockets (4 per reconnect): after a few hundred reconnects
    # a long run's new sockets got descriptors above 1024, where paho-mqtt's select() fails
    import gc
    import os

    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    counts = []
    for _ in range(6):
        with open_source(rtsp_server, fps=15.0, start_timeout_s=20) as source:
            next(iter(source))
        del source
        gc.collect()
        counts.append(descriptors())
    assert counts[-1] <= counts[1], counts
