"""metadata.json: everything a runtime needs to know about an artifact, written beside it."""

from __future__ import annotations

import hashlib
import platform
from typing import Dict, List

import torch

import asl_edge
from asl_edge.config import Config, config_to_dict
from asl_edge.model import class_names, input_channels, level_lengths, level_strides
from asl_edge.runtime.backend import METADATA_VERSION

from .spec import INPUT_NAMES, ExportSpec, Exported


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the state dict: names, dtypes, shapes and values, in key order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def io_description(config: Config, spec: ExportSpec) -> Dict[str, List[Dict]]:
    """Names, dtypes and shapes of the artifact's inputs and outputs ("B"/"T"/"N" mark dynamic
    axes). ``Backend.run`` returns floating outputs as float32 whatever the artifact's dtype."""
    batch = "B" if spec.dynamic_batch else spec.batch
    length = "T" if spec.dynamic_length else spec.window
    data = "float16" if spec.precision == "fp16" else "float32"
    inputs = [{"name": INPUT_NAMES[0], "dtype": data, "shape": [batch, input_channels(config), length]},
              {"name": INPUT_NAMES[1], "dtype": "bool", "shape": [batch, length]}]
    if spec.postprocess:
        max_out = config.test_cfg.max_seg_num
        outputs = [{"name": "segments", "dtype": data, "shape": [batch, max_out, 2], "units": "feature grid"},
                   {"name": "scores", "dtype": data, "shape": [batch, max_out]},
                   {"name": "labels", "dtype": "int64", "shape": [batch, max_out]},
                   {"name": "count", "dtype": "int32", "shape": [batch]}]
    else:
        m = config.model
        points = "N" if spec.dynamic_length else sum(
            level_lengths(spec.window, len(level_strides(config)), m.scale_factor, m.fpn_start_level))
        outputs = [{"name": "cls_logits", "dtype": data, "shape": [batch, points, config.dataset.num_classes]},
                   {"name": "offsets", "dtype": data, "shape": [batch, points, 2]}]
    return {"inputs": inputs, "outputs": outputs}


def _package_versions(names) -> Dict[str, str]:
    """Versions of the optional packages that are installed."""
    from importlib import metadata as importlib_metadata

    versions = {}
    for name in names:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return versions


def make_metadata(model: torch.nn.Module, config: Config, spec: ExportSpec, exported: Exported,
                  export_seconds: float) -> Dict:
    d = config.dataset
    meta = {
        "metadata_version": METADATA_VERSION,
        "format": spec.format,
        "artifact": exported.path.name,
        "precision": spec.precision,
        "device": spec.device,
        "window": spec.window,
        "batch": spec.batch,
        "dynamic_length": spec.dynamic_length,
        "dynamic_batch": spec.dynamic_batch,
        "length_multiple": spec.length_multiple,
        "min_length": spec.min_length,
        "max_length": spec.max_length,
        "postprocess": spec.postprocess,
        **io_description(config, spec),
        "class_names": class_names(config),
        "fps": d.default_fps,
        "feat_stride": d.feat_stride,
        "num_frames": d.num_frames,
        "weights_sha256": weights_sha256(model),
        "versions": {"asl_edge": asl_edge.__version__, "torch": torch.__version__, "python": platform.python_version(),
                     **_package_versions(("onnx", "onnxruntime", "openvino", "nncf"))},
        "export_seconds": round(export_seconds, 3),
        "config": config_to_dict(config),
    }
    meta.update(exported.metadata)
    return meta
