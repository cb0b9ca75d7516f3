"""The built-in demo: the bundled model (safe to load, names its extractor), ``asl-edge demo`` end
to end on held-out scenes (live pace, no drops, mAP above the target, its files), the same scene
offline (extract-features + infer), the same events through an exported artifact, the stream across
several windows against offline inference, and the model script on a tiny budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from video_media import gst_or_skip

from asl_edge.cli import main
from asl_edge.demo import BUNDLED_MODEL, evaluate_events, scene_uri
from asl_edge.stream import StreamOptions, StreamRunner
from asl_edge.video.scene import SCENE_CLASSES, make_script

TARGET_MAP = 0.8
SECONDS = 30            # a CI-sized scene
STEP = 4 / 15           # seconds per feature


def test_the_bundled_model_is_small_loads_safely_and_names_its_extractor():
    assert BUNDLED_MODEL.stat().st_size < 4e6
    payload = torch.load(BUNDLED_MODEL, weights_only=True, map_location="cpu")
    dataset = payload["config"]["dataset"]
    assert dataset["extractor"] == "motion" and dataset["input_dim"] == 112
    assert dataset["class_names"] == list(SCENE_CLASSES) and dataset["default_fps"] == 15
    assert payload["meta"]["eval"]["average_mAP"] > 0.9          # on the script's validation scenes


def _demo(tmp_path, seed, *extra):
    out = tmp_path / f"demo{seed}"
    assert main(["demo", "--seed", str(seed), "--seconds", str(SECONDS), "--out", str(out), *extra]) == 0
    summary = json.loads((out / "summary.json").read_text())
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return summary, [e for e in events if e.get("type") == "end"], out


@pytest.fixture(scope="module")
def live_demo(tmp_path_factory):
    gst_or_skip()
    return _demo(tmp_path_factory.mktemp("demo"), 7)


def test_the_demo_localizes_a_held_out_scene_live(live_demo, capsys):
    summary, events, out = live_demo
    assert summary["average_mAP"] >= TARGET_MAP and summary["dropped_frames"] == 0
    assert summary["frames"] >= SECONDS * 15 and summary["wall_s"] >= SECONDS * 0.95      # paced in real time
    assert summary["events"] == len(events)
    assert summary["scene"]["ground_truth"] == make_script(7, SECONDS).annotations()
    assert (out / "timeline.png").stat().st_size > 1000
    # decided after the action ends (at the end of the stream, an end may reach past the last clip)
    assert all(e["decided_at"] >= e["end"] - 2 * STEP and e["latency_s"] >= 0 for e in events)
    assert [e["decided_at"] for e in events] == sorted(e["decided_at"] for e in events)


def test_another_held_out_scene_at_full_speed(tmp_path):
    gst_or_skip()
    summary, _, _ = _demo(tmp_path, 13, "--fast")
    assert summary["average_mAP"] >= TARGET_MAP and summary["dropped_frames"] == 0


def test_the_same_scene_offline_gives_the_same_map(live_demo, tmp_path):
    summary, _, _ = live_demo
    uri = scene_uri(7, SECONDS, live=False)
    assert main(["extract-features", uri, "--extractor", "motion", "--out", str(tmp_path), "--no-progress"]) == 0
    assert main(["infer", "--ckpt", str(BUNDLED_MODEL), "--features", str(tmp_path / f"demo_seed7_{SECONDS:g}s.npy"),
                 "--out", str(tmp_path / "offline.json")]) == 0
    offline = json.loads((tmp_path / "offline.json").read_text())["results"][f"demo_seed7_{SECONDS:g}s"]
    detections = [{"label": d["label"], "label_id": d["label_id"], "score": d["score"], "start": d["segment"][0],
                   "end": d["segment"][1]} for d in offline]
    result = evaluate_events(detections, make_script(7, SECONDS).annotations(), tmp_path, SECONDS,
                             summary["tiou_thresholds"])
    assert abs(result["average_mAP"] - summary["average_mAP"]) <= 0.02


def test_the_demo_through_a_torchscript_export_gives_the_same_events(tmp_path):
    # unpaced (--fast), both: every window comes every hop (a live run widens the hop when the
    # machine is busy, and its windows then depend on the timing)
    gst_or_skip()
    artifact = tmp_path / "ts"
    assert main(["export", "--ckpt", str(BUNDLED_MODEL), "--format", "torchscript", "--out", str(artifact)]) == 0
    _, events, _ = _demo(tmp_path / "ts_run", 7, "--fast", "--model", str(artifact))
    _, reference, _ = _demo(tmp_path / "checkpoint_run", 7, "--fast")
    assert len(events) == len(reference) > 0
    for a, b in zip(events, reference):
        assert a["label"] == b["label"] and a["decided_at"] == b["decided_at"]
        assert [a["start"], a["end"], a["score"]] == pytest.approx([b["start"], b["end"], b["score"]], abs=1e-4)


def test_several_windows_find_each_action_as_offline_inference_does(tmp_path):
    """Short windows (64 features, hop 16): every confident offline detection that lies inside some
    window's central part (away from both its edges by the guard) comes out once, with the same
    label, its boundaries within a feature step or two and a similar score."""
    gst_or_skip()
    seconds, window, hop, guard = 40, 64, 16, 16
    uri = scene_uri(21, seconds, live=False)
    runner = StreamRunner(str(BUNDLED_MODEL), [uri], "motion", StreamOptions(window=window, hop=hop, guard=guard))
    events = [e for e in runner.events() if e.get("type") == "end"]
    assert main(["extract-features", uri, "--extractor", "motion", "--out", str(tmp_path), "--no-progress"]) == 0
    features = np.load(tmp_path / "demo_seed21_40s.npy")
    offline = runner.backend.detect(features, fps=15.0)
    n = len(features)
    central = [((s + guard) * STEP, (min(s + window, n) - guard) * STEP) for s in range(0, n, hop)]
    confident = [d for d in offline if d["score"] >= 0.5
                 and any(lo <= d["start"] and d["end"] <= hi for lo, hi in central)]
    assert len(confident) >= 5
    strong = [e for e in events if e["score"] >= 0.25]
    for d in confident:
        found = [e for e in strong if e["label"] == d["label"] and abs(e["start"] - d["start"]) <= 2 * STEP
                 and abs(e["end"] - d["end"]) <= 2 * STEP]
        assert len(found) == 1, d
        assert found[0]["score"] == pytest.approx(d["score"], abs=0.15)


def test_a_missing_bundled_model_or_bad_options_are_clear_errors(tmp_path, monkeypatch, capsys):
    import asl_edge.demo as demo

    monkeypatch.setattr(demo, "BUNDLED_MODEL", tmp_path / "gone.pt")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "python -m asl_edge.train.demo_model --install" in capsys.readouterr().err
    monkeypatch.undo()
    for args, message in [(["--seconds", "0"], "--seconds must be at least 0.533333 (one 8-frame clip at 15 fps)"),
                          (["--seconds", "0.3"], "--seconds must be at least"),
                          (["--seed", "-1"], "--seed must be 0 or more, got -1"),
                          (["--device", "gpu"], "unknown device 'gpu': use cpu, cuda or cuda:N")]:
        assert main(["demo", *args, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_a_scene_without_actions_ends_with_a_summary_and_no_map(tmp_path, capsys):
    gst_or_skip()
    assert not make_script(0, 2).actions
    assert main(["demo", "--seconds", "2", "--fast", "--out", str(tmp_path)]) == 0
    assert "no mAP: no action in this scene (it is too short)" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text())["average_mAP"] is None


def test_an_interrupted_demo_is_scored_on_the_actions_that_ended_before_it_stopped(tmp_path):
    import signal
    import subprocess
    import sys

    gst_or_skip()
    process = subprocess.Popen([sys.executable, "-m", "asl_edge", "demo", "--seed", "7", "--seconds", str(SECONDS),
                                "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:                     # the first final event: an action has ended
        lines.append(line)
        if line.startswith("  [") and "] end " in line:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    out = "".join(lines) + out
    assert process.returncode == 0, err[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    script = make_script(7, SECONDS)
    reached = summary["scored"]["seconds"]
    assert summary["stopped_early"] and reached < SECONDS - 5
    ended = [a for a in script.actions if a.end <= reached]
    assert 0 < summary["scored"]["actions"] == len(ended) < len(script.actions)
    assert f"stopped at {reached:.1f} s of {SECONDS}: scored on the {len(ended)} of {len(script.actions)}" in out
    gt = json.loads((tmp_path / "ground_truth.json").read_text())["database"]["demo"]
    assert len(gt["annotations"]) == len(ended) and gt["duration"] == pytest.approx(reached)


@pytest.mark.slow
def test_the_model_script_runs_end_to_end_on_a_tiny_budget(tmp_path):
    gst_or_skip()
    from asl_edge.train.demo_model import main as make_model

    assert make_model(["--out", str(tmp_path), "--train-scenes", "2", "--val-scenes", "1", "--seconds", "20",
                       "--epochs", "1", "--no-progress"]) == 0
    payload = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert payload["config"]["dataset"]["extractor"] == "motion" and "eval" in payload["meta"]
    database = json.loads((tmp_path / "annotations.json").read_text())["database"]
    assert sorted(database) == ["demo_seed1000_20s", "demo_seed1001_20s", "demo_seed2000_20s"]
    assert database["demo_seed2000_20s"]["annotations"] == make_script(2000, 20).annotations()
