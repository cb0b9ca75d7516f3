"""The training objective: ActionFormer's losses with ASL's action sensitivity (DESIGN §2.3-2.4).

``L = L_cls + w_reg·L_loc + λ_s·L_mse + λ_c·L_ASCL`` where, with N the loss normaliser,

* ``L_cls = Σ_valid w_i·focal_i / N`` (focal summed over classes; ``w = h_cls`` on positives, 1 on
  negatives) and ``L_loc = Σ_pos h_loc·DIoU_i / N``;
* ``h = p + sg(q)``: ``p`` from the class-level Gaussians (gradients reach μ and σ), ``q`` from the
  instance-level head; a switched-off part drops its term, and with both off ``h = 1``;
* ``L_mse = mean_pos (q_cls − sg σ(logit_c))² + mean_pos (q_loc − sg tIoU)²`` trains the instance head;
* ``L_ASCL`` is :func:`contrastive_loss` on the level-0 features.

With every ASL part off this is ActionFormer's loss.

Under DistributedDataParallel (``world`` of several processes) each process holds a share of the
batch and the result is the whole batch's: N counts the positives of every process, each process's
sums count ``world.size`` times (DDP averages the gradients) and ASCL sees every process's vectors.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..config import Config
from .distributed import World
from .labels import assign_points, point_grid
from .losses import LossNormalizer, diou_loss_1d, offsets_iou, sigmoid_focal_loss
from .sensitivity import ClassSensitivity, InstanceSensitivityHead, contrastive_loss, segment_embeddings


class ASLCriterion(nn.Module):
    """Computes the loss of one batch from the network's pyramid and head outputs.

    Holds the trainable ASL parts (class-level Gaussians, instance-level head) and the loss
    normaliser; ``forward`` returns the total loss and a dict of its parts (floats). ``world``:
    the processes that share each batch (default: this one alone).
    """

    def __init__(self, config: Config, strides: Sequence[int], feature_dim: int, world: Optional[World] = None):
        super().__init__()
        self.world = world or World()
        t = config.train_cfg
        self.asl = t.asl
        self.num_classes = config.dataset.num_classes
        self.strides = list(strides)
        self.regression_range = [list(r) for r in config.model.regression_range]
        self.center_sample = t.center_sample == "radius"
        self.radius = t.center_sample_radius
        self.label_smoothing = t.label_smoothing
        self.loss_weight = t.loss_weight
        self.normalizer = LossNormalizer(t.init_loss_norm, t.loss_norm_momentum)
        self.class_sensitivity = ClassSensitivity(self.num_classes) if self.asl.class_level else None
        self.instance_head = InstanceSensitivityHead(feature_dim) if self.asl.instance_level else None

    def targets(self, lengths: Sequence[int], segments: Sequence[Tensor], labels: Sequence[Tensor],
                device) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Points (N, 4) and per-video stacked targets: cls (B, N, K), reg (B, N, 2), gt index (B, N)."""
        points = point_grid(lengths, self.strides, self.regression_range, device=device)
        assigned = [assign_points(points, segs.to(device), labs.to(device), self.num_classes,
                                  self.center_sample, self.radius) for segs, labs in zip(segments, labels)]
        return (points, torch.stack([a.cls_targets for a in assigned]),
                torch.stack([a.reg_targets for a in assigned]), torch.stack([a.gt_index for a in assigned]))

    def forward(self, feats: List[Tensor], masks: List[Tensor], logits: Tensor, offsets: Tensor,
                segments: Sequence[Tensor], labels: Sequence[Tensor]) -> Tuple[Tensor, Dict[str, float]]:
        logits, offsets = logits.float(), offsets.float()
        device = logits.device
        points, cls_t, reg_t, gt_index = self.targets([m.shape[1] for m in masks], segments, labels, device)
        valid = torch.cat(masks, dim=1)                                              # (B, N)
        positive = (gt_index >= 0) & valid
        num_positive = self.world.total(int(positive.sum()))                       # of the whole batch
        norm = self.normalizer.update(num_positive) if self.training else self.normalizer.value
        share = self.world.size           # this process's sums, as many times as DDP divides the gradients

        # per positive point: its video, point, assigned segment and class
        pos_b, pos_i = positive.nonzero(as_tuple=True)
        pos_g = gt_index[pos_b, pos_i]
        num_gt = max([1] + [len(s) for s in segments])
        seg_pad = torch.zeros(len(segments), num_gt, 2, device=device)
        lab_pad = torch.zeros(len(segments), num_gt, dtype=torch.long, device=device)
        for b, (segs, labs) in enumerate(zip(segments, labels)):
            seg_pad[b, :len(segs)] = segs.to(device, torch.float32)
            lab_pad[b, :len(labs)] = labs.to(device).long()
        gt_seg, gt_cls = seg_pad[pos_b, pos_g], lab_pad[pos_b, pos_g]
        pos_logits, pos_offsets, pos_reg = logits[pos_b, pos_i], offsets[pos_b, pos_i], reg_t[pos_b, pos_i]

        h_cls, h_loc, parts = self._sensitivity_weights(feats, masks, points[pos_i, 0], gt_seg, gt_cls,
                                                        pos_b, pos_i, pos_logits, pos_offsets, pos_reg,
                                                        num_positive, share)
        targets = cls_t * (1 - self.label_smoothing) + self.label_smoothing / (self.num_classes + 1)
        focal = sigmoid_focal_loss(logits, targets).sum(dim=-1)                      # (B, N)
        weights = torch.ones_like(focal).index_put((pos_b, pos_i), h_cls)
        cls_loss = (focal * weights)[valid].sum() / norm * share
        if len(pos_b):
            reg_loss = (h_loc * diou_loss_1d(pos_offsets, pos_reg)).sum() / norm * share
        else:
            reg_loss = offsets.sum() * 0
        if self.loss_weight > 0:
            reg_weight = self.loss_weight
        else:
            batch = self.world.average({"cls": float(cls_loss.detach()), "reg": float(reg_loss.detach())})
            reg_weight = batch["cls"] / max(batch["reg"], 0.01)
        total = cls_loss + reg_weight * reg_loss
        if "mse" in parts:
            total = total + self.asl.mse_weight * parts["mse"]
        if self.asl.contrastive:
            anchors, classes, backgrounds = segment_embeddings(
                feats[0].float(), masks[0], self.strides[0], segments, labels, self.class_sensitivity,
                self.asl.background_ratio)
            gather = self.world.gather_rows
            parts["ascl"] = contrastive_loss(gather(anchors), gather(classes), gather(backgrounds),
                                             self.asl.temperature)
            total = total + self.asl.contrastive_weight * parts["ascl"]
        report = {"cls": float(cls_loss.detach()), "reg": float(reg_loss.detach())}
        report.update({k: float(v.detach()) for k, v in parts.items()})
        report["num_pos"] = float(num_positive)
        return total, report

    def _sensitivity_weights(self, feats, masks, positions: Tensor, gt_seg: Tensor, gt_cls: Tensor,
                             pos_b: Tensor, pos_i: Tensor, pos_logits: Tensor, pos_offsets: Tensor,
                             pos_reg: Tensor, num_positive: int,
                             share: int) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        """(h_cls, h_loc) per positive point and the instance head's MSE loss (in ``parts``): the
        mean over the ``num_positive`` positives of the whole batch, counted ``share`` times."""
        h_cls: List[Tensor] = []
        h_loc: List[Tensor] = []
        parts: Dict[str, Tensor] = {}
        if self.class_sensitivity is not None:
            length = (gt_seg[:, 1] - gt_seg[:, 0]).clamp(min=1e-6)
            distance = (0.5 * (gt_seg[:, 0] + gt_seg[:, 1]) - positions) / length
            p_cls, p_loc = self.class_sensitivity(distance, gt_cls)
            h_cls.append(p_cls)
            h_loc.append(p_loc)
        if self.instance_head is not None:
            q = self.instance_head(feats, masks).float()[pos_b, pos_i]                 # (P, 2)
            with torch.no_grad():
                target_cls = torch.sigmoid(pos_logits.gather(1, gt_cls[:, None]))[:, 0]
                target_loc = offsets_iou(pos_offsets, pos_reg)
            if num_positive:
                parts["mse"] = (((q[:, 0] - target_cls) ** 2).sum() / num_positive * share
                                + ((q[:, 1] - target_loc) ** 2).sum() / num_positive * share)
            else:
                parts["mse"] = q.sum() * 0
            h_cls.append(q[:, 0].detach())
            h_loc.append(q[:, 1].detach())
        ones = torch.ones(len(pos_b), device=positions.device)
        return (sum(h_cls) if h_cls else ones), (sum(h_loc) if h_loc else ones), parts
