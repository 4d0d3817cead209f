// Posterior-mean soft quantization on the GPU, flash-style, on tf32 tensor cores (mma.sync m16n8k8):
//   l_nk = -1/2 s_nk ||z_n - c_k||^2 + b_k,   p = softmax_k(l),   z_hat_n = sum_k p_nk c_k.
// Never an n x k buffer: the forward keeps lse_n, the backward recomputes p tile by tile.
//
// Every kernel is the same loop: a block owns 64 "rows", sweeps 64-wide tiles of "columns", computes
// the 64 x 64 dot tile(s) over d in 64-wide chunks, turns them into weights (p, a*s) and multiplies
// the weights into a 64-column slice of the output (blockIdx.y picks the slice, so d is unbounded).
//   forward:         rows = z,         columns = codebook;  acc += p . c~
//   backward rows:   rows = z,         columns = codebook;  pass A: softmax statistics and
//                    delta_n = sum_k p_nk g_n.c~_k; pass B: grad_z = sum_k a_nk s_nk c~_k - (sum a s) z~
//   backward cols:   rows = codebook,  columns = z;         grad_c = sum_n p g_n + sum_n a s z~_n - (sum a s) c~
// with a_nk = p_nk (g_n.c~_k - delta_n), the FlashAttention-2 split (no atomics, deterministic).
//
// Numerics as in kernels/soft_quantize.py: everything is centred on the codebook mean mu (z~ = z - mu,
// c~ = c - mu; the caller passes c~, its squared norms and mu), so data far from 0 keeps its digits.
// exact: 3xTF32 (a = a_hi + a_lo, a.b ~ a_hi b_hi + a_hi b_lo + a_lo b_hi: fp32-accurate products);
// fast: one tf32 mma (11-bit operands, ~3e-4 relative).
// Operands are float32 (16-bit inputs are widened by the caller). Needs sm_80 or newer.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "latentops/checks.h"
#include "latentops/mma_tf32.cuh"
#include "latentops/soft_quantize.h"

namespace latentops {
namespace {

constexpr int kTile = 64;             // rows per block = columns per tile = d chunk = output slice
constexpr int kLd = kTile + 4;        // smem pitch: the fragment reads (row g, word t) hit 32 banks
constexpr int kTileFloats = kTile * kLd;
constexpr int kWarps = 4;             // each warp owns a 16-row strip of the block's 64 rows
constexpr int kThreads = 32 * kWarps;
constexpr int kFrags = kTile / 8;     // m16n8 accumulator fragments across a strip's 64 columns

using Acc = float[kFrags][4];

struct Args {
  const float* z;      // n x d
  const float* c;      // k x d, centred (c~)
  const float* c_sq;   // k: ||c~||^2
  const float* mu;     // d
  const float* s;      // in the layout s_mode (a PrecisionLayout code)
  int s_mode;
  const float* b;      // k or null
  const float* grad;   // n x d: dL/dz_hat (backward)
  int64_t n, k, d;
  float* z_hat;        // forward outputs
  float* lse;
  float* row_max;      // backward workspace, n each: softmax max, 1/sum, delta, ||z~||^2
  float* inv_l;
  float* delta;
  float* z_sq;
  float* grad_z;       // backward outputs
  float* grad_c;
  float* grad_s;       // per-row sums (scalar, per-row layouts), k (per-centroid) or n x k; or null
  float* grad_b;       // or null
};

// ---- tensor-core tile product ------------------------------------------------------------------------

// acc (this warp's 16 x 64 strip) += A (16 x 64, row-major, pitch kLd) times B over 64 reduction
// steps. B_ROWS_ARE_COLUMNS: B is stored as [column][step] (a dot tile: rows . columns^T); else as
// [step][column] (a weight tile times a value tile). Fragment layout of m16n8k8 (g = lane/4,
// t = lane%4): a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]; b = B(step t, col g), B(step t+4, col g);
// acc[j] = (g, 8j+2t), (g, 8j+2t+1), (g+8, 8j+2t), (g+8, 8j+2t+1).
template <bool kExact, bool kBRowsAreColumns>
__device__ __forceinline__ void strip_mma(Acc& acc, const float* A, const float* B, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll 2
  for (int kk = 0; kk < kTile; kk += 8) {
    const float af[4] = {A[g * kLd + kk + t], A[(g + 8) * kLd + kk + t], A[g * kLd + kk + t + 4],
                         A[(g + 8) * kLd + kk + t + 4]};
    uint32_t a_hi[4], a_lo[4];
    split_tf32(af, a_hi, a_lo);
#pragma unroll
    for (int j = 0; j < kFrags; ++j) {
      const int col = 8 * j + g;
      const float bf[2] = {kBRowsAreColumns ? B[col * kLd + kk + t] : B[(kk + t) * kLd + col],
                           kBRowsAreColumns ? B[col * kLd + kk + t + 4] : B[(kk + t + 4) * kLd + col]};
      uint32_t b_hi[2], b_lo[2];
      split_tf32(bf, b_hi, b_lo);
      if (kExact) {  // small terms first
        mma_tf32(acc[j], a_lo, b_hi);
        mma_tf32(acc[j], a_hi, b_lo);
      }
      mma_tf32(acc[j], a_hi, b_hi);
    }
  }
}

__device__ __forceinline__ void zero(Acc& acc) {
#pragma unroll
  for (int j = 0; j < kFrags; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.f;
}

// Position of accumulator element (j, e) in the warp's strip: row g + 8*(e/2), column 8j + 2t + e%2.
__device__ __forceinline__ int frag_row(int lane, int e) { return (lane >> 2) + 8 * (e >> 1); }
__device__ __forceinline__ int frag_col(int lane, int j, int e) { return 8 * j + 2 * (lane & 3) + (e & 1); }

// Sum / max over the four lanes that share a row (the quad).
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

// dst[r][c] = src[row0 + r][col0 + c] (- mu[col0 + c]), zero outside nrows x ncols. Coalesced.
__device__ __forceinline__ void load_tile(float* dst, const float* src, int64_t row0, int64_t nrows,
                                          int64_t col0, int64_t ncols, const float* mu) {
  for (int i = threadIdx.x; i < kTile * kTile; i += kThreads) {
    const int r = i / kTile, c = i % kTile;
    const int64_t gr = row0 + r, gc = col0 + c;
    float v = 0.f;
    if (gr < nrows && gc < ncols) {
      v = __ldg(src + gr * ncols + gc);
      if (mu) v -= __ldg(mu + gc);
    }
    dst[r * kLd + c] = v;
  }
}

// Writes this warp's strip of weights w into its 16 x 64 smem region.
__device__ __forceinline__ void store_strip(float* W, const Acc& w, int lane) {
#pragma unroll
  for (int j = 0; j < kFrags; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) W[frag_row(lane, e) * kLd + frag_col(lane, j, e)] = w[j][e];
}

// ||z~_r||^2 of rows [row0, row0 + 64) into zsq (one warp per row, lanes along d).
__device__ void centred_row_norms(const Args& a, int64_t row0, float* zsq) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int r = warp; r < kTile; r += kWarps) {
    const int64_t row = row0 + r;
    float acc = 0.f;
    if (row < a.n)
      for (int64_t t = lane; t < a.d; t += 32) {
        const float v = __ldg(a.z + row * a.d + t) - __ldg(a.mu + t);
        acc = fmaf(v, v, acc);
      }
#pragma unroll
    for (int m = 16; m; m >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, m);
    if (lane == 0) zsq[r] = acc;
  }
}

__device__ __forceinline__ float precision_at(const Args& a, int64_t row, int64_t col) {
  switch (a.s_mode) {
    case 0: return __ldg(a.s);
    case 1: return __ldg(a.s + row);
    case 2: return __ldg(a.s + col);
    default: return __ldg(a.s + row * a.k + col);
  }
}

// Squared distance (clamped at 0: the expanded form can dip below), s and logit of (row n, centroid k)
// from the centred dot product.
struct Logit {
  float dist, s, l;
};
__device__ __forceinline__ Logit logit_at(const Args& a, int64_t row, int64_t col, float z_sq, float dot) {
  Logit o;
  o.dist = fmaxf(z_sq + __ldg(a.c_sq + col) - 2.f * dot, 0.f);
  o.s = precision_at(a, row, col);
  o.l = -0.5f * o.s * o.dist + (a.b ? __ldg(a.b + col) : 0.f);
  return o;
}

// A running max that is still -inf is replaced by 0 before it meets arithmetic, so that
// exp(-inf - m) = 0 and no -inf - (-inf) appears (a log prior may hold -inf).
__device__ __forceinline__ float finite_or_zero(float m) { return m == -INFINITY ? 0.f : m; }

// The dot tiles of one column tile: dot = X . Yᵀ and (kTwo) dot2 = X2 . Y2ᵀ over d in kTile chunks,
// X rows from `rows` (row0..), Y rows from `cols` (col0..). Either side may be centred (mu) or raw.
struct Operand {
  const float* p;
  int64_t count;
  const float* mu;  // subtract on load, or null
};
template <bool kExact, bool kTwo>
__device__ __forceinline__ void dot_tiles(const Args& a, Operand x, Operand y, Operand x2, Operand y2,
                                          int64_t row0, int64_t col0, float* Xs, float* Ys, float* X2s,
                                          float* Y2s, Acc& dot, Acc& dot2) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  zero(dot);
  if (kTwo) zero(dot2);
  for (int64_t c0 = 0; c0 < a.d; c0 += kTile) {
    load_tile(Xs, x.p, row0, x.count, c0, a.d, x.mu);
    load_tile(Ys, y.p, col0, y.count, c0, a.d, y.mu);
    if (kTwo) {
      if (X2s != Xs) load_tile(X2s, x2.p, row0, x2.count, c0, a.d, x2.mu);
      if (Y2s != Ys) load_tile(Y2s, y2.p, col0, y2.count, c0, a.d, y2.mu);
    }
    __syncthreads();
    strip_mma<kExact, true>(dot, Xs + warp * 16 * kLd, Ys, lane);
    if (kTwo) strip_mma<kExact, true>(dot2, X2s + warp * 16 * kLd, Y2s, lane);
    __syncthreads();
  }
}

// One step of the online softmax over a column tile of z rows: dot (this warp's strip of z~.c~) becomes
// the logits (-inf outside n x k); the running row maxima m advance over the tile; m_safe are the
// maxima to subtract and alpha = exp(m_old - m_safe) the factor that rescales what was accumulated.
__device__ __forceinline__ void logits_and_new_max(const Args& a, int64_t row0, int64_t q0,
                                                   const float* zsq, Acc& dot, float (&m)[2],
                                                   float (&m_safe)[2], float (&alpha)[2]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < kFrags; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = warp * 16 + frag_row(lane, e);
      const int64_t row = row0 + r, col = q0 + frag_col(lane, j, e);
      const float lg = (row < a.n && col < a.k) ? logit_at(a, row, col, zsq[r], dot[j][e]).l : -INFINITY;
      dot[j][e] = lg;
      tile_max[e >> 1] = fmaxf(tile_max[e >> 1], lg);
    }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float m_new = fmaxf(m[h], quad_max(tile_max[h]));
    m_safe[h] = finite_or_zero(m_new);
    alpha[h] = expf(m[h] - m_safe[h]);
    m[h] = m_new;
  }
}

// ---- forward -------------------------------------------------------------------------------------------
template <bool kExact>
__global__ void __launch_bounds__(kThreads) sq_forward_kernel(Args a) {
  extern __shared__ float smem[];
  __shared__ float zsq[kTile];
  float *Zs = smem, *Cs = Zs + kTileFloats, *Vs = Cs + kTileFloats, *Ws = Vs + kTileFloats;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* my_w = Ws + warp * 16 * kLd;
  const int64_t row0 = int64_t(blockIdx.x) * kTile, v0 = int64_t(blockIdx.y) * kTile;
  centred_row_norms(a, row0, zsq);
  __syncthreads();

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  Acc acc, dot, unused;
  zero(acc);
  const Operand zt{a.z, a.n, a.mu}, ct{a.c, a.k, nullptr};
  for (int64_t q0 = 0; q0 < a.k; q0 += kTile) {
    dot_tiles<kExact, false>(a, zt, ct, zt, ct, row0, q0, Zs, Cs, Zs, Cs, dot, unused);
    load_tile(Vs, a.c, q0, a.k, v0, a.d, nullptr);
    float alpha[2], m_safe[2], tile_sum[2] = {0.f, 0.f};
    logits_and_new_max(a, row0, q0, zsq, dot, m, m_safe, alpha);
#pragma unroll
    for (int j = 0; j < kFrags; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = expf(dot[j][e] - m_safe[e >> 1]);
        dot[j][e] = p;
        tile_sum[e >> 1] += p;
        acc[j][e] *= alpha[e >> 1];
      }
#pragma unroll
    for (int h = 0; h < 2; ++h) l[h] = l[h] * alpha[h] + quad_sum(tile_sum[h]);
    store_strip(my_w, dot, lane);
    __syncthreads();  // the value tile Vs (and this warp's weights) are in place
    strip_mma<kExact, false>(acc, my_w, Vs, lane);
    __syncthreads();  // before the next tile's loads overwrite Vs
  }

#pragma unroll
  for (int j = 0; j < kFrags; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t row = row0 + warp * 16 + frag_row(lane, e), v = v0 + frag_col(lane, j, e);
      if (row < a.n && v < a.d) a.z_hat[row * a.d + v] = acc[j][e] / l[e >> 1] + __ldg(a.mu + v);
    }
  if (blockIdx.y == 0 && (lane & 3) == 0)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = row0 + warp * 16 + frag_row(lane, 2 * h);
      if (row < a.n) a.lse[row] = m[h] + logf(l[h]);
    }
}

// ---- backward: rows (grad_z, grad_s of the scalar / per-row / full layouts) -----------------------------
// The backward recomputes the softmax statistics (pass A) instead of trusting the forward's lse: the
// lse's absolute rounding error u*|lse| becomes a relative error of every p through exp(l - lse), and
// delta from the very g.c~ values it is subtracted from cancels exactly on one-hot rows (see
// kernels/soft_quantize.py, where the same choice is explained at length).
template <bool kExact>
__global__ void __launch_bounds__(kThreads) sq_backward_rows_kernel(Args a) {
  extern __shared__ float smem[];
  __shared__ float zsq[kTile];
  float *Zs = smem, *Gs = Zs + kTileFloats, *Cs = Gs + kTileFloats, *Vs = Cs + kTileFloats,
        *Ws = Vs + kTileFloats;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* my_w = Ws + warp * 16 * kLd;
  const int64_t row0 = int64_t(blockIdx.x) * kTile, v0 = int64_t(blockIdx.y) * kTile;
  const bool writer = blockIdx.y == 0;  // writes the per-row results once
  centred_row_norms(a, row0, zsq);
  __syncthreads();
  if (writer && threadIdx.x < kTile && row0 + threadIdx.x < a.n) a.z_sq[row0 + threadIdx.x] = zsq[threadIdx.x];

  const Operand zt{a.z, a.n, a.mu}, gt{a.grad, a.n, nullptr}, ct{a.c, a.k, nullptr};
  Acc dot, gc;
  // pass A: row max m, 1/sum exp(l - m), delta = sum_k p g.c~_k, online
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, dl[2] = {0.f, 0.f};
  for (int64_t q0 = 0; q0 < a.k; q0 += kTile) {
    dot_tiles<kExact, true>(a, zt, ct, gt, ct, row0, q0, Zs, Cs, Gs, Cs, dot, gc);
    float alpha[2], m_safe[2], tile_l[2] = {0.f, 0.f}, tile_dl[2] = {0.f, 0.f};
    logits_and_new_max(a, row0, q0, zsq, dot, m, m_safe, alpha);
#pragma unroll
    for (int j = 0; j < kFrags; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float ex = expf(dot[j][e] - m_safe[e >> 1]);
        tile_l[e >> 1] += ex;
        tile_dl[e >> 1] += ex * gc[j][e];
      }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l[h] = l[h] * alpha[h] + quad_sum(tile_l[h]);
      dl[h] = dl[h] * alpha[h] + quad_sum(tile_dl[h]);
    }
  }
  float inv_l[2], delta[2], m_safe[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    inv_l[h] = 1.f / l[h];
    delta[h] = dl[h] * inv_l[h];
    m_safe[h] = finite_or_zero(m[h]);
    const int64_t row = row0 + warp * 16 + frag_row(lane, 2 * h);
    if (writer && (lane & 3) == 0 && row < a.n) {
      a.row_max[row] = m_safe[h];
      a.inv_l[row] = inv_l[h];
      a.delta[row] = delta[h];
    }
  }

  // pass B: grad_z = sum_k (a s)_k c~_k - (sum_k a s) z~, grad_s
  Acc acc;
  zero(acc);
  float acc_w[2] = {0.f, 0.f}, gs[2] = {0.f, 0.f};
  // The per-centroid layout's grad_s is a sum over rows: the centroids kernel's.
  const bool need_gs = a.grad_s != nullptr && a.s_mode != 2;
  for (int64_t q0 = 0; q0 < a.k; q0 += kTile) {
    dot_tiles<kExact, true>(a, zt, ct, gt, ct, row0, q0, Zs, Cs, Gs, Cs, dot, gc);
    load_tile(Vs, a.c, q0, a.k, v0, a.d, nullptr);
#pragma unroll
    for (int j = 0; j < kFrags; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e >> 1, r = warp * 16 + frag_row(lane, e);
        const int64_t row = row0 + r, col = q0 + frag_col(lane, j, e);
        float as = 0.f;
        if (row < a.n && col < a.k) {
          const Logit lg = logit_at(a, row, col, zsq[r], dot[j][e]);
          const float p = lg.l == -INFINITY ? 0.f : expf(lg.l - m_safe[h]) * inv_l[h];
          const float aw = p * (gc[j][e] - delta[h]);
          as = aw * lg.s;
          if (need_gs) {
            const float g_s = -0.5f * aw * lg.dist;
            if (a.s_mode == 3) {
              if (writer) a.grad_s[row * a.k + col] = g_s;
            } else {
              gs[h] += g_s;
            }
          }
        }
        dot[j][e] = as;
        acc_w[h] += as;
      }
    store_strip(my_w, dot, lane);
    __syncthreads();
    strip_mma<kExact, false>(acc, my_w, Vs, lane);
    __syncthreads();
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    acc_w[h] = quad_sum(acc_w[h]);
    gs[h] = quad_sum(gs[h]);
  }
#pragma unroll
  for (int j = 0; j < kFrags; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t row = row0 + warp * 16 + frag_row(lane, e), v = v0 + frag_col(lane, j, e);
      if (row < a.n && v < a.d) {
        const float z_centred = __ldg(a.z + row * a.d + v) - __ldg(a.mu + v);
        a.grad_z[row * a.d + v] = acc[j][e] - acc_w[e >> 1] * z_centred;
      }
    }
  if (need_gs && (a.s_mode == 0 || a.s_mode == 1) && writer && (lane & 3) == 0)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = row0 + warp * 16 + frag_row(lane, 2 * h);
      if (row < a.n) a.grad_s[row] = gs[h];
    }
}

// ---- backward: centroids (grad_c, grad_b, grad_s of the per-centroid layout) ---------------------------
// Rows are centroids, columns are z rows; reads the statistics the rows kernel wrote.
template <bool kExact>
__global__ void __launch_bounds__(kThreads) sq_backward_centroids_kernel(Args a) {
  extern __shared__ float smem[];
  // The value tiles reuse the z and g dot tiles: dot_tiles ends with a barrier after its last read
  // of Zs / Gs, and the barrier closing each sweep step comes before the next step's loads. Four
  // tiles (68 KiB) rather than six (102 KiB: over the 99 KiB a block may opt into on sm_86, sm_89
  // and sm_120, where cudaFuncSetAttribute would fail).
  float *Cs = smem, *Zs = Cs + kTileFloats, *Gs = Zs + kTileFloats, *Ws = Gs + kTileFloats;
  float *Vg = Zs, *Vz = Gs;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* my_w = Ws + warp * 16 * kLd;
  const int64_t q0 = int64_t(blockIdx.x) * kTile, v0 = int64_t(blockIdx.y) * kTile;
  const bool writer = blockIdx.y == 0;

  const Operand ct{a.c, a.k, nullptr}, zt{a.z, a.n, a.mu}, gt{a.grad, a.n, nullptr};
  Acc acc, dot, gc;
  zero(acc);
  float acc_w[2] = {0.f, 0.f}, gb[2] = {0.f, 0.f}, gs[2] = {0.f, 0.f};
  const bool need_gs = a.grad_s != nullptr && a.s_mode == 2;  // the other layouts: the rows kernel's
  for (int64_t n0 = 0; n0 < a.n; n0 += kTile) {
    dot_tiles<kExact, true>(a, ct, zt, ct, gt, q0, n0, Cs, Zs, Cs, Gs, dot, gc);
    load_tile(Vg, a.grad, n0, a.n, v0, a.d, nullptr);
    load_tile(Vz, a.z, n0, a.n, v0, a.d, a.mu);
#pragma unroll
    for (int j = 0; j < kFrags; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e >> 1;
        const int64_t col = q0 + warp * 16 + frag_row(lane, e), row = n0 + frag_col(lane, j, e);
        float p = 0.f, as = 0.f;
        if (row < a.n && col < a.k) {
          const Logit lg = logit_at(a, row, col, __ldg(a.z_sq + row), dot[j][e]);
          p = lg.l == -INFINITY ? 0.f : expf(lg.l - __ldg(a.row_max + row)) * __ldg(a.inv_l + row);
          const float aw = p * (gc[j][e] - __ldg(a.delta + row));
          as = aw * lg.s;
          gb[h] += aw;
          if (need_gs) gs[h] += -0.5f * aw * lg.dist;
        }
        dot[j][e] = p;
        gc[j][e] = as;
        acc_w[h] += as;
      }
    store_strip(my_w, dot, lane);
    __syncthreads();  // Vg, Vz and the weights are in place
    strip_mma<kExact, false>(acc, my_w, Vg, lane);  // sum_n p_nk g_n
    __syncwarp();
    store_strip(my_w, gc, lane);
    __syncwarp();
    strip_mma<kExact, false>(acc, my_w, Vz, lane);  // sum_n (a s)_nk z~_n
    __syncthreads();
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    acc_w[h] = quad_sum(acc_w[h]);
    gb[h] = quad_sum(gb[h]);
    gs[h] = quad_sum(gs[h]);
  }
#pragma unroll
  for (int j = 0; j < kFrags; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t col = q0 + warp * 16 + frag_row(lane, e), v = v0 + frag_col(lane, j, e);
      if (col < a.k && v < a.d)
        a.grad_c[col * a.d + v] = acc[j][e] - acc_w[e >> 1] * __ldg(a.c + col * a.d + v);
    }
  if (writer && (lane & 3) == 0)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t col = q0 + warp * 16 + frag_row(lane, 2 * h);
      if (col >= a.k) continue;
      if (a.grad_b) a.grad_b[col] = gb[h];
      if (need_gs) a.grad_s[col] = gs[h];
    }
}

// ---- launch ----------------------------------------------------------------------------------------------
template <typename Kernel>
void launch(Kernel kernel, int tiles, dim3 grid, const Args& a, cudaStream_t stream) {
  const int bytes = tiles * kTileFloats * static_cast<int>(sizeof(float));
  LATENTOPS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  kernel<<<grid, kThreads, bytes, stream>>>(a);
  LATENTOPS_CUDA_CHECK(cudaGetLastError());
}

dim3 grid_for(int64_t blocks, int64_t d) {
  const int64_t slices = (d + kTile - 1) / kTile;
  LATENTOPS_CHECK(blocks < (int64_t(1) << 31) && slices < 65536, "soft_quantize: size out of range for the grid");
  return dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(slices));
}

// The kernels' arguments from the operands of both stages.
Args common_args(const SoftQuantizeInputs& p) {
  LATENTOPS_CHECK(p.codebook.values != nullptr && p.codebook.sq_norms != nullptr && p.codebook.mean != nullptr,
                  "soft_quantize CUDA: the codebook must come centred, with its squared norms and mean");
  Args a{};
  a.z = p.z, a.c = p.codebook.values, a.c_sq = p.codebook.sq_norms, a.mu = p.codebook.mean, a.s = p.s;
  a.s_mode = static_cast<int>(p.s_layout);
  a.b = p.log_prior, a.n = p.n, a.k = p.k, a.d = p.d;
  return a;
}

}  // namespace

void soft_quantize_forward_cuda(const SoftQuantizeForwardParams& p, void* stream) {
  const int64_t n = p.n, k = p.k, d = p.d;
  LATENTOPS_CHECK(n > 0 && k > 0 && d > 0, "soft_quantize_forward_cuda: n, k, d must be positive");
  require_tf32_tensor_cores("soft_quantize");
  Args a = common_args(p);
  a.z_hat = p.z_hat, a.lse = p.lse;
  const dim3 grid = grid_for((n + kTile - 1) / kTile, d);
  auto st = static_cast<cudaStream_t>(stream);
  if (p.accuracy == Accuracy::kExact) launch(sq_forward_kernel<true>, 4, grid, a, st);
  else launch(sq_forward_kernel<false>, 4, grid, a, st);
}

void soft_quantize_backward_cuda(const SoftQuantizeBackwardParams& p, float* workspace, void* stream) {
  const int64_t n = p.n, k = p.k, d = p.d;
  LATENTOPS_CHECK(n > 0 && k > 0 && d > 0, "soft_quantize_backward_cuda: n, k, d must be positive");
  require_tf32_tensor_cores("soft_quantize");
  Args a = common_args(p);
  a.grad = p.grad;
  a.row_max = workspace, a.inv_l = workspace + n, a.delta = workspace + 2 * n, a.z_sq = workspace + 3 * n;
  a.grad_z = p.grad_z, a.grad_c = p.grad_codebook, a.grad_s = p.grad_s, a.grad_b = p.grad_log_prior;
  auto st = static_cast<cudaStream_t>(stream);
  const dim3 rows_grid = grid_for((n + kTile - 1) / kTile, d);
  const dim3 cols_grid = grid_for((k + kTile - 1) / kTile, d);
  if (p.accuracy == Accuracy::kExact) {
    launch(sq_backward_rows_kernel<true>, 5, rows_grid, a, st);
    launch(sq_backward_centroids_kernel<true>, 4, cols_grid, a, st);
  } else {
    launch(sq_backward_rows_kernel<false>, 5, rows_grid, a, st);
    launch(sq_backward_centroids_kernel<false>, 4, cols_grid, a, st);
  }
}

}  // namespace latentops
