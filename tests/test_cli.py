"""The asl-edge command line: infer, import-checkpoint, demo; packaging of train/ and export/."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from actionformer_reference import actionformer_state_dict
from asl_edge.cli import main
from asl_edge.config import config_to_dict
from asl_edge.model import build_model, load_checkpoint, save_checkpoint
from helpers import randomize_, small_config


@pytest.fixture
def checkpoint(tmp_path):
    config = small_config()
    path = tmp_path / "model.pt"
    save_checkpoint(randomize_(build_model(config), seed=2), config, path)
    return path


def test_infer_keeps_good_results_when_some_inputs_fail(tmp_path, checkpoint, capsys):
    good = tmp_path / "video_a.npy"
    np.save(good, np.random.default_rng(0).standard_normal((50, 24)).astype(np.float32))
    corrupt = tmp_path / "video_b.npy"
    corrupt.write_bytes(b"garbage")
    wrong_dim = tmp_path / "video_c.npy"
    np.save(wrong_dim, np.zeros((50, 7), np.float32))
    out = tmp_path / "dets.json"
    code = main(["infer", "--ckpt", str(checkpoint), "--features", str(good), str(corrupt), str(wrong_dim),
                 str(tmp_path / "missing.npy"), "--fps", "30", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "video_b.npy: error: " in err and "not a readable .npy" in err
    assert "video_c.npy: error: features have 7 channels" in err
    assert "missing.npy does not exist" in err
    results = json.loads(out.read_text())["results"]
    assert list(results) == ["video_a"]
    first = results["video_a"][0]
    assert set(first) == {"label", "label_id", "score", "segment"} and len(first["segment"]) == 2


def test_infer_to_stdout(tmp_path, checkpoint, capsys):
    feats = tmp_path / "clip.npy"
    np.save(feats, np.zeros((30, 24), np.float32))
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(feats), "--fps", "25"]) == 0
    assert "clip" in json.loads(capsys.readouterr().out)["results"]


def test_infer_needs_fps_when_the_config_has_none(tmp_path, checkpoint, capsys):
    feats = tmp_path / "clip.npy"
    np.save(feats, np.zeros((30, 24), np.float32))
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(feats)]) == 2
    assert "--fps is required" in capsys.readouterr().err


def test_infer_with_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    assert main(["infer", "--ckpt", str(bad), "--features", "x.npy"]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err


def test_import_checkpoint(tmp_path, capsys):
    import yaml

    config_path = tmp_path / "cfg.yaml"
    config_path.write_text(yaml.safe_dump(config_to_dict(small_config())))
    af = tmp_path / "af.pth.tar"
    sd = {"module." + k: v for k, v in actionformer_state_dict(24, 32, 3, [2, 1, 3]).items()}
    torch.save({"epoch": 2, "state_dict": sd, "state_dict_ema": sd}, af)
    out = tmp_path / "imported.pt"
    assert main(["import-checkpoint", "--from", "actionformer", "--config", str(config_path), str(af), str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.config.model.tca.theta == 0.0 and ckpt.meta["source"] == "actionformer"
    assert torch.equal(ckpt.model.stem[0].attn.k_proj.weight, sd["module.backbone.stem.0.attn.key.weight"])
    torch.save({"epoch": 2}, af)
    assert main(["import-checkpoint", "--from", "actionformer", "--config", str(config_path), str(af), str(out)]) == 2
    assert "not an ActionFormer checkpoint" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "demo_detections.json").read_text())["results"]["demo_video"]
    assert 0 < len(results) <= 200
    assert (tmp_path / "demo_model.pt").is_file() and (tmp_path / "demo_video.npy").is_file()


def test_console_entry_point_and_subpackages():
    script = Path(sys.executable).parent / "asl-edge"       # installed next to the interpreter
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("asl-edge ")
    import asl_edge.export
    import asl_edge.train

    assert asl_edge.train.__doc__ and asl_edge.export.__doc__
