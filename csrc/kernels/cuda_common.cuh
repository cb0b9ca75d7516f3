// Device helpers shared by the CUDA kernels of asl_edge (tca_attention_cuda.cu, nms1d_cuda.cu,
// convert_cuda.cu): launch-error checking, FP16/FP32 load/store, block-wide reductions and scans.
//
// Every block-collective helper here must be called by all threads of the block (it contains
// __syncthreads()); it starts with a barrier, so that the scratch array may be reused by
// consecutive calls, and its result is returned to every thread.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "status.h"

namespace asl_edge {
namespace kernels {
namespace cuda_detail {

// kLaunchFailed, recording why (see last_error_detail).
inline Status launch_failed(const char* detail) {
  set_last_error_detail(detail);
  return Status::kLaunchFailed;
}

inline Status launch_failed(cudaError_t err) { return launch_failed(cudaGetErrorString(err)); }

// The error state of the last launches on this thread: kLaunchFailed on any error. Clears
// the (non-sticky) error so that a later unrelated call does not report it again.
inline Status launch_status() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? Status::kSuccess : launch_failed(err);
}

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Largest dynamic shared memory a block may opt into on the current device (bytes), 0 on error.
inline size_t max_dynamic_smem() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  int optin = 0;
  if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) return 0;
  return static_cast<size_t>(optin);
}

inline size_t align_up(size_t bytes, size_t alignment = 256) { return (bytes + alignment - 1) / alignment * alignment; }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum of v over the block in a fixed order (deterministic), returned to every thread.
// scratch: >= 32 elements of shared memory.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int num_warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < num_warps; ++w) total += scratch[w];
  return total;
}

// Exclusive prefix sum of v over the threads of the block in threadIdx order; *total gets the
// sum over the block. scratch: >= 32 ints of shared memory.
__device__ __forceinline__ int block_exclusive_scan(int v, int* scratch, int* total) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int num_warps = (blockDim.x + 31) >> 5;
  int inclusive = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(0xffffffffu, inclusive, o);
    if (lane >= o) inclusive += n;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  int before = 0;
  int sum = 0;
  for (int w = 0; w < num_warps; ++w) {
    const int s = scratch[w];
    if (w < warp) before += s;
    sum += s;
  }
  *total = sum;
  return before + inclusive - v;
}

}  // namespace cuda_detail
}  // namespace kernels
}  // namespace asl_edge
