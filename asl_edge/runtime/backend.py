"""The runtime interface shared by every deployment format (eager, TorchScript, torch.export,
AOTInductor, ONNX Runtime, TensorRT, OpenVINO): ``load(artifact) -> Backend``.

An exported artifact is a folder (or a file inside it) holding the artifact and the
``metadata.json`` that ``asl-edge export`` writes beside it; an asl-edge checkpoint (``.pt``)
loads as the eager backend.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..compute import resolve_device
from ..config import Config, config_from_dict
from ..errors import UserError
from ..localizer import FeatureError, Localizer, network_grid_length
from ..model import class_names, config_problems, padded_length

METADATA = "metadata.json"
METADATA_VERSION = 1

# format -> (module, class) of its backend, imported on first use
BACKENDS = {
    "checkpoint": ("asl_edge.runtime.torch_backends", "EagerBackend"),
    "torchscript": ("asl_edge.runtime.torch_backends", "TorchScriptBackend"),
    "exported": ("asl_edge.runtime.torch_backends", "ExportedBackend"),
    "aoti": ("asl_edge.runtime.torch_backends", "AOTInductorBackend"),
    "onnx": ("asl_edge.runtime.onnxruntime_backend", "OnnxRuntimeBackend"),
    "onnx-trt": ("asl_edge.runtime.onnxruntime_backend", "OnnxRuntimeBackend"),
    "engine": ("asl_edge.runtime.tensorrt_backend", "TensorRTBackend"),
    "openvino": ("asl_edge.runtime.openvino_backend", "OpenVinoBackend"),
}


class ArtifactError(UserError, RuntimeError):
    """An artifact or its metadata is missing, corrupt or does not match what was asked."""


def read_metadata(path: Union[str, Path]) -> Tuple[Dict, Path]:
    """The metadata of the artifact at ``path`` (its folder, its file or metadata.json) and the
    artifact file it names."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta_path = folder / METADATA
    if not meta_path.is_file():
        raise ArtifactError(f"{meta_path} not found: {path} is not an asl-edge export "
                            "(asl-edge export writes metadata.json beside the artifact)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{meta_path} is not readable JSON: {err}") from err
    missing = [key for key in ("format", "artifact", "config", "window", "batch", "precision", "inputs", "outputs")
               if key not in meta]
    if missing:
        raise ArtifactError(f"{meta_path} lacks {', '.join(missing)}")
    if not isinstance(meta.get("metadata_version", 0), int):
        raise ArtifactError(f"{meta_path}: metadata_version must be an integer")
    if meta.get("metadata_version", 0) > METADATA_VERSION:
        raise ArtifactError(f"{meta_path} has metadata version {meta['metadata_version']}; this asl-edge "
                            f"reads up to {METADATA_VERSION}: upgrade asl-edge")
    if meta["format"] not in BACKENDS:
        raise ArtifactError(f"{meta_path}: unknown format {meta['format']!r}")
    artifact = folder / meta["artifact"]
    if not path.is_dir() and path.name != METADATA and path != artifact:
        raise ArtifactError(f"{path} is not the artifact its metadata names ({artifact.name})")
    if not artifact.exists():
        raise ArtifactError(f"{artifact} (named in {meta_path}) does not exist")
    return meta, artifact


class Backend:
    """One loaded artifact. ``run(features[B, C, T], mask[B, T])`` returns the artifact's outputs
    (``(cls_logits, offsets)`` for network artifacts); ``detect(features[T, C], fps, duration)``
    returns detections in seconds, best first, like :class:`asl_edge.localizer.Localizer`."""

    format = ""
    # batch rows x length the CPU takes in one call: beyond it the activations leave the caches and
    # a call costs more per frame than two smaller ones (benchmarks/bench_batch_calls.py: THUMOS-size
    # network, 2 cores, B8 x T2304 in one call 7.3 s, in calls of 1, 2 or 4 rows 4.9, 5.2, 6.2 s)
    CPU_FRAMES_PER_CALL = 4608

    def __init__(self, metadata: Dict, artifact: Path, device: Union[str, torch.device] = "cpu"):
        self.metadata = metadata
        self.artifact = artifact
        self.device = resolve_device(device)
        try:
            self.config: Config = config_from_dict(metadata["config"], origin=f"{artifact} metadata")
            self.window: int = int(metadata["window"])
            self.batch: int = int(metadata["batch"])
            self.channels: int = int(metadata["inputs"][0]["shape"][1])
            self.num_outputs: int = len(metadata["outputs"])
        except (ValueError, TypeError, KeyError, IndexError) as err:
            raise ArtifactError(f"the metadata of {artifact} is malformed: {type(err).__name__}: {err}") from err
        self._check_metadata()
        self.dynamic_length: bool = bool(metadata.get("dynamic_length", False))
        self.dynamic_batch: bool = bool(metadata.get("dynamic_batch", False))
        self.dtype = torch.float16 if metadata["precision"] == "fp16" else torch.float32
        self.postprocess: bool = bool(metadata.get("postprocess", False))

    def _check_metadata(self) -> None:
        """ArtifactError listing what in the metadata contradicts itself: a config the network
        could not have been built from, class names that are not the config's, logits of another
        class count."""
        problems = config_problems(self.config)
        names = class_names(self.config) if not problems else None
        if names is not None and "class_names" in self.metadata and list(self.metadata["class_names"]) != names:
            problems.append(f"class_names {self.metadata['class_names']} are not the config's {names}")
        logits = self.metadata["outputs"][0]
        if not self.metadata.get("postprocess") and isinstance(logits, dict) and logits.get("name") == "cls_logits" \
                and "shape" in logits and logits["shape"][-1] != self.config.dataset.num_classes:
            problems.append(f"cls_logits has {logits['shape'][-1]} classes, the config "
                            f"{self.config.dataset.num_classes} (dataset.num_classes)")
        if problems:
            raise ArtifactError(f"the metadata of {self.artifact} contradicts itself: " + "; ".join(problems))

    # --- to implement per format
    def _run(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, ...]:
        raise NotImplementedError

    # --- shared
    def check_inputs(self, features: Tensor, mask: Tensor) -> None:
        """Shape, dtype and length checks against the metadata, with messages naming the problem."""
        if features.dim() != 3 or mask.dim() != 2 or mask.shape != (features.shape[0], features.shape[2]):
            raise ValueError(f"expected features (B, C, T) and mask (B, T), got {tuple(features.shape)} "
                             f"and {tuple(mask.shape)}")
        if features.shape[1] != self.channels:
            raise ValueError(f"features have {features.shape[1]} channels, the artifact expects {self.channels}")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool, got {mask.dtype}")
        length = features.shape[2]
        if self.dynamic_length:
            unit = int(self.metadata.get("length_multiple", 1))
            shortest = int(self.metadata.get("min_length", unit))
            if length % unit or not shortest <= length <= int(self.metadata.get("max_length", length)):
                raise ValueError(f"T = {length}: this artifact takes multiples of {unit} from {shortest} up to "
                                 f"{self.metadata.get('max_length')}")
        elif length != self.window:
            raise ValueError(f"T = {length}: this artifact was exported for T = {self.window}")

    def check_names(self, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        """ArtifactError when the graph's input or output names are not the ones its metadata lists."""
        for kind, names in (("inputs", list(inputs)), ("outputs", list(outputs))):
            expected = [item["name"] if isinstance(item, dict) else item for item in self.metadata.get(kind, [])]
            if expected and names != expected:
                raise ArtifactError(f"{self.artifact} has {kind} {names}, its metadata says {expected}")

    def rows_per_call(self, length: int) -> int:
        """How many batch rows of length ``length`` go into one artifact call: the batch of a
        fixed-batch artifact; on the CPU as many as fit :attr:`CPU_FRAMES_PER_CALL` (at least
        one); otherwise any number."""
        if not self.dynamic_batch:
            return self.batch
        if self.device.type == "cpu":
            return max(1, self.CPU_FRAMES_PER_CALL // length)
        return sys.maxsize

    def run(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, ...]:
        """Run the artifact on a batch of any size, in calls of :meth:`rows_per_call` rows (a short
        last call of a fixed-batch artifact is padded and cut back)."""
        self.check_inputs(features, mask)
        step = self.rows_per_call(features.shape[2])
        parts = [self._run_rows(features[start:start + step], mask[start:start + step])
                 for start in range(0, features.shape[0], step)]
        return parts[0] if len(parts) == 1 else tuple(torch.cat(outputs) for outputs in zip(*parts))

    def _run_rows(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, ...]:
        rows = features.shape[0]
        features = features.to(self.device, self.dtype)
        mask = mask.to(self.device)
        if not self.dynamic_batch and rows < self.batch:
            pad = self.batch - rows
            features = torch.cat([features, features.new_zeros((pad,) + features.shape[1:])])
            mask = torch.cat([mask, mask.new_zeros((pad, mask.shape[1]))])
        outputs = self._run(features.contiguous(), mask.contiguous())
        if len(outputs) != self.num_outputs:
            raise ArtifactError(f"{self.artifact} returned {len(outputs)} outputs, its metadata names "
                                f"{self.num_outputs}: the artifact and metadata.json do not belong together")
        return tuple(out[:rows].float() if out.is_floating_point() else out[:rows] for out in outputs)

    def network(self, features: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        """``(cls_logits, offsets)``: the network contract, for the Localizer."""
        if self.postprocess:
            raise ArtifactError("this artifact has post-processing in its graph: it returns detections, "
                                "not logits; use detect()")
        logits, offsets = self.run(features, mask)
        return logits, offsets

    def detect(self, features: Union[np.ndarray, Tensor], fps: Optional[float] = None,
               duration: Optional[float] = None) -> List[Dict]:
        """Detections of one video's (T, C) features in seconds, best first."""
        return self.detect_batch([features], fps, [duration])[0]

    def detect_batch(self, videos: Sequence[Union[np.ndarray, Tensor]], fps: Optional[float] = None,
                     durations: Optional[Sequence[Optional[float]]] = None) -> List[List[Dict]]:
        """Detections of several videos' (T, C) features, like :meth:`detect` on each: videos that
        run at the same length go through :meth:`run` together."""
        window = None if self.dynamic_length else self.window
        localizer = Localizer(self.network, self.config, device=self.device, window=window)
        durations = list(durations) if durations is not None else [None] * len(videos)
        with torch.inference_mode():
            prepared = []
            for features, duration in zip(videos, durations):
                if self.dynamic_length:
                    self._check_dynamic_length(len(features))
                prepared.append(localizer.prepare(features, fps, duration))
            groups: Dict[int, List[int]] = {}
            for i, (x, _, _, _) in enumerate(prepared):
                groups.setdefault(x.shape[2], []).append(i)
            results: List[List[Dict]] = [[] for _ in videos]
            for members in groups.values():
                x = torch.cat([prepared[i][0] for i in members])
                mask = torch.cat([prepared[i][1] for i in members])
                outputs = self.run(x, mask) if self.postprocess else self.network(x, mask)
                for row, i in enumerate(members):
                    _, row_mask, grid, duration = prepared[i]
                    if self.postprocess:
                        segments, scores, labels, count = (out[row] for out in outputs)
                        kept = int(count)
                        results[i] = localizer.to_detections(segments[:kept], scores[:kept], labels[:kept],
                                                             grid, duration)
                    else:
                        results[i] = localizer.postprocess(outputs[0][row], outputs[1][row], row_mask[0],
                                                           grid, duration)
        return results

    def _check_dynamic_length(self, num_features: int) -> None:
        steps = network_grid_length(num_features, self.config)
        needed = padded_length(self.config, steps)
        if needed > int(self.metadata.get("max_length", needed)):
            raise FeatureError(f"{num_features} features make {steps} network steps, which need T = {needed}, "
                               f"above this artifact's maximum of {self.metadata['max_length']}: export with a "
                               "larger --max-length")

    def warmup(self, runs: int = 3) -> float:
        """Run ``runs`` times on zeros of the artifact's shape; returns the last run's seconds."""
        features = torch.zeros(self.batch, self.channels, self.window)
        mask = torch.ones(self.batch, self.window, dtype=torch.bool)
        elapsed = 0.0
        for _ in range(runs):
            start = time.perf_counter()
            self.run(features, mask)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            elapsed = time.perf_counter() - start
        return elapsed


def load(path: Union[str, Path], device: Union[str, torch.device] = "cpu", **options) -> Backend:
    """Load an exported artifact (folder, artifact file or metadata.json) or an asl-edge
    checkpoint (a ``.pt`` file, even when an export shares its folder) as a Backend on
    ``device``. ``options`` go to the backend (e.g. ``cuda_graphs=True`` for the eager and
    TorchScript CUDA paths)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist")
    if path.is_file() and path.suffix == ".pt":      # no export format writes a .pt file
        module, name = BACKENDS["checkpoint"]
        return getattr(importlib.import_module(module), name).from_checkpoint(path, device=device, **options)
    meta, artifact = read_metadata(path)
    module, name = BACKENDS[meta["format"]]
    try:
        backend_class = getattr(importlib.import_module(module), name)
    except ImportError as err:
        raise ArtifactError(f"{artifact} ({meta['format']}) cannot be run here: {err}") from err
    return backend_class(meta, artifact, device=device, **options)
