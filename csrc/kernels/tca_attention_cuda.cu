// CUDA implementation of the fused temporal-channel attention (tca_attention.h, DESIGN §2.2).
//
// Notation: per (batch b, head h) the head's q, k, v are d x T row-major slices (channel i at
// q + ((b * D) + h * d + i) * T); dpad = d rounded up to a multiple of 4 (shared-memory rows
// i >= d are zero); r = window / 2, W = 2r + 1 for local attention; theta weights the branches.
// All arithmetic is FP32 (FP16 I/O is converted on load/store). No float atomics anywhere: the
// results are bit-identical from run to run and do not depend on the GPU model (every split
// and tile size depends only on the shape).
//
// Launches (all on `stream`, 256 threads per block):
//
// 1. chan_logits_kernel (theta > 0): split-K GEMM of the channel logits. Block = (64 x 64 tile
//    of the d x d logits, T chunk of TC positions, b*h); grid.x = tiles^2 * B*H, grid.y = nsplit
//    with nsplit = min(ceil(T / 128), 32) and TC = ceil(T / nsplit) rounded up to 32 (B=1,
//    T=2304, D=512, 4 heads: 16 x 18 = 288 blocks). Each thread owns a 4x4 register tile; the
//    chunk is staged 32 positions at a time, transposed, in static shared memory
//    (2 x 32 x 68 floats = 17 KB), masked positions zeroed. Writes the partial sums
//    part[b*h][split][i][j] (FP32) to the workspace.
// 2. chan_softmax_kernel (theta > 0): one warp per logits row i (8 rows per block, grid.x =
//    ceil(d / 8) * B*H). Sums the nsplit partials in split order (deterministic), scales by
//    1/sqrt(max(#valid, 1)) ("time", #valid counted by the block) or 1/sqrt(d) ("head"), takes the
//    row softmax and stores theta * A transposed: At[b*h][j][i] (workspace).
// 3. One fused output kernel per (b*h, tile of TT query positions), grid.x = ceil(T / TT) * B*H:
//    - tca_band_kernel (local window, or theta == 1): stages in dynamic shared memory the q tile
//      (dpad x TT), the k and v tiles with a halo of r on both sides (dpad x KS each, masked or
//      out-of-range positions zeroed; the query columns start 16-byte aligned), the banded
//      logits/probabilities (TT x W) and the key validity (KS). Logits: one thread per (query,
//      4 offsets); softmax over valid keys: one thread per query, FP32, scaled by (1 - theta).
//      Output: each thread owns a 4 (channels) x 4 (positions) register tile: temporal part
//      sum_o P[t][o] v[i][t+o] (sliding register window), plus the channel part
//      sum_j At[j][i] v[j][t] with At staged in chunks of JC = min(32, KS) rows (aliasing the k
//      tile), masked, staged in shared memory (aliasing the q tile) and written coalesced.
//      TT = 4 * clamp(256 / (dpad / 4), 1, 32) (d = 128: TT = 32, 76 KB of shared memory for
//      window 19, 288 blocks for the benchmark shape).
//    - tca_flash_kernel (window <= 1, or when the banded tile does not fit in shared memory,
//      e.g. very large windows or d): flash-style loop over key chunks of KC positions (global:
//      all keys; local: the tile's window span) with an online softmax (running max/sum per
//      query, accumulator dpad x TT in shared memory), then the same channel part and store.
//      TT = min(band TT, 32), KC = 32 (smaller for dpad > 256).
//
// Workspace (theta > 0 only, each part 256-byte aligned):
//   part: B*H*nsplit*d*d floats | At: B*H*d*d floats.   (benchmark shape: 4.7 MB + 0.26 MB)
//
// Limits: any d >= 1 as long as one tile fits the device's opt-in shared memory: the flash
// path needs about 4 * (2 * dpad * TT + 2 * dpad * KC) bytes, i.e. d <= ~2500 on H100 and
// d <= ~2000 on Orin (beyond that the launch returns kLaunchFailed); any T >= 1, any window.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda_common.cuh"
#include "tca_attention.h"

namespace asl_edge {
namespace kernels {
namespace {

using cuda_detail::from_float;
using cuda_detail::to_float;

constexpr int kThreads = 256;

// ---- host-side plan (depends only on the shape) --------------------------------------------

struct Plan {
  int d = 0;
  int dpad = 0;
  bool global = false;    // window <= 1
  bool temporal = false;  // theta < 1
  bool channel = false;   // theta > 0
  int r = 0;              // local radius (0 for global / channel-only)
  int W = 1;              // 2r + 1
  int nsplit = 1;         // channel logits: number of T chunks
  int TC = 32;            // channel logits: positions per chunk (multiple of 32)
  int ntile_logits = 1;   // channel logits: 64-wide tiles per dimension
};

Plan make_plan(const TcaShape& s) {
  Plan p;
  p.d = s.channels / s.num_heads;
  p.dpad = (p.d + 3) / 4 * 4;
  p.global = s.window <= 1;
  p.temporal = s.theta < 1.0f;
  p.channel = s.theta > 0.0f;
  p.r = (p.global || !p.temporal) ? 0 : s.window / 2;
  p.W = 2 * p.r + 1;
  const int T = s.length;
  p.nsplit = std::max(1, std::min((T + 127) / 128, 32));
  const int per = (T + p.nsplit - 1) / p.nsplit;
  p.TC = std::max(32, (per + 31) / 32 * 32);
  p.ntile_logits = (p.d + 63) / 64;
  return p;
}

size_t part_bytes(const TcaShape& s, const Plan& p) {
  return cuda_detail::align_up(static_cast<size_t>(s.batch) * s.num_heads * p.nsplit * p.d * p.d * sizeof(float));
}
size_t at_bytes(const TcaShape& s, const Plan& p) {
  return cuda_detail::align_up(static_cast<size_t>(s.batch) * s.num_heads * p.d * p.d * sizeof(float));
}

// Query tile of the fused kernels: about 256 register tiles of 4x4 per block.
int band_tile(int dpad) {
  const int n_i = dpad / 4;
  return 4 * std::max(1, std::min(256 / n_i, 32));
}

// Arguments of the fused kernels (both variants).
struct FusedArgs {
  int D, T, H, d, dpad;
  int r, W;
  int TT;         // query positions per block (multiple of 4)
  int num_tiles;  // ceil(T / TT)
  // banded variant
  int LP, HL, KS, nOG;
  // flash variant
  int KC;
  int global;
  int JC;  // rows of At staged per chunk
  int temporal, channel;
  float qscale;  // 1 / sqrt(d)
  float wt;      // 1 - theta
};

// ---- 4x4 register tiles -------------------------------------------------------------------

__device__ __forceinline__ void zero_tile(float (&acc)[4][4]) {
#pragma unroll
  for (int x = 0; x < 4; ++x)
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[x][c] = 0.f;
}

// acc[x][c] += a[x] * b[c]
__device__ __forceinline__ void add_outer(float (&acc)[4][4], float4 a, float4 b) {
  const float ar[4] = {a.x, a.y, a.z, a.w};
  const float br[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
  for (int x = 0; x < 4; ++x)
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[x][c] += ar[x] * br[c];
}

// ---- kernel 1: channel logits partial sums ------------------------------------------------

constexpr int kLogitTile = 64;
constexpr int kLogitSub = 32;
constexpr int kLogitStride = 68;  // floats per staged row: 16-byte aligned rows, 4-way store conflicts

template <typename Tin>
__global__ void __launch_bounds__(kThreads)
    chan_logits_kernel(const Tin* __restrict__ q, const Tin* __restrict__ k, const uint8_t* __restrict__ mask,
                       float* __restrict__ part, int D, int T, int H, int d, int ntile, int nsplit, int TC) {
  __shared__ __align__(16) float qs[kLogitSub][kLogitStride];
  __shared__ __align__(16) float ks[kLogitSub][kLogitStride];
  const int tiles2 = ntile * ntile;
  const int bh = blockIdx.x / tiles2;
  const int tile = blockIdx.x - bh * tiles2;
  const int b = bh / H;
  const int h = bh - b * H;
  const int i0 = (tile / ntile) * kLogitTile;
  const int j0 = (tile % ntile) * kLogitTile;
  const int split = blockIdx.y;
  const int tb = split * TC;
  const int te = min(T, tb + TC);
  const size_t base = (static_cast<size_t>(b) * D + static_cast<size_t>(h) * d) * T;
  const Tin* qh = q + base;
  const Tin* kh = k + base;
  const uint8_t* mb = mask + static_cast<size_t>(b) * T;
  const int tid = threadIdx.x;
  const int ti = tid & 15;
  const int tj = tid >> 4;

  float acc[4][4];
  zero_tile(acc);

  for (int t0 = tb; t0 < te; t0 += kLogitSub) {
    __syncthreads();
    for (int e = tid; e < kLogitTile * kLogitSub; e += kThreads) {
      const int row = e / kLogitSub;
      const int tt = e - row * kLogitSub;
      const int t = t0 + tt;
      const bool ok = t < te && mb[t] != 0;
      const int gi = i0 + row;
      const int gj = j0 + row;
      qs[tt][row] = (ok && gi < d) ? to_float(qh[static_cast<size_t>(gi) * T + t]) : 0.f;
      ks[tt][row] = (ok && gj < d) ? to_float(kh[static_cast<size_t>(gj) * T + t]) : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int tt = 0; tt < kLogitSub; ++tt) {
      add_outer(acc, *reinterpret_cast<const float4*>(&qs[tt][ti * 4]),
                *reinterpret_cast<const float4*>(&ks[tt][tj * 4]));
    }
  }

  float* out = part + (static_cast<size_t>(bh) * nsplit + split) * d * d;
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    const int i = i0 + ti * 4 + a;
    if (i >= d) continue;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int j = j0 + tj * 4 + c;
      if (j < d) out[static_cast<size_t>(i) * d + j] = acc[a][c];
    }
  }
}

// ---- kernel 2: reduce partials, scale, softmax rows, store theta * A transposed -------------

__global__ void __launch_bounds__(kThreads)
    chan_softmax_kernel(const float* __restrict__ part, const uint8_t* __restrict__ mask, float* __restrict__ At,
                        int T, int H, int d, int nsplit, int time_scale, float head_scale, float theta) {
  __shared__ int scratch[32];
  const int row_blocks = (d + 7) / 8;
  const int bh = blockIdx.x / row_blocks;
  const int rb = blockIdx.x - bh * row_blocks;
  const int b = bh / H;
  float scale = head_scale;
  if (time_scale) {
    int count = 0;
    const uint8_t* mb = mask + static_cast<size_t>(b) * T;
    for (int t = threadIdx.x; t < T; t += blockDim.x) count += mb[t] != 0 ? 1 : 0;
    const int total = cuda_detail::block_sum(count, scratch);
    scale = 1.0f / sqrtf(static_cast<float>(max(total, 1)));
  }
  const int lane = threadIdx.x & 31;
  const int i = rb * 8 + (threadIdx.x >> 5);
  if (i >= d) return;  // no barrier below
  const size_t dd = static_cast<size_t>(d) * d;
  const float* pr = part + static_cast<size_t>(bh) * nsplit * dd + static_cast<size_t>(i) * d;
  float* ab = At + static_cast<size_t>(bh) * dd;
  float m = -INFINITY;
  for (int j = lane; j < d; j += 32) {
    float x = 0.f;
    for (int s = 0; s < nsplit; ++s) x += pr[s * dd + j];
    x *= scale;
    ab[static_cast<size_t>(j) * d + i] = x;
    m = fmaxf(m, x);
  }
  m = cuda_detail::warp_max(m);
  float sum = 0.f;
  for (int j = lane; j < d; j += 32) {
    const float e = expf(ab[static_cast<size_t>(j) * d + i] - m);
    ab[static_cast<size_t>(j) * d + i] = e;
    sum += e;
  }
  sum = cuda_detail::warp_sum(sum);
  const float f = theta / sum;
  for (int j = lane; j < d; j += 32) ab[static_cast<size_t>(j) * d + i] *= f;
}

// ---- fused output kernels: shared pieces ----------------------------------------------------

// The block's (b*h, query tile): base = offset of the head's d x T slice, mask = batch b's mask.
struct FusedBlock {
  int bh;
  int t0;
  size_t base;
  const uint8_t* mask;
};

__device__ __forceinline__ FusedBlock fused_block(const FusedArgs& a, const uint8_t* __restrict__ mask) {
  const int tile = blockIdx.x % a.num_tiles;
  const int bh = blockIdx.x / a.num_tiles;
  const int b = bh / a.H;
  const int h = bh - b * a.H;
  return {bh, tile * a.TT, (static_cast<size_t>(b) * a.D + static_cast<size_t>(h) * a.d) * a.T,
          mask + static_cast<size_t>(b) * a.T};
}

// Stages the dpad x TT tile of src (q or v) at the block's query positions into dst (row stride TT);
// rows i >= d and columns c with qvalid[c] == 0 are zeroed.
template <typename Tin>
__device__ __forceinline__ void stage_query_tile(float* dst, const Tin* __restrict__ src, const FusedArgs& a,
                                                 const FusedBlock& blk, const float* qvalid) {
  const int nt = blockDim.x;
  for (int e = threadIdx.x; e < a.dpad * a.TT; e += nt) {
    const int i = e / a.TT;
    const int c = e - i * a.TT;
    dst[e] = (i < a.d && qvalid[c] != 0.f) ? to_float(src[blk.base + static_cast<size_t>(i) * a.T + blk.t0 + c])
                                           : 0.f;
  }
}

// Register tile p -> (channel group ig, position group tg). When possible a warp covers 8 channel
// groups x 4 position groups, so that its float4 shared-memory reads take one wavefront each.
__device__ __forceinline__ void tile_coords(int p, int n_i, int n_t, int& ig, int& tg) {
  if ((n_i & 7) == 0 && (n_t & 3) == 0) {
    const int w = p >> 5;
    const int l = p & 31;
    const int nsi = n_i >> 3;
    ig = (w % nsi) * 8 + (l & 7);
    tg = (w / nsi) * 4 + (l >> 3);
  } else {
    ig = p % n_i;
    tg = p / n_i;
  }
}

// acc[a][b] += sum_j At[j][i0 + a] * vq[j * vq_stride + tt0 + b]; At staged JC rows at a time in
// `as` (JC * dpad floats). Must be reached by every thread of the block (barriers inside).
__device__ __forceinline__ void channel_part(float (&acc)[4][4], bool active, int i0, int tt0,
                                             const float* __restrict__ ab, int d, int dpad, int JC, float* as,
                                             const float* vq, int vq_stride) {
  for (int j0 = 0; j0 < dpad; j0 += JC) {
    const int jc = min(JC, dpad - j0);
    __syncthreads();
    for (int e = threadIdx.x; e < jc * dpad; e += blockDim.x) {
      const int jj = e / dpad;
      const int ii = e - jj * dpad;
      const int j = j0 + jj;
      as[e] = (j < d && ii < d) ? ab[static_cast<size_t>(j) * d + ii] : 0.f;
    }
    __syncthreads();
    if (active) {
      for (int jj = 0; jj < jc; ++jj) {
        add_outer(acc, *reinterpret_cast<const float4*>(as + jj * dpad + i0),
                  *reinterpret_cast<const float4*>(vq + (j0 + jj) * vq_stride + tt0));
      }
    }
  }
}

// Coalesced store of the staged d x TT output tile (already masked).
template <typename Tin>
__device__ __forceinline__ void store_tile(const float* os, Tin* __restrict__ out, size_t base, int d, int T, int TT,
                                           int t0) {
  for (int e = threadIdx.x; e < d * TT; e += blockDim.x) {
    const int i = e / TT;
    const int c = e - i * TT;
    const int pos = t0 + c;
    if (pos < T) out[base + static_cast<size_t>(i) * T + pos] = from_float<Tin>(os[i * TT + c]);
  }
}

// Output phase of both fused kernels (every thread of the block must reach it): each thread owns
// 4 (channels) x 4 (positions) register tiles, in several passes when there are more tiles than
// threads. temporal(acc, active, i0, tt0) initialises the tile with the temporal part (zero when
// there is none); the channel part is added (v query tile vq, row stride vq_stride; At chunks
// staged in `as`), the tile is masked by qvalid, staged in os (d x TT) and stored coalesced.
template <typename Tin, typename Temporal>
__device__ __forceinline__ void output_tiles(const FusedArgs& a, const FusedBlock& blk, const float* __restrict__ At,
                                             const float* qvalid, const float* vq, int vq_stride, float* as,
                                             float* os, Tin* __restrict__ out, Temporal temporal) {
  const int n_i = a.dpad >> 2;
  const int n_t = a.TT >> 2;
  const int n_tiles = n_i * n_t;
  const int nt = blockDim.x;
  const int passes = (n_tiles + nt - 1) / nt;
  const float* ab = a.channel ? At + static_cast<size_t>(blk.bh) * a.d * a.d : nullptr;
  for (int pass = 0; pass < passes; ++pass) {
    const int p = pass * nt + threadIdx.x;
    const bool active = p < n_tiles;
    int ig = 0;
    int tg = 0;
    if (active) tile_coords(p, n_i, n_t, ig, tg);
    const int i0 = ig * 4;
    const int tt0 = tg * 4;
    float acc[4][4];
    temporal(acc, active, i0, tt0);
    if (a.channel) channel_part(acc, active, i0, tt0, ab, a.d, a.dpad, a.JC, as, vq, vq_stride);
    if (active) {
#pragma unroll
      for (int x = 0; x < 4; ++x)
#pragma unroll
        for (int c = 0; c < 4; ++c) os[(i0 + x) * a.TT + tt0 + c] = qvalid[tt0 + c] != 0.f ? acc[x][c] : 0.f;
    }
  }
  __syncthreads();
  store_tile(os, out, blk.base, a.d, a.T, a.TT, blk.t0);
}

// Temporal part of a banded register tile: acc[x][c] += sum_o P[c][o] v[x][c + o], with pr = P row
// of the tile's first position (row stride W) and vr = v at (first channel, key column of offset 0)
// (row stride KS); a sliding register window keeps each v value loaded once.
__device__ __forceinline__ void band_temporal(float (&acc)[4][4], const float* pr, const float* vr, int W, int KS) {
  float w[4][4];
#pragma unroll
  for (int x = 0; x < 4; ++x) {
    w[x][0] = vr[x * KS];
    w[x][1] = vr[x * KS + 1];
    w[x][2] = vr[x * KS + 2];
    w[x][3] = 0.f;
  }
  for (int o = 0; o < W; ++o) {
    const float p0 = pr[o];
    const float p1 = pr[W + o];
    const float p2 = pr[2 * W + o];
    const float p3 = pr[3 * W + o];
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      w[x][3] = vr[x * KS + o + 3];
      acc[x][0] += p0 * w[x][0];
      acc[x][1] += p1 * w[x][1];
      acc[x][2] += p2 * w[x][2];
      acc[x][3] += p3 * w[x][3];
      w[x][0] = w[x][1];
      w[x][1] = w[x][2];
      w[x][2] = w[x][3];
    }
  }
}

// ---- fused output kernel, banded local attention (and channel-only) --------------------------
//
// Shared memory (floats): qs [dpad*TT] | ks [dpad*KS] | vs [dpad*KS] | ps [TT*W] | kv [KS].
// Column c of ks/vs/kv holds position t0 - HL + c (HL = r + LP, LP = (4 - r % 4) % 4 so that
// query column HL is 16-byte aligned); query t's key offset o is column LP + t + o.
// After the logits: os (output staging) aliases qs, as (At chunk) aliases ks.

size_t band_smem_floats(const FusedArgs& a) {
  return static_cast<size_t>(a.dpad) * (a.TT + 2 * a.KS) + static_cast<size_t>(a.TT) * a.W + a.KS;
}

template <typename Tin>
__global__ void __launch_bounds__(kThreads)
    tca_band_kernel(FusedArgs a, const Tin* __restrict__ q, const Tin* __restrict__ k, const Tin* __restrict__ v,
                    const uint8_t* __restrict__ mask, const float* __restrict__ At, Tin* __restrict__ out) {
  extern __shared__ __align__(16) float smem[];
  const int tid = threadIdx.x;
  const int nt = blockDim.x;
  const int dpad = a.dpad;
  const int TT = a.TT;
  const int KS = a.KS;
  const int W = a.W;
  float* qs = smem;
  float* ks = qs + dpad * TT;
  float* vs = ks + dpad * KS;
  float* ps = vs + dpad * KS;
  float* kv = ps + TT * W;
  float* os = qs;
  float* as = ks;

  const FusedBlock blk = fused_block(a, mask);
  const int t0 = blk.t0;
  const int T = a.T;
  const int d = a.d;

  for (int c = tid; c < KS; c += nt) {
    const int pos = t0 - a.HL + c;
    kv[c] = (pos >= 0 && pos < T && blk.mask[pos] != 0) ? 1.f : 0.f;
  }
  __syncthreads();
  for (int e = tid; e < dpad * KS; e += nt) {
    const int i = e / KS;
    const int c = e - i * KS;
    float kx = 0.f;
    float vx = 0.f;
    if (i < d && kv[c] != 0.f) {
      const size_t g = blk.base + static_cast<size_t>(i) * T + (t0 - a.HL + c);
      vx = to_float(v[g]);
      if (a.temporal) kx = to_float(k[g]);
    }
    vs[e] = vx;
    ks[e] = kx;
  }
  if (a.temporal) stage_query_tile(qs, q, a, blk, kv + a.HL);
  __syncthreads();

  if (a.temporal) {
    // banded logits, 4 offsets per thread
    const int items = TT * a.nOG;
    for (int it = tid; it < items; it += nt) {
      const int t = it % TT;
      const int o = (it / TT) * 4;
      const float* qp = qs + t;
      const float* kp = ks + a.LP + t + o;
      float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma unroll 4
      for (int i = 0; i < dpad; ++i) {
        const float qv = qp[i * TT];
        const float* kr = kp + i * KS;
        s0 += qv * kr[0];
        s1 += qv * kr[1];
        s2 += qv * kr[2];
        s3 += qv * kr[3];
      }
      float* row = ps + t * W;
      row[o] = s0 * a.qscale;  // o < W always (o <= 4 * (nOG - 1) <= W - 1)
      if (o + 1 < W) row[o + 1] = s1 * a.qscale;
      if (o + 2 < W) row[o + 2] = s2 * a.qscale;
      if (o + 3 < W) row[o + 3] = s3 * a.qscale;
    }
    __syncthreads();
    // softmax over the valid keys of each valid query, scaled by (1 - theta)
    for (int t = tid; t < TT; t += nt) {
      float* row = ps + t * W;
      if (kv[a.HL + t] == 0.f) {
        for (int o = 0; o < W; ++o) row[o] = 0.f;
        continue;
      }
      const float* kvr = kv + a.LP + t;
      float m = -INFINITY;
      for (int o = 0; o < W; ++o)
        if (kvr[o] != 0.f) m = fmaxf(m, row[o]);
      float sum = 0.f;
      for (int o = 0; o < W; ++o) {
        const float e = kvr[o] != 0.f ? expf(row[o] - m) : 0.f;
        row[o] = e;
        sum += e;
      }
      const float f = a.wt / sum;
      for (int o = 0; o < W; ++o) row[o] *= f;
    }
    __syncthreads();
  }

  output_tiles(a, blk, At, kv + a.HL, vs + a.HL, KS, as, os, out, [&](float (&acc)[4][4], bool active, int i0, int tt0) {
    zero_tile(acc);
    if (a.temporal && active) band_temporal(acc, ps + tt0 * W, vs + i0 * KS + a.LP + tt0, W, KS);
  });
}

// ---- fused output kernel, flash-style (global attention / tiles too large for the band) -----
//
// Shared memory (floats): qs [dpad*TT] | ks [dpad*KC] | vs [dpad*KC] | sc [TT*(KC+1)] |
// accs [dpad*TT] | mrow, lrow, alpha, qv [TT each] | kvc [KC].
// After the key loop: os aliases qs, the v query tile (stride TT) aliases ks, as aliases vs.

size_t flash_smem_floats(const FusedArgs& a) {
  return static_cast<size_t>(a.dpad) * (2 * a.TT + 2 * a.KC) + static_cast<size_t>(a.TT) * (a.KC + 1) + 4 * a.TT +
         a.KC;
}

template <typename Tin>
__global__ void __launch_bounds__(kThreads)
    tca_flash_kernel(FusedArgs a, const Tin* __restrict__ q, const Tin* __restrict__ k, const Tin* __restrict__ v,
                     const uint8_t* __restrict__ mask, const float* __restrict__ At, Tin* __restrict__ out) {
  extern __shared__ __align__(16) float smem[];
  const int tid = threadIdx.x;
  const int nt = blockDim.x;
  const int dpad = a.dpad;
  const int TT = a.TT;
  const int KC = a.KC;
  const int SS = KC + 1;  // row stride of sc (odd: conflict-free column reads)
  float* qs = smem;
  float* ks = qs + dpad * TT;
  float* vs = ks + dpad * KC;
  float* sc = vs + dpad * KC;
  float* accs = sc + TT * SS;
  float* mrow = accs + dpad * TT;
  float* lrow = mrow + TT;
  float* alpha = lrow + TT;
  float* qv = alpha + TT;
  float* kvc = qv + TT;
  float* os = qs;
  float* vq = ks;
  float* as = vs;

  const FusedBlock blk = fused_block(a, mask);
  const int t0 = blk.t0;
  const int T = a.T;
  const int d = a.d;

  for (int t = tid; t < TT; t += nt) {
    const int pos = t0 + t;
    qv[t] = (pos < T && blk.mask[pos] != 0) ? 1.f : 0.f;
    mrow[t] = -INFINITY;
    lrow[t] = 0.f;
  }
  for (int e = tid; e < dpad * TT; e += nt) accs[e] = 0.f;
  __syncthreads();

  if (a.temporal) {
    stage_query_tile(qs, q, a, blk, qv);
    const int kbeg = a.global ? 0 : max(0, t0 - a.r);
    const int kend = a.global ? T : min(T, t0 + TT + a.r);
    for (int kc0 = kbeg; kc0 < kend; kc0 += KC) {
      __syncthreads();  // previous chunk fully consumed (and qs visible on the first round)
      for (int c = tid; c < KC; c += nt) {
        const int pos = kc0 + c;
        kvc[c] = (pos < kend && blk.mask[pos] != 0) ? 1.f : 0.f;
      }
      for (int e = tid; e < dpad * KC; e += nt) {
        const int i = e / KC;
        const int c = e - i * KC;
        const int pos = kc0 + c;
        float kx = 0.f;
        float vx = 0.f;
        if (i < d && pos < kend && blk.mask[pos] != 0) {
          const size_t g = blk.base + static_cast<size_t>(i) * T + pos;
          kx = to_float(k[g]);
          vx = to_float(v[g]);
        }
        ks[e] = kx;
        vs[e] = vx;
      }
      __syncthreads();
      for (int it = tid; it < TT * KC; it += nt) {
        const int t = it / KC;
        const int c = it - t * KC;
        float s = 0.f;
        for (int i = 0; i < dpad; ++i) s += qs[i * TT + t] * ks[i * KC + c];
        sc[t * SS + c] = s * a.qscale;
      }
      __syncthreads();
      for (int t = tid; t < TT; t += nt) {
        float* row = sc + t * SS;
        const int qpos = t0 + t;
        float m_chunk = -INFINITY;
        if (qv[t] != 0.f) {
          for (int c = 0; c < KC; ++c) {
            const bool allowed = kvc[c] != 0.f && (a.global || abs(kc0 + c - qpos) <= a.r);
            if (allowed) m_chunk = fmaxf(m_chunk, row[c]);
          }
        }
        const float m_old = mrow[t];
        const float m_new = fmaxf(m_old, m_chunk);
        if (m_new == -INFINITY) {  // padded query, or no allowed key so far
          alpha[t] = 1.f;
          for (int c = 0; c < KC; ++c) row[c] = 0.f;
          continue;
        }
        const float al = expf(m_old - m_new);  // 0 when m_old == -inf
        float sum = 0.f;
        for (int c = 0; c < KC; ++c) {
          const bool allowed = kvc[c] != 0.f && (a.global || abs(kc0 + c - qpos) <= a.r);
          const float e = allowed ? expf(row[c] - m_new) : 0.f;
          row[c] = e;
          sum += e;
        }
        lrow[t] = lrow[t] * al + sum;
        mrow[t] = m_new;
        alpha[t] = al;
      }
      __syncthreads();
      for (int e = tid; e < dpad * TT; e += nt) {
        const int i = e / TT;
        const int t = e - i * TT;
        const float* row = sc + t * SS;
        const float* vr = vs + i * KC;
        float x = accs[e] * alpha[t];
        for (int c = 0; c < KC; ++c) x += row[c] * vr[c];
        accs[e] = x;
      }
    }
    __syncthreads();  // key loop done: ks / vs / qs free
  }
  if (a.channel) stage_query_tile(vq, v, a, blk, qv);
  __syncthreads();

  // temporal part: the accumulator normalised by the softmax sum, scaled by (1 - theta)
  output_tiles(a, blk, At, qv, vq, TT, as, os, out, [&](float (&acc)[4][4], bool active, int i0, int tt0) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const float l = lrow[tt0 + c];
      const float f = (a.temporal && active && l > 0.f) ? a.wt / l : 0.f;
#pragma unroll
      for (int x = 0; x < 4; ++x) acc[x][c] = f != 0.f ? accs[(i0 + x) * TT + tt0 + c] * f : 0.f;
    }
  });
}

// ---- host launch ------------------------------------------------------------------------------

template <typename Kernel>
bool prepare_smem(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return true;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)) ==
         cudaSuccess;
}

template <typename Tin>
Status launch_all(const TcaShape& s, const Plan& p, const Tin* q, const Tin* k, const Tin* v, const uint8_t* mask,
                  Tin* out, void* workspace, cudaStream_t stream) {
  const int BH = s.batch * s.num_heads;
  float* part = nullptr;
  float* at = nullptr;
  if (p.channel) {
    part = static_cast<float*>(workspace);
    at = reinterpret_cast<float*>(static_cast<char*>(workspace) + part_bytes(s, p));
    const dim3 grid1(static_cast<unsigned>(p.ntile_logits * p.ntile_logits * BH), static_cast<unsigned>(p.nsplit));
    chan_logits_kernel<Tin><<<grid1, kThreads, 0, stream>>>(q, k, mask, part, s.channels, s.length, s.num_heads, p.d,
                                                            p.ntile_logits, p.nsplit, p.TC);
    const int row_blocks = (p.d + 7) / 8;
    const float head_scale = 1.0f / std::sqrt(static_cast<float>(p.d));
    chan_softmax_kernel<<<static_cast<unsigned>(row_blocks * BH), kThreads, 0, stream>>>(
        part, mask, at, s.length, s.num_heads, p.d, p.nsplit, s.channel_scale == ChannelScale::kTime ? 1 : 0,
        head_scale, s.theta);
    if (cuda_detail::launch_status() != Status::kSuccess) return Status::kLaunchFailed;
  }

  const size_t smem_limit = cuda_detail::max_dynamic_smem();
  FusedArgs a{};
  a.D = s.channels;
  a.T = s.length;
  a.H = s.num_heads;
  a.d = p.d;
  a.dpad = p.dpad;
  a.r = p.r;
  a.W = p.W;
  a.global = p.global ? 1 : 0;
  a.temporal = p.temporal ? 1 : 0;
  a.channel = p.channel ? 1 : 0;
  a.qscale = 1.0f / std::sqrt(static_cast<float>(p.d));
  a.wt = 1.0f - s.theta;

  // banded variant: local window, or channel-only
  if (!p.global || !p.temporal) {
    a.TT = band_tile(p.dpad);
    a.LP = (4 - a.r % 4) % 4;
    a.HL = a.r + a.LP;
    a.KS = (a.LP + a.TT + 2 * a.r + 3 + 3) / 4 * 4;
    a.nOG = (a.W + 3) / 4;
    a.JC = std::min(32, a.KS);
    a.KC = 0;
    a.num_tiles = (s.length + a.TT - 1) / a.TT;
    const size_t bytes = band_smem_floats(a) * sizeof(float);
    if (bytes <= smem_limit) {
      if (!prepare_smem(tca_band_kernel<Tin>, bytes))
        return cuda_detail::launch_failed("cannot opt into the shared memory of the banded kernel");
      tca_band_kernel<Tin><<<static_cast<unsigned>(a.num_tiles) * static_cast<unsigned>(BH), kThreads, bytes,
                             stream>>>(a, q, k, v, mask, at, out);
      return cuda_detail::launch_status();
    }
  }

  // flash variant
  a.TT = std::min(band_tile(p.dpad), 32);
  a.KC = p.dpad <= 256 ? 32 : std::max(a.TT, std::min(32, (8192 / p.dpad) / 4 * 4));
  a.JC = std::min(32, a.KC);
  a.LP = a.HL = a.KS = a.nOG = 0;
  a.num_tiles = (s.length + a.TT - 1) / a.TT;
  const size_t bytes = flash_smem_floats(a) * sizeof(float);
  if (bytes > smem_limit) return cuda_detail::launch_failed("head dimension too large for the device's shared memory");
  if (!prepare_smem(tca_flash_kernel<Tin>, bytes))
    return cuda_detail::launch_failed("cannot opt into the shared memory of the flash kernel");
  tca_flash_kernel<Tin><<<static_cast<unsigned>(a.num_tiles) * static_cast<unsigned>(BH), kThreads, bytes, stream>>>(
      a, q, k, v, mask, at, out);
  return cuda_detail::launch_status();
}

}  // namespace

size_t tca_attention_cuda_workspace(const TcaShape& shape) {
  if (tca_attention_check(shape) != nullptr) return 0;
  if (shape.batch <= 0 || shape.length <= 0 || shape.channels <= 0) return 0;
  const Plan p = make_plan(shape);
  if (!p.channel) return 0;
  return part_bytes(shape, p) + at_bytes(shape, p);
}

Status tca_attention_cuda(const TcaShape& shape, DataType dtype, const void* q, const void* k, const void* v,
                          const uint8_t* mask, void* out, void* workspace, void* stream) {
  if (tca_attention_check(shape) != nullptr) return Status::kInvalidArgument;
  if (dtype != DataType::kFloat32 && dtype != DataType::kFloat16) return Status::kInvalidArgument;
  if (shape.batch <= 0 || shape.length <= 0 || shape.channels <= 0) return Status::kSuccess;  // empty output
  if (q == nullptr || k == nullptr || v == nullptr || mask == nullptr || out == nullptr) {
    return Status::kInvalidArgument;
  }
  const Plan p = make_plan(shape);
  if (p.channel && workspace == nullptr) return Status::kInvalidArgument;
  const long long blocks = static_cast<long long>((shape.length + 3) / 4) * shape.batch * shape.num_heads;
  if (blocks > 0x7fffffffLL) return Status::kInvalidArgument;
  const cudaStream_t st = cuda_detail::as_stream(stream);
  if (dtype == DataType::kFloat32) {
    return launch_all<float>(shape, p, static_cast<const float*>(q), static_cast<const float*>(k),
                             static_cast<const float*>(v), mask, static_cast<float*>(out), workspace, st);
  }
  return launch_all<__half>(shape, p, static_cast<const __half*>(q), static_cast<const __half*>(k),
                            static_cast<const __half*>(v), mask, static_cast<__half*>(out), workspace, st);
}

}  // namespace kernels
}  // namespace asl_edge
