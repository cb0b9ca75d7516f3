"""Element-wise detection losses shared by ActionFormer and ASL training, and the loss normaliser."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-8


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal loss per element: ``α_t · (1 − p_t)^γ · BCE(logits, targets)`` with ``p = σ(logits)``,
    ``p_t = p·y + (1 − p)(1 − y)`` and ``α_t = α·y + (1 − α)(1 − y)`` (targets may be soft)."""
    prob = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def offsets_iou(pred: Tensor, target: Tensor) -> Tensor:
    """tIoU of two segments around the same point, each given as (N, 2) non-negative distances
    to its (start, end)."""
    intersection = torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 1], target[:, 1])
    union = pred.sum(dim=1) + target.sum(dim=1) - intersection
    return intersection / union.clamp(min=EPS)


def diou_loss_1d(pred: Tensor, target: Tensor) -> Tensor:
    """1-D distance-IoU loss per segment: ``1 − IoU + (Δcentre / enclosing length)²`` for segments
    given as (N, 2) distances to (start, end) from a shared point."""
    enclosing = torch.maximum(pred[:, 0], target[:, 0]) + torch.maximum(pred[:, 1], target[:, 1])
    centre_gap = 0.5 * ((pred[:, 1] - pred[:, 0]) - (target[:, 1] - target[:, 0]))
    return 1 - offsets_iou(pred, target) + (centre_gap / enclosing.clamp(min=EPS)) ** 2


class LossNormalizer:
    """ActionFormer's divisor of the losses: a running mean of the positive count per batch,
    ``N ← m·N + (1 − m)·max(num_pos, 1)``, starting at ``initial``."""

    def __init__(self, initial: float, momentum: float):
        self.value = float(initial)
        self.momentum = float(momentum)

    def update(self, num_positive: int) -> float:
        self.value = self.momentum * self.value + (1 - self.momentum) * max(int(num_positive), 1)
        return self.value
