"""Real clip features for an export: the calibration inputs of int8 exports (network windows cut from
them) and the inputs of the parity check when the user has them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from asl_edge.config import Config, ConfigError, load_config
from asl_edge.localizer import FeatureError, check_features, network_grid_features
from asl_edge.model import input_channels

from .spec import ExportError, ExportSpec


@dataclass
class RealFeatures:
    """Per-video (T, C) float32 features, checked against the model, and where they came from."""

    videos: List[Tensor]
    origin: str


def _folder_features(folder: Path, option: str) -> Tuple[List[np.ndarray], str]:
    from asl_edge.train.datasets import DatasetError, read_features

    files = sorted(folder.glob("*.npy"))
    if not files:
        raise ExportError(f"{option} {folder}: the folder holds no .npy feature files (one (T, C) array per video)")
    try:
        return [read_features(path) for path in files], f"{len(files)} .npy files in {folder}"
    except DatasetError as err:
        raise ExportError(f"{option}: {err}") from err


def _dataset_features(config: Config, origin: str) -> Tuple[List[np.ndarray], str]:
    from asl_edge.train.datasets import DatasetError, load_records, read_features

    try:
        records, _ = load_records(config, config.train_split, skip_invalid=True)
        return ([read_features(r.feature_path, r.video_id) for r in records],
                f"{len(records)} videos of the training split ({', '.join(config.train_split)}) of {origin}")
    except DatasetError as err:
        raise ExportError(f"features from {origin}: {err}") from err


def real_features(source: Optional[str], config: Config, option: str = "--calibration") -> RealFeatures:
    """The videos of a folder of (T, C) .npy files, of a dataset config's training split (a preset
    or YAML), or (``source`` None) of the checkpoint's own training split, each checked against the
    model's input. ``option`` names the command-line option ``source`` came from, in errors."""
    if source is None:
        try:
            arrays, origin = _dataset_features(config, "the checkpoint's dataset")
        except ExportError as err:
            raise ExportError(f"int8 needs calibration features and the checkpoint's own training data cannot be "
                              f"read here ({err}): pass --calibration DIR (a folder of (T, C) .npy feature files) "
                              "or --calibration DATASET_CONFIG (a preset or YAML whose training split to use)") \
                from err
    elif Path(source).is_dir():
        arrays, origin = _folder_features(Path(source), option)
    else:
        try:
            dataset_config = load_config(source)
        except ConfigError as err:
            raise ExportError(f"{option} {source!r} is neither a folder of .npy feature files nor a dataset "
                              f"config: {err}") from err
        arrays, origin = _dataset_features(dataset_config, f"config {source}")
    channels = input_channels(config)
    videos = []
    for i, array in enumerate(arrays):
        try:
            videos.append(check_features(array, channels))
        except FeatureError as err:
            raise ExportError(f"{option}: video {i} of {origin}: {err}") from err
    if not videos:
        raise ExportError(f"{option}: {origin} gave no features")
    return RealFeatures(videos, origin)


def calibration_inputs(spec: ExportSpec, config: Config,
                       features: Optional[RealFeatures] = None) -> Tuple[List[Tuple[np.ndarray, np.ndarray]], str]:
    """Up to ``spec.calibration_windows`` network inputs ``(features[B, C, window], mask[B, window])``
    cut from the calibration videos (round robin over the videos, so that every video contributes
    before any gives a second window), with a line saying where they came from. ``features``: the
    calibration videos when already read, else ``spec.calibration`` is read."""
    features = features or real_features(spec.calibration, config)
    channels = input_channels(config)
    fps = config.dataset.default_fps or 30.0
    per_video = []
    for video in features.videos:
        grid, _ = network_grid_features(video, config, fps)                   # (C, T)
        per_video.append([grid[:, s:s + spec.window] for s in range(0, grid.shape[1], spec.window)])
    chunks = [video[k] for k in range(max(map(len, per_video), default=0)) for video in per_video if k < len(video)]
    chunks = chunks[:spec.calibration_windows * spec.batch]
    samples = []
    for start in range(0, len(chunks), spec.batch):
        batch = torch.zeros(spec.batch, channels, spec.window)
        mask = torch.zeros(spec.batch, spec.window, dtype=torch.bool)
        for row, chunk in enumerate(chunks[start:start + spec.batch]):
            batch[row, :, :chunk.shape[1]] = chunk
            mask[row, :chunk.shape[1]] = True
        samples.append((batch.numpy(), mask.numpy()))
    return samples, f"{len(chunks)} windows of T = {spec.window} from {features.origin}"
