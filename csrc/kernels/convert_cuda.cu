// FP16 <-> FP32 element-wise conversions for the TensorRT plugins (nms1d.h).
//
// Structure: one grid-stride kernel per direction, 256 threads per block, at most 4096 blocks
// (enough to fill any current GPU; the stride loop covers the rest). 64-bit indices, so any
// count works. FP32 -> FP16 rounds to nearest even (__float2half_rn). No workspace.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda_common.cuh"
#include "nms1d.h"

namespace asl_edge {
namespace kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

__global__ void half_to_float_kernel(const __half* __restrict__ in, float* __restrict__ out, int64_t count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    out[i] = __half2float(in[i]);
  }
}

__global__ void float_to_half_kernel(const float* __restrict__ in, __half* __restrict__ out, int64_t count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    out[i] = __float2half_rn(in[i]);
  }
}

int blocks_for(int64_t count) {
  return static_cast<int>(std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks));
}

}  // namespace

Status half_to_float_cuda(const void* in, float* out, int64_t count, void* stream) {
  if (count < 0 || (count > 0 && (in == nullptr || out == nullptr))) return Status::kInvalidArgument;
  if (count == 0) return Status::kSuccess;
  half_to_float_kernel<<<blocks_for(count), kThreads, 0, cuda_detail::as_stream(stream)>>>(
      static_cast<const __half*>(in), out, count);
  return cuda_detail::launch_status();
}

Status float_to_half_cuda(const float* in, void* out, int64_t count, void* stream) {
  if (count < 0 || (count > 0 && (in == nullptr || out == nullptr))) return Status::kInvalidArgument;
  if (count == 0) return Status::kSuccess;
  float_to_half_kernel<<<blocks_for(count), kThreads, 0, cuda_detail::as_stream(stream)>>>(
      in, static_cast<__half*>(out), count);
  return cuda_detail::launch_status();
}

}  // namespace kernels
}  // namespace asl_edge
