"""What an export is asked for (ExportSpec) and what a format exporter returns (Exported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

FORMATS = ("torchscript", "exported", "aoti", "onnx", "onnx-trt", "engine", "openvino")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# the formats that take each precision (bf16/int8: the CPU engine that measured fastest, OpenVINO)
PRECISION_FORMATS = {"fp32": FORMATS, "fp16": tuple(f for f in FORMATS if f != "openvino"),
                     "bf16": ("openvino",), "int8": ("openvino",)}
INPUT_NAMES = ("features", "mask")
NETWORK_OUTPUTS = ("cls_logits", "offsets")
DETECTION_OUTPUTS = ("segments", "scores", "labels", "count")


class ExportError(RuntimeError):
    """An export that cannot be done as asked; the message says why and what to do instead."""


@dataclass
class ExportSpec:
    """One export request.

    window: the input length T the artifact is built (and, when static, fixed) for; None: the
        config's max_seq_len.
    dynamic_length: T may vary in multiples of ``length_multiple`` from ``min_length`` up to
        ``max_length`` (None until validated: 4x the window).
    postprocess: decode + NMS in the graph; outputs become fixed-size padded detections
        (segments (B, max_out, 2) in grid units, scores (B, max_out), labels (B, max_out),
        count (B,)), and the length is static.
    calibration: int8 only: a folder of (T, C) .npy feature files or a dataset config (preset or
        YAML) whose training split calibrates the quantization; None: the checkpoint's own
        training split. calibration_windows caps the number of calibration windows.
    """

    format: str
    precision: str = "fp32"
    window: Optional[int] = None
    batch: int = 1
    postprocess: bool = False
    dynamic_length: bool = False
    dynamic_batch: bool = False
    length_multiple: int = 1
    min_length: int = 1
    max_length: Optional[int] = None
    device: str = "cpu"
    opset: int = 18
    calibration: Optional[str] = None
    calibration_windows: int = 128

    @property
    def output_names(self):
        return DETECTION_OUTPUTS if self.postprocess else NETWORK_OUTPUTS

    @property
    def trace_length(self) -> int:
        """T of the example input: the window, but at least two units when T is dynamic (a
        dynamic size traced at one unit would be specialised to it)."""
        if self.dynamic_length:
            return max(self.window, 2 * self.length_multiple)
        return self.window


def dynamic_shapes(spec: ExportSpec) -> Optional[Tuple[Dict[int, Any], Dict[int, Any]]]:
    """``torch.export`` dynamic shapes of (features, mask) for the spec's dynamic batch and length
    (T = length_multiple x units, units from min_length to max_length), None when all is static."""
    if not (spec.dynamic_batch or spec.dynamic_length):
        return None
    from torch.export import Dim

    features: Dict[int, Any] = {}
    mask: Dict[int, Any] = {}
    if spec.dynamic_batch:
        features[0] = mask[0] = Dim("batch", min=1, max=1024)
    if spec.dynamic_length:
        unit = spec.length_multiple
        top = max(spec.max_length // unit, spec.trace_length // unit)
        if unit > 1:
            length = unit * Dim("units", min=max(spec.min_length // unit, 1), max=top)
        else:                                           # a plain Dim must not include 1 (it would specialise)
            length = Dim("T", min=max(spec.min_length, 2), max=top)
        features[2] = mask[1] = length
    return features, mask


@dataclass
class Exported:
    """A written artifact: its path and the format-specific metadata to record."""

    path: Path
    metadata: Dict = field(default_factory=dict)
