"""ASL's training-only modules: the action sensitivity evaluator and the contrastive loss.

* :class:`ClassSensitivity`: learnable per-class Gaussians over the relative position
  ``d = (m − t)/L`` of a point inside its action (DESIGN §2.3), one for classification and a start
  and an end Gaussian for localization.
* :class:`InstanceSensitivityHead`: the instance-level evaluator, a small head on detached pyramid
  features that predicts ``(q_cls, q_loc)`` per point.
* :func:`segment_embeddings` and :func:`contrastive_loss`: ASCL (DESIGN §2.4).
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.layers import ChannelLayerNorm, MaskedConv1d

# initial centres of the (classification, start, end) Gaussians: the middle, the start and the end
INITIAL_MU = (0.0, 0.5, -0.5)
MIN_SIGMA = 1e-3


def _softplus_inverse(y: float) -> float:
    return math.log(math.expm1(y))


class ClassSensitivity(nn.Module):
    """Per-class Gaussians ``g(d) = exp(−(d − μ)² / (2σ²))`` with learnable μ and σ, where
    ``σ = softplus(ρ) + 1e-3`` keeps σ positive (and the Gaussians finite) for any step size.

    ``forward(distance[P], classes[P]) -> (p_cls[P], p_loc[P])`` with ``p_cls = g_cls(d)`` and
    ``p_loc = ½(g_start(d) + g_end(d))``. μ starts at (0, +0.5, −0.5), σ at 1.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(INITIAL_MU).repeat(num_classes, 1))   # (K, 3)
        self.sigma_raw = nn.Parameter(torch.full((num_classes, 3), _softplus_inverse(1.0 - MIN_SIGMA)))  # (K, 3)

    @property
    def sigma(self) -> Tensor:
        return F.softplus(self.sigma_raw) + MIN_SIGMA

    def forward(self, distance: Tensor, classes: Tensor) -> Tuple[Tensor, Tensor]:
        mu = self.mu[classes]                                                       # (P, 3)
        sigma = F.softplus(self.sigma_raw[classes]) + MIN_SIGMA
        gauss = torch.exp(-(distance[:, None] - mu) ** 2 / (2 * sigma ** 2))
        return gauss[:, 0], 0.5 * (gauss[:, 1] + gauss[:, 2])


class InstanceSensitivityHead(nn.Module):
    """Instance-level evaluator: k=3 conv, LayerNorm, ReLU, 1x1 conv to 2 channels, sigmoid; shared
    across levels and fed detached features, so it never changes the detector's features.

    ``forward(feats[l] (B, C, T_l), masks[l] (B, T_l)) -> (B, N, 2)`` = (q_cls, q_loc) per point.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv = MaskedConv1d(dim, dim, 3)
        self.norm = ChannelLayerNorm(dim)
        self.out = MaskedConv1d(dim, 2, 1)

    def forward(self, feats: Sequence[Tensor], masks: Sequence[Tensor]) -> Tensor:
        outputs: List[Tensor] = []
        for x, mask in zip(feats, masks):
            m = mask.to(x.dtype).unsqueeze(1)
            hidden = F.relu(self.norm(self.conv(x.detach(), m)))
            outputs.append(torch.sigmoid(self.out(hidden, m)).transpose(1, 2))
        return torch.cat(outputs, dim=1)


Sensitivity = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]


def segment_embeddings(feats: Tensor, mask: Tensor, stride: float, segments: Sequence[Tensor],
                       labels: Sequence[Tensor], sensitivity: Optional[Sensitivity],
                       background_ratio: float) -> Tuple[Tensor, Tensor, Tensor]:
    """ASCL's vectors of a batch, from level-0 features ``feats`` (B, C, T) and ``mask`` (B, T).

    Per GT segment ``[s, e]`` (length L, centre m) with ``F`` its valid points ``t ∈ [s, e]``:
    ``f_cls = Σ_F p_cls(t)·f_t / |F|`` and ``f_loc = Σ_F p_loc(t)·f_t / |F|`` (p from ``sensitivity``
    at ``d = (m − t)/L``, detached; 1 when ``sensitivity`` is None), and ``f_bg`` = mean of the valid
    points in ``[s − δL, s) ∪ (e, e + δL]``. Segments without a point inside give no vectors, and
    segments without context give no ``f_bg``.

    Returns anchors (2G, C) = all f_cls then all f_loc, their classes (2G,), and backgrounds (G_bg, C).
    """
    f_cls, f_loc, classes, backgrounds = [], [], [], []
    positions = torch.arange(feats.shape[2], device=feats.device, dtype=torch.float32) * stride  # (T,)
    for b, (segs, labs) in enumerate(zip(segments, labels)):
        if segs.numel() == 0:
            continue
        segs = segs.to(feats.device, torch.float32)
        labs = labs.to(feats.device)
        start, end = segs[:, 0:1], segs[:, 1:2]                                     # (G, 1)
        length = (end - start).clamp(min=1e-6)
        valid = mask[b][None, :]
        inside = (positions >= start) & (positions <= end) & valid                  # (G, T)
        context = ((positions >= start - background_ratio * length) & (positions < start)
                   | (positions > end) & (positions <= end + background_ratio * length)) & valid
        count = inside.sum(dim=1)
        if sensitivity is None:
            p_cls = p_loc = inside.to(feats.dtype)
        else:
            distance = (0.5 * (start + end) - positions) / length                    # (G, T)
            num_seg = segs.shape[0]
            with torch.no_grad():
                p_cls, p_loc = sensitivity(distance.reshape(-1), labs.repeat_interleave(positions.numel()))
            p_cls = p_cls.reshape(num_seg, -1).to(feats.dtype) * inside
            p_loc = p_loc.reshape(num_seg, -1).to(feats.dtype) * inside
        x = feats[b].t()                                                             # (T, C)
        keep = count > 0
        denom = count.clamp(min=1).to(feats.dtype)[:, None]
        f_cls.append((p_cls @ x / denom)[keep])
        f_loc.append((p_loc @ x / denom)[keep])
        classes.append(labs[keep])
        ctx_count = context.sum(dim=1)
        has_ctx = keep & (ctx_count > 0)
        backgrounds.append((context.to(feats.dtype) @ x / ctx_count.clamp(min=1).to(feats.dtype)[:, None])[has_ctx])
    dim = feats.shape[1]
    if not f_cls:
        empty = feats.new_zeros(0, dim)
        return empty, torch.zeros(0, dtype=torch.long, device=feats.device), empty
    cls_vectors, loc_vectors = torch.cat(f_cls), torch.cat(f_loc)
    anchor_classes = torch.cat(classes)
    return (torch.cat([cls_vectors, loc_vectors]), torch.cat([anchor_classes, anchor_classes]),
            torch.cat(backgrounds))


def contrastive_loss(anchors: Tensor, classes: Tensor, backgrounds: Tensor, temperature: float) -> Tensor:
    """InfoNCE over L2-normalised vectors. For anchor i, its positives are the other anchors of its
    class and its negatives the anchors of other classes plus every background vector:

    ``ℓ_i = mean_{j ∈ P(i)} −log( e^{s_ij} / (e^{s_ij} + Σ_{n ∈ N(i)} e^{s_in}) )``, ``s = cos / τ``,

    averaged over the anchors that have a positive (0 when none has).
    """
    if anchors.shape[0] == 0:
        return anchors.sum() * 0
    z = F.normalize(anchors.float(), dim=1)
    sim = z @ z.t() / temperature                                                   # (A, A)
    same = classes[:, None] == classes[None, :]
    eye = torch.eye(len(classes), dtype=torch.bool, device=anchors.device)
    positive = same & ~eye
    neg_logits = sim.masked_fill(same, float("-inf"))
    if backgrounds.shape[0] > 0:
        bg = F.normalize(backgrounds.float(), dim=1)
        neg_logits = torch.cat([neg_logits, z @ bg.t() / temperature], dim=1)
    neg_lse = torch.logsumexp(neg_logits, dim=1, keepdim=True)                      # (A, 1), -inf if none
    pair_loss = torch.logaddexp(sim, neg_lse) - sim                                 # (A, A)
    num_pos = positive.sum(dim=1)
    has_pos = num_pos > 0
    if not bool(has_pos.any()):
        return anchors.sum() * 0
    per_anchor = (pair_loss * positive).sum(dim=1)[has_pos] / num_pos[has_pos]
    return per_anchor.mean()
