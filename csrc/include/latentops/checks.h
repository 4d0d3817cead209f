// Argument checks and error translation shared by the CPU and CUDA kernels.
// Exceptions cross the pybind11 boundary as Python exceptions:
// std::invalid_argument -> ValueError, std::runtime_error -> RuntimeError.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

#define LATENTOPS_CHECK(cond, msg)                                     \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::ostringstream latentops_oss_;                               \
      latentops_oss_ << msg;                                           \
      throw std::invalid_argument(latentops_oss_.str());               \
    }                                                                  \
  } while (0)

#ifdef __CUDACC__
#include <cuda_runtime.h>
#define LATENTOPS_CUDA_CHECK(expr)                                               \
  do {                                                                           \
    cudaError_t latentops_err_ = (expr);                                         \
    if (latentops_err_ != cudaSuccess) {                                         \
      throw std::runtime_error(std::string("latentops CUDA error: ") +          \
                               cudaGetErrorString(latentops_err_) + " at " +     \
                               __FILE__ + ":" + std::to_string(__LINE__));       \
    }                                                                            \
  } while (0)
#endif
