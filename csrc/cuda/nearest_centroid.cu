// Nearest-centroid search on the GPU: a fused tensor-core GEMM + argmin that never materializes the
// n x k distance matrix.
//
// Pipeline (all on the caller's stream, no host sync):
//   1. nc_norms:   -||c_j||^2/2 in fp32 into the workspace (padded with -inf to a multiple of kBN), and
//                  max_j ||c_j||^2 (for the certification bound).
//   2. nc_gemm<RESCORE=false> ("pass 1"): each block owns kBM rows of z, sweeps the whole codebook in
//                  kBN-wide chunks with mma.sync (tf32 m16n8k8 for float32, m16n8k16 for f16/bf16),
//                  accumulators seeded with -||c_j||^2/2, so acc = -d~_j/2 with
//                  d~_j = ||c_j||^2 - 2 z.c_j (||z||^2 is constant per row and does not move the argmin);
//                  keeps per row the best (value, index) and, in exact mode, the second-best value.
//   3. nc_finish:  per row, sq_dist = sum_t (z_t - c_t)^2 in fp32 for the chosen index, ||z||, and in
//                  exact mode the certificate: if second - best > 2E (E a rigorous bound on |d~ - d|,
//                  times a safety factor 2) the tensor-core argmin is the true argmin. Otherwise the row
//                  goes to a flagged list with the threshold best + 2E. In both modes a row whose best
//                  d~ is not finite (NaN/inf values, overflow) is flagged with threshold NaN (all k).
//   4. nc_gemm<RESCORE=true> ("pass 2"): the same GEMM over the flagged rows only, split
//                  over the codebook (blockIdx.y) for load balance; every column with d~ <= threshold
//                  (a set that provably holds every true minimizer) is recorded as a candidate.
//   5. nc_resolve: per flagged row, one warp scores the candidates exactly in float64 (all k when there
//                  were more than kCandCap) and writes the lowest distance, lowest index on ties.
// fp16/bf16 operands are exact inside their mma, so in exact mode only accumulation error remains and
// few rows are flagged; tf32 rounds float32 operands to 11 significant bits, so near ties go to pass 2.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "latentops/checks.h"
#include "latentops/mma_tf32.cuh"
#include "latentops/nearest_centroid.h"
#include "latentops/nearest_centroid_tiles.h"

// tf32 operands: round to nearest (cvt.rna, relative error <= 2^-11) or feed raw fp32 bits, which the
// tensor core truncates (relative error < 2^-10, a twice larger bound and more flagged rows).
#ifndef NC_TF32_ROUND
#define NC_TF32_ROUND 1
#endif
// Pass-1 blocks per SM the register allocation aims for (2: <= 128 registers per thread).
#ifndef NC_MIN_BLOCKS
#define NC_MIN_BLOCKS 2
#endif

namespace latentops {
namespace {

// ---- tile configuration ---------------------------------------------------------------------------
// The tile shape and the shared-memory configurations: latentops/nearest_centroid_tiles.h. Words of
// 32 bits hold one fp32 or two 16-bit elements, so the fragment addressing of m16n8k8.tf32 and
// m16n8k16.{f16,bf16} is the same (8 words of k per mma).
using nc_tiles::kBKW;
using nc_tiles::kBM;
using nc_tiles::kBN;
using nc_tiles::kLdw;
constexpr int kThreads = 256;
constexpr int kPass2RowFrac = 4;  // pass-2 grid covers n/4 rows of flagged tiles (blocks loop beyond)
constexpr int kPass2Split = 8;    // codebook split of pass 2

constexpr int kCandCap = 16;       // candidate columns stored per flagged row; more -> full rescan

struct GemmArgs {
  const void* z;
  const void* c;
  int64_t n, k, d;
  int dw;                // words per row: d (fp32) or ceil(d/2) (16-bit)
  int kt;                // k-tiles: ceil(dw / kBKW)
  int nchunks;           // ceil(k / kBN)
  int chunks_per_split;  // codebook chunks per blockIdx.y
  bool vec;              // 16-byte cp.async legal: row pitch and base pointers 16-byte aligned
  bool resident;         // whole z tile in smem (loaded once per row tile)
  bool exact;            // pass 1 also tracks the second-best value
  const float* hcn;      // -||c_j||^2 / 2, -inf past k: the accumulators' initial value
  // pass 1 outputs
  int64_t* indices;
  float* best_out;
  float* second_out;
  // pass 2 inputs / outputs
  const int* count;
  const int64_t* rows;
  const float* thr;
  int* cand_cnt;         // per flagged entry: number of candidate columns found
  int* cand;             // per flagged entry: up to kCandCap candidate columns
};

// ---- small device helpers ---------------------------------------------------------------------------
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ float ldf(const T* p) {
  return to_float(__ldg(p));
}

// Squared distance sum_t (z_t - c_t)^2 in float64 with FMA, one warp (lane-strided partial sums, then a
// butterfly, so every lane gets the same value): it decides among candidates (like the CPU kernel):
// differences and squares of 16/32-bit floats are exact there and cannot overflow or underflow, so data
// around 1e-30 (fp32 squares flush to 0: every candidate ties) or 1e30 (fp32 squares overflow: every
// candidate is inf) still gets its true nearest centroid.
template <typename T>
__device__ __forceinline__ double warp_exact_dist64(const T* zr, const T* cr, int64_t d, int lane) {
  double acc = 0.0;
  for (int64_t t = lane; t < d; t += 32) {
    const double diff = static_cast<double>(ldf(zr + t)) - static_cast<double>(ldf(cr + t));
    acc = fma(diff, diff, acc);
  }
#pragma unroll
  for (int m = 16; m; m >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, m);
  return acc;
}

__device__ __forceinline__ void cp_async16(uint32_t* dst, const void* src, int src_bytes) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ uint32_t tf32_round(uint32_t x) { return tf32_bits(__uint_as_float(x)); }

// Four 8x(4-word) matrices from smem; lane l gives the row address of matrix l/8, row l%8, and gets
// word l%4 of row l/4 of each: exactly the (g, t) fragment layout of both mma shapes used here.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const uint32_t* p) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

template <typename T>
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (sizeof(T) == 4) {
    mma_tf32(c, a, b);
  } else if constexpr (std::is_same<T, __half>::value) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// Loads k-tile `kti` (words [kti*32, kti*32+32)) of R rows into a smem tile of pitch kLdw. Row r is
// rowids[r] when rowids is given (z rows, possibly gathered; -1 = none) else row_first + r (< nrows).
// Out-of-range rows and words are zero-filled: zeros add nothing to the dot products.
template <typename T, int R>
__device__ __forceinline__ void load_tile(uint32_t* dst, const T* base, const int64_t* rowids,
                                          int64_t row_first, int64_t nrows, int kti,
                                          const GemmArgs& a) {
  auto rowid = [&](int r) -> int64_t {
    if (rowids) return rowids[r];
    int64_t g = row_first + r;
    return g < nrows ? g : -1;
  };
  if (a.vec) {
    // d * sizeof(T) % 16 == 0, so a 16-byte piece is either wholly inside the row or wholly past it.
    const int64_t pitch = a.d * static_cast<int64_t>(sizeof(T));
    for (int i = threadIdx.x; i < R * (kBKW / 4); i += kThreads) {
      const int r = i / (kBKW / 4), p = i % (kBKW / 4);
      const int w = kti * kBKW + p * 4;
      const int64_t g = rowid(r);
      const bool ok = g >= 0 && w < a.dw;
      const char* src = ok ? reinterpret_cast<const char*>(base) + g * pitch + w * 4
                           : reinterpret_cast<const char*>(base);
      cp_async16(dst + r * kLdw + p * 4, src, ok ? 16 : 0);
    }
  } else {
    // Unaligned rows (odd d, odd offsets): element loads, bounds-checked, packed into words.
    for (int i = threadIdx.x; i < R * kBKW; i += kThreads) {
      const int r = i / kBKW, p = i % kBKW;
      const int64_t w = kti * kBKW + p;
      const int64_t g = rowid(r);
      uint32_t v = 0;
      if (g >= 0) {
        if constexpr (sizeof(T) == 4) {
          if (w < a.d) v = __float_as_uint(__ldg(reinterpret_cast<const float*>(base) + g * a.d + w));
        } else {
          const unsigned short* b16 = reinterpret_cast<const unsigned short*>(base) + g * a.d;
          const int64_t e = 2 * w;
          if (e < a.d) v = __ldg(b16 + e);
          if (e + 1 < a.d) v |= static_cast<uint32_t>(__ldg(b16 + e + 1)) << 16;
        }
      }
      dst[r * kLdw + p] = v;
    }
  }
}

// One k-tile of mma for this warp: 32 rows (2 m16 tiles) x 64 columns (8 n8 tiles). a_off / b_off are
// this lane's ldmatrix row addresses (in words) relative to the warp's A rows and the B tile.
template <typename T>
__device__ __forceinline__ void mma_ktile(float (&acc)[2][8][4], const uint32_t* At,
                                          const uint32_t* Bt, int a_off, int b_off, int nsub) {
#pragma unroll
  for (int kk = 0; kk < kBKW / 8; ++kk) {
    if (kk < nsub) {  // skip k-steps that lie wholly in the zero padding past d
      uint32_t af[2][4], bf[8][2];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) ldsm_x4(af[mt], At + a_off + mt * 16 * kLdw + kk * 8);
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        uint32_t r[4];
        ldsm_x4(r, Bt + b_off + p * 16 * kLdw + kk * 8);
        bf[2 * p][0] = r[0];
        bf[2 * p][1] = r[1];
        bf[2 * p + 1][0] = r[2];
        bf[2 * p + 1][1] = r[3];
      }
      if constexpr (sizeof(T) == 4 && NC_TF32_ROUND) {
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
          for (int q = 0; q < 4; ++q) af[mt][q] = tf32_round(af[mt][q]);
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          bf[nt][0] = tf32_round(bf[nt][0]);
          bf[nt][1] = tf32_round(bf[nt][1]);
        }
      }
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) mma<T>(acc[mt][nt], af[mt], bf[nt]);
    }
  }
}

// The fused GEMM + argmin. Pass 1 (RESCORE=false): rows 0..n-1, whole codebook, writes best index,
// best and (exact mode) second-best d~. Pass 2 (RESCORE=true): the flagged rows, codebook split over
// blockIdx.y, recording every column with d~ <= thr as a candidate. Blocks loop over row tiles
// (grid-stride in x).
//
// The accumulators start at -||c_j||^2/2, so after the mma chain acc = z.c_j - ||c_j||^2/2 = -d~_j/2:
// no per-element epilogue arithmetic, the argmin of d~ is the argmax of acc (scaling by -2 is exact),
// and fmaxf drops NaN, so a NaN distance is never chosen.
template <typename T, bool RESCORE, int STAGES>
__global__ void __launch_bounds__(kThreads, NC_MIN_BLOCKS) nc_gemm_kernel(const GemmArgs a) {
  // STAGES: cp.async depth of the streamed tiles, chosen per device by nc_tiles::choose_gemm_config.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // never launched there: run_nearest_centroid takes the exact rescan path before sm_80
#else
  extern __shared__ __align__(16) uint32_t smem[];
  __shared__ int64_t s_rows[kBM];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const T* z = static_cast<const T*>(a.z);
  const T* c = static_cast<const T*>(a.c);
  const int a_tiles = a.resident ? a.kt : STAGES;
  uint32_t* As = smem;
  uint32_t* Bs = smem + a_tiles * kBM * kLdw;
  // ldmatrix row addresses of this lane (see ldsm_x4): A matrices are (rows 0-7 | 8-15) x (words 0-3 |
  // 4-7) in a0..a3 order; B matrices are (n rows 0-7, words 0-3 | 4-7), then n rows 8-15.
  const int mi = lane >> 3, rr = lane & 7;
  const int a_off = (warp * 32 + (mi & 1) * 8 + rr) * kLdw + (mi >> 1) * 4;
  const int b_off = ((mi >> 1) * 8 + rr) * kLdw + (mi & 1) * 4;

  const int64_t nrows = RESCORE ? static_cast<int64_t>(*a.count) : a.n;
  const int64_t ntiles = (nrows + kBM - 1) / kBM;
  const int c0 = blockIdx.y * a.chunks_per_split;
  const int c1 = min(a.nchunks, c0 + a.chunks_per_split);
  if (c0 >= c1) return;
  const int total = (c1 - c0) * a.kt;
  const float kNegInf = __int_as_float(0xff800000);

  for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    const int64_t e0 = tile * kBM;  // first row (pass 1) or flagged-list entry (pass 2) of this tile
    for (int r = tid; r < kBM; r += kThreads) {
      const int64_t e = e0 + r;
      s_rows[r] = e < nrows ? (RESCORE ? a.rows[e] : e) : -1;
    }
    __syncthreads();

    auto issue = [&](int it) {
      if (it < total) {
        const int chunk = c0 + it / a.kt, kti = it % a.kt, buf = it % STAGES;
        if (!a.resident) load_tile<T, kBM>(As + buf * kBM * kLdw, z, s_rows, 0, 0, kti, a);
        load_tile<T, kBN>(Bs + buf * kBN * kLdw, c, nullptr, static_cast<int64_t>(chunk) * kBN, a.k,
                          kti, a);
      }
      cp_async_commit();  // always commit, so group counting stays uniform
    };
    if (a.resident)
      for (int kti = 0; kti < a.kt; ++kti)
        load_tile<T, kBM>(As + kti * kBM * kLdw, z, s_rows, 0, 0, kti, a);
    for (int s = 0; s < STAGES - 1; ++s) issue(s);

    // This thread's 4 rows (2 m16 tiles x {g, g+8}) and per-row state, in acc units (-d~/2).
    float best[4], sec[4];  // pass 2: best holds the hit threshold -thr/2
    int bidx[4];
    unsigned valid = 0;     // pass 2: bit r set when this thread's row r is a flagged entry
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      best[r] = kNegInf;
      sec[r] = kNegInf;
      bidx[r] = 0;
      if constexpr (RESCORE) {
        const int local = warp * 32 + (r >> 1) * 16 + (r & 1) * 8 + g;
        if (s_rows[local] >= 0) {
          best[r] = -0.5f * a.thr[e0 + local];
          valid |= 1u << r;
        }
      }
    }

    float acc[2][8][4];
    for (int it = 0; it < total; ++it) {
      const int kti = it % a.kt;
      const int chunk = c0 + it / a.kt;
      const int jb = chunk * kBN + 2 * t;  // this lane's first column in the chunk
      if (kti == 0) {
        // New chunk: seed the accumulators with -||c||^2/2 of this lane's columns.
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          const float2 h = __ldg(reinterpret_cast<const float2*>(a.hcn + jb + nt * 8));
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            acc[mt][nt][0] = h.x;
            acc[mt][nt][1] = h.y;
            acc[mt][nt][2] = h.x;
            acc[mt][nt][3] = h.y;
          }
        }
      }
      cp_async_wait<STAGES - 2>();
      __syncthreads();  // tile `it` visible to all; buffer (it-1)%STAGES free for reuse
      issue(it + STAGES - 1);
      const uint32_t* At = As + (a.resident ? kti : it % STAGES) * kBM * kLdw;
      const uint32_t* Bt = Bs + (it % STAGES) * kBN * kLdw;
      const int nsub = min(kBKW / 8, (a.dw - kti * kBKW + 7) / 8);
      mma_ktile<T>(acc, At, Bt, a_off, b_off, nsub);

      if (kti == a.kt - 1) {
        // Chunk epilogue. Columns of a row are visited in increasing order and a later column must be
        // strictly larger to win, so the lowest index wins ties.
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = mt * 2 + h;
            if constexpr (!RESCORE) {
              const float old = best[r];
              float b = old;
              if (a.exact) {
                // Running top-2 (NaN: fminf(b, NaN) = b, which only lowers the gap -> flagged).
                float s2 = sec[r];
#pragma unroll
                for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                  for (int e = 0; e < 2; ++e) {
                    const float v = acc[mt][nt][h * 2 + e];
                    s2 = fmaxf(s2, fminf(b, v));
                    b = fmaxf(b, v);
                  }
                sec[r] = s2;
              } else {
                float m[8];
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) m[nt] = fmaxf(acc[mt][nt][h * 2], acc[mt][nt][h * 2 + 1]);
                b = fmaxf(b, fmaxf(fmaxf(fmaxf(m[0], m[1]), fmaxf(m[2], m[3])),
                                   fmaxf(fmaxf(m[4], m[5]), fmaxf(m[6], m[7]))));
              }
              if (b > old) {  // rare after the first chunks: find the lowest column holding b
                int j = 0;
#pragma unroll
                for (int q = 15; q >= 0; --q)
                  if (acc[mt][q >> 1][h * 2 + (q & 1)] == b) j = (q >> 1) * 8 + (q & 1);
                best[r] = b;
                bidx[r] = jb + j;
              }
            } else {
              // Every true minimizer has d~ <= best~ + 2E, i.e. acc >= -thr/2; NaN (overflow) too.
#pragma unroll
              for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                  const int j = jb + nt * 8 + e;
                  if (!(acc[mt][nt][h * 2 + e] < best[r]) && ((valid >> r) & 1) && j < a.k) {
                    // Rare: record the candidate; nc_resolve scores it exactly, a warp at a time.
                    const int64_t ent = e0 + warp * 32 + mt * 16 + h * 8 + g;
                    const int p = atomicAdd(a.cand_cnt + ent, 1);
                    if (p < kCandCap) a.cand[ent * kCandCap + p] = j;
                  }
                }
            }
          }
      }
    }
    cp_async_wait<0>();

    if constexpr (!RESCORE) {
      // Merge the 4 threads of a quad (same rows, different columns): lexicographic (value desc,
      // index asc) for the best; second = max(both seconds, the smaller of the two bests).
#pragma unroll
      for (int r = 0; r < 4; ++r) {
#pragma unroll
        for (int m = 1; m <= 2; m <<= 1) {
          const float ob = __shfl_xor_sync(0xffffffffu, best[r], m);
          const float os = __shfl_xor_sync(0xffffffffu, sec[r], m);
          const int oi = __shfl_xor_sync(0xffffffffu, bidx[r], m);
          const float ns = fmaxf(fmaxf(sec[r], os), fminf(best[r], ob));
          if (ob > best[r] || (ob == best[r] && oi < bidx[r])) {
            best[r] = ob;
            bidx[r] = oi;
          }
          sec[r] = ns;
        }
        const int64_t rw = s_rows[warp * 32 + (r >> 1) * 16 + (r & 1) * 8 + g];
        if (t == 0 && rw >= 0) {
          a.indices[rw] = bidx[r];
          a.best_out[rw] = -2.f * best[r];
          if (a.exact) a.second_out[rw] = -2.f * sec[r];  // fast mode's workspace has no room for it
        }
      }
    }
    __syncthreads();  // smem (tiles, s_rows) is reused by the next row tile
  }
#endif
}

// -||c_j||^2/2 in fp32 (the GEMM's accumulator seed), one warp per codebook row; -inf for the padding
// columns so they never win. The max of ||c_j||^2 feeds the error bound; NaN rows are left out of it
// (their exact distance is NaN, never chosen), +inf/overflowed rows are not (then every row is
// rescored exactly).
template <typename T>
__global__ void nc_norms_kernel(const T* c, int64_t k, int64_t d, int64_t kpad, float* hcn,
                                unsigned* cmax_bits) {
  const int lane = threadIdx.x & 31;
  const int64_t nw = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t j = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; j < kpad;
       j += nw) {
    float s = 0.f;
    if (j < k)
      for (int64_t t = lane; t < d; t += 32) {
        const float v = ldf(c + j * d + t);
        s = fmaf(v, v, s);
      }
#pragma unroll
    for (int m = 16; m; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
    if (lane == 0) {
      if (j < k) {
        hcn[j] = -0.5f * s;
        if (s == s) atomicMax(cmax_bits, __float_as_uint(s));  // s >= 0: bit order = value order
      } else {
        hcn[j] = __int_as_float(0xff800000);
      }
    }
  }
}

// Per row (one warp): the exact fp32 distance of the pass-1 index into sq_dist, and in exact mode the
// certificate. Bound on |d~_j - d_j| for d_j = ||c_j||^2 - 2 z.c_j, d~_j = -2 acc_j, with nz = ||z||,
// cm = max ||c_j||, u_t the operand rounding (2^-11 tf32 rna, 0 for f16/bf16, exact in their mma):
//   seed -||c||^2/2 in fp32: off by <= g_d cm^2 / 2, g_d = (d+8) 2^-22
//   operands: sum |z~c~ - zc| <= (2u_t + u_t^2) nz cm
//   tensor-core fp32 accumulation (may truncate, no guard bits): <= g_acc (cm^2/2 + 1.01 nz cm),
//   g_acc = (d+8) 2^-21, relative to the sum of the magnitudes of the seed and the products
// so, times 2 for d~ = -2 acc: |d~ - d| <= (4.01 u_t + 2.02 g_acc) nz cm + (g_d + g_acc) cm^2, and E is
// twice that (safety factor). If second~ - best~ > 2E every other column is truly farther: certified.
// The relative terms fail below fp32's normal range (data around 1e-30: every product flushes to 0,
// every score ties at 0 and E is 0 too), so each of the d + 8 roundings of a score may also lose the
// smallest normal number 2^-126 (the tensor core may flush subnormals): such rows are never
// certified and go to the float64 rescan.
template <typename T>
__global__ void nc_finish_kernel(const T* z, const T* c, int64_t n, int64_t d, int64_t* indices,
                                 float* sq_dist, const float* second, bool exact,
                                 const unsigned* cmax_bits, float ut, int* count, int64_t* rows,
                                 float* thr, int* cand_cnt) {
  const int lane = threadIdx.x & 31;
  const int64_t nw = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; i < n;
       i += nw) {
    const int64_t idx = indices[i];
    const T* zr = z + i * d;
    const T* cr = c + idx * d;
    float s = 0.f, nz2 = 0.f;
    for (int64_t t = lane; t < d; t += 32) {
      const float zt = ldf(zr + t);
      const float diff = zt - ldf(cr + t);
      s = fmaf(diff, diff, s);
      nz2 = fmaf(zt, zt, nz2);
    }
#pragma unroll
    for (int m = 16; m; m >>= 1) {
      s += __shfl_xor_sync(0xffffffffu, s, m);
      nz2 += __shfl_xor_sync(0xffffffffu, nz2, m);
    }
    if (lane == 0) {
      const float best = sq_dist[i];  // pass 1 left d~ of the chosen index here
      sq_dist[i] = s;
      // A row without a finite best score (NaN or inf in z, a non-finite codebook, overflow) is
      // rescanned in both modes with every column a candidate (threshold NaN): inf - inf and 0 * inf
      // in the scores would otherwise pick a centroid the NaN/inf policy does not.
      bool certified = isfinite(best);
      float threshold = __int_as_float(0x7fc00000);
      if (exact) {
        const float nz = sqrtf(nz2);
        const float cm = sqrtf(__uint_as_float(*cmax_bits));
        const float dd = static_cast<float>(d);
        const float g_acc = (dd + 8.f) * 0x1p-21f, g_d = (dd + 8.f) * 0x1p-22f;
        const float e_abs = 2.f * (dd + 8.f) * 0x1p-126f;
        const float e = 2.f * ((4.01f * ut + 2.02f * g_acc) * nz * cm + (g_d + g_acc) * cm * cm + e_abs);
        // Finite magnitudes guarantee no overflow inside the tensor-core sums.
        const bool sane = certified && isfinite(4.f * nz * cm + cm * cm) && isfinite(e);
        certified = sane && (second[i] - best) > 2.f * e;
        if (sane) threshold = best + 2.f * e;
      }
      if (!certified) {
        const int pos = atomicAdd(count, 1);
        rows[pos] = i;
        // A NaN threshold makes every column a candidate: nc_resolve rescans them all, without pass
        // 2 (which fast mode does not run, nor has the workspace for).
        if (exact) thr[pos] = threshold;
        cand_cnt[pos] = threshold == threshold ? 0 : kCandCap + 1;
      }
    }
  }
}

// Flagged rows, one warp each: the float64 distance of every candidate column (all k if there were
// more than kCandCap), lowest distance then lowest index; NaN never chosen, none a number -> index 0.
// The reported distance is that float64 one rounded to fp32.
template <typename T>
__global__ void nc_resolve_kernel(const T* z, const T* c, int64_t k, int64_t d, const int* count,
                                  const int64_t* rows, const int* cand_cnt, const int* cand,
                                  int64_t* indices, float* sq_dist) {
  const int lane = threadIdx.x & 31;
  const int64_t cnt = *count;
  const int64_t nw = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; i < cnt;
       i += nw) {
    const int64_t r = rows[i];
    const T* zr = z + r * d;
    const int nc = cand_cnt[i];
    const bool all = nc > kCandCap;
    const int64_t m = all ? k : nc;
    double bv = 0.0;
    int64_t bj = -1;
    for (int64_t q = 0; q < m; ++q) {
      const int64_t j = all ? q : cand[i * kCandCap + q];
      const double ex = warp_exact_dist64(zr, c + j * d, d, lane);
      if (ex == ex && (bj < 0 || ex < bv || (ex == bv && j < bj))) {
        bv = ex;
        bj = j;
      }
    }
    if (bj < 0) {
      bj = 0;
      bv = warp_exact_dist64(zr, c, d, lane);
    }
    if (lane == 0) {
      indices[r] = bj;
      sq_dist[r] = static_cast<float>(bv);
    }
  }
}

// Before sm_80 (no cp.async, no tf32 mma) every row is resolved by the exact fp32 rescan of all k:
// correct, SIMT-speed. Marks rows 0..n-1 as flagged with an over-full candidate list.
__global__ void nc_flag_all_kernel(int64_t n, int* count, int64_t* rows, int* cand_cnt) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    rows[i] = i;
    cand_cnt[i] = kCandCap + 1;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) *count = static_cast<int>(n);
}

inline bool has_tensor_core_path() {
  int device = 0, major = 0;
  LATENTOPS_CUDA_CHECK(cudaGetDevice(&device));
  LATENTOPS_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 8;
}

// ---- workspace layout ----------------------------------------------------------------------------
constexpr size_t kAlign = 256;
inline size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// Every path keeps a flagged-row list (rows, cand_cnt: nc_resolve's input); only pass 2 (exact
// mode on the tensor-core path) needs the second-best scores, thresholds and candidate columns, 20
// of the 32 bytes per row plus 64 per row of candidates: fast mode does without them.
struct WsLayout {
  size_t cmax = 0, count = 4, cn, second, rows, thr, cand_cnt, cand, total;
  WsLayout(int64_t n, int64_t k, bool pass2) {
    const size_t kpad = static_cast<size_t>((k + kBN - 1) / kBN) * kBN;
    const size_t nn = static_cast<size_t>(n), n2 = pass2 ? nn : 0;
    size_t off = kAlign;  // header: cmax bits, flagged count
    cn = off;
    off += align_up(kpad * sizeof(float));
    second = off;
    off += align_up(n2 * sizeof(float));
    rows = off;
    off += align_up(nn * sizeof(int64_t));
    thr = off;
    off += align_up(n2 * sizeof(float));
    cand_cnt = off;
    off += align_up(nn * sizeof(int));
    cand = off;
    off += align_up(n2 * kCandCap * sizeof(int));
    total = off;
  }
};

inline int clamp_grid(int64_t blocks, int64_t cap) {
  if (blocks < 1) blocks = 1;
  return static_cast<int>(blocks < cap ? blocks : cap);
}

// The GEMM's shared-memory configuration on the current device: what fits its opt-in limit per
// block less the kernel's static shared memory (s_rows).
nc_tiles::GemmConfig gemm_config(int kt) {
  int device = 0, optin = 0;
  LATENTOPS_CUDA_CHECK(cudaGetDevice(&device));
  LATENTOPS_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const size_t static_bytes = kBM * sizeof(int64_t);
  const size_t available = static_cast<size_t>(optin) > static_bytes ? optin - static_bytes : 0;
  const nc_tiles::GemmConfig config = nc_tiles::choose_gemm_config(kt, available);
  LATENTOPS_CHECK(config.smem_bytes > 0, "nearest_centroid_cuda: no tile configuration fits this device's "
                                             << optin << " bytes of shared memory per block");
  return config;
}

template <typename T, bool RESCORE>
void launch_gemm(const nc_tiles::GemmConfig& config, dim3 grid, const GemmArgs& a, cudaStream_t s) {
  auto kernel = config.stages == nc_tiles::kMaxStages ? nc_gemm_kernel<T, RESCORE, nc_tiles::kMaxStages>
                                                       : nc_gemm_kernel<T, RESCORE, nc_tiles::kMinStages>;
  LATENTOPS_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(config.smem_bytes)));
  kernel<<<grid, kThreads, config.smem_bytes, s>>>(a);
  LATENTOPS_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void run_nearest_centroid(const T* z, const T* c, int64_t n, int64_t k, int64_t d, bool exact,
                          int64_t* indices, float* sq_dist, void* workspace, cudaStream_t s) {
  const WsLayout L(n, k, exact && has_tensor_core_path());
  char* ws = static_cast<char*>(workspace);
  unsigned* cmax_bits = reinterpret_cast<unsigned*>(ws + L.cmax);
  int* count = reinterpret_cast<int*>(ws + L.count);
  float* hcn = reinterpret_cast<float*>(ws + L.cn);
  float* second = reinterpret_cast<float*>(ws + L.second);
  int64_t* rows = reinterpret_cast<int64_t*>(ws + L.rows);
  float* thr = reinterpret_cast<float*>(ws + L.thr);
  int* cand_cnt = reinterpret_cast<int*>(ws + L.cand_cnt);
  int* cand = reinterpret_cast<int*>(ws + L.cand);

  LATENTOPS_CUDA_CHECK(cudaMemsetAsync(ws, 0, kAlign, s));
  if (!has_tensor_core_path()) {
    LATENTOPS_CHECK(n <= 0x7fffffffLL, "too many rows for the pre-sm_80 path: " << n);
    nc_flag_all_kernel<<<clamp_grid((n + 255) / 256, 1 << 16), 256, 0, s>>>(n, count, rows, cand_cnt);
    LATENTOPS_CUDA_CHECK(cudaGetLastError());
    nc_resolve_kernel<T><<<clamp_grid((n + 7) / 8, 1 << 14), 256, 0, s>>>(
        z, c, k, d, count, rows, cand_cnt, cand, indices, sq_dist);
    LATENTOPS_CUDA_CHECK(cudaGetLastError());
    return;
  }

  GemmArgs a{};
  a.z = z;
  a.c = c;
  a.n = n;
  a.k = k;
  a.d = d;
  a.dw = nc_tiles::row_words(d, sizeof(T));
  a.kt = nc_tiles::k_tiles(d, sizeof(T));
  a.nchunks = static_cast<int>((k + kBN - 1) / kBN);
  a.vec = (d * static_cast<int64_t>(sizeof(T))) % 16 == 0 &&
          reinterpret_cast<uintptr_t>(z) % 16 == 0 && reinterpret_cast<uintptr_t>(c) % 16 == 0;
  const nc_tiles::GemmConfig config = gemm_config(a.kt);
  a.resident = config.resident;
  a.exact = exact;
  a.hcn = hcn;
  a.indices = indices;
  a.best_out = sq_dist;  // pass 1 parks d~ of the chosen index in sq_dist; nc_finish overwrites it
  a.second_out = second;
  a.count = count;
  a.rows = rows;
  a.thr = thr;
  a.cand_cnt = cand_cnt;
  a.cand = cand;
  const int64_t kpad = static_cast<int64_t>(a.nchunks) * kBN;

  nc_norms_kernel<T><<<clamp_grid((kpad + 7) / 8, 1 << 16), 256, 0, s>>>(c, k, d, kpad, hcn, cmax_bits);
  LATENTOPS_CUDA_CHECK(cudaGetLastError());

  const int64_t ntiles = (n + kBM - 1) / kBM;

  // Pass 1: the whole codebook per block.
  a.chunks_per_split = a.nchunks;
  launch_gemm<T, false>(config, dim3(clamp_grid(ntiles, 0x7fffffff), 1), a, s);

  const float ut = sizeof(T) == 4 ? (NC_TF32_ROUND ? 0x1p-11f : 0x1p-10f) : 0.f;
  nc_finish_kernel<T><<<clamp_grid((n + 7) / 8, 1 << 20), 256, 0, s>>>(
      z, c, n, d, indices, sq_dist, second, exact, cmax_bits, ut, count, rows, thr, cand_cnt);
  LATENTOPS_CUDA_CHECK(cudaGetLastError());

  if (exact) {
    // Pass 2 over the flagged rows; their number is known only on the device, so the grid covers a
    // fraction of the rows (blocks loop over further flagged tiles; idle ones exit at once), and the
    // codebook is split over blockIdx.y so that a few flagged tiles still fill the GPU. Fast mode
    // flags only rows without a finite score, which nc_resolve rescans whole.
    const int split = a.nchunks < kPass2Split ? a.nchunks : kPass2Split;
    a.chunks_per_split = (a.nchunks + split - 1) / split;
    const int split_used = (a.nchunks + a.chunks_per_split - 1) / a.chunks_per_split;
    const dim3 grid(clamp_grid((ntiles + kPass2RowFrac - 1) / kPass2RowFrac, 1 << 16), split_used);
    launch_gemm<T, true>(config, grid, a, s);
  }

  nc_resolve_kernel<T><<<clamp_grid((n + 7) / 8, 1 << 14), 256, 0, s>>>(
      z, c, k, d, count, rows, cand_cnt, cand, indices, sq_dist);
  LATENTOPS_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

size_t nearest_centroid_cuda_workspace_bytes(int64_t n, int64_t k, int64_t /*d*/, Accuracy accuracy) {
  return WsLayout(n, k, accuracy == Accuracy::kExact && has_tensor_core_path()).total;
}

void nearest_centroid_cuda(const NearestCentroidParams& p, void* workspace, void* stream) {
  const int64_t n = p.n, k = p.k, d = p.d;
  LATENTOPS_CHECK(k > 0, "codebook must have at least one row");
  LATENTOPS_CHECK(d > 0, "rows must have at least one element");
  LATENTOPS_CHECK(k <= 0x7fffffffLL, "codebook has too many rows: " << k);
  if (n == 0) return;
  const bool exact = p.accuracy == Accuracy::kExact;
  auto s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::kFloat32:
      run_nearest_centroid(static_cast<const float*>(p.z), static_cast<const float*>(p.codebook), n, k, d,
                           exact, p.indices, p.sq_dist, workspace, s);
      break;
    case DType::kFloat16:
      run_nearest_centroid(static_cast<const __half*>(p.z), static_cast<const __half*>(p.codebook), n, k,
                           d, exact, p.indices, p.sq_dist, workspace, s);
      break;
    case DType::kBFloat16:
      run_nearest_centroid(static_cast<const __nv_bfloat16*>(p.z),
                           static_cast<const __nv_bfloat16*>(p.codebook), n, k, d, exact, p.indices,
                           p.sq_dist, workspace, s);
      break;
    default:
      LATENTOPS_CHECK(false, "nearest_centroid_cuda: unknown dtype code " << static_cast<int>(p.dtype));
  }
}

}  // namespace latentops
