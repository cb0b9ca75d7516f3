"""The training stage's commands: ``train``, ``eval``, ``synth``, ``plot-detections`` and
``eval-detections`` (parsers and bodies)."""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Dict

from ..errors import CommandError


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a model on clip features (ActionFormer's data layout); under torchrun "
                                     "with DistributedDataParallel, loader.batch_size being the global batch")
    p.add_argument("--config", default=None, help="preset name or YAML (default with --resume: the run's config.yaml)")
    p.add_argument("--out", required=True,
                   help="run folder: config, log, checkpoints, model.pt, curve; new, empty or a run to --resume")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (AMP needs train_cfg.amp and CUDA); "
                                                   "under torchrun, cuda is each process's own GPU (NCCL), cpu gloo")
    p.add_argument("--epochs", type=int, default=None,
                   help="train this many epochs in all, the warm-up epochs included (sets opt.epochs to what follows "
                        "them); with --resume it extends or shortens the run's schedule")
    p.add_argument("--seed", type=int, default=None, help="override init_rand_seed")
    p.add_argument("--skip-invalid", action="store_true",
                   help="leave out videos with missing/corrupt features or annotations (listed) instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (the per-epoch and mAP lines stay)")
    p.set_defaults(func=run_train)

    p = sub.add_parser("eval", help="detection mAP of a trained model on a split of its dataset")
    p.add_argument("--ckpt", required=True, help="model.pt of a run (or its checkpoints/last.pt: EMA weights)")
    p.add_argument("--config", default=None,
                   help="take the dataset paths and test_cfg from this config (default: the checkpoint's)")
    p.add_argument("--split", default="test", help="subset to evaluate (default test)")
    p.add_argument("--tiou", default=None, help="tIoU thresholds, e.g. 0.3:0.7:0.1 (default: test_cfg.tiou_thresholds)")
    p.add_argument("--out", default=None, help="folder for eval.json and detections.json: new, empty or an earlier "
                                               "eval output")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a --out folder that holds other files too (eval.json and detections.json are "
                        "replaced, the others kept)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-invalid", action="store_true", help="leave out unreadable videos (listed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)

    p = sub.add_parser("synth", help="write a synthetic benchmark dataset (features, annotations, config)")
    p.add_argument("--out", required=True, help="folder for annotations.json, features/ and config.yaml: new, empty "
                                                "or an earlier synth output")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a --out folder that holds other files too (synth's files are replaced, the "
                        "others kept)")
    p.add_argument("--preset", choices=["easy", "keyframe"], default="easy",
                   help="easy: learnable in CPU minutes; keyframe: class evidence only on class-specific key frames")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_synth)

    p = sub.add_parser("plot-detections", help="draw GT vs predicted segments per class on a timeline (PNG)")
    p.add_argument("--gt", required=True, help="annotation JSON")
    p.add_argument("--pred", required=True, help="predictions (ActivityNet or ActionFormer JSON)")
    p.add_argument("--out", required=True, help="PNG file for one video, else a folder of <video>.png")
    p.add_argument("--video", action="append", default=None, help="video id to draw (repeatable; default: all)")
    p.add_argument("--split", default="test")
    p.add_argument("--min-score", type=float, default=0.1, help="hide predictions below this score")
    p.add_argument("--top-k", type=int, default=50, help="draw at most this many predictions per video")
    p.set_defaults(func=run_plot_detections)

    p = sub.add_parser("eval-detections",
                       help="detection mAP as the ActivityNet challenge computes it, per class and tIoU")
    p.add_argument("--gt", required=True, help="annotation JSON (ActionFormer/ActivityNet 'database' layout)")
    p.add_argument("--pred", required=True,
                   help="predictions: ActivityNet result JSON ('results') or ActionFormer-style JSON ('database')")
    p.add_argument("--split", default="test", help="subset of the annotations to evaluate (default test)")
    p.add_argument("--tiou", default="0.3:0.7:0.1",
                   help="tIoU thresholds, START:STOP:STEP or a comma list (default 0.3:0.7:0.1, THUMOS; "
                        "ActivityNet uses 0.5:0.95:0.05)")
    p.add_argument("--out", default=None, help="file: also write mAP_per_tiou, average_mAP, per-class AP and "
                                               "Recall@k as JSON")
    p.set_defaults(func=run_eval_detections)


def format_eval_table(result: Dict) -> str:
    """Per-class AP per tIoU, mAP per tIoU and the average mAP, in percent."""
    width = max([5] + [len(str(name)) for name in result["ap_per_class"]])
    header = f"{'class':<{width}} " + " ".join(f"{t:>6.2f}" for t in result["tiou_thresholds"])
    lines = [header, "-" * len(header)]
    for name, aps in result["ap_per_class"].items():
        lines.append(f"{str(name):<{width}} " + " ".join(f"{100 * ap:6.2f}" for ap in aps))
    lines.append("-" * len(header))
    lines.append(f"{'mAP':<{width}} " + " ".join(f"{100 * m:6.2f}" for m in result["mAP_per_tiou"]))
    tious = ", ".join(f"{t:g}" for t in result["tiou_thresholds"])
    lines.append(f"average mAP {100 * result['average_mAP']:.2f} over tIoU {tious}")
    return "\n".join(lines)


def run_train(args) -> int:
    from .datasets import DatasetError
    from .distributed import join_world, peer_lost
    from .evaluation import EvaluationError
    from .trainer import Trainer, TrainingError, run_config

    world = join_world(args.device)          # under torchrun: this process's rank, device and process group
    rank = f"rank {world.rank}: " if world.backend else ""
    try:
        config = run_config(args.out, args.config, resume=args.resume, epochs=args.epochs, seed=args.seed)
        trainer = Trainer(config, args.out, resume=args.resume, progress=not args.no_progress,
                          skip_invalid=args.skip_invalid, world=world)
        summary = trainer.fit()
    except (DatasetError, TrainingError, EvaluationError, OSError) as err:
        raise CommandError(f"{rank}{err}") from err
    except RuntimeError as err:
        if not (world.backend and peer_lost(err)):
            raise
        raise CommandError(f"{rank}stopped because another process of the run stopped (its message says why); "
                           f"{Path(args.out) / 'checkpoints' / 'last.pt'} keeps the last finished epoch: continue "
                           "with --resume") from err
    world.close()
    if world.is_main:
        print(f"wrote {summary['model']} (EMA weights after epoch {summary['epoch']})", file=sys.stderr)
    return 0


def run_eval(args) -> int:
    from ..config import ConfigError
    from ..outputs import activitynet_results, claim_output_folder, write_json
    from .datasets import DatasetError
    from .evaluation import EvaluationError
    from .trainer import TrainingError
    from .validate import EVAL_FILES, evaluate_model, prepare_evaluation

    try:
        if args.out:
            claim_output_folder(args.out, EVAL_FILES, args.overwrite, "eval")
        model, config, records, skipped = prepare_evaluation(args.ckpt, args.split, args.device, args.config,
                                                             args.tiou, args.skip_invalid)
        for message in skipped:
            print(f"skipped {message}", file=sys.stderr)
        result, detections = evaluate_model(model, config, records, device=args.device,
                                            progress=not args.no_progress)
    except (ConfigError, DatasetError, TrainingError, EvaluationError, OSError) as err:
        raise CommandError(str(err)) from err
    result["skipped"] = skipped
    print(format_eval_table(result))
    if args.out:
        out = Path(args.out)
        write_json(result, out / "eval.json")
        write_json(activitynet_results(detections), out / "detections.json")
        print(f"wrote {out / 'eval.json'} and {out / 'detections.json'}", file=sys.stderr)
    return 0


def run_synth(args) -> int:
    from .synthetic import SyntheticError, make_synthetic

    try:
        paths = make_synthetic(Path(args.out), preset=args.preset, seed=args.seed, overwrite=args.overwrite)
    except (SyntheticError, OSError) as err:
        raise CommandError(str(err)) from err
    print(f"wrote {paths['annotations']}, {paths['features']}/ and {paths['config']}; "
          f"train with: asl-edge train --config {paths['config']} --out RUN_DIR", file=sys.stderr)
    return 0


@contextlib.contextmanager
def warnings_as_lines(category: type):
    """Inside, warnings of ``category`` print as one 'warning: ...' line on stderr each time."""
    with warnings.catch_warnings():          # restores the filters and showwarning on exit
        warnings.simplefilter("always", category)
        shown = warnings.showwarning

        def show(message, cat, filename, lineno, file=None, line=None):
            if issubclass(cat, category):
                print(f"warning: {message}", file=sys.stderr)
            else:
                shown(message, cat, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def run_plot_detections(args) -> int:
    from .evaluation import EvaluationError, EvaluationWarning
    from .plots import PlotError, plot_detections

    try:
        with warnings_as_lines(EvaluationWarning):
            written = plot_detections(args.gt, args.pred, Path(args.out), videos=args.video, split=args.split,
                                      min_score=args.min_score, top_k=args.top_k)
    except (PlotError, EvaluationError, OSError) as err:
        raise CommandError(str(err)) from err
    print(f"wrote {len(written)} timeline{'s' if len(written) != 1 else ''}: "
          + ", ".join(str(p) for p in written[:5]) + (" ..." if len(written) > 5 else ""), file=sys.stderr)
    return 0


def run_eval_detections(args) -> int:
    from ..outputs import check_output_file, write_json
    from .evaluation import (EvaluationError, EvaluationWarning, describe_unmatched, evaluate_detections,
                                   load_ground_truth, load_predictions, parse_tious)

    try:
        if args.out:
            check_output_file(args.out, inputs=[args.gt, args.pred])
        with warnings_as_lines(EvaluationWarning):
            gt = load_ground_truth(args.gt, args.split)
            predictions = load_predictions(args.pred, gt)
        result = evaluate_detections(gt, predictions, parse_tious(args.tiou), require_match=True)
    except (EvaluationError, OSError) as err:
        raise CommandError(str(err)) from err
    if describe_unmatched(result["unmatched"]):
        print(f"warning: {describe_unmatched(result['unmatched'])}", file=sys.stderr)
    print(format_eval_table(result))
    if args.out:
        write_json(result, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
