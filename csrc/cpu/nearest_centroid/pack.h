// Nearest-centroid search on the CPU: the codebook and the z rows in the layouts the micro-kernel
// reads. The codebook is packed once per call into 6-centroid groups ([t][6]), split into chunks of
// the shared dimension for large d; z rows are packed a block at a time into 16-row panels ([t][16]).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "constants.h"
#include "latentops/cpu_scratch.h"

namespace latentops {
namespace cpu {
namespace nearest_centroid {

// How the shared dimension is split into chunks, and where a (chunk, group) panel of the packed
// codebook starts. The packed codebook is chunk-major so that one chunk of a block of groups is
// contiguous (no cache-set conflicts for power-of-two d).
struct Chunks {
  int64_t groups = 0;
  std::vector<int64_t> start;  // size count + 1
  int64_t count() const { return static_cast<int64_t>(start.size()) - 1; }
  int64_t length(int64_t c) const { return start[c + 1] - start[c]; }
  int64_t max_length() const {
    int64_t m = 0;
    for (int64_t c = 0; c < count(); ++c) m = std::max(m, length(c));
    return m;
  }
  int64_t panel_offset(int64_t c, int64_t g) const {
    return start[c] * kCols * groups + g * length(c) * kCols;
  }
};

// The codebook as the micro-kernel reads it, plus what the error bound needs.
struct PreparedCodebook {
  Chunks chunks;
  std::vector<float> shift;   // μ (zeros when no shift pays)
  bool shifted = false;
  AlignedBuffer<float> packed;  // chunk-major, [group][t][6] within a chunk; excluded rows are zero
  AlignedBuffer<float> bias;    // ½‖c'_j‖² per padded centroid; +inf for excluded / padding
  double max_norm = 0.0;        // max ‖c'_j‖ over included centroids
  int64_t included = 0;
};

// Packs the finite, distinct rows of the codebook (k x d); `dedup`: also drop bitwise duplicates
// (the first copy stays). Chooses the shift μ and computes the bound's max‖c'‖.
void prepare_codebook(const float* codebook, int64_t k, int64_t d, bool dedup, PreparedCodebook& pc);

// Packs 16 rows of z − μ into [t][16] and returns their squared norms in float (upper bound
// inflated by the float summation error, so the error bound stays rigorous).
void pack_panel(const float* const* src, const float* mu, int64_t d, float* panel, double* norm);

}  // namespace nearest_centroid
}  // namespace cpu
}  // namespace latentops
