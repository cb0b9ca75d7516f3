// CUDA registrations of the asl_edge ops: they launch the kernels of csrc/kernels on the
// current torch stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "op_args.h"

namespace asl_edge {
namespace torch_ops {
namespace {

void check_status(kernels::Status status, const char* op) {
  if (status == kernels::Status::kSuccess) return;
  const char* detail = status == kernels::Status::kLaunchFailed ? kernels::last_error_detail() : "";
  TORCH_CHECK(false, op, ": ", kernels::status_message(status), *detail ? " (" : "", detail, *detail ? ")" : "");
}

at::Tensor tca_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                              int64_t num_heads, int64_t window, double theta, c10::string_view channel_scale) {
  const auto shape = tca_shape(q, k, v, mask, num_heads, window, theta, std::string(channel_scale));
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kHalf,
              "asl_edge::tca_attention (CUDA): q, k, v must be float32 or float16, got ", q.scalar_type());
  const c10::cuda::CUDAGuard guard(q.device());
  const auto qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), mc = mask.contiguous();
  auto out = at::empty_like(qc);
  const size_t workspace_bytes = kernels::tca_attention_cuda_workspace(shape);
  auto workspace = at::empty({static_cast<int64_t>(workspace_bytes)}, q.options().dtype(at::kByte));
  const auto dtype = q.scalar_type() == at::kHalf ? kernels::DataType::kFloat16 : kernels::DataType::kFloat32;
  check_status(kernels::tca_attention_cuda(shape, dtype, qc.data_ptr(), kc.data_ptr(), vc.data_ptr(),
                                           reinterpret_cast<const uint8_t*>(mc.data_ptr<bool>()), out.data_ptr(),
                                           workspace_bytes ? workspace.data_ptr() : nullptr,
                                           c10::cuda::getCurrentCUDAStream().stream()),
               "asl_edge::tca_attention");
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> nms1d_cuda(
    const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& labels, c10::string_view method,
    double iou_threshold, double sigma, double min_score, int64_t max_out, bool multiclass, double voting_threshold,
    int64_t num_classes) {
  const auto params = nms_params(segments, scores, labels, std::string(method), iou_threshold, sigma, min_score,
                                 max_out, multiclass, voting_threshold, num_classes);
  const c10::cuda::CUDAGuard guard(segments.device());
  const NmsTensors t(segments, scores, labels, max_out);
  const size_t workspace_bytes = kernels::nms1d_cuda_workspace(params);
  auto workspace = at::empty({static_cast<int64_t>(workspace_bytes)}, segments.options().dtype(at::kByte));
  check_status(kernels::nms1d_cuda(params, t.segments.data_ptr<float>(), t.scores.data_ptr<float>(),
                                   t.labels.data_ptr<int32_t>(),
                                   t.out_segments.data_ptr<float>(), t.out_scores.data_ptr<float>(),
                                   t.out_labels.data_ptr<int32_t>(), t.out_count.data_ptr<int32_t>(),
                                   workspace_bytes ? workspace.data_ptr() : nullptr,
                                   c10::cuda::getCurrentCUDAStream().stream()),
               "asl_edge::nms1d");
  return t.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(asl_edge, CUDA, m) {
  m.impl("tca_attention", &tca_attention_cuda);
  m.impl("nms1d", &nms1d_cuda);
}

}  // namespace torch_ops
}  // namespace asl_edge
