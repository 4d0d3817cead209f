// Bindings of the compressed-linear kernels: keyword arguments named as the fields of
// CompressedLinearDecodeParams / CompressedLinearForwardParams, the HcsrMatrix fields flattened
// (words, n_words, row_bits, row_nnz, gap_lut, value_lut, codebook, rows, cols, k, gap_bits,
// value_bits, escape, escape_bits).
#include "bindings.h"
#include "latentops/compressed_linear.h"

namespace latentops {
namespace bindings {
namespace {

HcsrMatrix read_matrix(Keywords& kw) {
  HcsrMatrix w{};
  w.words = kw.address<const uint32_t>("words");
  w.n_words = kw.value<int64_t>("n_words");
  w.row_bits = kw.address<const int64_t>("row_bits");
  w.row_nnz = kw.address<const int32_t>("row_nnz");
  w.gap_lut = kw.address<const int32_t>("gap_lut");
  w.value_lut = kw.address<const int32_t>("value_lut");
  w.codebook = kw.address<const float>("codebook");
  w.rows = kw.value<int64_t>("rows");
  w.cols = kw.value<int64_t>("cols");
  w.k = kw.value<int64_t>("k");
  w.gap_bits = kw.value<int32_t>("gap_bits");
  w.value_bits = kw.value<int32_t>("value_bits");
  w.escape = kw.value<int32_t>("escape");
  w.escape_bits = kw.value<int32_t>("escape_bits");
  return w;
}

CompressedLinearDecodeParams read_decode(Keywords& kw) {
  CompressedLinearDecodeParams p{};
  p.w = read_matrix(kw);
  p.dense = kw.address<float>("dense");
  return p;
}

CompressedLinearForwardParams read_forward(Keywords& kw) {
  CompressedLinearForwardParams p{};
  p.w = read_matrix(kw);
  p.x = kw.address<const float>("x");
  p.batch = kw.value<int64_t>("batch");
  p.y = kw.address<float>("y");
  return p;
}

}  // namespace

void bind_compressed_linear(py::module_& m) {
#ifdef LATENTOPS_WITH_CPU_KERNELS
  def_cpu(m, "compressed_linear_decode_cpu", read_decode, compressed_linear_decode_cpu,
          "Keywords: the fields of CompressedLinearDecodeParams (latentops/compressed_linear.h), the matrix's "
          "flattened.");
  def_cpu(m, "compressed_linear_forward_cpu", read_forward, compressed_linear_forward_cpu,
          "Keywords: the fields of CompressedLinearForwardParams (latentops/compressed_linear.h), the matrix's "
          "flattened.");
#endif
#ifdef LATENTOPS_WITH_CUDA
  def_cuda(m, "compressed_linear_decode_cuda", read_decode, compressed_linear_decode_cuda,
           "Keywords: the fields of CompressedLinearDecodeParams (latentops/compressed_linear.h), the matrix's "
           "flattened, and stream.");
  def_cuda(m, "compressed_linear_forward_cuda", read_forward, compressed_linear_forward_cuda,
           "Keywords: the fields of CompressedLinearForwardParams (latentops/compressed_linear.h), the matrix's "
           "flattened, and stream.");
#endif
}

}  // namespace bindings
}  // namespace latentops
