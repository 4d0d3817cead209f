// Python bindings of the kernels. Tensors cross as raw addresses (Python ints): the module does not
// link libtorch, so one wheel serves every torch version.
#include <pybind11/pybind11.h>

#include "latentops/graph.h"
#include "latentops/nearest_centroid.h"
#include "latentops/soft_quantize.h"

namespace py = pybind11;
using latentops::DType;
using latentops::GraphMetric;
using latentops::SoftPrecision;

namespace {
// The CPU kernels are compiled for x86-64-v3 (AVX2 + FMA); this file is not, so it can say no.
bool cpu_kernels_supported() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

template <typename T>
T* as_ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "latentops native kernels (CPU C++ and, when built with it, CUDA)";
#ifdef LATENTOPS_WITH_CUDA
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
  m.attr("cpu_supported") = cpu_kernels_supported();

  m.def(
      "nearest_centroid_cpu",
      [](uintptr_t z, uintptr_t codebook, int64_t n, int64_t k, int64_t d, uintptr_t indices,
         uintptr_t sq_dist) {
        py::gil_scoped_release release;
        latentops::nearest_centroid_cpu(as_ptr<const float>(z), as_ptr<const float>(codebook), n,
                                        k, d, as_ptr<int64_t>(indices), as_ptr<float>(sq_dist));
      },
      py::arg("z"), py::arg("codebook"), py::arg("n"), py::arg("k"), py::arg("d"),
      py::arg("indices"), py::arg("sq_dist"));

  m.def(
      "soft_quantize_forward_cpu",
      [](uintptr_t z, uintptr_t codebook, uintptr_t s, int s_mode, uintptr_t log_prior, int64_t n,
         int64_t k, int64_t d, uintptr_t z_hat, uintptr_t lse) {
        py::gil_scoped_release release;
        latentops::soft_quantize_forward_cpu(
            as_ptr<const float>(z), as_ptr<const float>(codebook), as_ptr<const float>(s),
            static_cast<SoftPrecision>(s_mode), as_ptr<const float>(log_prior), n, k, d,
            as_ptr<float>(z_hat), as_ptr<float>(lse));
      },
      py::arg("z"), py::arg("codebook"), py::arg("s"), py::arg("s_mode"), py::arg("log_prior"),
      py::arg("n"), py::arg("k"), py::arg("d"), py::arg("z_hat"), py::arg("lse"));
  m.def(
      "soft_quantize_backward_cpu",
      [](uintptr_t grad, uintptr_t z, uintptr_t codebook, uintptr_t s, int s_mode,
         uintptr_t log_prior, uintptr_t z_hat, uintptr_t lse, int64_t n, int64_t k, int64_t d,
         uintptr_t grad_z, uintptr_t grad_codebook, uintptr_t grad_s, uintptr_t grad_log_prior) {
        py::gil_scoped_release release;
        latentops::soft_quantize_backward_cpu(
            as_ptr<const float>(grad), as_ptr<const float>(z), as_ptr<const float>(codebook),
            as_ptr<const float>(s), static_cast<SoftPrecision>(s_mode),
            as_ptr<const float>(log_prior), as_ptr<const float>(z_hat), as_ptr<const float>(lse),
            n, k, d, as_ptr<float>(grad_z), as_ptr<float>(grad_codebook), as_ptr<float>(grad_s),
            as_ptr<float>(grad_log_prior));
      },
      py::arg("grad"), py::arg("z"), py::arg("codebook"), py::arg("s"), py::arg("s_mode"),
      py::arg("log_prior"), py::arg("z_hat"), py::arg("lse"), py::arg("n"), py::arg("k"),
      py::arg("d"), py::arg("grad_z"), py::arg("grad_codebook"), py::arg("grad_s"),
      py::arg("grad_log_prior"));

  m.def(
      "similarity_graph_cpu",
      [](uintptr_t xs, uintptr_t dims, int64_t g, int64_t n, int metric, float sigma, bool relu,
         uintptr_t w, uintptr_t stats) {
        py::gil_scoped_release release;
        latentops::similarity_graph_cpu(as_ptr<const float* const>(xs), as_ptr<const int64_t>(dims),
                                        g, n, static_cast<GraphMetric>(metric), sigma, relu,
                                        as_ptr<float>(w), as_ptr<float>(stats));
      },
      py::arg("xs"), py::arg("dims"), py::arg("g"), py::arg("n"), py::arg("metric"),
      py::arg("sigma"), py::arg("relu"), py::arg("w"), py::arg("stats"));
  m.def(
      "similarity_graph_sparse_backward_cpu",
      [](uintptr_t xs, uintptr_t dims, int64_t g, int64_t n, uintptr_t rowptr, uintptr_t col,
         uintptr_t coef, uintptr_t alpha, uintptr_t beta, uintptr_t gamma, uintptr_t grads) {
        py::gil_scoped_release release;
        latentops::similarity_graph_sparse_backward_cpu(
            as_ptr<const float* const>(xs), as_ptr<const int64_t>(dims), g, n,
            as_ptr<const int64_t>(rowptr), as_ptr<const int64_t>(col), as_ptr<const float>(coef),
            as_ptr<const float>(alpha), as_ptr<const float>(beta), as_ptr<const float>(gamma),
            as_ptr<float* const>(grads));
      },
      py::arg("xs"), py::arg("dims"), py::arg("g"), py::arg("n"), py::arg("rowptr"),
      py::arg("col"), py::arg("coef"), py::arg("alpha"), py::arg("beta"), py::arg("gamma"),
      py::arg("grads"));

#ifdef LATENTOPS_WITH_CUDA
  m.def(
      "similarity_graph_cuda",
      [](uintptr_t xs, uintptr_t dims, int64_t g, int64_t n, int metric, float sigma, bool relu,
         uintptr_t w, uintptr_t stats, uintptr_t stream) {
        latentops::similarity_graph_cuda(as_ptr<const float* const>(xs), as_ptr<const int64_t>(dims),
                                         g, n, static_cast<GraphMetric>(metric), sigma, relu,
                                         as_ptr<float>(w), as_ptr<float>(stats), as_ptr<void>(stream));
      },
      py::arg("xs"), py::arg("dims"), py::arg("g"), py::arg("n"), py::arg("metric"),
      py::arg("sigma"), py::arg("relu"), py::arg("w"), py::arg("stats"), py::arg("stream"));
  m.def(
      "similarity_graph_sparse_backward_cuda",
      [](uintptr_t xs, uintptr_t dims, int64_t g, int64_t n, uintptr_t rowptr, uintptr_t col,
         uintptr_t coef, uintptr_t alpha, uintptr_t beta, uintptr_t gamma, uintptr_t grads,
         uintptr_t stream) {
        latentops::similarity_graph_sparse_backward_cuda(
            as_ptr<const float* const>(xs), as_ptr<const int64_t>(dims), g, n,
            as_ptr<const int64_t>(rowptr), as_ptr<const int64_t>(col), as_ptr<const float>(coef),
            as_ptr<const float>(alpha), as_ptr<const float>(beta), as_ptr<const float>(gamma),
            as_ptr<float* const>(grads), as_ptr<void>(stream));
      },
      py::arg("xs"), py::arg("dims"), py::arg("g"), py::arg("n"), py::arg("rowptr"),
      py::arg("col"), py::arg("coef"), py::arg("alpha"), py::arg("beta"), py::arg("gamma"),
      py::arg("grads"), py::arg("stream"));
  m.def("nearest_centroid_cuda_workspace_bytes", &latentops::nearest_centroid_cuda_workspace_bytes,
        py::arg("n"), py::arg("k"), py::arg("d"));
  m.def(
      "nearest_centroid_cuda",
      [](uintptr_t z, uintptr_t codebook, int64_t n, int64_t k, int64_t d, int dtype, bool exact,
         uintptr_t indices, uintptr_t sq_dist, uintptr_t workspace, uintptr_t stream) {
        latentops::nearest_centroid_cuda(as_ptr<const void>(z), as_ptr<const void>(codebook), n, k,
                                         d, static_cast<DType>(dtype), exact,
                                         as_ptr<int64_t>(indices), as_ptr<float>(sq_dist),
                                         as_ptr<void>(workspace), as_ptr<void>(stream));
      },
      py::arg("z"), py::arg("codebook"), py::arg("n"), py::arg("k"), py::arg("d"),
      py::arg("dtype"), py::arg("exact"), py::arg("indices"), py::arg("sq_dist"),
      py::arg("workspace"), py::arg("stream"));

  m.def(
      "soft_quantize_forward_cuda",
      [](uintptr_t z, uintptr_t c_centred, uintptr_t c_sq, uintptr_t mu, uintptr_t s, int s_mode,
         uintptr_t log_prior, int64_t n, int64_t k, int64_t d, bool exact, uintptr_t z_hat,
         uintptr_t lse, uintptr_t stream) {
        latentops::soft_quantize_forward_cuda(
            as_ptr<const float>(z), as_ptr<const float>(c_centred), as_ptr<const float>(c_sq),
            as_ptr<const float>(mu), as_ptr<const float>(s), static_cast<SoftPrecision>(s_mode),
            as_ptr<const float>(log_prior), n, k, d, exact, as_ptr<float>(z_hat),
            as_ptr<float>(lse), as_ptr<void>(stream));
      },
      py::arg("z"), py::arg("c_centred"), py::arg("c_sq"), py::arg("mu"), py::arg("s"),
      py::arg("s_mode"), py::arg("log_prior"), py::arg("n"), py::arg("k"), py::arg("d"),
      py::arg("exact"), py::arg("z_hat"), py::arg("lse"), py::arg("stream"));
  m.def(
      "soft_quantize_backward_cuda",
      [](uintptr_t grad, uintptr_t z, uintptr_t c_centred, uintptr_t c_sq, uintptr_t mu,
         uintptr_t s, int s_mode, uintptr_t log_prior, int64_t n, int64_t k, int64_t d, bool exact,
         uintptr_t workspace, uintptr_t grad_z, uintptr_t grad_codebook, uintptr_t grad_s,
         uintptr_t grad_log_prior, uintptr_t stream) {
        latentops::soft_quantize_backward_cuda(
            as_ptr<const float>(grad), as_ptr<const float>(z), as_ptr<const float>(c_centred),
            as_ptr<const float>(c_sq), as_ptr<const float>(mu), as_ptr<const float>(s),
            static_cast<SoftPrecision>(s_mode), as_ptr<const float>(log_prior), n, k, d, exact,
            as_ptr<float>(workspace), as_ptr<float>(grad_z), as_ptr<float>(grad_codebook),
            as_ptr<float>(grad_s), as_ptr<float>(grad_log_prior), as_ptr<void>(stream));
      },
      py::arg("grad"), py::arg("z"), py::arg("c_centred"), py::arg("c_sq"), py::arg("mu"),
      py::arg("s"), py::arg("s_mode"), py::arg("log_prior"), py::arg("n"), py::arg("k"),
      py::arg("d"), py::arg("exact"), py::arg("workspace"), py::arg("grad_z"),
      py::arg("grad_codebook"), py::arg("grad_s"), py::arg("grad_log_prior"), py::arg("stream"));
#endif
}
