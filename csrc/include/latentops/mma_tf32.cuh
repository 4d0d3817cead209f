// tf32 tensor-core pieces shared by the CUDA kernels built on mma.sync m16n8k8 (sm_80+).
// The wheel also builds sm_75, where these bodies only keep the build assembling: the launchers
// call require_tf32_tensor_cores() first, so the trap is never reached.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "latentops/checks.h"

namespace latentops {

// x rounded to tf32 (nearest, ties away), as the 32-bit pattern the mma takes.
__device__ __forceinline__ uint32_t tf32_bits(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#else
  return __float_as_uint(x);
#endif
}

// x = hi + lo with both parts tf32 (lo is what rounding hi dropped): 3xTF32 multiplies
// hi.hi + hi.lo + lo.hi, an fp32-accurate product on tf32 tensor cores.
template <int N>
__device__ __forceinline__ void split_tf32(const float (&x)[N], uint32_t (&hi)[N], uint32_t (&lo)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
    hi[i] = tf32_bits(x[i]);
    lo[i] = tf32_bits(x[i] - __uint_as_float(hi[i]));
  }
}

// c += a . b on one m16n8k8 tile (fragment layouts in the PTX ISA, "mma.m16n8k8 .tf32").
__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();
#endif
}

// Raises ValueError naming `what` when the current device has no tf32 tensor cores.
inline void require_tf32_tensor_cores(const char* what) {
  int dev = 0, major = 0;
  LATENTOPS_CUDA_CHECK(cudaGetDevice(&dev));
  LATENTOPS_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  LATENTOPS_CHECK(major >= 8, "the CUDA " << what << " kernel needs compute capability 8.0 or newer "
                              "(tf32 tensor cores); use backend='triton' on this GPU");
}

}  // namespace latentops
