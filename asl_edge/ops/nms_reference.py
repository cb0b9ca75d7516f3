"""1-D non-maximum suppression (DESIGN §3) in pure PyTorch: the definition of the op
``asl_edge::nms1d`` (:mod:`asl_edge.ops.nms1d`), the ground truth of its kernels and the fallback
without them; it depends on nothing else in :mod:`asl_edge.ops`.

Semantics follow ActionFormer's ``batched_nms`` and its CPU kernels exactly: segment length
is ``end - start + 1e-6``; soft-NMS repeatedly takes the first maximum of the remaining
candidates, decays the rest and drops candidates below ``min_score`` by moving the last
candidate into their place; hard NMS keeps candidates with score > ``min_score`` in
descending score order and suppresses IoU >= ``iou_threshold``. Where ActionFormer's sorts
leave the order of equal scores open, these functions use stable sorts (the earlier input
wins), so results are deterministic. All functions are TorchScript-compatible.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


def segment_iou(seg: Tensor, segs: Tensor) -> Tensor:
    """IoU of one segment (2,) with each of segs (N, 2), using length = end - start + 1e-6."""
    inter = (torch.minimum(seg[1], segs[:, 1]) - torch.maximum(seg[0], segs[:, 0])).clamp(min=0)
    seg_len = seg[1] - seg[0] + 1e-6
    lens = segs[:, 1] - segs[:, 0] + 1e-6
    return inter / (seg_len + lens - inter)


def soft_nms_1d(segs: Tensor, scores: Tensor, iou_threshold: float, sigma: float, min_score: float,
                method: str = "gaussian", max_out: int = 0) -> Tuple[Tensor, Tensor, Tensor]:
    """Soft-NMS of one group. Returns kept segments (M, 2), their decayed scores (M,) and
    their indices into the input (M,), in the order they were selected; with ``max_out > 0``
    it stops after that many selections (the first ones never depend on later rounds).

    ``method``: ``"gaussian"`` decays by ``exp(-IoU²/sigma)``; ``"linear"`` by ``1 - IoU`` above
    the threshold; ``"hard"`` sets scores above the threshold to 0.
    """
    if method not in ["gaussian", "linear", "hard"]:
        raise ValueError("soft_nms_1d: method must be 'gaussian', 'linear' or 'hard'")
    n = segs.shape[0]
    # working state, permuted in place: which input sits at each position, and its current score
    order = torch.arange(n, dtype=torch.long, device=segs.device)
    sc = scores.clone()
    count = n
    limit = max_out if max_out > 0 else n
    i = 0
    while i < count and i < limit:
        best = i + int(torch.argmax(sc[i:count]))
        if best != i:
            pair = torch.tensor([i, best], device=segs.device)
            swapped = pair.flip(0)
            order[pair] = order[swapped]
            sc[pair] = sc[swapped]
        rest = i + 1
        if rest < count:
            iou = segment_iou(segs[order[i]], segs[order[rest:count]])
            if method == "gaussian":
                weight = torch.exp(-(iou * iou) / sigma)
            elif method == "linear":
                weight = torch.where(iou >= iou_threshold, 1.0 - iou, torch.ones_like(iou))
            else:
                weight = torch.where(iou >= iou_threshold, torch.zeros_like(iou), torch.ones_like(iou))
            sc[rest:count] = sc[rest:count] * weight
            count = _drop_low_scores(order, sc, rest, count, min_score)
        i += 1
    count = min(count, limit)
    return segs[order[:count]], sc[:count].clone(), order[:count].clone()


def _drop_low_scores(order: Tensor, sc: Tensor, first: int, count: int, min_score: float) -> int:
    """Remove entries of [first, count) with score < min_score in place, the way a forward scan
    that fills each hole with the current last entry does: the j-th hole (ascending) receives
    the j-th surviving entry counted from the end. Returns the new count."""
    low = sc[first:count] < min_score
    num_low = int(low.sum())
    if num_low == 0:
        return count
    new_count = count - num_low
    positions = torch.arange(first, count, device=sc.device)
    holes = positions[low & (positions < new_count)]
    movers = positions[(~low) & (positions >= new_count)].flip(0)
    order[holes] = order[movers]
    sc[holes] = sc[movers]
    return new_count


def hard_nms_1d(segs: Tensor, scores: Tensor, iou_threshold: float, min_score: float, max_out: int = 0) -> Tensor:
    """Greedy NMS of one group: indices of the kept candidates (score > min_score), by descending
    score (stable), at most ``max_out`` of them when ``max_out > 0``."""
    candidates = torch.nonzero(scores > min_score).flatten() if min_score > 0 else \
        torch.arange(scores.shape[0], device=scores.device)
    order = candidates[torch.sort(scores[candidates], descending=True, stable=True)[1]]
    segs = segs[order]
    keep = torch.ones(order.shape[0], dtype=torch.bool, device=segs.device)
    num_kept = 0
    for i in range(order.shape[0]):
        if bool(keep[i]):
            num_kept += 1
            if num_kept == max_out:
                keep[i + 1:] = False
                break
            iou = segment_iou(segs[i], segs[i + 1:])
            keep[i + 1:] = keep[i + 1:] & (iou < iou_threshold)
    return order[keep]


def segment_voting(nms_segs: Tensor, all_segs: Tensor, all_scores: Tensor, iou_threshold: float) -> Tensor:
    """Refine each kept segment as the score·IoU-weighted mean of all candidate segments whose
    IoU with it is >= ``iou_threshold`` (plain lengths, no epsilon)."""
    inter = (torch.minimum(nms_segs[:, None, 1], all_segs[None, :, 1])
             - torch.maximum(nms_segs[:, None, 0], all_segs[None, :, 0])).clamp(min=0)
    union = (nms_segs[:, None, 1] - nms_segs[:, None, 0]) + (all_segs[None, :, 1] - all_segs[None, :, 0]) - inter
    iou = inter / union
    weights = (iou >= iou_threshold).to(all_scores.dtype) * all_scores[None, :] * iou
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights @ all_segs


def _nms_group(segs: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, min_score: float,
               max_seg_num: int, use_soft_nms: bool, sigma: float) -> Tuple[Tensor, Tensor, Tensor]:
    if use_soft_nms:
        kept, kept_scores, kept_idx = soft_nms_1d(segs, scores, iou_threshold, sigma, min_score, "gaussian",
                                                  max_seg_num)
    else:
        kept_idx = hard_nms_1d(segs, scores, iou_threshold, min_score, max_seg_num)
        kept, kept_scores = segs[kept_idx], scores[kept_idx]
    return kept, kept_scores, labels[kept_idx]


def batched_nms_reference(segs: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, min_score: float,
                          max_seg_num: int, use_soft_nms: bool = True, multiclass: bool = True, sigma: float = 0.5,
                          voting_thresh: float = 0.75) -> Tuple[Tensor, Tensor, Tensor]:
    """ActionFormer-compatible NMS in pure PyTorch: same arguments, same results.

    Args:
        segs: (N, 2) float (start, end); scores: (N,); labels: (N,) int64.
        multiclass: NMS per class independently (no voting); otherwise class-agnostic NMS
            followed by segment voting when ``voting_thresh > 0``.
    Returns:
        (segs (M, 2), scores (M,), labels (M,)) sorted by descending score (stable), at most
        ``max_seg_num`` of them.
    """
    if segs.shape[0] == 0:
        return (torch.zeros((0, 2), dtype=segs.dtype), torch.zeros((0,), dtype=scores.dtype),
                torch.zeros((0,), dtype=labels.dtype))
    if multiclass:
        out_segs = []
        out_scores = []
        out_labels = []
        for cls in torch.unique(labels):
            members = torch.nonzero(labels == cls).flatten()
            s, sc, lb = _nms_group(segs[members], scores[members], labels[members], iou_threshold, min_score,
                                   max_seg_num, use_soft_nms, sigma)
            out_segs.append(s)
            out_scores.append(sc)
            out_labels.append(lb)
        new_segs = torch.cat(out_segs)
        new_scores = torch.cat(out_scores)
        new_labels = torch.cat(out_labels)
    else:
        new_segs, new_scores, new_labels = _nms_group(segs, scores, labels, iou_threshold, min_score, max_seg_num,
                                                      use_soft_nms, sigma)
        if voting_thresh > 0:
            new_segs = segment_voting(new_segs, segs, scores, voting_thresh)
    order = torch.sort(new_scores, descending=True, stable=True)[1][:max_seg_num]
    return new_segs[order], new_scores[order], new_labels[order]


def nms1d_reference(segments: Tensor, scores: Tensor, labels: Tensor, method: str, iou_threshold: float,
                    sigma: float, min_score: float, max_out: int, multiclass: bool, voting_threshold: float,
                    num_classes: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pure-PyTorch ``nms1d``: ``batched_nms_reference`` padded to ``max_out``."""
    labels = labels.long()
    if multiclass:
        inside = (labels >= 0) & (labels < num_classes)
        segments, scores, labels = segments[inside], scores[inside], labels[inside]
    kept_segs, kept_scores, kept_labels = batched_nms_reference(
        segments, scores, labels, iou_threshold, min_score, max_out, method == "soft", multiclass, sigma,
        voting_threshold)
    count = kept_segs.shape[0]
    out_segs = torch.zeros((max_out, 2), dtype=segments.dtype, device=segments.device)
    out_scores = torch.zeros((max_out,), dtype=scores.dtype, device=scores.device)
    out_labels = torch.full((max_out,), -1, dtype=torch.long, device=labels.device)
    out_segs[:count] = kept_segs
    out_scores[:count] = kept_scores
    out_labels[:count] = kept_labels
    return out_segs, out_scores, out_labels, torch.tensor([count], dtype=torch.int32, device=segments.device)
