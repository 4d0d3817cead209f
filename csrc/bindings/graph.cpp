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
  def_cpu(m, "similarity_graph_cpu", read_similarity, similarity_graph_cpu,
          "Keywords: the fields of SimilarityGraphParams (latentops/graph.h).");
  def_cpu(m, "similarity_graph_sparse_backward_cpu", read_backward, similarity_graph_sparse_backward_cpu,
          "Keywords: the fields of SimilarityGraphBackwardParams (latentops/graph.h).");
#endif
#ifdef LATENTOPS_WITH_CUDA
  def_cuda(m, "similarity_graph_cuda", read_similarity, similarity_graph_cuda,
           "Keywords: the fields of SimilarityGraphParams (latentops/graph.h) and stream.");
  def_cuda(m, "similarity_graph_sparse_backward_cuda", read_backward, similarity_graph_sparse_backward_cuda,
           "Keywords: the fields of SimilarityGraphBackwardParams (latentops/graph.h) and stream.");
#endif
}

}  // namespace bindings
}  // namespace latentops
