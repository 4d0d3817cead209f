// The register-blocked AVX2 GEMM micro-kernels shared by the CPU kernels (compiled with
// -march=x86-64-v3: include from csrc/cpu/*.cpp only). Broadcast A, vector B, accumulators in
// registers; the 6 x 16 tile keeps its twelve accumulators as named locals.
#pragma once
#include <algorithm>
#include <cstdint>

#include "latentops/cpu_simd.h"

namespace latentops {
namespace cpu {

constexpr int64_t kGemmRows = 6;  // micro-kernel output rows

// out[i][j] (+)= Σ_t A(i, t) · B[t][j] for i < MR, j < 8·NV, with A(i, t) = a[i·a_rs + t·a_ts].
template <int MR, int NV>
inline void micro_kernel(int64_t inner, const float* a, int64_t a_rs, int64_t a_ts, const float* b, int64_t ldb,
                  float* out, int64_t ldo, bool accumulate) {
  __m256 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  const float* ai[MR];
  for (int i = 0; i < MR; ++i) ai[i] = a + i * a_rs;
  for (int64_t t = 0; t < inner; ++t) {
    __m256 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + v * 8);
    b += ldb;
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(ai[i]);
      ai[i] += a_ts;
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int v = 0; v < NV; ++v) {
      float* o = out + i * ldo + v * 8;
      _mm256_storeu_ps(o, accumulate ? _mm256_add_ps(_mm256_loadu_ps(o), acc[i][v]) : acc[i][v]);
    }
  }
}

// The full 6 x 16 tile with the twelve accumulators as named locals (the array form above spills
// them to the stack on every iteration) and the six A rows addressed from two pointers.
inline void micro_kernel_6x16(int64_t inner, const float* a, int64_t a_rs, int64_t a_ts, const float* b, int64_t ldb,
                       float* out, int64_t ldo, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const float* p0 = a;
  const float* p3 = a + 3 * a_rs;
  const int64_t rs2 = 2 * a_rs;
  for (int64_t t = 0; t < inner; ++t) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    b += ldb;
    __m256 av = _mm256_broadcast_ss(p0);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(p0 + a_rs);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(p0 + rs2);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(p3);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(p3 + a_rs);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(p3 + rs2);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
    p0 += a_ts;
    p3 += a_ts;
  }
  const __m256 res[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
  for (int i = 0; i < 6; ++i) {
    for (int v = 0; v < 2; ++v) {
      float* o = out + i * ldo + v * 8;
      _mm256_storeu_ps(o, accumulate ? _mm256_add_ps(_mm256_loadu_ps(o), res[2 * i + v]) : res[2 * i + v]);
    }
  }
}

using MicroKernel = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t, bool);

template <int NV>
inline MicroKernel pick_rows(int64_t mr) {
  switch (mr) {
    case 1: return micro_kernel<1, NV>;
    case 2: return micro_kernel<2, NV>;
    case 3: return micro_kernel<3, NV>;
    case 4: return micro_kernel<4, NV>;
    case 5: return micro_kernel<5, NV>;
    default: return NV == 2 ? micro_kernel_6x16 : micro_kernel<6, NV>;
  }
}

// out (m x cols, leading dim ldo) (+)= A (m x inner, strides a_rs / a_ts) · B (inner x cols, ldb).
// cols is a multiple of 8; B and out may be read/written up to that width.
inline void gemm(int64_t m, int64_t cols, int64_t inner, const float* a, int64_t a_rs, int64_t a_ts, const float* b,
          int64_t ldb, float* out, int64_t ldo, bool accumulate) {
  for (int64_t j = 0; j < cols; j += 16) {
    const bool wide = cols - j >= 16;
    for (int64_t i = 0; i < m; i += kGemmRows) {
      const int64_t mr = std::min(kGemmRows, m - i);
      const MicroKernel f = wide ? pick_rows<2>(mr) : pick_rows<1>(mr);
      f(inner, a + i * a_rs, a_rs, a_ts, b + j, ldb, out + i * ldo + j, ldo, accumulate);
    }
  }
}

}  // namespace cpu
}  // namespace latentops
