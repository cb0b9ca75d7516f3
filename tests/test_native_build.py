"""The native build: `asl-edge build-ext` errors, `asl-edge doctor`, and the CUDA kernels'
compile check with nvcc for Jetson Orin (sm_87) and Hopper (sm_90)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "asl_edge"]


def run_cli(*args, env=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env)


def test_build_ext_without_sources_is_a_clear_error(tmp_path):
    result = run_cli("build-ext", "--source", str(tmp_path))
    assert result.returncode == 2
    assert "no asl-edge sources" in result.stderr and "--source" in result.stderr


def test_build_ext_with_a_wrong_tensorrt_dir_is_a_clear_error(tmp_path):
    result = run_cli("build-ext", "--tensorrt", str(tmp_path))
    assert result.returncode == 2
    assert "NvInfer.h not found" in result.stderr


def test_doctor_reports_the_native_pieces(tmp_path):
    import os

    result = run_cli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"torch_ops", "ops_mode", "ops_in_use", "tensorrt_plugins", "toolchain"}
    env = dict(os.environ, ASL_EDGE_NATIVE_DIR=str(tmp_path))
    result = run_cli("doctor", env=env)
    assert result.returncode == 0
    assert "not loaded" in result.stdout and "asl-edge build-ext" in result.stdout
    assert "tca_attention@cpu -> reference" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_cuda_kernels_compile_for_orin_and_hopper(tmp_path):
    """Compile check only (no GPU needed): the kernel object library with nvcc for sm_87;90."""
    configure = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path), "-DASL_WITH_CUDA=ON",
                                "-DASL_BUILD_TORCH_OPS=OFF", "-DCMAKE_CUDA_ARCHITECTURES=87;90"],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    assert "CUDA architectures 87;90" in configure.stdout
    build = subprocess.run(["cmake", "--build", str(tmp_path), "--target", "asl_edge_kernels", "--parallel", "2"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    objects = list(tmp_path.rglob("*_cuda.cu.o"))
    assert {o.name for o in objects} >= {"tca_attention_cuda.cu.o", "nms1d_cuda.cu.o"}
    for obj in objects:                          # code for both architectures is embedded
        blob = obj.read_bytes()
        assert b"sm_87" in blob and b"sm_90" in blob, obj.name
