"""Training data in ActionFormer's on-disk format: annotation JSON + one feature file per video.

The annotation file is ``{"database": {video_id: {"subset", "fps", "duration", "annotations":
[{"label", "label_id", "segment": [start_sec, end_sec]}]}}}``; the features of a video are a
(T, C) array at ``feat_folder/<file_prefix><video_id><file_ext>`` (.npy, .npz or .h5/.hdf5).

Items are built on exactly the grid the :class:`asl_edge.localizer.Localizer` uses at inference
(every ``downsample_rate``-th feature, optionally resized to ``max_seq_len``), and segments are
mapped to it with :func:`asl_edge.postprocess.timebase.seconds_to_grid`, so predictions of the
trained model map back to seconds exactly as inference maps them. A video's fps is the config's
``dataset.default_fps`` when it is set and the annotation's ``fps`` only otherwise (ActionFormer's
rule, :func:`asl_edge.postprocess.resolve_fps`, which inference applies too). Training items are randomly
cropped as ActionFormer does; all randomness of an item comes from the seed it is asked with.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from asl_edge.config import Config, problems_message
from asl_edge.model import config_problems, input_channels
from asl_edge.localizer import FeatureError, check_features, float32_features, network_grid_features
from asl_edge.postprocess.timebase import positive_number, resolve_fps, seconds_to_grid

from .evaluation import _subset_key

__all__ = [
    "DatasetError",
    "data_setting_problems",
    "read_features",
    "VideoRecord",
    "load_records",
    "VideoSample",
    "ActionDataset",
    "Batch",
    "collate",
    "TrainSampler",
]

# tries at finding a crop window that keeps at least one action (ActionFormer's number)
CROP_TRIES = 200


class DatasetError(ValueError):
    """A malformed annotation file, feature file or dataset setting (the message names the file,
    the video and the field)."""


class _Problem(Exception):
    """A problem of one video; the message names the file and the field, the caller the video."""


def _video_error(video_id: Optional[str], problem: _Problem) -> DatasetError:
    return DatasetError(f"video {video_id!r}: {problem}" if video_id is not None else str(problem))


# ----------------------------------------------------------------------------------- features


def read_features(path: Union[str, Path], video_id: Optional[str] = None) -> np.ndarray:
    """Read one video's (T, C) features as float32 from .npy, .npz or .h5/.hdf5.

    An .npz holds them under ``feats`` or as its only array; an HDF5 file as the dataset (or
    group holding the dataset) named ``video_id``, else ``feats``, else its only dataset.
    Pickled content is never loaded.
    """
    try:
        return _read_array(Path(path), video_id)
    except _Problem as problem:
        raise _video_error(video_id, problem) from None


def _read_array(path: Path, video_id: Optional[str]) -> np.ndarray:
    if not path.is_file():
        raise _Problem(f"feature file {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        array = _read_numpy(path)
    elif suffix in (".h5", ".hdf5"):
        array = _read_hdf5(path, video_id)
    else:
        raise _Problem(f"feature file {path}: unsupported extension {path.suffix!r} "
                       "(dataset.file_ext must be .npy, .npz, .h5 or .hdf5)")
    if array.dtype.kind not in "biuf":
        raise _Problem(f"feature file {path}: features must be numeric, got dtype {array.dtype}")
    if array.ndim != 2:
        raise _Problem(f"feature file {path}: features must be 2-D (T, C), got shape {array.shape}")
    if array.size == 0:
        raise _Problem(f"feature file {path}: features are empty, shape {array.shape}")
    if array.dtype == np.float64:
        try:
            float32_features(torch.from_numpy(np.ascontiguousarray(array)))
        except FeatureError as err:
            raise _Problem(f"feature file {path}: {err}") from None
    return np.ascontiguousarray(array, dtype=np.float32)


# the first bytes of every .npy file and of every .npz (zip) archive
NUMPY_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}


def _read_numpy(path: Path) -> np.ndarray:
    magic = NUMPY_MAGIC[path.suffix.lower()]
    try:
        with open(path, "rb") as fd:
            start = fd.read(len(magic))
    except OSError as exc:
        raise _Problem(f"feature file {path}: cannot read it ({exc.strerror})") from None
    if start != magic:
        kind = "a NumPy .npy array" if path.suffix.lower() == ".npy" else "a NumPy .npz archive"
        raise _Problem(f"feature file {path}: cannot read it: it is not {kind} (it does not start with "
                       "NumPy's signature; pickles and text are not read)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            keys = list(loaded.files)
            if "feats" in keys:
                return loaded["feats"]
            if len(keys) == 1:
                return loaded[keys[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if "allow_pickle" in str(exc):        # numpy's advice to unpickle must not be followed here
            raise _Problem(f"feature file {path}: cannot read it: it holds pickled Python objects, which "
                           "asl-edge never loads; save the features as a numeric (T, C) array") from None
        raise _Problem(f"feature file {path}: cannot read it as a NumPy array ({exc})") from None
    raise _Problem(f"feature file {path}: holds arrays {keys}; name the features 'feats'")


def _read_hdf5(path: Path, video_id: Optional[str]) -> np.ndarray:
    try:
        import h5py
    except ImportError:
        raise _Problem(f"feature file {path}: reading HDF5 features needs h5py (pip install h5py)") from None
    try:
        with h5py.File(path, "r") as h5:
            node = h5[video_id] if video_id is not None and video_id in h5 else h5
            if isinstance(node, h5py.Dataset):
                return node[()]
            if "feats" in node and isinstance(node["feats"], h5py.Dataset):
                return node["feats"][()]
            datasets = [key for key in node if isinstance(node[key], h5py.Dataset)]
            if len(datasets) == 1:
                return node[datasets[0]][()]
            where = f"group {node.name!r}" if node.name != "/" else "the file"
            raise _Problem(f"feature file {path}: {where} holds datasets {datasets}; name the "
                           "features 'feats' or after the video")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise _Problem(f"feature file {path}: cannot read it as HDF5 ({exc})") from None


def _checked_features(path: Path, video_id: Optional[str], channels: int) -> Tensor:
    """The file's (T, C) features, checked against the model input (:func:`check_features`)."""
    try:
        return check_features(_read_array(path, video_id), channels)
    except FeatureError as err:
        raise _Problem(f"feature file {path}: {err}") from None


# -------------------------------------------------------------------------------- annotations


@dataclass
class VideoRecord:
    """One annotated video of a split; segments in seconds."""

    video_id: str
    subset: str
    fps: float
    duration: float
    feature_path: Path
    segments: np.ndarray  # (N, 2) float64 seconds
    labels: np.ndarray  # (N,) int64


def load_records(config: Config, splits: Union[str, Sequence[str]], require_actions: bool = False,
                 skip_invalid: bool = False, check_files: bool = False) -> Tuple[List[VideoRecord], List[str]]:
    """Videos of ``splits`` in ``dataset.json_file``, in file order, and the skip messages.

    ``splits`` match each video's ``subset`` case-insensitively (test/testing, val/validation,
    train/training alike). ``require_actions`` leaves out videos without annotations.
    ``check_files`` (always on with ``skip_invalid``) reads every feature file once and checks
    its shape, dtype and values against the model. Without ``skip_invalid`` a problem is a
    DatasetError listing every video with one; with it those videos are left out and each adds
    ``"<video>: <reason>"`` to the skip messages.
    """
    d = config.dataset
    if d.json_file is None:
        raise DatasetError("dataset.json_file is not set")
    json_path = Path(d.json_file)
    if d.default_fps is not None:
        try:
            positive_number(d.default_fps, "dataset.default_fps")
        except ValueError as err:
            raise DatasetError(str(err)) from None
    folder = _feature_folder(d.feat_folder)
    splits = [splits] if isinstance(splits, str) else list(splits)
    wanted = {_subset_key(name) for name in splits}
    database = _read_database(json_path)
    channels = input_channels(config)
    records: List[VideoRecord] = []
    problems: List[str] = []
    skipped: List[str] = []
    in_splits = 0
    for video_id, entry in database.items():
        video_id = str(video_id)
        try:
            if not isinstance(entry, dict):
                raise _Problem(f"{json_path}: the entry must be an object")
            if "subset" not in entry:
                raise _Problem(f"{json_path}: missing field 'subset'")
            if _subset_key(entry["subset"]) not in wanted:
                continue
            in_splits += 1
            record = _parse_video(video_id, entry, json_path, folder, config)
            if check_files or skip_invalid:
                _checked_features(record.feature_path, video_id, channels)
        except _Problem as problem:
            problems.append(str(_video_error(video_id, problem)))
            skipped.append(f"{video_id}: {problem}")
            continue
        if require_actions and len(record.labels) == 0:
            skipped.append(f"{video_id}: no annotated action in {json_path}")
            continue
        records.append(record)
    if problems and not skip_invalid:
        raise DatasetError(problems_message(f"the {in_splits} videos of {splits}", problems))
    if in_splits == 0:
        raise DatasetError(f"annotation file {json_path}: no video has subset in {splits}")
    if not records:
        shown = "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        raise DatasetError(f"annotation file {json_path}: all {in_splits} videos of {splits} "
                           f"were skipped: {shown}")
    return records, skipped


def _feature_folder(feat_folder: Union[str, List[str], None]) -> Path:
    if isinstance(feat_folder, list):
        if len(feat_folder) != 1:
            raise DatasetError(f"dataset.feat_folder: one folder is supported (concatenate the streams "
                               f"into one file per video), got {feat_folder}")
        feat_folder = feat_folder[0]
    if feat_folder is None:
        raise DatasetError("dataset.feat_folder is not set")
    return Path(feat_folder)


def _read_database(path: Path) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as fobj:
            data = json.load(fobj)
    except FileNotFoundError:
        raise DatasetError(f"annotation file {path} not found (dataset.json_file)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"annotation file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise DatasetError(f"annotation file {path}: expected an object with a 'database' object")
    return data["database"]


def _parse_video(video_id: str, entry: dict, json_path: Path, folder: Path, config: Config) -> VideoRecord:
    d = config.dataset
    if d.default_fps is None and entry.get("fps") is None:
        raise _Problem(f"{json_path}: missing field 'fps' and the config has no dataset.default_fps")
    if entry.get("duration") is None:
        raise _Problem(f"{json_path}: missing field 'duration'")
    try:
        fps = resolve_fps(d.default_fps, entry.get("fps"))
        duration = positive_number(entry["duration"], "'duration'")
    except ValueError as err:
        raise _Problem(f"{json_path}: {err}") from None
    annotations = entry.get("annotations", [])
    if not isinstance(annotations, list):
        raise _Problem(f"{json_path}: 'annotations' must be a list")
    segments = np.zeros((len(annotations), 2), dtype=np.float64)             # (N, 2) seconds
    labels = np.zeros((len(annotations),), dtype=np.int64)                   # (N,)
    for i, ann in enumerate(annotations):
        where = f"{json_path}, annotation {i}"
        if not isinstance(ann, dict):
            raise _Problem(f"{where}: must be an object")
        segments[i] = _segment(ann.get("segment"), where)
        labels[i] = _label(ann, where, d.num_classes, d.class_names)
    path = folder / f"{d.file_prefix or ''}{video_id}{d.file_ext}"
    if not path.is_file():
        raise _Problem(f"feature file {path} not found (dataset.feat_folder, file_prefix, file_ext)")
    return VideoRecord(video_id=video_id, subset=str(entry["subset"]), fps=fps, duration=duration,
                       feature_path=path, segments=segments, labels=labels)


def _segment(value: Any, where: str) -> Tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _Problem(f"{where}: 'segment' must be [start, end] in seconds, got {value!r}")
    try:
        start, end = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise _Problem(f"{where}: 'segment' must hold two numbers, got {value!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise _Problem(f"{where}: 'segment' is not finite: {value!r}")
    if end <= start:
        raise _Problem(f"{where}: 'segment' must end after it starts: {value!r}")
    return start, end


def _label(ann: dict, where: str, num_classes: int, class_names: Optional[List[str]]) -> int:
    if "label_id" in ann:
        value = ann["label_id"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise _Problem(f"{where}: 'label_id' must be an integer, got {value!r}")
        if not 0 <= value < num_classes:
            raise _Problem(f"{where}: 'label_id' {value!r} is outside [0, {num_classes}) "
                           "(dataset.num_classes)")
        return int(value)
    if "label" not in ann:
        raise _Problem(f"{where}: missing fields 'label_id' and 'label'")
    if class_names is None:
        raise _Problem(f"{where}: missing field 'label_id' and the config has no dataset.class_names "
                       f"to look up 'label' {ann['label']!r}")
    if ann["label"] not in class_names:
        raise _Problem(f"{where}: 'label' {ann['label']!r} is not in dataset.class_names")
    return class_names.index(ann["label"])


# ------------------------------------------------------------------------------------ dataset


@dataclass
class VideoSample:
    """One model input: features on the inference grid and GT in grid units."""

    video_id: str
    feats: Tensor  # (C, T) float32
    segments: Tensor  # (N, 2) float32 grid units
    labels: Tensor  # (N,) int64
    fps: float
    duration: float


class ActionDataset(torch.utils.data.Dataset):
    """Videos of ``splits`` as :class:`VideoSample` items.

    ``dataset[i]`` or ``dataset[(i, seed)]``: the seed (0 for a plain index) drives the random
    crop of a training item through a local generator, so a key always gives the same sample.
    Training drops videos without actions and crops as ActionFormer does. ``skip_invalid`` and
    ``check_files`` are :func:`load_records`'s.
    """

    def __init__(self, config: Config, splits: Union[str, Sequence[str]], training: bool,
                 skip_invalid: bool = False, check_files: bool = False):
        problems = config_problems(config) + data_setting_problems(config)
        if problems:
            raise DatasetError(problems_message("the config", problems))
        self.config = config
        self.training = training
        self.records, self.skipped = load_records(config, splits, require_actions=training,
                                                  skip_invalid=skip_invalid, check_files=check_files)

    def __len__(self) -> int:
        return len(self.records)

    def load_features(self, record: VideoRecord) -> Tensor:
        """Raw (T, C) float32 features of ``record``, checked against the model input."""
        try:
            return _checked_features(record.feature_path, record.video_id, input_channels(self.config))
        except _Problem as problem:
            raise _video_error(record.video_id, problem) from None

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> VideoSample:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        record = self.records[index]
        feats, grid = network_grid_features(self.load_features(record), self.config, record.fps)  # (C, L)
        segments = seconds_to_grid(torch.from_numpy(record.segments), grid.feat_stride, grid.num_frames,
                                   record.fps)                                # (N, 2) float64
        labels = torch.from_numpy(record.labels)
        if self.training:
            generator = torch.Generator().manual_seed(int(seed))
            offset = 0.5 * grid.num_frames / grid.feat_stride
            feats, segments, labels = self._crop(feats, segments, labels, offset, generator)
        return VideoSample(video_id=record.video_id, feats=feats, segments=segments.to(torch.float32),
                           labels=labels, fps=record.fps, duration=record.duration)

    def _crop(self, feats: Tensor, segments: Tensor, labels: Tensor, offset: float,
              generator: torch.Generator) -> Tuple[Tensor, Tensor, Tensor]:
        """Cut a random window of the (C, L) features that keeps at least ``trunc_thresh`` of
        one action if possible; the kept segments are clipped to it (widened by ``offset``)."""
        d = self.config.dataset
        length = feats.shape[1]
        if length > d.max_seq_len:
            window = d.max_seq_len
        elif d.crop_ratio is not None:
            low = max(round(d.crop_ratio[0] * length), 1)
            high = max(min(round(d.crop_ratio[1] * length), length), low)
            window = int(torch.randint(low, high + 1, (1,), generator=generator))
        else:
            return feats, segments, labels
        if window >= length:
            return feats, segments, labels
        seg_len = segments[:, 1] - segments[:, 0]                              # (N,)
        cut = self._right_cut(segments, window, length, generator)
        for _ in range(CROP_TRIES):
            start = cut if cut is not None else int(torch.randint(0, length - window + 1, (1,), generator=generator))
            left = segments[:, 0].clamp(min=start - offset)                  # (N,)
            right = segments[:, 1].clamp(max=start + window + offset)        # (N,)
            visible = (right - left).clamp(min=0) / seg_len                  # (N,)
            keep = visible >= d.trunc_thresh
            if cut is not None:                                               # the action cut by the end stays
                keep |= (segments[:, 1] > start + window + offset) & (visible >= d.right_cut_min)
            if keep.any() or len(segments) == 0:
                break
        clipped = torch.stack([left[keep], right[keep]], dim=1) - start      # (K, 2)
        return feats[:, start:start + window].contiguous(), clipped, labels[keep]

    def _right_cut(self, segments: Tensor, window: int, length: int, generator: torch.Generator) -> Optional[int]:
        """With probability ``right_cut_prob``, the start of a crop whose end falls inside a random
        action, at a uniform share of it from ``right_cut_min`` to all of it; None otherwise."""
        d = self.config.dataset
        inside = torch.nonzero(segments[:, 0] < length).flatten() if len(segments) else segments.new_zeros(0)
        if len(inside) == 0 or d.right_cut_prob <= 0 or float(torch.rand(1, generator=generator)) >= d.right_cut_prob:
            return None
        k = int(inside[int(torch.randint(0, len(inside), (1,), generator=generator))])
        share = d.right_cut_min + (1 - d.right_cut_min) * float(torch.rand(1, generator=generator))
        end = float(segments[k, 0] + share * (segments[k, 1] - segments[k, 0]))
        return min(max(0, round(end) - window), length - window)


def data_setting_problems(config: Config) -> List[str]:
    """Problems of the settings that only training data uses (crops); the network's and the
    feature grid's are :func:`asl_edge.model.config_problems`."""
    d = config.dataset
    problems = []
    ratio = d.crop_ratio
    if ratio is not None and not (len(ratio) == 2 and 0 <= ratio[0] <= ratio[1]):
        problems.append(f"dataset.crop_ratio must be [low, high] with 0 <= low <= high, got {ratio}")
    if not 0 <= d.trunc_thresh <= 1:
        problems.append(f"dataset.trunc_thresh must be in [0, 1], got {d.trunc_thresh}")
    if not (0 <= d.right_cut_prob <= 1 and 0 < d.right_cut_min <= 1):
        problems.append(f"dataset.right_cut_prob must be in [0, 1] and right_cut_min in (0, 1], got "
                        f"{d.right_cut_prob} and {d.right_cut_min}")
    return problems


# ----------------------------------------------------------------------------------- batching


@dataclass
class Batch:
    """Padded features with their validity mask and each video's GT in grid units."""

    feats: Tensor  # (B, C, T) float32
    mask: Tensor  # (B, T) bool, True on real steps
    segments: List[Tensor]  # B x (N_b, 2) float32
    labels: List[Tensor]  # B x (N_b,) int64
    video_ids: List[str]

    def to(self, device: Union[str, torch.device]) -> "Batch":
        """This batch with every tensor on ``device``."""
        return Batch(feats=self.feats.to(device), mask=self.mask.to(device),
                     segments=[s.to(device) for s in self.segments],
                     labels=[lb.to(device) for lb in self.labels], video_ids=list(self.video_ids))


def collate(samples: Sequence[VideoSample], length: int) -> Batch:
    """Zero-pad every sample's features to ``length`` steps and stack them."""
    if not samples:
        raise DatasetError("collate needs at least one sample")
    channels = samples[0].feats.shape[0]
    feats = torch.zeros((len(samples), channels, length), dtype=torch.float32)  # (B, C, T)
    mask = torch.zeros((len(samples), length), dtype=torch.bool)                # (B, T)
    for b, sample in enumerate(samples):
        c, steps = sample.feats.shape
        if steps > length:
            raise DatasetError(f"video {sample.video_id!r}: {steps} feature steps do not fit the "
                               f"batch length {length}")
        if c != channels:
            raise DatasetError(f"video {sample.video_id!r}: {c} channels, the batch has {channels}")
        feats[b, :, :steps] = sample.feats
        mask[b, :steps] = True
    return Batch(feats=feats, mask=mask, segments=[s.segments for s in samples],
                 labels=[s.labels for s in samples], video_ids=[s.video_id for s in samples])


class TrainSampler(torch.utils.data.Sampler):
    """Yields ``(index, item_seed)``: a permutation of ``range(num_items)`` with a seed per item.

    Both come from a generator seeded by ``(seed, epoch)`` alone, so any epoch's order and crops
    are reproducible without replaying the earlier epochs (exact resume).

    Distributed (``world_size`` > 1): the permutation is cut into global batches of
    ``global_batch`` items (an incomplete last one is dropped) and process ``rank`` takes its
    ``global_batch / world_size`` consecutive items of each, so that the processes together see
    the items, crops and batches one process sees at the same global batch.
    """

    def __init__(self, num_items: int, seed: int, rank: int = 0, world_size: int = 1, global_batch: int = 1):
        if world_size > 1 and (global_batch % world_size or not 0 <= rank < world_size):
            raise ValueError(f"rank {rank} of {world_size} processes cannot share global batches of {global_batch}")
        self.num_items = num_items
        self.seed = seed
        self.rank, self.world_size, self.global_batch = rank, world_size, global_batch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.num_items
        return self.num_items // self.global_batch * (self.global_batch // self.world_size)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        state = np.random.SeedSequence([self.seed % 2**64, self.epoch % 2**64]).generate_state(1, np.uint64)
        generator = torch.Generator().manual_seed(int(state[0]))
        order = torch.randperm(self.num_items, generator=generator)
        seeds = torch.randint(0, 2**62, (self.num_items,), generator=generator)
        items = list(zip(order.tolist(), seeds.tolist()))
        if self.world_size == 1:
            return iter(items)
        share = self.global_batch // self.world_size
        first = self.rank * share
        return iter([item for start in range(0, len(items) - self.global_batch + 1, self.global_batch)
                     for item in items[start + first:start + first + share]])
