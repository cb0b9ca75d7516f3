"""Label assignment: which pyramid points are positives of which ground-truth segment (DESIGN §2.5).

Every output point sits at ``t = i·s`` on the input grid of its level (stride ``s``) and regresses
distances within that level's range. A point is a candidate for a segment ``[st, ed]`` when

* centre sampling (``radius`` r): it lies strictly inside the segment cut to
  ``[m − r·s, m + r·s]`` around the segment centre ``m`` (without centre sampling: strictly inside
  the segment), and
* its larger distance to the two ends, ``max(t − st, ed − t)``, is within the level's regression
  range ``[lo, hi]``.

Among the candidate segments of a point the shortest wins; segments within 1e-3 of that length all
set their class (multi-hot target) and the first of them in the given order is the regression target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch
from torch import Tensor

# lengths within this of the shortest candidate's count as equally short (multi-hot targets)
LENGTH_TIE = 1e-3


@dataclass
class Assignment:
    """Targets of one video's N points.

    ``cls_targets`` (N, K) 0/1; ``reg_targets`` (N, 2) distances to (start, end) in units of the
    point's stride (zero on negatives); ``gt_index`` (N,) the assigned segment, −1 on negatives.
    """

    cls_targets: Tensor
    reg_targets: Tensor
    gt_index: Tensor

    @property
    def positive(self) -> Tensor:
        return self.gt_index >= 0


def point_grid(lengths: Sequence[int], strides: Sequence[int], regression_range: Sequence[Sequence[float]],
               device=None) -> Tensor:
    """(N, 4) rows ``[t, range_lo, range_hi, stride]`` for every point of every level, in level order."""
    rows: List[Tensor] = []
    for length, stride, (lo, hi) in zip(lengths, strides, regression_range):
        t = torch.arange(length, dtype=torch.float32, device=device) * stride
        consts = torch.tensor([lo, hi, stride], dtype=torch.float32, device=device).expand(length, 3)
        rows.append(torch.cat([t[:, None], consts], dim=1))
    return torch.cat(rows, dim=0)


def assign_points(points: Tensor, segments: Tensor, labels: Tensor, num_classes: int,
                  center_sample: bool = True, radius: float = 1.5) -> Assignment:
    """Assign the points (``point_grid``) of one video to its GT ``segments`` (G, 2) of ``labels`` (G,)."""
    num_points = points.shape[0]
    device = points.device
    if segments.numel() == 0:
        return Assignment(torch.zeros(num_points, num_classes, device=device),
                          torch.zeros(num_points, 2, device=device),
                          torch.full((num_points,), -1, dtype=torch.long, device=device))
    segments = segments.to(device=device, dtype=torch.float32)
    t, lo, hi, stride = (points[:, i:i + 1] for i in range(4))             # each (N, 1)
    start, end = segments[None, :, 0], segments[None, :, 1]                # each (1, G)
    to_start = t - start                                                   # (N, G)
    to_end = end - t
    if center_sample:
        centre = 0.5 * (start + end)
        inside = torch.minimum(t - torch.maximum(start, centre - radius * stride),
                               torch.minimum(end, centre + radius * stride) - t) > 0
    else:
        inside = torch.minimum(to_start, to_end) > 0
    farthest = torch.maximum(to_start, to_end)
    in_range = (farthest >= lo) & (farthest <= hi)
    lengths = (end - start).expand(num_points, -1)
    lengths = torch.where(inside & in_range, lengths, torch.full_like(lengths, float("inf")))
    shortest = lengths.min(dim=1, keepdim=True).values                    # (N, 1)
    winners = torch.isfinite(lengths) & (lengths <= shortest + LENGTH_TIE)  # (N, G)
    one_hot = torch.nn.functional.one_hot(labels.to(device).long(), num_classes).to(torch.float32)
    cls_targets = (winners.to(torch.float32) @ one_hot).clamp_(max=1.0)
    num_gt = segments.shape[0]
    order = torch.arange(num_gt, device=device).expand(num_points, -1)
    first = torch.where(winners, order, torch.full_like(order, num_gt)).min(dim=1).values
    gt_index = torch.where(first < num_gt, first, torch.full_like(first, -1))
    picked = gt_index.clamp(min=0)
    rows = torch.arange(num_points, device=device)
    reg_targets = torch.stack([to_start[rows, picked], to_end[rows, picked]], dim=1) / stride
    reg_targets = reg_targets * (gt_index >= 0)[:, None]
    return Assignment(cls_targets, reg_targets, gt_index)
