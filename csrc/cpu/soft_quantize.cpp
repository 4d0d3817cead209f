// Posterior-mean soft quantization on the CPU, flash-style: row blocks x centroid blocks, the
// n x k logits never leave a per-thread tile.
//
// Distances use the expanded form ‖z'‖² + ‖c'‖² − 2 z'·c' with z' = z − μ and c' = c − μ shifted by
// the codebook mean μ (the shift keeps the fp32 dot products small for data far from the origin,
// and z − c = z' − c' exactly when both subtractions are exact, as they are for offset data). The
// posterior mean is accumulated as μ + Σ p c' for the same reason.
//
// Every matrix product is one register-blocked AVX2 micro-kernel (6 output rows x 16 columns,
// broadcast A, vector B, 12 accumulators) over buffers whose vector dimension is padded to 8:
//   forward : dot = Z'·C'ᵀ (per block), online max / exp / row sums, acc += P·C' (rescaled when the
//             running max moves);
//   backward: two sweeps over the codebook per row block, each starting with G·C'ᵀ and Z'·C'ᵀ.
//             Sweep 1 refines lse (the stored one is float) and gets δ_n = Σ_k p g·c' (consistent
//             with the a_nk below, so one-hot rows give a = 0 exactly) and E_p[dist] (a per-row
//             shift that keeps the row-summed grad_s free of cancellation). Sweep 2: p, a = p(g·c' − δ)
//             and w = a·s overwrite the tile in place; grad_z acc += W·C'; grad_c acc += [P; W]ᵀ[G; Z']
//             (one product over 2R rows), finished as Σ(p g + w z') − c'·Σ w.
//             When the codebook is moderate (kpad ≤ 8192), sweep 1 keeps its g·c' and z'·c' tiles and
//             p₁ = exp(l − stored lse) for the whole row block (3 x R x kpad floats per thread), and
//             sweep 2 reuses them (p = p₁ / Σ p₁) instead of redoing both products and the exp.
// Logits are formed in float64 from the fp32 dot products (|l| reaches thousands for large s·d, and
// the softmax needs l − max to float accuracy). exp is a Cephes-style polynomial (about 1 ulp);
// arguments below −87 give exactly 0 so nothing denormal reaches the products.
//
// Memory: the shifted codebook twice (row-major and block-transposed), O(k) side arrays, per thread
// one R x Kb tile pair and R x d accumulators, plus for the backward a k x d grad_c accumulator,
// O(k) column sums and (k ≤ 8192) the 3 x R x k sweep-1 cache per thread. Never n x k.
#include "latentops/soft_quantize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "latentops/checks.h"
#include "latentops/cpu_gemm.h"
#include "latentops/cpu_scratch.h"
#include "latentops/cpu_simd.h"

namespace latentops {
namespace {

using cpu::gemm;
using cpu::hsum;
using cpu::hsum_pd;

constexpr int64_t kRowBlock = 48;   // z rows per work item (multiple of kGemmRows)
constexpr int64_t kColBlock = 128;  // centroids per tile (multiple of 16)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

using Buffer = AlignedBuffer<float>;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Lanes [0, count) set.
inline __m256i lane_mask(int64_t count) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), idx);
}

// exp(x), Cephes polynomial on a range-reduced argument; x < −87 gives 0 (no denormals), NaN stays
// NaN, x is at most 0 here in practice but anything up to 88.7 is handled.
inline __m256 exp256(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, y);
}

// The codebook as the kernels read it.
struct Prepared {
  int64_t k = 0, d = 0, dp = 0;     // dp: d padded to 8
  int64_t kpad = 0, blocks = 0;     // kpad = blocks · kColBlock
  std::vector<float> mu;            // codebook mean (d)
  Buffer c_rows;                    // c' row-major, kpad x dp, zero padding
  Buffer c_cols;                    // per block of kColBlock centroids: [t][kColBlock] (d x kColBlock)
  Buffer c_sq;                      // ‖c'_k‖² (kpad)
  std::vector<double> c_sq_d;       // the same in float64, for the logits
  Buffer bias;                      // b_k, padding −inf (kpad)
  Buffer s_col;                     // s_k for kPerCentroid (kpad, padding 0)
};

void prepare(const float* codebook, const float* s, PrecisionLayout mode, const float* log_prior, int64_t k,
             int64_t d, Prepared& pc) {
  pc.k = k;
  pc.d = d;
  pc.dp = round_up(d, 8);
  pc.blocks = (k + kColBlock - 1) / kColBlock;
  pc.kpad = pc.blocks * kColBlock;
  const int64_t dp = pc.dp;
  const bool parallel = k * d > 65536;
  const int nthreads = parallel ? max_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(nthreads) * d, 0.0);
#pragma omp parallel num_threads(nthreads) if (parallel)
  {
    double* acc = partial.data() + static_cast<size_t>(thread_id()) * d;
#pragma omp for schedule(static)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t t = 0; t < d; ++t) acc[t] += codebook[j * d + t];
  }
  pc.mu.assign(static_cast<size_t>(d), 0.f);
  for (int64_t t = 0; t < d; ++t) {
    double sum = 0.0;
    for (int i = 0; i < nthreads; ++i) sum += partial[static_cast<size_t>(i) * d + t];
    pc.mu[t] = static_cast<float>(sum / static_cast<double>(k));
  }
  pc.c_rows.reset(static_cast<size_t>(pc.kpad * dp));
  pc.c_cols.reset(static_cast<size_t>(pc.kpad * d));
  pc.c_sq.reset(static_cast<size_t>(pc.kpad));
  pc.bias.reset(static_cast<size_t>(pc.kpad));
  pc.s_col.reset(static_cast<size_t>(pc.kpad));
  float* rows = pc.c_rows.get();
  float* cols = pc.c_cols.get();
  float* sq = pc.c_sq.get();
  float* bias = pc.bias.get();
  const float* mu = pc.mu.data();
  pc.c_sq_d.assign(static_cast<size_t>(pc.kpad), 0.0);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t blk = 0; blk < pc.blocks; ++blk) {
    for (int64_t j = blk * kColBlock; j < std::min(k, (blk + 1) * kColBlock); ++j) {
      const int64_t col = j - blk * kColBlock;
      double total = 0.0;
      for (int64_t t = 0; t < d; ++t) {
        const float x = codebook[j * d + t] - mu[t];
        rows[j * dp + t] = x;
        cols[blk * kColBlock * d + t * kColBlock + col] = x;
        total += static_cast<double>(x) * x;
      }
      sq[j] = static_cast<float>(total);
      pc.c_sq_d[j] = total;
    }
  }
  for (int64_t j = 0; j < pc.kpad; ++j) bias[j] = j < k ? (log_prior ? log_prior[j] : 0.f) : kNegInf;
  if (mode == PrecisionLayout::kPerCentroid) std::memcpy(pc.s_col.get(), s, static_cast<size_t>(k) * sizeof(float));
}

// Loads 8 values of s_nk for row `row`, centroids [j, j + 8) (only `valid` of them are real).
template <PrecisionLayout M>
inline __m256 load_s(const float* s, const float* s_col, int64_t row, int64_t k, int64_t j, int64_t valid) {
  if (M == PrecisionLayout::kScalar) return _mm256_set1_ps(s[0]);
  if (M == PrecisionLayout::kPerRow) return _mm256_set1_ps(s[row]);
  if (M == PrecisionLayout::kPerCentroid) return _mm256_loadu_ps(s_col + j);
  const float* p = s + row * k + j;
  return valid >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(valid));
}

// Squared distance from the expanded form; rounding can make it slightly negative.
inline __m256 sq_distance(__m256 zn, const float* c_sq, const float* dot) {
  const __m256 v = _mm256_fnmadd_ps(_mm256_set1_ps(2.f), _mm256_loadu_ps(dot), _mm256_add_ps(zn, _mm256_loadu_ps(c_sq)));
  return _mm256_max_ps(v, _mm256_setzero_ps());
}

// The logits l = −½ s ‖z' − c'‖² + b of 8 centroids, as two float64 halves: the distance and the logit
// in float64, because |l| can be in the thousands (or beyond 1e9) while the softmax needs l − max to a
// few ulps of float.
inline void logits_pd(__m256d zn, const double* c_sq, const float* dot, __m256 sv, const float* bias, __m256d (&l)[2]) {
  const __m256 dot_f = _mm256_loadu_ps(dot);
  const __m256 b_f = _mm256_loadu_ps(bias);
  const __m256d zero = _mm256_setzero_pd(), minus_half = _mm256_set1_pd(-0.5), two = _mm256_set1_pd(2.0);
  for (int h = 0; h < 2; ++h) {
    const __m128 dot4 = h ? _mm256_extractf128_ps(dot_f, 1) : _mm256_castps256_ps128(dot_f);
    const __m128 s4 = h ? _mm256_extractf128_ps(sv, 1) : _mm256_castps256_ps128(sv);
    const __m128 b4 = h ? _mm256_extractf128_ps(b_f, 1) : _mm256_castps256_ps128(b_f);
    __m256d dist = _mm256_fnmadd_pd(two, _mm256_cvtps_pd(dot4), _mm256_add_pd(zn, _mm256_loadu_pd(c_sq + 4 * h)));
    dist = _mm256_max_pd(dist, zero);
    l[h] = _mm256_fmadd_pd(_mm256_mul_pd(minus_half, _mm256_cvtps_pd(s4)), dist, _mm256_cvtps_pd(b4));
  }
}

// (l − ref) for 8 centroids, rounded to float only after the subtraction.
inline __m256 logit_minus(__m256d zn, const double* c_sq, const float* dot, __m256 sv, const float* bias, __m256d ref) {
  __m256d l[2];
  logits_pd(zn, c_sq, dot, sv, bias, l);
  return _mm256_set_m128(_mm256_cvtpd_ps(_mm256_sub_pd(l[1], ref)), _mm256_cvtpd_ps(_mm256_sub_pd(l[0], ref)));
}

// max(m, the 8 logits) in float64. The maximum must come from the very values that logit_minus
// subtracts it from: a float32 maximum is off by an ulp of |l| (64 at |l| = 1e9), which pushed every
// exp(l − max) below the underflow cutoff (0/0 = NaN) or past the overflow clamp.
inline __m256d logit_max(__m256d m, __m256d zn, const double* c_sq, const float* dot, __m256 sv, const float* bias) {
  __m256d l[2];
  logits_pd(zn, c_sq, dot, sv, bias, l);
  // max_pd returns its second operand when either is NaN: m first, so a NaN logit reaches the max.
  return _mm256_max_pd(_mm256_max_pd(m, l[0]), l[1]);
}

// A running maximum that is still −inf is replaced by 0 before it meets arithmetic, so that
// exp(−inf − m) = 0 and no −inf − (−inf) appears (a log prior may hold −inf).
inline double finite_or_zero(double m) { return m == -std::numeric_limits<double>::infinity() ? 0.0 : m; }

// The largest lane, or NaN when a lane is NaN.
inline double hmax_pd(__m256d v) {
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, v);
  double m = lanes[0];
  for (int i = 1; i < 4; ++i) m = std::isnan(lanes[i]) ? lanes[i] : std::max(m, lanes[i]);
  return m;
}

// Copies rows [row0, row0 + rows) of x (n x d) minus `shift` (or not) into a zero-padded R x dp panel;
// returns ‖row‖² of the stored values in sq (when not null).
void load_rows(const float* x, const float* shift, int64_t row0, int64_t rows, int64_t d, int64_t dp, float* panel,
               float* sq, double* sq_d = nullptr) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + (row0 + r) * d;
    float* dst = panel + r * dp;
    double total = 0.0;
    for (int64_t t = 0; t < d; ++t) {
      const float v = shift ? src[t] - shift[t] : src[t];
      dst[t] = v;
      total += static_cast<double>(v) * v;
    }
    if (sq) sq[r] = static_cast<float>(total);
    if (sq_d) sq_d[r] = total;
  }
}

struct ForwardScratch {
  Buffer zp, tile, acc, zn, sum;
  std::vector<double> m;  // running row maxima, in float64 like the logits they are subtracted from
};

template <PrecisionLayout M>
void forward_block(const float* z, const float* s, const Prepared& pc, int64_t row0, int64_t rows, ForwardScratch& w,
                   float* z_hat, float* lse) {
  const int64_t d = pc.d, dp = pc.dp, k = pc.k;
  float* zp = w.zp.get();
  float* tile = w.tile.get();
  float* acc = w.acc.get();
  float* zn = w.zn.get();
  double* m = w.m.data();
  float* sum = w.sum.get();
  double zn_d_row[kRowBlock];
  load_rows(z, pc.mu.data(), row0, rows, d, dp, zp, zn, zn_d_row);
  std::fill(acc, acc + rows * dp, 0.f);
  std::fill(m, m + rows, -std::numeric_limits<double>::infinity());
  std::fill(sum, sum + rows, 0.f);

  for (int64_t blk = 0; blk < pc.blocks; ++blk) {
    const int64_t j0 = blk * kColBlock;
    const int64_t kb = std::min(kColBlock, k - j0);
    const int64_t kb8 = round_up(kb, 8);
    gemm(rows, kb8, d, zp, dp, 1, pc.c_cols.get() + j0 * d, kColBlock, tile, kColBlock, false);
    const float* c_sq = pc.c_sq.get() + j0;
    const float* bias = pc.bias.get() + j0;
    const float* s_col = pc.s_col.get();
    for (int64_t r = 0; r < rows; ++r) {
      float* t_row = tile + r * kColBlock;
      const int64_t row = row0 + r;
      const __m256d zn_d = _mm256_set1_pd(zn_d_row[r]);
      const double* c_sq_d = pc.c_sq_d.data() + j0;
      __m256d mx = _mm256_set1_pd(-std::numeric_limits<double>::infinity());
      for (int64_t j = 0; j < kb8; j += 8) {
        // Padding columns have bias −inf and s 0 (or masked 0), so their logit is −inf.
        mx = logit_max(mx, zn_d, c_sq_d + j, t_row + j, load_s<M>(s, s_col, row, k, j0 + j, kb - j), bias + j);
      }
      const double tile_max = hmax_pd(mx);
      if (tile_max > m[r] || std::isnan(tile_max)) {  // a NaN logit makes the row NaN
        const float scale = static_cast<float>(std::exp(m[r] - tile_max));  // 0 at first
        sum[r] *= scale;
        float* a = acc + r * dp;
        for (int64_t t = 0; t < dp; ++t) a[t] *= scale;
        m[r] = tile_max;
      }
      const __m256d mv = _mm256_set1_pd(finite_or_zero(m[r]));
      __m256 total = _mm256_setzero_ps();
      for (int64_t j = 0; j < kb8; j += 8) {
        const __m256 sv = load_s<M>(s, s_col, row, k, j0 + j, kb - j);
        const __m256 p = exp256(logit_minus(zn_d, c_sq_d + j, t_row + j, sv, bias + j, mv));
        _mm256_storeu_ps(t_row + j, p);
        total = _mm256_add_ps(total, p);
      }
      sum[r] += hsum(total);
    }
    gemm(rows, dp, kb, tile, kColBlock, 1, pc.c_rows.get() + j0 * dp, dp, acc, dp, true);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float inv = 1.f / sum[r];
    float* out = z_hat + (row0 + r) * d;
    const float* a = acc + r * dp;
    for (int64_t t = 0; t < d; ++t) out[t] = pc.mu[t] + a[t] * inv;
    lse[row0 + r] = static_cast<float>(m[r] + std::log(static_cast<double>(sum[r])));
  }
}

struct BackwardScratch {
  Buffer gz, tile, acc, zn, delta, row_w, row_s, dist_ref;
  std::vector<double> lse;
  std::vector<double> block_ref;  // with the cache: blocks x R
  Buffer grad_c;  // kpad x dp
  std::vector<double> col_w, col_a, col_s;  // Σ_n w_nk, Σ_n a_nk, Σ_n dL/ds_nk (per centroid)
  Buffer tile_cols;                         // per-tile column sums (3 x kColBlock)
  Buffer cache;  // when k is moderate, sweep 1's tiles for all blocks (blocks x 3R x kColBlock): g·c', z'·c', p
  double s_total = 0.0;
};

// Tile rows [0, R): g·c'; rows [R, 2R): z'·c' (rows past the batch end are not computed).
void backward_products(const Prepared& pc, const float* gz, int64_t rows, int64_t j0, int64_t kb8, float* tile) {
  const int64_t d = pc.d, dp = pc.dp;
  const float* cols = pc.c_cols.get() + j0 * d;
  gemm(rows, kb8, d, gz, dp, 1, cols, kColBlock, tile, kColBlock, false);
  gemm(rows, kb8, d, gz + kRowBlock * dp, dp, 1, cols, kColBlock, tile + kRowBlock * kColBlock, kColBlock, false);
}

template <PrecisionLayout M>
void backward_block(const float* grad, const float* z, const float* s, const Prepared& pc, const float* lse_in,
                    int64_t row0, int64_t rows, BackwardScratch& w, float* grad_z, float* grad_s) {
  const int64_t d = pc.d, dp = pc.dp, k = pc.k;
  constexpr int64_t R = kRowBlock;
  constexpr bool kRowConstant = M == PrecisionLayout::kScalar || M == PrecisionLayout::kPerRow;
  float* gz = w.gz.get();  // rows [0, R): g; rows [R, 2R): z'
  float* tile = w.tile.get();
  float* acc = w.acc.get();
  float* zn = w.zn.get();
  float* delta = w.delta.get();
  float* row_w = w.row_w.get();
  float* row_s = w.row_s.get();
  float* dist_ref = w.dist_ref.get();
  double* lse = w.lse.data();
  float* cols = w.tile_cols.get();
  float* cache = w.cache.get();
  std::fill(gz, gz + 2 * R * dp, 0.f);
  load_rows(grad, nullptr, row0, rows, d, dp, gz, nullptr);
  double zn_d_row[kRowBlock];
  load_rows(z, pc.mu.data(), row0, rows, d, dp, gz + R * dp, zn, zn_d_row);
  const float* s_col = pc.s_col.get();

  // Sweep 1 recomputes the softmax with its own float64 running maximum: the stored lse is float (an
  // ulp of a large |lse| would be a visible error in every p, and beyond |l| ~ 1e9 pushes every
  // exp(l − lse) under the underflow cutoff), and δ_n = Σ_k p g·c' from the same products as in sweep 2 makes
  // Σ_k a_nk vanish to rounding, so a one-hot row (large s) gets a ≈ 0 instead of noise. With it
  // comes E_p[dist], the reference that keeps the row-summed grad_s free of cancellation.
  for (int64_t r = 0; r < rows; ++r) {
    lse[r] = lse_in[row0 + r];
    row_w[r] = 0.f;
    row_s[r] = 0.f;
  }
  std::vector<double> sum_p(static_cast<size_t>(rows), 0.0), sum_pg(static_cast<size_t>(rows), 0.0),
      sum_pd(static_cast<size_t>(rows), 0.0), row_max(static_cast<size_t>(rows), -std::numeric_limits<double>::infinity());
  double* block_ref = w.block_ref.data();  // with the cache: the maximum each block's p₁ was taken against
  for (int64_t blk = 0; blk < pc.blocks; ++blk) {
    const int64_t j0 = blk * kColBlock;
    const int64_t kb = std::min(kColBlock, k - j0);
    const int64_t kb8 = round_up(kb, 8);
    if (cache) tile = cache + blk * 3 * R * kColBlock;
    backward_products(pc, gz, rows, j0, kb8, tile);
    const double* c_sq_d = pc.c_sq_d.data() + j0;
    const float* c_sq = pc.c_sq.get() + j0;
    const float* bias = pc.bias.get() + j0;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = row0 + r;
      const float* gc_row = tile + r * kColBlock;
      const float* dot_row = tile + (R + r) * kColBlock;
      float* p_keep = tile + (2 * R + r) * kColBlock;  // only with the cache
      const __m256d zn_d = _mm256_set1_pd(zn_d_row[r]);
      __m256d mx = _mm256_set1_pd(-std::numeric_limits<double>::infinity());
      for (int64_t j = 0; j < kb8; j += 8)
        mx = logit_max(mx, zn_d, c_sq_d + j, dot_row + j, load_s<M>(s, s_col, row, k, j0 + j, kb - j), bias + j);
      const double tile_max = hmax_pd(mx);
      if (tile_max > row_max[r] || std::isnan(tile_max)) {  // online softmax: rescale what was summed
        const double scale = std::exp(row_max[r] - tile_max);
        sum_p[r] *= scale;
        sum_pg[r] *= scale;
        sum_pd[r] *= scale;
        row_max[r] = tile_max;
      }
      const double ref = finite_or_zero(row_max[r]);
      if (cache) block_ref[blk * R + r] = ref;
      const __m256d lse_v = _mm256_set1_pd(ref);
      const __m256 zn_v = _mm256_set1_ps(zn[r]);
      // Float64 sums: p·(g·c') is exact there, so a one-hot row gets δ = g·c'_k exactly.
      __m256d sp = _mm256_setzero_pd(), spg = sp, spd = sp;
      for (int64_t j = 0; j < kb8; j += 8) {
        const __m256 sv = load_s<M>(s, s_col, row, k, j0 + j, kb - j);
        const __m256 p = exp256(logit_minus(zn_d, c_sq_d + j, dot_row + j, sv, bias + j, lse_v));
        if (cache) _mm256_storeu_ps(p_keep + j, p);
        const __m256 gc = _mm256_loadu_ps(gc_row + j);
        const __m256d p_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(p));
        const __m256d p_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1));
        sp = _mm256_add_pd(sp, _mm256_add_pd(p_lo, p_hi));
        spg = _mm256_fmadd_pd(p_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(gc)), spg);
        spg = _mm256_fmadd_pd(p_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(gc, 1)), spg);
        if (kRowConstant) {
          const __m256 dist = sq_distance(zn_v, c_sq + j, dot_row + j);
          spd = _mm256_fmadd_pd(p_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(dist)), spd);
          spd = _mm256_fmadd_pd(p_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(dist, 1)), spd);
        }
      }
      sum_p[r] += hsum_pd(sp);
      sum_pg[r] += hsum_pd(spg);
      if (kRowConstant) sum_pd[r] += hsum_pd(spd);
    }
  }
  // With the cache, sweep 2 takes p = p₁ · exp(ref − max) / Σ p (p₁ = exp(l − ref), kept by sweep 1
  // against its block's running maximum ref) instead of a second exp: the same as exp(l − lse) up to
  // rounding.
  double p_scale[kRowBlock];
  for (int64_t r = 0; r < rows; ++r) {
    p_scale[r] = 1.0;
    if (sum_p[r] > 0.0 && std::isfinite(sum_p[r])) {
      p_scale[r] = 1.0 / sum_p[r];
      lse[r] = finite_or_zero(row_max[r]) + std::log(sum_p[r]);
      delta[r] = static_cast<float>(sum_pg[r] / sum_p[r]);
      dist_ref[r] = static_cast<float>(sum_pd[r] / sum_p[r]);
    } else {
      delta[r] = 0.f;
      dist_ref[r] = 0.f;
    }
  }
  std::fill(acc, acc + rows * dp, 0.f);
  const __m256 minus_half = _mm256_set1_ps(-0.5f);

  for (int64_t blk = 0; blk < pc.blocks; ++blk) {
    const int64_t j0 = blk * kColBlock;
    const int64_t kb = std::min(kColBlock, k - j0);
    const int64_t kb8 = round_up(kb, 8);
    // Tile rows [0, R): g·c' then p; rows [R, 2R): z'·c' then w (sweep 1's tiles when cached).
    if (cache) {
      tile = cache + blk * 3 * R * kColBlock;
    } else {
      backward_products(pc, gz, rows, j0, kb8, tile);
    }
    const double* c_sq_d = pc.c_sq_d.data() + j0;
    const float* c_sq = pc.c_sq.get() + j0;
    const float* bias = pc.bias.get() + j0;
    float* col_a = cols;
    float* col_w = cols + kColBlock;
    float* col_s = cols + 2 * kColBlock;
    std::fill(cols, cols + 3 * kColBlock, 0.f);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = row0 + r;
      float* p_row = tile + r * kColBlock;
      float* w_row = tile + (R + r) * kColBlock;
      const __m256d zn_d = _mm256_set1_pd(zn_d_row[r]), lse_v = _mm256_set1_pd(lse[r]);
      const __m256 zn_v = _mm256_set1_ps(zn[r]);
      const __m256 delta_v = _mm256_set1_ps(delta[r]);
      const __m256 ref_v = _mm256_set1_ps(dist_ref[r]);
      const __m256 scale_v = _mm256_set1_ps(static_cast<float>(
          cache ? p_scale[r] * std::exp(block_ref[blk * R + r] - finite_or_zero(row_max[r])) : p_scale[r]));
      const float* p_kept = tile + (2 * R + r) * kColBlock;  // only with the cache
      __m256 sum_w = _mm256_setzero_ps(), sum_s = _mm256_setzero_ps();
      float* gs_row = M == PrecisionLayout::kFull && grad_s ? grad_s + row * k + j0 : nullptr;
      for (int64_t j = 0; j < kb8; j += 8) {
        const int64_t valid = kb - j;
        const __m256 sv = load_s<M>(s, s_col, row, k, j0 + j, valid);
        const __m256 p = cache ? _mm256_mul_ps(_mm256_loadu_ps(p_kept + j), scale_v)
                               : exp256(logit_minus(zn_d, c_sq_d + j, w_row + j, sv, bias + j, lse_v));  // padding: 0
        __m256 dist = sq_distance(zn_v, c_sq + j, w_row + j);
        if (kRowConstant) dist = _mm256_sub_ps(dist, ref_v);  // Σ_k a_nk = 0, so any per-row shift is exact
        const __m256 a = _mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(p_row + j), delta_v));
        const __m256 wv = _mm256_mul_ps(a, sv);
        const __m256 gs = _mm256_mul_ps(_mm256_mul_ps(minus_half, a), dist);
        _mm256_storeu_ps(p_row + j, p);
        _mm256_storeu_ps(w_row + j, wv);
        _mm256_storeu_ps(col_a + j, _mm256_add_ps(_mm256_loadu_ps(col_a + j), a));
        _mm256_storeu_ps(col_w + j, _mm256_add_ps(_mm256_loadu_ps(col_w + j), wv));
        sum_w = _mm256_add_ps(sum_w, wv);
        if (M == PrecisionLayout::kPerCentroid) _mm256_storeu_ps(col_s + j, _mm256_add_ps(_mm256_loadu_ps(col_s + j), gs));
        if (kRowConstant) sum_s = _mm256_add_ps(sum_s, gs);
        if (M == PrecisionLayout::kFull && gs_row) {
          if (valid >= 8) {
            _mm256_storeu_ps(gs_row + j, gs);
          } else {
            _mm256_maskstore_ps(gs_row + j, lane_mask(valid), gs);
          }
        }
      }
      row_w[r] += hsum(sum_w);
      if (kRowConstant) row_s[r] += hsum(sum_s);
    }
    for (int64_t j = 0; j < kb; ++j) {
      w.col_a[j0 + j] += col_a[j];
      w.col_w[j0 + j] += col_w[j];
      if (M == PrecisionLayout::kPerCentroid) w.col_s[j0 + j] += col_s[j];
    }
    gemm(rows, dp, kb, tile + R * kColBlock, kColBlock, 1, pc.c_rows.get() + j0 * dp, dp, acc, dp, true);
    if (rows == R) {  // one product over the stacked [P; W] and [G; Z'] rows
      gemm(kb, dp, 2 * R, tile, 1, kColBlock, gz, dp, w.grad_c.get() + j0 * dp, dp, true);
    } else {  // the halves separately, so rows past the batch end are never read
      gemm(kb, dp, rows, tile, 1, kColBlock, gz, dp, w.grad_c.get() + j0 * dp, dp, true);
      gemm(kb, dp, rows, tile + R * kColBlock, 1, kColBlock, gz + R * dp, dp, w.grad_c.get() + j0 * dp, dp, true);
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* out = grad_z + (row0 + r) * d;
    const float* a = acc + r * dp;
    const float* zr = gz + (R + r) * dp;
    for (int64_t t = 0; t < d; ++t) out[t] = a[t] - row_w[r] * zr[t];
    if (M == PrecisionLayout::kPerRow && grad_s) grad_s[row0 + r] = row_s[r];
    if (M == PrecisionLayout::kScalar) w.s_total += row_s[r];
  }
}

void check_args(const char* fn, int64_t n, int64_t k, int64_t d, PrecisionLayout mode) {
  LATENTOPS_CHECK(n >= 0, fn << ": n must be non-negative, got " << n);
  LATENTOPS_CHECK(k > 0, fn << ": codebook must have at least one row, got k=" << k);
  LATENTOPS_CHECK(d > 0, fn << ": dimension must be positive, got d=" << d);
  const int m = static_cast<int>(mode);
  LATENTOPS_CHECK(m >= 0 && m <= 3, fn << ": unknown precision layout " << m);
}

template <PrecisionLayout M>
using LayoutConstant = std::integral_constant<PrecisionLayout, M>;

// Calls f(LayoutConstant<layout>{}): the run-time layout as the template argument of the kernels below.
template <typename F>
void with_layout(PrecisionLayout layout, F&& f) {
  switch (layout) {
    case PrecisionLayout::kScalar: f(LayoutConstant<PrecisionLayout::kScalar>{}); break;
    case PrecisionLayout::kPerRow: f(LayoutConstant<PrecisionLayout::kPerRow>{}); break;
    case PrecisionLayout::kPerCentroid: f(LayoutConstant<PrecisionLayout::kPerCentroid>{}); break;
    case PrecisionLayout::kFull: f(LayoutConstant<PrecisionLayout::kFull>{}); break;
  }
}

template <PrecisionLayout M>
void forward_all(const float* z, const float* s, const Prepared& pc, int64_t n, float* z_hat, float* lse) {
  const int64_t nblocks = (n + kRowBlock - 1) / kRowBlock;
  const int team = static_cast<int>(std::min<int64_t>(max_threads(), nblocks));
  std::vector<ForwardScratch> scratch(static_cast<size_t>(team));
  for (ForwardScratch& w : scratch) {
    w.zp.reset(static_cast<size_t>(kRowBlock * pc.dp));
    w.tile.reset(static_cast<size_t>(kRowBlock * kColBlock));
    w.acc.reset(static_cast<size_t>(kRowBlock * pc.dp));
    w.zn.reset(kRowBlock);
    w.m.assign(kRowBlock, 0.0);
    w.sum.reset(kRowBlock);
  }
#pragma omp parallel num_threads(team) if (team > 1)
  {
    ForwardScratch& w = scratch[static_cast<size_t>(thread_id())];
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t row0 = b * kRowBlock;
      forward_block<M>(z, s, pc, row0, std::min(kRowBlock, n - row0), w, z_hat, lse);
    }
  }
}

template <PrecisionLayout M>
void backward_all(const float* grad, const float* z, const float* s, const Prepared& pc, const float* lse, int64_t n, float* grad_z, float* grad_codebook, float* grad_s,
                  float* grad_log_prior) {
  const int64_t k = pc.k, d = pc.d, dp = pc.dp;
  const int64_t nblocks = (n + kRowBlock - 1) / kRowBlock;
  const int team = static_cast<int>(std::min<int64_t>(max_threads(), nblocks));
  std::vector<BackwardScratch> scratch(static_cast<size_t>(team));
  for (BackwardScratch& w : scratch) {
    w.gz.reset(static_cast<size_t>(2 * kRowBlock * dp));
    w.tile.reset(static_cast<size_t>(2 * kRowBlock * kColBlock));
    w.acc.reset(static_cast<size_t>(kRowBlock * dp));
    w.zn.reset(kRowBlock);
    w.delta.reset(kRowBlock);
    w.row_w.reset(kRowBlock);
    w.row_s.reset(kRowBlock);
    w.dist_ref.reset(kRowBlock);
    w.lse.assign(kRowBlock, 0.0);
    w.grad_c.reset(static_cast<size_t>(pc.kpad * dp));
    w.col_w.assign(static_cast<size_t>(k), 0.0);
    w.col_a.assign(static_cast<size_t>(k), 0.0);
    if (M == PrecisionLayout::kPerCentroid) w.col_s.assign(static_cast<size_t>(k), 0.0);
    w.tile_cols.reset(3 * kColBlock);
    if (pc.kpad <= 8192) {
      w.cache.reset(static_cast<size_t>(pc.blocks * 3 * kRowBlock * kColBlock));
      w.block_ref.assign(static_cast<size_t>(pc.blocks * kRowBlock), 0.0);
    }
  }
#pragma omp parallel num_threads(team) if (team > 1)
  {
    BackwardScratch& w = scratch[static_cast<size_t>(thread_id())];
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t row0 = b * kRowBlock;
      backward_block<M>(grad, z, s, pc, lse, row0, std::min(kRowBlock, n - row0), w, grad_z, grad_s);
    }
  }
  // grad_c_k = Σ_n (p g + w z') − c'_k Σ_n w, summed over the threads.
  const float* c_rows = pc.c_rows.get();
#pragma omp parallel for schedule(static) if (k * d > 65536)
  for (int64_t j = 0; j < k; ++j) {
    double wsum = 0.0;
    for (const BackwardScratch& w : scratch) wsum += w.col_w[j];
    for (int64_t t = 0; t < d; ++t) {
      float total = 0.f;
      for (const BackwardScratch& w : scratch) total += w.grad_c.get()[j * dp + t];
      grad_codebook[j * d + t] = total - static_cast<float>(wsum) * c_rows[j * dp + t];
    }
    if (grad_log_prior) {
      double asum = 0.0;
      for (const BackwardScratch& w : scratch) asum += w.col_a[j];
      grad_log_prior[j] = static_cast<float>(asum);
    }
    if (M == PrecisionLayout::kPerCentroid && grad_s) {
      double ssum = 0.0;
      for (const BackwardScratch& w : scratch) ssum += w.col_s[j];
      grad_s[j] = static_cast<float>(ssum);
    }
  }
  if (M == PrecisionLayout::kScalar && grad_s) {
    double total = 0.0;
    for (const BackwardScratch& w : scratch) total += w.s_total;
    grad_s[0] = static_cast<float>(total);
  }
}

}  // namespace

void soft_quantize_forward_cpu(const SoftQuantizeForwardParams& p) {
  const int64_t n = p.n, k = p.k, d = p.d;
  check_args("soft_quantize_forward_cpu", n, k, d, p.s_layout);
  if (n == 0) return;
  LATENTOPS_CHECK(p.z != nullptr && p.codebook.values != nullptr && p.s != nullptr && p.z_hat != nullptr &&
                      p.lse != nullptr,
                  "soft_quantize_forward_cpu: null pointer argument");
  Prepared pc;
  prepare(p.codebook.values, p.s, p.s_layout, p.log_prior, k, d, pc);
  with_layout(p.s_layout, [&](auto layout) {
    forward_all<decltype(layout)::value>(p.z, p.s, pc, n, p.z_hat, p.lse);
  });
}

void soft_quantize_backward_cpu(const SoftQuantizeBackwardParams& p) {
  const int64_t n = p.n, k = p.k, d = p.d;
  check_args("soft_quantize_backward_cpu", n, k, d, p.s_layout);
  LATENTOPS_CHECK(p.codebook.values != nullptr && p.grad_codebook != nullptr,
                  "soft_quantize_backward_cpu: null pointer argument");
  if (n == 0) {  // nothing flows back: zero gradients for the parameters
    std::fill(p.grad_codebook, p.grad_codebook + k * d, 0.f);
    if (p.grad_log_prior) std::fill(p.grad_log_prior, p.grad_log_prior + k, 0.f);
    if (p.grad_s && p.s_layout == PrecisionLayout::kScalar) p.grad_s[0] = 0.f;
    if (p.grad_s && p.s_layout == PrecisionLayout::kPerCentroid) std::fill(p.grad_s, p.grad_s + k, 0.f);
    return;
  }
  LATENTOPS_CHECK(p.grad != nullptr && p.z != nullptr && p.s != nullptr && p.lse != nullptr && p.grad_z != nullptr,
                  "soft_quantize_backward_cpu: null pointer argument");
  Prepared pc;
  prepare(p.codebook.values, p.s, p.s_layout, p.log_prior, k, d, pc);
  with_layout(p.s_layout, [&](auto layout) {
    backward_all<decltype(layout)::value>(p.grad, p.z, p.s, pc, p.lse, n, p.grad_z, p.grad_codebook, p.grad_s,
                                          p.grad_log_prior);
  });
}

}  // namespace latentops
