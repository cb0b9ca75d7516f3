#!/usr/bin/env bash
# One command for a lent GPU machine (PyTorch with CUDA, nvcc, no internet, no TensorRT):
# builds the CUDA ops, runs the op tests (CPU and GPU) and the op benchmarks, builds and runs
# the TensorRT plugin harness when headers were carried along, and writes JSON to $OUT.
#
#   OUT=/some/dir benchmarks/gpu_check.sh
#
# From a development machine (device tool), carrying the TensorRT headers and pytest along:
#   mkdir -p build/trt-headers && cp -r /path/to/TensorRT/include build/trt-headers/
#   benchmarks/gpu_pydeps.sh
#   run(command="benchmarks/gpu_check.sh", carry=["build/trt-headers", "build/gpu_pydeps"])
#
# Optional environment:
#   ASL_CUDA_ARCH      CUDA architectures to compile (default 90: H100/H200)
#   ASL_TRT_INCLUDE    TensorRT include dir carried along (default build/trt-headers/include if present)
#   ASL_PYDEPS         folder with pytest & co. to put on PYTHONPATH when the machine lacks pytest
#                      (default build/gpu_pydeps; make it with benchmarks/gpu_pydeps.sh)
# Every step has its own time limit; the whole script stays under 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
ARCH=${ASL_CUDA_ARCH:-90}
TRT_INCLUDE=${ASL_TRT_INCLUDE:-build/trt-headers/include}
PYDEPS=${ASL_PYDEPS:-build/gpu_pydeps}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! $PY -c "import pytest" 2>/dev/null && [ -d "$PYDEPS" ]; then
  export PYTHONPATH="$PYTHONPATH:$PWD/$PYDEPS"
fi
SUMMARY="$OUT/gpu_check.json"
steps=()

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, record status and time
  local name=$1 limit=$2
  shift 2
  local start end rc
  start=$(date +%s.%N)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  steps+=("{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(awk "BEGIN {printf \"%.1f\", $end - $start}")}")
  echo "[$name] rc=$rc ($(tail -n 1 "$OUT/$name.log"))"
  return $rc
}

step environment 60 bash -c "nvidia-smi; nvcc --version; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'"
if step build 240 $PY -m asl_edge build-ext --cuda --cuda-arch "$ARCH" --build-dir build/gpu-native --jobs "$(nproc)"; then
  step doctor 60 bash -c "$PY -m asl_edge doctor --json > '$OUT/doctor.json'"
  step tests 180 $PY -m pytest -q -p no:cacheprovider tests/test_ops_cuda.py tests/test_ops.py tests/test_attention.py \
    --junitxml="$OUT/pytest.xml"
  step bench 120 $PY benchmarks/bench_ops.py --device all --runs 50 --out "$OUT/bench_ops.json"
fi
if [ -f "$TRT_INCLUDE/NvInfer.h" ]; then
  step plugin_harness 240 env CMAKE_CUDA_ARCHITECTURES="$ARCH" JOBS="$(nproc)" \
    scripts/compile_trt_plugins.sh "$TRT_INCLUDE" build/gpu-trt --cuda --require-gpu --json "$OUT/harness.json"
else
  echo "[plugin_harness] skipped: no TensorRT headers at $TRT_INCLUDE"
fi
( IFS=,; echo "{\"steps\": [${steps[*]}]}" ) > "$SUMMARY"
echo "wrote $SUMMARY"
