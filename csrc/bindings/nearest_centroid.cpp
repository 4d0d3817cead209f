// Bindings of the nearest-centroid kernels: keyword arguments named as NearestCentroidParams' fields.
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
  m.def(
      "nearest_centroid_cpu",
      [](py::kwargs kwargs) {
        Keywords kw("nearest_centroid_cpu", std::move(kwargs));
        const NearestCentroidParams p = read_params(kw);
        kw.check_all_read();
        py::gil_scoped_release release;
        nearest_centroid_cpu(p);
      },
      "Keywords: the fields of NearestCentroidParams (latentops/nearest_centroid.h).");
#endif
#ifdef LATENTOPS_WITH_CUDA
  m.def("nearest_centroid_cuda_workspace_bytes", &nearest_centroid_cuda_workspace_bytes, py::kw_only(),
        py::arg("n"), py::arg("k"), py::arg("d"));
  m.def(
      "nearest_centroid_cuda",
      [](py::kwargs kwargs) {
        Keywords kw("nearest_centroid_cuda", std::move(kwargs));
        const NearestCentroidParams p = read_params(kw);
        void* workspace = kw.address<void>("workspace");
        void* stream = kw.address<void>("stream");
        kw.check_all_read();
        nearest_centroid_cuda(p, workspace, stream);
      },
      "Keywords: the fields of NearestCentroidParams (latentops/nearest_centroid.h), workspace and stream.");
#endif
}

}  // namespace bindings
}  // namespace latentops
