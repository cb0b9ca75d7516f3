"""The ``asl-edge`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import asl_edge


class CommandError(RuntimeError):
    """A failure the CLI reports as one line (no traceback) with exit code 2."""


def load_feature_file(path: Path):
    """Read a (T, C) ``.npy`` feature file without unpickling anything."""
    import numpy as np

    if not path.is_file():
        raise CommandError(f"feature file {path} does not exist")
    if path.suffix != ".npy":
        raise CommandError(f"{path}: only .npy feature files are supported")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise CommandError(f"{path}: not a readable .npy array ({err})") from err


def cmd_infer(args) -> int:
    from .localizer import Localizer
    from .outputs import activitynet_results, write_json
    from .model import CheckpointError
    from .postprocess import positive_number, resolve_fps

    paths = [Path(p) for p in args.features]
    durations: List[Optional[float]] = [None] * len(paths)
    if args.duration is not None:
        if len(args.duration) != len(paths):
            raise CommandError(f"--duration gives {len(args.duration)} value(s) for {len(paths)} feature files: give "
                               "one per file, in the same order (or leave it out: each video then spans its features)")
        try:
            durations = [positive_number(d, "--duration") for d in args.duration]
        except ValueError as err:
            raise CommandError(str(err)) from err
    try:
        localizer = Localizer.from_checkpoint(args.ckpt, device=args.device)
    except CheckpointError as err:
        raise CommandError(str(err)) from err
    missing = {i for i, path in enumerate(paths) if not path.is_file()}     # reported before any fps question
    for i in sorted(missing):
        print(f"[{i + 1}/{len(paths)}] {paths[i]}: error: feature file {paths[i]} does not exist", file=sys.stderr)
    default_fps, fps = localizer.config.dataset.default_fps, None
    if len(missing) < len(paths):
        if default_fps is None and args.fps is None:
            raise CommandError("--fps is required: the checkpoint's config has no dataset.default_fps")
        try:
            fps = resolve_fps(default_fps, args.fps)
        except ValueError as err:
            raise CommandError(str(err)) from err
        if args.fps is not None and args.fps != fps:
            print(f"note: --fps {args.fps:g} is not used: the model's config sets dataset.default_fps = {fps:g}, "
                  "the rate its features are extracted at (ActionFormer's rule)", file=sys.stderr)
    detections: Dict[str, List[Dict]] = {}
    failures = len(missing)
    for i, (path, duration) in enumerate(zip(paths, durations)):
        if i in missing:
            continue
        try:
            feats = load_feature_file(path)
            start = time.perf_counter()
            detections[path.stem] = localizer.detect(feats, fps=fps, duration=duration)
            elapsed = time.perf_counter() - start
        except (CommandError, ValueError) as err:  # FeatureError is a ValueError
            failures += 1
            print(f"[{i + 1}/{len(paths)}] {path}: error: {err}", file=sys.stderr)
            continue
        print(f"[{i + 1}/{len(paths)}] {path.stem}: {len(detections[path.stem])} detections "
              f"({elapsed * 1000:.0f} ms)", file=sys.stderr)
    results = activitynet_results(detections)
    if args.out:
        write_json(results, args.out)
        print(f"wrote {args.out} ({len(detections)} videos)", file=sys.stderr)
    else:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    if failures:
        print(f"{failures} of {len(paths)} feature files failed", file=sys.stderr)
        return 1
    return 0


def cmd_import_checkpoint(args) -> int:
    from .config import ConfigError, load_config
    from .model import CheckpointError, from_actionformer_checkpoint, save_checkpoint

    try:
        ckpt = from_actionformer_checkpoint(args.input, load_config(args.config), use_ema=not args.no_ema)
    except (ConfigError, CheckpointError) as err:
        raise CommandError(str(err)) from err
    save_checkpoint(ckpt.model, ckpt.config, args.output, meta=ckpt.meta)
    print(f"imported {args.input} [{ckpt.meta['weights']}] -> {args.output} "
          f"({sum(p.numel() for p in ckpt.model.parameters()):,} parameters)", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    try:
        from asl_edge.export.exporter import export_checkpoint
        from asl_edge.export.parity import format_parity
        from asl_edge.export.spec import ExportError, ExportSpec
    except ImportError as err:
        raise CommandError(f"the export stage is not installed ({err}); pip install 'asl-edge[export]'") from err
    if args.extractor:
        return _export_extractor(args)
    if not args.ckpt:
        raise CommandError("--ckpt is required (or --extractor NAME to export a clip extractor)")
    spec = ExportSpec(format=args.format, precision=args.precision, window=args.window or 0, batch=args.batch,
                      postprocess=args.postprocess, dynamic_length=args.dynamic, dynamic_batch=args.dynamic_batch,
                      max_length=args.max_length or 0, device=args.device, calibration=args.calibration)
    if not args.window:
        from .model import load_checkpoint

        try:
            spec.window = load_checkpoint(args.ckpt).config.dataset.max_seq_len
        except Exception as err:  # noqa: BLE001 - reported the same way as in export_checkpoint
            raise CommandError(str(err)) from err
    try:
        summary = export_checkpoint(args.ckpt, spec, args.out,
                                    plugin_library=Path(args.plugin_library) if args.plugin_library else None,
                                    parity=not args.no_parity)
    except ExportError as err:
        raise CommandError(str(err)) from err
    print(f"wrote {summary['artifact']} ({summary['size_bytes'] / 1e6:.1f} MB) in {summary['export_seconds']:.1f} s",
          file=sys.stderr)
    if "calibration" in summary:
        print(f"int8 calibration: {summary['calibration']}", file=sys.stderr)
    if "parity" in summary:
        print(format_parity(summary["parity"]), file=sys.stderr)
        if not summary["parity"]["passed"]:
            print("parity over tolerance: the artifact is kept; see parity.json", file=sys.stderr)
            return 1
    return 0


def _export_extractor(args) -> int:
    from asl_edge.export.extractor_export import export_extractor
    from asl_edge.export.spec import ExportError

    try:
        summary = export_extractor(args.extractor, args.format, args.out, precision=args.precision,
                                   device=args.device, batch=args.batch)
    except ExportError as err:
        raise CommandError(str(err)) from err
    parity = summary["parity"]
    print(f"wrote {summary['artifact']} ({summary['size_bytes'] / 1e6:.1f} MB) in {summary['export_seconds']:.1f} s\n"
          f"parity ({args.precision}): {'PASS' if parity['passed'] else 'FAIL'}: features max abs diff "
          f"{parity['max_abs_diff']:.3g} (relative {parity['max_rel_diff']:.3g}, tolerance {parity['tolerance']:.0e}), "
          f"min cosine {parity['min_cosine']:.6f}", file=sys.stderr)
    if "trtexec" in summary:
        print(f"TensorRT engine (on the target, e.g. a Jetson): {summary['trtexec']}", file=sys.stderr)
    return 0 if parity["passed"] else 1


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


def cmd_train(args) -> int:
    from .config import ConfigError, load_config, merge_dicts
    from .train.datasets import DatasetError
    from .train.evaluation import EvaluationError
    from .train.trainer import Trainer, TrainingError

    config_path = args.config
    if config_path is None:
        if not args.resume:
            raise CommandError("--config is required (it may be left out with --resume)")
        config_path = str(Path(args.out) / "config.yaml")
    overrides: Dict = {}
    if args.epochs is not None:
        overrides = merge_dicts(overrides, {"opt": {"epochs": args.epochs}})
    if args.seed is not None:
        overrides["init_rand_seed"] = args.seed
    try:
        config = load_config(config_path, overrides=overrides)
        trainer = Trainer(config, args.out, device=args.device, resume=args.resume,
                          progress=not args.no_progress, skip_invalid=args.skip_invalid)
        summary = trainer.fit()
    except (ConfigError, DatasetError, TrainingError, EvaluationError, OSError) as err:
        raise CommandError(str(err)) from err
    print(f"wrote {summary['model']} (EMA weights after epoch {summary['epoch']})", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from .config import ConfigError, load_config
    from .outputs import activitynet_results, write_json
    from .train.datasets import DatasetError, load_records
    from .train.evaluation import EvaluationError, parse_tious
    from .train.trainer import TrainingError, load_trained_model
    from .train.validate import evaluate_model

    try:
        model, config = load_trained_model(args.ckpt, device=args.device)
        if args.config is not None:
            # the data and post-processing come from --config, the network from the checkpoint
            given = load_config(args.config)
            config.dataset.json_file, config.dataset.feat_folder = given.dataset.json_file, given.dataset.feat_folder
            config.dataset.file_prefix, config.dataset.file_ext = given.dataset.file_prefix, given.dataset.file_ext
            config.test_cfg = given.test_cfg
        if args.tiou is not None:
            config.test_cfg.tiou_thresholds = parse_tious(args.tiou)
        records, skipped = load_records(config, [args.split], skip_invalid=args.skip_invalid)
        for message in skipped:
            print(f"skipped {message}", file=sys.stderr)
        result, detections = evaluate_model(model, config, records, device=args.device,
                                            progress=not args.no_progress)
    except (ConfigError, DatasetError, TrainingError, EvaluationError) as err:
        raise CommandError(str(err)) from err
    result["skipped"] = skipped
    print(format_eval_table(result))
    if args.out:
        out = Path(args.out)
        write_json(result, out / "eval.json")
        write_json(activitynet_results(detections), out / "detections.json")
        print(f"wrote {out / 'eval.json'} and {out / 'detections.json'}", file=sys.stderr)
    return 0


def cmd_synth(args) -> int:
    from .train.synthetic import SyntheticError, make_synthetic

    try:
        paths = make_synthetic(Path(args.out), preset=args.preset, seed=args.seed)
    except SyntheticError as err:
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


def cmd_plot_detections(args) -> int:
    from .train.evaluation import EvaluationError, EvaluationWarning
    from .train.plots import PlotError, plot_detections

    try:
        with warnings_as_lines(EvaluationWarning):
            written = plot_detections(args.gt, args.pred, Path(args.out), videos=args.video, split=args.split,
                                      min_score=args.min_score, top_k=args.top_k)
    except (PlotError, EvaluationError, OSError) as err:
        raise CommandError(str(err)) from err
    print(f"wrote {len(written)} timeline{'s' if len(written) != 1 else ''}: "
          + ", ".join(str(p) for p in written[:5]) + (" ..." if len(written) > 5 else ""), file=sys.stderr)
    return 0


def cmd_eval_detections(args) -> int:
    from .outputs import write_json
    from .train.evaluation import (EvaluationError, EvaluationWarning, describe_unmatched, evaluate_detections,
                                   load_ground_truth, load_predictions, parse_tious)

    try:
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


def cmd_build_ext(args) -> int:
    from .ops.build import BuildError, BuildOptions, build_extension, doctor_report, format_doctor

    opts = BuildOptions(cuda=args.cuda, cuda_archs=args.cuda_arch,
                        tensorrt_include=Path(args.tensorrt) if args.tensorrt else None,
                        tensorrt_lib=Path(args.tensorrt_lib) if args.tensorrt_lib else None,
                        tensorrt_compile_only=args.tensorrt_compile_only,
                        source=Path(args.source) if args.source else None,
                        build_dir=Path(args.build_dir) if args.build_dir else None, jobs=args.jobs)
    try:
        build_extension(opts)
    except BuildError as err:
        raise CommandError(str(err)) from err
    print(format_doctor(doctor_report()), file=sys.stderr)
    return 0


def cmd_doctor(args) -> int:
    from .ops.build import doctor_report, format_doctor

    report = doctor_report()
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_doctor(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .ops.build import DEFAULT_CUDA_ARCHS

    parser = argparse.ArgumentParser(prog="asl-edge", description=asl_edge.__doc__)
    parser.add_argument("--version", action="version", version=f"asl-edge {asl_edge.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("infer", help="localize actions in pre-extracted clip features (.npy, T x C)")
    p.add_argument("--ckpt", required=True, help="asl-edge checkpoint (.pt)")
    p.add_argument("--features", required=True, nargs="+", help="one .npy file per video; the file stem is the video id")
    p.add_argument("--fps", type=float, default=None,
                   help="the videos' frame rate; used only when the config has no dataset.default_fps, which "
                        "otherwise applies (ActionFormer's rule)")
    p.add_argument("--duration", type=float, nargs="+", default=None,
                   help="video length in seconds, one per feature file in the same order "
                        "(default: the span of each file's features)")
    p.add_argument("--out", default=None, help="ActivityNet result JSON (default: stdout)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("import-checkpoint", help="convert another implementation's checkpoint to asl-edge's format")
    p.add_argument("--from", dest="source", choices=["actionformer"], required=True)
    p.add_argument("--config", required=True, help="the config the checkpoint was trained with (preset or YAML)")
    p.add_argument("--no-ema", action="store_true", help="import 'state_dict' instead of the EMA weights")
    p.add_argument("input", help="ActionFormer .pth.tar")
    p.add_argument("output", help="asl-edge checkpoint to write (.pt)")
    p.set_defaults(func=cmd_import_checkpoint)

    p = sub.add_parser("export", help="export a checkpoint to TorchScript, torch.export, AOTInductor, ONNX, TensorRT "
                       "or OpenVINO")
    p.add_argument("--ckpt", default=None, help="asl-edge checkpoint (.pt)")
    p.add_argument("--extractor", default=None, metavar="NAME",
                   help="export this clip extractor (i3d-rgb) instead of a checkpoint: torchscript or onnx")
    p.add_argument("--format", required=True,
                   choices=["torchscript", "exported", "aoti", "onnx", "onnx-trt", "engine", "openvino"])
    p.add_argument("--out", required=True, help="folder for the artifact, metadata.json and parity.json")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16", "int8"], default="fp32",
                   help="bf16 and int8: CPU low precision, --format openvino")
    p.add_argument("--calibration", default=None, metavar="DIR_OF_NPY|DATASET_CONFIG",
                   help="int8: features to calibrate on, a folder of (T, C) .npy files or a dataset config whose "
                        "training split to use (default: the checkpoint's own training split)")
    p.add_argument("--window", type=int, default=None,
                   help="input length T (default: the config's max_seq_len); fixed unless --dynamic")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true",
                   help="let T vary in multiples of the padding unit up to --max-length")
    p.add_argument("--max-length", type=int, default=None, help="largest T of a --dynamic artifact (default 4x --window)")
    p.add_argument("--dynamic-batch", action="store_true", help="let the batch size vary")
    p.add_argument("--postprocess", action="store_true",
                   help="decode + NMS in the graph: outputs fixed-size padded detections plus a count")
    p.add_argument("--device", default="cpu", help="device to export for (aoti and fp16 depend on it)")
    p.add_argument("--plugin-library", default=None,
                   help="libasl_edge_trt_plugins.so for --format engine (default: the one build-ext installed)")
    p.add_argument("--no-parity", action="store_true", help="skip the parity check against eager PyTorch")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train a model on clip features (ActionFormer's data layout)")
    p.add_argument("--config", default=None, help="preset name or YAML (default with --resume: the run's config.yaml)")
    p.add_argument("--out", required=True, help="run folder: config, log, checkpoints, model.pt, curve")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (AMP needs train_cfg.amp and CUDA)")
    p.add_argument("--epochs", type=int, default=None, help="override opt.epochs (after the warm-up epochs)")
    p.add_argument("--seed", type=int, default=None, help="override init_rand_seed")
    p.add_argument("--skip-invalid", action="store_true",
                   help="leave out videos with missing/corrupt features or annotations (listed) instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="detection mAP of a trained model on a split of its dataset")
    p.add_argument("--ckpt", required=True, help="model.pt of a run (or its checkpoints/last.pt: EMA weights)")
    p.add_argument("--config", default=None,
                   help="take the dataset paths and test_cfg from this config (default: the checkpoint's)")
    p.add_argument("--split", default="test", help="subset to evaluate (default test)")
    p.add_argument("--tiou", default=None, help="tIoU thresholds, e.g. 0.3:0.7:0.1 (default: test_cfg.tiou_thresholds)")
    p.add_argument("--out", default=None, help="folder for eval.json and detections.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-invalid", action="store_true", help="leave out unreadable videos (listed)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("synth", help="write a synthetic benchmark dataset (features, annotations, config)")
    p.add_argument("--out", required=True, help="folder for annotations.json, features/ and config.yaml")
    p.add_argument("--preset", choices=["easy", "keyframe"], default="easy",
                   help="easy: learnable in CPU minutes; keyframe: class evidence only on class-specific key frames")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("plot-detections", help="draw GT vs predicted segments per class on a timeline (PNG)")
    p.add_argument("--gt", required=True, help="annotation JSON")
    p.add_argument("--pred", required=True, help="predictions (ActivityNet or ActionFormer JSON)")
    p.add_argument("--out", required=True, help="PNG file for one video, else a folder of <video>.png")
    p.add_argument("--video", action="append", default=None, help="video id to draw (repeatable; default: all)")
    p.add_argument("--split", default="test")
    p.add_argument("--min-score", type=float, default=0.1, help="hide predictions below this score")
    p.add_argument("--top-k", type=int, default=50, help="draw at most this many predictions per video")
    p.set_defaults(func=cmd_plot_detections)

    p = sub.add_parser("eval-detections",
                       help="detection mAP as the ActivityNet challenge computes it, per class and tIoU")
    p.add_argument("--gt", required=True, help="annotation JSON (ActionFormer/ActivityNet 'database' layout)")
    p.add_argument("--pred", required=True,
                   help="predictions: ActivityNet result JSON ('results') or ActionFormer-style JSON ('database')")
    p.add_argument("--split", default="test", help="subset of the annotations to evaluate (default test)")
    p.add_argument("--tiou", default="0.3:0.7:0.1",
                   help="tIoU thresholds, START:STOP:STEP or a comma list (default 0.3:0.7:0.1, THUMOS; "
                        "ActivityNet uses 0.5:0.95:0.05)")
    p.add_argument("--out", default=None, help="also write mAP_per_tiou, average_mAP, per-class AP and "
                                               "Recall@k as JSON")
    p.set_defaults(func=cmd_eval_detections)

    p = sub.add_parser("build-ext", help="build the native ops (and TensorRT plugins) against the installed torch")
    p.add_argument("--cuda", action="store_true", help="also build the CUDA kernels (needs nvcc)")
    p.add_argument("--cuda-arch", default=DEFAULT_CUDA_ARCHS,
                   help=f"CUDA architectures, CMake syntax (default {DEFAULT_CUDA_ARCHS}: Ampere, Jetson Orin, "
                        "Ada, Hopper; e.g. 87 alone on a Jetson)")
    p.add_argument("--tensorrt", metavar="DIR", default=None,
                   help="TensorRT include dir (with NvInfer.h): also build the plugin library")
    p.add_argument("--tensorrt-lib", metavar="DIR", default=None, help="TensorRT library dir (default: found by CMake)")
    p.add_argument("--tensorrt-compile-only", action="store_true",
                   help="compile the plugins against the headers alone, without linking TensorRT")
    p.add_argument("--source", default=None, help="asl-edge source checkout (default: the one asl_edge runs from)")
    p.add_argument("--build-dir", default=None, help="CMake build folder (default: SOURCE/build/native[-cuda])")
    p.add_argument("--jobs", type=int, default=0, help="parallel compile jobs (default: all cores)")
    p.set_defaults(func=cmd_build_ext)

    from . import demo
    from .bench import command as bench_command
    from .features import commands as feature_commands
    from .features import extract
    from .stream import command as stream_command

    demo.add_parser(sub)
    bench_command.add_parser(sub)
    extract.add_parser(sub)
    feature_commands.add_parser(sub)
    stream_command.add_parser(sub)

    p = sub.add_parser("doctor", help="report which native pieces (ops, CUDA, TensorRT plugins) are usable and why not")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from .demo import DemoError
    from .features import ExtractorError
    from .runtime import ArtifactError
    from .stream import StreamError
    from .video import VideoError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CommandError, DemoError, ExtractorError, VideoError, StreamError, ArtifactError) as err:
        print(f"asl-edge {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asl-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
