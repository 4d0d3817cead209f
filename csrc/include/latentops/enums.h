// The kernel enums: the one definition of every code that crosses the binding boundary.
// Mirrored in python/latentops/kernel_enums.py (tests/test_kernel_enums.py checks the two agree).
#pragma once

namespace latentops {

// Element type of a kernel's operands.
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// kExact: fp32-accurate products (3xTF32 on tensor cores, FMA on the CPU); kFast: one
// tf32/fp16/bf16 tensor-core product.
enum class Accuracy : int { kExact = 0, kFast = 1 };

enum class GraphMetric : int { kCosine = 0, kGaussian = 1 };

// Layout of soft quantization's precision s: s[0], s[n], s[k] or s[n * k_total + k].
enum class PrecisionLayout : int { kScalar = 0, kPerRow = 1, kPerCentroid = 2, kFull = 3 };

}  // namespace latentops
