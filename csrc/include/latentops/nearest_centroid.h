// Nearest-centroid search: for each row z_n of z (n x d), the index of the closest row of
// codebook (k x d) in squared Euclidean distance and that distance. Ties go to the lowest index.
// All pointers are to contiguous row-major buffers on the kernel's device.
#pragma once
#include <cstddef>
#include <cstdint>

#include "latentops/dtype.h"

namespace latentops {

// CPU kernel, float32 only (the Python layer upcasts fp16/bf16).
void nearest_centroid_cpu(const float* z, const float* codebook, int64_t n, int64_t k, int64_t d,
                          int64_t* indices, float* sq_dist);

// CUDA kernel. `exact`: the chosen index's distance equals the true minimum to fp32 accuracy;
// otherwise tensor-core (tf32/fp16/bf16) distances decide. `workspace` is device memory of at least
// nearest_centroid_cuda_workspace_bytes(n, k, d) bytes; `stream` is a cudaStream_t.
size_t nearest_centroid_cuda_workspace_bytes(int64_t n, int64_t k, int64_t d);
void nearest_centroid_cuda(const void* z, const void* codebook, int64_t n, int64_t k, int64_t d,
                           DType dtype, bool exact, int64_t* indices, float* sq_dist,
                           void* workspace, void* stream);

}  // namespace latentops
