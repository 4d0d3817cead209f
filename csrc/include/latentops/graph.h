// Similarity graphs of G sets of representations with the same n rows and their own widths d_g
// (the layers of a network, or a batch of sets), for Latent Geometry Graphs and Laplacian Networks.
//
// Inputs come as a table of G row-major float32 (n x d_g) buffers (xs[g], dims[g]): no packing
// copy. On CUDA every pointer, the tables themselves included, is device memory, and `stream` is a
// cudaStream_t. The CUDA kernels have never run on a GPU: the Python layer uses them only when
// backend="cuda" is asked for by name.
#pragma once
#include <cstdint>

#include "latentops/enums.h"

namespace latentops {

// The inputs of both stages: g graphs of n rows each.
struct GraphInputs {
  const float* const* xs;  // g addresses of the (n x dims[i]) inputs
  const int64_t* dims;     // g widths, each >= 1
  int64_t g, n;
};

// Stage 1: W_ij = x̂_i·x̂_j (cosine; x̂ = x/‖x‖, 0 for a zero row) or exp(−‖x_i − x_j‖²/(2σ²))
// (Gaussian), diagonal 0, max(W, 0) if relu.
struct SimilarityGraphParams : GraphInputs {
  GraphMetric metric;
  float sigma;             // the Gaussian's width (> 0); unused for cosine
  bool relu;
  float* w;                // g x n x n
  float* stats;            // g x n: 1/‖x_i‖ or 0 (cosine), ‖x_i‖² (Gaussian)
};

// The k-NN backward: for every row r = g·n + i, with the symmetric coefficient matrix in CSR over
// the g·n rows, acc = Σ_{e in [rowptr[r], rowptr[r+1])} coef[e]·x_g[col[e]] and
// grads[g][i] = alpha[r]·acc − x_g[i]·(beta[r] + gamma[r]·(x_g[i]·acc)) (overwritten).
struct SimilarityGraphBackwardParams : GraphInputs {
  const int64_t* rowptr;   // g·n + 1
  const int64_t* col;      // nnz: column within the row's graph
  const float* coef;       // nnz
  const float* alpha;      // g·n each
  const float* beta;
  const float* gamma;
  float* const* grads;     // g addresses of (n x dims[i]) outputs
};

void similarity_graph_cpu(const SimilarityGraphParams& p);
void similarity_graph_sparse_backward_cpu(const SimilarityGraphBackwardParams& p);

void similarity_graph_cuda(const SimilarityGraphParams& p, void* stream);
void similarity_graph_sparse_backward_cuda(const SimilarityGraphBackwardParams& p, void* stream);

}  // namespace latentops
