"""Offline localization of one video's clip features: pad, run the network, decode, NMS, seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .compute import resolve_device
from .config import Config
from .model import class_names, input_channels, level_lengths, level_strides, load_checkpoint, padded_length
from .postprocess import (FeatureGrid, batched_nms, decode_segments, default_duration, positive_number, resolve_fps,
                          video_grid)


class FeatureError(ValueError):
    """Features that do not fit the model (shape, dimension, non-finite values)."""


Network = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]


def check_features(features: Union[np.ndarray, Tensor], input_dim: int) -> Tensor:
    """One video's (T, C) features as float32, checked against the model's ``input_dim`` channels
    (numeric, 2-D, not empty, finite); FeatureError otherwise."""
    if not isinstance(features, Tensor):
        features = np.asarray(features)
        if features.dtype.kind not in "biuf":
            raise FeatureError(f"features must be numeric, got dtype {features.dtype}")
        features = torch.from_numpy(features)
    feats = float32_features(features)
    if feats.dim() != 2:
        raise FeatureError(f"features must be 2-D (T, C), got shape {tuple(feats.shape)}")
    if feats.shape[1] != input_dim:
        hint = " (the array looks transposed: expected (T, C))" if feats.shape[0] == input_dim else ""
        raise FeatureError(
            f"features have {feats.shape[1]} channels, the model expects {input_dim} (dataset.input_dim){hint}"
        )
    if feats.shape[0] == 0:
        raise FeatureError("features are empty (T = 0)")
    if not bool(torch.isfinite(feats).all()):
        bad = int((~torch.isfinite(feats)).any(dim=1).sum())
        raise FeatureError(f"features contain NaN or inf in {bad} of {feats.shape[0]} time steps")
    return feats


def float32_features(features: Tensor) -> Tensor:
    """``features`` as float32; FeatureError when finite values lie beyond float32's range (the
    conversion would turn them into inf)."""
    if features.dtype == torch.float64:
        limit = float(torch.finfo(torch.float32).max)
        too_large = torch.isfinite(features) & (features.abs() > limit)
        if bool(too_large.any()):
            raise FeatureError(f"features hold {features.dtype} values beyond float32's range (largest magnitude "
                               f"{float(features.abs()[too_large].max()):.3g} > {limit:.3g}); the model runs "
                               "float32: rescale them")
    return features.to(torch.float32)


def video_ids(paths: Sequence[Union[str, Path]]) -> List[str]:
    """The video id of each feature file, its stem; ValueError naming the paths that are folders, or
    the files when two give the same id (the second's detections would replace the first's)."""
    folders = [str(path) for path in paths if Path(path).is_dir()]
    if folders:
        raise ValueError(f"feature files are expected, and {', '.join(folders)} "
                         f"{'is a folder' if len(folders) == 1 else 'are folders'}: pass its files "
                         f"(e.g. {Path(folders[0]) / '*.npy'})")
    seen: Dict[str, Path] = {}
    clashes = []
    for path in map(Path, paths):
        if path.stem in seen:
            clashes.append(f"{seen[path.stem]} and {path} are both video {path.stem!r}")
        seen.setdefault(path.stem, path)
    if clashes:
        raise ValueError("; ".join(clashes) + ": the file stem is the video id, so rename one of each "
                         "(or run them separately)")
    return [Path(path).stem for path in paths]


def check_duration(duration: float, num_features: int, config: Config, fps: float) -> None:
    """FeatureError when a video of ``duration`` seconds cannot have produced ``num_features``
    features: the last one starts at ``(T - 1)·feat_stride / fps`` seconds, inside the video."""
    last_start = (num_features - 1) * config.dataset.feat_stride / fps
    if duration <= last_start:
        raise FeatureError(f"duration {duration:g} s is too short for {num_features} features: at feat_stride "
                           f"{config.dataset.feat_stride} and {fps:g} fps the last one starts {last_start:.2f} s into "
                           f"the video (every detection would be clamped to {duration:g} s)")


def network_grid_length(num_features: int, config: Config) -> int:
    """Steps L of the network's input grid for a video of ``num_features`` features: every
    ``downsample_rate``-th feature (the first included), or ``max_seq_len`` under
    ``force_upsampling``. The network then runs at ``padded_length(config, L)``."""
    d = config.dataset
    if d.force_upsampling:
        return d.max_seq_len
    return -(-num_features // d.downsample_rate)


def network_grid_features(feats: Tensor, config: Config, fps: float) -> Tuple[Tensor, FeatureGrid]:
    """One video's checked (T, C) features on the network's input grid, as (C, L), and that grid:
    every ``downsample_rate``-th step, resized to ``max_seq_len`` under ``force_upsampling``.
    Training items and inference inputs both go through here, so they share one time base."""
    d = config.dataset
    grid = video_grid(feats.shape[0], d.feat_stride, d.num_frames, fps, d.downsample_rate,
                      d.max_seq_len if d.force_upsampling else 0)
    out = feats[::d.downsample_rate].t().contiguous()                          # (C, L)
    length = network_grid_length(feats.shape[0], config)
    if out.shape[1] != length:
        out = F.interpolate(out[None], size=length, mode="linear", align_corners=False)[0]
    return out, grid


class Localizer:
    """Temporal action localization on pre-extracted clip features.

    ``Localizer(network, config).detect(features[T, C], fps, duration)`` returns a list of
    ``{"label", "label_id", "start", "end", "score"}`` (seconds), best first. ``network`` is an
    ``ASLNetwork`` or anything with its contract, ``network(features[B, C, T], mask[B, T]) ->
    (cls_logits, offsets)``, such as a runtime backend's ``run``. ``window`` fixes the input
    length (artifacts exported for one T); otherwise inputs are padded as the config says.
    """

    def __init__(self, network: Network, config: Config, device: Union[str, torch.device] = "cpu",
                 window: Optional[int] = None):
        self.device = resolve_device(device)
        if isinstance(network, torch.nn.Module):
            network = network.eval().to(self.device)
        self.model = network
        self.window = window
        self.strides = level_strides(config)
        self.config = config
        self.class_names = class_names(config)
        self.input_dim = input_channels(config)

    @classmethod
    def from_checkpoint(cls, path, device: Union[str, torch.device] = "cpu") -> "Localizer":
        ckpt = load_checkpoint(path, device=device)
        return cls(ckpt.model, ckpt.config, device=device)

    @torch.inference_mode()
    def detect(self, features: Union[np.ndarray, Tensor], fps: Optional[float] = None,
               duration: Optional[float] = None) -> List[Dict]:
        """Detect actions in one video.

        Args:
            features: (T, C) clip features, as the model was trained on.
            fps: the video's frame rate, used only when the config has no ``dataset.default_fps``
                (ActionFormer's rule, :func:`asl_edge.postprocess.resolve_fps`).
            duration: video length in seconds (detections are clamped to it); defaults to the
                span the features cover.
        """
        x, mask, grid, duration = self.prepare(features, fps, duration)
        logits, offsets = self.model(x, mask)
        return self.postprocess(logits[0], offsets[0], mask[0], grid, duration)

    def postprocess(self, logits: Tensor, offsets: Tensor, mask: Tensor, grid: FeatureGrid,
                    duration: float) -> List[Dict]:
        """One row's network outputs (``logits[N, K]``, ``offsets[N, 2]``, ``mask[T]``) ->
        detections in seconds, best first: decode, NMS as ``test_cfg`` says, grid -> seconds."""
        test = self.config.test_cfg
        m = self.config.model
        sizes = level_lengths(mask.shape[0], len(self.strides), m.scale_factor, m.fpn_start_level)
        segs, scores, labels = decode_segments(logits, offsets, mask, self.strides, sizes,
                                               test.pre_nms_thresh, test.pre_nms_topk, test.duration_thresh)
        segs, scores, labels = segs.cpu(), scores.cpu(), labels.cpu()
        if test.nms_method != "none":
            segs, scores, labels = batched_nms(segs, scores, labels, test.iou_threshold, test.min_score,
                                               test.max_seg_num, use_soft_nms=test.nms_method == "soft",
                                               multiclass=test.multiclass_nms, sigma=test.nms_sigma,
                                               voting_thresh=test.voting_thresh)
        else:
            order = torch.sort(scores, descending=True, stable=True)[1]
            segs, scores, labels = segs[order], scores[order], labels[order]
        return self.to_detections(segs, scores, labels, grid, duration)

    def prepare(self, features: Union[np.ndarray, Tensor], fps: Optional[float] = None,
                duration: Optional[float] = None) -> Tuple[Tensor, Tensor, FeatureGrid, float]:
        """The network input of one video: features (1, C, T_padded) and mask (1, T_padded) on
        the device, the feature grid and the duration in seconds."""
        d = self.config.dataset
        fps = resolve_fps(d.default_fps, fps)
        feats = check_features(features, self.input_dim)
        if duration is None:
            duration = default_duration(feats.shape[0], d.feat_stride, d.num_frames, fps)
        else:
            duration = positive_number(duration, "duration")
        feats, grid = network_grid_features(feats, self.config, fps)          # (C, T)
        length = feats.shape[1]
        padded = padded_length(self.config, length) if self.window is None else self.window
        if length > padded:
            raise FeatureError(f"{length} feature steps do not fit the artifact's window of {padded}; "
                               "export with a larger --window or a format with dynamic length")
        x = torch.zeros((1, feats.shape[0], padded), device=self.device)
        x[0, :, :length] = feats.to(self.device)
        mask = (torch.arange(padded, device=self.device) < length)[None]
        return x, mask, grid, duration

    def to_detections(self, segs: Tensor, scores: Tensor, labels: Tensor, grid: FeatureGrid,
                      duration: float) -> List[Dict]:
        """Grid-unit segments, best first, as detection dicts in seconds (clamped to the duration
        again as Python floats: a float32 ``duration`` can round above the float one)."""
        seconds = grid.to_seconds(segs.cpu(), duration)
        return [
            {"label": self.class_names[int(lb)], "label_id": int(lb), "start": min(float(seg[0]), duration),
             "end": min(float(seg[1]), duration), "score": float(sc)}
            for seg, sc, lb in zip(seconds.tolist(), scores.tolist(), labels.tolist())
        ]
