// Element types crossing the binding boundary. The Python side maps torch dtypes to these codes.
#pragma once
#include <cstdint>

namespace latentops {
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };
}  // namespace latentops
