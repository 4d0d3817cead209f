// Bindings of the soft-quantization kernels: keyword arguments named as the fields of
// SoftQuantizeForwardParams and SoftQuantizeBackwardParams, except the codebook's: `codebook`
// (SoftCodebook::values) and, for CUDA, `codebook_sq_norms` and `codebook_mean`.
#include <utility>

#include "bindings.h"
#include "latentops/soft_quantize.h"

namespace latentops {
namespace bindings {
namespace {

// The CPU kernels take the codebook alone; the CUDA kernels take it centred (see SoftCodebook).
enum class Codebook { kAsGiven, kCentred };

SoftCodebook read_codebook(Keywords& kw, Codebook form) {
  SoftCodebook c{};
  c.values = kw.address<const float>("codebook");
  if (form == Codebook::kCentred) {
    c.sq_norms = kw.address<const float>("codebook_sq_norms");
    c.mean = kw.address<const float>("codebook_mean");
  }
  return c;
}

void read_inputs(Keywords& kw, Codebook form, SoftQuantizeInputs& p) {
  p.z = kw.address<const float>("z");
  p.codebook = read_codebook(kw, form);
  p.s = kw.address<const float>("s");
  p.log_prior = kw.address<const float>("log_prior");
  p.n = kw.value<int64_t>("n");
  p.k = kw.value<int64_t>("k");
  p.d = kw.value<int64_t>("d");
  p.s_layout = kw.code<PrecisionLayout>("s_layout");
  p.accuracy = kw.code<Accuracy>("accuracy");
}

SoftQuantizeForwardParams read_forward(Keywords& kw, Codebook form) {
  SoftQuantizeForwardParams p{};
  read_inputs(kw, form, p);
  p.z_hat = kw.address<float>("z_hat");
  p.lse = kw.address<float>("lse");
  return p;
}

SoftQuantizeBackwardParams read_backward(Keywords& kw, Codebook form) {
  SoftQuantizeBackwardParams p{};
  read_inputs(kw, form, p);
  p.grad = kw.address<const float>("grad");
  p.lse = kw.address<const float>("lse");
  p.grad_z = kw.address<float>("grad_z");
  p.grad_codebook = kw.address<float>("grad_codebook");
  p.grad_s = kw.address<float>("grad_s");
  p.grad_log_prior = kw.address<float>("grad_log_prior");
  return p;
}

}  // namespace

void bind_soft_quantize(py::module_& m) {
#ifdef LATENTOPS_WITH_CPU_KERNELS
  def_cpu(
      m, "soft_quantize_forward_cpu", [](Keywords& kw) { return read_forward(kw, Codebook::kAsGiven); },
      soft_quantize_forward_cpu, "Keywords: the fields of SoftQuantizeForwardParams (latentops/soft_quantize.h).");
  def_cpu(
      m, "soft_quantize_backward_cpu", [](Keywords& kw) { return read_backward(kw, Codebook::kAsGiven); },
      soft_quantize_backward_cpu, "Keywords: the fields of SoftQuantizeBackwardParams (latentops/soft_quantize.h).");
#endif
#ifdef LATENTOPS_WITH_CUDA
  def_cuda(
      m, "soft_quantize_forward_cuda", [](Keywords& kw) { return read_forward(kw, Codebook::kCentred); },
      soft_quantize_forward_cuda,
      "Keywords: the fields of SoftQuantizeForwardParams (latentops/soft_quantize.h) and stream.");
  def_cuda(
      m, "soft_quantize_backward_cuda",
      [](Keywords& kw) {
        return std::make_pair(read_backward(kw, Codebook::kCentred), kw.address<float>("workspace"));
      },
      [](const std::pair<SoftQuantizeBackwardParams, float*>& call, void* stream) {
        soft_quantize_backward_cuda(call.first, call.second, stream);
      },
      "Keywords: the fields of SoftQuantizeBackwardParams (latentops/soft_quantize.h), workspace and stream.");
#endif
}

}  // namespace bindings
}  // namespace latentops
