#!/usr/bin/env bash
# Compile the asl_edge TensorRT plugins against a TensorRT include directory without linking
# TensorRT (ASL_TENSORRT_COMPILE_ONLY=ON), then run the interface harness.
#
#   scripts/compile_trt_plugins.sh <tensorrt-include-dir> [build-dir] [--cuda] [--json FILE] [--require-gpu]
#
#   <tensorrt-include-dir>  a folder with NvInfer.h / NvInferRuntime.h / NvInferVersion.h
#                           (TensorRT 10.x or 11.x; e.g. the include/ folder of github.com/NVIDIA/TensorRT)
#   [build-dir]             default: build/trt-<major.minor.patch> under the repository
#   --cuda                  also build the CUDA kernels (ASL_WITH_CUDA=ON; needs nvcc, takes minutes),
#                           so that the harness runs enqueue on a GPU when one is present.
#                           Without it the kernels' CUDA entry points are stubs and enqueue is skipped.
#   --json FILE             where the harness writes its JSON report (default <build-dir>/harness.json)
#   --require-gpu           make the harness fail when it cannot run enqueue on a device
#
# Environment: JOBS (parallel build jobs, default 2), CMAKE_CUDA_ARCHITECTURES (default 87;90),
# CUDAToolkit_ROOT (default /usr/local/cuda when it exists).
# Fails when the build fails, when compiling csrc/tensorrt produces any compiler warning
# (-Wall -Wextra), or when the harness reports a failed check.
set -euo pipefail

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

[[ $# -ge 1 ]] || usage
INCLUDE_DIR=""
BUILD_DIR=""
WITH_CUDA=OFF
JSON=""
HARNESS_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cuda) WITH_CUDA=ON ;;
    --json) JSON="$2"; shift ;;
    --require-gpu) HARNESS_ARGS+=(--require-gpu) ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *)
      if [[ -z "$INCLUDE_DIR" ]]; then INCLUDE_DIR="$1"
      elif [[ -z "$BUILD_DIR" ]]; then BUILD_DIR="$1"
      else echo "unexpected argument $1" >&2; usage; fi ;;
  esac
  shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INCLUDE_DIR="$(cd "$INCLUDE_DIR" && pwd)"
VERSION_H="$INCLUDE_DIR/NvInferVersion.h"
[[ -f "$VERSION_H" && -f "$INCLUDE_DIR/NvInferRuntime.h" ]] || { echo "no TensorRT headers in $INCLUDE_DIR" >&2; exit 2; }

# NV_TENSORRT_MAJOR is a number in 10.x and TRT_MAJOR_ENTERPRISE's alias in 11.x.
version_part() {
  local v
  v="$(sed -n "s/^#define NV_TENSORRT_$1 \([0-9][0-9]*\).*/\1/p" "$VERSION_H" | head -1)"
  [[ -n "$v" ]] || v="$(sed -n "s/^#define TRT_$1_ENTERPRISE \([0-9][0-9]*\).*/\1/p" "$VERSION_H" | head -1)"
  echo "${v:-?}"
}
TRT_VERSION="$(version_part MAJOR).$(version_part MINOR).$(version_part PATCH)"
echo "TensorRT headers: $TRT_VERSION ($INCLUDE_DIR)"

BUILD_DIR="${BUILD_DIR:-$REPO/build/trt-$TRT_VERSION}"
JSON="${JSON:-$BUILD_DIR/harness.json}"
JOBS="${JOBS:-2}"
mkdir -p "$BUILD_DIR"

CMAKE_ARGS=(
  -S "$REPO" -B "$BUILD_DIR"
  -DCMAKE_BUILD_TYPE=Release
  -DASL_BUILD_TORCH_OPS=OFF
  -DASL_WITH_CUDA="$WITH_CUDA"
  -DASL_TENSORRT_INCLUDE_DIR="$INCLUDE_DIR"
  -DASL_TENSORRT_COMPILE_ONLY=ON
)
if [[ -z "${CUDAToolkit_ROOT:-}" && -d /usr/local/cuda ]]; then
  CMAKE_ARGS+=(-DCUDAToolkit_ROOT=/usr/local/cuda)
fi
if [[ "$WITH_CUDA" == ON ]]; then
  command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]] || { echo "--cuda needs nvcc" >&2; exit 2; }
  command -v nvcc >/dev/null || CMAKE_ARGS+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  CMAKE_ARGS+=(-DCMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-87;90}")
fi

echo "== configure (ASL_WITH_CUDA=$WITH_CUDA, compile-only)"
cmake "${CMAKE_ARGS[@]}" >"$BUILD_DIR/configure.log" 2>&1 || { cat "$BUILD_DIR/configure.log"; exit 1; }
grep -E "asl_edge:" "$BUILD_DIR/configure.log" || true

echo "== build asl_edge_trt_plugins asl_edge_trt_harness asl_edge_trt_loader_check (-j$JOBS)"
# Rebuild our own sources so that their warnings show up in this log every time.
find "$BUILD_DIR" -path '*csrc/tensorrt*' -name '*.o' -delete 2>/dev/null || true
set +e
cmake --build "$BUILD_DIR" --target asl_edge_trt_plugins asl_edge_trt_harness asl_edge_trt_loader_check -j "$JOBS" >"$BUILD_DIR/build.log" 2>&1
rc=$?
set -e
if [[ $rc -ne 0 ]]; then cat "$BUILD_DIR/build.log"; echo "build failed" >&2; exit 1; fi
WARNINGS="$(grep -E 'warning:' "$BUILD_DIR/build.log" | grep -E 'csrc/tensorrt/' || true)"
if [[ -n "$WARNINGS" ]]; then
  grep -E -B2 -A6 'warning:' "$BUILD_DIR/build.log" || true
  echo "compiler warnings in csrc/tensorrt (see above)" >&2
  exit 1
fi
OTHER="$(grep -cE 'warning:' "$BUILD_DIR/build.log" || true)"
echo "build ok: no warnings in csrc/tensorrt (${OTHER:-0} elsewhere)"
LIB="$(find "$BUILD_DIR" -name 'libasl_edge_trt_plugins.so' | head -1)"
HARNESS="$(find "$BUILD_DIR" -name 'asl_edge_trt_harness' -type f -perm -u+x | head -1)"
echo "plugin library: $LIB"
if command -v nm >/dev/null; then
  echo "exported entry points: $(nm -D --defined-only "$LIB" | awk '{print $3}' | grep -E '^(getCreators|setLoggerFinder)$' | tr '\n' ' ')"
  echo "undefined TensorRT symbols (resolved by libnvinfer at load time): $(nm -D --undefined-only "$LIB" | awk '{print $2}' | grep -E '^(getPluginRegistry|getLogger)$' | tr '\n' ' ')"
fi

LOADER="$(find "$BUILD_DIR" -name 'asl_edge_trt_loader_check' -type f -perm -u+x | head -1)"

echo "== load check (dlopen with a stand-in for libnvinfer)"
"$LOADER" "$LIB"

echo "== harness"
"$HARNESS" --json "$JSON" "${HARNESS_ARGS[@]}"
