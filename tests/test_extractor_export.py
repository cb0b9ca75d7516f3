"""Clip extractors as exports (issue 18): OpenVINO clip models load wherever an extractor is named
(extract-features, stream, the Python API); each precision of the I3D export agrees with the fp32
PyTorch extractor on real clips; calibration and parity inputs are checked before anything is
written; a model trained on other features is refused before a stream starts; and a video
streamed through an OpenVINO extractor equals extract-features + infer with it."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from helpers import randomize_, small_config, stream_items
from test_features import release_variables
from video_media import gst_or_skip, make_video

from asl_edge.cli import main
from asl_edge.features import ClipAssembler, load_extractor
from asl_edge.features.exported import DESCRIPTION, METADATA
from asl_edge.features.sampling import sample_clips
from asl_edge.features.weights import convert_i3d_checkpoint
from asl_edge.model import build_model, save_checkpoint
from asl_edge.stream import StreamError, StreamOptions, StreamRunner

ov = pytest.importorskip("openvino")


class GridStats(torch.nn.Module):
    """A tiny clip model: per cell of a 4x4 grid, the mean colour and the mean |frame difference|
    of each channel, (B, 8, 48, 64, 3) uint8 -> (B, 96)."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.permute(0, 4, 1, 2, 3).float() / 255.0                       # (B, 3, T, H, W)
        colour = torch.nn.functional.adaptive_avg_pool2d(x.mean(dim=2), 4)
        motion = torch.nn.functional.adaptive_avg_pool2d((x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=2), 4)
        return torch.cat([colour.flatten(1), 8 * motion.flatten(1)], dim=1)


GRID = {"name": "grid-ov", "num_frames": 8, "frame_stride": 4, "fps": 15.0, "width": 64, "height": 48, "crop": 1.0,
        "dim": 96}


def save_openvino_extractor(folder, description=GRID):
    """GridStats as an OpenVINO IR with extractor.json and metadata.json, like an extractor export."""
    folder.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, description["num_frames"], description["height"], description["width"], 3,
                          dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)            # convert_model traces with torch.jit
        model = ov.convert_model(GridStats().eval(), example_input=example,
                                 input=[ov.PartialShape([-1, *example.shape[1:]])])
    ov.save_model(model, str(folder / "grid.xml"), compress_to_fp16=False)
    (folder / DESCRIPTION).write_text(json.dumps({**description, "precision": "fp32"}))
    (folder / METADATA).write_text(json.dumps({"kind": "clip-extractor", "format": "openvino",
                                               "artifact": "grid.xml"}))
    return folder


@pytest.fixture(scope="module")
def grid_setup(tmp_path_factory):
    gst_or_skip()
    folder = tmp_path_factory.mktemp("grid")
    extractor = save_openvino_extractor(folder / "extractor")
    config = small_config(input_dim=96, feat_stride=4, num_frames=8, default_fps=15.0, extractor="grid-ov")
    torch.manual_seed(0)
    save_checkpoint(randomize_(build_model(config), seed=3), config, folder / "model.pt")
    video = make_video(folder / "walk", "mp4-h264", frames=150, fps=30, width=160, height=120)
    return {"extractor": extractor, "model": folder / "model.pt", "video": video}


def test_clips_are_read_only_views_of_one_ring_that_never_changes_under_a_consumer():
    assembler = ClipAssembler(num_frames=4, frame_stride=2, capacity=6)
    clips = [clip for i in range(12) for _, clip in assembler.push(np.full((2, 2, 3), i, np.uint8), i / 10)]
    assert [c[:, 0, 0, 0].tolist() for c in clips] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9],
                                                       [8, 9, 10, 11]]                  # after two ring changes
    assert np.shares_memory(clips[0], clips[1]) and not clips[0].flags.writeable
    assert assembler.frames_seen == 12 and assembler.clips_made == 5
    with pytest.raises(Exception, match=r"a frame of shape \[3, 2, 3\] after frames of \[2, 2, 3\]"):
        list(assembler.push(np.zeros((3, 2, 3), np.uint8)))


def test_clips_are_sampled_evenly_through_the_video_path(grid_setup):
    extractor = load_extractor(str(grid_setup["extractor"]))
    spec = extractor.clip
    every = sample_clips(grid_setup["video"], spec, 1000)            # 150 frames at 30 fps -> 75 at 15: 17 clips
    assert every.shape == (17, 8, 48, 64, 3) and every.dtype == np.uint8
    some = sample_clips(grid_setup["video"], spec, 5)
    chosen = np.linspace(0, 16, 5).round().astype(int)
    assert np.array_equal(some, every[chosen])


def test_an_openvino_clip_model_is_an_extractor(grid_setup):
    extractor = load_extractor(str(grid_setup["extractor"]), threads=1)
    assert (extractor.name, extractor.dim, extractor.precision, extractor.threads) == ("grid-ov", 96, "fp32", 1)
    clips = np.random.default_rng(0).integers(0, 256, (3, 8, 48, 64, 3), dtype=np.uint8)
    want = GridStats()(torch.from_numpy(clips)).numpy()
    np.testing.assert_allclose(extractor.extract(clips), want, atol=1e-5)


def test_a_streamed_video_with_an_openvino_extractor_equals_extract_features_and_infer(grid_setup, tmp_path):
    extractor = str(grid_setup["extractor"])
    assert main(["extract-features", grid_setup["video"], "--out", str(tmp_path / "f"), "--extractor", extractor,
                 "--no-progress"]) == 0
    assert main(["infer", "--ckpt", str(grid_setup["model"]), "--features", str(tmp_path / "f" / "walk.npy"),
                 "--out", str(tmp_path / "dets.json")]) == 0
    offline = json.loads((tmp_path / "dets.json").read_text())["results"]["walk"]
    runner = StreamRunner(str(grid_setup["model"]), [grid_setup["video"]], load_extractor(extractor),
                          StreamOptions(window=64, hop=64))
    items = list(runner.events())
    events = sorted((i for i in items if i.get("type") == "end"), key=lambda e: -e["score"])
    assert items[-1]["status"] == "end" and items[-1]["features"] == 17
    assert len(events) == len(offline) > 0
    step = 4 / 15
    for e, d in zip(events, offline):
        assert e["label"] == d["label"] and abs(e["score"] - d["score"]) <= 1e-4
        assert abs(e["start"] - d["segment"][0]) <= step and abs(e["end"] - d["segment"][1]) <= step


def test_the_network_gets_one_torch_thread_beside_an_extractor_with_its_own_pool(grid_setup):
    from asl_edge.stream.command import set_network_threads

    openvino = load_extractor(str(grid_setup["extractor"]))
    motion = load_extractor("motion")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        set_network_threads(None, StreamRunner(str(grid_setup["model"]), [grid_setup["video"]], openvino), "cpu")
        assert (openvino.runtime, torch.get_num_threads()) == ("openvino", 1)
        set_network_threads(3, StreamRunner(str(grid_setup["model"]), [grid_setup["video"]], openvino), "cpu")
        assert torch.get_num_threads() == 3                                    # asked for: as asked
        torch.set_num_threads(2)

        class Runner:                                                          # motion: numpy, no pool of its own
            extractor = motion

        set_network_threads(None, Runner(), "cpu")
        assert torch.get_num_threads() == 2
        with pytest.raises(StreamError, match="--network-threads must be at least 1, got 0"):
            set_network_threads(0, Runner(), "cpu")
    finally:
        torch.set_num_threads(before)


def test_an_extractor_export_that_disagrees_with_the_model_is_refused_before_the_stream_starts(grid_setup,
                                                                                                tmp_path, capsys):
    other = save_openvino_extractor(tmp_path / "other", {**GRID, "width": 80, "dim": 64, "frame_stride": 8})
    with pytest.raises(StreamError, match="input_dim 96 vs the extractor's 64; feat_stride 4 vs the extractor's "
                                          "frame stride 8"):
        StreamRunner(str(grid_setup["model"]), [grid_setup["video"]], str(other))
    assert main(["stream", "--model", str(grid_setup["model"]), "--source", grid_setup["video"], "--extractor",
                 str(other)]) == 2
    assert "trained on other features than the grid-ov extractor makes" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ I3D exports


@pytest.fixture(scope="module")
def i3d_setup(tmp_path_factory):
    """Random I3D weights in a temporary cache, and two generated videos: one to calibrate on and
    one held out."""
    gst_or_skip()
    folder = tmp_path_factory.mktemp("i3d")
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(folder / "cache"))
    ckpt = folder / "random.ckpt"
    ckpt.write_bytes(pickle.dumps(release_variables(seed=3), protocol=4))
    convert_i3d_checkpoint(ckpt)
    videos = folder / "videos"
    videos.mkdir()
    make_video(videos / "ball", "mp4-h264", frames=40, fps=30, width=256, height=240)
    held = make_video(folder / "bar", "webm-vp8", frames=40, fps=30, width=320, height=240, pattern="bar")
    yield {"folder": folder, "videos": videos, "held": held}
    patch.undo()


def test_extractor_export_inputs_are_checked_before_anything_is_written(i3d_setup, capsys):
    folder = i3d_setup["folder"]
    empty = folder / "empty"
    empty.mkdir(exist_ok=True)
    (empty / "notes.txt").write_text("no videos here")
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    videos = str(i3d_setup["videos"])
    cases = [(["--precision", "fp32", "--calibration", videos], "--calibration is for --precision int8"),
             (["--precision", "int8"], "int8 calibrates on real footage: pass --calibration"),
             (["--precision", "int8", "--calibration", str(empty)], f"--calibration {empty}: the folder holds no video"),
             (["--precision", "int8", "--calibration", f"{videos},{broken}"], str(broken)),
             (["--precision", "int8", "--calibration", str(folder / "nothing")], "no such file or folder"),
             (["--precision", "bf16", "--parity-videos", str(broken)], str(broken)),
             (["--precision", "fp16"], "--format openvino exports an extractor in fp32, bf16 or int8, not fp16")]
    for options, message in cases:
        out = folder / "never"
        assert main(["export", "--extractor", "i3d-rgb", "--format", "openvino", "--out", str(out), *options]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_an_extractor_export_claims_its_out_folder_like_a_model_export(i3d_setup, capsys):
    folder = i3d_setup["folder"]
    mine = folder / "mine"
    mine.mkdir(exist_ok=True)
    (mine / "notes.txt").write_text("the user's")
    base = ["export", "--extractor", "i3d-rgb", "--format", "openvino", "--out", str(mine)]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "is not empty and not an earlier export output (it holds notes.txt)" in err and "--overwrite" in err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert main([*base, "--parity-features", str(folder)]) == 2
    assert "--parity-features is for a checkpoint's export" in capsys.readouterr().err
    assert main([*base, "--no-parity", "--parity-videos", i3d_setup["held"]]) == 2
    assert "--no-parity skips it" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_overwrite_replaces_an_earlier_export_and_keeps_the_users_files(i3d_setup, capsys):
    out = i3d_setup["folder"] / "again"
    base = ["export", "--extractor", "i3d-rgb", "--out", str(out), "--no-parity"]
    assert main([*base, "--format", "torchscript"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["extractor.json", "i3d-rgb.ts", "metadata.json"]
    (out / "notes.txt").write_text("the user's")
    assert main([*base, "--format", "openvino"]) == 2                      # a foreign file: refused
    assert "--overwrite" in capsys.readouterr().err
    assert main([*base, "--format", "openvino", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["extractor.json", "i3d-rgb.bin", "i3d-rgb.xml", "metadata.json",
                                                     "notes.txt"]
    assert json.loads((out / "metadata.json").read_text())["artifact"] == "i3d-rgb.xml"
    assert load_extractor(str(out)).extract(np.zeros((1, 16, 224, 224, 3), np.uint8)).shape == (1, 1024)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_each_openvino_precision_loads_as_an_extractor_and_agrees_with_fp32(i3d_setup, precision, capsys):
    out = i3d_setup["folder"] / f"openvino-{precision}"
    calibration = ["--calibration", str(i3d_setup["videos"]), "--calibration-clips", "4"] if precision == "int8" else []
    assert main(["export", "--extractor", "i3d-rgb", "--format", "openvino", "--precision", precision, "--out",
                 str(out), "--parity-videos", i3d_setup["held"], *calibration]) == 0
    err = capsys.readouterr().err
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and "PASS" in err
    assert set(parity["sets"]) == ({"calibration", "held_out"} if precision == "int8" else {"held_out"})
    assert parity["sets"]["held_out"]["inputs"] == [{"video": i3d_setup["held"], "clips": 7}]
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["openvino_inference_precision"] == ("f32" if precision == "fp32" else "bf16")
    if precision == "int8":
        assert metadata["calibration"]["clips"] == 4 and "int8 calibration: 4 clips of 1 video(s)" in err
    exported = load_extractor(str(out))
    eager = load_extractor("i3d-rgb")
    assert (exported.name, exported.dim, exported.clip, exported.precision) == ("i3d-rgb", 1024, eager.clip, precision)
    clips = sample_clips(i3d_setup["held"], eager.clip, 3)                     # a real clip, another batch size
    got, want = exported.extract(clips), eager.extract(clips)
    cosine = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() >= {"fp32": 0.99999, "bf16": 0.995, "int8": 0.95}[precision]
    assert cosine.mean() >= {"fp32": 0.99999, "bf16": 0.995, "int8": 0.98}[precision]


def test_bench_features_rows_are_compared_with_i3d_pytorch_fp32_of_the_same_run():
    from asl_edge.bench.report import add_ratios
    from asl_edge.bench.stages import FEATURES_BASELINE

    rows = [{"stage": "features", "case": FEATURES_BASELINE, "precision": precision, "batch": batch, "window": None,
             "p50_ms": ms} for precision, batch, ms in (("fp32", 1, 500.0), ("fp32", 8, 4000.0), ("bf16", 8, 8000.0))]
    rows += [{"stage": "features", "case": "i3d-rgb openvino", "precision": "int8", "batch": 8, "window": None,
              "p50_ms": 400.0},
             {"stage": "features", "case": "i3d-rgb onnx", "precision": "int8", "batch": 1, "window": None,
              "error": "no"}]
    add_ratios(rows, "eager, reference ops", FEATURES_BASELINE)
    assert [r.get("ratio_vs_baseline") for r in rows] == [1.0, 1.0, 2.0, 0.1, None]
