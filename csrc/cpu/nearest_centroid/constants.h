// Nearest-centroid search on the CPU: the tile geometry and floating-point constants that packing,
// the micro-kernel and the certification share.
#pragma once
#include <cstdint>
#include <limits>

namespace latentops {
namespace cpu {
namespace nearest_centroid {

constexpr int64_t kRows = 16;        // z rows per micro-tile (two 8-lane vectors)
constexpr int64_t kCols = 6;         // centroids per micro-tile
constexpr int64_t kTile = kRows * kCols;
constexpr double kUnitRoundoff = 1.0 / 16777216.0;  // 2^-24
constexpr double kSubnormalSpacing = 1.401298464324817e-45;  // 2^-149

constexpr float kInf = std::numeric_limits<float>::infinity();

}  // namespace nearest_centroid
}  // namespace cpu
}  // namespace latentops
