#!/usr/bin/env bash
# One command for a lent GPU machine (PyTorch with CUDA, nvcc, no internet, no TensorRT):
# installs asl-edge in place (no downloads), builds the CUDA ops, runs the op tests (CPU and GPU),
# the runtime's CUDA-graph tests, the training tests (AMP on CUDA) and the op and training-iteration benchmarks, builds and runs
# the TensorRT plugin harness when headers were carried along, runs asl-edge bench on the GPU
# (CUDA graphs, fp16, batch 8, the CUDA NMS in the whole window; JSON, Markdown and plots in
# $OUT/bench), measures the i3d-rgb extractor in fp16 on CUDA, eager and its TorchScript export
# (clips/s at batch 1 and 8, cosine to fp32 on the CPU; needs the I3D weights, below) and prints
# the commands that make the ONNX clip model and its TensorRT engine (trtexec), and writes JSON to $OUT.
#
#   OUT=/some/dir benchmarks/gpu_check.sh
#
# From a development machine (device tool), carrying the TensorRT headers and pytest along:
#   mkdir -p build/trt-headers && cp -r /path/to/TensorRT/include build/trt-headers/
#   benchmarks/gpu_pydeps.sh
#   run(command="benchmarks/gpu_check.sh", carry=["build/trt-headers", "build/gpu_pydeps"])
# The machine has no internet: for the I3D step carry the weights (49 MB of the 64 MiB a run
# carries, so on their own: cp ~/.cache/asl-edge/i3d-rgb-kinetics400.pt build/ after
# `asl-edge weights i3d`), e.g.
#   run(command="ASL_GPU_STEPS=i3d benchmarks/gpu_check.sh", carry=["build/i3d-rgb-kinetics400.pt"])
#
# Optional environment:
#   ASL_KEEP_CXX       set to keep $CXX (default: /usr/bin/g++ when present)
#   ASL_CUDA_ARCH      CUDA architectures to compile (default 90: H100/H200)
#   ASL_TRT_INCLUDE    TensorRT include dir carried along (default build/trt-headers/include if present)
#   ASL_PYDEPS         folder with pytest & co. to put on PYTHONPATH when the machine lacks pytest
#                      (default build/gpu_pydeps; make it with benchmarks/gpu_pydeps.sh)
#   ASL_I3D_WEIGHTS    i3d-rgb weights file carried along (default build/i3d-rgb-kinetics400.pt); the
#                      I3D step is skipped, with the reason, without it
#   ASL_GPU_STEPS      "i3d": only the install and the I3D step; "ddp": only the install and the
#                      1-GPU torchrun (NCCL) training run (default: every step)
#   ASL_GPU_CHECK_BUDGET_S  wall-clock budget of the whole script (default 540 s); each step runs
#                      under its own limit capped by what is left, and the summary JSON is
#                      rewritten after every step. Exit status 1 when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${OUT:-out/gpu_check}")   # absolute: some steps run in benchmarks/
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
DEADLINE=$(( $(date +%s) + ${ASL_GPU_CHECK_BUDGET_S:-540} ))   # whole script, seconds
steps=()
failed=0

write_summary() {
  ( IFS=,; echo "{\"steps\": [${steps[*]}], \"failed\": $failed}" ) > "$SUMMARY"
}

step() {  # step NAME LIMIT_S COMMAND...: run under min(LIMIT_S, time left), log to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local left=$(( DEADLINE - $(date +%s) ))
  if [ "$left" -lt 10 ]; then
    steps+=("{\"step\": \"$name\", \"rc\": null, \"skipped\": \"out of time\"}")
    failed=1
    write_summary
    echo "[$name] skipped: out of time"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local start end rc
  start=$(date +%s.%N)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  [ "$rc" -ne 0 ] && failed=1
  steps+=("{\"step\": \"$name\", \"rc\": $rc, \"limit_s\": $limit, \"seconds\": $(awk "BEGIN {printf \"%.1f\", $end - $start}")}")
  write_summary
  echo "[$name] rc=$rc ($(tail -n 1 "$OUT/$name.log"))"
  return $rc
}

# The image's CXX may be a GCC whose library folder holds only a static libstdc++, which then
# ends up inside our library and crashes inside torch (build-ext refuses such a library). Use the
# system compiler for both the C++ code and nvcc's host side, whose link folders CMake reuses.
if [ -z "${ASL_KEEP_CXX:-}" ] && [ -x /usr/bin/g++ ]; then export CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++; fi
step environment 30 bash -c "nvidia-smi; nvcc --version; echo CXX=\${CXX:-unset} CUDAHOSTCXX=\${CUDAHOSTCXX:-unset}; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'"
# asl_edge.train and asl_edge.export live in top-level folders: an editable install maps them
step install 60 $PY -m pip install -q --no-index --no-deps --no-build-isolation -e .
# torch.distributed on the GPU (issue 20; needs no native ops): a 1-GPU torchrun training run of the
# synthetic benchmark (DistributedDataParallel over NCCL, rank 0 on cuda:0) against the same training
# in one plain process: the loss curves' largest differences, both average mAPs and the seconds per
# epoch (what DDP costs on one GPU) in $OUT/bench_distributed.json; it fails unless the torchrun run
# recorded backend nccl. Runs last (every step) or alone: ASL_GPU_STEPS=ddp benchmarks/gpu_check.sh
ddp_nccl_step() {
  step ddp_nccl 200 $PY benchmarks/bench_distributed.py --preset easy --epochs 4 --device cuda --nproc 1 \
    --out "$OUT/bench_distributed.json"
}
if [ "${ASL_GPU_STEPS:-all}" = "ddp" ]; then
  ddp_nccl_step
  write_summary
  echo "wrote $SUMMARY (failed: $failed)"
  exit $failed
fi
# i3d-rgb fp16 on CUDA (needs no native ops): eager and TorchScript clips/s, the ONNX/trtexec commands
I3D_WEIGHTS=${ASL_I3D_WEIGHTS:-build/i3d-rgb-kinetics400.pt}
if [ -f "$I3D_WEIGHTS" ]; then
  export XDG_CACHE_HOME="$PWD/build/gpu_cache"
  mkdir -p "$XDG_CACHE_HOME/asl-edge" && cp "$I3D_WEIGHTS" "$XDG_CACHE_HOME/asl-edge/i3d-rgb-kinetics400.pt"
  step i3d 180 bash -c "cd benchmarks && $PY bench_features.py --device cuda --runs 10 --exports --out '$OUT/bench_i3d.json'"
  grep -h "i3d-rgb\|TensorRT engine" "$OUT/i3d.log" | grep -v '^ *"' || true
else
  steps+=("{\"step\": \"i3d\", \"rc\": null, \"skipped\": \"no I3D weights at $I3D_WEIGHTS\"}")
  echo "[i3d] skipped: no I3D weights at $I3D_WEIGHTS (cp ~/.cache/asl-edge/i3d-rgb-kinetics400.pt build/ and carry it)"
fi
if [ "${ASL_GPU_STEPS:-all}" = "i3d" ]; then
  write_summary
  echo "wrote $SUMMARY (failed: $failed)"
  exit $failed
fi
if step build 200 $PY -m asl_edge build-ext --cuda --cuda-arch "$ARCH" --build-dir build/gpu-native --jobs "$(nproc)"; then
  step doctor 30 bash -c "$PY -m asl_edge doctor --json > '$OUT/doctor.json'"
  step tests 120 $PY -m pytest -q -p no:cacheprovider tests/test_ops_cuda.py tests/test_ops.py tests/test_attention.py \
    tests/test_runtime_cuda.py tests/test_features.py \
    --junitxml="$OUT/pytest.xml"
  step train_tests 100 $PY -m pytest -q -p no:cacheprovider tests/test_trainer.py tests/test_train_losses.py \
    -k "not easy_run and not reaches and not reproduces" --junitxml="$OUT/pytest_train.xml"
  step bench 90 $PY benchmarks/bench_ops.py --device all --runs 50 --out "$OUT/bench_ops.json"
  step bench_train 60 bash -c "cd benchmarks && $PY bench_train.py --iteration --device cuda --runs 10 --out '$OUT/bench_train.json'"
  step bench_features 90 bash -c "cd benchmarks && $PY bench_features.py --device cuda --runs 5 --out '$OUT/bench_features.json'"
  step bench_gpu 240 $PY -m asl_edge bench --device cuda --stages network,window,postprocess,features --runs 20 \
    --out "$OUT/bench"
fi
if [ -f "$TRT_INCLUDE/NvInfer.h" ]; then
  step plugin_harness 200 env CMAKE_CUDA_ARCHITECTURES="$ARCH" JOBS="$(nproc)" \
    scripts/compile_trt_plugins.sh "$TRT_INCLUDE" build/gpu-trt --cuda --require-gpu --json "$OUT/harness.json"
else
  echo "[plugin_harness] skipped: no TensorRT headers at $TRT_INCLUDE"
fi

# --- torch.distributed on the GPU (issue 20) ----------------------------------------------------
# (defined above as ddp_nccl_step; ASL_GPU_STEPS=ddp runs it right after the install, alone)
ddp_nccl_step

write_summary
echo "wrote $SUMMARY (failed: $failed)"
exit $failed
