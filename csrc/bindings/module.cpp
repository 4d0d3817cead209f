// The module latentops._C: the kernels of every family, registered by csrc/bindings/<family>.cpp.
// It does not link libtorch, so one wheel serves every torch version (see DESIGN.md).
#include "bindings.h"

#ifdef LATENTOPS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

// The CPU kernels are x86-64-v3 code (latentops/cpu_simd.h); this file is baseline x86-64, so it
// can say no on an older processor instead of crashing in the first kernel.
bool cpu_kernels_supported() {
#ifdef LATENTOPS_WITH_CPU_KERNELS
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "latentops native kernels (C++ on x86-64 and, when built with it, CUDA)";
#ifdef LATENTOPS_WITH_CUDA
  m.attr("has_cuda") = true;
  // What latentops._cuda_compat needs to tell whether the kernels can run on a GPU: the CMake
  // CUDA_ARCHITECTURES list of this build, the static runtime's version and the driver's.
  m.attr("cuda_architectures") = LATENTOPS_CUDA_ARCHITECTURES;
  m.attr("cuda_runtime_version") = CUDART_VERSION;
  m.def("cuda_driver_version", [] {
    int version = 0;  // stays 0 without a driver (cudaErrorNoDevice / InsufficientDriver leave it so)
    cudaDriverGetVersion(&version);
    return version;
  });
#else
  m.attr("has_cuda") = false;
#endif
  m.attr("cpu_supported") = cpu_kernels_supported();
  latentops::bindings::bind_nearest_centroid(m);
  latentops::bindings::bind_soft_quantize(m);
  latentops::bindings::bind_graph(m);
  latentops::bindings::bind_compressed_linear(m);
}
