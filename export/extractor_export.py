"""``asl-edge export --extractor NAME``: a clip extractor as a TorchScript or ONNX clip model that
``asl_edge.features.load_extractor(path)`` (and so extract-features and streaming) runs, with
``extractor.json`` (what it consumes), ``metadata.json`` and a parity report against the eager
extractor; on a Jetson the ONNX file goes on to TensorRT (the trtexec line is printed).

The exported model takes ``clips uint8 [B, T, H, W, 3]`` and returns ``features float32 [B, D]``
(normalisation and the cast back to float32 are inside), batch dynamic.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from torch import Tensor, nn

from asl_edge.features import ClipExtractor, load_extractor
from asl_edge.features.exported import DESCRIPTION
from asl_edge.outputs import atomic_output, write_json

from .spec import ExportError

FORMATS = ("torchscript", "onnx")
# features: max |exported - eager| / max(1, max |eager|)
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


class I3DClipModel(nn.Module):
    """uint8 clips [B, T, H, W, 3] -> Mixed_5c features [B, 1024] (float32)."""

    def __init__(self, network: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.network = network
        self.dtype = dtype

    def forward(self, clips: Tensor) -> Tensor:
        x = clips.permute(0, 4, 1, 2, 3).to(self.dtype) / 127.5 - 1.0
        return self.network(x)[0].float()


def _clip_model(extractor: ClipExtractor, device: str, dtype: torch.dtype) -> nn.Module:
    """The extractor's network wrapped for export; a copy, so the extractor stays the fp32 CPU
    reference of the parity check."""
    if extractor.name != "i3d-rgb":
        raise ExportError(f"--extractor {extractor.name}: only i3d-rgb is a network to export "
                          "(motion is a few numpy lines that run anywhere)")
    return I3DClipModel(copy.deepcopy(extractor.network).to(device, dtype), dtype).eval()


def export_extractor(name: str, fmt: str, out_dir, precision: str = "fp32", device: str = "cpu",
                     batch: int = 1) -> Dict:
    """Export extractor ``name`` as ``fmt`` into ``out_dir``; returns a summary with the parity report."""
    if fmt not in FORMATS:
        raise ExportError(f"--extractor exports {' or '.join(FORMATS)}, not {fmt}")
    if precision not in TOLERANCE:
        raise ExportError(f"precision must be fp32 or fp16, got {precision!r}")
    if precision == "fp16" and fmt == "torchscript" and torch.device(device).type != "cuda":
        raise ExportError("an fp16 TorchScript clip model needs --device cuda (the CPU kernels run fp32)")
    eager = load_extractor(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if precision == "fp16" else torch.float32
    spec = eager.clip
    g = spec.geometry
    example = torch.zeros(max(batch, 2), spec.num_frames, g.height, g.width, 3, dtype=torch.uint8)
    start = time.perf_counter()
    if fmt == "torchscript":
        module = _clip_model(eager, device, dtype)
        path = out / f"{name}.ts"
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)   # paddings depend on the fixed T, H, W only
            traced = torch.jit.trace(module, example.to(device), check_trace=False)
        with atomic_output(path) as tmp:
            traced.save(str(tmp))
    else:
        from .onnx_export import _quiet_export

        module = _clip_model(eager, "cpu", dtype)
        path = out / f"{name}.onnx"
        batch_dim = torch.export.Dim("batch", min=1, max=1024)
        program = _quiet_export(module, (example,), dynamo=True, input_names=["clips"], output_names=["features"],
                                dynamic_shapes=({0: batch_dim},), optimize=True, verify=False, verbose=False)
        with atomic_output(path) as tmp:
            program.save(str(tmp))
    seconds = time.perf_counter() - start
    description = {**eager.describe(), "precision": precision, "device": device, "format": fmt}
    write_json(description, out / DESCRIPTION)
    write_json({"kind": "clip-extractor", "format": fmt, "artifact": path.name, "extractor": description,
                "inputs": [{"name": "clips", "dtype": "uint8", "shape": ["B", spec.num_frames, g.height, g.width, 3]}],
                "outputs": [{"name": "features", "dtype": "float32", "shape": ["B", eager.dim]}],
                "versions": {"torch": torch.__version__}, "export_seconds": round(seconds, 3)}, out / "metadata.json")
    report = extractor_parity(eager, out, precision, device)
    write_json(report, out / "parity.json")
    summary = {"artifact": str(path), "size_bytes": path.stat().st_size, "export_seconds": seconds, "parity": report}
    if fmt == "onnx":
        summary["trtexec"] = (f"trtexec --onnx={path} --saveEngine={out / (name + '.engine')} "
                              f"--minShapes=clips:1x{spec.num_frames}x{g.height}x{g.width}x3 "
                              f"--optShapes=clips:{batch}x{spec.num_frames}x{g.height}x{g.width}x3 "
                              f"--maxShapes=clips:{max(batch, 8)}x{spec.num_frames}x{g.height}x{g.width}x3 --fp16")
    return summary


def extractor_parity(eager: ClipExtractor, folder: Path, precision: str, device: str, seed: int = 0) -> Dict:
    """Features of the exported model (loaded as an extractor, as users load it) against the eager
    extractor on random clips: max abs and relative difference, cosine per clip."""
    exported = load_extractor(str(folder), device=device)
    spec, g = eager.clip, eager.clip.geometry
    clips = np.random.default_rng(seed).integers(0, 256, (2, spec.num_frames, g.height, g.width, 3), dtype=np.uint8)
    want, got = eager.extract(clips), exported.extract(clips)
    diff = float(np.abs(got - want).max())
    relative = diff / max(1.0, float(np.abs(want).max()))
    cosine = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return {"precision": precision, "max_abs_diff": diff, "max_rel_diff": relative,
            "min_cosine": float(cosine.min()), "tolerance": TOLERANCE[precision],
            "passed": relative <= TOLERANCE[precision]}
