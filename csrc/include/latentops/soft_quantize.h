// Posterior-mean soft quantization (Wu & Flierl, AAAI 2020), flash-style: for each row z_n of z (n x d)
// and codebook c (k x d),
//   l_nk = -1/2 s_nk ||z_n - c_k||^2 + b_k,   p_nk = softmax_k(l_nk),   z_hat_n = sum_k p_nk c_k,
// keeping only lse_n = log sum_k exp(l_nk) from the forward; the backward recomputes p tile by tile.
// All buffers are contiguous row-major float32 on the kernel's device; never an n x k temporary.
#pragma once
#include <cstdint>

#include "latentops/enums.h"

namespace latentops {

// The codebook as each device takes it. The CPU kernels take c itself (they centre it on its mean
// internally) and leave sq_norms and mean null. The CUDA kernels (sm_80+) take it centred by the
// caller: values = c - mu (k x d), sq_norms = ||c - mu||^2 (k), mean = mu (d).
struct SoftCodebook {
  const float* values;
  const float* sq_norms;
  const float* mean;
};

// The operands of both stages.
struct SoftQuantizeInputs {
  const float* z;          // n x d
  SoftCodebook codebook;
  const float* s;          // the precision, in s_layout
  const float* log_prior;  // b (k), or null for all zeros
  int64_t n, k, d;         // CPU: n may be 0; CUDA: all positive
  // s_nk = s[0] (kScalar), s[n] (kPerRow), s[k] (kPerCentroid) or s[n * k_total + k] (kFull).
  PrecisionLayout s_layout;
  // CUDA: kExact multiplies in 3xTF32 (fp32-accurate), kFast in one tf32 product (~3e-4
  // relative). The CPU kernels are always exact (fp32 FMA).
  Accuracy accuracy;
};

struct SoftQuantizeForwardParams : SoftQuantizeInputs {
  float* z_hat;            // n x d
  float* lse;              // n
};

// z_hat is no operand of the backward: δ_n = g_n·ẑ_n is recomputed as Σ_k p_nk g_n·c_k from the
// same products that give a_nk, which keeps Σ_k a_nk at rounding level.
struct SoftQuantizeBackwardParams : SoftQuantizeInputs {
  const float* grad;       // n x d: dL/dz_hat
  // n: the forward's lse. The CPU kernels refine it; the CUDA kernels recompute it and ignore this.
  const float* lse;
  // Overwritten, not accumulated: grad_z (n x d), grad_codebook (k x d), grad_log_prior (k; may be
  // null) and grad_s (may be null), which holds s's layout, except on CUDA for kScalar: per-row
  // partial sums (n values) that the caller sums.
  float* grad_z;
  float* grad_codebook;
  float* grad_s;
  float* grad_log_prior;
};

void soft_quantize_forward_cpu(const SoftQuantizeForwardParams& p);
void soft_quantize_backward_cpu(const SoftQuantizeBackwardParams& p);

// `stream`: a cudaStream_t; `workspace`: device memory for 4 * n floats.
void soft_quantize_forward_cuda(const SoftQuantizeForwardParams& p, void* stream);
void soft_quantize_backward_cuda(const SoftQuantizeBackwardParams& p, float* workspace, void* stream);

}  // namespace latentops
