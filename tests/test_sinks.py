"""Event sinks fail loudly: a JSON-lines file that cannot be written (a missing folder, a full disk),
an MQTT broker that is not there or goes away, an unwritable summary — each is said at once,
counted as lost, and reflected in ``asl-edge stream``'s exit code; nothing is dropped in silence."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from helpers import save_motion_model
from test_stream import start_broker, subscribe
from video_media import free_port, gst_or_skip

from asl_edge.cli import main
from asl_edge.stream import StreamError
from asl_edge.stream.sinks import JsonLinesSink, MqttSink, check_writable


def test_the_events_file_gets_its_folder_and_every_line(tmp_path):
    target = tmp_path / "new" / "folder" / "events.jsonl"
    sink = JsonLinesSink(str(target), report=pytest.fail)
    for n in range(3):
        sink.send({"n": n})
    sink.close()
    assert [json.loads(line)["n"] for line in target.read_text().splitlines()] == [0, 1, 2]
    assert sink.summary() == {"sink": str(target), "delivered": 3, "lost": 0}


def test_a_full_disk_is_said_at_once_and_what_cannot_be_written_is_counted_lost():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    said = []
    sink = JsonLinesSink("/dev/full", report=said.append)
    sink.send({"n": 1})
    assert len(said) == 1 and "cannot write events to /dev/full" in said[0]      # at the first failure
    sink.send({"n": 2})
    assert len(said) == 1                                                         # once per outage
    sink.close()
    assert sink.summary()["lost"] == 2 and "2 events could not be written to /dev/full and are lost" in said[-1]


def test_a_line_cut_by_a_full_disk_is_completed_when_there_is_room_again(tmp_path, monkeypatch):
    target = tmp_path / "events.jsonl"
    sink = JsonLinesSink(str(target), report=lambda message: None)
    real_write, calls = os.write, []

    def flaky(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[:5])                   # a partial write, then the disk is full
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", flaky)
    sink.send({"event": "first"})
    assert sink.failing and sink.delivered == 0
    sink.send({"event": "second"})
    sink.close()
    assert [json.loads(line) for line in target.read_text().splitlines()] == [{"event": "first"}, {"event": "second"}]
    assert sink.summary()["lost"] == 0


def test_an_events_path_that_cannot_be_opened_is_an_error_before_the_run(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StreamError, match="cannot write events to"):
        JsonLinesSink(str(tmp_path / "file" / "events.jsonl"))
    with pytest.raises(StreamError, match="summary .* it is a folder"):
        check_writable(str(tmp_path), "the summary")
    with pytest.raises(StreamError, match="cannot write the summary"):
        check_writable(str(tmp_path / "file" / "summary.json"), "the summary")


def test_mqtt_to_a_broker_that_is_not_there_is_said_and_counted_lost():
    pytest.importorskip("paho.mqtt.client")
    said = []
    sink = MqttSink(f"mqtt://127.0.0.1:{free_port()}/asl/events", report=said.append)
    deadline = time.monotonic() + 10
    while not said and time.monotonic() < deadline:
        time.sleep(0.05)
    assert said and "cannot connect" in said[0]                  # said while the run goes on, not at its end
    sink.send({"status": "stats", "n": 1})
    sink.send({"status": "stats", "n": 2})
    sink.close(timeout_s=0.5)
    assert sink.summary()["lost"] == 2 and sink.summary()["delivered"] == 0
    assert "2 events were not acknowledged" in said[-1]


def test_mqtt_url_errors_are_clear():
    pytest.importorskip("paho.mqtt.client")
    with pytest.raises(StreamError, match="the port is not a number"):
        MqttSink("mqtt://127.0.0.1:abc/topic")
    with pytest.raises(StreamError, match="expected mqtt://host"):
        MqttSink("mqtt://127.0.0.1:1883")


def test_queued_mqtt_events_are_delivered_before_close_returns(tmp_path):
    pytest.importorskip("paho.mqtt.client")
    port = free_port()
    broker = start_broker(port, tmp_path)
    received = []
    subscriber = subscribe(port, "asl/e/status", lambda topic, payload: received.append(payload["n"]))
    try:
        sink = MqttSink(f"mqtt://127.0.0.1:{port}/asl/e", report=lambda message: None)
        for n in range(200):                      # queued before the connection is even up
            sink.send({"status": "stats", "n": n})
        sink.close()
        assert sink.summary() == {"sink": f"mqtt://127.0.0.1:{port}/asl/e", "delivered": 200, "lost": 0}
        deadline = time.monotonic() + 10
        while len(received) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(received) == list(range(200))
    finally:
        subscriber.loop_stop()
        broker.terminate()


@pytest.fixture(scope="module")
def motion_model(tmp_path_factory):
    return save_motion_model(tmp_path_factory.mktemp("sinks") / "model.pt")


SOURCE = "test://ball?fps=30&width=64&height=48&frames=60"


def test_stream_exits_1_and_says_so_when_events_are_lost(motion_model, capsys):
    gst_or_skip()
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    code = main(["stream", "--model", str(motion_model), "--source", SOURCE, "--window", "8", "--hop", "4",
                 "--out", "/dev/full"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write events to /dev/full" in err
    assert "lost: " in err and "events not delivered to /dev/full" in err


def test_stream_to_a_broker_that_is_not_there_exits_1(motion_model, tmp_path, capsys):
    gst_or_skip()
    pytest.importorskip("paho.mqtt.client")
    code = main(["stream", "--model", str(motion_model), "--source", SOURCE, "--window", "8", "--hop", "4",
                 "--out", str(tmp_path / "events.jsonl"), "--mqtt", f"mqtt://127.0.0.1:{free_port()}/asl",
                 "--summary", str(tmp_path / "summary.json")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot connect" in err and "not delivered to mqtt://127.0.0.1" in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    mqtt_sink = next(s for s in summary["sinks"] if s["sink"].startswith("mqtt://"))
    jsonl_sink = next(s for s in summary["sinks"] if s["sink"].endswith("events.jsonl"))
    assert mqtt_sink["lost"] > 0 and mqtt_sink["delivered"] == 0 and jsonl_sink["lost"] == 0
    # the file got everything, starting with the run's marker
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines[0]["status"] == "start" and lines[0]["sources"] == [SOURCE] and lines[-1]["status"] == "end"


def test_stream_option_and_output_errors_exit_2_before_starting(motion_model, tmp_path, capsys):
    gst_or_skip()
    (tmp_path / "file").write_text("x")
    base = ["stream", "--model", str(motion_model), "--window", "8", "--hop", "4"]
    cases = {
        "video file not found": ["--source", str(tmp_path / "missing.mp4")],
        "unknown option 'nonsense'": ["--source", "test://ball?nonsense=1"],
        "unknown preset 'bogus'": ["--source", SOURCE, "--preset", "bogus"],
        "no such camera device /dev/video7": ["--source", "v4l2:///dev/video7"],
        "an RTSP URI needs a host": ["--source", "rtsp://"],
        "max_seconds must be a positive number": ["--source", SOURCE, "--max-seconds", "-1"],
        "cannot write the summary": ["--source", SOURCE, "--summary", str(tmp_path / "file" / "s.json")],
        "the port is not a number": ["--source", SOURCE, "--mqtt", "mqtt://127.0.0.1:x/t"],
        "unknown device 'gpu'": ["--source", SOURCE, "--device", "gpu"],
    }
    if not torch.cuda.is_available():
        cases["sees no CUDA GPU"] = ["--source", SOURCE, "--device", "cuda"]
    for message, args in cases.items():
        started = time.monotonic()
        assert main(base + args) == 2, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert time.monotonic() - started < 10, message                      # no retrying for minutes
