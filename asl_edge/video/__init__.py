"""Video input: one ``open_source(uri, ...)`` for files, RTSP, V4L2 and CSI cameras, test patterns
and raw GStreamer pipelines, yielding ``Frame(pts_s, rgb)`` scaled on the pipeline (DESIGN §5)."""

from .pipeline import PRESETS, Geometry, build_pipeline
from .resample import Resampler
from .source import (Frame, SourceStats, VideoSource, auto_preset, gst, has_element, open_source, plan_source,
                     video_report)
from .uri import SourceSpec, VideoError, parse_uri

__all__ = [
    "PRESETS",
    "Frame",
    "Geometry",
    "Resampler",
    "SourceSpec",
    "SourceStats",
    "VideoError",
    "VideoSource",
    "auto_preset",
    "build_pipeline",
    "gst",
    "has_element",
    "open_source",
    "plan_source",
    "parse_uri",
    "video_report",
]
