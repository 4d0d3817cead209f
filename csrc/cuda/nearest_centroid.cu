// PLACEHOLDER: one thread per row, to be replaced by the fused tensor-core kernel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>

#include "latentops/checks.h"
#include "latentops/nearest_centroid.h"

namespace latentops {
namespace {

__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(__half x) { return __half2float(x); }
__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__global__ void nearest_centroid_naive(const T* z, const T* c, int64_t n, int64_t k, int64_t d,
                                       int64_t* indices, float* sq_dist) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  float best = FLT_MAX;
  int64_t best_j = 0;
  bool found = false;
  for (int64_t j = 0; j < k; ++j) {
    float acc = 0.f;
    for (int64_t t = 0; t < d; ++t) {
      float diff = to_float(z[i * d + t]) - to_float(c[j * d + t]);
      acc = fmaf(diff, diff, acc);
    }
    if (!found || acc < best) { if (acc == acc) { best = acc; best_j = j; found = true; } }
  }
  float acc = 0.f;
  for (int64_t t = 0; t < d; ++t) {
    float diff = to_float(z[i * d + t]) - to_float(c[best_j * d + t]);
    acc = fmaf(diff, diff, acc);
  }
  indices[i] = best_j;
  sq_dist[i] = acc;
}

}  // namespace

size_t nearest_centroid_cuda_workspace_bytes(int64_t, int64_t, int64_t) { return 0; }

void nearest_centroid_cuda(const void* z, const void* codebook, int64_t n, int64_t k, int64_t d,
                           DType dtype, bool exact, int64_t* indices, float* sq_dist,
                           void* workspace, void* stream) {
  (void)exact;
  (void)workspace;
  LATENTOPS_CHECK(k > 0, "codebook must have at least one row");
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  int threads = 128;
  int blocks = static_cast<int>((n + threads - 1) / threads);
  switch (dtype) {
    case DType::kFloat32:
      nearest_centroid_naive<<<blocks, threads, 0, s>>>(static_cast<const float*>(z),
                                                        static_cast<const float*>(codebook), n, k,
                                                        d, indices, sq_dist);
      break;
    case DType::kFloat16:
      nearest_centroid_naive<<<blocks, threads, 0, s>>>(static_cast<const __half*>(z),
                                                        static_cast<const __half*>(codebook), n, k,
                                                        d, indices, sq_dist);
      break;
    case DType::kBFloat16:
      nearest_centroid_naive<<<blocks, threads, 0, s>>>(
          static_cast<const __nv_bfloat16*>(z), static_cast<const __nv_bfloat16*>(codebook), n, k,
          d, indices, sq_dist);
      break;
  }
  LATENTOPS_CUDA_CHECK(cudaGetLastError());
}

}  // namespace latentops
