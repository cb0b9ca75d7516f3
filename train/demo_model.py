"""The demo's bundled model: scenes -> ``motion`` features -> ASL training -> evaluation.

    python -m asl_edge.train.demo_model --out out/demo_model [--install]

Renders demo scenes (:mod:`asl_edge.video.scene`) of training seeds (1000, 1001, ...) and
validation seeds (2000, 2001, ...) as fast as GStreamer draws them, extracts their ``motion``
features with the same code as ``asl-edge extract-features`` (the scene script is the ground
truth), trains a small ASL network (ASE and ASCL on) on them, evaluates it on the validation
scenes, and with ``--install`` copies the model into the package as ``asl_edge/assets/demo_model.pt``
(what ``asl-edge demo`` loads). Seeds below 1000 are never used here: the demo's scenes
(``--seed 0`` by default) and the tests' are held out.

The result is a model of a toy world that shows the pipeline working, not a model of human actions.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..config import config_from_dict, config_to_dict, load_config, merge_dicts, save_config
from ..demo import BUNDLED_MODEL
from ..features import load_extractor
from ..features.extract import extract_video, scene_annotations, source_id, write_config_fragment
from ..outputs import atomic_output, write_json
from ..video.scene import SCENE_CLASSES
from .synthetic import CPU_TRAIN_CONFIG

TRAIN_SEEDS = 1000
VAL_SEEDS = 2000
# model and schedule of the demo model (the synthetic presets' small CPU network; windows of 128
# features, 34 s, cut at random from the 60-s scenes, so the model sees actions anywhere in a window)
DEMO_CONFIG: Dict = {
    "dataset": {"feat_stride": 4, "num_frames": 8, "default_fps": 15, "max_seq_len": 128, "input_dim": 112,
                "num_classes": len(SCENE_CLASSES), "class_names": list(SCENE_CLASSES), "extractor": "motion",
                "trunc_thresh": 0.5, "crop_ratio": [0.9, 1.0], "file_prefix": None, "file_ext": ".npy",
                # half the crops end inside an action: the model learns to speak early in live use
                "right_cut_prob": 0.5, "right_cut_min": 0.25},
    "opt": {"learning_rate": 0.001, "epochs": 40, "warmup_epochs": 3, "weight_decay": 0.05},
    "loader": {"batch_size": 8, "num_workers": 0},
    "train_cfg": {"eval_interval": 10},
    "train_split": ["training"],
    "val_split": ["validation"],
}


def scene_uri(seed: int, seconds: float) -> str:
    """The URI of a demo scene rendered as fast as it is read."""
    return f"test://demo?seed={seed}&seconds={seconds:g}&live=0"


def make_features(out: Path, train_scenes: int, val_scenes: int, seconds: float) -> Path:
    """Scene features in ``out/features`` and their ground truth in ``out/annotations.json``
    (scenes done before are kept)."""
    extractor = load_extractor("motion")
    folder = out / "features"
    folder.mkdir(parents=True, exist_ok=True)
    write_config_fragment(folder, extractor, extractor.clip.fps)
    database: Dict[str, Dict] = {}
    seeds = [(TRAIN_SEEDS + i, "training") for i in range(train_scenes)]
    seeds += [(VAL_SEEDS + i, "validation") for i in range(val_scenes)]
    start = time.perf_counter()
    for n, (seed, subset) in enumerate(seeds, 1):
        uri = scene_uri(seed, seconds)
        target = folder / f"{source_id(uri)}.npy"
        if not target.is_file():
            features, _ = extract_video(uri, extractor, extractor.clip.fps)
            with atomic_output(target) as tmp:
                np.save(tmp, features)
        database[target.stem] = {"subset": subset, "fps": extractor.clip.fps, "duration": seconds,
                                 "annotations": scene_annotations(uri)}
        print(f"\rfeatures: {n}/{len(seeds)} scenes ({time.perf_counter() - start:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    path = out / "annotations.json"
    write_json({"version": "asl-edge demo scenes", "database": database}, path)
    return path


def demo_config(out: Path, annotations: Path, epochs: Optional[int] = None):
    """The training config: the THUMOS preset with the small CPU model and the demo's data."""
    overrides = merge_dicts(CPU_TRAIN_CONFIG, DEMO_CONFIG)
    overrides = merge_dicts(overrides, {"output_folder": str(out / "run"),
                                        "dataset": {"json_file": str(annotations),
                                                    "feat_folder": str(out / "features")}})
    if epochs is not None:
        overrides = merge_dicts(overrides, {"opt": {"epochs": epochs}})
    base = config_to_dict(load_config("thumos_i3d"))
    return config_from_dict(merge_dicts(base, overrides), origin="asl-edge demo model")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asl_edge.train.demo_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/demo_model", help="folder for features, the run and model.pt")
    parser.add_argument("--train-scenes", type=int, default=96)
    parser.add_argument("--val-scenes", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each scene")
    parser.add_argument("--epochs", type=int, default=None, help="override the schedule's epochs")
    parser.add_argument("--install", action="store_true", help=f"copy the model to {BUNDLED_MODEL}")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from .trainer import Trainer

    out = Path(args.out)
    annotations = make_features(out, args.train_scenes, args.val_scenes, args.seconds)
    config = demo_config(out, annotations, args.epochs)
    save_config(config, out / "config.yaml")
    run = out / "run"
    if run.exists():
        shutil.rmtree(run)
    summary = Trainer(config, run, progress=not args.no_progress).fit()
    result = summary["eval"]
    print(f"validation scenes: average mAP {result['average_mAP']:.4f} "
          f"({', '.join(f'{m:.3f}' for m in result['mAP_per_tiou'])} at tIoU "
          f"{', '.join(f'{t:g}' for t in result['tiou_thresholds'])})", file=sys.stderr)
    if args.install:
        BUNDLED_MODEL.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(summary["model"], BUNDLED_MODEL)
        print(f"installed {BUNDLED_MODEL} ({BUNDLED_MODEL.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
