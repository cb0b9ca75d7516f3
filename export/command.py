"""``asl-edge export``: a checkpoint (or a clip extractor) as a deployable artifact, with its
metadata and parity report."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import CommandError


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to TorchScript, torch.export, AOTInductor, ONNX, TensorRT "
                       "or OpenVINO")
    p.add_argument("--ckpt", default=None, help="asl-edge checkpoint (.pt)")
    p.add_argument("--extractor", default=None, metavar="NAME",
                   help="export this clip extractor (i3d-rgb) instead of a checkpoint: torchscript (fp32, fp16), onnx "
                        "(fp32, fp16, int8) or openvino (fp32, bf16, int8: the fast CPU path)")
    p.add_argument("--format", required=True,
                   choices=["torchscript", "exported", "aoti", "onnx", "onnx-trt", "engine", "openvino"])
    p.add_argument("--out", required=True,
                   help="folder for the artifact, metadata.json and parity.json: new, empty or an earlier export "
                        "(which the new one replaces once it is written)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a --out folder that holds other files too: export's files there (model.*, "
                        "metadata.json, parity.json; with --extractor extractor.json and NAME.*) are replaced or "
                        "removed, the others kept")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16", "int8"], default="fp32",
                   help="bf16 and int8: CPU low precision, --format openvino")
    p.add_argument("--calibration", default=None, metavar="DIR_OF_NPY|DATASET_CONFIG|VIDEOS",
                   help="int8: features to calibrate on, a folder of (T, C) .npy files or a dataset config whose "
                        "training split to use (default: the checkpoint's own training split); with --extractor: "
                        "videos to calibrate on, a folder of them or files, comma-separated (every third is held "
                        "out for the parity check unless --parity-videos is given)")
    p.add_argument("--calibration-clips", type=int, default=None, metavar="N",
                   help="--extractor int8: clips to calibrate on, an even share from each video, evenly within it "
                        "(default 32)")
    p.add_argument("--parity-videos", nargs="+", default=None, metavar="VIDEO|DIR",
                   help="--extractor: videos held out of calibration that the parity check runs on (default: "
                        "every third --calibration video, else a generated scene)")
    p.add_argument("--window", type=int, default=None,
                   help="input length T, positive (default: the config's max_seq_len); fixed unless --dynamic")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true",
                   help="let T vary in multiples of the padding unit up to --max-length")
    p.add_argument("--max-length", type=int, default=None,
                   help="largest T of a --dynamic artifact, a multiple of the padding unit, at least --window "
                        "(default 4x --window)")
    p.add_argument("--dynamic-batch", action="store_true", help="let the batch size vary")
    p.add_argument("--postprocess", action="store_true",
                   help="decode + NMS in the graph: outputs fixed-size padded detections plus a count")
    p.add_argument("--device", default="cpu", help="device to export for (aoti and fp16 depend on it)")
    p.add_argument("--plugin-library", default=None,
                   help="libasl_edge_trt_plugins.so for --format engine (default: the one build-ext installed)")
    p.add_argument("--no-parity", action="store_true",
                   help="skip the parity check against eager PyTorch (no parity.json is left in --out)")
    p.add_argument("--parity-features", default=None, metavar="DIR_OF_NPY|DATASET_CONFIG",
                   help="run the parity check on these real features, a folder of (T, C) .npy files or a dataset "
                        "config's training split (default: int8 exports use their calibration features, others "
                        "seeded random ones)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        from .exporter import export_checkpoint
        from .parity import format_parity
        from .spec import ExportError, ExportSpec
    except ImportError as err:
        raise CommandError(f"the export stage is not installed ({err}); pip install 'asl-edge[export]'") from err
    if args.extractor:
        return _export_extractor(args)
    if not args.ckpt:
        raise CommandError("--ckpt is required (or --extractor NAME to export a clip extractor)")
    spec = ExportSpec(format=args.format, precision=args.precision, window=args.window, batch=args.batch,
                      postprocess=args.postprocess, dynamic_length=args.dynamic, dynamic_batch=args.dynamic_batch,
                      max_length=args.max_length, device=args.device, calibration=args.calibration)
    try:
        summary = export_checkpoint(args.ckpt, spec, args.out,
                                    plugin_library=Path(args.plugin_library) if args.plugin_library else None,
                                    parity=not args.no_parity, overwrite=args.overwrite,
                                    parity_features=args.parity_features)
    except ExportError as err:
        raise CommandError(str(err)) from err
    say_written(summary)
    if "calibration" in summary:
        print(f"int8 calibration: {summary['calibration']}", file=sys.stderr)
    if "parity" in summary:
        print(format_parity(summary["parity"]), file=sys.stderr)
        if not summary["parity"]["passed"]:
            print("parity over tolerance: the artifact is kept; see parity.json", file=sys.stderr)
            return 1
    else:
        print("parity not checked (--no-parity)", file=sys.stderr)
    return 0


def _export_extractor(args) -> int:
    from .extractor_export import CALIBRATION_CLIPS, export_extractor, format_extractor_parity, video_label
    from .spec import ExportError

    if args.parity_features:
        raise CommandError("--parity-features is for a checkpoint's export; an extractor's parity check runs on "
                           "clips of videos: give them with --parity-videos")
    calibration = [item for item in args.calibration.split(",") if item] if args.calibration else None
    try:
        summary = export_extractor(args.extractor, args.format, args.out, precision=args.precision,
                                   device=args.device, batch=args.batch, calibration=calibration,
                                   calibration_clips=args.calibration_clips or CALIBRATION_CLIPS,
                                   parity_videos=args.parity_videos, parity=not args.no_parity,
                                   overwrite=args.overwrite)
    except ExportError as err:
        raise CommandError(str(err)) from err
    say_written(summary)
    if "calibration" in summary:
        used = summary["calibration"]
        print(f"int8 calibration: {used['clips']} clips of {len(used['videos'])} video(s): "
              + ", ".join(video_label(v["video"]) for v in used["videos"]), file=sys.stderr)
    if "trtexec" in summary:
        print(f"TensorRT engine (on the target, e.g. a Jetson): {summary['trtexec']}", file=sys.stderr)
    if "parity" not in summary:
        return 0
    print(format_extractor_parity(summary["parity"]), file=sys.stderr)
    if not summary["parity"]["passed"]:
        print("parity below tolerance: the artifact is kept; see parity.json", file=sys.stderr)
        return 1
    return 0


def say_written(summary) -> None:
    """The artifact written, its size and how long the export took (stderr)."""
    print(f"wrote {summary['artifact']} ({summary['size_bytes'] / 1e6:.1f} MB) in {summary['export_seconds']:.1f} s",
          file=sys.stderr)
