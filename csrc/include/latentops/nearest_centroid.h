// Nearest-centroid search: for each row z_n of z (n x d), the index of the closest row of
// codebook (k x d) in squared Euclidean distance and that distance. Ties go to the lowest index.
#pragma once
#include <cstddef>
#include <cstdint>

#include "latentops/enums.h"

namespace latentops {

// One call of the search, the same on both devices. Buffers are contiguous, row-major and on the
// kernel's device.
struct NearestCentroidParams {
  const void* z;         // n x d, of `dtype`
  const void* codebook;  // k x d, of `dtype`
  int64_t n, k, d;       // n may be 0; k, d >= 1
  DType dtype;           // the CPU kernel takes kFloat32 only (the Python layer upcasts)
  // kExact: the chosen index's distance equals the true minimum to fp32 accuracy; kFast:
  // tensor-core (tf32/fp16/bf16) distances decide. The CPU kernel is always exact.
  Accuracy accuracy;
  int64_t* indices;      // n: the nearest centroid of each row
  float* sq_dist;        // n: its squared distance, summed in fp32 from the input values
};

void nearest_centroid_cpu(const NearestCentroidParams& p);

// `workspace`: device memory of at least nearest_centroid_cuda_workspace_bytes(n, k, d, accuracy)
// bytes for the current device (fast mode needs far less on sm_80+); `stream`: a cudaStream_t.
size_t nearest_centroid_cuda_workspace_bytes(int64_t n, int64_t k, int64_t d, Accuracy accuracy);
void nearest_centroid_cuda(const NearestCentroidParams& p, void* workspace, void* stream);

}  // namespace latentops
