// PLACEHOLDER: straightforward CPU kernel, to be replaced by the fused cache-blocked one.
#include "latentops/nearest_centroid.h"

#include <limits>
#include <vector>

#include "latentops/checks.h"

namespace latentops {

void nearest_centroid_cpu(const float* z, const float* codebook, int64_t n, int64_t k, int64_t d,
                          int64_t* indices, float* sq_dist) {
  LATENTOPS_CHECK(k > 0, "codebook must have at least one row");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float best = std::numeric_limits<float>::infinity();
    int64_t best_j = 0;
    for (int64_t j = 0; j < k; ++j) {
      float acc = 0.f;
      for (int64_t t = 0; t < d; ++t) {
        float diff = z[i * d + t] - codebook[j * d + t];
        acc += diff * diff;
      }
      if (acc < best) { best = acc; best_j = j; }
    }
    indices[i] = best_j;
    float acc = 0.f;
    for (int64_t t = 0; t < d; ++t) {
      float diff = z[i * d + t] - codebook[best_j * d + t];
      acc += diff * diff;
    }
    sq_dist[i] = acc;
  }
}

}  // namespace latentops
