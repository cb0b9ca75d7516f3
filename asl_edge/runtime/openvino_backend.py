"""OpenVINO backend for the ``openvino`` artifacts (IR ``model.xml`` + ``model.bin``) on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .backend import ArtifactError, Backend

try:
    import openvino
except ImportError as _err:  # pragma: no cover - depends on the environment
    raise ImportError(f"the OpenVINO backend needs openvino ({_err}): pip install 'asl-edge[openvino]'") from _err


class OpenVinoBackend(Backend):
    """Runs an OpenVINO IR on OpenVINO's CPU plugin, compiled for latency with the inference
    precision recorded at export (``openvino_inference_precision``: f32 for fp32 exports, bf16 for
    bf16 and int8 ones, whose quantized layers run in int8). Option: ``threads`` (inference threads,
    0 = OpenVINO's default, one per core)."""

    format = "openvino"

    def __init__(self, metadata: Dict, artifact: Path, device: Union[str, torch.device] = "cpu", threads: int = 0,
                 **options):
        if options:
            raise TypeError(f"OpenVinoBackend got unknown options {sorted(options)} (it takes threads)")
        super().__init__(metadata, artifact, device)
        if self.device.type != "cpu":
            raise ArtifactError(f"{artifact} is an OpenVINO CPU artifact; load it with device='cpu'")
        config = {"PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": metadata.get("openvino_inference_precision", "f32")}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = openvino.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(artifact)), "CPU", config)
        except RuntimeError as err:
            raise ArtifactError(f"OpenVINO cannot load {artifact}: {err}") from err
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.any_name for port in self.compiled.inputs]
        self.output_names = [port.any_name for port in self.compiled.outputs]
        self.check_names(self.input_names, self.output_names)

    def _run(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, ...]:
        results = self.request.infer({self.input_names[0]: features.numpy(),
                                      self.input_names[1]: mask.numpy().astype(np.bool_, copy=False)})
        return tuple(torch.from_numpy(np.array(results[port])) for port in self.compiled.outputs)
