"""The 1-D NMS op with fixed-size outputs (DESIGN §4), as exported graphs and TensorRT use it.

``nms1d`` runs ``torch.ops.asl_edge.nms1d`` when the native library is loaded and has a kernel
for the inputs, else ``nms1d_reference``, which pads the result of the pure-PyTorch
``batched_nms_reference`` (both in :mod:`asl_edge.ops.nms_reference`). ``batched_nms``
(ActionFormer's signature, variable-size outputs) dispatches the same way.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .library import use_native
from .nms_reference import batched_nms_reference, nms1d_reference


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


def batched_nms(segs: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, min_score: float,
                max_seg_num: int, use_soft_nms: bool = True, multiclass: bool = True, sigma: float = 0.5,
                voting_thresh: float = 0.75) -> Tuple[Tensor, Tensor, Tensor]:
    """ActionFormer-compatible NMS: same arguments and results as ``batched_nms_reference``.

    Outside TorchScript it runs the native ``asl_edge::nms1d`` op when ``ASL_EDGE_OPS`` allows
    it and the library supports the inputs (see :mod:`asl_edge.ops`); labels outside
    ``[0, 2^31 - 1)`` and ``max_seg_num <= 0`` always take the reference.
    """
    if not torch.jit.is_scripting():
        if segs.shape[0] > 0 and max_seg_num > 0 and use_native("nms1d", segs, scores, labels):
            lowest, highest = int(labels.min()), int(labels.max())
            if lowest >= 0 and highest < 2 ** 31 - 1:
                out_segs, out_scores, out_labels, count = torch.ops.asl_edge.nms1d(
                    segs, scores, labels, "soft" if use_soft_nms else "hard", float(iou_threshold), float(sigma),
                    float(min_score), int(max_seg_num), bool(multiclass), float(voting_thresh), highest + 1)
                kept = int(count[0])
                return out_segs[:kept], out_scores[:kept], out_labels[:kept].to(labels.dtype)
    return batched_nms_reference(segs, scores, labels, iou_threshold, min_score, max_seg_num, use_soft_nms,
                                 multiclass, sigma, voting_thresh)
