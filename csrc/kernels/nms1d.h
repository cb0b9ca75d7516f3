// 1-D non-maximum suppression (DESIGN §3, §4): the kernel interface shared by the PyTorch ops
// and the TensorRT plugin. Semantics are those of asl_edge.postprocess.batched_nms:
//
// - method kSoft: Gaussian soft-NMS of each group: repeatedly select the first maximum among
//   the remaining candidates, multiply the others by exp(-IoU^2 / sigma), then remove those
//   below min_score, filling each hole (scanning forward) with the current last candidate;
//   stop after max_out selections.
// - method kHard: candidates with score > min_score (all when min_score <= 0), by descending
//   score (stable), greedily kept unless IoU >= iou_threshold with an earlier kept one; at
//   most max_out.
// - IoU uses lengths end - start + 1e-6.
// - multiclass: groups are the classes in ascending label order, members in input order;
//   otherwise one group of all candidates, followed by segment voting when
//   voting_threshold > 0 (each kept segment becomes the score·IoU-weighted mean of all input
//   segments with plain IoU >= voting_threshold).
// - The kept candidates of all groups, concatenated in group order, are stably sorted by
//   descending score and the first max_out are written.
//
// Inputs: segments (n, 2) [start, end], scores (n), labels (n) in [0, num_classes).
// Outputs (fixed size): out_segments (max_out, 2), out_scores (max_out), out_labels (max_out)
// padded with 0, 0 and -1 after the first *out_count entries; out_count is one int32.
#pragma once

#include <cstddef>
#include <cstdint>

#include "status.h"

namespace asl_edge {
namespace kernels {

enum class NmsMethod : int32_t { kSoft = 0, kHard = 1 };

struct NmsParams {
  int32_t num_candidates;
  int32_t num_classes;
  NmsMethod method;
  float iou_threshold;
  float sigma;
  float min_score;
  int32_t max_out;
  bool multiclass;
  float voting_threshold;
};

// nullptr when the parameters are usable, else a message naming the problem.
const char* nms1d_check(const NmsParams& params);

void nms1d_cpu(const NmsParams& params, const float* segments, const float* scores, const int32_t* labels,
               float* out_segments, float* out_scores, int32_t* out_labels, int32_t* out_count);

// CUDA: all pointers on the device, FP32; `workspace` holds at least nms1d_cuda_workspace(params)
// bytes; `stream` is a cudaStream_t. Asynchronous.
size_t nms1d_cuda_workspace(const NmsParams& params);
Status nms1d_cuda(const NmsParams& params, const float* segments, const float* scores, const int32_t* labels,
                  float* out_segments, float* out_scores, int32_t* out_labels, int32_t* out_count,
                  void* workspace, void* stream);

// CUDA element-wise conversions for FP16 I/O (used by the TensorRT plugins).
Status half_to_float_cuda(const void* in, float* out, int64_t count, void* stream);
Status float_to_half_cuda(const float* in, void* out, int64_t count, void* stream);

}  // namespace kernels
}  // namespace asl_edge
