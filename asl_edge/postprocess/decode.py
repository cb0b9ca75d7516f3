"""From network outputs to candidate segments on the feature grid (DESIGN §3)."""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor


def decode_segments(cls_logits: Tensor, offsets: Tensor, mask: Tensor, strides: List[int],
                    level_sizes: List[int], pre_nms_thresh: float, pre_nms_topk: int,
                    duration_thresh: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Candidates of one video.

    Args:
        cls_logits: (N, K) pre-sigmoid logits of all levels, level order.
        offsets: (N, 2) start/end distances in units of the level stride.
        mask: (T,) bool validity of the network input; point i of a level with stride s is valid
            when ``mask[i * s]`` is.
        strides, level_sizes: stride and number of points of each level.
        pre_nms_thresh: keep (point, class) pairs with probability above it.
        pre_nms_topk: at most this many pairs per level, by descending probability (stable).
        duration_thresh: drop segments not longer than this (grid units).

    Returns:
        segments (M, 2) in grid units, scores (M,), labels (M,) int64.
    """
    num_classes = cls_logits.shape[1]
    segs_all: List[Tensor] = []
    scores_all: List[Tensor] = []
    labels_all: List[Tensor] = []
    first = 0
    for level in range(len(strides)):
        stride = strides[level]
        size = level_sizes[level]
        valid = mask[::stride].to(cls_logits.dtype)
        probs = (torch.sigmoid(cls_logits[first:first + size]) * valid[:, None]).flatten()
        level_offsets = offsets[first:first + size]
        first += size
        flat_idx = torch.nonzero(probs > pre_nms_thresh).flatten()
        kept_probs, order = torch.sort(probs[flat_idx], descending=True, stable=True)
        kept_probs = kept_probs[:pre_nms_topk]
        flat_idx = flat_idx[order[:pre_nms_topk]]
        point = torch.div(flat_idx, num_classes, rounding_mode="floor")
        label = flat_idx % num_classes
        centre = (point * stride).to(cls_logits.dtype)
        pt_offsets = level_offsets[point]
        start = centre - pt_offsets[:, 0] * stride
        end = centre + pt_offsets[:, 1] * stride
        long_enough = (end - start) > duration_thresh
        segs_all.append(torch.stack([start, end], dim=1)[long_enough])
        scores_all.append(kept_probs[long_enough])
        labels_all.append(label[long_enough])
    return torch.cat(segs_all), torch.cat(scores_all), torch.cat(labels_all)
