// Similarity graphs on the CPU: the symmetric Gram of each graph (only the tiles on or above the
// diagonal: half the FLOPs of X·Xᵀ), mapped to W in the tile epilogue, and the sparse backward.
//
// Stage 1, one graph at a time (the packed panels of one graph are the only large scratch):
//   * ‖x_i‖² in float64, one pass;
//   * x packed into 16-row panels stored [t][16] (the micro-kernel's B layout);
//   * work items of 48 rows [i0, i0 + 48) against the columns j ≥ ⌊i0/16⌋·16, largest first, with
//     the inner dimension in chunks of 256 (a 16 x 256 panel chunk stays in L1, the 48 x 256 A
//     block in L2), each 6 x 16 output tile one register-resident AVX2 micro-kernel; 6 x 16
//     tiles wholly below the diagonal are skipped;
//   * the epilogue writes W_ij and W_ji for j ≥ i from the fp32 Gram entry.
// Backward: per row, acc = Σ_e c_e x_j over the row's CSR entries (≤ 2k for k-NN), then the row
// terms; O(nnz·d), memory-bound, one pass over the gathered rows.
#include "latentops/graph.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <immintrin.h>

#include "latentops/checks.h"
#include "latentops/cpu_gemm.h"
#include "latentops/cpu_scratch.h"

#if !(defined(__AVX2__) && defined(__FMA__))
#error "graph.cpp needs AVX2 and FMA (compile with -march=x86-64-v3)"
#endif

namespace latentops {
namespace {

constexpr int64_t kRowBlock = 48;  // rows per work item (multiple of cpu::kGemmRows)
constexpr int64_t kPanel = 16;     // micro-kernel columns
constexpr int64_t kInnerChunk = 256;

using Buffer = AlignedBuffer<float>;

inline float hsum(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// panels[p][t][c] = x[16p + c][t], zero for rows past n.
void pack_panels(const float* x, int64_t n, int64_t d, float* panels) {
  const int64_t npan = (n + kPanel - 1) / kPanel;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < npan; ++p) {
    float* dst = panels + p * kPanel * d;
    for (int64_t c = 0; c < kPanel; ++c) {
      const int64_t row = p * kPanel + c;
      if (row < n) {
        const float* src = x + row * d;
        for (int64_t t = 0; t < d; ++t) dst[t * kPanel + c] = src[t];
      } else {
        for (int64_t t = 0; t < d; ++t) dst[t * kPanel + c] = 0.f;
      }
    }
  }
}

struct Item {
  int64_t row0, rows;
};

void gram_block(const float* x, const float* panels, int64_t n, int64_t d, const Item& item, float* tile,
                int64_t ld_tile) {
  const int64_t col0 = item.row0 / kPanel * kPanel;
  const int64_t npan = (n - col0 + kPanel - 1) / kPanel;
  for (int64_t t0 = 0; t0 < d; t0 += kInnerChunk) {
    const int64_t kc = std::min(kInnerChunk, d - t0);
    for (int64_t p = 0; p < npan; ++p) {
      const int64_t pcol = col0 + p * kPanel;
      const float* b = panels + (pcol / kPanel) * kPanel * d + t0 * kPanel;
      for (int64_t i = 0; i < item.rows; i += cpu::kGemmRows) {
        if (pcol + kPanel - 1 < item.row0 + i) continue;  // wholly below the diagonal
        const int64_t mr = std::min(cpu::kGemmRows, item.rows - i);
        cpu::pick_rows<2>(mr)(kc, x + (item.row0 + i) * d + t0, d, 1, b, kPanel,
                              tile + i * ld_tile + p * kPanel, ld_tile, t0 > 0);
      }
    }
  }
}

void similarity_one(const float* x, int64_t n, int64_t d, GraphMetric metric, float sigma, bool relu, float* w,
                    float* stats, Buffer& panels, std::vector<Buffer>& tiles, int64_t ld_tile) {
  std::vector<double> sq(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (n * d > 65536)
  for (int64_t i = 0; i < n; ++i) {
    double total = 0.0;
    const float* row = x + i * d;
    for (int64_t t = 0; t < d; ++t) total += static_cast<double>(row[t]) * row[t];
    sq[i] = total;
    stats[i] = metric == GraphMetric::kCosine ? (total > 0.0 ? static_cast<float>(1.0 / std::sqrt(total)) : 0.f)
                                              : static_cast<float>(total);
  }
  pack_panels(x, n, d, panels.get());
  std::vector<Item> items;
  for (int64_t r = 0; r < n; r += kRowBlock) items.push_back({r, std::min(kRowBlock, n - r)});
  // Earlier row blocks have more columns right of the diagonal: start them first.
  const double neg_inv = -0.5 / (static_cast<double>(sigma) * sigma);
  const int team = static_cast<int>(std::min<int64_t>(max_threads(), static_cast<int64_t>(items.size())));
#pragma omp parallel num_threads(team) if (team > 1)
  {
    float* tile = tiles[static_cast<size_t>(thread_id())].get();
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < static_cast<int64_t>(items.size()); ++it) {
      const Item& item = items[static_cast<size_t>(it)];
      gram_block(x, panels.get(), n, d, item, tile, ld_tile);
      const int64_t col0 = item.row0 / kPanel * kPanel;
      for (int64_t r = 0; r < item.rows; ++r) {
        const int64_t i = item.row0 + r;
        const float* gram = tile + r * ld_tile - col0;
        w[i * n + i] = 0.f;
        for (int64_t j = i + 1; j < n; ++j) {
          float v;
          if (metric == GraphMetric::kCosine) {
            v = gram[j] * stats[i] * stats[j];
          } else {
            const double dist = std::max(sq[i] + sq[j] - 2.0 * static_cast<double>(gram[j]), 0.0);
            v = static_cast<float>(std::exp(dist * neg_inv));
          }
          if (relu) v = std::max(v, 0.f);
          w[i * n + j] = v;
          w[j * n + i] = v;
        }
      }
    }
  }
}

}  // namespace

void similarity_graph_cpu(const float* const* xs, const int64_t* dims, int64_t g, int64_t n, GraphMetric metric,
                          float sigma, bool relu, float* w, float* stats) {
  LATENTOPS_CHECK(g >= 0 && n >= 0, "similarity_graph_cpu: negative size g=" << g << " n=" << n);
  const int m = static_cast<int>(metric);
  LATENTOPS_CHECK(m == 0 || m == 1, "similarity_graph_cpu: unknown metric " << m);
  LATENTOPS_CHECK(metric == GraphMetric::kCosine || sigma > 0.f, "similarity_graph_cpu: sigma must be > 0");
  if (g == 0 || n == 0) return;
  int64_t max_d = 0;
  for (int64_t gi = 0; gi < g; ++gi) {
    LATENTOPS_CHECK(dims[gi] >= 1, "similarity_graph_cpu: graph " << gi << " has d=" << dims[gi]);
    max_d = std::max(max_d, dims[gi]);
  }
  const int64_t npan = (n + kPanel - 1) / kPanel;
  const int64_t ld_tile = npan * kPanel;
  Buffer panels;
  panels.reset(static_cast<size_t>(npan * kPanel * max_d), false);
  std::vector<Buffer> tiles(static_cast<size_t>(max_threads()));
  for (Buffer& tile : tiles) tile.reset(static_cast<size_t>(kRowBlock * ld_tile), false);
  for (int64_t gi = 0; gi < g; ++gi) {
    similarity_one(xs[gi], n, dims[gi], metric, sigma, relu, w + gi * n * n, stats + gi * n, panels, tiles,
                   ld_tile);
  }
}

void similarity_graph_sparse_backward_cpu(const float* const* xs, const int64_t* dims, int64_t g, int64_t n,
                                          const int64_t* rowptr, const int64_t* col, const float* coef,
                                          const float* alpha, const float* beta, const float* gamma,
                                          float* const* grads) {
  LATENTOPS_CHECK(g >= 0 && n >= 0, "similarity_graph_sparse_backward_cpu: negative size");
  if (g == 0 || n == 0) return;
  int64_t max_d = 0;
  for (int64_t gi = 0; gi < g; ++gi) max_d = std::max(max_d, dims[gi]);
  std::vector<Buffer> accs(static_cast<size_t>(max_threads()));
  for (Buffer& acc : accs) acc.reset(static_cast<size_t>(max_d), false);
  const int64_t rows = g * n;
#pragma omp parallel
  {
    float* acc = accs[static_cast<size_t>(thread_id())].get();
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t gi = r / n, i = r % n, d = dims[gi];
      const int64_t d8 = d / 8 * 8;
      const float* x = xs[gi];
      std::fill(acc, acc + d, 0.f);
      for (int64_t e = rowptr[r]; e < rowptr[r + 1]; ++e) {
        const float c = coef[e];
        if (c == 0.f) continue;  // ReLU-clamped and diagonal entries
        const float* xj = x + col[e] * d;
        const __m256 cv = _mm256_set1_ps(c);
        int64_t t = 0;
        for (; t < d8; t += 8)
          _mm256_storeu_ps(acc + t, _mm256_fmadd_ps(cv, _mm256_loadu_ps(xj + t), _mm256_loadu_ps(acc + t)));
        for (; t < d; ++t) acc[t] += c * xj[t];
      }
      const float* xi = x + i * d;
      __m256 dv = _mm256_setzero_ps();
      int64_t t = 0;
      for (; t < d8; t += 8) dv = _mm256_fmadd_ps(_mm256_loadu_ps(xi + t), _mm256_loadu_ps(acc + t), dv);
      float dot = hsum(dv);
      for (; t < d; ++t) dot += xi[t] * acc[t];
      const float a = alpha[r], s = beta[r] + gamma[r] * dot;
      const __m256 av = _mm256_set1_ps(a), sv = _mm256_set1_ps(s);
      float* out = grads[gi] + i * d;
      t = 0;
      for (; t < d8; t += 8)
        _mm256_storeu_ps(out + t, _mm256_fmsub_ps(av, _mm256_loadu_ps(acc + t), _mm256_mul_ps(sv, _mm256_loadu_ps(xi + t))));
      for (; t < d; ++t) out[t] = a * acc[t] - s * xi[t];
    }
  }
}

}  // namespace latentops
