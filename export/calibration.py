"""Calibration inputs for int8 exports: network windows cut from real clip features."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from asl_edge.config import Config, ConfigError, load_config
from asl_edge.localizer import FeatureError, check_features, network_grid_features
from asl_edge.model import input_channels

from .spec import ExportError, ExportSpec


def _folder_features(folder: Path) -> Tuple[List[np.ndarray], str]:
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise ExportError(f"--calibration {folder}: the folder holds no .npy feature files (one (T, C) array "
                          "per video)")
    arrays = []
    for path in files:
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise ExportError(f"--calibration: {path} is not a readable .npy array: {err}") from err
    return arrays, f"{len(files)} .npy files in {folder}"


def _dataset_features(config: Config, origin: str) -> Tuple[List[np.ndarray], str]:
    from asl_edge.train.datasets import DatasetError, load_records, read_features

    try:
        records, _ = load_records(config, config.train_split, skip_invalid=True)
        return ([read_features(r.feature_path, r.video_id) for r in records],
                f"{len(records)} videos of the training split ({', '.join(config.train_split)}) of {origin}")
    except DatasetError as err:
        raise ExportError(f"calibration features from {origin}: {err}") from err


def _source_features(source: Optional[str], config: Config) -> Tuple[List[np.ndarray], str]:
    """Per-video (T, C) arrays from a folder of .npy files, a dataset config, or (None) the
    checkpoint's own training split."""
    if source is None:
        try:
            return _dataset_features(config, "the checkpoint's dataset")
        except ExportError as err:
            raise ExportError(f"int8 needs calibration features and the checkpoint's own training data cannot be "
                              f"read here ({err}): pass --calibration DIR (a folder of (T, C) .npy feature files) "
                              "or --calibration DATASET_CONFIG (a preset or YAML whose training split to use)") \
                from err
    path = Path(source)
    if path.is_dir():
        return _folder_features(path)
    try:
        dataset_config = load_config(source)
    except ConfigError as err:
        raise ExportError(f"--calibration {source!r} is neither a folder of .npy feature files nor a dataset "
                          f"config: {err}") from err
    return _dataset_features(dataset_config, f"config {source}")


def calibration_inputs(spec: ExportSpec, config: Config) -> Tuple[List[Tuple[np.ndarray, np.ndarray]], str]:
    """Up to ``spec.calibration_windows`` network inputs ``(features[B, C, window], mask[B, window])``
    cut from the calibration videos (round robin over the videos, so that every video contributes
    before any gives a second window), with a line saying where they came from."""
    arrays, origin = _source_features(spec.calibration, config)
    channels = input_channels(config)
    fps = config.dataset.default_fps or 30.0
    per_video = []
    for i, array in enumerate(arrays):
        try:
            feats, _ = network_grid_features(check_features(array, channels), config, fps)   # (C, T)
        except FeatureError as err:
            raise ExportError(f"calibration video {i} of {origin}: {err}") from err
        per_video.append([feats[:, s:s + spec.window] for s in range(0, feats.shape[1], spec.window)])
    chunks = [video[k] for k in range(max(map(len, per_video), default=0)) for video in per_video if k < len(video)]
    chunks = chunks[:spec.calibration_windows * spec.batch]
    if not chunks:
        raise ExportError(f"calibration: {origin} gave no features")
    samples = []
    for start in range(0, len(chunks), spec.batch):
        features = torch.zeros(spec.batch, channels, spec.window)
        mask = torch.zeros(spec.batch, spec.window, dtype=torch.bool)
        for row, chunk in enumerate(chunks[start:start + spec.batch]):
            features[row, :, :chunk.shape[1]] = chunk
            mask[row, :chunk.shape[1]] = True
        samples.append((features.numpy(), mask.numpy()))
    return samples, f"{len(chunks)} windows of T = {spec.window} from {origin}"
