// The portability policy of the C++ CPU kernels, stated once: they are x86-64-v3 (AVX2 + FMA) code
// with no scalar fallbacks. CMake compiles csrc/cpu/** only on x86-64, with -march=x86-64-v3 on those
// files alone, and defines LATENTOPS_WITH_CPU_KERNELS; elsewhere (or with LATENTOPS_CPU_KERNELS=OFF)
// the module has no CPU functions, cpu_supported is False and CPU tensors use the torch backend. The
// bindings are baseline x86-64, so on a processor without AVX2/FMA they report cpu_supported = False
// instead of crashing. Every file under csrc/cpu includes this header.
#pragma once
#include <immintrin.h>

namespace latentops {
namespace cpu {

// The sum of a vector's lanes.
inline float hsum(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

inline double hsum_pd(__m256d v) {
  __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

}  // namespace cpu
}  // namespace latentops
