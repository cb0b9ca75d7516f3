"""The built-in demo scene: its script (deterministic per seed, well formed), its rendering by
GStreamer (each actor's colour on screen exactly while the script says its action runs), its URI,
and extract-features writing its ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from video_media import gst_or_skip

from asl_edge.cli import main
from asl_edge.video import VideoError, open_source, parse_uri
from asl_edge.video.scene import COLOURS, SCENE_CLASSES, make_script

FPS = 30


def test_a_script_is_deterministic_for_its_seed_and_well_formed():
    assert make_script(7, 60) == make_script(7, 60) and make_script(7, 60) != make_script(8, 60)
    labels, gaps = set(), []
    for seed in range(6):
        script = make_script(seed, 60)
        assert len(script.actions) >= 7
        for a, b in zip(script.actions, script.actions[1:]):
            assert a.end < b.start                       # one action at a time, in time order
            gaps.append(b.start - a.start - (a.end - a.start))
        assert all(0 < a.start < a.end <= 59.5 and 1.5 <= a.end - a.start <= 6.0 for a in script.actions)
        labels |= {a.label for a in script.actions}
        assert script.annotations()[0] == {"label": script.actions[0].label,
                                           "segment": [script.actions[0].start, script.actions[0].end],
                                           "label_id": SCENE_CLASSES.index(script.actions[0].label)}
    assert labels == set(SCENE_CLASSES) and min(gaps) < 0.25      # every class; some actions close together
    with pytest.raises(VideoError, match="positive length"):
        make_script(1, 0)


def test_scene_uris_take_their_own_options():
    spec = parse_uri("test://demo?seed=3&seconds=12.5&live=0")
    assert (spec.kind, spec.location, spec.params["seed"], spec.params["seconds"]) == ("test", "demo", 3, 12.5)
    assert not spec.live and parse_uri("test://demo?seed=3").live
    for bad, message in [("test://demo?frames=9", "unknown option 'frames'"), ("test://demo?seconds=-1", "positive"),
                         ("test://demo?seed=1.5", "integer"), ("test://ball?seed=1", "unknown option 'seed'")]:
        with pytest.raises(VideoError, match=message):
            parse_uri(bad)


def _colour_mask(rgb: np.ndarray, argb: int) -> np.ndarray:
    target = np.array([(argb >> 16) & 255, (argb >> 8) & 255, argb & 255])
    return np.abs(rgb.astype(int) - target).max(axis=-1) < 24


def test_the_rendering_follows_the_script():
    gst_or_skip()
    seed, seconds = 11, 24
    script = make_script(seed, seconds)
    with open_source(f"test://demo?seed={seed}&seconds={seconds}&live=0") as source:
        frames = list(source)
    assert len(frames) == seconds * FPS and frames[0].rgb.shape == (240, 320, 3)
    times = np.array([f.pts_s for f in frames])
    assert np.allclose(times, np.arange(len(frames)) / FPS)
    for label in SCENE_CLASSES:
        masks = np.stack([_colour_mask(f.rgb, COLOURS[label]) for f in frames])
        shown = masks.sum(axis=(1, 2)) > 30
        expected = np.zeros(len(frames), bool)
        for a in script.actions:
            if a.label == label:
                inside = (times >= a.start) & (times < a.end)
                if label == "blink":                     # on for 1/6 s, off for 1/6 s
                    inside &= np.floor((times - a.start) * 6) % 2 == 0
                expected |= inside
        assert (shown == expected).mean() > 0.99, label
        for a in (a for a in script.actions if a.label == label and label in ("cross", "wave")):
            frames_in = np.flatnonzero((times >= a.start + 0.05) & (times < a.end - 0.05))
            xs = np.array([np.nonzero(masks[k])[1].mean() for k in frames_in])
            if label == "cross":                        # steadily across the frame, the script's way
                steps = np.diff(xs) * a.direction
                assert (steps >= -1).all() and np.ptp(xs) > 150
            else:                                       # swings around its place
                assert abs(xs.mean() - a.x * 320) < 12 and np.ptp(xs) > 40


def test_extract_features_reads_a_scene_and_writes_its_ground_truth(tmp_path):
    gst_or_skip()
    assert main(["extract-features", "test://demo?seed=4&seconds=12&live=0", "--extractor", "motion",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    entry = json.loads((tmp_path / "annotations.json").read_text())["database"]["demo_seed4_12s"]
    assert entry["annotations"] == make_script(4, 12).annotations() and entry["duration"] == 12
    features = np.load(tmp_path / "demo_seed4_12s.npy")
    assert features.shape == ((12 * 15 - 8) // 4 + 1, 112)
