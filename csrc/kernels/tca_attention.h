// Fused temporal-channel attention (DESIGN §2.2, §4): the kernel interface shared by the
// PyTorch ops (csrc/torch) and the TensorRT plugin (csrc/tensorrt). Raw pointers only.
//
// Layout: q, k, v and out are contiguous (batch, channels, length); head h owns channels
// [h*d, (h+1)*d) with d = channels / num_heads. mask is contiguous (batch, length), one byte
// per position, non-zero = valid.
//
// Per head, with valid(t) the mask:
//   temporal  f_ta[:, t] = sum_j softmax_j(q[:, t]·k[:, j] / sqrt(d)) v[:, j] over valid keys j
//             with |j - t| <= window / 2 (every key when window <= 1);
//   channel   A = softmax_rows(sum_t valid(t) q[i, t] k[j, t] * s), f_ca[i, t] = sum_j A[i, j] v[j, t],
//             s = 1 / sqrt(max(#valid, 1)) ("time") or 1 / sqrt(d) ("head");
//   fusion    out = ((1 - theta) f_ta + theta f_ca) * valid(t).
// theta == 0 skips the channel branch and theta == 1 the temporal one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "status.h"

namespace asl_edge {
namespace kernels {

enum class ChannelScale : int32_t { kTime = 0, kHead = 1 };

struct TcaShape {
  int32_t batch;
  int32_t channels;
  int32_t length;
  int32_t num_heads;
  int32_t window;
  double theta;
  ChannelScale channel_scale;
};

// nullptr when the shape and attributes are usable, else a message naming the problem.
const char* tca_attention_check(const TcaShape& shape);

// CPU: computes the (batch, head) pairs with flat index b * num_heads + h in [first, last),
// so that callers can spread them over their own threads.
void tca_attention_cpu(const TcaShape& shape, const float* q, const float* k, const float* v,
                       const uint8_t* mask, float* out, int64_t first, int64_t last);
void tca_attention_cpu(const TcaShape& shape, const double* q, const double* k, const double* v,
                       const uint8_t* mask, double* out, int64_t first, int64_t last);

// CUDA: q, k, v, out of `dtype` (FP32, or FP16 with FP32 accumulation), device pointers;
// `workspace` holds at least tca_attention_cuda_workspace(shape) bytes (may be null when that
// is 0); `stream` is a cudaStream_t. Asynchronous: returns after the launches.
size_t tca_attention_cuda_workspace(const TcaShape& shape);
Status tca_attention_cuda(const TcaShape& shape, DataType dtype, const void* q, const void* k, const void* v,
                          const uint8_t* mask, void* out, void* workspace, void* stream);

}  // namespace kernels
}  // namespace asl_edge
