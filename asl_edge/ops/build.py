"""``asl-edge build-ext``: build the native libraries with CMake against the installed torch and
install them where :mod:`asl_edge.ops.library` finds them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch

from .library import BUILD_INFO, TORCH_OPS_LIBRARY, native_dir

# Ampere, Jetson Orin, Ada, Hopper (+ PTX of 90 for newer GPUs); never nvcc's sm_75 default
DEFAULT_CUDA_ARCHS = "80;86;87;89;90"


class BuildError(RuntimeError):
    """The native build cannot start or failed; the message says which step and why."""


@dataclass
class BuildOptions:
    cuda: bool = False
    cuda_archs: str = DEFAULT_CUDA_ARCHS
    tensorrt_include: Optional[Path] = None
    tensorrt_lib: Optional[Path] = None
    tensorrt_compile_only: bool = False
    source: Optional[Path] = None
    build_dir: Optional[Path] = None
    install_dir: Optional[Path] = None
    jobs: int = 0


def source_root(explicit: Optional[Path] = None) -> Path:
    """The folder holding CMakeLists.txt and csrc/: ``explicit`` or the checkout asl_edge runs from."""
    root = explicit or Path(__file__).resolve().parents[2]
    if not (root / "CMakeLists.txt").is_file() or not (root / "csrc").is_dir():
        raise BuildError(f"no asl-edge sources (CMakeLists.txt, csrc/) in {root}; "
                         "pass --source pointing at an asl-edge checkout")
    return root


def _run(cmd: List[str], step: str, cwd: Optional[Path] = None) -> None:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    result = subprocess.run(cmd, cwd=cwd)
    if result.returncode != 0:
        raise BuildError(f"{step} failed (exit code {result.returncode}); see the output above")


def find_nvcc() -> Optional[str]:
    """nvcc on PATH, else the CUDA toolkit's default location."""
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


def cmake_configure_args(opts: BuildOptions, root: Path, build_dir: Path) -> List[str]:
    """The CMake configure command line for ``opts``; Torch_DIR is always given so that a
    reused build folder cannot keep another torch."""
    torch_dir = Path(torch.utils.cmake_prefix_path) / "Torch"
    args = ["cmake", "-S", str(root), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", f"-DTorch_DIR={torch_dir}",
            f"-DASL_WITH_CUDA={'ON' if opts.cuda else 'OFF'}"]
    if opts.cuda:
        args.append(f"-DCMAKE_CUDA_ARCHITECTURES={opts.cuda_archs}")
        nvcc = find_nvcc()
        if nvcc:
            args.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    if opts.tensorrt_include:
        args.append(f"-DASL_TENSORRT_INCLUDE_DIR={opts.tensorrt_include}")
        if opts.tensorrt_lib:
            args.append(f"-DASL_TENSORRT_LIB_DIR={opts.tensorrt_lib}")
        if opts.tensorrt_compile_only:
            args.append("-DASL_TENSORRT_COMPILE_ONLY=ON")
    return args


def build_extension(opts: BuildOptions) -> Path:
    """Configure, build and install the native libraries; returns the folder they went to."""
    if shutil.which("cmake") is None:
        raise BuildError("cmake is not on PATH (Debian/Ubuntu: apt install cmake g++)")
    if opts.cuda and find_nvcc() is None:
        raise BuildError("--cuda needs nvcc (the CUDA toolkit) on PATH or in /usr/local/cuda/bin")
    if opts.tensorrt_include and not (opts.tensorrt_include / "NvInfer.h").is_file():
        raise BuildError(f"--tensorrt {opts.tensorrt_include}: NvInfer.h not found there")
    root = source_root(opts.source)
    build_dir = opts.build_dir or root / "build" / ("native-cuda" if opts.cuda else "native")
    install_dir = opts.install_dir or native_dir()
    jobs = opts.jobs or max(1, os.cpu_count() or 1)
    start = time.perf_counter()
    _run(cmake_configure_args(opts, root, build_dir), "CMake configure")
    _run(["cmake", "--build", str(build_dir), "--parallel", str(jobs)], "build")
    check_shared_cxx_runtime(build_dir / "csrc" / "torch" / TORCH_OPS_LIBRARY,
                             _cmake_cache_value(build_dir, "CMAKE_CXX_COMPILER") or "the C++ compiler")
    _run(["cmake", "--install", str(build_dir), "--prefix", str(install_dir)], "install")
    info = {
        "asl_edge_source": str(root),
        "torch": torch.__version__,
        "cuda": _cmake_cache_value(build_dir, "ASL_TORCH_HAS_CUDA") == "ON",
        "cuda_architectures": opts.cuda_archs if opts.cuda else None,
        "tensorrt_include": str(opts.tensorrt_include) if opts.tensorrt_include else None,
        "tensorrt_compile_only": opts.tensorrt_compile_only,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (install_dir / BUILD_INFO).write_text(json.dumps(info, indent=1) + "\n")
    print(f"built the native libraries into {install_dir} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return install_dir


def needed_libraries(library: Path) -> Optional[List[str]]:
    """The shared libraries ``library`` names as NEEDED (``readelf -d``); None without readelf."""
    if shutil.which("readelf") is None:
        return None
    result = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", result.stdout)


def check_shared_cxx_runtime(library: Path, compiler: str) -> None:
    """Refuse a torch-ops library that carries its own copy of the C++ runtime.

    Some toolchains link libstdc++ statically. Inside a torch process that copy's locale state
    differs from the one torch uses, and the first error message that formats a number crashes
    the process (seen with torch 2.11 on a GPU image whose CXX pointed at such a GCC).
    """
    needed = needed_libraries(library)
    if needed is None or any(name.startswith(("libstdc++", "libc++")) for name in needed):
        return
    raise BuildError(
        f"{library} links the C++ standard library statically ({compiler}); inside torch it would crash on "
        "the first error message. Build with a compiler that links libstdc++ dynamically, in a fresh build "
        "folder, e.g. CXX=/usr/bin/g++ asl-edge build-ext --build-dir build/native-system ... "
        "(the installed library was left as it was)")


def _cmake_cache_value(build_dir: Path, name: str) -> Optional[str]:
    try:
        for line in (build_dir / "CMakeCache.txt").read_text().splitlines():
            if line.startswith(name + ":"):
                return line.split("=", 1)[1]
    except OSError:
        return None
    return None
