"""The module every format exports: the network, optionally followed by decode + NMS."""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn

from asl_edge.config import Config
from asl_edge.model import ASLNetwork, level_lengths, level_strides
from asl_edge.ops import nms1d
from asl_edge.postprocess import decode_segments


class NetworkOutputs(nn.Module):
    """``(features[B, C, T], mask[B, T]) -> (cls_logits[B, N, K], offsets[B, N, 2])``."""

    def __init__(self, network: ASLNetwork):
        super().__init__()
        self.network = network

    def forward(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        return self.network(features, mask)


class NetworkWithDetections(nn.Module):
    """The network, decode and NMS for a fixed window: returns segments (B, max_out, 2) in grid
    units, scores (B, max_out), labels (B, max_out) int64 and count (B,) int32, each row padded
    after its count with 0, 0 and -1. NMS runs through :func:`asl_edge.ops.nms1d` (the native
    op when it is in use, so ONNX/TensorRT exports get an ``AslNms1d`` node)."""

    def __init__(self, network: ASLNetwork, config: Config, window: int):
        super().__init__()
        self.network = network
        test = config.test_cfg
        m = config.model
        self.strides: List[int] = level_strides(config)
        self.sizes: List[int] = level_lengths(window, len(self.strides), m.scale_factor, m.fpn_start_level)
        self.num_classes = config.dataset.num_classes
        self.pre_nms_thresh = test.pre_nms_thresh
        self.pre_nms_topk = test.pre_nms_topk
        self.duration_thresh = test.duration_thresh
        self.method = "soft" if test.nms_method == "soft" else "hard"
        self.iou_threshold = test.iou_threshold
        self.sigma = test.nms_sigma
        self.min_score = test.min_score
        self.max_out = test.max_seg_num
        self.multiclass = test.multiclass_nms
        self.voting_threshold = 0.0 if test.multiclass_nms else test.voting_thresh

    def forward(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        logits, offsets = self.network(features, mask)
        segments, scores, labels, counts = [], [], [], []
        for b in range(features.shape[0]):
            segs, sc, lb = decode_segments(logits[b], offsets[b], mask[b], self.strides, self.sizes,
                                           self.pre_nms_thresh, self.pre_nms_topk, self.duration_thresh)
            out = nms1d(segs, sc, lb, self.method, self.iou_threshold, self.sigma, self.min_score, self.max_out,
                        self.multiclass, self.voting_threshold, self.num_classes)
            segments.append(out[0])
            scores.append(out[1])
            labels.append(out[2])
            counts.append(out[3])
        return torch.stack(segments), torch.stack(scores), torch.stack(labels), torch.cat(counts)
