// CUDA implementation of 1-D NMS (nms1d.h, DESIGN §3) with exactly the semantics of
// asl_edge.postprocess.batched_nms (soft_nms_1d, hard_nms_1d, _drop_low_scores, segment_voting).
//
// Launches (all on `stream`):
//
// 1. nms_group_kernel, grid = G groups (G = num_classes when multiclass, else 1), 512 threads.
//    Block g counts its members (label == g; every candidate when class-agnostic) and the members
//    of the classes before it (its slice offset), then gathers them in input order (block
//    exclusive scans) into working arrays: segment (float2), score, input index, aux (int).
//    The arrays live in dynamic shared memory when the group has at most `cap` members
//    (cap = min(n, (opt-in shared memory - 2 KB) / 20 bytes); ~11,500 on H100, ~8,200 on Orin),
//    otherwise in the group's slice of the workspace (same code through generic pointers).
//    - soft: while i < count and i < max_out: block argmax over positions [i, count) (first
//      maximum: greatest score, lowest position), swap it to position i (done by the one thread
//      that handles the old position `best` in the decay loop, so no extra barrier), decay
//      positions [i+1, count) by expf(-(iou*iou)/sigma) (skipped when iou == 0, where the factor
//      is exactly 1), count those < min_score; if any: compaction exactly as _drop_low_scores:
//      holes = low positions < new_count (ascending rank from a block scan, positions into aux),
//      movers = non-low positions >= new_count (ascending rank a from a block scan); the mover of
//      rank a fills hole aux[M - 1 - a] (the j-th hole receives the j-th survivor from the end).
//    - hard: aux = alive (score > min_score, or all when min_score <= 0); repeatedly take the
//      block argmax among alive members (= the next one of a stable descending sort), keep it,
//      and kill the alive members with !(IoU < iou_threshold); stop after max_out kept.
//    Writes up to max_out kept (input index, score) per group and the group's kept count.
// 2. nms_concat_kernel, 1 block of 1024 threads: exclusive scan of the kept counts in group
//    order (group offsets), then all threads copy the kept lists (index, score, label) into one
//    array in ascending group order.
// 3. nms_rank_kernel, grid = ceil(G * max_out / 64) blocks of 256: 64 entries per block, 4
//    threads per entry, stable rank by descending score: rank = #(greater score) + #(equal
//    score, earlier entry), scores staged 1024 at a time in shared memory, the 4 partial counts
//    added in a fixed order. Entries of rank < max_out are written to the outputs; the tail is
//    padded (0, 0, -1) and out_count = min(K, max_out).
// 4. nms_vote_kernel (class-agnostic with voting_threshold > 0), grid = max_out blocks of 256:
//    block r refines output r as the score*IoU-weighted mean of all input segments, with
//    deterministic block sums (weights are normalised first, as in segment_voting).
//
// Workspace (each part 256-byte aligned): seg float2[n] | score float[n] | index int[n] |
// aux int[n] | kept index int[G*max_out] | kept score float[G*max_out] | kept count int[G] |
// group offset int[G] |
// concat index int[G*max_out] | concat score float[G*max_out] | concat label int[G*max_out] |
// concat total int[1] | final index int[max_out].
//
// No float atomics: results are deterministic. Limits: n < 2^31; any group size (groups larger
// than `cap` run from global memory, slower).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "cuda_common.cuh"
#include "nms1d.h"

namespace asl_edge {
namespace kernels {
namespace {

constexpr int kGroupThreads = 512;
constexpr int kConcatThreads = 1024;
constexpr int kRankThreads = 256;
constexpr int kVoteThreads = 256;
constexpr size_t kBytesPerMember = sizeof(float2) + sizeof(float) + 2 * sizeof(int);
constexpr size_t kStaticSmemReserve = 2048;

struct Workspace {
  float2* seg;
  float* score;
  int* index;
  int* aux;
  int* kept_index;
  float* kept_score;
  int* kept_count;
  int* group_offset;
  int* cat_index;
  float* cat_score;
  int* cat_label;
  int* cat_total;
  int* final_index;
};

// Lays the workspace out from `base` (nullptr: sizes only); returns the total size.
size_t layout(const NmsParams& p, char* base, Workspace* ws) {
  const size_t n = static_cast<size_t>(std::max(p.num_candidates, 0));
  const size_t groups = p.multiclass ? static_cast<size_t>(std::max(p.num_classes, 0)) : 1;
  const size_t m = static_cast<size_t>(std::max(p.max_out, 0));
  size_t offset = 0;
  auto take = [&](size_t bytes) {
    char* ptr = base == nullptr ? nullptr : base + offset;
    offset += cuda_detail::align_up(bytes);
    return ptr;
  };
  Workspace w{};
  w.seg = reinterpret_cast<float2*>(take(n * sizeof(float2)));
  w.score = reinterpret_cast<float*>(take(n * sizeof(float)));
  w.index = reinterpret_cast<int*>(take(n * sizeof(int)));
  w.aux = reinterpret_cast<int*>(take(n * sizeof(int)));
  w.kept_index = reinterpret_cast<int*>(take(groups * m * sizeof(int)));
  w.kept_score = reinterpret_cast<float*>(take(groups * m * sizeof(float)));
  w.kept_count = reinterpret_cast<int*>(take(groups * sizeof(int)));
  w.group_offset = reinterpret_cast<int*>(take(groups * sizeof(int)));
  w.cat_index = reinterpret_cast<int*>(take(groups * m * sizeof(int)));
  w.cat_score = reinterpret_cast<float*>(take(groups * m * sizeof(float)));
  w.cat_label = reinterpret_cast<int*>(take(groups * m * sizeof(int)));
  w.cat_total = reinterpret_cast<int*>(take(sizeof(int)));
  w.final_index = reinterpret_cast<int*>(take(m * sizeof(int)));
  if (ws != nullptr) *ws = w;
  return offset;
}

struct GroupArgs {
  int n;
  int multiclass;
  int soft;
  int max_out;
  int cap;  // members that fit in the dynamic shared memory
  float iou_threshold;
  float sigma;
  float min_score;
};

// IoU as segment_iou: lengths end - start + 1e-6, a = the selected segment.
__device__ __forceinline__ float nms_iou(float2 a, float2 b) {
  const float inter = fmaxf(fminf(a.y, b.y) - fmaxf(a.x, b.x), 0.f);
  const float len_a = a.y - a.x + 1e-6f;
  const float len_b = b.y - b.x + 1e-6f;
  return inter / (len_a + len_b - inter);
}

// (value, position) is better than (bv, bp): greater value, or equal value at a lower position.
// bp == INT_MAX marks "none".
__device__ __forceinline__ bool better(float v, int p, float bv, int bp) {
  if (p == INT_MAX) return false;
  if (bp == INT_MAX) return true;
  return v > bv || (v == bv && p < bp);
}

// Block argmax of the per-thread candidates (bv, bp); returns the winner's position (INT_MAX when
// none) to every thread and its segment in *seg_out. The warp winners read their segment from
// `seg` before the barrier, so the caller may modify the arrays right after the call.
__device__ __forceinline__ int block_argmax(float bv, int bp, const float2* seg, float* s_val, int* s_pos,
                                            float2* s_seg, float2* seg_out) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int num_warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int op = __shfl_xor_sync(0xffffffffu, bp, o);
    if (better(ov, op, bv, bp)) {
      bv = ov;
      bp = op;
    }
  }
  __syncthreads();  // previous readers of the scratch are done
  if (lane == 0) {
    s_val[warp] = bv;
    s_pos[warp] = bp;
    s_seg[warp] = bp != INT_MAX ? seg[bp] : make_float2(0.f, 0.f);
  }
  __syncthreads();
  float best_v = 0.f;
  int best_p = INT_MAX;
  int best_w = 0;
  for (int w = 0; w < num_warps; ++w) {
    if (better(s_val[w], s_pos[w], best_v, best_p)) {
      best_v = s_val[w];
      best_p = s_pos[w];
      best_w = w;
    }
  }
  *seg_out = s_seg[best_w];
  return best_p;
}

// Position of the best member (greatest score, lowest position) among [begin, end), only those with
// alive[p] != 0 when kOnlyAlive; INT_MAX when none. Block-collective (see block_argmax): returns the
// position to every thread and the member's segment in *seg_out.
template <bool kOnlyAlive>
__device__ __forceinline__ int block_best(int begin, int end, const float* sc, const int* alive, const float2* seg,
                                          float* s_val, int* s_pos, float2* s_seg, float2* seg_out) {
  // this thread's best over its strided positions (ascending, so ties keep the lowest)
  float bv = 0.f;
  int bp = INT_MAX;
  for (int p = begin + threadIdx.x; p < end; p += blockDim.x) {
    if (kOnlyAlive && alive[p] == 0) continue;
    const float s = sc[p];
    if (bp == INT_MAX || s > bv) {
      bv = s;
      bp = p;
    }
  }
  return block_argmax(bv, bp, seg, s_val, s_pos, s_seg, seg_out);
}

__global__ void __launch_bounds__(kGroupThreads)
    nms_group_kernel(GroupArgs a, const float* __restrict__ segments, const float* __restrict__ scores,
                     const int32_t* __restrict__ labels, Workspace ws) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int iscratch[32];
  __shared__ float s_val[32];
  __shared__ int s_pos[32];
  __shared__ float2 s_seg[32];

  const int g = blockIdx.x;
  const int tid = threadIdx.x;
  const int nt = blockDim.x;
  const int n = a.n;

  int cnt = n;
  int off = 0;
  if (a.multiclass) {
    int eq = 0;
    int before = 0;
    for (int k = tid; k < n; k += nt) {
      const int lab = labels[k];
      eq += lab == g ? 1 : 0;
      before += (lab >= 0 && lab < g) ? 1 : 0;
    }
    cnt = cuda_detail::block_sum(eq, iscratch);
    off = cuda_detail::block_sum(before, iscratch);
  }

  float2* seg;
  float* sc;
  int* idx;
  int* aux;
  if (cnt <= a.cap) {
    seg = reinterpret_cast<float2*>(smem_raw);
    sc = reinterpret_cast<float*>(seg + a.cap);
    idx = reinterpret_cast<int*>(sc + a.cap);
    aux = idx + a.cap;
  } else {
    seg = ws.seg + off;
    sc = ws.score + off;
    idx = ws.index + off;
    aux = ws.aux + off;
  }

  // gather the members in input order
  if (a.multiclass) {
    int running = 0;
    for (int k0 = 0; k0 < n; k0 += nt) {
      const int k = k0 + tid;
      const int flag = (k < n && labels[k] == g) ? 1 : 0;
      int total = 0;
      const int pos = cuda_detail::block_exclusive_scan(flag, iscratch, &total);
      if (flag) {
        const int p = running + pos;
        idx[p] = k;
        sc[p] = scores[k];
        seg[p] = make_float2(segments[2 * static_cast<size_t>(k)], segments[2 * static_cast<size_t>(k) + 1]);
      }
      running += total;
    }
  } else {
    for (int k = tid; k < n; k += nt) {
      idx[k] = k;
      sc[k] = scores[k];
      seg[k] = make_float2(segments[2 * static_cast<size_t>(k)], segments[2 * static_cast<size_t>(k) + 1]);
    }
  }
  const float min_score = a.min_score;
  __syncthreads();  // members gathered
  if (!a.soft) {
    for (int p = tid; p < cnt; p += nt) aux[p] = (min_score > 0.f) ? (sc[p] > min_score ? 1 : 0) : 1;
    __syncthreads();
  }

  const int limit = a.max_out;
  int* kept_index = ws.kept_index + static_cast<size_t>(g) * limit;
  float* kept_score = ws.kept_score + static_cast<size_t>(g) * limit;
  int kept = 0;

  if (a.soft) {
    int count = cnt;
    int i = 0;
    while (i < count && i < limit) {
      float2 sel;
      const int best = block_best<false>(i, count, sc, aux, seg, s_val, s_pos, s_seg, &sel);
      // swap best <-> i (by the thread that handles position best), decay [i+1, count)
      const int first = i + 1;
      int low = 0;
      for (int p = first + tid; p < count; p += nt) {
        const int src = p == best ? i : p;
        const float2 sg = seg[src];
        float s = sc[src];
        const int ix = idx[src];
        if (p == best) {
          sc[i] = sc[best];
          idx[i] = idx[best];
          seg[i] = sel;
        }
        const float iou = nms_iou(sel, sg);
        if (iou != 0.f) s = s * expf(-(iou * iou) / a.sigma);
        if (p == best) {
          seg[p] = sg;
          idx[p] = ix;
        }
        sc[p] = s;
        low += s < min_score ? 1 : 0;
      }
      const int num_low = cuda_detail::block_sum(low, iscratch);
      const int new_count = count - num_low;
      if (num_low > 0) {
        // holes: low positions in [first, new_count), contiguous chunk per thread
        const int len1 = new_count - first;
        const int chunk1 = (len1 + nt - 1) / nt;
        const int b1 = first + tid * chunk1;
        const int e1 = min(new_count, b1 + chunk1);
        int holes = 0;
        for (int p = b1; p < e1; ++p) holes += sc[p] < min_score ? 1 : 0;
        int num_holes = 0;
        int hrank = cuda_detail::block_exclusive_scan(holes, iscratch, &num_holes);
        for (int p = b1; p < e1; ++p)
          if (sc[p] < min_score) aux[hrank++] = p;
        // movers: non-low positions in [new_count, count)
        const int len2 = count - new_count;
        const int chunk2 = (len2 + nt - 1) / nt;
        const int b2 = new_count + tid * chunk2;
        const int e2 = min(count, b2 + chunk2);
        int movers = 0;
        for (int p = b2; p < e2; ++p) movers += sc[p] < min_score ? 0 : 1;
        int num_movers = 0;
        int mrank = cuda_detail::block_exclusive_scan(movers, iscratch, &num_movers);  // barrier: aux complete
        for (int p = b2; p < e2; ++p) {
          if (!(sc[p] < min_score)) {
            const int dst = aux[num_holes - 1 - mrank];
            ++mrank;
            sc[dst] = sc[p];
            idx[dst] = idx[p];
            seg[dst] = seg[p];
          }
        }
        __syncthreads();
      }
      count = new_count;
      ++i;
    }
    kept = min(count, limit);
    for (int p = tid; p < kept; p += nt) {
      kept_index[p] = idx[p];
      kept_score[p] = sc[p];
    }
  } else {
    while (kept < limit) {
      float2 sel;
      const int best = block_best<true>(0, cnt, sc, aux, seg, s_val, s_pos, s_seg, &sel);
      if (best == INT_MAX) break;
      if (tid == 0) {
        kept_index[kept] = idx[best];
        kept_score[kept] = sc[best];
      }
      ++kept;
      if (kept == limit) break;
      for (int p = tid; p < cnt; p += nt) {
        if (aux[p] == 0) continue;
        if (p == best || !(nms_iou(sel, seg[p]) < a.iou_threshold)) aux[p] = 0;
      }
      __syncthreads();
    }
  }
  if (tid == 0) ws.kept_count[g] = kept;
}

__global__ void __launch_bounds__(kConcatThreads)
    nms_concat_kernel(int groups, int max_out, const int32_t* __restrict__ labels, Workspace ws) {
  __shared__ int iscratch[32];
  const int tid = threadIdx.x;
  const int nt = blockDim.x;
  // group offsets in the concatenation: exclusive scan of the kept counts, chunk by chunk
  int running = 0;
  for (int g0 = 0; g0 < groups; g0 += nt) {
    const int g = g0 + tid;
    const int c = g < groups ? ws.kept_count[g] : 0;
    int total = 0;
    const int pos = cuda_detail::block_exclusive_scan(c, iscratch, &total);
    if (g < groups) ws.group_offset[g] = running + pos;
    running += total;
  }
  __syncthreads();  // offsets visible to the block
  const int slots = groups * max_out;
  for (int s = tid; s < slots; s += nt) {
    const int g = s / max_out;
    const int l = s - g * max_out;
    if (l < ws.kept_count[g]) {
      const int dst = ws.group_offset[g] + l;
      const int ix = ws.kept_index[s];
      ws.cat_index[dst] = ix;
      ws.cat_score[dst] = ws.kept_score[s];
      ws.cat_label[dst] = labels[ix];
    }
  }
  if (tid == 0) *ws.cat_total = running;
}

// Block: kRankElems entries, each compared against all entries by kRankParts threads (one part of
// every staged chunk each); the parts' counts are added in a fixed order.
constexpr int kRankElems = 64;
constexpr int kRankParts = kRankThreads / kRankElems;
constexpr int kRankChunk = 1024;

__global__ void __launch_bounds__(kRankThreads)
    nms_rank_kernel(int empty, int max_out, const float* __restrict__ segments, float* __restrict__ out_segments,
                    float* __restrict__ out_scores, int32_t* __restrict__ out_labels, int32_t* __restrict__ out_count,
                    Workspace ws) {
  __shared__ float tile[kRankChunk];
  __shared__ int partial[kRankParts][kRankElems];
  const int tid = threadIdx.x;
  const int total = empty ? 0 : *ws.cat_total;
  const int el = tid % kRankElems;
  const int part = tid / kRankElems;
  const int k = blockIdx.x * kRankElems + el;
  if (static_cast<long long>(blockIdx.x) * kRankElems < total) {  // uniform per block
    const float s_k = k < total ? ws.cat_score[k] : 0.f;
    int rank = 0;
    for (int j0 = 0; j0 < total; j0 += kRankChunk) {
      __syncthreads();
      for (int x = tid; x < kRankChunk; x += kRankThreads)
        if (j0 + x < total) tile[x] = ws.cat_score[j0 + x];
      __syncthreads();
      if (k < total) {
        const int jb = part * (kRankChunk / kRankParts);
        const int je = min(total - j0, jb + kRankChunk / kRankParts);
        for (int jj = jb; jj < je; ++jj) {
          const float s = tile[jj];
          rank += (s > s_k || (s == s_k && j0 + jj < k)) ? 1 : 0;
        }
      }
    }
    partial[part][el] = rank;
    __syncthreads();
    if (part == 0 && k < total) {
      for (int x = 1; x < kRankParts; ++x) rank += partial[x][el];
      if (rank < max_out) {
        const int ix = ws.cat_index[k];
        out_segments[2 * rank] = segments[2 * static_cast<size_t>(ix)];
        out_segments[2 * rank + 1] = segments[2 * static_cast<size_t>(ix) + 1];
        out_scores[rank] = s_k;
        out_labels[rank] = ws.cat_label[k];
        ws.final_index[rank] = ix;
      }
    }
  }
  const int kept = min(total, max_out);
  for (int r = blockIdx.x * kRankThreads + tid; r < max_out; r += gridDim.x * kRankThreads) {
    if (r >= kept) {
      out_segments[2 * r] = 0.f;
      out_segments[2 * r + 1] = 0.f;
      out_scores[r] = 0.f;
      out_labels[r] = -1;
    }
  }
  if (blockIdx.x == 0 && tid == 0) *out_count = kept;
}

// Voting weight of input segment j for the kept segment (a0, a1), as segment_voting:
// ((iou >= thr) as float) * score * iou with plain lengths.
__device__ __forceinline__ float vote_weight(float a0, float a1, float s0, float s1, float score, float thr) {
  const float inter = fmaxf(fminf(a1, s1) - fmaxf(a0, s0), 0.f);
  const float uni = __fsub_rn(__fadd_rn(__fsub_rn(a1, a0), __fsub_rn(s1, s0)), inter);
  const float iou = inter / uni;
  return __fmul_rn(__fmul_rn(iou >= thr ? 1.f : 0.f, score), iou);
}

__global__ void __launch_bounds__(kVoteThreads)
    nms_vote_kernel(int n, float thr, const float* __restrict__ segments, const float* __restrict__ scores,
                    float* __restrict__ out_segments, const int32_t* __restrict__ out_count, Workspace ws) {
  __shared__ float fscratch[32];
  const int r = blockIdx.x;
  if (r >= *out_count) return;  // uniform per block
  const int ix = ws.final_index[r];
  const float a0 = segments[2 * static_cast<size_t>(ix)];
  const float a1 = segments[2 * static_cast<size_t>(ix) + 1];
  float wsum = 0.f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    wsum += vote_weight(a0, a1, segments[2 * static_cast<size_t>(j)], segments[2 * static_cast<size_t>(j) + 1],
                        scores[j], thr);
  }
  const float total = cuda_detail::block_sum(wsum, fscratch);
  float acc0 = 0.f;
  float acc1 = 0.f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float s0 = segments[2 * static_cast<size_t>(j)];
    const float s1 = segments[2 * static_cast<size_t>(j) + 1];
    const float w = vote_weight(a0, a1, s0, s1, scores[j], thr) / total;
    acc0 = __fadd_rn(acc0, __fmul_rn(w, s0));
    acc1 = __fadd_rn(acc1, __fmul_rn(w, s1));
  }
  acc0 = cuda_detail::block_sum(acc0, fscratch);
  acc1 = cuda_detail::block_sum(acc1, fscratch);
  if (threadIdx.x == 0) {
    out_segments[2 * r] = acc0;
    out_segments[2 * r + 1] = acc1;
  }
}

}  // namespace

size_t nms1d_cuda_workspace(const NmsParams& params) {
  if (nms1d_check(params) != nullptr) return 0;
  return layout(params, nullptr, nullptr);
}

Status nms1d_cuda(const NmsParams& params, const float* segments, const float* scores, const int32_t* labels,
                  float* out_segments, float* out_scores, int32_t* out_labels, int32_t* out_count, void* workspace,
                  void* stream) {
  if (nms1d_check(params) != nullptr) return Status::kInvalidArgument;
  const cudaStream_t st = cuda_detail::as_stream(stream);
  const int n = std::max(params.num_candidates, 0);
  const int max_out = params.max_out;
  if (out_count == nullptr) return Status::kInvalidArgument;
  if (max_out <= 0) {
    const cudaError_t err = cudaMemsetAsync(out_count, 0, sizeof(int32_t), st);
    if (err != cudaSuccess) return cuda_detail::launch_failed(err);
    return Status::kSuccess;
  }
  if (out_segments == nullptr || out_scores == nullptr || out_labels == nullptr) return Status::kInvalidArgument;
  const int groups = params.multiclass ? params.num_classes : 1;
  const bool empty = n == 0 || groups <= 0;
  if (!empty && (segments == nullptr || scores == nullptr || labels == nullptr || workspace == nullptr)) {
    return Status::kInvalidArgument;
  }
  Workspace ws{};
  if (workspace != nullptr) layout(params, static_cast<char*>(workspace), &ws);

  const long long rank_slots = empty ? max_out : static_cast<long long>(groups) * max_out;
  if (rank_slots > INT_MAX / 2) return Status::kInvalidArgument;
  const int rank_blocks = static_cast<int>((rank_slots + kRankElems - 1) / kRankElems);
  if (empty) {
    nms_rank_kernel<<<rank_blocks, kRankThreads, 0, st>>>(1, max_out, segments, out_segments, out_scores, out_labels,
                                                          out_count, ws);
    return cuda_detail::launch_status();
  }

  GroupArgs a{};
  a.n = n;
  a.multiclass = params.multiclass ? 1 : 0;
  a.soft = params.method == NmsMethod::kSoft ? 1 : 0;
  a.max_out = max_out;
  a.iou_threshold = params.iou_threshold;
  a.sigma = params.sigma;
  a.min_score = params.min_score;
  const size_t smem_limit = cuda_detail::max_dynamic_smem();
  const size_t avail = smem_limit > kStaticSmemReserve ? smem_limit - kStaticSmemReserve : 0;
  a.cap = static_cast<int>(std::min<size_t>(static_cast<size_t>(n), avail / kBytesPerMember));
  const size_t smem_bytes = static_cast<size_t>(a.cap) * kBytesPerMember;
  if (smem_bytes > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(nms_group_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(smem_bytes));
    if (err != cudaSuccess) return cuda_detail::launch_failed(err);
  }
  nms_group_kernel<<<groups, kGroupThreads, smem_bytes, st>>>(a, segments, scores, labels, ws);
  nms_concat_kernel<<<1, kConcatThreads, 0, st>>>(groups, max_out, labels, ws);
  nms_rank_kernel<<<rank_blocks, kRankThreads, 0, st>>>(0, max_out, segments, out_segments, out_scores, out_labels,
                                                        out_count, ws);
  if (!params.multiclass && params.voting_threshold > 0.f) {
    nms_vote_kernel<<<max_out, kVoteThreads, 0, st>>>(n, params.voting_threshold, segments, scores, out_segments,
                                                      out_count, ws);
  }
  return cuda_detail::launch_status();
}

}  // namespace kernels
}  // namespace asl_edge
