"""TorchScript, torch.export (.pt2) and AOTInductor exports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple

import torch
from torch import Tensor

from asl_edge.outputs import atomic_output

from .spec import ExportSpec, Exported, dynamic_shapes


def export_torchscript(module: torch.nn.Module, example: Tuple[Tensor, Tensor], out_path: Path,
                       spec: ExportSpec) -> Exported:
    """A scripted module; it runs the pure-PyTorch ops, so loading it needs only torch."""
    scripted = torch.jit.script(module)
    with atomic_output(out_path) as tmp:
        scripted.save(str(tmp))
    return Exported(out_path, {"native_ops": False})


def export_program(module: torch.nn.Module, example: Tuple[Tensor, Tensor], spec: ExportSpec):
    """``torch.export`` of the module; dynamic T and B as the spec says."""
    return torch.export.export(module, example, dynamic_shapes=dynamic_shapes(spec))


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
