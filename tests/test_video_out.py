"""The annotated video of the streaming runtime (``--video-out``): the display branch of the source
pipeline, codec and container choice, the timeline and caption drawing, the bounded delay buffer,
files that decode back with the events drawn where they are, the VP8 fallback, several streams,
and a failing sink that leaves detection alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import save_motion_model, stream_items
from video_media import gst_or_skip, make_video

from asl_edge.cli import main
from asl_edge.stream import engine as engine_module
from asl_edge.stream.video_out import (AHEAD_S, BACKGROUND, PAST_S, VideoOut, caption, choose_encoding,
                                       draw_timeline, label_colour, stream_path)
from asl_edge.video import Geometry, VideoError, build_pipeline, has_element, open_source, parse_uri
from asl_edge.video.pipeline import element_names, geometry_chain, sink_chain, source_chain

SIZE = (320, 240)


# ------------------------------------------------------------------------------ pure parts


def test_the_display_branch_is_there_only_when_asked():
    spec, g = parse_uri("/v/a.mp4"), Geometry(64, 48)
    plain = build_pipeline(spec, g)
    assert plain == " ! ".join([source_chain(spec, "software"), geometry_chain(g, "software"),
                                sink_chain(False, False, 4)])
    shown = build_pipeline(spec, g, display=SIZE)
    assert f"{geometry_chain(g, 'software')} ! {sink_chain(False, False, 4)} asl_tee. ! queue leaky=no" in shown
    assert "width=320,height=240,pixel-aspect-ratio=1/1" in shown and "appsink name=asl_display" in shown
    assert element_names(shown)[:4] == ["filesrc", "decodebin", "tee", "queue"]
    assert "queue leaky=downstream" in build_pipeline(parse_uri("test://ball"), g, display=SIZE)
    assert "asl_tee. ! queue leaky=no max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! nvvidconv" in \
        build_pipeline(spec, g, "jetson", display=SIZE)


def test_codec_and_container_follow_the_installed_encoders_and_the_suffix():
    def everything(name):
        return True

    def no_x264(name):
        return name != "x264enc"

    mp4 = choose_encoding("out/a.mp4", everything)
    assert (mp4.path, mp4.codec, mp4.text) == ("out/a.mp4", "h264", True) and "mp4mux" in mp4.elements
    assert choose_encoding("a.webm", everything).codec == "vp8"
    assert choose_encoding("a.mkv", everything).elements.endswith("matroskamux")
    fallback = choose_encoding("out/a.mp4", no_x264)
    assert (fallback.path, fallback.codec) == ("out/a.webm", "vp8") and fallback.elements.endswith("webmmux")
    assert choose_encoding("a.mkv", no_x264).codec == "vp8"
    assert not choose_encoding("a.mkv", lambda name: name != "textoverlay").text
    with pytest.raises(VideoError, match=r"must end in \.mp4"):
        choose_encoding("a.avi", everything)
    with pytest.raises(VideoError, match=r"vp8enc \(gstreamer1.0-plugins-good\)"):
        choose_encoding("a.webm", lambda name: name != "vp8enc")
    assert stream_path("out/a.mp4", 0) == "out/a.mp4" and stream_path("out/a.mp4", 2) == "out/a.2.mp4"


def test_the_timeline_and_the_caption():
    rgb = np.zeros((240, 320, 3), np.uint8)
    events = [{"label": "run", "label_id": 1, "start": 2.0, "end": 5.0, "score": 0.6},
              {"label": "a<b", "label_id": 2, "start": 4.0, "end": 4.5, "score": 0.9}]
    frame = draw_timeline(rgb, 4.2, events)

    def x(seconds):                                                          # the strip's column
        return round((seconds - 4.2 + PAST_S) * 320 / (PAST_S + AHEAD_S))

    assert (frame[:220] == 0).all() and (rgb == 0).all()                     # only the strip, on a copy
    assert tuple(frame[230, x(3.0)]) == label_colour(1)
    assert tuple(frame[230, x(4.3) + 2]) == label_colour(2)                  # the higher score on top
    assert tuple(frame[230, x(1.5)]) == BACKGROUND and tuple(frame[230, x(4.2)]) == (255, 255, 255)
    assert tuple(frame[230, x(4.8)]) == label_colour(1)                      # ahead of the playhead too
    text = caption(4.2, events)
    assert text.startswith("4.2 s") and text.index("a&lt;b 0.90") < text.index("run 0.60")
    assert caption(1.0, events) == "1.0 s"


def test_a_provisional_event_is_drawn_as_an_outline_with_a_question_mark():
    rgb = np.zeros((240, 320, 3), np.uint8)
    provisional = {"label": "run", "label_id": 1, "start": 2.0, "end": 5.0, "score": 0.6, "final": False}
    frame = draw_timeline(rgb, 4.2, [provisional])
    column = round((3.0 - 4.2 + PAST_S) * 320 / (PAST_S + AHEAD_S))
    strip = frame[240 - 20:, column]
    assert tuple(strip[1]) == label_colour(1) and tuple(strip[-2]) == label_colour(1)       # top and bottom edges
    assert tuple(strip[10]) == BACKGROUND                                                    # hollow inside
    edge = {**provisional, "start": 20.0, "end": 21.0}                                  # beyond the strip
    assert np.array_equal(draw_timeline(rgb, 4.2, [edge]), draw_timeline(rgb, 4.2, []))
    assert '<span foreground="#' in caption(4.2, [provisional]) and 'style="italic">run? 0.60' in caption(
        4.2, [provisional])


# ----------------------------------------------------------------------------------- GStreamer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    gst_or_skip()
    folder = tmp_path_factory.mktemp("video_out")
    video = make_video(folder / "walk", "mp4-h264", frames=150, fps=15, width=160, height=120)
    save_motion_model(folder / "model.pt")
    return {"video": video, "model": folder / "model.pt"}


OPTIONS = {"window": 12, "hop": 4, "guard": 3, "min_score": 0.05}


def run_stream(setup, sources, **options):
    return stream_items(setup["model"], sources, **OPTIONS, **options)


def decode(path):
    with open_source(path) as source:
        return [(f.pts_s, f.rgb) for f in source]


def strip_error(rgb, expected):
    """The largest mean difference of a column of the timeline strip before the playhead (where
    every event is final when the frame is drawn) between a decoded frame and the expected one."""
    past = (slice(221, 239), slice(0, round(PAST_S * SIZE[0] / (PAST_S + AHEAD_S)) - 2))
    return np.abs(rgb[past].astype(int) - expected[past]).mean(axis=(0, 2)).max()


def test_an_annotated_mp4_decodes_back_with_the_events_drawn_where_they_are(setup, tmp_path, capsys):
    # one window over the whole video: every event is final when the first frame is drawn
    path = tmp_path / "annotated.mp4"
    assert main(["stream", "--model", str(setup["model"]), "--source", setup["video"], "--window", "64", "--hop",
                 "64", "--guard", "3", "--min-score", "0.05", "--out", str(tmp_path / "events.jsonl"),
                 "--video-out", str(path)]) == 0
    assert f"video: writing {path} (h264)" in capsys.readouterr().err
    items = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    events = [i for i in items if i.get("type") == "end"]
    done = [i for i in items if i.get("status") == "video_out" and i["state"] == "done"]
    assert events and done and done[0]["frames"] == 150 and done[0]["dropped"] == 0
    frames = decode(path)
    assert len(frames) == 150 and frames[0][1].shape == (240, 320, 3)
    assert frames[0][0] == pytest.approx(0.0, abs=1e-3) and frames[-1][0] == pytest.approx(149 / 15, abs=0.02)
    with open_source(setup["video"], geometry=Geometry(*SIZE)) as source:
        plain = [f.rgb for f in source]
    first = min(e["start"] for e in events if e["end"] - e["start"] > 0.1)     # a bar a few pixels wide
    assert first < frames[-1][0] - 1
    for (t, rgb), original in zip(frames, plain):
        # every frame shows all the events (bars in their labels' colours), none missing or extra;
        # before the first one, the plain strip
        assert strip_error(rgb, draw_timeline(original, t, events)) < 15, t
        if t > first + 0.1:
            assert strip_error(rgb, draw_timeline(original, t, [])) > 50, t
        assert np.abs(rgb[4:18, 6:40].astype(int) - original[4:18, 6:40]).mean() > 20      # the caption
        assert np.abs(rgb[40:200].astype(int) - original[40:200]).mean() < 8                  # the picture


def test_without_x264_the_video_is_vp8_in_webm(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_module, "has_element", lambda name: name != "x264enc" and has_element(name))
    _, statuses, runner = run_stream(setup, [setup["video"]], video_out=str(tmp_path / "annotated.mp4"))
    writing = next(s for s in statuses if s["status"] == "video_out")
    assert (writing["state"], writing["codec"], writing["path"]) == ("writing", "vp8", str(tmp_path / "annotated.webm"))
    assert not (tmp_path / "annotated.mp4").exists()
    frames = decode(tmp_path / "annotated.webm")
    assert len(frames) == 150 and frames[0][1].shape == (240, 320, 3)
    assert runner.summary()["streams"][0]["video_out"]["frames"] == 150


def test_each_stream_gets_its_own_file_and_a_live_source_loses_no_frame(setup, tmp_path):
    live = "test://ball?fps=30&width=64&height=48&frames=45"
    _, _, runner = run_stream(setup, [setup["video"], live], video_out=str(tmp_path / "out.mkv"))
    assert [s["video_out"]["path"] for s in runner.summary()["streams"]] == [str(tmp_path / "out.mkv"),
                                                                             str(tmp_path / "out.1.mkv")]
    assert len(decode(tmp_path / "out.mkv")) == 150
    assert len(decode(tmp_path / "out.1.mkv")) in (22, 23)          # 1.5 s at 30 fps, shown at 15
    assert runner.summary()["streams"][1]["video_out"]["dropped"] == 0


def test_a_failing_video_sink_is_reported_and_detection_goes_on(setup, tmp_path):
    baseline, _, _ = run_stream(setup, [setup["video"]])
    path = tmp_path / "missing" / "out.mp4"
    events, statuses, runner = run_stream(setup, [setup["video"]], video_out=str(path))
    def key(e):
        return e["label"], round(e["start"], 5), round(e["end"], 5), round(e["score"], 5)

    assert [key(e) for e in events] == [key(e) for e in baseline] and events
    failures = [s for s in statuses if s["status"] == "video_out"]
    assert len(failures) == 1 and failures[0]["state"] == "failed" and str(path) in failures[0]["error"]
    assert [s["status"] for s in statuses if s["status"] != "video_out"] == ["end"]
    video = runner.summary()["streams"][0]["video_out"]
    assert video["frames"] == 0 and video["dropped"] == 150 and "Could not open" in video["error"]
    assert not path.exists()


def test_held_frames_stay_within_the_cap_and_wait_for_the_settled_time(tmp_path):
    gst_or_skip()
    reports = []
    out = VideoOut(choose_encoding(str(tmp_path / "small.mkv"), has_element), (16, 16), reports.append,
                   max_frames=5)
    assert VideoOut(out.encoding, (16, 16), reports.append, max_bytes=3 * 16 * 16 * 3).max_frames == 3
    out.add([(k / 10, np.zeros((16, 16, 3), np.uint8)) for k in range(20)])
    assert out.frames == 15                                                 # beyond the cap: out early
    out.decided([], settled_s=1.65)
    out.add([])
    assert out.frames == 17                                                 # the rest up to 1.6 s
    out.close()
    assert out.frames == 20 and out.dropped == 0 and reports[-1]["state"] == "done"
    assert len(decode(tmp_path / "small.mkv")) == 20


def test_an_unusable_suffix_is_an_error_before_starting(setup, tmp_path, capsys):
    assert main(["stream", "--model", str(setup["model"]), "--source", setup["video"], "--video-out",
                 str(tmp_path / "a.avi")]) == 2
    assert "must end in .mp4 (H.264), .webm (VP8) or .mkv" in capsys.readouterr().err
