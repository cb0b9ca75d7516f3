"""A clip model exported elsewhere, used as an extractor by path.

Contract: a TorchScript file (``.ts``/``.pt``) or an ONNX file (``.onnx``) taking one input,
``clips uint8 [B, T, H, W, 3]`` (RGB, frames as the source delivers them, normalisation inside
the model), and returning ``features float32 [B, D]`` (its first output when it has several).
Beside it, ``extractor.json`` says what it consumes: ``{"name", "num_frames", "frame_stride",
"fps", "width", "height", "crop", "dim"}`` (the keys :meth:`ClipExtractor.describe` writes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..video import Geometry
from .base import ClipExtractor, ClipSpec, ExtractorError

DESCRIPTION = "extractor.json"
REQUIRED = ("num_frames", "frame_stride", "fps", "width", "height", "dim")


class ExportedClipExtractor(ClipExtractor):
    """Runs an exported clip model (TorchScript or ONNX Runtime) behind the extractor interface."""

    def __init__(self, path, device: str = "cpu", precision: str = "fp32"):
        path = Path(path)
        if path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.suffix in (".ts", ".pt", ".onnx"))
            if not candidates:
                raise ExtractorError(f"{path} holds no .ts, .pt or .onnx clip model")
            path = candidates[0]
        if not path.is_file():
            raise ExtractorError(f"extractor {path} not found (give motion, i3d-rgb or an exported clip model)")
        described = path.parent / DESCRIPTION
        try:
            info = json.loads(described.read_text())
        except FileNotFoundError:
            raise ExtractorError(f"{described} not found: an exported clip model needs it beside it "
                                 f"(keys {', '.join(REQUIRED)})") from None
        except ValueError as err:
            raise ExtractorError(f"{described} is not valid JSON: {err}") from err
        missing = [key for key in REQUIRED if key not in info]
        if missing:
            raise ExtractorError(f"{described} lacks {', '.join(missing)}")
        self.name = str(info.get("name", path.stem))
        self.clip = ClipSpec(int(info["num_frames"]), int(info["frame_stride"]), float(info["fps"]),
                             Geometry(int(info["width"]), int(info["height"]), float(info.get("crop", 1.0))))
        self.dim = int(info["dim"])
        self.device, self.precision = str(device), precision
        self.weights_sha256 = info.get("weights_sha256")
        self.path = path
        if path.suffix == ".onnx":
            try:
                import onnxruntime
            except ImportError as err:
                raise ExtractorError(f"{path} needs ONNX Runtime: pip install 'asl-edge[runtime]'") from err
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device.startswith("cuda") \
                else ["CPUExecutionProvider"]
            self._session = onnxruntime.InferenceSession(str(path), providers=providers)
            self._input = self._session.get_inputs()[0].name
            self._module = None
        else:
            try:
                self._module = torch.jit.load(str(path), map_location=self.device).eval()
            except (RuntimeError, ValueError) as err:
                raise ExtractorError(f"{path} is not a loadable TorchScript clip model: {err}") from err

    def _extract(self, clips: np.ndarray) -> np.ndarray:
        if self._module is None:
            out = self._session.run(None, {self._input: np.ascontiguousarray(clips)})[0]
        else:
            with torch.inference_mode():
                out = self._module(torch.from_numpy(np.ascontiguousarray(clips)).to(self.device))
            out = (out[0] if isinstance(out, (tuple, list)) else out).float().cpu().numpy()
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (clips.shape[0], self.dim):
            raise ExtractorError(f"{self.path} returned {list(out.shape)}, {DESCRIPTION} promises "
                                 f"[{clips.shape[0]}, {self.dim}]")
        return out
