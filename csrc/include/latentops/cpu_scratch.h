// Scratch memory and OpenMP thread queries shared by the CPU kernels.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace latentops {

// 64-byte aligned scratch, freed on scope exit. Allocated outside parallel regions only, so a
// std::bad_alloc never has to cross an OpenMP boundary.
template <typename T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t count) { reset(count); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& other) noexcept : ptr_(other.ptr_) { other.ptr_ = nullptr; }
  ~AlignedBuffer() { std::free(ptr_); }
  // `zero`: clear everything; otherwise only the slack past `count` (over-reads of vector loads
  // see zeros there), and the caller writes all `count` elements itself.
  void reset(size_t count, bool zero = true) {
    std::free(ptr_);
    ptr_ = nullptr;
    // Room for 16 extra elements: vector loads may read a few lanes past the last real one.
    const size_t bytes = ((count + 16) * sizeof(T) + 63) / 64 * 64;
    ptr_ = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (ptr_ == nullptr) throw std::bad_alloc();
    const size_t skip = zero ? 0 : count * sizeof(T);
    std::memset(reinterpret_cast<char*>(ptr_) + skip, 0, bytes - skip);
  }
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

inline int max_threads() {
#ifdef _OPENMP
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace latentops
