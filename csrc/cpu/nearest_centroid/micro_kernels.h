// Nearest-centroid search on the CPU: the hot loops, in a header so that they inline into their
// callers: the 16 x 6 score tile with its running-argmin epilogue, and the direct distances.
#pragma once
#include <cstdint>

#include "constants.h"
#include "latentops/cpu_simd.h"

namespace latentops {
namespace cpu {
namespace nearest_centroid {

// Σ_t (a_t − b_t)² with the differences and the sum in float64.
inline double direct_sq_dist(const float* a, const float* b, int64_t d) {
  int64_t t = 0;
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  for (; t + 8 <= d; t += 8) {
    __m256d x0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + t)), _mm256_cvtps_pd(_mm_loadu_ps(b + t)));
    __m256d x1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + t + 4)),
                               _mm256_cvtps_pd(_mm_loadu_ps(b + t + 4)));
    s0 = _mm256_fmadd_pd(x0, x0, s0);
    s1 = _mm256_fmadd_pd(x1, x1, s1);
  }
  double total = hsum_pd(_mm256_add_pd(s0, s1));
  for (; t < d; ++t) {
    double x = static_cast<double>(a[t]) - static_cast<double>(b[t]);
    total += x * x;
  }
  return total;
}

// Σ_t (a_t − b_t)² in float32 for the reported distance: four 8-lane accumulators keep the
// worst-case relative error near (d/32 + 4)·2^-24.
inline float direct_sq_dist_f32(const float* a, const float* b, int64_t d) {
  int64_t t = 0;
  float total = 0.f;
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
    total = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  }
  for (; t < d; ++t) {
    const float x = a[t] - b[t];
    total += x * x;
  }
  return total;
}

// One 16-row x 6-centroid tile over `len` steps of the shared dimension.
// zp: packed z' rows, [t][16]; cp: packed centroids, [t][6]; tile: the 12 partial accumulators
// when d is split into chunks. On the last chunk the scores are folded into the running
// best1 / best2 / best_idx of the 16 rows (lane r = row r).
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

}  // namespace nearest_centroid
}  // namespace cpu
}  // namespace latentops
