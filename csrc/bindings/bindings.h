// What the binding files share: each family's registration function (called by module.cpp) and
// Keywords, which reads the keyword arguments of a kernel call into the kernel's params struct.
// Tensors cross as raw addresses (Python ints): the module does not link libtorch.
#pragma once
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace latentops {
namespace bindings {

namespace py = pybind11;

// Each registers its family's functions: the CPU ones where the module has the CPU kernels
// (LATENTOPS_WITH_CPU_KERNELS), the CUDA ones where it has CUDA (LATENTOPS_WITH_CUDA).
void bind_nearest_centroid(py::module_& m);
void bind_soft_quantize(py::module_& m);
void bind_graph(py::module_& m);
void bind_compressed_linear(py::module_& m);

// The keyword arguments of one kernel call: every kernel function takes keywords only, so a call
// names each field, and check_all_read() turns a misspelt or unexpected name into a TypeError
// instead of a field left at zero.
class Keywords {
 public:
  Keywords(const char* function, py::kwargs kwargs) : function_(function), kwargs_(std::move(kwargs)) {}

  // A buffer's address (a Python int; 0 for null).
  template <typename T>
  T* address(const char* name) {
    return reinterpret_cast<T*>(read<uintptr_t>(name));
  }
  // A size, a float or a flag.
  template <typename T>
  T value(const char* name) {
    return read<T>(name);
  }
  // A kernel enum (latentops/enums.h) from its int code (latentops.kernel_enums).
  template <typename Enum>
  Enum code(const char* name) {
    return static_cast<Enum>(read<int>(name));
  }

  void check_all_read() const {
    std::string unexpected;
    for (const auto& item : kwargs_) {
      const std::string name = py::str(item.first);
      if (std::find(read_.begin(), read_.end(), name) == read_.end()) unexpected += " '" + name + "'";
    }
    if (!unexpected.empty()) throw py::type_error(std::string(function_) + "() got unexpected keyword arguments:" + unexpected);
  }

 private:
  template <typename T>
  T read(const char* name) {
    if (!kwargs_.contains(name)) throw py::type_error(std::string(function_) + "() missing keyword argument '" + name + "'");
    read_.emplace_back(name);
    try {
      return kwargs_[name].template cast<T>();
    } catch (const py::cast_error&) {
      throw py::type_error(std::string(function_) + "(): keyword argument '" + name + "' has the wrong type (" +
                           std::string(py::str(py::type::of(kwargs_[name]))) + ")");
    }
  }

  const char* function_;
  py::kwargs kwargs_;
  std::vector<std::string> read_;
};

// Registers the CPU kernel function `name`: read(kw) builds its params struct from the keyword
// arguments, then kernel(params) runs without the GIL.
template <typename Read, typename Kernel>
void def_cpu(py::module_& m, const char* name, Read read, Kernel kernel, const char* doc) {
  m.def(
      name,
      [name, read, kernel](py::kwargs kwargs) {
        Keywords kw(name, std::move(kwargs));
        const auto params = read(kw);
        kw.check_all_read();
        py::gil_scoped_release release;
        kernel(params);
      },
      doc);
}

// Registers the CUDA kernel function `name`: as def_cpu, plus the keyword `stream` (a cudaStream_t
// as an int), and kernel(params, stream) keeps the GIL (it only enqueues work).
template <typename Read, typename Kernel>
void def_cuda(py::module_& m, const char* name, Read read, Kernel kernel, const char* doc) {
  m.def(
      name,
      [name, read, kernel](py::kwargs kwargs) {
        Keywords kw(name, std::move(kwargs));
        const auto params = read(kw);
        void* stream = kw.address<void>("stream");
        kw.check_all_read();
        kernel(params, stream);
      },
      doc);
}

}  // namespace bindings
}  // namespace latentops
