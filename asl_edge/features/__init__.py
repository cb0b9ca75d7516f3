"""Clip features: extractors behind one interface (DESIGN §5.4) and the code that turns a video
source into features, shared by ``asl-edge extract-features`` and the streaming runtime."""

from __future__ import annotations

from .base import ClipAssembler, ClipExtractor, ClipSpec, ExtractorError
from .motion import MotionExtractor

EXTRACTORS = ("i3d-rgb", "motion")


def load_extractor(name: str, device: str = "cpu", precision: str = "fp32", threads: int = 0) -> ClipExtractor:
    """``motion``, ``i3d-rgb`` (weights from the cache: ``asl-edge weights i3d``) or the path of
    an exported clip model (:mod:`asl_edge.features.exported`; it has its own precision, and runs
    ONNX Runtime and OpenVINO models on ``threads`` threads, 0: every core this process may use)."""
    if name == "motion":
        return MotionExtractor(device=device, precision=precision)
    if name == "i3d-rgb":
        from .i3d import I3DExtractor
        from .weights import load_i3d_weights

        state, sha = load_i3d_weights()
        return I3DExtractor(state, sha, device=device, precision=precision)
    from .exported import ExportedClipExtractor

    return ExportedClipExtractor(name, device=device, precision=precision, threads=threads)


__all__ = ["EXTRACTORS", "ClipAssembler", "ClipExtractor", "ClipSpec", "ExtractorError", "MotionExtractor",
           "load_extractor"]
