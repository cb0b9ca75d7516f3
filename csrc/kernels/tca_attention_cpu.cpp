// CPU implementation of the fused temporal-channel attention (see tca_attention.h).
//
// Each (batch, head) pair is independent. Its q, k, v slices are (d, T) with T contiguous and
// every hot loop runs over contiguous memory: the local window as one logit row per window
// offset (like the PyTorch reference), the channel branch as two register-tiled matrix products. Sums use
// the element type (float or double). On x86-64 the hot functions are also compiled for
// AVX2 and picked at run time.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "tca_attention.h"

// GCC only: clang does not support target_clones on function templates.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ASL_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ASL_CPU_CLONES
#endif

namespace asl_edge {
namespace kernels {

const char* tca_attention_check(const TcaShape& s) {
  if (s.batch < 0 || s.length < 0) return "tca_attention: batch and length must be non-negative";
  if (s.num_heads <= 0) return "tca_attention: num_heads must be positive";
  if (s.channels <= 0 || s.channels % s.num_heads != 0)
    return "tca_attention: channels must be a positive multiple of num_heads";
  if (s.window > 1 && s.window % 2 == 0) return "tca_attention: window must be odd (or <= 1 for global attention)";
  if (!(s.theta >= 0.0 && s.theta <= 1.0)) return "tca_attention: theta must lie in [0, 1]";
  if (s.channel_scale != ChannelScale::kTime && s.channel_scale != ChannelScale::kHead)
    return "tca_attention: channel_scale must be time or head";
  return nullptr;
}

namespace {

template <typename T>
void transpose_into(const T* src, int64_t rows, int64_t cols, std::vector<T>& dst) {
  dst.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// C (m x n) = A (m x p, row stride lda) · B (p x n, row stride ldb), C row stride ldc.
// Tiles of 4 rows x 16 columns keep their sums in vector registers (GCC/Clang vector
// extensions) across the whole p loop; edges fall back to plain loops.
template <typename T>
inline void matmul(int64_t m, int64_t n, int64_t p, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
                   int64_t ldc) {
  constexpr int64_t kRows = 4, kLanes = 32 / sizeof(T), kCols = 2 * kLanes;
  typedef T Vec __attribute__((vector_size(32)));
  const int64_t m_tiles = m / kRows * kRows, n_tiles = n / kCols * kCols;
  for (int64_t i0 = 0; i0 < m_tiles; i0 += kRows) {
    for (int64_t j0 = 0; j0 < n_tiles; j0 += kCols) {
      Vec acc[kRows][2] = {};
      for (int64_t x = 0; x < p; ++x) {
        Vec b0, b1;
        std::memcpy(&b0, b + x * ldb + j0, sizeof(Vec));
        std::memcpy(&b1, b + x * ldb + j0 + kLanes, sizeof(Vec));
        for (int64_t r = 0; r < kRows; ++r) {
          const T av = a[(i0 + r) * lda + x];
          acc[r][0] += av * b0;
          acc[r][1] += av * b1;
        }
      }
      for (int64_t r = 0; r < kRows; ++r) {
        std::memcpy(c + (i0 + r) * ldc + j0, &acc[r][0], sizeof(Vec));
        std::memcpy(c + (i0 + r) * ldc + j0 + kLanes, &acc[r][1], sizeof(Vec));
      }
    }
  }
  for (int64_t i = 0; i < m; ++i) {
    const int64_t j_first = i < m_tiles ? n_tiles : 0;
    for (int64_t j = j_first; j < n; ++j) {
      T sum = 0;
      for (int64_t x = 0; x < p; ++x) sum += a[i * lda + x] * b[x * ldb + j];
      c[i * ldc + j] = sum;
    }
  }
}

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  T total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// f_ta as (d, T) for the local window: logits[o][t] = q[:, t]·k[:, t + o - radius] / sqrt(d).
template <typename T>
ASL_CPU_CLONES void local_temporal_branch(const T* q, const T* k, const T* v, const uint8_t* valid, int64_t d,
                                          int64_t length, int32_t window, std::vector<T>& out) {
  const int64_t radius = window / 2;
  const int64_t width = 2 * radius + 1;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
  std::vector<T> logits(static_cast<size_t>(width * length), T(0));
  for (int64_t o = 0; o < width; ++o) {
    const int64_t shift = o - radius;
    const int64_t first = std::max<int64_t>(0, -shift);
    const int64_t last = std::min<int64_t>(length, length - shift);
    T* row = &logits[o * length];
    for (int64_t i = 0; i < d; ++i) {
      const T* qi = q + i * length;
      const T* ki = k + i * length + shift;
      for (int64_t t = first; t < last; ++t) row[t] += qi[t] * ki[t];
    }
    for (int64_t t = 0; t < length; ++t) {
      const bool inside = t >= first && t < last && valid[t + shift];
      row[t] = inside ? row[t] * scale : -std::numeric_limits<T>::infinity();
    }
  }
  // softmax over the window of each query, in place; padded queries get all-zero weights
  std::vector<T> best(static_cast<size_t>(length), -std::numeric_limits<T>::infinity());
  std::vector<T> total(static_cast<size_t>(length), T(0));
  for (int64_t o = 0; o < width; ++o) {
    const T* row = &logits[o * length];
    for (int64_t t = 0; t < length; ++t) best[t] = std::max(best[t], row[t]);
  }
  for (int64_t o = 0; o < width; ++o) {
    T* row = &logits[o * length];
    for (int64_t t = 0; t < length; ++t) {
      row[t] = valid[t] ? std::exp(row[t] - best[t]) : T(0);
      total[t] += row[t];
    }
  }
  for (int64_t t = 0; t < length; ++t) total[t] = valid[t] ? T(1) / total[t] : T(0);
  out.assign(static_cast<size_t>(d * length), T(0));
  for (int64_t o = 0; o < width; ++o) {
    const int64_t shift = o - radius;
    const int64_t first = std::max<int64_t>(0, -shift);
    const int64_t last = std::min<int64_t>(length, length - shift);
    T* row = &logits[o * length];
    for (int64_t t = 0; t < length; ++t) row[t] *= total[t];
    for (int64_t i = 0; i < d; ++i) {
      T* oi = &out[i * length];
      const T* vi = v + i * length + shift;
      for (int64_t t = first; t < last; ++t) oi[t] += row[t] * vi[t];
    }
  }
}

// f_ta as (d, T) for global attention (window <= 1): every valid key.
template <typename T>
void global_temporal_branch(const T* q, const T* k, const T* v, const uint8_t* valid, int64_t d, int64_t length,
                            std::vector<T>& out) {
  std::vector<T> qt, kt;
  transpose_into(q, d, length, qt);
  transpose_into(k, d, length, kt);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
  out.assign(static_cast<size_t>(d * length), T(0));
  std::vector<T> probs(static_cast<size_t>(length));
  for (int64_t t = 0; t < length; ++t) {
    if (!valid[t]) continue;
    T best = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < length; ++j) {
      probs[j] = valid[j] ? dot(&qt[t * d], &kt[j * d], d) * scale : -std::numeric_limits<T>::infinity();
      best = std::max(best, probs[j]);
    }
    T total = 0;
    for (int64_t j = 0; j < length; ++j) {
      probs[j] = std::exp(probs[j] - best);
      total += probs[j];
    }
    for (int64_t i = 0; i < d; ++i) out[i * length + t] = dot(&probs[0], v + i * length, length) / total;
  }
}

// f_ca as (d, T): A = softmax(q̃ k̃ᵀ · scale) over valid positions, f_ca = A ṽ.
template <typename T>
ASL_CPU_CLONES void channel_branch(const T* q, const T* k, const T* v, const uint8_t* valid, int64_t d,
                                   int64_t length, ChannelScale channel_scale, std::vector<T>& out) {
  std::vector<T> q_valid(static_cast<size_t>(d * length));
  int64_t num_valid = 0;
  for (int64_t t = 0; t < length; ++t) num_valid += valid[t] ? 1 : 0;
  for (int64_t i = 0; i < d; ++i)
    for (int64_t t = 0; t < length; ++t) q_valid[i * length + t] = valid[t] ? q[i * length + t] : T(0);
  const double denom = channel_scale == ChannelScale::kTime ? static_cast<double>(std::max<int64_t>(num_valid, 1))
                                                            : static_cast<double>(d);
  const T scale = static_cast<T>(1.0 / std::sqrt(denom));
  std::vector<T> k_t;
  transpose_into(k, d, length, k_t);
  std::vector<T> attn(static_cast<size_t>(d * d));
  matmul<T>(d, d, length, q_valid.data(), length, k_t.data(), d, attn.data(), d);
  for (int64_t i = 0; i < d; ++i) {
    T* arow = &attn[i * d];
    for (int64_t j = 0; j < d; ++j) arow[j] *= scale;
    T best = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < d; ++j) best = std::max(best, arow[j]);
    T total = 0;
    for (int64_t j = 0; j < d; ++j) {
      arow[j] = std::exp(arow[j] - best);
      total += arow[j];
    }
    for (int64_t j = 0; j < d; ++j) arow[j] /= total;
  }
  out.resize(static_cast<size_t>(d * length));
  matmul<T>(d, length, d, attn.data(), d, v, length, out.data(), length);
}


template <typename T>
void tca_attention_cpu_impl(const TcaShape& s, const T* q, const T* k, const T* v, const uint8_t* mask, T* out,
                            int64_t first, int64_t last) {
  const int64_t d = s.channels / s.num_heads;
  const int64_t length = s.length;
  const T theta = static_cast<T>(s.theta);
  std::vector<T> temporal, channel;
  for (int64_t pair = first; pair < last; ++pair) {
    const int64_t b = pair / s.num_heads;
    const int64_t h = pair % s.num_heads;
    const int64_t offset = (b * s.channels + h * d) * length;
    const uint8_t* valid = mask + b * length;
    const bool use_temporal = theta != T(1);
    const bool use_channel = theta != T(0);
    if (use_temporal && s.window > 1)
      local_temporal_branch(q + offset, k + offset, v + offset, valid, d, length, s.window, temporal);
    else if (use_temporal)
      global_temporal_branch(q + offset, k + offset, v + offset, valid, d, length, temporal);
    if (use_channel) channel_branch(q + offset, k + offset, v + offset, valid, d, length, s.channel_scale, channel);
    T* o = out + offset;
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t t = 0; t < length; ++t) {
        T value = 0;
        if (valid[t]) {
          if (use_temporal && use_channel)
            value = (T(1) - theta) * temporal[i * length + t] + theta * channel[i * length + t];
          else if (use_temporal)
            value = temporal[i * length + t];
          else
            value = channel[i * length + t];
        }
        o[i * length + t] = value;
      }
    }
  }
}

}  // namespace

void tca_attention_cpu(const TcaShape& shape, const float* q, const float* k, const float* v, const uint8_t* mask,
                       float* out, int64_t first, int64_t last) {
  tca_attention_cpu_impl(shape, q, k, v, mask, out, first, last);
}

void tca_attention_cpu(const TcaShape& shape, const double* q, const double* k, const double* v, const uint8_t* mask,
                       double* out, int64_t first, int64_t last) {
  tca_attention_cpu_impl(shape, q, k, v, mask, out, first, last);
}

}  // namespace kernels
}  // namespace asl_edge
