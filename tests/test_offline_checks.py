"""The offline commands check before they spend and never lose a user's file (issue 24): the whole
config and every feature file before epoch 1, one meaning of --out, no silent overwrite, parity
reports that say what they checked, and torch threads chosen deliberately."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from actionformer_reference import actionformer_state_dict
from asl_edge.cli import main
from asl_edge.config import config_to_dict, load_config
from asl_edge.localizer import Localizer
from asl_edge.model import ASLNetwork, build_model, save_checkpoint
from asl_edge.runtime import ArtifactError, load
from asl_edge.train.synthetic import PRESETS, make_synthetic
from asl_edge.train.trainer import Trainer
from helpers import randomize_, small_config

WINDOW = 64


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def checkpoint(tmp_path):
    config = small_config()
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(randomize_(build_model(config), seed=2), config, path)
    return path


def features_file(path, steps=50, channels=24, seed=0):
    np.save(path, np.random.default_rng(seed).standard_normal((steps, channels)).astype(np.float32))
    return path


def tiny_data(folder):
    """12 training and 3 validation videos of 32 channels (3 iterations per epoch)."""
    return make_synthetic(folder, dataclasses.replace(PRESETS["easy"], num_train=12, num_val=3))


def short_config(data, epochs=1, **train_cfg):
    return load_config(data["config"], overrides={"opt": {"epochs": epochs, "warmup_epochs": 1},
                                                  "train_cfg": {"eval_interval": 0, **train_cfg}})


def write_yaml(path, config):
    path.write_text(yaml.safe_dump(config_to_dict(config)))
    return path


# ----------------------------------------------------------- 1. the whole config, before epoch 1


def test_every_config_problem_is_named_together_before_training(tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    config = short_config(data)
    config.dataset.class_names = config.dataset.class_names[:3]           # 3 names for 4 classes
    config.model.n_head = 3                                               # 64 channels in 3 heads
    run = tmp_path / "run"
    assert main(["train", "--config", str(write_yaml(tmp_path / "bad.yaml", config)), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "dataset.class_names lists 3 names for 4 classes" in err
    assert "model.n_head 3 must divide the embedding dim 64" in err and "(2 problems in the config)" in err
    assert not run.exists()                                               # nothing written, nothing trained


def test_a_bad_config_is_a_config_error_wherever_a_network_is_built(tmp_path, capsys):
    fewer_names = small_config(class_names=["jump", "run"])
    with pytest.raises(ValueError, match="2 names for 3 classes") as raised:
        ASLNetwork(fewer_names)                      # was: an IndexError at the first evaluation
    assert type(raised.value).__name__ == "ConfigError"
    sd = {"module." + k: v for k, v in actionformer_state_dict(24, 32, 3, [2, 1, 3]).items()}
    torch.save({"state_dict": sd, "state_dict_ema": sd}, tmp_path / "af.pth.tar")
    assert main(["import-checkpoint", "--from", "actionformer", "--config",
                 str(write_yaml(tmp_path / "cfg.yaml", fewer_names)), str(tmp_path / "af.pth.tar"),
                 str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 names for 3 classes" in err[0]
    assert not (tmp_path / "out.pt").exists()


# ------------------------------------------------- 2. every feature file, before epoch 1


def test_bad_validation_features_stop_the_run_before_epoch_one(tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    val = sorted(data["features"].glob("synth_val_*.npy"))
    np.save(val[1], np.zeros((40, 16), np.float32))                       # 16 channels among 32
    np.save(sorted(data["features"].glob("synth_train_*.npy"))[0], np.zeros((0, 32), np.float32))   # empty
    config = write_yaml(tmp_path / "cfg.yaml", short_config(data))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "synth_train_0000.npy: features are empty" in err
    assert f"{val[1]}: features have 16 channels, the model expects 32" in err and not run.exists()
    assert main(["train", "--config", str(config), "--out", str(run), "--skip-invalid", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "validation data: skipped synth_val_0001" in err and "training data: skipped synth_train_0000" in err
    result = json.loads((run / "eval.json").read_text())
    assert result["epoch"] == 2 and [s.split(":")[0] for s in result["skipped"]] == ["synth_val_0001"]


def test_an_evaluation_that_failed_after_the_last_epoch_runs_on_resume(tmp_path, monkeypatch):
    data = tiny_data(tmp_path / "data")
    config = short_config(data)
    failed = Trainer(config, tmp_path / "run", progress=False)

    def disk_full():
        raise OSError("disk full")

    monkeypatch.setattr(failed, "evaluate", disk_full)
    with pytest.raises(OSError, match="disk full"):
        failed.fit()
    monkeypatch.undo()
    assert not (tmp_path / "run" / "eval.json").exists()
    summary = Trainer(config, tmp_path / "run", resume=True, progress=False).fit()
    assert summary["eval"]["epoch"] == 2
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["epoch"] == 2
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)["meta"]["eval"]["epoch"] == 2


# ------------------------------------------------------------------------------- 3, 9, 12: infer


def test_infer_refuses_two_files_of_one_video_id(tmp_path, checkpoint, capsys):
    for group in ("g1", "g2"):
        (tmp_path / group).mkdir()
    a, b = features_file(tmp_path / "g1" / "v.npy", seed=1), features_file(tmp_path / "g2" / "v.npy", seed=2)
    out = tmp_path / "dets.json"
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(a), str(b), "--fps", "30",
                 "--out", str(out)]) == 2
    assert f"{a} and {b} are both video 'v'" in capsys.readouterr().err and not out.exists()


def test_a_failed_infer_rerun_keeps_the_earlier_results(tmp_path, checkpoint, capsys):
    out = tmp_path / "dets.json"
    good = features_file(tmp_path / "a.npy")
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(good), "--fps", "30", "--out", str(out)]) == 0
    before = out.read_bytes()
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(tmp_path), "--fps", "30",
                 "--out", str(out)]) == 2                                  # a folder
    assert f"{tmp_path} is a folder: pass its files (e.g. {tmp_path / '*.npy'})" in capsys.readouterr().err
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(tmp_path / "*.npz"), "--fps", "30",
                 "--out", str(out)]) == 2                                  # a glob the shell did not expand
    (tmp_path / "bad.npy").write_text("not an array")
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(tmp_path / "bad.npy"), "--fps", "30",
                 "--out", str(out)]) == 1
    assert "nothing written" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_infer_refuses_a_duration_shorter_than_the_features(tmp_path, checkpoint, capsys):
    feats = features_file(tmp_path / "a.npy", steps=50)                   # stride 4 at 30 fps
    last_start = 49 * 4 / 30                                              # 6.53 s
    args = ["infer", "--ckpt", str(checkpoint), "--features", str(feats), "--fps", "30", "--duration"]
    assert main(args + ["3"]) == 1
    err = capsys.readouterr().err
    assert f"the last one starts {last_start:.2f} s into the video" in err and "nothing written" in err
    assert main(args + [f"{last_start + 0.01}", "--out", str(tmp_path / "d.json")]) == 0
    segments = [d["segment"] for d in json.loads((tmp_path / "d.json").read_text())["results"]["a"]]
    assert segments and any(end > start for start, end in segments)       # not all clamped to [d, d]


def test_eval_detections_refuses_an_empty_prediction_file(tmp_path, capsys):
    gt = {"database": {"v1": {"subset": "test", "annotations": [{"label": "jump", "segment": [1.0, 3.0]}]}}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps({"results": {}}))
    assert main(["eval-detections", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")]) == 2
    assert "no predictions to score" in capsys.readouterr().err


# ----------------------------------------------------------- 4, 6, 14: export folders and lengths


def export(ckpt, out, *args):
    return main(["export", "--ckpt", str(ckpt), "--out", str(out), *args])


def test_an_export_folder_holds_one_artifact_and_its_own_parity(tmp_path, checkpoint):
    out = tmp_path / "export"
    assert export(checkpoint, out, "--format", "torchscript", "--window", str(WINDOW)) == 0
    assert json.loads((out / "parity.json").read_text())["format"] == "torchscript"
    model_ts = (out / "model.ts").read_bytes()
    assert export(checkpoint, out, "--format", "exported", "--window", "0") == 2      # refused: nothing changes
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.ts", "parity.json"]
    assert (out / "model.ts").read_bytes() == model_ts
    assert export(checkpoint, out, "--format", "exported", "--window", str(WINDOW), "--no-parity") == 0
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.pt2"]
    assert load(out).format == "exported"


def test_the_openvino_export_replaces_its_pair_only_once_both_are_written(tmp_path, checkpoint, monkeypatch):
    """Suspected: the old code deleted model.xml/.bin before saving the new pair."""
    openvino = pytest.importorskip("openvino")
    import asl_edge.export.openvino_export as openvino_export
    from asl_edge.export.spec import Exported

    out = tmp_path / "ov"                                                 # an earlier export's files
    out.mkdir()
    before = {"model.xml": b"<the earlier IR/>", "model.bin": b"the earlier weights", "metadata.json": b"{}"}
    for name, content in before.items():
        (out / name).write_bytes(content)

    def save_half(model, path, compress_to_fp16=False):
        Path(path).write_text("<half an IR")
        Path(path).with_suffix(".bin").write_text("half the weights")
        raise RuntimeError("disk full")

    # the graph conversion is tested with the real exports (test_precision); here only the save fails
    monkeypatch.setattr(openvino_export, "export_onnx",
                        lambda *args, **kw: Exported(Path("model.onnx"), {"onnx_opset": 18}))
    monkeypatch.setattr(openvino, "convert_model", lambda path: "an OpenVINO model")
    monkeypatch.setattr(openvino, "save_model", save_half)
    assert export(checkpoint, out, "--format", "openvino", "--window", str(WINDOW), "--no-parity") == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("args, message", [
    (["--window", "0"], "--window must be a positive length, got 0"),
    (["--max-length", "128"], "--max-length 128 is for --dynamic artifacts"),
    (["--dynamic", "--window", "64", "--max-length", "32"], "--max-length 32 is below the --window (64)"),
    (["--dynamic", "--window", "64", "--max-length", "100"], "--max-length 100 is not a multiple of the padding unit"),
    (["--device", "gpu"], "unknown device 'gpu'"),
    (["--parity-features", "x", "--no-parity"], "--parity-features gives the inputs of the parity check"),
])
def test_export_options_that_would_be_ignored_or_fail_late_are_refused_first(tmp_path, checkpoint, capsys, args,
                                                                              message):
    out = tmp_path / "out"
    assert export(checkpoint, out, "--format", "torchscript", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_a_dynamic_maximum_below_the_traced_length_gets_parity_at_lengths_it_takes(tmp_path, capsys):
    config = small_config(max_seq_len=32)                                 # one padding unit: traced at 64
    save_checkpoint(randomize_(build_model(config)), config, tmp_path / "m.pt")
    assert export(tmp_path / "m.pt", tmp_path / "out", "--format", "torchscript", "--dynamic",
                  "--max-length", "32") == 0                              # was: a traceback after writing
    parity = json.loads((tmp_path / "out" / "parity.json").read_text())
    assert parity["passed"] and list(parity["outputs_per_length"]) == ["32"]
    assert json.loads((tmp_path / "out" / "metadata.json").read_text())["max_length"] == 32


# --------------------------------------------------------------------- 5, 8: --out, one meaning each


def test_synth_refuses_a_training_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("the run's config\n")
    (run / "log.jsonl").write_text("")
    assert main(["synth", "--out", str(run)]) == 2
    assert f"{run} is not empty and not an earlier synth output (it holds checkpoints, log.jsonl)" in \
        capsys.readouterr().err
    assert (run / "config.yaml").read_text() == "the run's config\n"
    assert main(["synth", "--out", str(run), "--overwrite"]) == 0
    assert (run / "log.jsonl").exists() and load_config(run / "config.yaml").dataset.num_classes == 4


@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory):
    """The tiny dataset and a random checkpoint of its model."""
    folder = tmp_path_factory.mktemp("eval")
    data = tiny_data(folder / "data")
    config = load_config(data["config"])
    torch.manual_seed(0)
    save_checkpoint(build_model(config), config, folder / "model.pt")
    return data, folder / "model.pt"


def test_eval_out_is_a_folder_checked_before_evaluating(eval_setup, tmp_path, capsys):
    data, ckpt = eval_setup
    args = ["eval", "--ckpt", str(ckpt), "--split", "validation", "--no-progress", "--out"]
    assert main(args + [str(tmp_path / "map.json")]) == 2
    assert "map.json looks like a file name, and eval --out is a folder" in capsys.readouterr().err
    (tmp_path / "taken").write_text("a file")
    assert main(args + [str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'taken'} is a file; eval --out is a folder" in err and "average mAP" not in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(args + [str(tmp_path / "mine")]) == 2
    assert main(args + [str(tmp_path / "mine"), "--overwrite"]) == 0
    assert main(args + [str(tmp_path / "mine")]) == 2                     # still holds notes.txt
    assert main(args + [str(tmp_path / "fresh")]) == 0
    assert main(args + [str(tmp_path / "fresh")]) == 0                    # an earlier eval output: replaced
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["detections.json", "eval.json"]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_unwritable_outputs_name_the_path_given_not_a_temporary_file(tmp_path, checkpoint, capsys):
    (tmp_path / "file").write_text("x")
    feats = features_file(tmp_path / "a.npy")
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(feats), "--fps", "30",
                 "--out", str(tmp_path / "file" / "dets.json")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'file' / 'dets.json'}: {tmp_path / 'file'} is a file" in err
    assert export(checkpoint, tmp_path / "file", "--format", "torchscript") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'file'} is a file; export --out is a folder" in err and "partial" not in err
    assert (tmp_path / "file").read_text() == "x"


def test_a_failed_atomic_write_names_the_target(tmp_path):
    from asl_edge.outputs import OutputError, write_json

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'file' / 'out.json'}") as raised:
        write_json({}, tmp_path / "file" / "out.json")
    assert "partial" not in str(raised.value)


# --------------------------------------------------------------------------------- 7: devices


@pytest.mark.parametrize("device, message", [
    ("gpu", "unknown device 'gpu': use cpu, cuda or cuda:N"),
    pytest.param("cuda", "sees no CUDA GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")),
])
def test_an_unusable_device_is_one_line_in_infer_and_export(tmp_path, checkpoint, capsys, device, message):
    feats = features_file(tmp_path / "a.npy")
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(feats), "--fps", "30",
                 "--device", device]) == 2
    assert export(checkpoint, tmp_path / "out", "--format", "torchscript", "--device", device) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(message in line for line in err), err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ 10: parity reports


class NoisyBackend:
    """A backend whose outputs are the eager model's plus ``noise``; records what it was run on."""

    def __init__(self, model, config, noise):
        self.model, self.config, self.noise, self.seen = model, config, noise, []

    def run(self, features, mask):
        self.seen.append(features.clone())
        g = torch.Generator().manual_seed(1)
        with torch.inference_mode():
            return tuple(o + self.noise * torch.randn(o.shape, generator=g) for o in self.model(features, mask))

    def detect(self, features, fps=None, duration=None):
        return Localizer(self.run, self.config).detect(features, fps=fps, duration=duration)


def test_parity_names_the_failed_check_with_its_numbers_and_the_inputs_it_used():
    from asl_edge.export.calibration import RealFeatures
    from asl_edge.export.exporter import _validate
    from asl_edge.export.parity import format_parity, parity_report
    from asl_edge.export.spec import ExportSpec

    config = small_config()
    torch.manual_seed(0)
    model = randomize_(build_model(config)).eval()
    spec = _validate(ExportSpec(format="openvino", precision="int8", window=WINDOW), config)
    videos = [torch.full((40, 24), 3.0), torch.arange(30 * 24, dtype=torch.float32).reshape(30, 24) / 100]
    backend = NoisyBackend(model, config, noise=0.5)
    report = parity_report(backend, model, config, spec, features=RealFeatures(videos, "2 .npy files in feats"))
    assert report["inputs"] == "real features: 2 .npy files in feats"
    first = backend.seen[0][0].t()                                      # (T, C) of the first output check
    assert torch.equal(first[:40], videos[0][:40]) and torch.equal(first[40:57], videos[1][:17])
    assert not report["passed"] and report["failed"]
    text = format_parity(report)
    assert "tolerances: outputs 0.25 relative" in text                  # not 2e-01
    failed = [c for c in report["checks"] if not c["passed"]]
    assert all(f"{c['check']}" in text for c in failed) and "FAILED (needs >= 60%)" in text
    assert "inputs: real features: 2 .npy files in feats" in text
    random_report = parity_report(NoisyBackend(model, config, noise=0.0), model, config, spec)
    assert random_report["passed"] and "seeded random" in random_report["inputs"]


def test_export_runs_parity_on_the_real_features_it_is_given(tmp_path, checkpoint):
    feats = tmp_path / "feats"
    feats.mkdir()
    for i, steps in enumerate((60, 90)):
        features_file(feats / f"v{i}.npy", steps=steps, seed=i)
    out = tmp_path / "ts"
    assert export(checkpoint, out, "--format", "torchscript", "--window", str(WINDOW),
                  "--parity-features", str(feats)) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["inputs"] == f"real features: 2 .npy files in {feats}" and parity["passed"]


# ------------------------------------------------------------- 11, 13: checkpoints in, checkpoints out


def test_import_checkpoint_never_replaces_its_input_and_knows_its_own_format(tmp_path, checkpoint, capsys):
    af = tmp_path / "af.pth.tar"
    sd = {"module." + k: v for k, v in actionformer_state_dict(24, 32, 3, [2, 1, 3]).items()}
    torch.save({"state_dict": sd, "state_dict_ema": sd}, af)
    before = af.read_bytes()
    config = str(write_yaml(tmp_path / "cfg.yaml", small_config()))
    assert main(["import-checkpoint", "--from", "actionformer", "--config", config, str(af), str(af)]) == 2
    assert "writing there would replace it" in capsys.readouterr().err and af.read_bytes() == before
    assert main(["import-checkpoint", "--from", "actionformer", "--config", config, str(checkpoint),
                 str(tmp_path / "again.pt")]) == 2
    err = capsys.readouterr().err
    assert "is already an asl-edge checkpoint" in err and "relative position encoding" not in err


def test_a_training_state_given_as_a_model_points_to_model_pt(tmp_path, capsys):
    state = tmp_path / "last.pt"
    torch.save({"format": "asl-edge-training-state", "format_version": 1, "epoch": 1}, state)
    feats = features_file(tmp_path / "a.npy")
    assert main(["infer", "--ckpt", str(state), "--features", str(feats), "--fps", "30"]) == 2
    assert export(state, tmp_path / "out", "--format", "torchscript") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("use the run's model.pt" in line for line in err), err


# ------------------------------------------------------------------------ 14: feature file contents


def test_feature_files_are_read_without_numpy_advice_and_within_float32(tmp_path, checkpoint, capsys):
    (tmp_path / "pickle.npy").write_bytes(b"\x80\x04\x95 not numpy")
    big = np.random.default_rng(0).standard_normal((50, 24))
    big[3, 5] = 1e300
    np.save(tmp_path / "big.npy", big)
    assert main(["infer", "--ckpt", str(checkpoint), "--features", str(tmp_path / "pickle.npy"),
                 str(tmp_path / "big.npy"), "--fps", "30"]) == 1
    err = capsys.readouterr().err
    assert "it is not a NumPy .npy array" in err and "allow_pickle" not in err
    assert "float64 values beyond float32's range (largest magnitude 1e+300" in err and "NaN" not in err


# ------------------------------------------------------------------------ 15: epochs and progress


def test_epochs_counts_every_epoch_and_a_finished_run_can_be_extended(tmp_path, capsys):
    data = tiny_data(tmp_path / "data")
    config = write_yaml(tmp_path / "cfg.yaml", short_config(data))       # warm-up 1
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--epochs", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/2: loss" in err and "epoch 2/2: loss" in err and "epoch 2 average mAP" in err
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--no-progress"]) == 0
    assert "epoch 3/3: loss" in capsys.readouterr().err
    assert load_config(run / "config.yaml").opt.epochs == 2               # after the warm-up epoch
    epochs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["kind"] == "epoch"] == [1, 2, 3]
    assert json.loads((run / "eval.json").read_text())["epoch"] == 3
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2"]) == 2
    assert "the run has trained 3 epochs already" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r2"), "--epochs", "1"]) == 2
    assert "--epochs 1 counts every epoch, the 1 warm-up epochs" in capsys.readouterr().err


# ------------------------------------------------------------------------------- suspected items


def test_eval_config_with_another_feature_rate_is_refused(eval_setup, tmp_path, capsys):
    data, ckpt = eval_setup
    config = load_config(data["config"])
    config.dataset.default_fps = 15.0                                     # the checkpoint's is 30
    config.dataset.feat_stride = 8
    given = write_yaml(tmp_path / "other.yaml", config)
    assert main(["eval", "--ckpt", str(ckpt), "--config", str(given), "--split", "validation"]) == 2
    err = capsys.readouterr().err
    assert "dataset.feat_stride 8 (the checkpoint's: 4)" in err and "dataset.default_fps 15.0" in err


def test_runtime_refuses_metadata_whose_classes_contradict_each_other(tmp_path, checkpoint):
    out = tmp_path / "ts"
    assert export(checkpoint, out, "--format", "torchscript", "--window", str(WINDOW), "--no-parity") == 0
    assert load(out).format == "torchscript"
    meta = json.loads((out / "metadata.json").read_text())
    meta["config"]["dataset"]["num_classes"] = 2
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="3 names for 2 classes.*cls_logits has 3 classes, the config 2"):
        load(out)


# ------------------------------------------------------------------------------- thread sanity


def test_the_cli_sets_torch_threads_respecting_omp_num_threads(tmp_path, monkeypatch, restore_threads):
    from asl_edge.compute import configure_threads, usable_cpus

    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert main(["eval-detections", "--gt", str(tmp_path / "none.json"), "--pred", str(tmp_path / "none.json")]) == 2
    assert torch.get_num_threads() == 3
    assert configure_threads({}).startswith(f"{usable_cpus()} intra-op thread")
    assert torch.get_num_threads() == usable_cpus()


def test_usable_cpus_follow_the_cgroup_quota(tmp_path):
    from asl_edge.compute import _cgroup_cpu_limit, usable_cpus

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_limit(tmp_path) == 0.5
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


def test_an_iteration_far_slower_than_the_warm_up_is_reported_once_in_a_while():
    from asl_edge.train.progress import SlowIterationWatch

    watch = SlowIterationWatch(warmup=3, factor=10.0, min_excess_s=0.5, quiet=100)
    assert [watch.observe(i, s) for i, s in enumerate([5.0, 0.2, 0.21, 0.19])] == [None] * 4   # first one ignored
    assert watch.observe(4, 0.9) is None                                  # slower, but not 10x
    warning = watch.observe(5, 20.0)
    assert "iteration 5 took 20.0 s, 100x the 0.20 s of the warm-up" in warning and "OMP_NUM_THREADS=1" in warning
    assert watch.observe(6, 20.0) is None and watch.observe(106, 20.0) is not None


def test_training_warns_about_a_slow_iteration_and_loads_with_at_most_the_usable_cpus(tmp_path, monkeypatch,
                                                                                     capsys):
    import asl_edge.train.trainer as trainer_module
    from asl_edge.compute import usable_cpus
    from asl_edge.train.progress import SlowIterationWatch

    data = tiny_data(tmp_path / "data")
    config = short_config(data)
    config.loader.num_workers = usable_cpus() + 2                        # ActionFormer's 4 on 2 cores
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert trainer.loader.num_workers == usable_cpus()
    assert f"loader.num_workers {usable_cpus() + 2} is more than the {usable_cpus()} CPU(s)" in capsys.readouterr().err
    trainer.slow_watch = SlowIterationWatch(warmup=1, factor=3.0, min_excess_s=0.0, quiet=1)
    step, calls = trainer_module.training_step, []

    def slow_fifth_step(*args):
        calls.append(None)
        if len(calls) == 5:
            time.sleep(5 * trainer.slow_watch.baseline)
        return step(*args)

    monkeypatch.setattr(trainer_module, "training_step", slow_fifth_step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        trainer.fit()
    assert not [w for w in caught if issubclass(w.category, UserWarning)]   # e.g. the DataLoader's worker warning
    assert "warning: iteration 4 took" in capsys.readouterr().err
