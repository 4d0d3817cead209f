// Nearest-centroid search on the CPU: a fused, register-blocked "GEMM + argmin" kernel.
//
// Score of centroid j for row z:  s_j = ½‖c'_j‖² − z'·c'_j  (= ½‖z − c_j‖² minus a per-row constant),
// where z' = z − μ and c' = c − μ are shifted by the codebook mean μ when the codebook sits far from
// the origin (shifting keeps the fp32 dot products small, so offset data does not cancel badly).
//
// Layout: each thread packs a block of z' rows into 16-row panels ([t][16], two AVX lanes of rows);
// the codebook is packed once into 6-centroid groups ([t][6]), split into chunks of the shared
// dimension for large d. The 16x6 micro-kernel keeps 12 accumulators in registers, starts them at
// ½‖c'‖² and subtracts z'·c' with FMAs; its epilogue folds the tile into a per-row running
// best / second-best / argmin that lives lane-wise (one lane per row), so no horizontal reductions.
//
// Exactness: per row the fp32 scores carry an error of at most E (a rigorous bound from ‖z'‖,
// max‖c'‖, the chunk length and count, plus subnormal spacing, times a safety factor 2; each d-chunk
// is summed from zero so E grows with the chunk length, not with d). A row whose best and
// second-best scores are more than the bound apart is decided; otherwise every centroid whose fp32
// score is within the bound of the best is rescored with the direct distance Σ(z − c)² in float64,
// ties to the lowest index. Rows with non-finite or huge values go straight to the direct float64
// scan over all centroids (NaN distances are never chosen over numbers; an all-NaN row gets
// index 0). The returned distance is the direct fp32 Σ(z − c)² of the chosen centroid.
//
// Exact duplicate codebook rows are dropped from the fast path when n is large enough to pay for
// the sort (the first copy wins any tie), so repeated rows do not turn every row into a near-tie.
// Batches smaller than one panel skip the packing and scan the codebook with direct fp32
// distances (same best / second-best test, with a relative bound); k = 1 needs no search.
//
// Memory: the packed codebook (k·d floats, the size of the input codebook), O(k) side arrays,
// O(n · threads) merge state for small n only, and per-thread tiles (a block of packed z rows,
// plus a score tile when d is split into chunks). Never n·k.
//
// Files: pack.{h,cpp} (codebook and z packing), micro_kernels.h (the score tile and the direct
// distances), certify.{h,cpp} (the exact re-decision), and this driver (blocking, threads, small
// batches).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "certify.h"
#include "latentops/checks.h"
#include "latentops/cpu_scratch.h"
#include "latentops/nearest_centroid.h"
#include "micro_kernels.h"
#include "pack.h"

namespace latentops {
namespace cpu {
namespace nearest_centroid {
namespace {

constexpr int64_t kCodebookBlockFloats = 73728;  // packed codebook block kept in L2 (288 KiB)

struct ThreadScratch {
  AlignedBuffer<float> zpack;   // block_rows x d, panels of [t][16]
  AlignedBuffer<float> tile;    // block_rows x codebook-block scores (chunked d only)
  AlignedBuffer<float> best1, best2;
  AlignedBuffer<int32_t> best_idx;
  AlignedBuffer<float> zrow;    // one shifted row, for rescoring
  std::vector<double> znorm;
};

struct Plan {
  int64_t block_rows = 0;    // multiple of kRows
  int64_t block_groups = 0;  // codebook groups per L2 block
  int64_t splits = 1;        // codebook ranges scanned as separate work items (small n)
};

// Packs rows [row0, row0 + block_rows) and folds centroid groups [g_begin, g_end) into the
// running best1 / best2 / best_idx of those rows (left in the scratch).
void scan_block(const float* z, int64_t n, int64_t d, const PreparedCodebook& pc, const Plan& plan,
                int64_t row0, int64_t g_begin, int64_t g_end, ThreadScratch& s) {
  const Chunks& ch = pc.chunks;
  const int64_t rows = std::min(plan.block_rows, n - row0);
  const int64_t panels = (rows + kRows - 1) / kRows;
  const float* mu = pc.shift.data();
  float* zpack = s.zpack.get();

  for (int64_t p = 0; p < panels; ++p) {
    const float* src[kRows];
    for (int64_t r = 0; r < kRows; ++r) {
      const int64_t row = row0 + p * kRows + r;
      src[r] = row < n ? z + row * d : mu;  // padding rows pack as zeros
    }
    pack_panel(src, mu, d, zpack + p * kRows * d, s.znorm.data() + p * kRows);
  }
  float* best1 = s.best1.get();
  float* best2 = s.best2.get();
  int32_t* best_idx = s.best_idx.get();
  std::fill(best1, best1 + panels * kRows, kInf);
  std::fill(best2, best2 + panels * kRows, kInf);
  std::fill(best_idx, best_idx + panels * kRows, 0);

  const float* packed = pc.packed.get();
  const float* bias = pc.bias.get();
  // Partial scores only persist between chunks; a one-pass d reuses one tile slot.
  const int64_t tile_step = ch.count() > 1 ? kTile : 0;
  for (int64_t g0 = g_begin; g0 < g_end; g0 += plan.block_groups) {
    const int64_t g1 = std::min(g_end, g0 + plan.block_groups);
    for (int64_t c = 0; c < ch.count(); ++c) {
      const int64_t t0 = ch.start[c], len = ch.length(c);
      const bool first = c == 0, last = c == ch.count() - 1;
      for (int64_t p = 0; p < panels; ++p) {
        const float* zp = zpack + p * kRows * d + t0 * kRows;
        float* tile = s.tile.get() + p * (g1 - g0) * tile_step;
        for (int64_t g = g0; g < g1; ++g, tile += tile_step) {
          tile_16x6(zp, packed + ch.panel_offset(c, g), len, bias + g * kCols, first, last, tile,
                    static_cast<int32_t>(g * kCols), best1 + p * kRows, best2 + p * kRows,
                    best_idx + p * kRows);
        }
      }
    }
  }
}

// Small batches (n < one panel): packing the codebook would cost more than the search itself, so
// scan the original codebook with direct fp32 distances Σ(z − c)² (no cancellation: every term is
// non-negative, so the error is relative to the distance), split over centroid ranges.
void small_batch(const float* z, const float* codebook, int64_t n, int64_t k, int64_t d, int64_t* indices,
                 float* sq_dist) {
  const int nthreads = n * k * d > 65536 ? max_threads() : 1;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(nthreads, k));
  std::vector<float> best1(static_cast<size_t>(parts * n), kInf), best2(static_cast<size_t>(parts * n), kInf);
  std::vector<int64_t> best_idx(static_cast<size_t>(parts * n), 0);
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static) if (parts > 1)
  for (int64_t part = 0; part < parts; ++part) {
    float* b1 = best1.data() + part * n;
    float* b2 = best2.data() + part * n;
    int64_t* bi = best_idx.data() + part * n;
    for (int64_t j = part * k / parts; j < (part + 1) * k / parts; ++j) {
      for (int64_t i = 0; i < n; ++i) {
        const float dist = direct_sq_dist_f32(z + i * d, codebook + j * d, d);
        if (dist < b1[i]) {  // NaN never passes
          b2[i] = b1[i];
          b1[i] = dist;
          bi[i] = j;
        } else if (dist < b2[i]) {
          b2[i] = dist;
        }
      }
    }
  }
  // Relative error of a float sum of at most d + 16 rounded non-negative terms (any summation
  // order), doubled for safety; the absolute slack covers subnormal rounding.
  const double rel = 2.0 * (static_cast<double>(d) + 16.0) * kUnitRoundoff;
  const double slack = 2.0 * (static_cast<double>(d) + 16.0) * kSubnormalSpacing;
  for (int64_t i = 0; i < n; ++i) {
    double s1 = best1[i], s2 = best2[i];
    int64_t j1 = best_idx[i];
    for (int64_t part = 1; part < parts; ++part) {  // ascending ranges: strict < keeps the lowest index
      const double t1 = best1[part * n + i], t2 = best2[part * n + i];
      const double second = std::min(std::max(s1, t1), std::min(s2, t2));
      if (t1 < s1) {
        s1 = t1;
        j1 = best_idx[part * n + i];
      }
      s2 = second;
    }
    const float* zrow = z + i * d;
    int64_t j;
    if (!std::isfinite(s1)) {
      j = scan_all(zrow, codebook, k, d);
    } else if (s2 * (1.0 - rel) - s1 * (1.0 + rel) > slack) {
      j = j1;
    } else {
      const double limit = s1 * (1.0 + rel) + slack;
      j = -1;
      double best = 0.0;
      for (int64_t c = 0; c < k; ++c) {
        const float approx = direct_sq_dist_f32(zrow, codebook + c * d, d);
        if (!(static_cast<double>(approx) * (1.0 - rel) - slack <= limit)) continue;
        const double dist = direct_sq_dist(zrow, codebook + c * d, d);
        if (j < 0 || dist < best) {
          j = c;
          best = dist;
        }
      }
      if (j < 0) j = scan_all(zrow, codebook, k, d);  // cannot happen; stays sound if it did
    }
    indices[i] = j;
    sq_dist[i] = direct_sq_dist_f32(zrow, codebook + j * d, d);
  }
}

void search(const float* z, const float* codebook, int64_t n, int64_t k, int64_t d, int64_t* indices,
            float* sq_dist) {
  LATENTOPS_CHECK(n >= 0, "nearest_centroid_cpu: n must be non-negative, got " << n);
  LATENTOPS_CHECK(k > 0, "nearest_centroid_cpu: codebook must have at least one row, got k=" << k);
  LATENTOPS_CHECK(d > 0, "nearest_centroid_cpu: dimension must be positive, got d=" << d);
  LATENTOPS_CHECK(k <= std::numeric_limits<int32_t>::max() - kCols,
                  "nearest_centroid_cpu: codebook too large, k=" << k);
  if (n == 0) return;
  LATENTOPS_CHECK(z != nullptr && codebook != nullptr && indices != nullptr && sq_dist != nullptr,
                  "nearest_centroid_cpu: null pointer argument");

  if (k == 1) {  // one candidate: it is the answer whatever the values (an all-NaN row gets 0 too)
#pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; ++i) {
      indices[i] = 0;
      sq_dist[i] = direct_sq_dist_f32(z + i * d, codebook, d);
    }
    return;
  }

  if (n < kRows) {
    small_batch(z, codebook, n, k, d, indices, sq_dist);
    return;
  }

  // Dropping duplicate centroids costs a sort over k; it pays only when enough rows could land
  // on a duplicated centroid (for few rows the rescoring of their ties is cheaper).
  PreparedCodebook pc;
  prepare_codebook(codebook, k, d, /*dedup=*/n >= 256, pc);
  const Chunks& ch = pc.chunks;

  Plan plan;
  plan.block_groups = std::max<int64_t>(1, kCodebookBlockFloats / (kCols * ch.max_length()));
  {
    const int64_t nkb = (ch.groups + plan.block_groups - 1) / plan.block_groups;
    plan.block_groups = (ch.groups + nkb - 1) / nkb;
  }
  const int nthreads = max_threads();
  int64_t block_rows = ch.count() == 1 ? 256 : 64;
  // Enough blocks for the threads to share, but never below one panel.
  const int64_t per_thread = (n + 4 * nthreads - 1) / (4 * nthreads);
  block_rows = std::min(block_rows, std::max<int64_t>(kRows, (per_thread + kRows - 1) / kRows * kRows));
  plan.block_rows = block_rows;
  const int64_t nblocks = (n + block_rows - 1) / block_rows;
  // Too few row blocks to keep the threads busy: also split the codebook, then merge per row.
  if (nthreads > 1 && nblocks < 2 * nthreads) {
    plan.splits = std::max<int64_t>(1, std::min<int64_t>((2 * nthreads + nblocks - 1) / nblocks, ch.groups / 16));
  }
  const int64_t items = nblocks * plan.splits;
  const int team = static_cast<int>(std::min<int64_t>(nthreads, items));

  std::vector<ThreadScratch> scratch(static_cast<size_t>(team));
  for (ThreadScratch& s : scratch) {
    s.zpack.reset(static_cast<size_t>(block_rows * d));
    s.tile.reset(static_cast<size_t>(ch.count() > 1 ? block_rows * plan.block_groups * kCols : kTile));
    s.best1.reset(static_cast<size_t>(block_rows));
    s.best2.reset(static_cast<size_t>(block_rows));
    s.best_idx.reset(static_cast<size_t>(block_rows));
    s.zrow.reset(static_cast<size_t>(d));
    s.znorm.assign(static_cast<size_t>(block_rows), 0.0);
  }

  if (plan.splits == 1) {
#pragma omp parallel num_threads(team) if (team > 1)
    {
      ThreadScratch& s = scratch[static_cast<size_t>(thread_id())];
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t row0 = b * block_rows;
        scan_block(z, n, d, pc, plan, row0, 0, ch.groups, s);
        const int64_t rows = std::min(block_rows, n - row0);
        for (int64_t r = 0; r < rows; ++r) {
          const float* zrow = z + (row0 + r) * d;
          const int64_t j = decide_row(zrow, s.znorm[r], s.best1.get()[r], s.best2.get()[r], s.best_idx.get()[r],
                                       codebook, k, d, pc, s.zrow.get());
          indices[row0 + r] = j;
          sq_dist[row0 + r] = direct_sq_dist_f32(zrow, codebook + j * d, d);
        }
      }
    }
    return;
  }

  // Split mode (n is small here, so O(n · splits) state is small).
  const int64_t splits = plan.splits;
  std::vector<float> best1(static_cast<size_t>(splits * n)), best2(static_cast<size_t>(splits * n));
  std::vector<int32_t> best_idx(static_cast<size_t>(splits * n));
  std::vector<double> znorm(static_cast<size_t>(n));
#pragma omp parallel num_threads(team) if (team > 1)
  {
    ThreadScratch& s = scratch[static_cast<size_t>(thread_id())];
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t b = item / splits, part = item % splits;
      const int64_t row0 = b * block_rows;
      scan_block(z, n, d, pc, plan, row0, part * ch.groups / splits, (part + 1) * ch.groups / splits, s);
      const int64_t rows = std::min(block_rows, n - row0);
      for (int64_t r = 0; r < rows; ++r) {
        best1[part * n + row0 + r] = s.best1.get()[r];
        best2[part * n + row0 + r] = s.best2.get()[r];
        best_idx[part * n + row0 + r] = s.best_idx.get()[r];
        if (part == 0) znorm[row0 + r] = s.znorm[r];
      }
    }
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < n; ++i) {
      // Ranges are in ascending centroid order, so a strict < keeps the lowest index on ties.
      float s1 = best1[i], s2 = best2[i];
      int32_t j1 = best_idx[i];
      for (int64_t part = 1; part < splits; ++part) {
        const float t1 = best1[part * n + i], t2 = best2[part * n + i];
        const float second = std::min(std::max(s1, t1), std::min(s2, t2));
        if (t1 < s1) {
          s1 = t1;
          j1 = best_idx[part * n + i];
        }
        s2 = second;
      }
      const float* zrow = z + i * d;
      const int64_t j = decide_row(zrow, znorm[i], s1, s2, j1, codebook, k, d, pc, s.zrow.get());
      indices[i] = j;
      sq_dist[i] = direct_sq_dist_f32(zrow, codebook + j * d, d);
    }
  }
}

}  // namespace
}  // namespace nearest_centroid
}  // namespace cpu

// fp32 only, and always exact: no accuracy asks for more.
void nearest_centroid_cpu(const NearestCentroidParams& p) {
  LATENTOPS_CHECK(p.dtype == DType::kFloat32,
                  "nearest_centroid_cpu: float32 operands only, got dtype code " << static_cast<int>(p.dtype));
  cpu::nearest_centroid::search(static_cast<const float*>(p.z), static_cast<const float*>(p.codebook), p.n, p.k,
                                p.d, p.indices, p.sq_dist);
}

}  // namespace latentops
