"""``asl-edge demo``: the whole offline pipeline on a generated sample.

Until a trained model ships with the package, the sample is a randomly initialised THUMOS-size
network and synthetic I3D-shaped features: the run shows every stage working (checkpoint
round trip, padding, network, decoding, soft-NMS, seconds) and how long each takes, not
meaningful detections.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

SAMPLE_FPS = 30.0
SAMPLE_FEATURES = 1200


def run_demo(out_dir: Path, seed: int = 0) -> int:
    from .config import load_config
    from .localizer import Localizer
    from .model import build_model, save_checkpoint
    from .outputs import activitynet_results, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    config = load_config()
    config.dataset.default_fps = SAMPLE_FPS          # the sample's time base travels with the model
    torch.manual_seed(seed)
    ckpt_path = out_dir / "demo_model.pt"
    save_checkpoint(build_model(config), config, ckpt_path, meta={"source": "asl-edge demo (untrained)"})
    feats = np.random.default_rng(seed).standard_normal((SAMPLE_FEATURES, config.dataset.input_dim), dtype=np.float32)
    feats_path = out_dir / "demo_video.npy"
    np.save(feats_path, feats)
    print(f"sample: {ckpt_path} (untrained THUMOS-size ASL network), {feats_path} "
          f"({SAMPLE_FEATURES} x {config.dataset.input_dim} features, {SAMPLE_FPS:g} fps)", file=sys.stderr)

    start = time.perf_counter()
    localizer = Localizer.from_checkpoint(ckpt_path)
    loaded = time.perf_counter()
    detections = localizer.detect(feats)
    done = time.perf_counter()
    out_path = out_dir / "demo_detections.json"
    write_json(activitynet_results({"demo_video": detections}), out_path)

    print(f"load {1000 * (loaded - start):.0f} ms, detect {1000 * (done - loaded):.0f} ms, "
          f"{len(detections)} detections -> {out_path}", file=sys.stderr)
    for det in detections[:5]:
        print(f"  {det['label']:<18} {det['start']:8.2f} s - {det['end']:8.2f} s  score {det['score']:.4f}")
    return 0
