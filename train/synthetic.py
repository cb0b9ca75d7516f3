"""Synthetic clip-feature datasets for end-to-end training checks.

``make_synthetic(out_dir, preset, seed)`` writes a small dataset in ActionFormer's THUMOS format
(an annotation JSON, one ``(T, C)`` float32 ``.npy`` per video and a ready-to-train asl-edge
config), so the whole training and evaluation pipeline can run on a CPU in minutes, with a known
answer.

Every video is an untrimmed sequence of T clip features (T uniform in [160, 360] grid steps, so
some exceed ``max_seq_len`` and get cropped by the data loader). Background is Gaussian noise plus
a slow drift that moves fixed subsets of channels together (what camera and scene changes do to
real features). Each video holds 1-4 non-overlapping actions. Each class has a prototype
direction in feature space; the presets differ in where the class evidence sits:

``easy``
    Every frame of an action carries its class prototype (strong), and the first/last two frames
    carry "start"/"end" cue vectors. Class and extent are visible everywhere; a working detector
    should reach a high mAP. Use it to check that training converges at all.

``keyframe``
    Every action frame carries only a weak class-agnostic "in action" cue; the class prototype is
    present on a short run of key frames (15-20 % of the action) whose relative position inside
    the action depends on the class (class k at ``key_positions`` spread over [0.15, 0.85]).
    Boundary cues are weak (one frame each), and short decoy bursts of class prototypes are
    scattered in the background, so class evidence alone does not mark an action. A detector must
    combine the weak extent cue with class evidence found at a class-specific place inside the
    action: this is the case that ASL's action sensitivity (which frames of an action matter for
    classification and for localization, per class) is meant for, and where it should beat a
    plain ActionFormer.

Generation is deterministic for a given ``(preset, seed)`` (one ``np.random.default_rng(seed)``)
and vectorised per video; :func:`generate_synthetic` returns the same data in memory, with the
planted structure (prototypes, key-frame runs, decoys) for tests and analyses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from asl_edge.config.loader import config_from_dict, config_to_dict, load_config, merge_dicts, save_config
from asl_edge.outputs import OutputError, atomic_output, claim_output_folder, write_json
from asl_edge.postprocess import default_duration, grid_to_seconds

__all__ = [
    "PRESETS",
    "CPU_TRAIN_CONFIG",
    "SyntheticError",
    "SyntheticPreset",
    "SyntheticVideo",
    "SyntheticData",
    "generate_synthetic",
    "make_synthetic",
]

# ------------------------------------------------------------------------ training configurations
# Overrides of the thumos_i3d preset used by both synthetic presets: a small CPU-friendly model
# (EMA decay 0.99 suits the few hundred iterations of a run). Filled in by make_synthetic (not
# here): dataset.json_file, feat_folder, file_prefix, file_ext, input_dim, num_classes,
# class_names, train/val splits and output_folder. dataset.feat_stride / num_frames /
# default_fps also define how grid steps map to seconds in the annotation file.

CPU_TRAIN_CONFIG: Dict[str, Any] = {
    "devices": ["cpu"],
    "dataset": {
        "feat_stride": 4,
        "num_frames": 16,
        "default_fps": 30,
        "max_seq_len": 256,
        "trunc_thresh": 0.5,
        "crop_ratio": [0.9, 1.0],
    },
    "model": {
        "backbone_arch": [2, 2, 5],
        "n_head": 4,
        "n_mha_win_size": 9,
        "embd_dim": 64,
        "fpn_dim": 64,
        "head_dim": 64,
        "tca": {"theta": 0.2, "levels": [0]},
    },
    "opt": {"learning_rate": 0.001, "epochs": 15, "warmup_epochs": 2, "weight_decay": 0.05},
    "loader": {"batch_size": 4, "num_workers": 0},
    "train_cfg": {"init_loss_norm": 100, "clip_grad_l2norm": 1.0, "droppath": 0.1, "ema_decay": 0.99},
    "test_cfg": {
        "pre_nms_topk": 2000,
        "max_seg_num": 100,
        "min_score": 0.001,
        "multiclass_nms": True,
        "voting_thresh": 0.7,
    },
}


# ---------------------------------------------------------------------------------- data presets


class SyntheticError(ValueError):
    """Bad arguments to the synthetic-data generator (unknown preset, unusable output folder)."""


@dataclass(frozen=True)
class SyntheticPreset:
    """Everything that defines one synthetic dataset. Ranges are inclusive ``(low, high)``;
    lengths and positions are in feature-grid steps, amplitudes in units of the noise std."""

    name: str
    class_names: Tuple[str, ...]
    num_train: int
    num_val: int
    train_config: Mapping[str, Any] = field(repr=False)
    channels: int = 32
    seq_len: Tuple[int, int] = (160, 360)
    action_len: Tuple[int, int] = (8, 64)
    max_actions: int = 4
    min_gap: int = 4  # background steps between two actions
    noise_std: float = 1.0
    drift_factors: int = 4  # slow latent signals, each moving its own random subset of channels
    drift_channel_prob: float = 0.25  # chance that a channel follows a given factor
    drift_amp: float = 0.5
    drift_period: Tuple[float, float] = (60.0, 300.0)
    class_amp: float = 2.5
    # None: every action frame carries the class prototype; else the key-frame run covers this
    # fraction of the action, centred at the class's relative position in key_positions
    key_fraction: Optional[Tuple[float, float]] = None
    key_positions: Tuple[float, float] = (0.15, 0.85)  # np.linspace over the classes
    action_cue_amp: float = 0.0  # class-agnostic "in action" cue on every action frame
    boundary_amp: float = 2.0
    boundary_frames: int = 2
    decoys: Tuple[int, int] = (0, 0)  # class-prototype bursts per video, in the background
    decoy_len: Tuple[int, int] = (2, 4)
    decoy_amp: float = 1.5
    decoy_margin: int = 3  # background steps kept between a decoy and an action

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


PRESETS: Dict[str, SyntheticPreset] = {
    "easy": SyntheticPreset(
        name="easy",
        class_names=("alpha", "bravo", "charlie", "delta"),
        num_train=120,
        num_val=40,
        train_config=CPU_TRAIN_CONFIG,
        action_len=(8, 64),
        class_amp=2.5,
        boundary_amp=2.0,
        boundary_frames=2,
    ),
    "keyframe": SyntheticPreset(
        name="keyframe",
        class_names=("alpha", "bravo", "charlie", "delta", "echo"),
        num_train=120,
        num_val=60,
        train_config=CPU_TRAIN_CONFIG,
        action_len=(12, 72),
        class_amp=2.5,
        key_fraction=(0.15, 0.20),
        key_positions=(0.15, 0.85),
        action_cue_amp=0.6,
        boundary_amp=0.8,
        boundary_frames=1,
        decoys=(2, 4),
        decoy_len=(2, 4),
        decoy_amp=1.5,
    ),
}


# -------------------------------------------------------------------------------------- the data


@dataclass
class SyntheticVideo:
    video_id: str
    subset: str  # "training" or "validation"
    features: np.ndarray  # (T, C) float32
    # (label_id, start, end) in grid steps, end exclusive, sorted by start
    actions: List[Tuple[int, int, int]]
    # per action, [start, end) of the frames that carry the class prototype
    key_frames: List[Tuple[int, int]]
    # (label_id, start, end) of background bursts of a class prototype
    decoys: List[Tuple[int, int, int]]


@dataclass
class SyntheticData:
    preset: SyntheticPreset
    seed: int
    prototypes: np.ndarray  # (K, C), orthonormal rows
    start_cue: np.ndarray  # (C,)
    end_cue: np.ndarray  # (C,)
    action_cue: np.ndarray  # (C,)
    key_centres: np.ndarray  # (K,) relative key-frame position per class (keyframe preset)
    drift_loadings: np.ndarray  # (drift_factors, C)
    videos: List[SyntheticVideo]


def _get_preset(preset: Union[str, SyntheticPreset]) -> SyntheticPreset:
    if isinstance(preset, SyntheticPreset):
        return preset
    if preset not in PRESETS:
        raise SyntheticError(f"unknown synthetic preset {preset!r} (presets: {', '.join(sorted(PRESETS))})")
    return PRESETS[preset]


def _place_actions(rng: np.random.Generator, T: int, p: SyntheticPreset) -> List[Tuple[int, int]]:
    """1..max_actions non-overlapping [start, end) spans, at least min_gap steps apart."""
    n = int(rng.integers(1, p.max_actions + 1))
    lengths = rng.integers(p.action_len[0], p.action_len[1] + 1, size=n)
    while n > 1 and int(lengths[:n].sum()) + p.min_gap * (n - 1) > T:
        n -= 1
    lengths = lengths[:n]
    free = T - int(lengths.sum()) - p.min_gap * (n - 1)
    if free < 0:
        raise SyntheticError(f"preset {p.name!r}: an action of {int(lengths[0])} steps does not fit in {T} steps")
    cuts = np.sort(rng.integers(0, free + 1, size=n))
    gaps = np.diff(np.concatenate([[0], cuts]))  # background before each action (extra to min_gap)
    spans = []
    pos = 0
    for i in range(n):
        start = pos + int(gaps[i]) + (p.min_gap if i > 0 else 0)
        end = start + int(lengths[i])
        spans.append((start, end))
        pos = end
    return spans


def _slow_drift(rng: np.random.Generator, T: int, loadings: np.ndarray, p: SyntheticPreset) -> np.ndarray:
    """(T, C) drift: per factor a sum of three slow sinusoids (unit std), spread by ``loadings``."""
    t = np.arange(T, dtype=np.float64)[:, None, None]
    periods = rng.uniform(p.drift_period[0], p.drift_period[1], size=(1, p.drift_factors, 3))
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(1, p.drift_factors, 3))
    latent = np.sin(2.0 * np.pi * t / periods + phases).sum(axis=2) * np.sqrt(2.0 / 3.0)
    return p.drift_amp * (latent @ loadings)


def _place_decoys(rng: np.random.Generator, T: int, spans: List[Tuple[int, int]],
                  p: SyntheticPreset) -> List[Tuple[int, int, int]]:
    n = int(rng.integers(p.decoys[0], p.decoys[1] + 1))
    if n == 0:
        return []
    blocked = np.zeros(T, dtype=bool)
    for start, end in spans:
        blocked[max(0, start - p.decoy_margin):end + p.decoy_margin] = True
    out = []
    for _ in range(n):
        length = int(rng.integers(p.decoy_len[0], p.decoy_len[1] + 1))
        label = int(rng.integers(p.num_classes))
        # starts s with blocked[s:s+length] all False
        csum = np.concatenate([[0], np.cumsum(blocked)])
        ok = np.flatnonzero(csum[length:] - csum[:-length] == 0) if T >= length else np.array([], int)
        if ok.size == 0:
            break
        start = int(rng.choice(ok))
        out.append((label, start, start + length))
        blocked[max(0, start - 1):start + length + 1] = True  # decoys do not touch each other
    return out


def generate_synthetic(preset: Union[str, SyntheticPreset] = "easy", seed: int = 0) -> SyntheticData:
    """The dataset of ``preset`` in memory (what :func:`make_synthetic` writes)."""
    p = _get_preset(preset)
    rng = np.random.default_rng(seed)
    C, K = p.channels, p.num_classes
    # class prototypes and cue vectors: orthonormal, so each signal has its own direction
    q, _ = np.linalg.qr(rng.standard_normal((C, K + 3)))
    basis = (q * np.where(np.diag(q[: K + 3]) < 0, -1.0, 1.0)).T  # sign-fixed rows
    prototypes, start_cue, end_cue, action_cue = basis[:K], basis[K], basis[K + 1], basis[K + 2]
    key_centres = np.linspace(p.key_positions[0], p.key_positions[1], K)
    mask = rng.random((p.drift_factors, C)) < p.drift_channel_prob
    mask[np.arange(p.drift_factors), rng.integers(C, size=p.drift_factors)] = True
    loadings = rng.standard_normal((p.drift_factors, C)) * mask

    videos = []
    for subset, prefix, count in (("training", "synth_train", p.num_train),
                                  ("validation", "synth_val", p.num_val)):
        for i in range(count):
            T = int(rng.integers(p.seq_len[0], p.seq_len[1] + 1))
            feats = p.noise_std * rng.standard_normal((T, C)) + _slow_drift(rng, T, loadings, p)
            spans = _place_actions(rng, T, p)
            labels = rng.integers(K, size=len(spans))
            actions, keys = [], []
            for (start, end), label in zip(spans, labels):
                label = int(label)
                length = end - start
                if p.key_fraction is None:
                    k0, k1 = start, end
                else:
                    frac = rng.uniform(p.key_fraction[0], p.key_fraction[1])
                    klen = max(2, int(round(frac * length)))
                    k0 = int(round(start + key_centres[label] * length - 0.5 * klen))
                    k0 = min(max(k0, start), end - klen)
                    k1 = k0 + klen
                feats[start:end] += p.action_cue_amp * action_cue
                feats[k0:k1] += p.class_amp * prototypes[label]
                feats[start:start + p.boundary_frames] += p.boundary_amp * start_cue
                feats[end - p.boundary_frames:end] += p.boundary_amp * end_cue
                actions.append((label, start, end))
                keys.append((k0, k1))
            decoys = _place_decoys(rng, T, spans, p)
            for label, start, end in decoys:
                feats[start:end] += p.decoy_amp * prototypes[label]
            videos.append(SyntheticVideo(f"{prefix}_{i:04d}", subset, feats.astype(np.float32),
                                         actions, keys, decoys))
    return SyntheticData(p, seed, prototypes, start_cue, end_cue, action_cue, key_centres, loadings, videos)


def _annotation_json(data: SyntheticData) -> Dict[str, Any]:
    ds = data.preset.train_config["dataset"]
    stride, nframes, fps = float(ds["feat_stride"]), float(ds["num_frames"]), float(ds["default_fps"])
    names = data.preset.class_names
    database = {}
    for v in data.videos:
        duration = default_duration(v.features.shape[0], stride, nframes, fps)
        grid = torch.tensor([[start, end] for _, start, end in v.actions], dtype=torch.float64).reshape(-1, 2)
        seconds = grid_to_seconds(grid, stride, nframes, fps, duration).tolist()
        database[v.video_id] = {
            "subset": v.subset,
            "fps": fps,
            "duration": duration,
            "annotations": [{"label": names[label], "label_id": label, "segment": segment}
                            for (label, _, _), segment in zip(v.actions, seconds)],
        }
    return {"version": f"asl-edge synthetic {data.preset.name} seed {data.seed}", "database": database}


_OUR_FEATURE = re.compile(r"synth_(train|val)_\d+\.npy")
# what a synthetic dataset folder holds (annotations.json first: every finished one has it)
SYNTHETIC_FILES = ("annotations.json", "config.yaml", "features", "*.partial*")


def make_synthetic(out_dir: Union[str, Path], preset: Union[str, SyntheticPreset] = "easy",
                   seed: int = 0, overwrite: bool = False) -> Dict[str, Path]:
    """Write the ``preset`` dataset to ``out_dir``; returns ``{"annotations", "features", "config"}``.

    ``out_dir/annotations.json`` (ActionFormer/THUMOS format, segments in seconds),
    ``out_dir/features/<video>.npy`` ((T, C) float32) and ``out_dir/config.yaml`` (the
    ``thumos_i3d`` preset with the preset's training overrides, absolute data paths). ``out_dir``
    must be new, empty or an earlier synthetic dataset; any other folder (a training run, the
    user's files) only with ``overwrite``. Only these are replaced; other files in ``out_dir`` are
    left alone, and feature files of an earlier run that this one does not write are removed from
    ``features/``.
    """
    p = _get_preset(preset)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise SyntheticError(f"output folder {out_dir} exists and is not a folder")
    try:
        claim_output_folder(Path(out_dir).expanduser(), SYNTHETIC_FILES, overwrite, "synth")
    except OutputError as err:
        raise SyntheticError(str(err)) from None
    feat_dir = out / "features"
    if feat_dir.exists() and not feat_dir.is_dir():
        raise SyntheticError(f"{feat_dir} exists and is not a folder")
    paths = {"annotations": out / "annotations.json", "features": feat_dir, "config": out / "config.yaml"}
    for key in ("annotations", "config"):
        if paths[key].is_dir():
            raise SyntheticError(f"{paths[key]} is a folder; cannot write the {key} file there")

    data = generate_synthetic(p, seed)
    feat_dir.mkdir(parents=True, exist_ok=True)
    written = set()
    for v in data.videos:
        name = f"{v.video_id}.npy"
        with atomic_output(feat_dir / name) as tmp, open(tmp, "wb") as fd:
            np.save(fd, v.features)
        written.add(name)
    for stale in feat_dir.iterdir():
        if stale.is_file() and _OUR_FEATURE.fullmatch(stale.name) and stale.name not in written:
            stale.unlink()
    write_json(_annotation_json(data), paths["annotations"])

    overrides = merge_dicts(p.train_config, {
        "train_split": ["training"],
        "val_split": ["validation"],
        "output_folder": str(out / "ckpt"),
        "dataset": {
            "json_file": str(paths["annotations"]),
            "feat_folder": str(feat_dir),
            "file_prefix": None,
            "file_ext": ".npy",
            "input_dim": p.channels,
            "num_classes": p.num_classes,
            "class_names": list(p.class_names),
        },
    })
    base = config_to_dict(load_config("thumos_i3d"))
    config = config_from_dict(merge_dicts(base, overrides), origin=f"synthetic preset {p.name!r}")
    save_config(config, paths["config"])
    return paths
