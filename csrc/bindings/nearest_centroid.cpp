// Bindings of the nearest-centroid kernels: keyword arguments named as NearestCentroidParams' fields.
#include <utility>

#include "bindings.h"
#include "latentops/nearest_centroid.h"

namespace latentops {
namespace bindings {
namespace {

NearestCentroidParams read_params(Keywords& kw) {
  NearestCentroidParams p{};
  p.z = kw.address<const void>("z");
  p.codebook = kw.address<const void>("codebook");
  p.n = kw.value<int64_t>("n");
  p.k = kw.value<int64_t>("k");
  p.d = kw.value<int64_t>("d");
  p.dtype = kw.code<DType>("dtype");
  p.accuracy = kw.code<Accuracy>("accuracy");
  p.indices = kw.address<int64_t>("indices");
  p.sq_dist = kw.address<float>("sq_dist");
  return p;
}

}  // namespace

void bind_nearest_centroid(py::module_& m) {
#ifdef LATENTOPS_WITH_CPU_KERNELS
  def_cpu(m, "nearest_centroid_cpu", read_params, nearest_centroid_cpu,
          "Keywords: the fields of NearestCentroidParams (latentops/nearest_centroid.h).");
#endif
#ifdef LATENTOPS_WITH_CUDA
  m.def("nearest_centroid_cuda_workspace_bytes", &nearest_centroid_cuda_workspace_bytes, py::kw_only(),
        py::arg("n"), py::arg("k"), py::arg("d"));
  def_cuda(
      m, "nearest_centroid_cuda",
      [](Keywords& kw) { return std::make_pair(read_params(kw), kw.address<void>("workspace")); },
      [](const std::pair<NearestCentroidParams, void*>& call, void* stream) {
        nearest_centroid_cuda(call.first, call.second, stream);
      },
      "Keywords: the fields of NearestCentroidParams (latentops/nearest_centroid.h), workspace and stream.");
#endif
}

}  // namespace bindings
}  // namespace latentops
