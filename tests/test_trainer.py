"""The trainer: optimizer groups, schedule, EMA, resume, and a real CPU training run on ``easy``."""

import dataclasses
import json
import math

import pytest
import torch

from asl_edge.cli import main
from asl_edge.config import load_config
from asl_edge.model import build_model, load_checkpoint
from asl_edge.train.criterion import ASLCriterion
from asl_edge.train.synthetic import PRESETS, make_synthetic
from asl_edge.train.trainer import ModelEma, Trainer, TrainingError, learning_rate, parameter_groups

from helpers import small_config


def test_weight_decay_only_on_conv_and_linear_weights():
    config = small_config()
    model = build_model(config)
    criterion = ASLCriterion(config, model.strides, config.model.fpn_dim)
    decay, no_decay = parameter_groups([model, criterion], 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for module in (model, criterion) for n, p in module.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert len(decayed) + len(kept) == len(names)
    assert "cls_head.classifier.weight" in decayed and "stem.0.attn.q_proj.weight" in decayed
    assert "instance_head.conv.weight" in decayed
    for name in ("class_sensitivity.mu", "class_sensitivity.sigma_raw", "reg_head.level_scales",
                 "stem.0.attn_residual.scale", "neck.0.weight", "cls_head.classifier.bias"):
        assert name in kept, name
    assert all(not n.endswith("bias") and "norm" not in n for n in decayed)


def test_learning_rate_warmup_then_cosine():
    config = small_config()
    config.opt.learning_rate, config.opt.warmup_epochs, config.opt.epochs = 1e-3, 2, 4
    ipe = 10  # warm-up 20 iterations, cosine over 40
    assert learning_rate(config, 0, ipe) == pytest.approx(1e-3 / 20)
    assert learning_rate(config, 19, ipe) == pytest.approx(1e-3)
    assert learning_rate(config, 20, ipe) == pytest.approx(1e-3)
    assert learning_rate(config, 40, ipe) == pytest.approx(1e-8 + 0.5 * (1e-3 - 1e-8))
    assert learning_rate(config, 60, ipe) == pytest.approx(1e-8)
    config.opt.schedule_type, config.opt.schedule_steps, config.opt.schedule_gamma = "multistep", [1, 3], 0.1
    assert learning_rate(config, 29, ipe) == pytest.approx(1e-3)
    assert learning_rate(config, 30, ipe) == pytest.approx(1e-4)
    assert learning_rate(config, 50, ipe) == pytest.approx(1e-5)


def test_ema_is_the_exponential_average():
    live = torch.nn.Linear(2, 1)
    ema = ModelEma(live, 0.9)
    start = live.weight.detach().clone()
    with torch.no_grad():
        live.weight.add_(1.0)
    ema.update(live)
    torch.testing.assert_close(ema.module.weight, 0.9 * start + 0.1 * (start + 1.0))
    assert not ema.module.weight.requires_grad


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("easy"), preset="easy", seed=0)


def _short_config(easy_data, epochs, **train_cfg):
    overrides = {"opt": {"epochs": epochs, "warmup_epochs": 1}, "train_cfg": {"eval_interval": 0, **train_cfg}}
    return load_config(easy_data["config"], overrides=overrides)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """12 training and 3 validation videos: 3 iterations per epoch."""
    preset = dataclasses.replace(PRESETS["easy"], num_train=12, num_val=3)
    return make_synthetic(tmp_path_factory.mktemp("tiny"), preset)


def test_resume_gives_the_uninterrupted_result(tiny_data, tmp_path):
    tiny = tiny_data
    config = _short_config(tiny, epochs=1)
    Trainer(config, tmp_path / "straight", progress=False).fit()
    first = Trainer(config, tmp_path / "resumed", progress=False)
    first.fit(max_epochs=1)
    assert first.epoch == 1
    with pytest.raises(TrainingError, match="already holds a training run"):
        Trainer(config, tmp_path / "resumed", progress=False)
    other = _short_config(tiny, epochs=1)
    other.opt.learning_rate *= 2
    with pytest.raises(TrainingError, match="opt.learning_rate"):
        Trainer(other, tmp_path / "resumed", resume=True, progress=False)
    with open(tmp_path / "resumed/log.jsonl", "a") as fd:  # what an interrupted epoch 2 left behind
        fd.write(json.dumps({"kind": "iter", "epoch": 2, "iteration": 999, "lr": 0.1, "loss": 9.0, "losses": {}}) + "\n")
    Trainer(config, tmp_path / "resumed", resume=True, progress=False).fit()
    straight = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=True)
    assert straight["iteration"] == resumed["iteration"] > 0
    for key in ("model", "ema", "criterion"):
        for name, value in straight[key].items():
            torch.testing.assert_close(resumed[key][name], value, rtol=0, atol=0, msg=f"{key}.{name}")
    assert resumed["loss_normalizer"] == straight["loss_normalizer"]
    assert resumed["last_eval"] == straight["last_eval"]
    def log(run):  # wall-clock times differ; the resumed run has a second "run" record, at its resume
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]

    assert [r for r in log("resumed") if r["kind"] != "run" or r["iteration"] == 0] == log("straight")


@pytest.mark.parametrize("train_cfg, test_cfg, message", [
    ({"asl": {"temperature": 0.0}}, {}, "temperature must be positive"),
    ({"ema_decay": 1.5}, {}, "ema_decay"),
    ({}, {"tiou_thresholds": []}, "tiou_thresholds"),
    ({}, {"tiou_thresholds": [30]}, "tiou_thresholds"),
])
def test_bad_training_settings_fail_before_training(tiny_data, tmp_path, train_cfg, test_cfg, message):
    config = load_config(tiny_data["config"], overrides={"train_cfg": train_cfg, "test_cfg": test_cfg})
    with pytest.raises(TrainingError, match=message):
        Trainer(config, tmp_path / "run", progress=False)


def test_a_folder_without_a_checkpoint_starts_over(tiny_data, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)                                       # crashed in epoch 1
    (run / "log.jsonl").write_text('{"kind": "iter", "iteration": 1, "loss": 1.0}\n')
    config = _short_config(tiny_data, epochs=0)
    Trainer(config, run, progress=False).fit()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records if r["kind"] != "iter"] == ["run", "epoch", "eval"]
    assert json.loads((run / "eval.json").read_text())["epoch"] == 1


def test_bad_validation_split_fails_before_training(tiny_data, tmp_path):
    config = _short_config(tiny_data, epochs=1)
    config.val_split = ["test"]
    with pytest.raises(TrainingError, match="validation data.*no video"):
        Trainer(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_data, tmp_path, capsys):
    assert main(["train", "--config", str(tiny_data["config"]), "--out", str(tmp_path / "run"),
                 "--device", "cuda"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err


def test_resume_without_a_run_is_a_clear_error(tmp_path, capsys):
    for config in ([], ["--config", "thumos_i3d"]):
        assert main(["train", *config, "--out", str(tmp_path / "none"), "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"no run to resume in {tmp_path / 'none'}" in err and "neither a file nor a preset" not in err
    assert not (tmp_path / "none").exists()


@pytest.fixture(scope="module")
def easy_run(easy_data, tmp_path_factory):
    """A real CPU training run on the easy preset (8 epochs, about a minute on 2 cores)."""
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--config", str(easy_data["config"]), "--out", str(run), "--epochs", "8",
                 "--no-progress"]) == 0
    return run


@pytest.mark.slow
def test_training_on_easy_reaches_the_target_map(easy_run):
    result = json.loads((easy_run / "eval.json").read_text())
    assert result["average_mAP"] >= 0.8, result["mAP_per_tiou"]
    records = [json.loads(line) for line in (easy_run / "log.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert kinds == {"run", "iter", "epoch", "eval"}
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 8 and epochs[-1]["loss"] < epochs[0]["loss"]
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] in ("iter", "epoch"))
    assert (easy_run / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = load_checkpoint(easy_run / "model.pt")
    assert ckpt.meta["weights"] == "ema" and ckpt.meta["eval"]["average_mAP"] == result["average_mAP"]


@pytest.mark.slow
def test_eval_command_reproduces_the_run_evaluation(easy_run, easy_data, tmp_path, capsys):
    expected = json.loads((easy_run / "eval.json").read_text())["average_mAP"]
    for ckpt in ("model.pt", "checkpoints/last.pt"):
        out = tmp_path / ckpt.replace("/", "_").replace(".pt", "")
        assert main(["eval", "--ckpt", str(easy_run / ckpt), "--config", str(easy_data["config"]),
                     "--split", "validation", "--out", str(out), "--no-progress"]) == 0
        assert json.loads((out / "eval.json").read_text())["average_mAP"] == pytest.approx(expected, abs=1e-12)
        assert f"average mAP {100 * expected:.2f}" in capsys.readouterr().out
    # the run's detections feed the plot and the offline evaluator
    png = tmp_path / "one.png"
    assert main(["plot-detections", "--gt", str(easy_data["annotations"]), "--pred",
                 str(easy_run / "detections.json"), "--split", "validation", "--video", "synth_val_0000",
                 "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["eval-detections", "--gt", str(easy_data["annotations"]), "--pred",
                 str(easy_run / "detections.json"), "--split", "validation"]) == 0
    assert f"average mAP {100 * expected:.2f}" in capsys.readouterr().out


def test_eval_command_errors(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["eval", "--ckpt", str(bad)]) == 2
    assert "is not an asl-edge checkpoint or is damaged" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP training needs a CUDA GPU")
def test_amp_training_on_cuda(easy_data, tmp_path):
    config = _short_config(easy_data, epochs=1, amp=True)
    trainer = Trainer(config, tmp_path / "amp", device="cuda", progress=False)
    assert trainer.use_amp
    summary = trainer.fit()
    assert summary["eval"]["average_mAP"] > 0
    records = [json.loads(line) for line in (tmp_path / "amp/log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "epoch")
