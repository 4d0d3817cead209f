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
#include "latentops/nearest_centroid.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LATENTOPS_NC_AVX2 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "latentops/checks.h"
#include "latentops/cpu_scratch.h"

namespace latentops {
namespace {

constexpr int64_t kRows = 16;        // z rows per micro-tile (two 8-lane vectors)
constexpr int64_t kCols = 6;         // centroids per micro-tile
constexpr int64_t kTile = kRows * kCols;
constexpr int64_t kOnePassMaxD = 192;  // up to this d a 16-row panel (12 KiB) stays in L1
constexpr int64_t kChunkD = 128;       // longer d is split into chunks of about this length
constexpr int64_t kCodebookBlockFloats = 73728;  // packed codebook block kept in L2 (288 KiB)
constexpr double kUnitRoundoff = 1.0 / 16777216.0;  // 2^-24
constexpr double kSubnormalSpacing = 1.401298464324817e-45;  // 2^-149
// Rounding steps per term of the fp32 score: one with FMA, two without.
#ifdef LATENTOPS_NC_AVX2
constexpr double kRoundingsPerTerm = 1.0;
#else
constexpr double kRoundingsPerTerm = 2.0;
#endif
// Rows whose score magnitudes could come near fp32 overflow are scanned directly in float64.
constexpr double kFastPathMaxMagnitude = 1e37;

constexpr float kInf = std::numeric_limits<float>::infinity();


// Σ_t (a_t − b_t)² with the differences and the sum in float64.
double direct_sq_dist(const float* a, const float* b, int64_t d) {
  int64_t t = 0;
  double total = 0.0;
#ifdef LATENTOPS_NC_AVX2
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  for (; t + 8 <= d; t += 8) {
    __m256d x0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + t)), _mm256_cvtps_pd(_mm_loadu_ps(b + t)));
    __m256d x1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + t + 4)),
                               _mm256_cvtps_pd(_mm_loadu_ps(b + t + 4)));
    s0 = _mm256_fmadd_pd(x0, x0, s0);
    s1 = _mm256_fmadd_pd(x1, x1, s1);
  }
  s0 = _mm256_add_pd(s0, s1);
  __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s0), _mm256_extractf128_pd(s0, 1));
  total = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
#endif
  for (; t < d; ++t) {
    double x = static_cast<double>(a[t]) - static_cast<double>(b[t]);
    total += x * x;
  }
  return total;
}

// How the shared dimension is split into chunks, and where a (chunk, group) panel of the packed
// codebook starts. The packed codebook is chunk-major so that one chunk of a block of groups is
// contiguous (no cache-set conflicts for power-of-two d).
struct Chunks {
  int64_t groups = 0;
  std::vector<int64_t> start;  // size count + 1
  int64_t count() const { return static_cast<int64_t>(start.size()) - 1; }
  int64_t length(int64_t c) const { return start[c + 1] - start[c]; }
  int64_t max_length() const {
    int64_t m = 0;
    for (int64_t c = 0; c < count(); ++c) m = std::max(m, length(c));
    return m;
  }
  int64_t panel_offset(int64_t c, int64_t g) const {
    return start[c] * kCols * groups + g * length(c) * kCols;
  }
};

// The codebook as the micro-kernel reads it, plus what the error bound needs.
struct PreparedCodebook {
  Chunks chunks;
  std::vector<float> shift;   // μ (zeros when no shift pays)
  bool shifted = false;
  AlignedBuffer<float> packed;  // chunk-major, [group][t][6] within a chunk; excluded rows are zero
  AlignedBuffer<float> bias;    // ½‖c'_j‖² per padded centroid; +inf for excluded / padding
  double max_norm = 0.0;        // max ‖c'_j‖ over included centroids
  int64_t included = 0;
};

// Facts about one codebook row from a single read: all entries finite, a content hash (for
// finding bitwise duplicates), and ‖row‖² (only steers the shift heuristic).
struct RowFacts {
  uint64_t hash = 0;
  double sq_norm = 0.0;
  bool finite = true;
};

RowFacts row_facts(const float* row, int64_t d) {
  RowFacts f;
  int64_t t = 0;
  uint64_t h = 1469598103934665603ull;
  float sq = 0.f;
#ifdef LATENTOPS_NC_AVX2
  __m256i hv = _mm256_set1_epi32(0x2545F491);
  __m256i bad = _mm256_setzero_si256();
  __m256 sqv = _mm256_setzero_ps();
  const __m256i exponent = _mm256_set1_epi32(0x7f800000);
  const __m256i prime = _mm256_set1_epi32(0x01000193);
  for (; t + 8 <= d; t += 8) {
    const __m256 x = _mm256_loadu_ps(row + t);
    const __m256i bits = _mm256_castps_si256(x);
    bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(_mm256_and_si256(bits, exponent), exponent));
    hv = _mm256_mullo_epi32(_mm256_xor_si256(hv, bits), prime);
    hv = _mm256_xor_si256(hv, _mm256_srli_epi32(hv, 15));
    sqv = _mm256_fmadd_ps(x, x, sqv);
  }
  f.finite = _mm256_testz_si256(bad, bad) != 0;
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), hv);
  for (uint32_t lane : lanes) h = (h ^ lane) * 1099511628211ull;
  alignas(32) float sq_lanes[8];
  _mm256_store_ps(sq_lanes, sqv);
  for (float v : sq_lanes) sq += v;
#endif
  for (; t < d; ++t) {
    uint32_t bits;
    std::memcpy(&bits, row + t, sizeof(bits));
    f.finite = f.finite && std::isfinite(row[t]);
    h = (h ^ bits) * 1099511628211ull;
    sq += row[t] * row[t];
  }
  f.hash = h ^ (h >> 29);
  f.sq_norm = sq;
  return f;
}

// Drops (include[j] = 0) every row that is a bitwise copy of an earlier included row.
void drop_duplicates(const float* codebook, int64_t d, const std::vector<RowFacts>& facts,
                     std::vector<uint8_t>& include) {
  std::vector<std::pair<uint64_t, int64_t>> keyed;
  keyed.reserve(facts.size());
  for (size_t j = 0; j < facts.size(); ++j)
    if (include[j]) keyed.emplace_back(facts[j].hash, static_cast<int64_t>(j));
  std::sort(keyed.begin(), keyed.end());
  std::vector<int64_t> distinct;  // first copies seen within the current run of equal hashes
  for (size_t a = 0; a < keyed.size();) {
    size_t b = a;
    while (b < keyed.size() && keyed[b].first == keyed[a].first) ++b;
    if (b - a > 1) {
      distinct.clear();
      for (size_t e = a; e < b; ++e) {  // ascending j within the run
        const int64_t j = keyed[e].second;
        bool copy = false;
        for (int64_t r : distinct) {
          if (std::memcmp(codebook + r * d, codebook + j * d, static_cast<size_t>(d) * sizeof(float)) == 0) {
            copy = true;
            break;
          }
        }
        if (copy) {
          include[j] = 0;
        } else {
          distinct.push_back(j);
        }
      }
    }
    a = b;
  }
}

// Writes centroid row (already known finite) shifted by μ into its packed column and returns
// ‖c'‖² of the packed fp32 values in float64.
double pack_centroid(const float* row, const float* mu, const Chunks& ch, int64_t g, int64_t col,
                     float* packed) {
  double sq = 0.0;
  for (int64_t c = 0; c < ch.count(); ++c) {
    float* dst = packed + ch.panel_offset(c, g) + col;
    const int64_t t0 = ch.start[c], t1 = ch.start[c + 1];
    int64_t t = t0;
#ifdef LATENTOPS_NC_AVX2
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    alignas(32) float v[8];
    for (; t + 8 <= t1; t += 8) {
      const __m256 x = _mm256_sub_ps(_mm256_loadu_ps(row + t), _mm256_loadu_ps(mu + t));
      const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
      const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
      s0 = _mm256_fmadd_pd(lo, lo, s0);
      s1 = _mm256_fmadd_pd(hi, hi, s1);
      _mm256_store_ps(v, x);
      float* out = dst + (t - t0) * kCols;
      for (int i = 0; i < 8; ++i) out[i * kCols] = v[i];
    }
    alignas(32) double part[4];
    _mm256_store_pd(part, _mm256_add_pd(s0, s1));
    sq += (part[0] + part[1]) + (part[2] + part[3]);
#endif
    for (; t < t1; ++t) {
      const float x = row[t] - mu[t];
      dst[(t - t0) * kCols] = x;
      sq += static_cast<double>(x) * x;
    }
  }
  return sq;
}

void prepare_codebook(const float* codebook, int64_t k, int64_t d, bool dedup, PreparedCodebook& pc) {
  const int64_t groups = (k + kCols - 1) / kCols;
  Chunks& ch = pc.chunks;
  ch.groups = groups;
  const int64_t nchunks = d <= kOnePassMaxD ? 1 : (d + kChunkD - 1) / kChunkD;
  ch.start.resize(static_cast<size_t>(nchunks + 1));
  for (int64_t c = 0; c <= nchunks; ++c) ch.start[c] = c * d / nchunks;
  const bool parallel = k * d > 32768;

  // Pass 1: per-row facts and the column sums of the finite rows (per thread, then combined).
  std::vector<RowFacts> facts(static_cast<size_t>(k));
  const int nthreads = parallel ? max_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(nthreads) * d, 0.0);
#pragma omp parallel num_threads(nthreads) if (parallel)
  {
    double* acc = partial.data() + static_cast<size_t>(thread_id()) * d;
#pragma omp for schedule(static)
    for (int64_t j = 0; j < k; ++j) {
      const float* row = codebook + j * d;
      facts[j] = row_facts(row, d);
      if (facts[j].finite)
        for (int64_t t = 0; t < d; ++t) acc[t] += row[t];
    }
  }
  std::vector<uint8_t> include(static_cast<size_t>(k), 0);
  int64_t finite_rows = 0;
  double mean_sq_norm = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    if (!facts[j].finite) continue;
    include[j] = 1;
    ++finite_rows;
    mean_sq_norm += facts[j].sq_norm;
  }
  // Shift by the mean when the codebook sits far from the origin compared with its spread:
  // avg‖c − μ‖² = avg‖c‖² − ‖μ‖², so shifting shrinks the norms in the error bound by 4x or more
  // exactly when ‖μ‖² > ¾·avg‖c‖². For centered data a shift would only add rounding.
  std::vector<float> mean(static_cast<size_t>(d), 0.f);
  double mean_norm_sq = 0.0;
  if (finite_rows > 0) {
    mean_sq_norm /= static_cast<double>(finite_rows);
    for (int64_t t = 0; t < d; ++t) {
      double s = 0.0;
      for (int i = 0; i < nthreads; ++i) s += partial[static_cast<size_t>(i) * d + t];
      mean[t] = static_cast<float>(s / static_cast<double>(finite_rows));
      mean_norm_sq += static_cast<double>(mean[t]) * mean[t];
    }
  }
  pc.shifted = finite_rows > 0 && mean_norm_sq > 0.75 * mean_sq_norm;
  pc.shift.assign(static_cast<size_t>(d), 0.f);
  if (pc.shifted) pc.shift = mean;
  if (dedup) drop_duplicates(codebook, d, facts, include);
  pc.included = 0;
  for (int64_t j = 0; j < k; ++j) pc.included += include[j];

  // Pass 2: pack (first touch of the buffer happens here, in parallel). Excluded rows
  // (non-finite, duplicates, padding) are zeros with bias +inf, so
  // their scores are +inf and never enter best1 / best2.
  const float* mu = pc.shift.data();
  pc.packed.reset(static_cast<size_t>(groups * kCols * d), /*zero=*/false);  // every column is written below
  pc.bias.reset(static_cast<size_t>(groups * kCols));
  float* packed = pc.packed.get();
  float* bias = pc.bias.get();
  double max_sq = 0.0;
#pragma omp parallel for schedule(static) reduction(max : max_sq) if (parallel)
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t col = 0; col < kCols; ++col) {
      const int64_t j = g * kCols + col;
      if (j < k && include[j]) {
        const double sq = pack_centroid(codebook + j * d, mu, ch, g, col, packed);
        bias[j] = static_cast<float>(0.5 * sq);
        max_sq = std::max(max_sq, sq);
      } else {
        bias[j] = kInf;
        for (int64_t c = 0; c < ch.count(); ++c) {
          float* dst = packed + ch.panel_offset(c, g) + col;
          for (int64_t t = 0; t < ch.length(c); ++t) dst[t * kCols] = 0.f;
        }
      }
    }
  }
  pc.max_norm = std::sqrt(max_sq);
}

// One 16-row x 6-centroid tile over `len` steps of the shared dimension.
// zp: packed z' rows, [t][16]; cp: packed centroids, [t][6]; tile: the 12 partial accumulators
// when d is split into chunks. On the last chunk the scores are folded into the running
// best1 / best2 / best_idx of the 16 rows (lane r = row r).
#ifdef LATENTOPS_NC_AVX2
inline void tile_16x6(const float* zp, const float* cp, int64_t len, const float* bias, bool first,
                      bool last, float* tile, int32_t j0, float* best1, float* best2, int32_t* best_idx) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  // Each chunk of the shared dimension is summed from zero and then added to the running tile:
  // the rounding error then grows with the chunk length plus the chunk count, not with d.
  if (first) {
    c00 = c01 = _mm256_broadcast_ss(bias + 0);
    c10 = c11 = _mm256_broadcast_ss(bias + 1);
    c20 = c21 = _mm256_broadcast_ss(bias + 2);
    c30 = c31 = _mm256_broadcast_ss(bias + 3);
    c40 = c41 = _mm256_broadcast_ss(bias + 4);
    c50 = c51 = _mm256_broadcast_ss(bias + 5);
  } else {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  }
#define LATENTOPS_NC_STEP(T)                                                 \
  {                                                                          \
    const __m256 a0 = _mm256_load_ps(zp + (T) * kRows);                      \
    const __m256 a1 = _mm256_load_ps(zp + (T) * kRows + 8);                  \
    __m256 b = _mm256_broadcast_ss(cp + (T) * kCols + 0);                    \
    c00 = _mm256_fnmadd_ps(a0, b, c00);                                      \
    c01 = _mm256_fnmadd_ps(a1, b, c01);                                      \
    b = _mm256_broadcast_ss(cp + (T) * kCols + 1);                           \
    c10 = _mm256_fnmadd_ps(a0, b, c10);                                      \
    c11 = _mm256_fnmadd_ps(a1, b, c11);                                      \
    b = _mm256_broadcast_ss(cp + (T) * kCols + 2);                           \
    c20 = _mm256_fnmadd_ps(a0, b, c20);                                      \
    c21 = _mm256_fnmadd_ps(a1, b, c21);                                      \
    b = _mm256_broadcast_ss(cp + (T) * kCols + 3);                           \
    c30 = _mm256_fnmadd_ps(a0, b, c30);                                      \
    c31 = _mm256_fnmadd_ps(a1, b, c31);                                      \
    b = _mm256_broadcast_ss(cp + (T) * kCols + 4);                           \
    c40 = _mm256_fnmadd_ps(a0, b, c40);                                      \
    c41 = _mm256_fnmadd_ps(a1, b, c41);                                      \
    b = _mm256_broadcast_ss(cp + (T) * kCols + 5);                           \
    c50 = _mm256_fnmadd_ps(a0, b, c50);                                      \
    c51 = _mm256_fnmadd_ps(a1, b, c51);                                      \
  }
  for (int64_t t = 0; t < len; ++t, zp += kRows, cp += kCols) LATENTOPS_NC_STEP(0)
#undef LATENTOPS_NC_STEP
  if (!first) {
    c00 = _mm256_add_ps(c00, _mm256_load_ps(tile + 0)), c01 = _mm256_add_ps(c01, _mm256_load_ps(tile + 8));
    c10 = _mm256_add_ps(c10, _mm256_load_ps(tile + 16)), c11 = _mm256_add_ps(c11, _mm256_load_ps(tile + 24));
    c20 = _mm256_add_ps(c20, _mm256_load_ps(tile + 32)), c21 = _mm256_add_ps(c21, _mm256_load_ps(tile + 40));
    c30 = _mm256_add_ps(c30, _mm256_load_ps(tile + 48)), c31 = _mm256_add_ps(c31, _mm256_load_ps(tile + 56));
    c40 = _mm256_add_ps(c40, _mm256_load_ps(tile + 64)), c41 = _mm256_add_ps(c41, _mm256_load_ps(tile + 72));
    c50 = _mm256_add_ps(c50, _mm256_load_ps(tile + 80)), c51 = _mm256_add_ps(c51, _mm256_load_ps(tile + 88));
  }
  if (!last) {
    _mm256_store_ps(tile + 0, c00), _mm256_store_ps(tile + 8, c01);
    _mm256_store_ps(tile + 16, c10), _mm256_store_ps(tile + 24, c11);
    _mm256_store_ps(tile + 32, c20), _mm256_store_ps(tile + 40, c21);
    _mm256_store_ps(tile + 48, c30), _mm256_store_ps(tile + 56, c31);
    _mm256_store_ps(tile + 64, c40), _mm256_store_ps(tile + 72, c41);
    _mm256_store_ps(tile + 80, c50), _mm256_store_ps(tile + 88, c51);
    return;
  }
  // Operand order matters for NaN scores (rows that end up rescored anyway): x86 min/max return
  // the second operand when either is NaN, so a NaN score never enters best1 or best2.
  const __m256i j_base = _mm256_set1_epi32(j0);
  auto fold = [j_base](__m256 s, int32_t col, __m256& b1, __m256& b2, __m256& idx) {
    const __m256 better = _mm256_cmp_ps(s, b1, _CMP_LT_OQ);
    const __m256i j = _mm256_add_epi32(j_base, _mm256_set1_epi32(col));
    idx = _mm256_blendv_ps(idx, _mm256_castsi256_ps(j), better);
    b2 = _mm256_min_ps(_mm256_max_ps(s, b1), b2);
    b1 = _mm256_min_ps(s, b1);
  };
  __m256 b1 = _mm256_load_ps(best1), b2 = _mm256_load_ps(best2);
  __m256 idx = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(best_idx)));
  fold(c00, 0, b1, b2, idx);
  fold(c10, 1, b1, b2, idx);
  fold(c20, 2, b1, b2, idx);
  fold(c30, 3, b1, b2, idx);
  fold(c40, 4, b1, b2, idx);
  fold(c50, 5, b1, b2, idx);
  _mm256_store_ps(best1, b1), _mm256_store_ps(best2, b2);
  _mm256_store_si256(reinterpret_cast<__m256i*>(best_idx), _mm256_castps_si256(idx));
  b1 = _mm256_load_ps(best1 + 8), b2 = _mm256_load_ps(best2 + 8);
  idx = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(best_idx + 8)));
  fold(c01, 0, b1, b2, idx);
  fold(c11, 1, b1, b2, idx);
  fold(c21, 2, b1, b2, idx);
  fold(c31, 3, b1, b2, idx);
  fold(c41, 4, b1, b2, idx);
  fold(c51, 5, b1, b2, idx);
  _mm256_store_ps(best1 + 8, b1), _mm256_store_ps(best2 + 8, b2);
  _mm256_store_si256(reinterpret_cast<__m256i*>(best_idx + 8), _mm256_castps_si256(idx));
}
#else
inline void tile_16x6(const float* zp, const float* cp, int64_t len, const float* bias, bool first,
                      bool last, float* tile, int32_t j0, float* best1, float* best2, int32_t* best_idx) {
  float acc[kCols][kRows];
  for (int64_t col = 0; col < kCols; ++col)
    for (int64_t r = 0; r < kRows; ++r) acc[col][r] = first ? bias[col] : 0.f;
  for (int64_t t = 0; t < len; ++t)
    for (int64_t col = 0; col < kCols; ++col)
      for (int64_t r = 0; r < kRows; ++r) acc[col][r] -= zp[t * kRows + r] * cp[t * kCols + col];
  if (!first) {
    for (int64_t col = 0; col < kCols; ++col)
      for (int64_t r = 0; r < kRows; ++r) acc[col][r] += tile[col * kRows + r];
  }
  if (!last) {
    for (int64_t col = 0; col < kCols; ++col)
      for (int64_t r = 0; r < kRows; ++r) tile[col * kRows + r] = acc[col][r];
    return;
  }
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t col = 0; col < kCols; ++col) {
      const float s = acc[col][r];
      if (s < best1[r]) {
        best2[r] = best1[r];
        best1[r] = s;
        best_idx[r] = j0 + static_cast<int32_t>(col);
      } else if (s < best2[r]) {
        best2[r] = s;
      }
    }
  }
}
#endif

// fp32 scores of one shifted row z' against all centroids, summed chunk by chunk
// exactly like the micro-kernel (so the same error bound holds), for the rows the fast pass
// could not decide: every centroid within `limit` is rescored directly in float64.
int64_t rescore_candidates(const float* zrow_shifted, const float* zrow, const float* codebook, int64_t k,
                           int64_t d, const PreparedCodebook& pc, double limit) {
  const Chunks& ch = pc.chunks;
  constexpr int64_t kBatch = 4;  // groups scored together: independent FMA chains
  int64_t best_j = -1;
  double best_d = 0.0;
  for (int64_t g0 = 0; g0 < ch.groups; g0 += kBatch) {
    const int64_t nb = std::min(kBatch, ch.groups - g0);
    float scores[kBatch][8];
#ifdef LATENTOPS_NC_AVX2
    __m256 total[kBatch];
    for (int64_t q = 0; q < kBatch; ++q) total[q] = _mm256_loadu_ps(pc.bias.get() + (g0 + std::min(q, nb - 1)) * kCols);
    for (int64_t c = 0; c < ch.count(); ++c) {
      const float* cp[kBatch];
      for (int64_t q = 0; q < kBatch; ++q) cp[q] = pc.packed.get() + ch.panel_offset(c, g0 + std::min(q, nb - 1));
      __m256 acc[kBatch];
      for (int64_t q = 0; q < kBatch; ++q) acc[q] = c == 0 ? total[q] : _mm256_setzero_ps();
      for (int64_t t = ch.start[c], tt = 0; t < ch.start[c + 1]; ++t, ++tt) {
        const __m256 zt = _mm256_broadcast_ss(zrow_shifted + t);
        for (int64_t q = 0; q < kBatch; ++q)
          acc[q] = _mm256_fnmadd_ps(zt, _mm256_loadu_ps(cp[q] + tt * kCols), acc[q]);
      }
      for (int64_t q = 0; q < kBatch; ++q) total[q] = c == 0 ? acc[q] : _mm256_add_ps(acc[q], total[q]);
    }
    for (int64_t q = 0; q < kBatch; ++q) _mm256_storeu_ps(scores[q], total[q]);
#else
    for (int64_t q = 0; q < nb; ++q) {
      const int64_t g = g0 + q;
      float* s = scores[q];
      for (int64_t col = 0; col < kCols; ++col) s[col] = pc.bias.get()[g * kCols + col];
      for (int64_t c = 0; c < ch.count(); ++c) {
        float part[kCols] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        if (c == 0) std::copy(s, s + kCols, part);
        const float* cp = pc.packed.get() + ch.panel_offset(c, g);
        for (int64_t t = ch.start[c]; t < ch.start[c + 1]; ++t, cp += kCols) {
          const float zt = zrow_shifted[t];
          for (int64_t col = 0; col < kCols; ++col) part[col] -= zt * cp[col];
        }
        for (int64_t col = 0; col < kCols; ++col) s[col] = c == 0 ? part[col] : part[col] + s[col];
      }
    }
#endif
    for (int64_t q = 0; q < nb; ++q) {
      for (int64_t col = 0; col < kCols; ++col) {
        const int64_t j = (g0 + q) * kCols + col;
        if (j >= k || !(static_cast<double>(scores[q][col]) <= limit)) continue;
        const double dist = direct_sq_dist(zrow, codebook + j * d, d);
        if (best_j < 0 || dist < best_d) {
          best_j = j;
          best_d = dist;
        }
      }
    }
  }
  return best_j;
}

// Direct float64 scan over every centroid: NaN distances never win, ties go to the lowest index,
// a row with only NaN distances gets index 0.
int64_t scan_all(const float* zrow, const float* codebook, int64_t k, int64_t d) {
  int64_t best_j = 0;
  double best_d = std::numeric_limits<double>::quiet_NaN();
  for (int64_t j = 0; j < k; ++j) {
    const double dist = direct_sq_dist(zrow, codebook + j * d, d);
    if (std::isnan(dist)) continue;
    if (std::isnan(best_d) || dist < best_d) {
      best_d = dist;
      best_j = j;
    }
  }
  return best_j;
}

// Packs 16 rows of z − μ into [t][16] and returns their squared norms in float (upper bound
// inflated by the float summation error, so the error bound stays rigorous).
void pack_panel(const float* const* src, const float* mu, int64_t d, float* panel, double* norm) {
  float sq[kRows];
  int64_t t = 0;
#ifdef LATENTOPS_NC_AVX2
  for (int64_t h = 0; h < kRows; h += 8) {
    const float* const* s = src + h;
    __m256 acc = _mm256_setzero_ps();
    for (t = 0; t + 8 <= d; t += 8) {
      const __m256 m = _mm256_loadu_ps(mu + t);
      __m256 r0 = _mm256_sub_ps(_mm256_loadu_ps(s[0] + t), m);
      __m256 r1 = _mm256_sub_ps(_mm256_loadu_ps(s[1] + t), m);
      __m256 r2 = _mm256_sub_ps(_mm256_loadu_ps(s[2] + t), m);
      __m256 r3 = _mm256_sub_ps(_mm256_loadu_ps(s[3] + t), m);
      __m256 r4 = _mm256_sub_ps(_mm256_loadu_ps(s[4] + t), m);
      __m256 r5 = _mm256_sub_ps(_mm256_loadu_ps(s[5] + t), m);
      __m256 r6 = _mm256_sub_ps(_mm256_loadu_ps(s[6] + t), m);
      __m256 r7 = _mm256_sub_ps(_mm256_loadu_ps(s[7] + t), m);
      // 8x8 transpose: afterwards vector i holds element t + i of the 8 rows.
      __m256 u0 = _mm256_unpacklo_ps(r0, r1), u1 = _mm256_unpackhi_ps(r0, r1);
      __m256 u2 = _mm256_unpacklo_ps(r2, r3), u3 = _mm256_unpackhi_ps(r2, r3);
      __m256 u4 = _mm256_unpacklo_ps(r4, r5), u5 = _mm256_unpackhi_ps(r4, r5);
      __m256 u6 = _mm256_unpacklo_ps(r6, r7), u7 = _mm256_unpackhi_ps(r6, r7);
      __m256 v0 = _mm256_shuffle_ps(u0, u2, 0x44), v1 = _mm256_shuffle_ps(u0, u2, 0xEE);
      __m256 v2 = _mm256_shuffle_ps(u1, u3, 0x44), v3 = _mm256_shuffle_ps(u1, u3, 0xEE);
      __m256 v4 = _mm256_shuffle_ps(u4, u6, 0x44), v5 = _mm256_shuffle_ps(u4, u6, 0xEE);
      __m256 v6 = _mm256_shuffle_ps(u5, u7, 0x44), v7 = _mm256_shuffle_ps(u5, u7, 0xEE);
      r0 = _mm256_permute2f128_ps(v0, v4, 0x20), r4 = _mm256_permute2f128_ps(v0, v4, 0x31);
      r1 = _mm256_permute2f128_ps(v1, v5, 0x20), r5 = _mm256_permute2f128_ps(v1, v5, 0x31);
      r2 = _mm256_permute2f128_ps(v2, v6, 0x20), r6 = _mm256_permute2f128_ps(v2, v6, 0x31);
      r3 = _mm256_permute2f128_ps(v3, v7, 0x20), r7 = _mm256_permute2f128_ps(v3, v7, 0x31);
      float* dst = panel + t * kRows + h;
      _mm256_store_ps(dst + 0 * kRows, r0), _mm256_store_ps(dst + 1 * kRows, r1);
      _mm256_store_ps(dst + 2 * kRows, r2), _mm256_store_ps(dst + 3 * kRows, r3);
      _mm256_store_ps(dst + 4 * kRows, r4), _mm256_store_ps(dst + 5 * kRows, r5);
      _mm256_store_ps(dst + 6 * kRows, r6), _mm256_store_ps(dst + 7 * kRows, r7);
      acc = _mm256_fmadd_ps(r0, r0, acc), acc = _mm256_fmadd_ps(r1, r1, acc);
      acc = _mm256_fmadd_ps(r2, r2, acc), acc = _mm256_fmadd_ps(r3, r3, acc);
      acc = _mm256_fmadd_ps(r4, r4, acc), acc = _mm256_fmadd_ps(r5, r5, acc);
      acc = _mm256_fmadd_ps(r6, r6, acc), acc = _mm256_fmadd_ps(r7, r7, acc);
    }
    _mm256_storeu_ps(sq + h, acc);
  }
#else
  for (int64_t r = 0; r < kRows; ++r) sq[r] = 0.f;
#endif
  const int64_t t_tail = t;
  for (int64_t r = 0; r < kRows; ++r) {
    float acc = sq[r];
    for (t = t_tail; t < d; ++t) {
      const float v = src[r][t] - mu[t];
      panel[t * kRows + r] = v;
      acc += v * v;
    }
    // A float sum of d non-negative terms is within (d + 1)·u relative of the exact one.
    norm[r] = std::sqrt(static_cast<double>(acc) * (1.0 + (static_cast<double>(d) + 2.0) * kUnitRoundoff));
  }
}

// Σ_t (a_t − b_t)² in float32 for the reported distance: four 8-lane accumulators keep the
// worst-case relative error near (d/32 + 4)·2^-24.
float direct_sq_dist_f32(const float* a, const float* b, int64_t d) {
  int64_t t = 0;
  float total = 0.f;
#ifdef LATENTOPS_NC_AVX2
  if (d >= 32) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (; t + 32 <= d; t += 32) {
      __m256 x0 = _mm256_sub_ps(_mm256_loadu_ps(a + t), _mm256_loadu_ps(b + t));
      __m256 x1 = _mm256_sub_ps(_mm256_loadu_ps(a + t + 8), _mm256_loadu_ps(b + t + 8));
      __m256 x2 = _mm256_sub_ps(_mm256_loadu_ps(a + t + 16), _mm256_loadu_ps(b + t + 16));
      __m256 x3 = _mm256_sub_ps(_mm256_loadu_ps(a + t + 24), _mm256_loadu_ps(b + t + 24));
      s0 = _mm256_fmadd_ps(x0, x0, s0), s1 = _mm256_fmadd_ps(x1, x1, s1);
      s2 = _mm256_fmadd_ps(x2, x2, s2), s3 = _mm256_fmadd_ps(x3, x3, s3);
    }
    for (; t + 8 <= d; t += 8) {
      __m256 x0 = _mm256_sub_ps(_mm256_loadu_ps(a + t), _mm256_loadu_ps(b + t));
      s0 = _mm256_fmadd_ps(x0, x0, s0);
    }
    s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    total = _mm_cvtss_f32(h);
  }
#endif
  for (; t < d; ++t) {
    const float x = a[t] - b[t];
    total += x * x;
  }
  return total;
}

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

// Turns one row's fast-pass result into the final index: accept it when the fp32 error bound
// separates best from second-best, otherwise rescore the candidates (or everything).
int64_t decide_row(const float* zrow, double zn, float s1, float s2, int32_t fast_j, const float* codebook,
                   int64_t k, int64_t d, const PreparedCodebook& pc, float* zrow_shifted) {
  const Chunks& ch = pc.chunks;
  const double m = pc.max_norm;
  const double magnitude = zn * m + 0.5 * m * m;
  if (pc.included == 0 || !std::isfinite(zn) || !(magnitude < kFastPathMaxMagnitude))
    return scan_all(zrow, codebook, k, d);
  // |fp32 score − exact score| <= E1: the FMA chain within a chunk, adding the chunk sums, and
  // rounding ½‖c'‖². E2 covers rounding z − μ and c − μ. The true argmin's fp32 score is within
  // 2(E1 + E2) of the best fp32 score; a factor 2 of safety on top.
  const double error_steps = kRoundingsPerTerm * static_cast<double>(ch.max_length()) +
                             static_cast<double>(ch.count()) + 2.0;
  // The absolute term covers rounding in the subnormal range (tiny data), where a relative
  // bound alone would not hold.
  const double e1 = error_steps * (kUnitRoundoff * magnitude + kSubnormalSpacing);
  const double e2 = pc.shifted ? kUnitRoundoff * (zn + m) * (zn + m) : 0.0;
  const double bound = 4.0 * (e1 + e2);
  if (static_cast<double>(s2) - static_cast<double>(s1) > bound) return fast_j;
  const float* mu = pc.shift.data();
  for (int64_t t = 0; t < d; ++t) zrow_shifted[t] = zrow[t] - mu[t];  // same values as the packed row
  const int64_t j = rescore_candidates(zrow_shifted, zrow, codebook, k, d, pc, static_cast<double>(s1) + bound);
  return j >= 0 ? j : scan_all(zrow, codebook, k, d);  // j < 0 cannot happen; stays sound if it did
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

}  // namespace

void nearest_centroid_cpu(const float* z, const float* codebook, int64_t n, int64_t k, int64_t d,
                          int64_t* indices, float* sq_dist) {
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

}  // namespace latentops
