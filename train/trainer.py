"""The training loop (DESIGN §2.5): AdamW with parameter groups, warm-up + cosine per iteration,
gradient clipping, an EMA of the weights, optional AMP on CUDA, checkpoints with ``resume``,
periodic evaluation, a JSON-lines log and a training-curve PNG.

A run folder holds::

    config.yaml            the configuration the run trains
    log.jsonl              one record per log interval, epoch and evaluation
    checkpoints/last.pt    training state after the latest epoch (what --resume reads)
    model.pt               the EMA weights as an asl-edge checkpoint (infer, eval, export)
    eval.json              the latest evaluation; detections.json its detections
    training_curve.png     losses, learning rate and mAP
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn

from ..config import Config, config_from_dict, config_to_dict, save_config
from ..model import ASLNetwork, CheckpointError, build_model, save_checkpoint
from ..model.checkpoint import read_torch_file
from ..outputs import activitynet_results, atomic_output, write_json
from .criterion import ASLCriterion
from .datasets import ActionDataset, Batch, DatasetError, TrainSampler, collate, load_records
from .progress import progress_bar
from .evaluation import EvaluationError, parse_tious
from .validate import evaluate_model, format_result

STATE_FORMAT = "asl-edge-training-state"
STATE_VERSION = 1
# end of the cosine schedule
MIN_LEARNING_RATE = 1e-8


class TrainingError(RuntimeError):
    """A run that cannot start or continue (the message says why and what to do)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """``device`` as a torch.device, with a clear error when it names an absent GPU."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise TrainingError(f"unknown device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise TrainingError(f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return dev


def check_training_config(config: Config) -> None:
    """Raise TrainingError for training settings outside their meaningful ranges."""
    t, a = config.train_cfg, config.train_cfg.asl
    problems = []
    checks = [
        (0 <= t.ema_decay < 1, f"train_cfg.ema_decay must be in [0, 1), got {t.ema_decay}"),
        (0 <= t.loss_norm_momentum < 1, f"train_cfg.loss_norm_momentum must be in [0, 1), got {t.loss_norm_momentum}"),
        (t.init_loss_norm > 0, f"train_cfg.init_loss_norm must be positive, got {t.init_loss_norm}"),
        (t.eval_interval >= 0, f"train_cfg.eval_interval must be >= 0, got {t.eval_interval}"),
        (t.log_interval >= 1, f"train_cfg.log_interval must be >= 1, got {t.log_interval}"),
        (0 <= t.label_smoothing < 1, f"train_cfg.label_smoothing must be in [0, 1), got {t.label_smoothing}"),
        (a.temperature > 0, f"train_cfg.asl.temperature must be positive, got {a.temperature}"),
        (a.mse_weight >= 0, f"train_cfg.asl.mse_weight must be >= 0, got {a.mse_weight}"),
        (a.contrastive_weight >= 0, f"train_cfg.asl.contrastive_weight must be >= 0, got {a.contrastive_weight}"),
        (a.background_ratio >= 0, f"train_cfg.asl.background_ratio must be >= 0, got {a.background_ratio}"),
        (config.loader.batch_size >= 1, f"loader.batch_size must be >= 1, got {config.loader.batch_size}"),
        (config.loader.num_workers >= 0, f"loader.num_workers must be >= 0, got {config.loader.num_workers}"),
        (config.opt.learning_rate > 0, f"opt.learning_rate must be positive, got {config.opt.learning_rate}"),
        (total_epochs(config) >= 1, f"opt.epochs + warmup_epochs must be >= 1, got {total_epochs(config)}"),
    ]
    problems = [message for ok, message in checks if not ok]
    try:
        parse_tious(config.test_cfg.tiou_thresholds)
    except EvaluationError as err:
        problems.append(f"test_cfg.tiou_thresholds: {err}")
    if problems:
        raise TrainingError("; ".join(problems))


def parameter_groups(modules: List[nn.Module], weight_decay: float) -> List[Dict]:
    """Weight decay on the weights of convolutions and linear layers only; none on biases, norms,
    scales and the sensitivity Gaussians (μ, σ)."""
    decay, no_decay = [], []
    for module in modules:
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                is_weight = name == "weight" and isinstance(sub, (nn.Conv1d, nn.Linear))
                (decay if is_weight else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(config: Config, iteration: int, iters_per_epoch: int) -> float:
    """Learning rate at ``iteration``: linear warm-up over ``warmup_epochs``, then cosine to 1e-8
    over ``epochs`` (or multistep decay at ``schedule_steps`` epochs after the warm-up)."""
    opt = config.opt
    base = opt.learning_rate
    warmup = opt.warmup_epochs * iters_per_epoch if opt.warmup else 0
    if iteration < warmup:
        return base * (iteration + 1) / warmup
    after = iteration - warmup
    if opt.schedule_type == "multistep":
        passed = sum(1 for step in opt.schedule_steps if after >= step * iters_per_epoch)
        return base * opt.schedule_gamma ** passed
    span = max(opt.epochs * iters_per_epoch, 1)
    return MIN_LEARNING_RATE + 0.5 * (base - MIN_LEARNING_RATE) * (1 + math.cos(math.pi * min(after, span) / span))


def total_epochs(config: Config) -> int:
    return config.opt.epochs + (config.opt.warmup_epochs if config.opt.warmup else 0)


class ModelEma:
    """Exponential moving average of a model's parameters and float buffers (other buffers copied)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema, live in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema.dtype.is_floating_point:
                ema.lerp_(live.detach(), 1.0 - self.decay)
            else:
                ema.copy_(live)


def training_step(model: ASLNetwork, criterion: ASLCriterion, optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler, ema: ModelEma, batch: Batch, clip: float,
                  use_amp: bool) -> Dict[str, float]:
    """One optimisation step on ``batch``: forward and loss (float16 autocast when ``use_amp``),
    scaled backward, gradient-norm clipping at ``clip`` (> 0), optimizer step, EMA update.
    Returns the loss parts, ``loss`` being the total."""
    with torch.autocast(device_type=batch.feats.device.type, dtype=torch.float16, enabled=use_amp):
        feats, masks = model.pyramid(batch.feats, batch.mask)
        logits, offsets = model.heads(feats, masks)
        loss, parts = criterion(feats, masks, logits, offsets, batch.segments, batch.labels)
    if not torch.isfinite(loss):
        raise TrainingError(f"the loss became {float(loss)} (videos {batch.video_ids}); "
                            "lower opt.learning_rate or check the features")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
    scaler.step(optimizer)
    scaler.update()
    ema.update(model)
    parts["loss"] = float(loss.detach())
    return parts


def _read_state(path: Path) -> Dict:
    if not path.is_file():
        raise TrainingError(f"no training state at {path}")
    try:
        state = read_torch_file(path, "asl-edge training state")
    except CheckpointError as err:
        raise TrainingError(str(err)) from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path} is not an asl-edge training state")
    if state.get("format_version") != STATE_VERSION:
        raise TrainingError(f"{path}: training-state version {state.get('format_version')} is not supported")
    return state


def _config_differences(a: Dict, b: Dict, prefix: str = "") -> List[str]:
    keys = sorted(set(a) | set(b))
    out: List[str] = []
    for key in keys:
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(_config_differences(va, vb, f"{prefix}{key}."))
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out


class Trainer:
    """Trains ``config`` into ``out_dir``.

    ``resume=True`` continues the run in ``out_dir`` from ``checkpoints/last.pt``; the config must
    be the run's own. Without it, ``out_dir`` must not hold a run already.
    """

    def __init__(self, config: Config, out_dir: Union[str, Path], device: Union[str, torch.device] = "cpu",
                 resume: bool = False, progress: bool = True, skip_invalid: bool = False):
        self.out_dir = Path(out_dir)
        self.device = resolve_device(device)
        self.state_path = self.out_dir / "checkpoints" / "last.pt"
        self.log_path = self.out_dir / "log.jsonl"
        self.progress = progress
        state = None
        if resume:
            state = _read_state(self.state_path)
            differences = _config_differences(state["config"], config_to_dict(config))
            if differences:
                raise TrainingError(
                    f"the config differs from the run's in {', '.join(differences[:10])}; resume with the "
                    f"run's own config ({self.out_dir / 'config.yaml'})")
        elif self.state_path.exists():
            raise TrainingError(f"{self.out_dir} already holds a training run: pass --resume to continue it, "
                                "or choose another output folder")
        check_training_config(config)
        self.config = config
        cfg = config
        seed_everything(cfg.init_rand_seed)
        try:
            self.dataset = ActionDataset(cfg, cfg.train_split, training=True, skip_invalid=skip_invalid)
        except DatasetError as err:
            raise TrainingError(f"training data: {err}") from err
        for message in self.dataset.skipped:
            print(f"training data: skipped {message}", file=sys.stderr)
        if len(self.dataset) == 0:
            raise TrainingError(f"no training video with actions in splits {cfg.train_split}")
        try:  # evaluation runs after the last epoch at the latest: find bad validation data now
            self.val_records, self.val_skipped = load_records(cfg, cfg.val_split, skip_invalid=skip_invalid)
        except DatasetError as err:
            raise TrainingError(f"validation data (val_split {cfg.val_split}): {err}") from err
        for message in self.val_skipped:
            print(f"validation data: skipped {message}", file=sys.stderr)
        if not any(len(r.labels) for r in self.val_records):
            raise TrainingError(f"validation data (val_split {cfg.val_split}) has no annotated action to score")
        self.sampler = TrainSampler(len(self.dataset), cfg.init_rand_seed)
        drop_last = len(self.dataset) >= cfg.loader.batch_size
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=cfg.loader.batch_size, sampler=self.sampler, drop_last=drop_last,
            num_workers=cfg.loader.num_workers, collate_fn=functools.partial(collate, length=cfg.dataset.max_seq_len),
            persistent_workers=False)
        self.iters_per_epoch = len(self.loader)

        self.model: ASLNetwork = build_model(cfg).to(self.device)
        self.criterion = ASLCriterion(cfg, self.model.strides, cfg.model.fpn_dim).to(self.device)
        self.ema = ModelEma(self.model, cfg.train_cfg.ema_decay)
        groups = parameter_groups([self.model, self.criterion], cfg.opt.weight_decay)
        if cfg.opt.type == "AdamW":
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.opt.learning_rate)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=cfg.opt.learning_rate, momentum=cfg.opt.momentum)
        self.use_amp = cfg.train_cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0
        self.iteration = 0
        self.last_eval: Optional[Dict] = None
        if state is not None:
            self._load_state(state)
            self._trim_log()
            self._say(f"resumed {self.out_dir} after epoch {self.epoch} (iteration {self.iteration})")
        else:
            # a folder without a training state holds at most an interrupted first epoch: start over
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.log_path.unlink(missing_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")

    def _say(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr)

    def _log(self, record: Dict) -> None:
        with open(self.log_path, "a", encoding="utf-8") as fd:
            fd.write(json.dumps(record) + "\n")

    def _trim_log(self) -> None:
        """Drop log records of iterations after the saved state (an interrupted epoch)."""
        if not self.log_path.exists():
            return
        kept = [line for line in self.log_path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("iteration", 0) <= self.iteration]
        with atomic_output(self.log_path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _save_state(self) -> None:
        state = {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "config": config_to_dict(self.config),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict(),
            "criterion": self.criterion.state_dict(),
            "loss_normalizer": self.criterion.normalizer.value,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "last_eval": self.last_eval or {},
        }
        with atomic_output(self.state_path) as tmp:
            torch.save(state, tmp)

    def _load_state(self, state: Dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.criterion.load_state_dict(state["criterion"])
        self.criterion.normalizer.value = float(state["loss_normalizer"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when the run so far had AMP off
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.epoch = int(state["epoch"])
        self.iteration = int(state["iteration"])
        self.last_eval = state["last_eval"] or None

    def fit(self, max_epochs: Optional[int] = None) -> Dict:
        """Train until the schedule's last epoch (or ``max_epochs`` more epochs, for time-boxed runs);
        evaluate every ``eval_interval`` epochs and after the last; write model.pt and the curve."""
        last = total_epochs(self.config)
        stop = last if max_epochs is None else min(last, self.epoch + max_epochs)
        interval = self.config.train_cfg.eval_interval
        while self.epoch < stop:
            epoch_record = self._train_epoch()
            self.epoch += 1
            epoch_record.update({"kind": "epoch", "epoch": self.epoch, "iteration": self.iteration})
            sensitivity = self.criterion.class_sensitivity
            if sensitivity is not None:  # to watch the Gaussians (rows: classes; columns: cls, start, end)
                epoch_record["mu"] = sensitivity.mu.detach().cpu().tolist()
                epoch_record["sigma"] = sensitivity.sigma.detach().cpu().tolist()
            self._log(epoch_record)
            self._say(f"epoch {self.epoch}/{last}: loss {epoch_record['loss']:.4f} "
                      f"({epoch_record['seconds']:.1f} s)")
            self._save_state()
            if self.epoch == last or (interval > 0 and self.epoch % interval == 0):
                self.evaluate()
                self._save_state()
        self._write_model()
        self._plot_curve()
        return {"epoch": self.epoch, "iteration": self.iteration, "eval": self.last_eval,
                "model": str(self.out_dir / "model.pt")}

    def _train_epoch(self) -> Dict:
        self.model.train()
        self.criterion.train()
        self.sampler.set_epoch(self.epoch)
        interval = max(self.config.train_cfg.log_interval, 1)
        clip = self.config.train_cfg.clip_grad_l2norm
        sums: Dict[str, float] = {}
        count = 0
        start = time.perf_counter()
        bar = progress_bar(self.loader, enabled=self.progress, desc=f"epoch {self.epoch + 1}", unit="it")
        for batch in bar:
            batch = batch.to(self.device)
            lr = learning_rate(self.config, self.iteration, self.iters_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            try:
                parts = training_step(self.model, self.criterion, self.optimizer, self.scaler, self.ema, batch,
                                      clip, self.use_amp)
            except TrainingError as err:
                raise TrainingError(f"iteration {self.iteration}: {err}") from None
            self.iteration += 1
            count += 1
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{parts['loss']:.3f}", lr=f"{lr:.2e}")
            if self.iteration % interval == 0:
                self._log({"kind": "iter", "epoch": self.epoch + 1, "iteration": self.iteration, "lr": lr,
                           "loss": parts["loss"], "losses": {k: v for k, v in parts.items() if k != "loss"}})
        means = {k: v / max(count, 1) for k, v in sums.items()}
        return {"loss": means.pop("loss", float("nan")), "losses": means,
                "seconds": time.perf_counter() - start, "iterations": count}

    def evaluate(self) -> Dict:
        """Evaluate the EMA weights on ``val_split``; log it and write eval.json / detections.json."""
        result, detections = evaluate_model(self.ema.module, self.config, self.val_records, self.device,
                                            progress=self.progress)
        self.last_eval = {"epoch": self.epoch,
                          **{k: result[k] for k in ("tiou_thresholds", "mAP_per_tiou", "average_mAP")}}
        self._log({"kind": "eval", "iteration": self.iteration, **self.last_eval})
        write_json(dict(result, epoch=self.epoch, splits=list(self.config.val_split), skipped=self.val_skipped),
                   self.out_dir / "eval.json")
        write_json(activitynet_results(detections), self.out_dir / "detections.json")
        self._say(f"epoch {self.epoch} {format_result(result)}")
        return result

    def _write_model(self) -> None:
        meta = {"source": "asl-edge train", "weights": "ema", "epoch": self.epoch, "iteration": self.iteration}
        if self.last_eval and self.last_eval["epoch"] == self.epoch:
            meta["eval"] = self.last_eval
        save_checkpoint(self.ema.module, self.config, self.out_dir / "model.pt", meta=meta)

    def _plot_curve(self) -> None:
        from .plots import PlotError, plot_training_curve

        try:
            plot_training_curve(self.log_path, self.out_dir / "training_curve.png")
        except PlotError as err:
            self._say(f"no training curve: {err}")


def load_trained_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu"):
    """``(network, config)`` from an asl-edge checkpoint (``model.pt``) or a training state
    (``checkpoints/last.pt``, whose EMA weights are taken), in eval mode on ``device``."""
    from ..model import load_checkpoint
    from ..model.checkpoint import load_weights

    path = Path(path)
    device = resolve_device(device)
    try:
        state = _read_state(path)
    except TrainingError:
        try:
            ckpt = load_checkpoint(path, device=device)
        except CheckpointError as err:
            raise TrainingError(f"{err} (nor is it a training state)") from err
        return ckpt.model, ckpt.config
    config = config_from_dict(state["config"], origin=f"{path} (config)")
    model = build_model(config)
    load_weights(model, state["ema"], source=f"{path} [ema]")
    return model.eval().to(device), config
