// Decode and y = x·Wᵀ on the hcsr form, on the GPU (UNVALIDATED: compiled here, never run; the
// Python layer calls it only for backend="cuda" asked for by name). Contract: latentops/compressed_linear.h.
//
// A row's bit stream is sequential, so one thread decodes one row, every bound of the contract checked
// at each step (on the GPU the checks hide behind the loads). The lookup tables sit in shared memory
// when they fit (kSmemEntries), else they are read through the read-only cache.
//   decode:  cudaMemsetAsync zeros the dense output, then each thread writes its row's kept entries.
//   forward: each thread accumulates its row's y[b][r] for a block of up to kBatchBlock batch rows in
//            registers, x read through the read-only cache (x is small and shared by every thread);
//            larger batches loop over blocks of kBatchBlock, decoding again per block. (The Python
//            launcher sends large batches to decode + a dense matmul instead.)
#include <cuda_runtime.h>

#include <cstdint>

#include "latentops/checks.h"
#include "latentops/compressed_linear.h"

namespace latentops {
namespace {

constexpr int kThreads = 128;
constexpr int kBatchBlock = 16;
constexpr int64_t kSmemEntries = 8192;  // gap + value table entries staged in shared memory (32 KB)

struct Stream {
  const uint32_t* words;
  int64_t stream_end;  // a peek at p is in bounds iff 0 ≤ p < stream_end
  const int32_t* gap_lut;
  const int32_t* value_lut;
  const float* codebook;
  int64_t cols, k;
  uint32_t gap_mask, value_mask, escape_mask;
  int32_t escape, escape_bits;
};

__device__ __forceinline__ uint32_t peek(const uint32_t* words, int64_t p) {
  const int64_t i = p >> 5;
  const uint64_t w = static_cast<uint64_t>(__ldg(words + i)) | (static_cast<uint64_t>(__ldg(words + i + 1)) << 32);
  return static_cast<uint32_t>(w >> (p & 31));
}

// Points s.gap_lut / s.value_lut at shared copies when they fit (every thread of the block calls it).
__device__ __forceinline__ void stage_tables(Stream& s, int32_t* smem, bool use_smem) {
  if (!use_smem) return;
  const int64_t n_gap = int64_t(s.gap_mask) + 1, n_value = int64_t(s.value_mask) + 1;
  for (int64_t i = threadIdx.x; i < n_gap; i += blockDim.x) smem[i] = s.gap_lut[i];
  for (int64_t i = threadIdx.x; i < n_value; i += blockDim.x) smem[n_gap + i] = s.value_lut[i];
  __syncthreads();
  s.gap_lut = smem;
  s.value_lut = smem + n_gap;
}

// Decodes row r (starting bit p, `nnz` pairs), calling put(col, value) for each kept entry, and stops
// where the contract says: a peek at or past stream_end, or a column ≥ cols.
template <typename Put>
__device__ __forceinline__ void decode_row(const Stream& s, int64_t p, int32_t nnz, Put put) {
  int64_t col = -1;
  const int64_t left = nnz < 0 ? 0 : (nnz < s.cols ? nnz : s.cols);  // columns strictly increase
  for (int64_t j = 0; j < left; ++j) {
    if (p < 0 || p >= s.stream_end) return;
    const int32_t e = s.gap_lut[peek(s.words, p) & s.gap_mask];
    p += e & 15;
    int64_t gap = e >> 4;
    if (gap == s.escape) {
      if (p >= s.stream_end) return;
      gap = int64_t(s.escape) + (peek(s.words, p) & s.escape_mask);
      p += s.escape_bits;
    }
    if (gap < 0) return;
    col += gap + 1;
    if (col >= s.cols) return;
    if (p >= s.stream_end) return;
    const int32_t v = s.value_lut[peek(s.words, p) & s.value_mask];
    p += v & 15;
    const int32_t sym = v >> 4;
    put(col, (sym >= 0 && sym < s.k) ? __ldg(s.codebook + sym) : 0.f);
  }
}

__global__ void __launch_bounds__(kThreads) cl_decode_kernel(Stream s, const int64_t* row_bits,
                                                             const int32_t* row_nnz, int64_t rows, bool use_smem,
                                                             float* dense) {
  extern __shared__ int32_t smem[];
  stage_tables(s, smem, use_smem);
  const int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= rows) return;
  float* row = dense + r * s.cols;
  decode_row(s, row_bits[r], row_nnz[r], [&](int64_t col, float v) { row[col] = v; });
}

// y[b0 + b][r] for b < nb ≤ kB.
template <int kB>
__global__ void __launch_bounds__(kThreads) cl_forward_kernel(Stream s, const int64_t* row_bits,
                                                              const int32_t* row_nnz, int64_t rows, bool use_smem,
                                                              const float* x, int64_t b0, int nb, float* y) {
  extern __shared__ int32_t smem[];
  stage_tables(s, smem, use_smem);
  const int64_t r = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (r >= rows) return;
  float acc[kB];
#pragma unroll
  for (int b = 0; b < kB; ++b) acc[b] = 0.f;
  const float* xb = x + b0 * s.cols;
  const int64_t cols = s.cols;
  decode_row(s, row_bits[r], row_nnz[r], [&](int64_t col, float v) {
#pragma unroll
    for (int b = 0; b < kB; ++b)
      if (b < nb) acc[b] = fmaf(v, __ldg(xb + b * cols + col), acc[b]);
  });
#pragma unroll
  for (int b = 0; b < kB; ++b)
    if (b < nb) y[(b0 + b) * rows + r] = acc[b];
}

Stream make_stream(const HcsrMatrix& w, const char* who) {
  LATENTOPS_CHECK(w.rows >= 0 && w.cols >= 0 && w.k >= 0 && w.n_words >= 0,
                  who << ": negative size rows=" << w.rows << " cols=" << w.cols << " k=" << w.k
                      << " n_words=" << w.n_words);
  LATENTOPS_CHECK(w.gap_bits >= 0 && w.gap_bits <= 15 && w.value_bits >= 0 && w.value_bits <= 15,
                  who << ": table bits must be in [0, 15], got gap_bits=" << w.gap_bits
                      << " value_bits=" << w.value_bits);
  LATENTOPS_CHECK(w.escape_bits >= 0 && w.escape_bits <= 31,
                  who << ": escape_bits must be in [0, 31], got " << w.escape_bits);
  LATENTOPS_CHECK(w.rows / kThreads < (int64_t(1) << 31), who << ": too many rows (" << w.rows << ")");
  Stream s{};
  s.words = w.words;
  s.stream_end = w.n_words >= 2 ? 32 * (w.n_words - 1) : 0;
  s.gap_lut = w.gap_lut;
  s.value_lut = w.value_lut;
  s.codebook = w.codebook;
  s.cols = w.cols;
  s.k = w.k;
  s.gap_mask = (1u << w.gap_bits) - 1u;
  s.value_mask = (1u << w.value_bits) - 1u;
  s.escape_mask = w.escape_bits == 0 ? 0u : (1u << w.escape_bits) - 1u;
  s.escape = w.escape;
  s.escape_bits = w.escape_bits;
  return s;
}

// Whether the tables go to shared memory, and its bytes.
size_t table_smem(const HcsrMatrix& w, bool& use_smem) {
  const int64_t entries = (int64_t(1) << w.gap_bits) + (int64_t(1) << w.value_bits);
  use_smem = entries <= kSmemEntries;
  return use_smem ? static_cast<size_t>(entries) * sizeof(int32_t) : 0;
}

template <int kB>
void launch_forward(const Stream& s, const CompressedLinearForwardParams& p, bool use_smem, size_t smem,
                    int64_t b0, int nb, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>((p.w.rows + kThreads - 1) / kThreads);
  cl_forward_kernel<kB><<<grid, kThreads, smem, stream>>>(s, p.w.row_bits, p.w.row_nnz, p.w.rows, use_smem, p.x, b0,
                                                          nb, p.y);
  LATENTOPS_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void compressed_linear_decode_cuda(const CompressedLinearDecodeParams& p, void* stream) {
  const Stream s = make_stream(p.w, "compressed_linear_decode_cuda");
  if (p.w.rows == 0 || p.w.cols == 0) return;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  LATENTOPS_CUDA_CHECK(
      cudaMemsetAsync(p.dense, 0, static_cast<size_t>(p.w.rows) * static_cast<size_t>(p.w.cols) * sizeof(float), st));
  bool use_smem = false;
  const size_t smem = table_smem(p.w, use_smem);
  const unsigned grid = static_cast<unsigned>((p.w.rows + kThreads - 1) / kThreads);
  cl_decode_kernel<<<grid, kThreads, smem, st>>>(s, p.w.row_bits, p.w.row_nnz, p.w.rows, use_smem, p.dense);
  LATENTOPS_CUDA_CHECK(cudaGetLastError());
}

void compressed_linear_forward_cuda(const CompressedLinearForwardParams& p, void* stream) {
  const Stream s = make_stream(p.w, "compressed_linear_forward_cuda");
  LATENTOPS_CHECK(p.batch >= 1, "compressed_linear_forward_cuda: batch must be ≥ 1, got " << p.batch);
  if (p.w.rows == 0) return;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (p.w.cols == 0) {
    LATENTOPS_CUDA_CHECK(cudaMemsetAsync(
        p.y, 0, static_cast<size_t>(p.batch) * static_cast<size_t>(p.w.rows) * sizeof(float), st));
    return;
  }
  bool use_smem = false;
  const size_t smem = table_smem(p.w, use_smem);
  for (int64_t b0 = 0; b0 < p.batch; b0 += kBatchBlock) {
    const int nb = static_cast<int>(p.batch - b0 < kBatchBlock ? p.batch - b0 : kBatchBlock);
    if (nb == 1)
      launch_forward<1>(s, p, use_smem, smem, b0, nb, st);
    else if (nb <= 4)
      launch_forward<4>(s, p, use_smem, smem, b0, nb, st);
    else if (nb <= 8)
      launch_forward<8>(s, p, use_smem, smem, b0, nb, st);
    else
      launch_forward<16>(s, p, use_smem, smem, b0, nb, st);
  }
}

}  // namespace latentops
