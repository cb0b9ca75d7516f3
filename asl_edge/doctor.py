"""``asl-edge doctor``: what of the package is usable on this machine and why not — the native
ops and TensorRT plugins, the toolchain, GStreamer and its hardware presets, the extractor
weights — and ``asl-edge build-ext``, which builds the native pieces and then reports. It sits
above the stages it reports on; none of them imports it."""

from __future__ import annotations

import importlib.util
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .errors import CommandError
from .features.weights import weights_report
from .ops.library import TRT_PLUGIN_LIBRARY, native_dir, native_state, ops_mode, use_native
from .video import video_report


def _tool_version(tool: str, args: List[str]) -> Optional[str]:
    path = shutil.which(tool)
    if path is None:
        return None
    try:
        out = subprocess.run([path, *args], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "present (version unknown)"
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[-1].strip() if tool == "nvcc" and lines else (lines[0].strip() if lines else "present")


def _module_version(name: str) -> Optional[str]:
    if importlib.util.find_spec(name) is None:
        return None
    try:
        module = __import__(name)
    except Exception as err:  # noqa: BLE001 - reported, not raised
        return f"installed but fails to import: {err}"
    return str(getattr(module, "__version__", "installed"))


def doctor_report() -> Dict:
    """Everything `asl-edge doctor` prints, as a dict."""
    state = native_state()
    try:
        mode = ops_mode()
    except RuntimeError as err:
        mode = f"invalid ({err})"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    chosen = {}
    for device in devices:
        data = torch.empty(0, device=device)
        probes = {"tca_attention": (data, data, data, torch.empty(0, 0, dtype=torch.bool, device=device)),
                  "nms1d": (data, data, torch.empty(0, dtype=torch.long, device=device))}
        for op, tensors in probes.items():
            if mode.startswith("invalid"):
                chosen[f"{op}@{device}"] = "unknown"
                continue
            try:
                chosen[f"{op}@{device}"] = "native" if use_native(op, *tensors) else "reference"
            except RuntimeError as err:
                chosen[f"{op}@{device}"] = f"error: {err}"
    plugin = native_dir() / TRT_PLUGIN_LIBRARY
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "native_dir": str(native_dir()),
        "torch_ops": {"path": str(state.path), "loaded": state.loaded, "reason": state.reason or None,
                      "cpu_kernels": state.devices.get("cpu", False),
                      "cuda_kernels": state.devices.get("cuda", False), "build": state.build_info},
        "ops_mode": mode,
        "ops_in_use": chosen,
        "tensorrt_plugins": {"path": str(plugin), "present": plugin.is_file()},
        "tensorrt_python": _module_version("tensorrt"),
        "toolchain": {"cmake": _tool_version("cmake", ["--version"]), "nvcc": _tool_version("nvcc", ["--version"]),
                      "c++": _tool_version("c++", ["--version"])},
        "optional_packages": {name: _module_version(name) for name in ("onnx", "onnxruntime")},
        "video": video_report(),
        "extractor_weights": weights_report(),
    }


def format_doctor(report: Dict) -> str:
    """Human-readable lines of ``doctor_report()``."""
    ops = report["torch_ops"]
    if ops["loaded"]:
        ops_line = (f"loaded {ops['path']} (CPU kernels: {'yes' if ops['cpu_kernels'] else 'no'}, "
                    f"CUDA kernels: {'yes' if ops['cuda_kernels'] else 'no'})")
    else:
        ops_line = f"not loaded: {ops['reason']}"
    plugin = report["tensorrt_plugins"]
    trt = report["tensorrt_python"] or "not installed (engine building and the TensorRT backend are unavailable)"
    lines = [
        f"python {report['python']}, torch {report['torch']} (CUDA {report['torch_cuda'] or 'none'}; "
        f"devices: {', '.join(report['cuda_devices']) or 'none'})",
        f"native dir       {report['native_dir']}",
        f"torch ops        {ops_line}",
        f"ASL_EDGE_OPS     {report['ops_mode']}: " +
        ", ".join(f"{k} -> {v}" for k, v in report["ops_in_use"].items()),
        f"TensorRT plugins {plugin['path'] if plugin['present'] else 'not built'}"
        + ("" if plugin["present"] else " (asl-edge build-ext --cuda --tensorrt DIR)"),
        f"TensorRT python  {trt}",
    ]
    for tool, version in report["toolchain"].items():
        lines.append(f"{tool:<16} {version or 'not found'}")
    for name, version in report["optional_packages"].items():
        lines.append(f"{name:<16} {version or 'not installed'}")
    video = report["video"]
    if video["gstreamer"] is None:
        lines.append(f"GStreamer        not usable: {video['reason']}")
    else:
        found = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in video["preset_elements"].items())
        lines.append(f"GStreamer        {video['gstreamer']}; source preset: {video['auto_preset']} ({found})")
    for name, weights in report["extractor_weights"].items():
        lines.append(f"{name + ' weights':<16} " + (weights["path"] if weights["cached"] else
                                                    "not in the cache (asl-edge weights i3d)"))
    return "\n".join(lines)


def add_parsers(sub) -> None:
    from .ops.build import DEFAULT_CUDA_ARCHS

    p = sub.add_parser("build-ext", help="build the native ops (and TensorRT plugins) against the installed torch")
    p.add_argument("--cuda", action="store_true", help="also build the CUDA kernels (needs nvcc)")
    p.add_argument("--cuda-arch", default=DEFAULT_CUDA_ARCHS,
                   help=f"CUDA architectures, CMake syntax (default {DEFAULT_CUDA_ARCHS}: Ampere, Jetson Orin, "
                        "Ada, Hopper; e.g. 87 alone on a Jetson)")
    p.add_argument("--tensorrt", metavar="DIR", default=None,
                   help="TensorRT include dir (with NvInfer.h): also build the plugin library")
    p.add_argument("--tensorrt-lib", metavar="DIR", default=None, help="TensorRT library dir (default: found by CMake)")
    p.add_argument("--tensorrt-compile-only", action="store_true",
                   help="compile the plugins against the headers alone, without linking TensorRT")
    p.add_argument("--source", default=None, help="asl-edge source checkout (default: the one asl_edge runs from)")
    p.add_argument("--build-dir", default=None, help="CMake build folder (default: SOURCE/build/native[-cuda])")
    p.add_argument("--jobs", type=int, default=0, help="parallel compile jobs (default: all cores)")
    p.set_defaults(func=run_build_ext)

    p = sub.add_parser("doctor", help="report which native pieces (ops, CUDA, TensorRT plugins) are usable and why not")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    report = doctor_report()
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_doctor(report))
    return 0


def run_build_ext(args) -> int:
    from .ops.build import BuildError, BuildOptions, build_extension

    opts = BuildOptions(cuda=args.cuda, cuda_archs=args.cuda_arch,
                        tensorrt_include=Path(args.tensorrt) if args.tensorrt else None,
                        tensorrt_lib=Path(args.tensorrt_lib) if args.tensorrt_lib else None,
                        tensorrt_compile_only=args.tensorrt_compile_only,
                        source=Path(args.source) if args.source else None,
                        build_dir=Path(args.build_dir) if args.build_dir else None, jobs=args.jobs)
    try:
        build_extension(opts)
    except BuildError as err:
        raise CommandError(str(err)) from err
    print(format_doctor(doctor_report()), file=sys.stderr)
    return 0
