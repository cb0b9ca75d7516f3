// The asl_edge torch ops: schemas, CPU kernels and shape-only (Meta) kernels, so that eager
// mode, TorchScript, torch.export and AOTInductor can all call them. The CUDA kernels are
// registered in ops_cuda.cpp when the library is built with CUDA.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "op_args.h"

namespace asl_edge {
namespace torch_ops {
namespace {

at::Tensor tca_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                             int64_t num_heads, int64_t window, double theta, c10::string_view channel_scale) {
  const auto shape = tca_shape(q, k, v, mask, num_heads, window, theta, std::string(channel_scale));
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kDouble,
              "asl_edge::tca_attention (CPU): q, k, v must be float32 or float64, got ", q.scalar_type());
  const auto qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), mc = mask.contiguous();
  auto out = at::empty_like(qc);
  const auto* valid = reinterpret_cast<const uint8_t*>(mc.data_ptr<bool>());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "asl_edge::tca_attention", [&] {
    at::parallel_for(0, static_cast<int64_t>(shape.batch) * shape.num_heads, 1, [&](int64_t first, int64_t last) {
      kernels::tca_attention_cpu(shape, qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(),
                                 valid, out.data_ptr<scalar_t>(), first, last);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> nms1d_cpu(
    const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& labels, c10::string_view method,
    double iou_threshold, double sigma, double min_score, int64_t max_out, bool multiclass, double voting_threshold,
    int64_t num_classes) {
  const auto params = nms_params(segments, scores, labels, std::string(method), iou_threshold, sigma, min_score,
                                 max_out, multiclass, voting_threshold, num_classes);
  const NmsTensors t(segments, scores, labels, max_out);
  kernels::nms1d_cpu(params, t.segments.data_ptr<float>(), t.scores.data_ptr<float>(),
                     t.labels.data_ptr<int32_t>(), t.out_segments.data_ptr<float>(), t.out_scores.data_ptr<float>(),
                     t.out_labels.data_ptr<int32_t>(), t.out_count.data_ptr<int32_t>());
  return t.result();
}

at::Tensor tca_attention_meta(const at::Tensor& q, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
                              int64_t, double, c10::string_view) {
  return at::empty_like(q, q.options().memory_format(at::MemoryFormat::Contiguous));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> nms1d_meta(const at::Tensor& segments,
                                                                     const at::Tensor& scores,
                                                                     const at::Tensor& labels, c10::string_view,
                                                                     double, double, double, int64_t max_out, bool,
                                                                     double, int64_t) {
  return {at::empty({max_out, 2}, segments.options()), at::empty({max_out}, scores.options()),
          at::empty({max_out}, labels.options().dtype(at::kLong)), at::empty({1}, labels.options().dtype(at::kInt))};
}

}  // namespace

TORCH_LIBRARY(asl_edge, m) {
  m.def(
      "tca_attention(Tensor q, Tensor k, Tensor v, Tensor mask, int num_heads, int window, float theta, "
      "str channel_scale) -> Tensor");
  m.def(
      "nms1d(Tensor segments, Tensor scores, Tensor labels, str method, float iou_threshold, float sigma, "
      "float min_score, int max_out, bool multiclass, float voting_threshold, int num_classes) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(asl_edge, CPU, m) {
  m.impl("tca_attention", &tca_attention_cpu);
  m.impl("nms1d", &nms1d_cpu);
}

TORCH_LIBRARY_IMPL(asl_edge, Meta, m) {
  m.impl("tca_attention", &tca_attention_meta);
  m.impl("nms1d", &nms1d_meta);
}

}  // namespace torch_ops
}  // namespace asl_edge
