// The tile shape of the CUDA nearest-centroid GEMM (csrc/cuda/nearest_centroid.cu) and the choice of
// its shared-memory configuration. Host code without CUDA, so the choice is also bound into the
// extension of a build without CUDA and tested on CPU against every shipped arch's limit.
#pragma once
#include <cstddef>
#include <cstdint>

namespace latentops {
namespace nc_tiles {

// Shared-memory tiles are arrays of 32-bit words: one fp32 element or two 16-bit elements per word.
constexpr int kBM = 256;           // z rows per block (8 warps x 32 rows); large to cut codebook re-reads
constexpr int kBN = 64;            // codebook rows per chunk; every warp covers all 64 columns
constexpr int kBKW = 32;           // words of the reduction dim per k-tile (4 mma k-steps)
constexpr int kLdw = kBKW + 4;     // row pitch in words: +4 keeps 16-byte alignment and makes the
                                   // (row g, word t) fragment reads hit 32 distinct banks
constexpr int kMaxResidentKt = 4;  // z tile kept whole in smem when d fits in 4 k-tiles (fp32 d <= 128)
constexpr int kMaxStages = 3;      // cp.async pipeline depth for the streamed tiles, when it fits
constexpr int kMinStages = 2;      // the least that still overlaps a load with the mma of the last one

// Words of the reduction dimension and k-tiles for rows of d elements of `element_bytes` bytes.
inline int row_words(int64_t d, int element_bytes) {
  return static_cast<int>(element_bytes == 4 ? d : (d + 1) / 2);
}
inline int k_tiles(int64_t d, int element_bytes) { return (row_words(d, element_bytes) + kBKW - 1) / kBKW; }

struct GemmConfig {
  bool resident;      // the block's whole z tile stays in smem (read once per row tile)
  int stages;         // cp.async stages of the streamed tiles (codebook, and z when not resident)
  size_t smem_bytes;  // dynamic shared memory per block
};

inline size_t smem_bytes(int kt, bool resident, int stages) {
  return static_cast<size_t>((resident ? kt : stages) * kBM + stages * kBN) * kLdw * 4;
}

// The fastest configuration whose dynamic shared memory fits `smem_optin` (the device's
// cudaDevAttrMaxSharedMemoryPerBlockOptin, less the kernel's static shared memory): resident z
// before streamed (one read of z per row tile instead of one per codebook chunk), then the deeper
// pipeline. smem_bytes = 0 when nothing fits (under 92,160 bytes: no arch this builds for).
inline GemmConfig choose_gemm_config(int kt, size_t smem_optin) {
  for (bool resident : {true, false}) {
    if (resident && kt > kMaxResidentKt) continue;
    for (int stages = kMaxStages; stages >= kMinStages; --stages) {
      const size_t bytes = smem_bytes(kt, resident, stages);
      if (bytes <= smem_optin) return {resident, stages, bytes};
    }
  }
  return {false, kMinStages, 0};
}

}  // namespace nc_tiles
}  // namespace latentops
