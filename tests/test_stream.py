"""The streaming runtime: merge/finalize on hand-made windows, stream = offline inference in one
window, several windows without duplicates, two streams batched = each alone, EOS flush, a slow
consumer of a live source, SIGINT, MQTT through a real mosquitto, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import save_motion_model, small_config, stream_items
from video_media import free_port, gst_or_skip, make_video, start_rtsp_server, wait_for_port

from asl_edge.cli import main
from asl_edge.model import build_model, save_checkpoint
from asl_edge.stream import StreamError, StreamOptions, StreamRunner

STEP = 4 / 15          # seconds per feature of the motion extractor (stride 4 at 15 fps)


# ------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    gst_or_skip()
    folder = tmp_path_factory.mktemp("stream")
    video = make_video(folder / "walk", "mp4-h264", frames=150, fps=30, width=160, height=120)
    save_motion_model(folder / "model.pt")
    return {"video": video, "model": folder / "model.pt", "folder": folder}


def run_stream(setup, sources, **options):
    return stream_items(setup["model"], sources, **options)


def test_one_window_equals_offline_inference(setup, tmp_path):
    assert main(["extract-features", setup["video"], "--out", str(tmp_path / "f"), "--extractor", "motion",
                 "--no-progress"]) == 0
    assert main(["infer", "--ckpt", str(setup["model"]), "--features", str(tmp_path / "f" / "walk.npy"),
                 "--out", str(tmp_path / "dets.json")]) == 0
    offline = json.loads((tmp_path / "dets.json").read_text())["results"]["walk"]
    events, statuses, _ = run_stream(setup, [setup["video"]], window=64, hop=64)
    assert statuses[-1]["status"] == "end" and statuses[-1]["features"] == (75 - 8) // 4 + 1
    assert len(events) == len(offline) > 0
    online = sorted(events, key=lambda e: -e["score"])
    assert [e["label"] for e in online] == [d["label"] for d in offline]
    for e, d in zip(online, offline):
        assert abs(e["start"] - d["segment"][0]) <= STEP and abs(e["end"] - d["segment"][1]) <= STEP
        assert abs(e["score"] - d["score"]) <= 1e-4
        assert set(e) == {"type", "id", "stream", "label", "label_id", "start", "end", "score", "decided_at",
                          "latency_s", "latency_wall_s"}


def test_several_windows_emit_each_action_once_in_finalization_order(setup):
    events, _, runner = run_stream(setup, [setup["video"]], window=12, hop=4, guard=3, min_score=0.05)
    assert events and runner.summary()["features"] == 17
    decided = [e["decided_at"] for e in events]
    assert decided == sorted(decided)
    for i, a in enumerate(events):
        assert 0.0 <= a["start"] <= a["end"] <= 5.0 and a["latency_s"] >= 0
        for b in events[i + 1:]:
            inter = max(0.0, min(a["end"], b["end"]) - max(a["start"], b["start"]))
            union = (a["end"] - a["start"]) + (b["end"] - b["start"]) - inter
            same_window = a["decided_at"] == b["decided_at"]
            assert same_window or a["label_id"] != b["label_id"] or inter < 0.5 * union


def test_two_streams_batched_equal_each_alone(setup):
    alone, _, _ = run_stream(setup, [setup["video"]], window=12, hop=6)
    both, _, _ = run_stream(setup, [setup["video"], setup["video"]], window=12, hop=6)
    first = [e for e in both if e["stream"] == setup["video"]]
    second = [e for e in both if e["stream"] != setup["video"]]
    for got in (first, second):
        assert [(e["label_id"], round(e["start"], 4), round(e["end"], 4)) for e in got] == \
               [(e["label_id"], round(e["start"], 4), round(e["end"], 4)) for e in alone]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(got, alone)) < 1e-5


def test_a_slow_consumer_makes_a_live_source_drop_frames_and_counts_them(setup):
    runner = StreamRunner(str(setup["model"]), ["test://ball?fps=120&width=64&height=48&frames=360"], "motion",
                          StreamOptions(window=8, hop=1, queue_size=2))
    detect = runner.backend.detect_batch
    runner.backend.detect_batch = lambda *a, **k: time.sleep(0.1) or detect(*a, **k)
    items = list(runner.events())
    summary = runner.summary()
    assert summary["dropped_frames"] > 0 and summary["streams"][0]["source_dropped_queue"] == summary["dropped_frames"]
    assert items[-1]["status"] == "end"


def test_model_and_extractor_mismatch_and_bad_sources_are_clear_errors(setup, tmp_path, capsys):
    other = small_config(input_dim=112, feat_stride=8, num_frames=8, default_fps=30.0)
    save_checkpoint(build_model(other), other, tmp_path / "other.pt")
    with pytest.raises(StreamError, match="feat_stride 8 vs the extractor's frame stride 4; default_fps 30 vs"):
        StreamRunner(str(tmp_path / "other.pt"), [setup["video"]], "motion")
    assert main(["stream", "--model", str(setup["model"]), "--source", setup["video"], "--source", "nope://x"]) == 2
    err = capsys.readouterr().err
    assert "unknown scheme 'nope'" in err
    with pytest.raises(StreamError, match="missing GStreamer element: nosuchelement"):    # before anything starts
        StreamRunner(str(setup["model"]), ["gst:videotestsrc ! nosuchelement", setup["video"]], "motion")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    events, statuses, _ = run_stream(setup, [str(corrupt), setup["video"]], window=64, hop=64)
    assert statuses[0]["status"] == "error" and str(corrupt) in statuses[0]["error"]
    assert statuses[1]["status"] == "end" and events                          # the other stream runs on


def test_a_lost_rtsp_source_comes_back_after_the_server_restarts(setup):
    port = free_port()
    server = start_rtsp_server(port)
    runner = StreamRunner(str(setup["model"]), [f"rtsp://127.0.0.1:{port}/test"], "motion",
                          StreamOptions(window=8, hop=4, reconnect_interval=0.5, frame_timeout=2.0))
    items = []
    reader = threading.Thread(target=lambda: items.extend(runner.events()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while runner.stats()["frames"] < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runner.stats()["frames"] >= 30
        server.kill()
        server.wait()
        time.sleep(1.5)
        server = start_rtsp_server(port)
        deadline = time.monotonic() + 40
        while not any(i.get("status") == "gap" for i in list(items)) and time.monotonic() < deadline:
            time.sleep(0.2)
        frames_at_gap = runner.stats()["frames"]
        time.sleep(2)
    finally:
        runner.stop()
        reader.join(timeout=30)
        server.kill()
    statuses = [i for i in items if "status" in i]
    kinds = [i["status"] for i in statuses]
    assert "reconnecting" in kinds and "gap" in kinds and kinds[-1] == "end", kinds
    gap = next(i for i in statuses if i["status"] == "gap")
    assert gap["to_s"] > gap["from_s"] > 0 and gap["error"]
    assert runner.stats()["frames"] > frames_at_gap                     # frames flow again after the gap
    assert runner.summary()["streams"][0]["gaps"] == 1


def test_sigint_flushes_and_exits_zero_with_a_summary(setup, tmp_path):
    command = [sys.executable, "-m", "asl_edge", "stream", "--model", str(setup["model"]), "--source",
               "test://ball?fps=30&width=64&height=48", "--window", "8", "--hop", "4",
               "--stats-interval", "0.5", "--summary", str(tmp_path / "summary.json"),
               "--out", str(tmp_path / "events.jsonl")]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:                  # a stats line: the stream runs and its signal handlers are set
        seen.append(line)
        if line.startswith("["):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    err = "".join(seen) + err
    assert process.returncode == 0, err[-2000:]
    assert "SIGINT: flushing pending events" in err and "summary:" in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] > 0 and summary["streams"][0]["error"] is None
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines[-1]["status"] == "end"


def start_broker(port: int, folder) -> subprocess.Popen:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        pytest.skip("mosquitto is not installed (Debian: mosquitto; .ci/run installs it)")
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return wait_for_port(port, broker, "mosquitto")


def subscribe(port: int, topic: str, on_message):
    """A client of the local broker, subscribed to ``topic`` (QoS 1) when this returns;
    ``on_message(topic, payload)`` gets each message's topic and its JSON payload."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: on_message(m.topic, json.loads(m.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe(topic, qos=1)
    time.sleep(0.3)
    return client


def test_mqtt_events_reach_a_subscriber_across_a_broker_restart(setup, tmp_path):
    pytest.importorskip("paho.mqtt.client")
    from asl_edge.stream.sinks import MqttSink

    port = free_port()
    broker = start_broker(port, tmp_path)
    received = []

    def wait_for(numbers, seconds):
        deadline = time.monotonic() + seconds
        while not numbers <= {m["after"]["id"] for m in received} and time.monotonic() < deadline:
            time.sleep(0.05)
        return {m["after"]["id"] for m in received}

    def event(n):
        return {"type": "end", "id": n, "stream": "cam", "label": "jump", "label_id": 0, "start": 0.0, "end": 1.0,
                "score": 0.5, "decided_at": 1.5, "latency_s": 0.5}

    first = subscribe(port, "asl/events", lambda topic, payload: received.append(payload))
    sink = MqttSink(f"mqtt://127.0.0.1:{port}/asl/events", report=lambda message: None)
    clients = [first]
    try:
        sink.send(event(1))
        assert wait_for({1}, 10) == {1}
        broker.terminate()
        broker.wait(timeout=10)
        sink.send(event(2))                       # the broker is away: paho keeps it (QoS 1)
        broker = start_broker(port, tmp_path)
        clients.append(subscribe(port, "asl/events", lambda topic, payload: received.append(payload)))               # before the sink's first reconnect (>= 1 s)
        sink.send(event(3))
        assert wait_for({1, 2, 3}, 20) == {1, 2, 3}
    finally:
        sink.close()
        for client in clients:
            client.loop_stop()
        broker.terminate()


# ------------------------------------------------------------------------------ time base and faults


def test_a_recording_with_missing_frames_gives_its_events_at_their_true_times(tmp_path):
    """An NVR-style recording of demo scene 5 with 2.8 s of frames missing (the others keep their
    timestamps): one reported gap, and every action outside it found where the script puts it,
    streamed and offline alike (before the fix, everything after the gap came ~2.8 s early)."""
    from video_media import make_scene_recording

    from asl_edge.demo import BUNDLED_MODEL
    from asl_edge.video.scene import make_script

    gst_or_skip()
    drop = (19.6, 22.4)                                            # between the jump and the wave of the script
    path = make_scene_recording(tmp_path / "gap.mkv", seed=5, seconds=30, drop=drop)
    truth = [a for a in make_script(5, 30).annotations() if a["segment"][1] < drop[0] or a["segment"][0] > drop[1]]
    assert truth[-1]["label"] == "wave" and truth[-1]["segment"][0] > drop[1]

    def assert_found(events):
        for action in truth:
            (start, end), hits = action["segment"], [e for e in events if e["label"] == action["label"]]
            best = min(hits, key=lambda e: abs(e["start"] - start) + abs(e["end"] - end))
            assert abs(best["start"] - start) < 0.5 and abs(best["end"] - end) < 0.5, (action, best)

    runner = StreamRunner(str(BUNDLED_MODEL), [path], "motion", StreamOptions(hop=32, guard=16))
    items = list(runner.events())
    gaps = [i for i in items if i.get("status") == "gap"]
    assert len(gaps) == 1 and gaps[0]["from_s"] == pytest.approx(drop[0], abs=0.1)
    assert gaps[0]["to_s"] == pytest.approx(drop[1], abs=0.05)
    assert runner.summary()["gaps"] == 1 and runner.summary()["gap_s"] == pytest.approx(2.8, abs=0.1)
    assert_found([i for i in items if i.get("type") == "end" and i["score"] >= 0.3])

    assert main(["extract-features", path, "--out", str(tmp_path / "f"), "--extractor", "motion",
                 "--no-progress"]) == 0
    entry = json.loads((tmp_path / "f" / "annotations.json").read_text())["database"]["gap"]
    assert entry["duration"] == pytest.approx(30.0) and entry["gaps"] == [pytest.approx(list(drop), abs=0.05)]
    offline = runner.backend.detect(np.load(tmp_path / "f" / "gap.npy"), fps=15.0)
    assert_found([d for d in offline if d["score"] >= 0.3])


def test_an_rtsp_server_paused_for_seconds_keeps_stream_time_on_the_senders_timestamps(setup):
    """SIGSTOP on the server for 3.5 s: its live test source then sends the frames of the pause in
    a burst, with their RTP timestamps. Stream time follows those (rtspsrc buffer-mode=none), so
    there is no gap and no repaired timestamp, and stream time stays in step with the wall clock
    (re-timing the burst by its arrival, as the jitter buffer's default does, put every later
    frame ~3.5 s ahead through 'repaired' timestamps)."""
    port = free_port()
    server = start_rtsp_server(port)
    runner = StreamRunner(str(setup["model"]), [f"rtsp://127.0.0.1:{port}/test"], "motion",
                          StreamOptions(window=8, hop=4, frame_timeout=10.0))
    items = []
    reader = threading.Thread(target=lambda: items.extend(runner.events()), daemon=True)
    reader.start()

    def frames_at_least(count, seconds=20):
        deadline = time.monotonic() + seconds
        while runner.stats()["frames"] < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return runner.stats()["frames"]

    try:
        frames_at_least(30)
        lag_before = time.monotonic() - runner.streams[0].seconds       # wall clock minus stream time
        server.send_signal(signal.SIGSTOP)
        time.sleep(3.5)
        server.send_signal(signal.SIGCONT)
        frames = frames_at_least(runner.stats()["frames"] + 30)
        time.sleep(3)                                  # the burst of late frames is read by now
        lag_after = time.monotonic() - runner.streams[0].seconds
    finally:
        runner.stop()
        reader.join(timeout=30)
        server.kill()
    assert not [i for i in items if i.get("status") == "gap"]
    assert frames >= 60 and abs(lag_after - lag_before) < 1.5      # stream time went on through the pause (3.5 s)
    assert runner.summary()["streams"][0]["source_repaired_pts"] == 0


def _runner(setup, source="test://ball?fps=30&width=64&height=48", **options):
    return StreamRunner(str(setup["model"]), [source], "motion", StreamOptions(window=8, hop=4, **options))


def _threads():
    return {t.name for t in threading.enumerate() if t.name.startswith("asl-")}


@pytest.mark.parametrize("leave", ["break", "close", "exception"])
def test_every_way_out_of_the_iteration_stops_threads_and_pipelines_within_a_second(setup, leave):
    runner = _runner(setup)
    iterator = runner.events()
    for item in iterator:
        if runner.stats()["features"] >= 3:
            break
    started = time.monotonic()
    if leave == "close":
        iterator.close()
    elif leave == "exception":
        with pytest.raises(RuntimeError):
            iterator.throw(RuntimeError("the consumer failed"))
    else:
        del iterator                                 # a for loop left by break drops its generator
    assert time.monotonic() - started < 1.5
    deadline = time.monotonic() + 1.5
    while _threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _threads() and all(source is None or source._handoff.closed for source in runner._sources)


def test_stop_flushes_and_ends_the_iteration(setup):
    runner = _runner(setup)
    seen = []
    for item in runner.events():
        seen.append(item)
        if runner.stats()["features"] >= 6 and not runner._stop.is_set():
            runner.stop()
    assert seen[-1]["status"] == "end" and runner.summary()["stopped_early"]
    time.sleep(0.2)
    assert not _threads()


def test_a_failing_extractor_stops_the_run_with_its_error(setup):
    runner = _runner(setup)

    def broken(clips):
        raise ValueError("the extractor broke")

    runner.extractor._extract = broken
    started = time.monotonic()
    with pytest.raises(StreamError, match="the stream stopped: ValueError: the extractor broke"):
        list(runner.events())
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 1.5
    while _threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _threads()


def test_a_slow_event_consumer_holds_up_the_runtime_instead_of_an_unbounded_queue(setup, monkeypatch):
    from asl_edge.stream import engine

    monkeypatch.setattr(engine, "OUT_QUEUE", 4)
    runner = StreamRunner(str(setup["model"]), [setup["video"]], "motion",
                          StreamOptions(window=8, hop=1, guard=0, min_score=0.0))
    depth = []
    for item in runner.events():
        depth.append(runner._out.qsize())
        time.sleep(0.01)
    assert max(depth) <= 4 and runner.summary()["events"] > 8


def test_stats_say_what_each_stage_costs_and_how_far_behind_a_live_source_is(setup):
    runner = StreamRunner(str(setup["model"]), ["test://ball?fps=30&width=64&height=48&frames=90"], "motion",
                          StreamOptions(window=8, hop=2, guard=1))
    items = list(runner.events())
    stats = runner.summary()
    # decode is the decoder's CPU time per frame, not the 33 ms wait between a live source's frames
    assert stats["stages"]["decode"]["count"] > 50 and stats["stages"]["decode"]["p50_ms"] < 20
    assert stats["stages"]["read"]["count"] > 30
    assert stats["decision_latency_wall"]["count"] == stats["decision_latency"]["count"] == stats["alerts"]
    events = [i for i in items if i.get("type") == "end"]
    assert stats["alerts"] == sum(e["score"] >= stats["alert_score"] for e in events) and stats["events"] == len(events)
    assert all(e["latency_wall_s"] >= 0 for e in events)

    slow = StreamRunner(str(setup["model"]), ["test://ball?fps=120&width=64&height=48&frames=480"], "motion",
                        StreamOptions(window=8, hop=1, queue_size=2))
    detect = slow.backend.detect_batch
    slow.backend.detect_batch = lambda *a, **k: time.sleep(0.1) or detect(*a, **k)
    behind = [i for i in slow.events() if i.get("status") == "behind"]
    assert behind and "falling behind the live source" in behind[0]["error"]
    assert sum(b["dropped_frames"] for b in behind) <= slow.summary()["dropped_frames"]


def test_doubtful_settings_are_warned_about(setup, tmp_path):
    assert any("shorter than the longest actions" in w for w in _runner(setup).warnings)   # window 8 < 16
    native = small_config(input_dim=112, feat_stride=4, num_frames=8, default_fps=None, extractor="motion")
    save_checkpoint(build_model(native), native, tmp_path / "native.pt")
    runner = StreamRunner(str(tmp_path / "native.pt"), [setup["video"]], "motion", StreamOptions(window=64))
    assert any("each video's own frame rate" in w for w in runner.warnings)
    assert not StreamRunner(str(setup["model"]), [setup["video"]], "motion", StreamOptions(window=64)).warnings
