// CUDA entry points of a build without CUDA: they report Status::kNotCompiled, so consumers
// link the same symbols whether or not the CUDA kernels were compiled.
#include "nms1d.h"
#include "tca_attention.h"

namespace asl_edge {
namespace kernels {

size_t tca_attention_cuda_workspace(const TcaShape&) { return 0; }

Status tca_attention_cuda(const TcaShape&, DataType, const void*, const void*, const void*, const uint8_t*, void*,
                          void*, void*) {
  return Status::kNotCompiled;
}

size_t nms1d_cuda_workspace(const NmsParams&) { return 0; }

Status nms1d_cuda(const NmsParams&, const float*, const float*, const int32_t*, float*, float*, int32_t*, int32_t*,
                  void*, void*) {
  return Status::kNotCompiled;
}

Status half_to_float_cuda(const void*, float*, int64_t, void*) { return Status::kNotCompiled; }

Status float_to_half_cuda(const float*, void*, int64_t, void*) { return Status::kNotCompiled; }

}  // namespace kernels
}  // namespace asl_edge
