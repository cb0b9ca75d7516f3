// Argument checks and conversions shared by the CPU and CUDA registrations of the asl_edge ops.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "nms1d.h"
#include "tca_attention.h"

namespace asl_edge {
namespace torch_ops {

inline kernels::ChannelScale parse_channel_scale(const std::string& name) {
  if (name == "time") return kernels::ChannelScale::kTime;
  if (name == "head") return kernels::ChannelScale::kHead;
  TORCH_CHECK(false, "asl_edge::tca_attention: channel_scale must be 'time' or 'head', got '", name, "'");
}

inline kernels::NmsMethod parse_nms_method(const std::string& name) {
  if (name == "soft") return kernels::NmsMethod::kSoft;
  if (name == "hard") return kernels::NmsMethod::kHard;
  TORCH_CHECK(false, "asl_edge::nms1d: method must be 'soft' or 'hard', got '", name, "'");
}

// Checks q, k, v (B, D, T) of one dtype and device and mask (B, T) bool; returns the kernel shape.
inline kernels::TcaShape tca_shape(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& mask, int64_t num_heads, int64_t window, double theta,
                                   const std::string& channel_scale) {
  TORCH_CHECK(q.dim() == 3, "asl_edge::tca_attention: q must be (B, D, T), got ", q.sizes());
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(),
              "asl_edge::tca_attention: q, k, v must have one shape, got ", q.sizes(), ", ", k.sizes(), ", ",
              v.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "asl_edge::tca_attention: q, k, v must have one dtype, got ", q.scalar_type(), ", ", k.scalar_type(),
              ", ", v.scalar_type());
  TORCH_CHECK(mask.scalar_type() == at::kBool, "asl_edge::tca_attention: mask must be bool, got ",
              mask.scalar_type());
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == q.size(0) && mask.size(1) == q.size(2),
              "asl_edge::tca_attention: mask must be (B, T) = (", q.size(0), ", ", q.size(2), "), got ", mask.sizes());
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device() && mask.device() == q.device(),
              "asl_edge::tca_attention: all inputs must be on one device, got q ", q.device(), ", k ", k.device(),
              ", v ", v.device(), ", mask ", mask.device());
  kernels::TcaShape shape{static_cast<int32_t>(q.size(0)), static_cast<int32_t>(q.size(1)),
                          static_cast<int32_t>(q.size(2)), static_cast<int32_t>(num_heads),
                          static_cast<int32_t>(window), theta,
                          parse_channel_scale(channel_scale)};
  const char* problem = kernels::tca_attention_check(shape);
  TORCH_CHECK(problem == nullptr, problem ? problem : "", " (num_heads ", num_heads, ", channels ", q.size(1),
              ", window ", window, ", theta ", theta, ")");
  return shape;
}

// Checks segments (N, 2), scores (N) float32 and labels (N) integer; returns the kernel params.
inline kernels::NmsParams nms_params(const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& labels,
                                     const std::string& method, double iou_threshold, double sigma,
                                     double min_score, int64_t max_out, bool multiclass, double voting_threshold,
                                     int64_t num_classes) {
  TORCH_CHECK(segments.dim() == 2 && segments.size(1) == 2, "asl_edge::nms1d: segments must be (N, 2), got ",
              segments.sizes());
  const int64_t n = segments.size(0);
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == n, "asl_edge::nms1d: scores must be (", n, "), got ",
              scores.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == n, "asl_edge::nms1d: labels must be (", n, "), got ",
              labels.sizes());
  TORCH_CHECK(segments.scalar_type() == at::kFloat && scores.scalar_type() == at::kFloat,
              "asl_edge::nms1d: segments and scores must be float32, got ", segments.scalar_type(), " and ",
              scores.scalar_type());
  TORCH_CHECK(labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt,
              "asl_edge::nms1d: labels must be int64 or int32, got ", labels.scalar_type());
  TORCH_CHECK(scores.device() == segments.device() && labels.device() == segments.device(),
              "asl_edge::nms1d: all inputs must be on one device, got segments ", segments.device(), ", scores ",
              scores.device(), ", labels ", labels.device());
  kernels::NmsParams params{static_cast<int32_t>(n),
                            static_cast<int32_t>(num_classes),
                            parse_nms_method(method),
                            static_cast<float>(iou_threshold),
                            static_cast<float>(sigma),
                            static_cast<float>(min_score),
                            static_cast<int32_t>(max_out),
                            multiclass,
                            static_cast<float>(voting_threshold)};
  const char* problem = kernels::nms1d_check(params);
  TORCH_CHECK(problem == nullptr, problem ? problem : "", " (max_out ", max_out, ", num_classes ", num_classes,
              ", sigma ", sigma, ")");
  return params;
}

// Contiguous inputs (labels as int32) and freshly allocated fixed-size outputs of nms1d.
struct NmsTensors {
  at::Tensor segments, scores, labels;
  at::Tensor out_segments, out_scores, out_labels, out_count;

  NmsTensors(const at::Tensor& segs, const at::Tensor& sc, const at::Tensor& lb, int64_t max_out)
      : segments(segs.contiguous()),
        scores(sc.contiguous()),
        labels(lb.to(at::kInt).contiguous()),
        out_segments(at::empty({max_out, 2}, segs.options())),
        out_scores(at::empty({max_out}, sc.options())),
        out_labels(at::empty({max_out}, lb.options().dtype(at::kInt))),
        out_count(at::empty({1}, lb.options().dtype(at::kInt))) {}

  // The op's outputs: segments, scores, labels as int64, count.
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> result() const {
    return {out_segments, out_scores, out_labels.to(at::kLong), out_count};
  }
};

}  // namespace torch_ops
}  // namespace asl_edge
