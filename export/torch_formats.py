"""TorchScript, torch.export (.pt2) and AOTInductor exports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from asl_edge.outputs import atomic_output

from .spec import ExportSpec, Exported


def export_torchscript(module: torch.nn.Module, example: Tuple[Tensor, Tensor], out_path: Path,
                       spec: ExportSpec) -> Exported:
    """A scripted module; it runs the pure-PyTorch ops, so loading it needs only torch."""
    scripted = torch.jit.script(module)
    with atomic_output(out_path) as tmp:
        scripted.save(str(tmp))
    return Exported(out_path, {"native_ops": False})


def _dynamic_shapes(spec: ExportSpec) -> Optional[Dict]:
    if not (spec.dynamic_length or spec.dynamic_batch):
        return None
    batch = torch.export.Dim("batch", min=1, max=1024) if spec.dynamic_batch else None
    length = None
    if spec.dynamic_length:
        units = torch.export.Dim("units", min=1, max=max(spec.max_length // spec.length_multiple, 2))
        length = spec.length_multiple * units
    return {"features": {0: batch, 2: length} if batch is not None else {2: length},
            "mask": {0: batch, 1: length} if batch is not None else {1: length}}


def export_program(module: torch.nn.Module, example: Tuple[Tensor, Tensor], spec: ExportSpec):
    """``torch.export`` of the module; dynamic T and B as the spec says."""
    return torch.export.export(module, example, dynamic_shapes=_dynamic_shapes(spec))


def _uses_native_ops(program) -> bool:
    return any(node.op == "call_function" and str(node.target).startswith("asl_edge.")
               for node in program.graph.nodes)


def export_exported(module: torch.nn.Module, example: Tuple[Tensor, Tensor], out_path: Path,
                    spec: ExportSpec) -> Exported:
    program = export_program(module, example, spec)
    with atomic_output(out_path) as tmp:
        torch.export.save(program, str(tmp))
    return Exported(out_path, {"native_ops": _uses_native_ops(program)})


def export_aoti(module: torch.nn.Module, example: Tuple[Tensor, Tensor], out_path: Path,
                spec: ExportSpec) -> Exported:
    """An AOTInductor package compiled for ``spec.device`` (needs a C++ compiler)."""
    program = export_program(module, example, spec)
    with atomic_output(out_path) as tmp:
        torch._inductor.aoti_compile_and_package(program, package_path=os.fspath(tmp))
    return Exported(out_path, {"native_ops": _uses_native_ops(program)})
