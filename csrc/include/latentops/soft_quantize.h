// Posterior-mean soft quantization (Wu & Flierl, AAAI 2020), flash-style: for each row z_n of z (n x d)
// and codebook c (k x d),
//   l_nk = -1/2 s_nk ||z_n - c_k||^2 + b_k,   p_nk = softmax_k(l_nk),   z_hat_n = sum_k p_nk c_k,
// keeping only lse_n = log sum_k exp(l_nk) from the forward; the backward recomputes p tile by tile.
// The precision s comes in one of four layouts (SoftPrecision); b may be null (all zeros).
// All pointers are to contiguous row-major float32 buffers; never an n x k temporary.
#pragma once
#include <cstdint>

namespace latentops {

// s_nk = s[0] (kScalar), s[n] (kPerRow), s[k] (kPerCentroid) or s[n * k_total + k] (kFull).
enum class SoftPrecision : int { kScalar = 0, kPerRow = 1, kPerCentroid = 2, kFull = 3 };

void soft_quantize_forward_cpu(const float* z, const float* codebook, const float* s,
                               SoftPrecision s_mode, const float* log_prior, int64_t n, int64_t k,
                               int64_t d, float* z_hat, float* lse);

// grad: dL/dz_hat (n x d). Writes grad_z (n x d) and grad_codebook (k x d) (overwritten, not
// accumulated), grad_s in s's layout (1, n, k or n*k values; may be null when not needed) and
// grad_log_prior (k; may be null).
void soft_quantize_backward_cpu(const float* grad, const float* z, const float* codebook,
                                const float* s, SoftPrecision s_mode, const float* log_prior,
                                const float* z_hat, const float* lse, int64_t n, int64_t k,
                                int64_t d, float* grad_z, float* grad_codebook, float* grad_s,
                                float* grad_log_prior);

// CUDA kernels (sm_80+, float32 operands). The caller centres the codebook on its mean mu:
// c_centred = codebook - mu (k x d), c_sq = ||c_centred||^2 (k), mu (d). `exact`: 3xTF32 tensor-core
// products (fp32-accurate); otherwise one tf32 product (~3e-4 relative). `stream` is a cudaStream_t.
void soft_quantize_forward_cuda(const float* z, const float* c_centred, const float* c_sq,
                                const float* mu, const float* s, SoftPrecision s_mode,
                                const float* log_prior, int64_t n, int64_t k, int64_t d, bool exact,
                                float* z_hat, float* lse, void* stream);
// workspace: 4 * n floats. grad_s: per-row partial sums (n) for the scalar layout (the caller sums
// them), else s's layout; grad_s and grad_log_prior may be null.
void soft_quantize_backward_cuda(const float* grad, const float* z, const float* c_centred,
                                 const float* c_sq, const float* mu, const float* s,
                                 SoftPrecision s_mode, const float* log_prior, int64_t n, int64_t k,
                                 int64_t d, bool exact, float* workspace, float* grad_z,
                                 float* grad_codebook, float* grad_s, float* grad_log_prior,
                                 void* stream);

}  // namespace latentops
