"""ONNX Runtime backend for the ``onnx`` (portable) and ``onnx-trt`` (TensorRT flavour, through the
Python custom ops of :mod:`.ort_custom_ops`) artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .backend import ArtifactError, Backend

try:
    import onnxruntime
except ImportError as _err:  # pragma: no cover - depends on the environment
    raise ImportError(f"the ONNX Runtime backend needs onnxruntime ({_err}): pip install 'asl-edge[runtime]'") \
        from _err


class OnnxRuntimeBackend(Backend):
    """Runs an exported ``.onnx`` file in ONNX Runtime.

    Options: ``providers`` (ONNX Runtime execution providers; default CPU, or CUDA then CPU when
    ``device`` is cuda and ONNX Runtime has the CUDA provider), ``threads`` (intra-op threads, 0 =
    ONNX Runtime's default) and ``optimization`` (``"all"`` (default), ``"extended"``, ``"basic"`` or
    ``"none"``). Inputs and outputs pass through host memory (numpy)."""

    format = "onnx"

    _LEVELS = {"none": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}

    def __init__(self, metadata: Dict, artifact: Path, device: Union[str, torch.device] = "cpu",
                 providers: Optional[Sequence[str]] = None, threads: int = 0, optimization: str = "all",
                 **options):
        if options:
            raise TypeError(f"OnnxRuntimeBackend got unknown options {sorted(options)} "
                            "(it takes providers, threads, optimization)")
        super().__init__(metadata, artifact, device)
        self.format = metadata.get("format", "onnx")
        self.providers = self._providers(providers)
        if optimization not in self._LEVELS:
            raise ValueError(f"optimization must be one of {', '.join(self._LEVELS)}, got {optimization!r}")
        if self.format == "onnx-trt":
            try:
                from . import ort_custom_ops
            except ImportError as err:
                raise ArtifactError(f"{artifact} is the TensorRT-flavour graph: running it in ONNX Runtime needs "
                                    f"the asl_edge custom ops: {err}") from err
            options_ = ort_custom_ops.session_options()
            model = ort_custom_ops.prepare_model(self._read(artifact)).SerializeToString()
        else:                                   # the portable graph needs onnxruntime alone
            options_ = onnxruntime.SessionOptions()
            model = str(artifact)
        options_.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, self._LEVELS[optimization])
        if threads:
            options_.intra_op_num_threads = int(threads)
        try:
            self.session = onnxruntime.InferenceSession(model, options_, providers=self.providers)
        except Exception as err:  # ORT raises its own Fail/InvalidGraph/NotImplemented kinds
            raise ArtifactError(f"ONNX Runtime cannot load {artifact}: {err}") from err
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.check_names(self.input_names, self.output_names)

    def _providers(self, providers: Optional[Sequence[str]]) -> List[str]:
        available = onnxruntime.get_available_providers()
        if providers:
            missing = [p for p in providers if p not in available]
            if missing:
                raise ValueError(f"ONNX Runtime providers {missing} are not available here (available: {available})")
            return list(providers)
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise ValueError("device cuda asked for, but this ONNX Runtime has no CUDAExecutionProvider "
                                 "(pip install onnxruntime-gpu) — use device='cpu'")
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    @staticmethod
    def _read(artifact: Path):
        import onnx

        try:
            model = onnx.load(str(artifact))
        except Exception as err:  # protobuf's DecodeError and OSError alike
            raise ArtifactError(f"{artifact} is not a readable ONNX model: {err}") from err
        if not model.graph.node:
            raise ArtifactError(f"{artifact} is not a readable ONNX model: its graph is empty")
        return model

    def _run(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, ...]:
        feeds = {self.input_names[0]: features.detach().cpu().numpy(),
                 self.input_names[1]: mask.detach().cpu().numpy().astype(np.bool_, copy=False)}
        outputs = self.session.run(self.output_names, feeds)
        return tuple(torch.from_numpy(np.ascontiguousarray(out)).to(self.device) for out in outputs)
