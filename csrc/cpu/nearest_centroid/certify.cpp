// Nearest-centroid search on the CPU: the exact re-decision (see certify.h).
#include "certify.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "latentops/cpu_simd.h"
#include "micro_kernels.h"

namespace latentops {
namespace cpu {
namespace nearest_centroid {
namespace {

// Rounding steps per term of the fp32 score: one, as every term is a fused multiply-add.
constexpr double kRoundingsPerTerm = 1.0;
// Rows whose score magnitudes could come near fp32 overflow are scanned directly in float64.
constexpr double kFastPathMaxMagnitude = 1e37;

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

}  // namespace

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

}  // namespace nearest_centroid
}  // namespace cpu
}  // namespace latentops
