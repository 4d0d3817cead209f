// Nearest-centroid search on the CPU: the exact re-decision. The fast pass gives each row its best
// and second-best fp32 scores; certification accepts the fast argmin when a rigorous bound on the
// fp32 error separates the two, and otherwise rescores the candidates directly in float64.
#pragma once
#include <cstdint>

#include "pack.h"

namespace latentops {
namespace cpu {
namespace nearest_centroid {

// Turns one row's fast-pass result into the final index: accept it when the fp32 error bound
// separates best from second-best, otherwise rescore the candidates (or everything).
int64_t decide_row(const float* zrow, double zn, float s1, float s2, int32_t fast_j, const float* codebook,
                   int64_t k, int64_t d, const PreparedCodebook& pc, float* zrow_shifted);

// Direct float64 scan over every centroid: NaN distances never win, ties go to the lowest index,
// a row with only NaN distances gets index 0.
int64_t scan_all(const float* zrow, const float* codebook, int64_t k, int64_t d);

}  // namespace nearest_centroid
}  // namespace cpu
}  // namespace latentops
