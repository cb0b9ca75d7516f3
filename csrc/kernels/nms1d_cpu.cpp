// CPU implementation of 1-D NMS (see nms1d.h), candidate by candidate in the order the
// semantics define, so that ties resolve exactly as in asl_edge.postprocess.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "nms1d.h"

namespace asl_edge {
namespace kernels {

const char* nms1d_check(const NmsParams& p) {
  if (p.num_candidates < 0) return "nms1d: the number of candidates must be non-negative";
  if (p.max_out <= 0) return "nms1d: max_out must be positive";
  if (p.num_classes <= 0) return "nms1d: num_classes must be positive";
  if (p.method != NmsMethod::kSoft && p.method != NmsMethod::kHard) return "nms1d: method must be soft or hard";
  if (p.method == NmsMethod::kSoft && !(p.sigma > 0.0f)) return "nms1d: sigma must be positive for soft-NMS";
  return nullptr;
}

namespace {

struct Candidate {
  int32_t index;  // into the input arrays
  float score;    // current (decayed) score
};

inline float segment_iou(const float* a, const float* b) {
  const float inter = std::max(std::min(a[1], b[1]) - std::max(a[0], b[0]), 0.0f);
  const float len_a = a[1] - a[0] + 1e-6f;
  const float len_b = b[1] - b[0] + 1e-6f;
  return inter / (len_a + len_b - inter);
}

// Gaussian soft-NMS of one group; `group` is permuted in place and its first entries, in
// selection order, are the kept ones. Returns how many were kept. One pass per selection
// decays the remaining candidates, drops the low ones (each hole takes the current last
// candidate, which is then examined in turn) and finds the next first maximum among the
// candidates whose positions are final.
int32_t soft_nms_group(std::vector<Candidate>& group, const float* segments, float sigma, float min_score,
                       int32_t max_out) {
  int32_t count = static_cast<int32_t>(group.size());
  std::vector<float> start(group.size()), end(group.size());
  for (size_t j = 0; j < group.size(); ++j) {
    start[j] = segments[2 * static_cast<int64_t>(group[j].index)];
    end[j] = segments[2 * static_cast<int64_t>(group[j].index) + 1];
  }
  auto move = [&](int32_t to, int32_t from) {
    group[to] = group[from];
    start[to] = start[from];
    end[to] = end[from];
  };
  int32_t best = 0;
  for (int32_t j = 1; j < count; ++j)
    if (group[j].score > group[best].score) best = j;
  int32_t i = 0;
  for (; i < count && i < max_out; ++i) {
    if (best != i) {
      std::swap(group[i], group[best]);
      std::swap(start[i], start[best]);
      std::swap(end[i], end[best]);
    }
    const float s0 = start[i], e0 = end[i];
    const float len0 = e0 - s0 + 1e-6f;
    best = i + 1;
    float best_score = 0.0f;
    int32_t j = i + 1;
    while (j < count) {
      const float inter = std::min(e0, end[j]) - std::max(s0, start[j]);
      if (inter > 0.0f) {  // otherwise IoU = 0 and the weight exp(-0) is exactly 1
        const float iou = inter / (len0 + (end[j] - start[j] + 1e-6f) - inter);
        group[j].score *= std::exp(-(iou * iou) / sigma);
      }
      if (group[j].score < min_score) {
        move(j, count - 1);
        --count;
        continue;
      }
      if (j == i + 1 || group[j].score > best_score) {
        best = j;
        best_score = group[j].score;
      }
      ++j;
    }
  }
  return std::min(count, i);
}

// Greedy hard NMS of one group; the kept candidates end up first, by descending score.
int32_t hard_nms_group(std::vector<Candidate>& group, const float* segments, float iou_threshold, float min_score,
                       int32_t max_out) {
  if (min_score > 0.0f) {
    group.erase(std::remove_if(group.begin(), group.end(), [&](const Candidate& c) { return !(c.score > min_score); }),
                group.end());
  }
  std::stable_sort(group.begin(), group.end(),
                   [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
  int32_t kept = 0;
  for (size_t j = 0; j < group.size() && kept < max_out; ++j) {
    const float* seg = segments + 2 * static_cast<int64_t>(group[j].index);
    bool suppressed = false;
    for (int32_t m = 0; m < kept && !suppressed; ++m)
      suppressed = segment_iou(segments + 2 * static_cast<int64_t>(group[m].index), seg) >= iou_threshold;
    if (!suppressed) group[kept++] = group[j];
  }
  return kept;
}

// Score·IoU-weighted mean of all input segments overlapping `seg` by at least `threshold`.
void vote_segment(const float* seg, const float* segments, const float* scores, int32_t n, float threshold,
                  float* out) {
  float total = 0.0f, start = 0.0f, end = 0.0f;
  for (int32_t j = 0; j < n; ++j) {
    const float* other = segments + 2 * static_cast<int64_t>(j);
    const float inter = std::max(std::min(seg[1], other[1]) - std::max(seg[0], other[0]), 0.0f);
    const float iou = inter / ((seg[1] - seg[0]) + (other[1] - other[0]) - inter);
    if (!(iou >= threshold)) continue;
    const float w = scores[j] * iou;
    total += w;
    start += w * other[0];
    end += w * other[1];
  }
  out[0] = start / total;
  out[1] = end / total;
}

}  // namespace

void nms1d_cpu(const NmsParams& p, const float* segments, const float* scores, const int32_t* labels,
               float* out_segments, float* out_scores, int32_t* out_labels, int32_t* out_count) {
  const int32_t n = p.num_candidates;
  // groups: the labels present, ascending, members in input order (memory ~ n, not num_classes)
  std::vector<int32_t> members;
  for (int32_t j = 0; j < n; ++j)
    if (!p.multiclass || (labels[j] >= 0 && labels[j] < p.num_classes)) members.push_back(j);
  if (p.multiclass)
    std::stable_sort(members.begin(), members.end(), [&](int32_t a, int32_t b) { return labels[a] < labels[b]; });
  std::vector<std::vector<Candidate>> groups;
  for (size_t m = 0; m < members.size(); ++m) {
    const int32_t j = members[m];
    if (m == 0 || (p.multiclass && labels[j] != labels[members[m - 1]])) groups.emplace_back();
    groups.back().push_back({j, scores[j]});
  }
  std::vector<Candidate> kept;
  for (auto& group : groups) {
    const int32_t num_kept =
        p.method == NmsMethod::kSoft ? soft_nms_group(group, segments, p.sigma, p.min_score, p.max_out)
                                     : hard_nms_group(group, segments, p.iou_threshold, p.min_score, p.max_out);
    kept.insert(kept.end(), group.begin(), group.begin() + num_kept);
  }
  std::stable_sort(kept.begin(), kept.end(), [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
  const int32_t count = std::min<int32_t>(static_cast<int32_t>(kept.size()), p.max_out);
  const bool voting = !p.multiclass && p.voting_threshold > 0.0f;
  for (int32_t m = 0; m < p.max_out; ++m) {
    if (m < count) {
      const Candidate& c = kept[m];
      const float* seg = segments + 2 * static_cast<int64_t>(c.index);
      if (voting) {
        vote_segment(seg, segments, scores, n, p.voting_threshold, out_segments + 2 * m);
      } else {
        out_segments[2 * m] = seg[0];
        out_segments[2 * m + 1] = seg[1];
      }
      out_scores[m] = c.score;
      out_labels[m] = labels[c.index];
    } else {
      out_segments[2 * m] = 0.0f;
      out_segments[2 * m + 1] = 0.0f;
      out_scores[m] = 0.0f;
      out_labels[m] = -1;
    }
  }
  *out_count = count;
}

}  // namespace kernels
}  // namespace asl_edge
