"""The 1-D NMS op with fixed-size outputs (DESIGN §4), as exported graphs and TensorRT use it.

``nms1d`` runs ``torch.ops.asl_edge.nms1d`` when the native library is loaded and has a kernel
for the inputs, else ``nms1d_reference``, which pads the result of the pure-PyTorch
``asl_edge.postprocess.nms.batched_nms_reference``. ``batched_nms`` (ActionFormer's
signature, variable-size outputs) dispatches the same way.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..postprocess import nms as reference_nms   # a cycle: read its attributes at call time only
from .library import use_native

def nms1d(segments: Tensor, scores: Tensor, labels: Tensor, method: str = "soft", iou_threshold: float = 0.1,
          sigma: float = 0.5, min_score: float = 0.001, max_out: int = 200, multiclass: bool = True,
          voting_threshold: float = 0.0, num_classes: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """NMS of one video's candidates with outputs padded to ``max_out``.

    Args:
        segments: (N, 2) float32 (start, end); scores: (N,) float32; labels: (N,) integer.
        method: ``"soft"`` (Gaussian soft-NMS with ``sigma``) or ``"hard"`` (greedy, ``iou_threshold``).
        multiclass: NMS per class; otherwise class-agnostic, then segment voting when
            ``voting_threshold > 0``.
        num_classes: labels lie in ``[0, num_classes)`` (others are ignored in multiclass mode);
            defaults to ``labels.max() + 1`` (give it when tracing or exporting: the default
            depends on the data).

    Returns:
        segments (max_out, 2), scores (max_out,), labels (max_out,) int64 and count (1,) int32:
        the first ``count`` entries are the kept candidates by descending score, the rest are
        0, 0 and -1.
    """
    if method != "soft" and method != "hard":
        raise ValueError("nms1d: method must be 'soft' or 'hard', got " + method)
    if max_out <= 0:
        raise ValueError("nms1d: max_out must be positive, got " + str(max_out))
    classes = num_classes if num_classes is not None else (int(labels.max()) + 1 if labels.numel() > 0 else 1)
    if not torch.jit.is_scripting():
        if use_native("nms1d", segments, scores, labels):
            return torch.ops.asl_edge.nms1d(segments, scores, labels, method, float(iou_threshold), float(sigma),
                                            float(min_score), int(max_out), bool(multiclass),
                                            float(voting_threshold), int(classes))
    return nms1d_reference(segments, scores, labels, method, iou_threshold, sigma, min_score, max_out, multiclass,
                           voting_threshold, classes)


def nms1d_reference(segments: Tensor, scores: Tensor, labels: Tensor, method: str, iou_threshold: float,
                    sigma: float, min_score: float, max_out: int, multiclass: bool, voting_threshold: float,
                    num_classes: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pure-PyTorch ``nms1d``: ``batched_nms_reference`` padded to ``max_out``."""
    labels = labels.long()
    if multiclass:
        inside = (labels >= 0) & (labels < num_classes)
        segments, scores, labels = segments[inside], scores[inside], labels[inside]
    kept_segs, kept_scores, kept_labels = reference_nms.batched_nms_reference(
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
