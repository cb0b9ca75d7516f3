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

Under torchrun the processes train one DistributedDataParallel model (:mod:`.distributed`):
``loader.batch_size`` is the global batch, which they share; rank 0 alone writes the run folder,
logs and evaluates. The log's first record (``kind: run``, again at each resume) and ``eval.json``
say how many processes trained (``world_size``) and with which ``backend`` (None: one process).
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
from torch.nn.parallel import DistributedDataParallel

from ..compute import DeviceError, usable_cpus
from ..compute import resolve_device as _resolve_device
from ..config import Config, ConfigError, config_from_dict, config_to_dict, load_config, problems_message, save_config
from ..model import ASLNetwork, CheckpointError, build_model, config_problems, save_checkpoint
from ..model.checkpoint import TRAINING_STATE_FORMAT as STATE_FORMAT
from ..model.checkpoint import read_torch_file
from ..outputs import OutputError, activitynet_results, atomic_output, claim_output_folder, write_json
from .criterion import ASLCriterion
from .datasets import ActionDataset, Batch, DatasetError, TrainSampler, collate, data_setting_problems, load_records
from .distributed import World, rank_seed
from .progress import SlowIterationWatch, progress_bar
from .evaluation import EvaluationError, parse_tious
from .validate import evaluate_model, format_result

STATE_VERSION = 1
# what a run folder holds; "checkpoints" first: a new run makes it before anything else
RUN_FILES = ("checkpoints", "config.yaml", "log.jsonl", "model.pt", "eval.json", "detections.json",
             "training_curve.png", "*.partial*")
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
    """``device`` as a torch.device, with a clear TrainingError when it names an absent GPU."""
    try:
        return _resolve_device(device)
    except DeviceError as err:
        raise TrainingError(str(err)) from None


def training_setting_problems(config: Config) -> List[str]:
    """Training settings outside their meaningful ranges."""
    t, a = config.train_cfg, config.train_cfg.asl
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
        (config.opt.epochs >= 0, f"opt.epochs must be >= 0, got {config.opt.epochs}"),
        (config.opt.warmup_epochs >= 0, f"opt.warmup_epochs must be >= 0, got {config.opt.warmup_epochs}"),
        (total_epochs(config) >= 1, f"opt.epochs + warmup_epochs must be >= 1, got {total_epochs(config)}"),
    ]
    problems = [message for ok, message in checks if not ok]
    try:
        parse_tious(config.test_cfg.tiou_thresholds)
    except EvaluationError as err:
        problems.append(f"test_cfg.tiou_thresholds: {err}")
    return problems


def check_training_config(config: Config) -> None:
    """TrainingError listing every problem of ``config`` for training: the network's and the
    checkpoint writer's rules, the training data's settings and the training settings."""
    problems = config_problems(config) + data_setting_problems(config) + training_setting_problems(config)
    if problems:
        raise TrainingError(problems_message("the config", problems))


def with_total_epochs(config: Config, epochs: int) -> Config:
    """A copy of ``config`` that trains ``epochs`` epochs in all, the warm-up epochs included (what
    ``asl-edge train --epochs`` means): opt.epochs becomes what follows the warm-up."""
    warmup = config.opt.warmup_epochs if config.opt.warmup else 0
    if epochs <= warmup:
        raise TrainingError(f"--epochs {epochs} counts every epoch, the {warmup} warm-up epochs "
                            "(opt.warmup_epochs) included: give more than that")
    config = copy.deepcopy(config)
    config.opt.epochs = epochs - warmup
    return config


def run_state_path(out_dir: Union[str, Path], must_exist: bool = False) -> Path:
    """Where a run folder keeps its training state; with ``must_exist`` a TrainingError when it
    has none (there is no run to resume)."""
    path = Path(out_dir) / "checkpoints" / "last.pt"
    if must_exist and not path.is_file():
        raise TrainingError(f"no run to resume in {out_dir}: {path} does not exist (start a run there without --resume)")
    return path


def run_config(out_dir: Union[str, Path], config_source: Optional[str] = None, resume: bool = False,
               epochs: Optional[int] = None, seed: Optional[int] = None) -> Config:
    """The config a run in ``out_dir`` trains: ``config_source`` (a preset or YAML), or with
    ``resume`` and none given the run's own config.yaml; ``epochs`` (all epochs, warm-up included)
    and ``seed`` override it. Resuming a folder without a training state is a TrainingError."""
    out_dir = Path(out_dir)
    if resume:
        run_state_path(out_dir, must_exist=True)
    if config_source is None:
        if not resume:
            raise TrainingError("--config is required (it may be left out with --resume)")
        config_source = str(out_dir / "config.yaml")
    try:
        config = load_config(config_source, overrides={"init_rand_seed": seed} if seed is not None else None)
    except ConfigError as err:
        raise TrainingError(str(err)) from None
    return config if epochs is None else with_total_epochs(config, epochs)


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


class TrainingObjective(nn.Module):
    """The network and its loss as one module, the one DistributedDataParallel wraps (so that the
    gradients of the loss's own parameters, the sensitivity Gaussians and head, are averaged too):
    ``forward(feats, mask, segments, labels) -> (loss, parts)``."""

    def __init__(self, model: ASLNetwork, criterion: ASLCriterion):
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, feats, mask, segments, labels):
        pyramid, masks = self.model.pyramid(feats, mask)
        logits, offsets = self.model.heads(pyramid, masks)
        return self.criterion(pyramid, masks, logits, offsets, segments, labels)


def training_step(objective: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  ema: ModelEma, batch: Batch, clip: float, use_amp: bool,
                  world: Optional[World] = None) -> Dict[str, float]:
    """One optimisation step on ``batch``: forward and loss of the :class:`TrainingObjective`
    (float16 autocast when ``use_amp``; wrapped in DistributedDataParallel when ``world`` has
    several processes, ``batch`` being this process's share), scaled backward, gradient-norm
    clipping at ``clip`` (> 0), optimizer step, EMA update. Returns the loss parts of the whole
    batch (the same on every process), ``loss`` being the total."""
    world = world or World()
    with torch.autocast(device_type=batch.feats.device.type, dtype=torch.float16, enabled=use_amp):
        loss, parts = objective(batch.feats, batch.mask, batch.segments, batch.labels)
    parts["loss"] = float(loss.detach())
    parts = world.average(parts)            # every process sees a non-finite loss of any of them, and stops
    if not math.isfinite(parts["loss"]):
        videos = batch.video_ids if world.size == 1 else f"{batch.video_ids} and those of the other processes"
        raise TrainingError(f"the loss became {parts['loss']} (videos {videos}); "
                            "lower opt.learning_rate or check the features")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
    scaler.step(optimizer)
    scaler.update()
    live = objective.module if isinstance(objective, DistributedDataParallel) else objective
    ema.update(live.model)
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
    be the run's own, except for ``opt.epochs``: a different number extends (or shortens) the
    schedule. Without it, ``out_dir`` must be new, empty or a run stopped in its first epoch.
    The config and every training and validation feature file are checked before anything is
    written (``skip_invalid`` leaves out the videos with a problem and lists them).

    ``world``: the processes training together (:func:`.distributed.join_world`; its device is
    the one trained on, ``device`` is then not used). Each process checks everything; rank 0 alone
    writes, once all have checked.
    """

    def __init__(self, config: Config, out_dir: Union[str, Path], device: Union[str, torch.device] = "cpu",
                 resume: bool = False, progress: bool = True, skip_invalid: bool = False,
                 world: Optional[World] = None):
        self.out_dir = Path(out_dir)
        self.device = resolve_device(device) if world is None else world.device
        self.world = world or World(device=self.device)
        self.state_path = run_state_path(self.out_dir)
        self.log_path = self.out_dir / "log.jsonl"
        self.progress = progress and self.world.is_main
        state = self._check_run_folder(config, resume)
        check_training_config(config)
        self.config = config
        cfg = config
        processes = self.world.size
        if cfg.loader.batch_size % processes:
            raise TrainingError(f"loader.batch_size {cfg.loader.batch_size} is the global batch, shared by the "
                                f"{processes} processes: make it a multiple of {processes}")
        seed_everything(cfg.init_rand_seed)
        self.dataset, self.val_records, self.val_skipped = self._check_data(cfg, skip_invalid)
        if processes > 1 and len(self.dataset) < cfg.loader.batch_size:
            raise TrainingError(f"{len(self.dataset)} training videos are fewer than one global batch "
                                f"(loader.batch_size {cfg.loader.batch_size}) to share over {processes} processes")
        self.sampler = TrainSampler(len(self.dataset), cfg.init_rand_seed, rank=self.world.rank,
                                    world_size=processes, global_batch=cfg.loader.batch_size)
        drop_last = len(self.dataset) >= cfg.loader.batch_size
        workers = min(cfg.loader.num_workers, usable_cpus())
        if workers < cfg.loader.num_workers:
            self._say(f"loader.num_workers {cfg.loader.num_workers} is more than the {usable_cpus()} CPU(s) this "
                      f"process may use: loading with {workers}")
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=cfg.loader.batch_size // processes, sampler=self.sampler, drop_last=drop_last,
            num_workers=workers, collate_fn=functools.partial(collate, length=cfg.dataset.max_seq_len),
            persistent_workers=False)
        self.iters_per_epoch = len(self.loader)
        self.slow_watch = SlowIterationWatch()

        self.model: ASLNetwork = build_model(cfg).to(self.device)
        self.criterion = ASLCriterion(cfg, self.model.strides, cfg.model.fpn_dim, self.world).to(self.device)
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
        objective = TrainingObjective(self.model, self.criterion)
        self.objective = objective if self.world.backend is None else DistributedDataParallel(
            objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            forward_sync_buffers=False)          # the buffers are constants, equal on every process
        self.world.barrier()                     # every process has checked the folder before rank 0 writes
        if self.world.is_main:
            self._start_run_folder(state)

    def _start_run_folder(self, state: Optional[Dict]) -> None:
        """Prepare the run folder (rank 0): a resumed run's log loses what followed its state, a new
        run's folder is set up; then the log's ``run`` record."""
        cfg = self.config
        if state is not None:
            self._trim_log()
            self._say(f"resumed {self.out_dir} after epoch {self.epoch} (iteration {self.iteration})")
            if state["config"]["opt"]["epochs"] != cfg.opt.epochs:
                save_config(cfg, self.out_dir / "config.yaml")
                self._say(f"the schedule now ends after epoch {total_epochs(cfg)}: the learning rate follows the "
                          f"cosine over the new length from iteration {self.iteration}")
        else:
            # a folder without a training state holds at most an interrupted first epoch: start over
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.unlink(missing_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
        self._log({"kind": "run", "epoch": self.epoch, "iteration": self.iteration, **self.world.describe(),
                   "device": str(self.device), "global_batch": cfg.loader.batch_size,
                   "batch_per_process": cfg.loader.batch_size // self.world.size})
        if self.world.size > 1:
            self._say(f"training on {self.world.size} processes ({self.world.backend}), "
                      f"{cfg.loader.batch_size // self.world.size} of the global batch of {cfg.loader.batch_size} "
                      "videos each")

    def _check_run_folder(self, config: Config, resume: bool) -> Optional[Dict]:
        """The training state to resume from (None for a new run), after checking that ``out_dir``
        may hold this run."""
        if not resume:
            if self.state_path.exists():
                raise TrainingError(f"{self.out_dir} already holds a training run: pass --resume to continue it, "
                                    "or choose another output folder")
            try:
                claim_output_folder(self.out_dir, RUN_FILES, overwrite=False, command="train", overwrite_flag=None)
            except OutputError as err:
                raise TrainingError(str(err)) from None
            return None
        state = _read_state(run_state_path(self.out_dir, must_exist=True))
        differences = _config_differences(state["config"], config_to_dict(config))
        if [key for key in differences if key != "opt.epochs"]:
            raise TrainingError(
                f"the config differs from the run's in {', '.join(differences[:10])}; resume with the "
                f"run's own config ({self.out_dir / 'config.yaml'}); only the number of epochs may change")
        if total_epochs(config) < int(state["epoch"]):
            raise TrainingError(f"the run has trained {state['epoch']} epochs already: the schedule cannot end "
                                f"after epoch {total_epochs(config)}")
        return state

    def _check_data(self, cfg: Config, skip_invalid: bool):
        """The training dataset and the validation records, every feature file read and checked
        now (evaluation runs after the last epoch at the latest); one TrainingError lists every
        problem of both splits, unless ``skip_invalid`` leaves those videos out."""
        problems = []
        dataset = val_records = val_skipped = None
        try:
            dataset = ActionDataset(cfg, cfg.train_split, training=True, skip_invalid=skip_invalid,
                                    check_files=True)
            for message in dataset.skipped:
                self._say(f"training data: skipped {message}")
        except DatasetError as err:
            problems.append(f"training data (train_split {cfg.train_split}): {err}")
        try:
            val_records, val_skipped = load_records(cfg, cfg.val_split, skip_invalid=skip_invalid,
                                                    check_files=True)
            for message in val_skipped:
                self._say(f"validation data: skipped {message}")
            if not any(len(r.labels) for r in val_records):
                problems.append(f"validation data (val_split {cfg.val_split}) has no annotated action to score")
        except DatasetError as err:
            problems.append(f"validation data (val_split {cfg.val_split}): {err}")
        if problems:
            hint = "" if skip_invalid else "\n(--skip-invalid leaves out the videos with a problem)"
            raise TrainingError("\n".join(problems) + hint)
        return dataset, val_records, val_skipped

    def _say(self, message: str) -> None:
        """One line on stderr from rank 0 (progress bars are what ``progress=False`` turns off, not these)."""
        if self.world.is_main:
            print(message, file=sys.stderr)

    def _log(self, record: Dict) -> None:
        if not self.world.is_main:
            return
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
        evaluate every ``eval_interval`` epochs and after the last; write model.pt and the curve
        (rank 0; the other processes wait for it at the end of each epoch and of the run)."""
        last = total_epochs(self.config)
        stop = last if max_epochs is None else min(last, self.epoch + max_epochs)
        if self.world.is_main:
            self._evaluate_if_due()         # an evaluation an interrupted run did not finish
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
            if self.world.is_main:
                self._save_state()
                self._evaluate_if_due()
            self.world.barrier()
        if self.world.is_main:
            self._write_model()
            self._plot_curve()
        self.world.barrier()
        return {"epoch": self.epoch, "iteration": self.iteration, "eval": self.last_eval,
                "model": str(self.out_dir / "model.pt")}

    def _evaluate_if_due(self) -> None:
        """Evaluate (and save the state again) after an epoch that the schedule evaluates, unless
        that evaluation is done: after every ``eval_interval`` epochs and after the last."""
        interval = self.config.train_cfg.eval_interval
        due = self.epoch == total_epochs(self.config) or (interval > 0 and self.epoch % interval == 0)
        if self.epoch > 0 and due and (self.last_eval or {}).get("epoch") != self.epoch:
            self.evaluate()
            self._save_state()

    def _train_epoch(self) -> Dict:
        self.objective.train()
        self.sampler.set_epoch(self.epoch)
        if self.world.backend is not None:      # each process's own draws (stochastic depth), reproducible
            torch.manual_seed(rank_seed(self.config.init_rand_seed, self.epoch, self.world.rank))
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
            step_start = time.perf_counter()
            try:
                parts = training_step(self.objective, self.optimizer, self.scaler, self.ema, batch, clip,
                                      self.use_amp, self.world)
            except TrainingError as err:
                raise TrainingError(f"iteration {self.iteration}: {err}") from None
            slow = self.slow_watch.observe(self.iteration, time.perf_counter() - step_start)
            if slow:
                self._say(f"warning: {slow}")
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
        write_json(dict(result, epoch=self.epoch, splits=list(self.config.val_split), skipped=self.val_skipped,
                        **self.world.describe()), self.out_dir / "eval.json")
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
