"""Live sliding-window localization on video sources (DESIGN §5): ``StreamRunner`` and the
``asl-edge stream`` command. It calls the same ``asl_edge.runtime`` backends and
``asl_edge.postprocess`` as offline inference."""

from .engine import StreamError, StreamOptions, StreamRunner, check_model_and_extractor
from .merge import EventMerger

__all__ = ["EventMerger", "StreamError", "StreamOptions", "StreamRunner", "check_model_and_extractor"]
