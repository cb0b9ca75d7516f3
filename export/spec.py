"""What an export is asked for (ExportSpec) and what a format exporter returns (Exported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict

FORMATS = ("torchscript", "exported", "aoti", "onnx", "onnx-trt", "engine")
PRECISIONS = ("fp32", "fp16")
INPUT_NAMES = ("features", "mask")
NETWORK_OUTPUTS = ("cls_logits", "offsets")
DETECTION_OUTPUTS = ("segments", "scores", "labels", "count")


class ExportError(RuntimeError):
    """An export that cannot be done as asked; the message says why and what to do instead."""


@dataclass
class ExportSpec:
    """One export request.

    window: the input length T the artifact is built (and, when static, fixed) for.
    dynamic_length: T may vary in multiples of ``length_multiple`` up to ``max_length``.
    postprocess: decode + NMS in the graph; outputs become fixed-size padded detections
        (segments (B, max_out, 2) in grid units, scores (B, max_out), labels (B, max_out),
        count (B,)), and the length is static.
    """

    format: str
    precision: str = "fp32"
    window: int = 2304
    batch: int = 1
    postprocess: bool = False
    dynamic_length: bool = False
    dynamic_batch: bool = False
    length_multiple: int = 1
    max_length: int = 2304
    device: str = "cpu"
    opset: int = 18

    @property
    def output_names(self):
        return DETECTION_OUTPUTS if self.postprocess else NETWORK_OUTPUTS


@dataclass
class Exported:
    """A written artifact: its path and the format-specific metadata to record."""

    path: Path
    metadata: Dict = field(default_factory=dict)
