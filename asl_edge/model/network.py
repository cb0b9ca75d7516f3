"""The ASL network: embedding -> transformer pyramid -> LayerNorm neck -> shared heads."""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import Tensor, nn

from ..config import Config, ConfigError, problems_message
from .encoder import EncoderBlock, Embedding
from .heads import ClassificationHead, RegressionHead
from .layers import ChannelLayerNorm


def _as_list(value) -> List[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def window_sizes(config: Config) -> List[int]:
    """Attention window of each block level (stem = level 0, branch block i = level i + 1)."""
    num_levels = config.model.backbone_arch[2] + 1
    windows = config.model.n_mha_win_size
    if isinstance(windows, int):
        windows = [windows] * num_levels
    if len(windows) != num_levels:
        raise ConfigError(f"model.n_mha_win_size has {len(windows)} entries, the encoder has {num_levels} levels")
    even = [w for w in windows if w > 1 and w % 2 == 0]
    if even:
        raise ConfigError(f"model.n_mha_win_size must be odd (or <= 1 for global attention), got {even[0]}")
    return list(windows)


def input_channels(config: Config) -> int:
    """Channels of the network input C_in (the streams' dimensions summed for multi-stream input)."""
    dim = config.dataset.input_dim
    return sum(dim) if isinstance(dim, list) else dim


def level_strides(config: Config) -> List[int]:
    """Temporal stride of each output pyramid level (after ``fpn_start_level``)."""
    m = config.model
    return [m.scale_factor ** i for i in range(m.fpn_start_level, m.backbone_arch[2] + 1)]


def padding_unit(config: Config) -> int:
    """Inference inputs longer than max_seq_len are padded to a multiple of this (576 for THUMOS)."""
    m = config.model
    unit = 1
    for level, window in enumerate(window_sizes(config)):
        stride = m.scale_factor ** level
        unit = max(unit, stride * (window // 2) * 2 if window > 1 else stride)
    return unit


def padded_length(config: Config, length: int) -> int:
    """Length the network runs at for a sequence of ``length`` features (ActionFormer's rule)."""
    if length <= config.dataset.max_seq_len:
        return config.dataset.max_seq_len
    unit = padding_unit(config)
    return (length + unit - 1) // unit * unit


def shortest_input_length(config: Config) -> int:
    """The smallest T a length-dynamic artifact takes: one padding unit, or with absolute position
    encoding the first multiple of it at or above max_seq_len (the network interpolates the encoding
    from max_seq_len up, so every padded input takes that path)."""
    unit = padding_unit(config)
    if not config.model.use_abs_pe:
        return unit
    return -(-config.dataset.max_seq_len // unit) * unit


def level_lengths(length: int, num_levels: int, scale_factor: int, start_level: int = 0) -> List[int]:
    """Number of points on each output level for an input of ``length`` positions."""
    lengths = [length]
    for _ in range(num_levels + start_level - 1):
        lengths.append((lengths[-1] + scale_factor - 1) // scale_factor)
    return lengths[start_level:]


def config_problems(config: Config) -> List[str]:
    """Every setting of ``config`` this implementation cannot build, run or save a checkpoint of:
    unsupported options, cross-field rules of the network (levels, heads, kernels, dimensions) and
    of the dataset (class names vs classes, the feature grid). Empty when the config is usable."""
    m, d, t = config.model, config.dataset, config.train_cfg
    problems = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    check(m.backbone_type == "convTransformer", f"model.backbone_type={m.backbone_type!r} (only 'convTransformer')")
    check(m.fpn_type == "identity", f"model.fpn_type={m.fpn_type!r} (only 'identity')")
    check(not m.use_rel_pe, "model.use_rel_pe=true (relative position encoding is not implemented)")
    arch_ok = len(m.backbone_arch) == 3 and m.backbone_arch[0] >= 1 and min(m.backbone_arch) >= 0
    check(arch_ok, "model.backbone_arch must be [embedding convs >= 1, stem blocks >= 0, branch blocks >= 0], "
                   f"got {m.backbone_arch}")
    check(m.scale_factor == 1 or (m.scale_factor > 1 and m.scale_factor % 2 == 0),
          f"model.scale_factor must be 1 or even (the strided attention convs), got {m.scale_factor}")
    if arch_ok:
        check(0 <= m.fpn_start_level <= m.backbone_arch[2],
              f"model.fpn_start_level {m.fpn_start_level} outside 0..{m.backbone_arch[2]}")
        num_levels = m.backbone_arch[2] + 1 - m.fpn_start_level
        check(len(m.regression_range) == num_levels,
              f"model.regression_range has {len(m.regression_range)} entries for {num_levels} pyramid levels")
        bad_levels = [lv for lv in m.tca.levels if not 0 <= lv <= m.backbone_arch[2]]
        check(not bad_levels, f"model.tca.levels {bad_levels} outside 0..{m.backbone_arch[2]}")
        try:
            window_sizes(config)
        except ConfigError as err:
            problems.append(str(err))
    check(0.0 <= m.tca.theta <= 1.0, f"model.tca.theta must be in [0, 1], got {m.tca.theta}")
    input_dim, embd_dim = d.input_dim, m.embd_dim
    if isinstance(input_dim, list) != isinstance(embd_dim, list) or len(_as_list(input_dim)) != len(_as_list(embd_dim)):
        problems.append(f"dataset.input_dim ({input_dim}) and model.embd_dim ({embd_dim}) must both be numbers "
                        "or both list the same number of feature streams")
    check(min(_as_list(input_dim), default=0) >= 1, f"dataset.input_dim must be positive, got {input_dim}")
    check(min(_as_list(embd_dim), default=0) >= 1, f"model.embd_dim must be positive, got {embd_dim}")
    dim = sum(_as_list(embd_dim))
    check(m.n_head >= 1 and dim % max(m.n_head, 1) == 0,
          f"model.n_head {m.n_head} must divide the embedding dim {dim} (model.embd_dim) into equal heads")
    check(m.fpn_dim == dim, f"model.fpn_dim ({m.fpn_dim}) must equal the embedding dim ({dim}) for the identity neck")
    for key in ("embd_kernel_size", "head_kernel_size"):
        size = getattr(m, key)
        check(size >= 1 and size % 2 == 1, f"model.{key} must be odd, got {size}")
    check(m.head_num_layers >= 1, f"model.head_num_layers must be >= 1, got {m.head_num_layers}")
    check(m.head_dim >= 1, f"model.head_dim must be positive, got {m.head_dim}")
    check(d.num_classes >= 1, f"dataset.num_classes must be >= 1, got {d.num_classes}")
    if d.class_names is not None:
        check(len(d.class_names) == d.num_classes,
              f"dataset.class_names lists {len(d.class_names)} names for {d.num_classes} classes "
              "(dataset.num_classes): give one name per class id")
        repeated = sorted({name for name in d.class_names if d.class_names.count(name) > 1})
        check(not repeated, f"dataset.class_names repeats {', '.join(map(repr, repeated))}")
    bad_empty = [c for c in t.head_empty_cls if not 0 <= c < d.num_classes]
    check(not bad_empty, f"train_cfg.head_empty_cls {bad_empty} outside [0, {d.num_classes}) (dataset.num_classes)")
    check(d.max_seq_len >= 1, f"dataset.max_seq_len must be >= 1, got {d.max_seq_len}")
    check(d.downsample_rate >= 1, f"dataset.downsample_rate must be >= 1, got {d.downsample_rate}")
    check(d.feat_stride > 0, f"dataset.feat_stride must be positive, got {d.feat_stride}")
    check(d.num_frames > 0, f"dataset.num_frames must be positive, got {d.num_frames}")
    if d.default_fps is not None:
        check(math.isfinite(d.default_fps) and d.default_fps > 0,
              f"dataset.default_fps must be a positive finite number, got {d.default_fps}")
    return problems


def validate_config(config: Config) -> None:
    """ConfigError listing every problem :func:`config_problems` finds."""
    problems = config_problems(config)
    if problems:
        raise ConfigError(problems_message("the config", problems))


class ASLNetwork(nn.Module):
    """ASL / ActionFormer network (DESIGN §2.1-2.2).

    ``forward(features[B, C_in, T], mask[B, T] bool) -> (cls_logits[B, N, K], offsets[B, N, 2])``
    where N sums the points of all pyramid levels in level order, logits are pre-sigmoid and
    offsets are (start, end) distances in units of each level's stride, after the per-level
    scale and ReLU. With ``tca.theta = 0`` this is ActionFormer.
    """

    def __init__(self, config: Config):
        super().__init__()
        validate_config(config)
        m, d, t = config.model, config.dataset, config.train_cfg
        num_embed, num_stem, num_branch = m.backbone_arch
        windows = window_sizes(config)
        input_dims = _as_list(d.input_dim)
        embed_dims = _as_list(m.embd_dim)
        dim = sum(embed_dims)

        def theta_at(level: int) -> float:
            return m.tca.theta if level in m.tca.levels else 0.0

        self.num_classes = d.num_classes
        self.start_level = m.fpn_start_level
        self.strides = level_strides(config)
        self.scale_factor = m.scale_factor
        self.embedding = Embedding(input_dims, embed_dims, num_embed, m.embd_kernel_size, m.embd_with_ln,
                                   d.max_seq_len, m.use_abs_pe)
        self.stem = nn.ModuleList(
            EncoderBlock(dim, m.n_head, windows[0], 1, theta_at(0), m.tca.channel_scale, t.dropout, t.droppath)
            for _ in range(num_stem)
        )
        self.branch = nn.ModuleList(
            EncoderBlock(dim, m.n_head, windows[i + 1], m.scale_factor, theta_at(i + 1), m.tca.channel_scale,
                         t.dropout, t.droppath)
            for i in range(num_branch)
        )
        num_levels = len(self.strides)
        self.neck = nn.ModuleList(
            ChannelLayerNorm(dim) if m.fpn_with_ln else nn.Identity() for _ in range(num_levels)
        )
        self.cls_head = ClassificationHead(dim, m.head_dim, d.num_classes, m.head_num_layers, m.head_kernel_size,
                                           m.head_with_ln, t.cls_prior_prob, t.head_empty_cls)
        self.reg_head = RegressionHead(dim, m.head_dim, num_levels, m.head_num_layers, m.head_kernel_size,
                                       m.head_with_ln)

    def pyramid(self, features: Tensor, mask: Tensor) -> Tuple[List[Tensor], List[Tensor]]:
        """Encoder + neck: per-level features (B, C, T_l) and masks (B, T_l) bool."""
        x = self.embedding(features, mask)
        for block in self.stem:
            x, mask = block(x, mask)
        feats = [x]
        masks = [mask]
        for block in self.branch:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        feats = feats[self.start_level:]
        masks = masks[self.start_level:]
        out: List[Tensor] = []
        for level, norm in enumerate(self.neck):
            out.append(norm(feats[level]))
        return out, masks

    def forward(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        feats, masks = self.pyramid(features, mask)
        return self.heads(feats, masks)

    def heads(self, feats: List[Tensor], masks: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """Shared heads on every pyramid level: (cls_logits[B, N, K], offsets[B, N, 2])."""
        logits: List[Tensor] = []
        offsets: List[Tensor] = []
        for level in range(len(feats)):
            m = masks[level].to(feats[level].dtype).unsqueeze(1)
            logits.append(self.cls_head(feats[level], m).transpose(1, 2))
            offsets.append(self.reg_head(feats[level], m, level).transpose(1, 2))
        return torch.cat(logits, dim=1), torch.cat(offsets, dim=1)


def build_model(config: Config) -> ASLNetwork:
    """Build a freshly initialised network for ``config``."""
    return ASLNetwork(config)
