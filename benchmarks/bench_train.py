"""Training benchmarks.

1. ``--compare``: average mAP on a synthetic preset (default ``keyframe``) of ASL against
   ActionFormer-mode (every ASL part off: no class-/instance-level sensitivity, no ASCL, θ = 0),
   same data, budget and seeds; mean ± std over the seeds. ``--modes`` adds ablations
   (``asl-losses``: the training parts without channel attention; ``channel-attention``: θ
   without the training parts; ``asl-no-class-level`` / ``-instance-level`` / ``-contrastive``:
   ASL without that part).
2. ``--iteration``: time per training iteration (forward, loss, backward, clipping, optimizer step,
   EMA) of the THUMOS-size network at batch 2, T = 2304, for both modes; median of ``--runs`` after
   two warm-up iterations. ``--device cuda`` also times AMP (float16 autocast).

    python benchmarks/bench_train.py --compare --iteration --seeds 0 1 2 --out out/bench_train.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from timing import cpu_name, emit_report

from asl_edge.config import Config, load_config
from asl_edge.model import build_model
from asl_edge.train.criterion import ASLCriterion
from asl_edge.train.datasets import Batch
from asl_edge.train.synthetic import make_synthetic
from asl_edge.train.trainer import ModelEma, Trainer, TrainingObjective, parameter_groups, training_step

# mode -> which of (class-level sensitivity, instance-level sensitivity, ASCL, channel attention) are on
MODES = {
    "asl": (True, True, True, True),
    "actionformer": (False, False, False, False),
    "asl-losses": (True, True, True, False),
    "channel-attention": (False, False, False, True),
    "asl-no-class-level": (False, True, True, True),
    "asl-no-instance-level": (True, False, True, True),
    "asl-no-contrastive": (True, True, False, True),
}


def with_mode(config: Config, mode: str) -> Config:
    """``config`` with the ASL parts on or off per ``mode`` (a part that is on keeps the config's
    setting, θ included); ``actionformer`` is every ASL part off and θ = 0."""
    config = copy.deepcopy(config)
    class_level, instance_level, contrastive, channel = MODES[mode]
    asl = config.train_cfg.asl
    asl.class_level &= class_level
    asl.instance_level &= instance_level
    asl.contrastive &= contrastive
    if not channel:
        config.model.tca.theta = 0.0
    return config


def compare(preset: str, seeds, work: Path, epochs, modes) -> dict:
    runs = {mode: [] for mode in modes}
    for seed in seeds:
        data = make_synthetic(work / f"{preset}_{seed}", preset=preset, seed=seed)
        for mode in modes:
            overrides = {"init_rand_seed": seed}
            if epochs is not None:
                overrides["opt"] = {"epochs": epochs}
            config = with_mode(load_config(data["config"], overrides=overrides), mode)
            config.train_cfg.eval_interval = 0
            start = time.perf_counter()
            summary = Trainer(config, work / f"run_{preset}_{seed}_{mode}", progress=False).fit()
            seconds = time.perf_counter() - start
            result = summary["eval"]
            runs[mode].append({"seed": seed, "average_mAP": result["average_mAP"],
                               "mAP_per_tiou": result["mAP_per_tiou"], "train_seconds": seconds})
            print(f"{preset} seed {seed} {mode:<12} average mAP {100 * result['average_mAP']:.2f} "
                  f"({seconds:.0f} s)", file=sys.stderr)
    summary = {}
    for mode, items in runs.items():
        values = [r["average_mAP"] for r in items]
        summary[mode] = {"mean": statistics.fmean(values),
                         "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": items}
    return {"preset": preset, "seeds": list(seeds), "epochs": config.opt.epochs,
            "tiou_thresholds": config.test_cfg.tiou_thresholds, "modes": summary}


def iteration_time(mode: str, runs: int, batch: int, length: int, device: str = "cpu", amp: bool = False) -> dict:
    config = with_mode(load_config("thumos_i3d"), mode)
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_model(config).train().to(dev)
    criterion = ASLCriterion(config, model.strides, config.model.fpn_dim).train().to(dev)
    ema = ModelEma(model, config.train_cfg.ema_decay)
    objective = TrainingObjective(model, criterion)
    optimizer = torch.optim.AdamW(parameter_groups([model, criterion], config.opt.weight_decay),
                                  lr=config.opt.learning_rate)
    feats = torch.randn(batch, config.dataset.input_dim, length)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1:, int(0.8 * length):] = False
    segments = [torch.tensor([[100.0, 180.0], [400.0, 430.0], [1000.0, 1300.0], [1500.0, 1510.0]])] * batch
    labels = [torch.tensor([0, 3, 7, 19])] * batch
    data = Batch(feats, mask, segments, labels, [f"sample_{b}" for b in range(batch)]).to(dev)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    times = []
    for i in range(runs + 2):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        training_step(objective, optimizer, scaler, ema, data, config.train_cfg.clip_grad_l2norm, amp)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # the first iterations allocate and pick kernels
            times.append(time.perf_counter() - start)
    return {"mode": mode, "device": str(dev), "amp": amp, "batch": batch, "length": length, "runs": runs,
            "median_s": statistics.median(times), "min_s": min(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true", help="ASL vs ActionFormer-mode on a synthetic preset")
    parser.add_argument("--preset", default="keyframe", choices=["easy", "keyframe"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's opt.epochs")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["asl", "actionformer"],
                        help="what --compare trains (asl-losses: no channel attention; channel-attention: "
                             "no ASL training parts; asl-no-X: ASL without part X)")
    parser.add_argument("--iteration", action="store_true", help="time one training iteration, THUMOS size")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="device of --iteration (cuda also times AMP)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=2304)
    parser.add_argument("--work", default=None, help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--out", default=None, help="JSON report")
    args = parser.parse_args()
    if not (args.compare or args.iteration):
        parser.error("choose --compare and/or --iteration")
    report = {"machine": cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        if args.compare:
            report["compare"] = compare(args.preset, args.seeds, work, args.epochs, args.modes)
            for mode, stats in report["compare"]["modes"].items():
                print(f"{args.preset}: {mode:<12} average mAP {100 * stats['mean']:.2f} ± {100 * stats['std']:.2f} "
                      f"over seeds {args.seeds}")
    if args.iteration:
        precisions = [False, True] if args.device.startswith("cuda") else [False]
        report["iteration"] = [iteration_time(mode, args.runs, args.batch, args.length, args.device, amp)
                               for amp in precisions for mode in ("asl", "actionformer")]
        for row in report["iteration"]:
            print(f"iteration {row['device']}{' amp' if row['amp'] else ''} B{row['batch']} T{row['length']} "
                  f"{row['mode']:<12} median {row['median_s'] * 1000:.0f} ms "
                  f"(min {row['min_s'] * 1000:.0f} ms, {row['runs']} runs)")
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
