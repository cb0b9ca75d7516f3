"""Post-processing: decoding, 1-D NMS and grid -> seconds (DESIGN §3). The NMS is the
``asl_edge.ops`` op (native when built) and its pure-PyTorch reference."""

from ..ops.nms1d import batched_nms
from ..ops.nms_reference import batched_nms_reference, hard_nms_1d, segment_iou, segment_voting, soft_nms_1d
from .decode import decode_segments
from .timebase import (FeatureGrid, default_duration, grid_to_seconds, positive_number, resolve_fps,
                       seconds_to_grid, video_grid)

__all__ = [
    "FeatureGrid",
    "batched_nms",
    "batched_nms_reference",
    "decode_segments",
    "default_duration",
    "grid_to_seconds",
    "hard_nms_1d",
    "positive_number",
    "resolve_fps",
    "seconds_to_grid",
    "segment_iou",
    "segment_voting",
    "soft_nms_1d",
    "video_grid",
]
