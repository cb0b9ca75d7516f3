"""Backends over PyTorch artifacts: eager (a checkpoint), TorchScript, torch.export programs and
AOTInductor packages. The eager and TorchScript backends can replay a CUDA graph."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Tuple, Union

import torch
from torch import Tensor

from ..config import config_to_dict
from ..model import CheckpointError, input_channels, load_checkpoint
from ..ops import native_state
from .backend import ArtifactError, Backend

Runner = Callable[[Tensor, Tensor], Tuple[Tensor, ...]]


class CudaGraphRunner:
    """Replays ``fn`` captured as a CUDA graph on ``device`` for one input shape; recaptures on a
    new shape. Capture and replay run in ``device``'s context, whatever the current device is."""

    def __init__(self, fn: Runner, device: torch.device):
        self.fn = fn
        self.device = device
        self.key = None
        self.graph = None
        self.inputs: Tuple[Tensor, Tensor] = ()
        self.outputs: Tuple[Tensor, ...] = ()

    def __call__(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, ...]:
        with torch.cuda.device(self.device):
            key = (tuple(features.shape), features.dtype, tuple(mask.shape))
            if key != self.key:
                self._capture(features, mask)
                self.key = key
            self.inputs[0].copy_(features)
            self.inputs[1].copy_(mask)
            self.graph.replay()
            return tuple(out.clone() for out in self.outputs)

    def _capture(self, features: Tensor, mask: Tensor) -> None:
        self.inputs = (features.clone(), mask.clone())
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):             # warm-up outside the graph, as capture requires
            for _ in range(2):
                self.fn(*self.inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = tuple(self.fn(*self.inputs))


class _ModuleBackend(Backend):
    """A backend around a callable torch module; ``cuda_graphs`` is checked before the artifact
    is loaded, then :meth:`_init_runner` wraps the loaded module."""

    def __init__(self, metadata: Dict, artifact: Path, device: Union[str, torch.device] = "cpu",
                 cuda_graphs: bool = False):
        super().__init__(metadata, artifact, device)
        if cuda_graphs:
            if self.format not in ("checkpoint", "torchscript"):
                raise ValueError(f"cuda_graphs is for the eager (checkpoint) and TorchScript backends, not the "
                                 f"{self.format} format: load the checkpoint or a torchscript export to use it")
            if self.postprocess:
                raise ValueError(f"{self.artifact} has decode + NMS in its graph, which synchronise with the host "
                                 "and cannot be captured in a CUDA graph: export without --postprocess to use "
                                 "cuda_graphs (post-processing then runs outside the graph)")
            if self.device.type != "cuda":
                raise ValueError(f"cuda_graphs needs a CUDA device, not {self.device}")
        self.cuda_graphs = cuda_graphs

    def _init_runner(self, module: Callable) -> None:
        self.module = module
        self.runner: Runner = CudaGraphRunner(self._call, self.device) if self.cuda_graphs else self._call

    def _call(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.module(features, mask))

    def _run(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, ...]:
        with torch.inference_mode():
            return self.runner(features, mask)


class EagerBackend(_ModuleBackend):
    """The network in eager PyTorch, from an asl-edge checkpoint: the baseline of every parity
    report and benchmark."""

    format = "checkpoint"

    def __init__(self, metadata: Dict, artifact: Path, device: Union[str, torch.device] = "cpu",
                 cuda_graphs: bool = False, model: torch.nn.Module = None):
        super().__init__(metadata, artifact, device, cuda_graphs)
        self._init_runner(model.eval().to(self.device, self.dtype))

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                        cuda_graphs: bool = False) -> "EagerBackend":
        try:
            ckpt = load_checkpoint(path, device="cpu")
        except CheckpointError as err:
            raise ArtifactError(str(err)) from err
        config = ckpt.config
        channels = input_channels(config)
        length = config.dataset.max_seq_len
        metadata = {
            "format": "checkpoint", "artifact": Path(path).name, "config": config_to_dict(config),
            "window": length, "batch": 1, "dynamic_batch": True, "dynamic_length": True,
            "length_multiple": 1, "precision": "fp32", "postprocess": False,
            "inputs": [{"name": "features", "dtype": "float32", "shape": [1, channels, length]},
                       {"name": "mask", "dtype": "bool", "shape": [1, length]}],
            "outputs": [{"name": "cls_logits"}, {"name": "offsets"}],
        }
        return cls(metadata, Path(path), device=device, cuda_graphs=cuda_graphs, model=ckpt.model)


class TorchScriptBackend(_ModuleBackend):
    format = "torchscript"

    def __init__(self, metadata: Dict, artifact: Path, device: Union[str, torch.device] = "cpu",
                 cuda_graphs: bool = False):
        super().__init__(metadata, artifact, device, cuda_graphs)
        try:
            module = torch.jit.load(str(artifact), map_location=self.device)
        except (RuntimeError, ValueError) as err:
            raise ArtifactError(f"{artifact} is not a loadable TorchScript file: {err}") from err
        self._init_runner(module.eval())


def require_native_ops(metadata: Dict, artifact: Path) -> None:
    """Artifacts recorded with the native asl_edge ops need the op library in this process."""
    if metadata.get("native_ops") and not native_state().loaded:
        raise ArtifactError(f"{artifact} calls torch.ops.asl_edge.*, and the native ops are unavailable here: "
                            f"{native_state().reason}. Build them (asl-edge build-ext) or export with "
                            "ASL_EDGE_OPS=reference.")


class ExportedBackend(_ModuleBackend):
    format = "exported"

    def __init__(self, metadata: Dict, artifact: Path, device: Union[str, torch.device] = "cpu",
                 cuda_graphs: bool = False):
        super().__init__(metadata, artifact, device, cuda_graphs)
        require_native_ops(metadata, artifact)
        try:
            program = torch.export.load(str(artifact))
        except Exception as err:  # noqa: BLE001 - torch.export.load raises many types on bad files
            raise ArtifactError(f"{artifact} is not a loadable torch.export program: {err}") from err
        self._init_runner(program.module().to(self.device))


class AOTInductorBackend(_ModuleBackend):
    format = "aoti"

    def __init__(self, metadata: Dict, artifact: Path, device: Union[str, torch.device] = "cpu",
                 cuda_graphs: bool = False):
        super().__init__(metadata, artifact, device, cuda_graphs)
        compiled_for = metadata.get("device", "cpu")
        if torch.device(compiled_for).type != self.device.type:
            raise ArtifactError(f"{artifact} was compiled for {compiled_for}; export again with --device "
                                f"{self.device.type}")
        require_native_ops(metadata, artifact)
        try:
            module = torch._inductor.aoti_load_package(str(artifact))
        except Exception as err:  # noqa: BLE001 - the loader raises many types on bad packages
            raise ArtifactError(f"{artifact} is not a loadable AOTInductor package: {err}") from err
        self._init_runner(module)
