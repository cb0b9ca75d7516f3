"""A clip model exported elsewhere, used as an extractor by path.

Contract: a TorchScript file (``.ts``/``.pt``), an ONNX file (``.onnx``, run by ONNX Runtime) or
an OpenVINO IR (``.xml`` with its ``.bin``, run by OpenVINO on the CPU) taking one input,
``clips uint8 [B, T, H, W, 3]`` (RGB, frames as the source delivers them, normalisation inside
the model), and returning ``features float32 [B, D]`` (its first output when it has several).
Beside it, ``extractor.json`` says what it consumes: ``{"name", "num_frames", "frame_stride",
"fps", "width", "height", "crop", "dim"}`` (the keys :meth:`ClipExtractor.describe` writes) and
the artifact's ``precision``, which is also how OpenVINO compiles an IR: f32 for fp32, bf16 for
bf16 and int8 (whose quantized layers run in int8 and the rest in bf16).

Threads: ONNX Runtime and OpenVINO run each call on ``threads`` threads (0: every core this
process may use), OpenVINO as one stream tuned for latency: the streaming runtime has one
extractor worker, which hands it whole batches, so one request on every core finishes each batch
soonest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..video import Geometry
from .base import ClipExtractor, ClipSpec, ExtractorError

DESCRIPTION = "extractor.json"
METADATA = "metadata.json"            # an extractor export's, naming its artifact
REQUIRED = ("num_frames", "frame_stride", "fps", "width", "height", "dim")
SUFFIXES = (".xml", ".onnx", ".ts", ".pt")
# OpenVINO's inference precision per artifact precision
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "bf16"}


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                       # not Linux
        return os.cpu_count() or 1


def _model_in(folder: Path) -> Path:
    """The clip model of a folder: the artifact its metadata.json names, else its only (or first
    by SUFFIXES) model file."""
    try:
        artifact = json.loads((folder / METADATA).read_text()).get("artifact")
    except (OSError, ValueError, AttributeError):
        artifact = None
    if artifact:
        return folder / artifact
    candidates = sorted((p for p in folder.iterdir() if p.suffix in SUFFIXES and ".partial" not in p.name),
                        key=lambda p: SUFFIXES.index(p.suffix))
    if not candidates:
        raise ExtractorError(f"{folder} holds no .xml, .onnx, .ts or .pt clip model")
    return candidates[0]


class ExportedClipExtractor(ClipExtractor):
    """Runs an exported clip model (TorchScript, ONNX Runtime or OpenVINO) behind the extractor
    interface. ``precision`` is the artifact's own (from ``extractor.json``; ``precision`` is the
    fallback for files that do not say)."""

    def __init__(self, path, device: str = "cpu", precision: str = "fp32", threads: int = 0):
        path = Path(path)
        if path.is_dir():
            path = _model_in(path)
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
        self.device, self.precision = str(device), str(info.get("precision", precision))
        self.weights_sha256 = info.get("weights_sha256")
        self.path = path
        self.threads = threads or usable_cores()
        self._module = self._session = self._request = None
        # what runs it: openvino and onnxruntime keep their own thread pools (``threads``)
        self.runtime = {".xml": "openvino", ".onnx": "onnxruntime"}.get(path.suffix, "torchscript")
        if path.suffix == ".xml":
            self._request = self._openvino_request(path)
        elif path.suffix == ".onnx":
            self._session = self._onnxruntime_session(path)
            self._input = self._session.get_inputs()[0].name
        else:
            try:
                self._module = torch.jit.load(str(path), map_location=self.device).eval()
            except (RuntimeError, ValueError) as err:
                raise ExtractorError(f"{path} is not a loadable TorchScript clip model: {err}") from err

    def _onnxruntime_session(self, path: Path):
        try:
            import onnxruntime
        except ImportError as err:
            raise ExtractorError(f"{path} needs ONNX Runtime: pip install 'asl-edge[runtime]'") from err
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device.startswith("cuda") \
            else ["CPUExecutionProvider"]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        return onnxruntime.InferenceSession(str(path), options, providers=providers)

    def _openvino_request(self, path: Path):
        if self.device != "cpu":
            raise ExtractorError(f"{path} is an OpenVINO CPU clip model: use --device cpu")
        if self.precision not in OPENVINO_PRECISION:
            raise ExtractorError(f"{path.parent / DESCRIPTION} gives precision {self.precision!r}; an OpenVINO clip "
                                 f"model is {', '.join(OPENVINO_PRECISION)}")
        try:
            import openvino
        except ImportError as err:
            raise ExtractorError(f"{path} needs OpenVINO: pip install 'asl-edge[openvino]'") from err
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": self.threads,
                  "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[self.precision]}
        core = openvino.Core()
        try:
            return core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()
        except RuntimeError as err:
            raise ExtractorError(f"OpenVINO cannot load {path}: {err}") from err

    def _extract(self, clips: np.ndarray) -> np.ndarray:
        if self._request is not None:
            out = self._request.infer({0: np.ascontiguousarray(clips)})[0]
        elif self._session is not None:
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
