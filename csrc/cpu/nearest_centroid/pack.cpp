// Nearest-centroid search on the CPU: codebook and z packing (see pack.h).
#include "pack.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "latentops/cpu_scratch.h"
#include "latentops/cpu_simd.h"

namespace latentops {
namespace cpu {
namespace nearest_centroid {
namespace {

constexpr int64_t kOnePassMaxD = 192;  // up to this d a 16-row panel (12 KiB) stays in L1
constexpr int64_t kChunkD = 128;       // longer d is split into chunks of about this length

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
    for (; t < t1; ++t) {
      const float x = row[t] - mu[t];
      dst[(t - t0) * kCols] = x;
      sq += static_cast<double>(x) * x;
    }
  }
  return sq;
}

}  // namespace

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

// Packs 16 rows of z − μ into [t][16] and returns their squared norms in float (upper bound
// inflated by the float summation error, so the error bound stays rigorous).
void pack_panel(const float* const* src, const float* mu, int64_t d, float* panel, double* norm) {
  float sq[kRows];
  int64_t t = 0;
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

}  // namespace nearest_centroid
}  // namespace cpu
}  // namespace latentops
