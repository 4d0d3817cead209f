// Similarity graphs on the CPU: the symmetric Gram of each graph (only the tiles on or above the
// diagonal: half the FLOPs of X·Xᵀ), mapped to W in the tile epilogue, and the sparse backward.
//
// Stage 1, one graph at a time (the packed panels of one graph are the only large scratch):
//   * ‖x_i‖² in float64, one pass;
//   * x packed once into 16-row panels stored [t][16] (8 x 8 register transposes): the
//     micro-kernel's B layout, and its A layout too (stride 16 per t), so X is packed once for
//     both operands of X·Xᵀ;
//   * work items of 48 rows [i0, i0 + 48) against the columns j ≥ ⌊i0/16⌋·16, largest first, with
//     the inner dimension in chunks of 256 (a 16 x 256 panel chunk stays in L1), each 6 x 16
//     (or 4 x 16 for the last rows of a panel) output tile one register-resident AVX2
//     micro-kernel; tiles wholly below the diagonal are skipped;
//   * the epilogue writes W_ij and W_ji for j ≥ i from the fp32 Gram entry.
// Backward: per row, acc = Σ_e c_e x_j over the row's CSR entries (≤ 2k for k-NN), then the row
// terms; O(nnz·d), memory-bound, one pass over the gathered rows.
#include "latentops/graph.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "latentops/checks.h"
#include "latentops/cpu_gemm.h"
#include "latentops/cpu_scratch.h"
#include "latentops/cpu_simd.h"

namespace latentops {
namespace {

constexpr int64_t kRowBlock = 48;  // rows per work item (a multiple of kPanel: A rows come from the panels)
constexpr int64_t kPanel = 16;     // micro-kernel columns
constexpr int64_t kInnerChunk = 256;

using Buffer = AlignedBuffer<float>;
using cpu::hsum;
using cpu::hsum_pd;

// Σ_t row[t]² in float64, four independent accumulators (a single chain is latency-bound).
double sum_squares(const float* row, int64_t d) {
  __m256d acc0 = _mm256_setzero_pd(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int64_t t = 0;
  for (; t + 16 <= d; t += 16) {
    const __m256 a = _mm256_loadu_ps(row + t), b = _mm256_loadu_ps(row + t + 8);
    const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a)), a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    const __m256d b0 = _mm256_cvtps_pd(_mm256_castps256_ps128(b)), b1 = _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1));
    acc0 = _mm256_fmadd_pd(a0, a0, acc0);
    acc1 = _mm256_fmadd_pd(a1, a1, acc1);
    acc2 = _mm256_fmadd_pd(b0, b0, acc2);
    acc3 = _mm256_fmadd_pd(b1, b1, acc3);
  }
  double total = hsum_pd(_mm256_add_pd(_mm256_add_pd(acc0, acc1), _mm256_add_pd(acc2, acc3)));
  for (; t < d; ++t) total += static_cast<double>(row[t]) * row[t];
  return total;
}

// Columns of the 8 x 8 block r[0..8): out[u] = (r[0][u], ..., r[7][u]).
inline void transpose8(const __m256 r[8], __m256 out[8]) {
  __m256 t[8], u[8];
  for (int h = 0; h < 2; ++h) {
    t[4 * h + 0] = _mm256_unpacklo_ps(r[4 * h + 0], r[4 * h + 1]);
    t[4 * h + 1] = _mm256_unpackhi_ps(r[4 * h + 0], r[4 * h + 1]);
    t[4 * h + 2] = _mm256_unpacklo_ps(r[4 * h + 2], r[4 * h + 3]);
    t[4 * h + 3] = _mm256_unpackhi_ps(r[4 * h + 2], r[4 * h + 3]);
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], 0xEE);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
  for (int q = 0; q < 4; ++q) {
    out[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
    out[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
  }
}

// panels[p][t][c] = x[16p + c][t], zero for rows past n: 8 x 8 register transposes.
void pack_panels(const float* x, int64_t n, int64_t d, float* panels) {
  const int64_t npan = (n + kPanel - 1) / kPanel;
  const int64_t d8 = d / 8 * 8;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < npan; ++p) {
    float* dst = panels + p * kPanel * d;
    const int64_t valid = std::min(kPanel, n - p * kPanel);
    for (int64_t half = 0; half < 2; ++half) {
      const int64_t c0 = half * 8;
      const float* src[8];
      for (int64_t c = 0; c < 8; ++c) src[c] = c0 + c < valid ? x + (p * kPanel + c0 + c) * d : nullptr;
      for (int64_t t = 0; t < d8; t += 8) {
        __m256 r[8], cols[8];
        for (int c = 0; c < 8; ++c) r[c] = src[c] ? _mm256_loadu_ps(src[c] + t) : _mm256_setzero_ps();
        transpose8(r, cols);
        for (int u = 0; u < 8; ++u) _mm256_storeu_ps(dst + (t + u) * kPanel + c0, cols[u]);
      }
      for (int64_t t = d8; t < d; ++t)
        for (int64_t c = 0; c < 8; ++c) dst[t * kPanel + c0 + c] = src[c] ? src[c][t] : 0.f;
    }
  }
}

struct Item {
  int64_t row0, rows;
};

// tile[r][c] = x_{row0 + r}·x_{col0 + c} for the item's rows and every column from col0. A rows
// come from the same panels as B (rows 16p + [0, 6), [6, 12), [12, 16) of a panel, with
// a stride of 16 floats per t): no second packing.
void gram_block(const float* panels, int64_t n, int64_t d, const Item& item, float* tile, int64_t ld_tile) {
  const int64_t col0 = item.row0 / kPanel * kPanel;
  const int64_t npan = (n - col0 + kPanel - 1) / kPanel;
  constexpr int64_t kSub[3][2] = {{0, 6}, {6, 6}, {12, 4}};  // (first row, rows) within a panel
  for (int64_t t0 = 0; t0 < d; t0 += kInnerChunk) {
    const int64_t kc = std::min(kInnerChunk, d - t0);
    for (int64_t p = 0; p < npan; ++p) {
      const int64_t pcol = col0 + p * kPanel;
      const float* b = panels + (pcol / kPanel) * kPanel * d + t0 * kPanel;
      for (int64_t i0 = 0; i0 < item.rows; i0 += kPanel) {
        const float* a_panel = panels + ((item.row0 + i0) / kPanel) * kPanel * d + t0 * kPanel;
        for (const auto& sub : kSub) {
          const int64_t i = i0 + sub[0];
          if (i >= item.rows) break;
          if (pcol + kPanel - 1 < item.row0 + i) continue;  // wholly below the diagonal
          float* out = tile + i * ld_tile + p * kPanel;
          if (sub[1] == 6) {
            cpu::micro_kernel_6x16(kc, a_panel + sub[0], 1, kPanel, b, kPanel, out, ld_tile, t0 > 0);
          } else {
            cpu::micro_kernel<4, 2>(kc, a_panel + sub[0], 1, kPanel, b, kPanel, out, ld_tile, t0 > 0);
          }
        }
      }
    }
  }
}

void similarity_one(const float* x, int64_t n, int64_t d, GraphMetric metric, float sigma, bool relu, float* w,
                    float* stats, Buffer& panels, std::vector<Buffer>& tiles, int64_t ld_tile) {
  std::vector<double> sq(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (n * d > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const double total = sum_squares(x + i * d, d);
    sq[i] = total;
    stats[i] = metric == GraphMetric::kCosine ? (total > 0.0 ? static_cast<float>(1.0 / std::sqrt(total)) : 0.f)
                                              : static_cast<float>(total);
  }
  pack_panels(x, n, d, panels.get());
  std::vector<Item> items;
  for (int64_t r = 0; r < n; r += kRowBlock) items.push_back({r, std::min(kRowBlock, n - r)});
  // Items in row order: earlier row blocks have more columns right of the diagonal, and the
  // dynamic schedule hands them out first.
  const double neg_inv = -0.5 / (static_cast<double>(sigma) * sigma);
  const int team = static_cast<int>(std::min<int64_t>(max_threads(), static_cast<int64_t>(items.size())));
#pragma omp parallel num_threads(team) if (team > 1)
  {
    float* tile = tiles[static_cast<size_t>(thread_id())].get();
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < static_cast<int64_t>(items.size()); ++it) {
      const Item& item = items[static_cast<size_t>(it)];
      gram_block(panels.get(), n, d, item, tile, ld_tile);
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

void similarity_graph_cpu(const SimilarityGraphParams& p) {
  const int64_t g = p.g, n = p.n;
  const int64_t* dims = p.dims;
  const GraphMetric metric = p.metric;
  const float sigma = p.sigma;
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
  // The panels are the one large scratch; fresh pages would cost a page fault per 4 KiB on every
  // call (a few hundred µs at n=256, d=4096), so each calling thread keeps moderate ones.
  constexpr size_t kKeepBytes = size_t{64} << 20;
  thread_local Buffer kept_panels;
  thread_local size_t kept_count = 0;
  const size_t panel_count = static_cast<size_t>(npan * kPanel * max_d);
  Buffer fresh_panels;
  Buffer* panels_ptr = &fresh_panels;
  if (panel_count * sizeof(float) <= kKeepBytes) {
    if (kept_count < panel_count) {
      kept_panels.reset(panel_count, false);
      kept_count = panel_count;
    }
    panels_ptr = &kept_panels;
  } else {
    fresh_panels.reset(panel_count, false);
  }
  Buffer& panels = *panels_ptr;
  std::vector<Buffer> tiles(static_cast<size_t>(max_threads()));
  for (Buffer& tile : tiles) tile.reset(static_cast<size_t>(kRowBlock * ld_tile), false);
  for (int64_t gi = 0; gi < g; ++gi) {
    similarity_one(p.xs[gi], n, dims[gi], metric, sigma, p.relu, p.w + gi * n * n, p.stats + gi * n, panels, tiles,
                   ld_tile);
  }
}

void similarity_graph_sparse_backward_cpu(const SimilarityGraphBackwardParams& p) {
  const float* const* xs = p.xs;
  const int64_t* dims = p.dims;
  const int64_t g = p.g, n = p.n;
  const int64_t* rowptr = p.rowptr;
  const int64_t* col = p.col;
  const float *coef = p.coef, *alpha = p.alpha, *beta = p.beta, *gamma = p.gamma;
  float* const* grads = p.grads;
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
      // Four neighbour rows per sweep of acc: a quarter of the acc loads and stores.
      int64_t e = rowptr[r];
      const int64_t stop = rowptr[r + 1];
      for (; e + 4 <= stop; e += 4) {
        const float* x0 = x + col[e] * d;
        const float* x1 = x + col[e + 1] * d;
        const float* x2 = x + col[e + 2] * d;
        const float* x3 = x + col[e + 3] * d;
        const float c0 = coef[e], c1 = coef[e + 1], c2 = coef[e + 2], c3 = coef[e + 3];
        const __m256 v0 = _mm256_set1_ps(c0), v1 = _mm256_set1_ps(c1), v2 = _mm256_set1_ps(c2),
                     v3 = _mm256_set1_ps(c3);
        int64_t t = 0;
        for (; t < d8; t += 8) {
          __m256 a = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x0 + t), _mm256_loadu_ps(acc + t));
          a = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x1 + t), a);
          a = _mm256_fmadd_ps(v2, _mm256_loadu_ps(x2 + t), a);
          _mm256_storeu_ps(acc + t, _mm256_fmadd_ps(v3, _mm256_loadu_ps(x3 + t), a));
        }
        for (; t < d; ++t) acc[t] += c0 * x0[t] + c1 * x1[t] + c2 * x2[t] + c3 * x3[t];
      }
      for (; e < stop; ++e) {
        const float c = coef[e];
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
