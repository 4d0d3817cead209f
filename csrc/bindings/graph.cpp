// Bindings of the similarity-graph kernels: keyword arguments named as the fields of
// SimilarityGraphParams and SimilarityGraphBackwardParams.
#include "bindings.h"
#include "latentops/graph.h"

namespace latentops {
namespace bindings {
namespace {

void read_inputs(Keywords& kw, GraphInputs& p) {
  p.xs = kw.address<const float* const>("xs");
  p.dims = kw.address<const int64_t>("dims");
  p.g = kw.value<int64_t>("g");
  p.n = kw.value<int64_t>("n");
}

SimilarityGraphParams read_similarity(Keywords& kw) {
  SimilarityGraphParams p{};
  read_inputs(kw, p);
  p.metric = kw.code<GraphMetric>("metric");
  p.sigma = kw.value<float>("sigma");
  p.relu = kw.value<bool>("relu");
  p.w = kw.address<float>("w");
  p.stats = kw.address<float>("stats");
  return p;
}

SimilarityGraphBackwardParams read_backward(Keywords& kw) {
  SimilarityGraphBackwardParams p{};
  read_inputs(kw, p);
  p.rowptr = kw.address<const int64_t>("rowptr");
  p.col = kw.address<const int64_t>("col");
  p.coef = kw.address<const float>("coef");
  p.alpha = kw.address<const float>("alpha");
  p.beta = kw.address<const float>("beta");
  p.gamma = kw.address<const float>("gamma");
  p.grads = kw.address<float* const>("grads");
  return p;
}

}  // namespace

void bind_graph(py::module_& m) {
#ifdef LATENTOPS_WITH_CPU_KERNELS
  m.def(
      "similarity_graph_cpu",
      [](py::kwargs kwargs) {
        Keywords kw("similarity_graph_cpu", std::move(kwargs));
        const SimilarityGraphParams p = read_similarity(kw);
        kw.check_all_read();
        py::gil_scoped_release release;
        similarity_graph_cpu(p);
      },
      "Keywords: the fields of SimilarityGraphParams (latentops/graph.h).");
  m.def(
      "similarity_graph_sparse_backward_cpu",
      [](py::kwargs kwargs) {
        Keywords kw("similarity_graph_sparse_backward_cpu", std::move(kwargs));
        const SimilarityGraphBackwardParams p = read_backward(kw);
        kw.check_all_read();
        py::gil_scoped_release release;
        similarity_graph_sparse_backward_cpu(p);
      },
      "Keywords: the fields of SimilarityGraphBackwardParams (latentops/graph.h).");
#endif
#ifdef LATENTOPS_WITH_CUDA
  m.def(
      "similarity_graph_cuda",
      [](py::kwargs kwargs) {
        Keywords kw("similarity_graph_cuda", std::move(kwargs));
        const SimilarityGraphParams p = read_similarity(kw);
        void* stream = kw.address<void>("stream");
        kw.check_all_read();
        similarity_graph_cuda(p, stream);
      },
      "Keywords: the fields of SimilarityGraphParams (latentops/graph.h) and stream.");
  m.def(
      "similarity_graph_sparse_backward_cuda",
      [](py::kwargs kwargs) {
        Keywords kw("similarity_graph_sparse_backward_cuda", std::move(kwargs));
        const SimilarityGraphBackwardParams p = read_backward(kw);
        void* stream = kw.address<void>("stream");
        kw.check_all_read();
        similarity_graph_sparse_backward_cuda(p, stream);
      },
      "Keywords: the fields of SimilarityGraphBackwardParams (latentops/graph.h) and stream.");
#endif
}

}  // namespace bindings
}  // namespace latentops
