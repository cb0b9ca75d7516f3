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

import pytest
from helpers import save_motion_model, small_config, stream_items
from video_media import free_port, gst_or_skip, make_video, start_rtsp_server, wait_for_port

from asl_edge.cli import main
from asl_edge.model import build_model, save_checkpoint
from asl_edge.stream import EventMerger, StreamError, StreamOptions, StreamRunner

STEP = 4 / 15          # seconds per feature of the motion extractor (stride 4 at 15 fps)


def det(label_id, start, end, score):
    return {"label": f"c{label_id}", "label_id": label_id, "start": start, "end": end, "score": score}


# ------------------------------------------------------------------------------ merge and finalize


def test_an_action_seen_by_two_windows_is_emitted_once_merged_side_by_side():
    merger = EventMerger("cam", guard_s=2.0)
    # window 1 covers [0, 10] s and sees the action near its end; nothing is final yet (guard 2 s)
    assert merger.add_window([det(0, 7.0, 9.6, 0.7)], 0.0, 10.0, decided_at=10.0) == []
    # window 2 covers [5, 15] s and sees it with context after it: its end and score are kept,
    # window 1's start (7 s inside it against 2.2 s) too
    assert merger.add_window([det(0, 7.2, 9.9, 0.65)], 5.0, 15.0, decided_at=15.0) == [
        {"stream": "cam", "label": "c0", "label_id": 0, "start": 7.0, "end": 9.9, "score": 0.65,
         "decided_at": 15.0, "latency_s": pytest.approx(5.1)}]
    # window 3 sees it again: already emitted, so dropped; another class there is new
    out = merger.add_window([det(0, 7.1, 9.8, 0.9), det(1, 7.1, 9.8, 0.4)], 10.0, 20.0, decided_at=20.0)
    assert [e["label_id"] for e in out] == [1] and merger.flush(decided_at=20.0) == []


def test_finalization_waits_for_the_guard_and_keeps_order():
    merger = EventMerger("cam", guard_s=1.0)
    out = merger.add_window([det(1, 3.0, 8.5, 0.5), det(0, 1.0, 2.0, 0.9), det(2, 0.5, 9.5, 0.4)], 0.0, 10.0, 10.0)
    assert [(e["label_id"], e["end"]) for e in out] == [(0, 2.0), (1, 8.5)]    # by end; 9.5 is within the guard
    assert [e["label_id"] for e in merger.flush(11.0)] == [2]


def test_a_long_action_crossing_windows_comes_out_whole_and_once():
    merger = EventMerger("cam", guard_s=1.0)
    # the stream's start cuts nothing; window 1 cuts the action at its end, window 2 at its start
    assert merger.add_window([det(0, 2.0, 9.9, 0.6)], 0.0, 10.0, 10.0, stream_start=True) == []
    out = merger.add_window([det(0, 5.0, 13.0, 0.8)], 5.0, 20.0, 20.0)
    assert [(e["start"], e["end"], e["score"]) for e in out] == [(2.0, 13.0, 0.6)]   # 0.1 s of context beats 0
    assert merger.add_window([det(0, 10.0, 13.1, 0.8)], 10.0, 25.0, 25.0) == [] and merger.flush(25.0) == []


def test_one_windows_own_overlapping_detections_stay_as_its_nms_left_them():
    merger = EventMerger("cam", guard_s=0.0)
    out = merger.add_window([det(0, 1.0, 3.0, 0.9), det(0, 1.1, 3.0, 0.3)], 0.0, 5.0, 5.0)
    assert len(out) == 2
    low = EventMerger("cam", guard_s=0.0, min_score=0.5)
    assert len(low.add_window([det(0, 1.0, 3.0, 0.9), det(0, 1.1, 3.0, 0.3)], 0.0, 5.0, 5.0)) == 1


def test_a_later_windows_copy_joins_its_closest_match_not_an_emitted_weak_neighbour():
    merger = EventMerger("cam", guard_s=4.5)
    # window 1 ([0, 8.5] s): a strong action ending at 4.43 s (pending: inside the guard) and a weak
    # detection beside it that ends at 3 s (final at once)
    out = merger.add_window([det(0, 1.96, 4.43, 0.74), det(0, 1.49, 3.0, 0.01)], 0.0, 8.5, 8.8, stream_start=True)
    assert [(e["start"], e["score"]) for e in out] == [(1.49, 0.01)]
    # window 2 sees the strong one again (it covers 70 % of the emitted weak one, but its closest
    # copy is the pending strong one, IoU 0.99) and a new weak one inside it: the strong action
    # comes out once with its score, the weak one on its own
    out = merger.add_window([det(0, 1.94, 4.44, 0.74), det(0, 2.9, 4.3, 0.1)], 0.0, 17.0, 17.3, stream_start=True)
    assert [(e["start"], e["end"], e["score"]) for e in out] == [(2.9, 4.3, 0.1), (1.96, 4.44, 0.74)]
    assert merger.flush(20.0) == []


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
        assert set(e) == {"stream", "label", "label_id", "start", "end", "score", "decided_at", "latency_s"}


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
    events, statuses, _ = run_stream(setup, ["gst:videotestsrc ! nosuchelement", setup["video"]], window=64, hop=64)
    assert statuses[0]["status"] == "error" and "missing GStreamer element: nosuchelement" in statuses[0]["error"]
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


def test_mqtt_events_reach_a_subscriber_across_a_broker_restart(setup, tmp_path):
    mqtt = pytest.importorskip("paho.mqtt.client")
    from asl_edge.stream.sinks import MqttSink

    port = free_port()
    broker = start_broker(port, tmp_path)
    received = []

    def subscribe():
        """A subscriber that is subscribed when this returns."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_message = lambda c, u, m: received.append(json.loads(m.payload))
        client.connect("127.0.0.1", port)
        client.loop_start()
        client.subscribe("asl/events", qos=1)[1]
        time.sleep(0.2)
        return client

    def wait_for(numbers, seconds):
        deadline = time.monotonic() + seconds
        while not numbers <= {m["n"] for m in received} and time.monotonic() < deadline:
            time.sleep(0.05)
        return {m["n"] for m in received}

    first = subscribe()
    sink = MqttSink(f"mqtt://127.0.0.1:{port}/asl/events", report=lambda message: None)
    clients = [first]
    try:
        sink.send({"n": 1})
        assert wait_for({1}, 10) == {1}
        broker.terminate()
        broker.wait(timeout=10)
        sink.send({"n": 2})                       # the broker is away: paho keeps it (QoS 1)
        broker = start_broker(port, tmp_path)
        clients.append(subscribe())               # before the sink's first reconnect (>= 1 s)
        sink.send({"n": 3})
        assert wait_for({1, 2, 3}, 20) == {1, 2, 3}
    finally:
        sink.close()
        for client in clients:
            client.loop_stop()
        broker.terminate()
