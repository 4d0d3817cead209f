// Bindings of the nearest-centroid kernels: keyword arguments named as NearestCentroidParams' fields.
#include <utility>

#include "bindings.h"
#include "latentops/nearest_centroid.h"
#include "latentops/nearest_centroid_tiles.h"

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
  // Host code, bound in every build: which shared-memory configuration the CUDA GEMM takes for rows
  // of d elements of element_bytes bytes under a device limit (tested on CPU against each arch's).
  m.def(
      "nearest_centroid_cuda_gemm_config",
      [](int64_t d, int element_bytes, size_t smem_optin) {
        const auto config = nc_tiles::choose_gemm_config(nc_tiles::k_tiles(d, element_bytes), smem_optin);
        return py::make_tuple(config.resident, config.stages, config.smem_bytes);
      },
      py::kw_only(), py::arg("d"), py::arg("element_bytes"), py::arg("smem_optin"),
      "(resident z tile, cp.async stages, dynamic shared-memory bytes); bytes 0 when nothing fits.");
#ifdef LATENTOPS_WITH_CUDA
  m.def(
      "nearest_centroid_cuda_workspace_bytes",
      [](int64_t n, int64_t k, int64_t d, int accuracy) {
        return nearest_centroid_cuda_workspace_bytes(n, k, d, static_cast<Accuracy>(accuracy));
      },
      py::kw_only(), py::arg("n"), py::arg("k"), py::arg("d"), py::arg("accuracy"));
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
