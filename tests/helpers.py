"""Shared test helpers: small configurations that build in milliseconds."""

from __future__ import annotations

import torch

from asl_edge.config import load_config


def small_config(theta: float = 0.2, window: int = 5, channel_scale: str = "time", levels=(0, 1),
                 droppath: float = 0.1, **dataset):
    """A 4-level network with 2 heads of 16 channels on 24-dim features, max_seq_len 64."""
    overrides = {
        "dataset": {"input_dim": 24, "num_classes": 3, "max_seq_len": 64, "feat_stride": 4, "num_frames": 16,
                    "class_names": ["jump", "run", "throw"], **dataset},
        "model": {"backbone_arch": [2, 1, 3], "n_head": 2, "n_mha_win_size": window, "embd_dim": 32,
                  "fpn_dim": 32, "head_dim": 32,
                  "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]],
                  "tca": {"theta": theta, "levels": list(levels), "channel_scale": channel_scale}},
        "train_cfg": {"droppath": droppath},
        "test_cfg": {"pre_nms_topk": 200, "max_seg_num": 20},
    }
    return load_config("thumos_i3d", overrides=overrides)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter away from its initial value so that all paths matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("scale") or name.endswith("scales"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.mul_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
    return model


def valid_mask(batch_lengths, total: int) -> torch.Tensor:
    return torch.arange(total)[None, :] < torch.tensor(batch_lengths)[:, None]


def save_motion_model(path, seed: int = 7):
    """A small randomized checkpoint on ``motion`` features (112-d, stride 4, 8 frames, 15 fps) at ``path``."""
    from asl_edge.model import build_model, save_checkpoint

    config = small_config(input_dim=112, feat_stride=4, num_frames=8, default_fps=15.0, extractor="motion")
    save_checkpoint(randomize_(build_model(config), seed=seed), config, path)
    return path


def stream_items(model, sources, **options):
    """Run ``StreamRunner`` with ``motion`` to its end: ``(final events, statuses, runner)``."""
    from asl_edge.stream import StreamOptions, StreamRunner

    runner = StreamRunner(str(model), sources, "motion", StreamOptions(**options))
    items = list(runner.events())
    return [i for i in items if i.get("type") == "end"], [i for i in items if "status" in i], runner
