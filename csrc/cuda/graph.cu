// Similarity graphs on the GPU (UNVALIDATED: compiled here, never run; the Python layer calls it
// only for backend="cuda" asked for by name). Contracts as in latentops/graph.h.
//
// sg_gram_kernel: one 64 x 64 tile (bi ≤ bj: the upper triangle only, half the FLOPs) of one graph
// per block, 4 warps of 32 x 32. The Gram runs on tensor cores in 3xTF32 (a = a_hi + a_lo with both
// halves tf32: a_hi b_hi + a_hi b_lo + a_lo b_hi keeps fp32 accuracy, ~1e-6 relative), k-tiles of
// 32 staged through shared memory; the rows' squared norms accumulate from the same shared tiles.
// The epilogue maps the tile to W (cosine with zero-row safety, or Gaussian), zeroes the diagonal,
// applies the ReLU and writes (i, j) and (j, i) for j ≥ i only, so W is exactly symmetric.
// sg_spmm_kernel: one block per row: acc = Σ_e c_e x_{col_e}, written to the output, block-reduced
// x_i·acc, then the row terms in place.
#include <cuda_runtime.h>

#include <cstdint>

#include "latentops/checks.h"
#include "latentops/graph.h"
#include "latentops/mma_tf32.cuh"

namespace latentops {
namespace {

constexpr int kTile = 64;      // rows and columns of a W tile
constexpr int kThreads = 128;  // 4 warps, each 32 x 32 of the tile
constexpr int kBK = 32;        // reduction words per k-tile
constexpr int kLd = kBK + 4;   // smem pitch: (g·36 + t) mod 32 hits 32 distinct banks

// Rows [row0, row0 + 64) of x (n x d), words [k0, k0 + 32) into tile[64][kLd], zero-filled.
__device__ __forceinline__ void load_tile(float* tile, const float* x, int64_t n, int64_t d, int64_t row0,
                                          int64_t k0) {
  for (int e = threadIdx.x; e < kTile * kBK; e += kThreads) {
    const int r = e / kBK, c = e % kBK;
    const int64_t row = row0 + r, col = k0 + c;
    tile[r * kLd + c] = (row < n && col < d) ? x[row * d + col] : 0.f;
  }
}

__global__ void __launch_bounds__(kThreads) sg_gram_kernel(const float* const* xs, const int64_t* dims, int64_t n,
                                                           int nb, int metric, float neg_inv, bool relu,
                                                           float* w, float* stats) {
  __shared__ float As[kTile * kLd];
  __shared__ float Bs[kTile * kLd];
  __shared__ float sq_a[kTile];
  __shared__ float sq_b[kTile];
  const int g = blockIdx.y;
  int rem = blockIdx.x, bi = 0;
  while (rem >= nb - bi) {
    rem -= nb - bi;
    ++bi;
  }
  const int bj = bi + rem;
  const float* x = xs[g];
  const int64_t d = dims[g];
  const int64_t row_a = int64_t(bi) * kTile, row_b = int64_t(bj) * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;  // the warp's 32 x 32 in the tile
  const int gq = lane / 4, tq = lane % 4;
  float acc[2][4][4] = {};
  float my_sq = 0.f;  // threads 0..63: row of A; 64..127: row of B
  for (int64_t k0 = 0; k0 < d; k0 += kBK) {
    load_tile(As, x, n, d, row_a, k0);
    load_tile(Bs, x, n, d, row_b, k0);
    __syncthreads();
    {
      const float* r = threadIdx.x < kTile ? As + threadIdx.x * kLd : Bs + (threadIdx.x - kTile) * kLd;
      #pragma unroll
      for (int c = 0; c < kBK; ++c) my_sq = fmaf(r[c], r[c], my_sq);
    }
    #pragma unroll
    for (int ks = 0; ks < kBK; ks += 8) {
      uint32_t a_hi[2][4], a_lo[2][4], b_hi[4][2], b_lo[4][2];
      #pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const float* base = As + (wm + mt * 16) * kLd + ks;
        const float v[4] = {base[gq * kLd + tq], base[(gq + 8) * kLd + tq], base[gq * kLd + tq + 4],
                            base[(gq + 8) * kLd + tq + 4]};
        split_tf32(v, a_hi[mt], a_lo[mt]);
      }
      #pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const float* base = Bs + (wn + nt * 8 + gq) * kLd + ks;
        const float v[2] = {base[tq], base[tq + 4]};
        split_tf32(v, b_hi[nt], b_lo[nt]);
      }
      #pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        #pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          mma_tf32(acc[mt][nt], a_lo[mt], b_hi[nt]);  // small terms first
          mma_tf32(acc[mt][nt], a_hi[mt], b_lo[nt]);
          mma_tf32(acc[mt][nt], a_hi[mt], b_hi[nt]);
        }
      }
    }
    __syncthreads();
  }
  if (threadIdx.x < kTile) {
    sq_a[threadIdx.x] = my_sq;
  } else {
    sq_b[threadIdx.x - kTile] = my_sq;
  }
  __syncthreads();
  if (bi == bj && threadIdx.x < kTile && row_a + threadIdx.x < n) {
    const float s = sq_a[threadIdx.x];
    stats[int64_t(g) * n + row_a + threadIdx.x] = metric == 0 ? (s > 0.f ? rsqrtf(s) : 0.f) : s;
  }
  float* wg = w + int64_t(g) * n * n;
  #pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    #pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      #pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int r = wm + mt * 16 + gq + (q >= 2 ? 8 : 0);
        const int c = wn + nt * 8 + 2 * tq + (q & 1);
        const int64_t i = row_a + r, j = row_b + c;
        if (i >= n || j >= n || j < i) continue;
        const float si = sq_a[r], sj = sq_b[c], gram = acc[mt][nt][q];
        float v;
        if (metric == 0) {
          v = gram * ((si > 0.f ? rsqrtf(si) : 0.f) * (sj > 0.f ? rsqrtf(sj) : 0.f));
        } else {
          v = __expf(fmaxf(si + sj - 2.f * gram, 0.f) * neg_inv);
        }
        if (i == j) v = 0.f;
        if (relu) v = fmaxf(v, 0.f);
        wg[i * n + j] = v;
        wg[j * n + i] = v;
      }
    }
  }
}

__global__ void sg_spmm_kernel(const float* const* xs, const int64_t* dims, int64_t n, const int64_t* rowptr,
                               const int64_t* col, const float* coef, const float* alpha, const float* beta,
                               const float* gamma, float* const* grads) {
  __shared__ float partial[32];
  const int64_t r = blockIdx.x;
  const int64_t g = r / n, i = r % n, d = dims[g];
  const float* x = xs[g];
  const float* xi = x + i * d;
  float* out = grads[g] + i * d;
  const int64_t start = rowptr[r], stop = rowptr[r + 1];
  float dot = 0.f;
  for (int64_t t = threadIdx.x; t < d; t += blockDim.x) {
    float acc = 0.f;
    for (int64_t e = start; e < stop; ++e) acc = fmaf(coef[e], x[col[e] * d + t], acc);
    out[t] = acc;
    dot = fmaf(xi[t], acc, dot);
  }
  for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = dot;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float a = alpha[r], s = beta[r] + gamma[r] * partial[0];
  for (int64_t t = threadIdx.x; t < d; t += blockDim.x) out[t] = a * out[t] - s * xi[t];
}

}  // namespace

void similarity_graph_cuda(const SimilarityGraphParams& p, void* stream) {
  const int64_t g = p.g, n = p.n;
  LATENTOPS_CHECK(g >= 0 && n >= 0, "similarity_graph_cuda: negative size g=" << g << " n=" << n);
  LATENTOPS_CHECK(g <= 65535, "similarity_graph_cuda: at most 65535 graphs per call, got " << g);
  if (g == 0 || n == 0) return;
  require_tf32_tensor_cores("similarity graph");
  const int64_t nb = (n + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(nb * (nb + 1) / 2), static_cast<unsigned>(g));
  const float neg_inv = -0.5f / (p.sigma * p.sigma);
  sg_gram_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      p.xs, p.dims, n, static_cast<int>(nb), static_cast<int>(p.metric), neg_inv, p.relu, p.w, p.stats);
  LATENTOPS_CUDA_CHECK(cudaGetLastError());
}

void similarity_graph_sparse_backward_cuda(const SimilarityGraphBackwardParams& p, void* stream) {
  const int64_t g = p.g, n = p.n;
  LATENTOPS_CHECK(g >= 0 && n >= 0, "similarity_graph_sparse_backward_cuda: negative size");
  if (g == 0 || n == 0) return;
  sg_spmm_kernel<<<static_cast<unsigned>(g * n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
      p.xs, p.dims, n, p.rowptr, p.col, p.coef, p.alpha, p.beta, p.gamma, p.grads);
  LATENTOPS_CUDA_CHECK(cudaGetLastError());
}

}  // namespace latentops
