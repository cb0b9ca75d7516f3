"""Training under torchrun against one process, from the same seed at the same global batch.

    python benchmarks/bench_distributed.py [--preset keyframe] [--epochs 15] [--droppath 0.1] [--nproc 2]
                                           [--device cpu|cuda] [--out FILE]

Writes the synthetic preset (``asl-edge synth``), then trains its config twice with every iteration
logged: ``asl-edge train`` (one process) and ``torchrun --standalone --nproc-per-node N -m asl_edge
train`` (gloo on ``cpu``, NCCL on ``cuda``). Reports the largest relative difference between the two
loss curves over the first epoch and over the whole run, the final average mAP of both (and their
difference in points) and the seconds per epoch of both (the speed-up of N processes; on a machine
with fewer cores than processes x threads there is none to expect).

With ``--droppath 0`` the runs draw nothing at random but the crops and the order, which both share:
the curves then agree to float rounding. With stochastic depth (the preset's 0.1) each process draws
its own masks (seeded by the run's seed, the epoch and the rank), so the curves agree only
statistically.

Both runs get ``OMP_WAIT_POLICY=passive`` unless it is set: on a machine shared with other work,
torch's spinning threads would otherwise make the one-process run (two threads on two cores)
many times slower than it is (DESIGN §6); torchrun gives each of its processes one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from timing import cpu_name, emit_report

from asl_edge.config import load_config, save_config
from asl_edge.train.synthetic import make_synthetic


def train(command: List[str], run: Path) -> Dict:
    """Run ``command`` (an ``asl-edge train`` into ``run``); its log's iterations, epochs and eval."""
    start = time.perf_counter()
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "passive")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return {"wall_s": time.perf_counter() - start, "load_average_1min_at_end": os.getloadavg()[0],
            "run": next(r for r in records if r["kind"] == "run"),
            "losses": [r["loss"] for r in records if r["kind"] == "iter"],
            "epoch_s": [r["seconds"] for r in records if r["kind"] == "epoch"],
            "average_mAP": json.loads((run / "eval.json").read_text())["average_mAP"]}


def largest_relative_difference(a: List[float], b: List[float]) -> float:
    return max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b))


def largest_absolute_difference(a: List[float], b: List[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="keyframe")
    parser.add_argument("--seed", type=int, default=0, help="the data's and the training's seed")
    parser.add_argument("--epochs", type=int, default=None, help="epochs in all (default: the preset config's)")
    parser.add_argument("--droppath", type=float, default=None, help="stochastic depth (default: the config's)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    paths = make_synthetic(work / "data", preset=args.preset, seed=args.seed)
    overrides = {"init_rand_seed": args.seed, "train_cfg": {"log_interval": 1, "eval_interval": 0}}
    if args.droppath is not None:
        overrides["train_cfg"]["droppath"] = args.droppath
    config = load_config(paths["config"], overrides=overrides)
    config_path = work / "config.yaml"
    save_config(config, config_path)
    common = ["train", "--config", str(config_path), "--device", args.device, "--no-progress"]
    if args.epochs is not None:
        common += ["--epochs", str(args.epochs)]
    one = train([sys.executable, "-m", "asl_edge", *common, "--out", str(work / "one")], work / "one")
    many = train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
                  "-m", "asl_edge", *common, "--out", str(work / "many")], work / "many")
    backend = "nccl" if args.device.startswith("cuda") else "gloo"
    if many["run"]["backend"] != backend:
        raise SystemExit(f"the torchrun run trained with backend {many['run']['backend']}, not {backend}")
    first_epoch = len(one["losses"]) // len(one["epoch_s"])
    report = {
        "preset": args.preset, "seed": args.seed, "device": args.device, "cpu": cpu_name(),
        "epochs": len(one["epoch_s"]), "iterations_per_epoch": first_epoch,
        "global_batch": config.loader.batch_size, "droppath": config.train_cfg.droppath,
        "processes": {"one": one["run"], "many": many["run"]},
        "loss_relative_difference": {
            "first_epoch_max": largest_relative_difference(one["losses"][:first_epoch], many["losses"][:first_epoch]),
            "whole_run_max": largest_relative_difference(one["losses"], many["losses"])},
        "loss_absolute_difference": {
            "first_epoch_max": largest_absolute_difference(one["losses"][:first_epoch], many["losses"][:first_epoch]),
            "whole_run_max": largest_absolute_difference(one["losses"], many["losses"])},
        "work_folder": str(work),
        "average_mAP": {"one": one["average_mAP"], "many": many["average_mAP"],
                        "difference_points": 100 * (many["average_mAP"] - one["average_mAP"])},
        "seconds_per_epoch": {"one": sum(one["epoch_s"]) / len(one["epoch_s"]),
                              "many": sum(many["epoch_s"]) / len(many["epoch_s"])},
        "wall_s": {"one": one["wall_s"], "many": many["wall_s"]},
        "load_average_1min_at_end": {"one": one["load_average_1min_at_end"],
                                     "many": many["load_average_1min_at_end"]},
    }
    report["speed_up"] = report["seconds_per_epoch"]["one"] / report["seconds_per_epoch"]["many"]
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
