"""The asl-edge command line: infer, import-checkpoint; packaging of train/ and export/."""

import json
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
    torch.manual_seed(0)                         # the same network whichever tests ran before
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
    assert "video_b.npy: error: " in err and "it is not a NumPy .npy array" in err
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
    feats = tmp_path / "x.npy"
    np.save(feats, np.zeros((30, 24), np.float32))
    assert main(["infer", "--ckpt", str(bad), "--features", str(feats)]) == 2
    assert "is not an asl-edge checkpoint or is damaged" in capsys.readouterr().err


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


def test_console_entry_point_and_subpackages():
    script = Path(sys.executable).parent / "asl-edge"       # installed next to the interpreter
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("asl-edge ")
    import asl_edge.export
    import asl_edge.train

    assert asl_edge.train.__doc__ and asl_edge.export.__doc__


def test_one_fps_rule_for_training_evaluation_and_infer(tmp_path, capsys):
    """default_fps 15 and a video annotated at 29.97 fps: the training record, the evaluation's
    detections and `asl-edge infer` all use 15, so seconds survive the round trip."""
    from asl_edge.postprocess import seconds_to_grid
    from asl_edge.train.datasets import ActionDataset, load_records
    from asl_edge.train.validate import evaluate_model

    feats = np.random.default_rng(1).standard_normal((60, 24)).astype(np.float32)
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "v.npy", feats)
    (tmp_path / "ann.json").write_text(json.dumps({"database": {"v": {
        "subset": "test", "fps": 29.97, "duration": 17.0,
        "annotations": [{"label": "run", "label_id": 1, "segment": [2.0, 5.0]}]}}}))
    config = small_config(default_fps=15.0, json_file=str(tmp_path / "ann.json"),
                          feat_folder=str(tmp_path / "feats"))
    model = randomize_(build_model(config), seed=2).eval()
    save_checkpoint(model, config, tmp_path / "model.pt")

    records, _ = load_records(config, "test")
    assert records[0].fps == 15.0
    item = ActionDataset(config, ["test"], training=False)[0]
    expected = seconds_to_grid(torch.tensor([2.0, 5.0], dtype=torch.float64), 4, 16, 15.0)
    assert item.segments[0].tolist() == pytest.approx(expected.tolist())
    _, evaluated = evaluate_model(model, config, records)

    assert main(["infer", "--ckpt", str(tmp_path / "model.pt"), "--features", str(tmp_path / "feats" / "v.npy"),
                 "--fps", "29.97", "--duration", "17", "--out", str(tmp_path / "dets.json")]) == 0
    assert "--fps 29.97 is not used: the model's config sets dataset.default_fps = 15" in capsys.readouterr().err
    inferred = json.loads((tmp_path / "dets.json").read_text())["results"]["v"]
    assert [d["segment"] for d in inferred] == [[d["start"], d["end"]] for d in evaluated["v"]]
    assert [d["score"] for d in inferred] == [d["score"] for d in evaluated["v"]]


def test_infer_durations_are_one_per_file(tmp_path, checkpoint, capsys):
    paths = []
    for name in ("a", "b"):
        paths.append(tmp_path / f"{name}.npy")
        np.save(paths[-1], np.random.default_rng(3).standard_normal((50, 24)).astype(np.float32))
    args = ["infer", "--ckpt", str(checkpoint), "--features", *map(str, paths), "--fps", "30"]
    assert main(args + ["--duration", "3"]) == 2
    assert "--duration gives 1 value(s) for 2 feature files" in capsys.readouterr().err
    assert main(args + ["--duration", "3", "nan"]) == 2
    assert "--duration must be a positive finite number, got nan" in capsys.readouterr().err
    assert main(args + ["--duration", "6.54", "9", "--out", str(tmp_path / "d.json")]) == 0   # the last starts at 6.53 s
    results = json.loads((tmp_path / "d.json").read_text())["results"]
    assert max(d["segment"][1] for d in results["a"]) <= 6.54 < max(d["segment"][1] for d in results["b"]) <= 9


def test_a_missing_feature_file_is_reported_before_fps(tmp_path, checkpoint, capsys):
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(tmp_path / "gone.npy")]) == 2
    err = capsys.readouterr().err
    assert "gone.npy does not exist" in err and "--fps" not in err
    present = tmp_path / "here.npy"
    np.save(present, np.zeros((30, 24), np.float32))
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(tmp_path / "gone.npy"), str(present)]) == 2
    err = capsys.readouterr().err
    assert "gone.npy does not exist" in err and "--fps is required" in err


@pytest.mark.parametrize("command", ["infer", "eval", "export", "import-checkpoint", "train-resume"])
@pytest.mark.parametrize("content", ["garbage", "pickle"])
def test_every_command_says_in_one_line_that_a_checkpoint_is_unusable(tmp_path, capsys, command, content):
    bad = tmp_path / "model.pt"
    if content == "garbage":
        bad.write_bytes(b"\x00 not a checkpoint" * 20)
    else:
        torch.save({"format": "asl-edge-checkpoint", "obj": ValueError("not a tensor")}, bad)
    feats = tmp_path / "x.npy"
    np.save(feats, np.zeros((30, 24), np.float32))
    args = {
        "infer": ["infer", "--ckpt", str(bad), "--features", str(feats)],
        "eval": ["eval", "--ckpt", str(bad)],
        "export": ["export", "--ckpt", str(bad), "--format", "torchscript", "--out", str(tmp_path / "e")],
        "import-checkpoint": ["import-checkpoint", "--from", "actionformer", "--config", "thumos_i3d", str(bad),
                              str(tmp_path / "o.pt")],
        "train-resume": ["train", "--resume", "--out", str(tmp_path / "run")],
    }[command]
    if command == "train-resume":
        (tmp_path / "run" / "checkpoints").mkdir(parents=True)
        (tmp_path / "run" / "config.yaml").write_text(json.dumps(config_to_dict(small_config())))
        bad.replace(tmp_path / "run" / "checkpoints" / "last.pt")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "or is damaged" in err[0], err
    assert "weights_only=False" not in err[0]
