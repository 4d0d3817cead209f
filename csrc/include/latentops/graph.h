// Similarity graphs of G sets of representations with the same n rows and their own widths d_g
// (the layers of a network, or a batch of sets), for Latent Geometry Graphs and Laplacian Networks.
//
// Inputs come as a table of G row-major float32 (n x d_g) buffers (xs[g], dims[g]): no packing
// copy. Stage 1 writes W (G x n x n) and a per-row statistic (G x n); the sparse backward takes
// the symmetric coefficient matrix of the k-NN backward in CSR over the G·n rows.
#pragma once
#include <cstdint>

namespace latentops {

enum class GraphMetric : int { kCosine = 0, kGaussian = 1 };

// W_ij = x̂_i·x̂_j (cosine; x̂ = x/‖x‖, 0 for a zero row; stats = 1/‖x_i‖ or 0) or
// exp(−‖x_i − x_j‖²/(2σ²)) (Gaussian; stats = ‖x_i‖²), diagonal 0, max(W, 0) if relu.
void similarity_graph_cpu(const float* const* xs, const int64_t* dims, int64_t g, int64_t n,
                          GraphMetric metric, float sigma, bool relu, float* w, float* stats);

// For every row r = g·n + i: acc = Σ_{e in [rowptr[r], rowptr[r+1])} coef[e]·x_g[col[e]] and
// grads[g][i] = alpha[r]·acc − x_g[i]·(beta[r] + gamma[r]·(x_g[i]·acc)) (overwritten).
void similarity_graph_sparse_backward_cpu(const float* const* xs, const int64_t* dims, int64_t g,
                                          int64_t n, const int64_t* rowptr, const int64_t* col,
                                          const float* coef, const float* alpha, const float* beta,
                                          const float* gamma, float* const* grads);

}  // namespace latentops

namespace latentops {

// CUDA versions (compiled with the CUDA build only). Same contracts, all pointers (the tables
// themselves included) in device memory, `stream` a cudaStream_t. Never run on a GPU yet: the
// Python layer uses them only when backend="cuda" is asked for by name.
void similarity_graph_cuda(const float* const* xs, const int64_t* dims, int64_t g, int64_t n,
                           GraphMetric metric, float sigma, bool relu, float* w, float* stats,
                           void* stream);
void similarity_graph_sparse_backward_cuda(const float* const* xs, const int64_t* dims, int64_t g,
                                           int64_t n, const int64_t* rowptr, const int64_t* col,
                                           const float* coef, const float* alpha,
                                           const float* beta, const float* gamma,
                                           float* const* grads, void* stream);

}  // namespace latentops
