// Decode and y = x·Wᵀ on the hcsr form, on the CPU (contract: latentops/compressed_linear.h).
//
// The decode is a chain of dependent lookups (position → peek → gap table → position → value table
// → position), ~20 cycles of latency per (gap, value) pair but only ~15 instructions. So each thread
// decodes kLanes rows at once, round-robin (Huff0's 4-stream trick): the lanes' chains overlap and the
// loop runs at instruction throughput. A lane that finishes its row takes the thread's next one.
//
// Per call the tables are repacked for that loop:
//   gap:   uint16 (symbol << 4 | length) for symbols < kSpecial; the escape symbol and anything
//          ≥ kSpecial (or negative) become kSpecial, which sends the step to the original table.
//   value: the code length (uint8) and the codebook value itself (float; 0 for a symbol outside the
//          codebook), two small tables indexed by the same peek.
// One 64-bit load at word p >> 5, shifted by p & 31, holds ≥ 33 valid bits: the gap code (≤ 15) and
// the value code (≤ 15) of a pair without escape, bit-identical to the contract's peek.
//
// Bounds without per-step checks: a lane runs unchecked only for as many pairs as cannot reach the
// stream's end (pair_max bits each, the longest a pair can be), and its column saturates at `cols`,
// which the sinks ignore (x is padded with a zero row at `cols`; the dense sink tests col < cols).
// A row's count is clamped to `cols` (columns strictly increase), so the work of any input is bounded
// by rows · cols steps and nothing hangs. Near the end of the stream a row finishes in a checked
// single-stream loop that stops exactly where the contract says.
//
// The product: batch 1 accumulates a scalar per lane (x[col] · value); batch 2..16 one or two AVX2
// vectors per lane over x transposed to (cols + 1) x 8 or x 16; larger batches run in blocks of 16,
// decoding again per block (the FMAs, not the decode, dominate there).
#include "latentops/compressed_linear.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "latentops/checks.h"
#include "latentops/cpu_scratch.h"
#include "latentops/cpu_simd.h"

namespace latentops {
namespace {

constexpr int kLanes = 4;
constexpr uint32_t kSpecial = 4095;  // gap symbol field that means "look in the original table"
constexpr int kMaxTableBits = 15;    // code lengths are 4-bit fields, so no table needs more

// The tables and bounds one decode reads.
struct Decoder {
  const uint32_t* words;
  int64_t stream_end;         // a peek at p is in bounds iff 0 ≤ p < stream_end: (p >> 5) + 1 < n_words
  int64_t cols;
  const int32_t* gap_lut;     // the original, for kSpecial entries and the checked loop
  const uint16_t* gap;        // repacked
  const uint8_t* value_len;
  const float* value;
  uint32_t gap_mask, value_mask;
  int64_t escape;
  int escape_bits;
  uint32_t escape_mask;
  int64_t pair_max;           // the most bits one pair can take
};

inline uint64_t load64(const uint32_t* words, int64_t p) {
  uint64_t w;
  std::memcpy(&w, words + (p >> 5), sizeof(w));
  return w >> (p & 31);
}

// The gap of a kSpecial entry (escape or a large symbol), from the original table; p is the pair's
// start and moves past the gap code (and escape bits). Returns the gap, or -1 to stop the row (a
// negative symbol or gap would move the column backwards).
inline int64_t special_gap(const Decoder& d, int64_t& p, uint64_t bits) {
  const int32_t e = d.gap_lut[bits & d.gap_mask];
  p += e & 15;
  const int64_t s = e >> 4;
  if (s != d.escape) return s < 0 ? -1 : s;
  const int64_t gap = d.escape + static_cast<int64_t>(load64(d.words, p) & d.escape_mask);
  p += d.escape_bits;
  return gap < 0 ? -1 : gap;
}

// One unchecked pair of a lane: p < stream_end - (pair_max - 1) holds (see fast_steps). col saturates
// at cols.
template <typename Sink>
inline __attribute__((always_inline)) void step(const Decoder& d, int64_t& p, int64_t& col, Sink& sink, int lane) {
  uint64_t bits = load64(d.words, p);
  const uint32_t e = d.gap[bits & d.gap_mask];
  int64_t gap = e >> 4;
  const uint32_t lg = e & 15;
  if (__builtin_expect(gap == kSpecial, 0)) {
    gap = special_gap(d, p, bits);
    if (gap < 0) gap = d.cols;  // stop: saturate the column
    bits = load64(d.words, p);
  } else {
    p += lg;
    bits >>= lg;
  }
  const uint32_t vi = static_cast<uint32_t>(bits) & d.value_mask;
  p += d.value_len[vi];
  col = std::min(col + gap + 1, d.cols);
  sink.put(lane, col, d.value[vi]);
}

// The contract, every bound checked: decodes `left` pairs of a row from (p, col) or stops early.
template <typename Sink>
void checked_row(const Decoder& d, int64_t p, int64_t col, int64_t left, Sink& sink, int lane) {
  for (; left > 0; --left) {
    if (p < 0 || p >= d.stream_end) return;
    const uint64_t bits = load64(d.words, p);
    const int32_t e = d.gap_lut[bits & d.gap_mask];
    int64_t gap = e >> 4;
    p += e & 15;
    if (gap == d.escape) {
      if (p >= d.stream_end) return;
      gap = d.escape + static_cast<int64_t>(load64(d.words, p) & d.escape_mask);
      p += d.escape_bits;
    }
    if (gap < 0) return;
    col += gap + 1;
    if (col >= d.cols) return;
    if (p >= d.stream_end) return;
    const uint32_t vi = static_cast<uint32_t>(load64(d.words, p)) & d.value_mask;
    p += d.value_len[vi];
    sink.put(lane, col, d.value[vi]);
  }
}

// How many pairs from p cannot reach the end of the stream: every peek of them lies at or before
// p + fast · pair_max < stream_end.
inline int64_t fast_steps(const Decoder& d, int64_t p, int64_t left) {
  if (p < 0 || p >= d.stream_end) return 0;
  if (d.pair_max == 0) return left;
  return std::min(left, (d.stream_end - 1 - p) / d.pair_max);
}

struct Lane {
  int64_t row, p, col, left, fast;
  bool busy;
};

// Decodes rows [r0, r1) into `sink`: begin_row(lane, r), put(lane, col, value) (col may equal cols:
// ignore it), end_row(lane, r).
template <typename Sink>
void decode_rows(const Decoder& d, const int64_t* row_bits, const int32_t* row_nnz, int64_t r0, int64_t r1,
                 Sink& sink) {
  int64_t next = r0;
  Lane lanes[kLanes];
  // Gives `lane` the next row that has unchecked pairs to decode (rows without any are done here);
  // false when there is none.
  auto start = [&](int i) -> bool {
    Lane& l = lanes[i];
    l.busy = false;
    while (next < r1) {
      const int64_t r = next++;
      l.row = r;
      l.p = row_bits[r];
      l.col = -1;
      l.left = std::min<int64_t>(std::max<int32_t>(row_nnz[r], 0), d.cols);
      sink.begin_row(i, r);
      l.fast = fast_steps(d, l.p, l.left);
      if (l.fast > 0) return l.busy = true;
      checked_row(d, l.p, l.col, l.left, sink, i);
      sink.end_row(i, r);
    }
    return false;
  };
  // The lane's row is past its unchecked pairs: the rest checked, or on unchecked again when the
  // actual position allows. False when the row is done.
  auto resume = [&](int i) -> bool {
    Lane& l = lanes[i];
    if (l.left > 0) l.fast = fast_steps(d, l.p, l.left);
    if (l.fast > 0) return true;
    if (l.left > 0) checked_row(d, l.p, l.col, l.left, sink, i);
    sink.end_row(i, l.row);
    return false;
  };
  bool all = true;
  for (int i = 0; i < kLanes; ++i) all = start(i) && all;
  while (all) {
    int64_t p0 = lanes[0].p, p1 = lanes[1].p, p2 = lanes[2].p, p3 = lanes[3].p;
    int64_t c0 = lanes[0].col, c1 = lanes[1].col, c2 = lanes[2].col, c3 = lanes[3].col;
    const int64_t m = std::min(std::min(lanes[0].fast, lanes[1].fast), std::min(lanes[2].fast, lanes[3].fast));
    for (int64_t j = 0; j < m; ++j) {
      step(d, p0, c0, sink, 0);
      step(d, p1, c1, sink, 1);
      step(d, p2, c2, sink, 2);
      step(d, p3, c3, sink, 3);
    }
    lanes[0].p = p0, lanes[1].p = p1, lanes[2].p = p2, lanes[3].p = p3;
    lanes[0].col = c0, lanes[1].col = c1, lanes[2].col = c2, lanes[3].col = c3;
    for (int i = 0; i < kLanes; ++i) {
      Lane& l = lanes[i];
      l.left -= m;
      l.fast -= m;
      if (l.fast > 0 || resume(i) || start(i)) continue;
      all = false;
    }
  }
  // Out of rows for some lane: the others finish theirs alone.
  for (int i = 0; i < kLanes; ++i) {
    Lane& l = lanes[i];
    while (l.busy) {
      for (int64_t j = 0; j < l.fast; ++j) step(d, l.p, l.col, sink, i);
      l.left -= l.fast;
      l.fast = 0;
      if (!resume(i)) l.busy = false;
    }
  }
}

// Dense rows: zeroed by the caller, kept entries written.
struct DenseSink {
  float* dense;
  int64_t cols;
  float* row[kLanes];
  void begin_row(int i, int64_t r) { row[i] = dense + r * cols; }
  void put(int i, int64_t col, float v) {
    if (col < cols) row[i][col] = v;
  }
  void end_row(int, int64_t) {}
};

// Batch 1: y[r] = Σ value · x[col], x padded with x[cols] = 0.
struct DotSink {
  const float* x;
  float* y;
  float acc[kLanes];
  void begin_row(int i, int64_t) { acc[i] = 0.f; }
  void put(int i, int64_t col, float v) { acc[i] = __builtin_fmaf(v, x[col], acc[i]); }
  void end_row(int i, int64_t r) { y[r] = acc[i]; }
};

// Batch up to 8·kVectors: yt[r][0:S] = Σ value · xt[col][0:S], xt (cols + 1) x S with a zero row at
// cols, S = 8·kVectors.
template <int kVectors>
struct DotVectorSink {
  static constexpr int kStride = 8 * kVectors;
  const float* xt;
  float* yt;
  __m256 acc[kLanes][kVectors];
  void begin_row(int i, int64_t) {
    for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm256_setzero_ps();
  }
  void put(int i, int64_t col, float value) {
    const __m256 w = _mm256_set1_ps(value);
    const float* src = xt + col * kStride;
    for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm256_fmadd_ps(w, _mm256_load_ps(src + 8 * v), acc[i][v]);
  }
  void end_row(int i, int64_t r) {
    for (int v = 0; v < kVectors; ++v) _mm256_store_ps(yt + r * kStride + 8 * v, acc[i][v]);
  }
};

// The repacked tables a Decoder points into.
struct Tables {
  std::vector<uint16_t> gap;
  std::vector<uint8_t> value_len;
  std::vector<float> value;
};

Decoder make_decoder(const HcsrMatrix& w, Tables& t, const char* who) {
  LATENTOPS_CHECK(w.rows >= 0 && w.cols >= 0 && w.k >= 0 && w.n_words >= 0,
                  who << ": negative size rows=" << w.rows << " cols=" << w.cols << " k=" << w.k
                      << " n_words=" << w.n_words);
  LATENTOPS_CHECK(w.gap_bits >= 0 && w.gap_bits <= kMaxTableBits && w.value_bits >= 0 &&
                      w.value_bits <= kMaxTableBits,
                  who << ": table bits must be in [0, " << kMaxTableBits << "], got gap_bits=" << w.gap_bits
                      << " value_bits=" << w.value_bits);
  LATENTOPS_CHECK(w.escape_bits >= 0 && w.escape_bits <= 31, who << ": escape_bits must be in [0, 31], got "
                                                                   << w.escape_bits);
  Decoder d{};
  d.words = w.words;
  d.stream_end = w.n_words >= 2 ? 32 * (w.n_words - 1) : 0;
  d.cols = w.cols;
  d.gap_lut = w.gap_lut;
  d.escape = w.escape;
  d.escape_bits = w.escape_bits;
  d.escape_mask = w.escape_bits == 0 ? 0u : (1u << w.escape_bits) - 1u;
  const size_t n_gap = size_t{1} << w.gap_bits, n_value = size_t{1} << w.value_bits;
  d.gap_mask = static_cast<uint32_t>(n_gap - 1);
  d.value_mask = static_cast<uint32_t>(n_value - 1);
  t.gap.resize(n_gap);
  int max_gap_len = 0, max_value_len = 0;
  for (size_t i = 0; i < n_gap; ++i) {
    const int32_t e = w.gap_lut[i];
    const int32_t s = e >> 4;
    const bool special = s == w.escape || s < 0 || s >= static_cast<int32_t>(kSpecial);
    t.gap[i] = static_cast<uint16_t>(((special ? kSpecial : static_cast<uint32_t>(s)) << 4) | (e & 15));
    max_gap_len = std::max(max_gap_len, e & 15);
  }
  t.value_len.resize(n_value);
  t.value.resize(n_value);
  for (size_t i = 0; i < n_value; ++i) {
    const int32_t e = w.value_lut[i];
    const int32_t s = e >> 4;
    t.value_len[i] = static_cast<uint8_t>(e & 15);
    t.value[i] = (s >= 0 && s < w.k) ? w.codebook[s] : 0.f;  // out of the codebook: bounded garbage
    max_value_len = std::max(max_value_len, e & 15);
  }
  d.gap = t.gap.data();
  d.value_len = t.value_len.data();
  d.value = t.value.data();
  d.pair_max = max_gap_len + w.escape_bits + max_value_len;
  return d;
}

// Rows split into `parts` contiguous ranges of about equal work (a row costs its pairs plus
// `row_cost`): bounds[i], bounds[i + 1].
std::vector<int64_t> split_rows(const int32_t* row_nnz, int64_t rows, int64_t cols, int64_t row_cost, int parts) {
  std::vector<int64_t> bounds(static_cast<size_t>(parts) + 1, rows);
  bounds[0] = 0;
  if (parts == 1) return bounds;
  std::vector<int64_t> prefix(static_cast<size_t>(rows) + 1, 0);
  for (int64_t r = 0; r < rows; ++r)
    prefix[r + 1] = prefix[r] + std::min<int64_t>(std::max<int32_t>(row_nnz[r], 0), cols) + row_cost;
  for (int i = 1; i < parts; ++i) {
    const int64_t target = prefix[rows] / parts * i;
    bounds[i] = std::lower_bound(prefix.begin(), prefix.end(), target) - prefix.begin();
    bounds[i] = std::max(bounds[i], bounds[i - 1]);
  }
  return bounds;
}

int team_size(const int32_t* row_nnz, int64_t rows, int64_t extra) {
  // Under ~64K pairs a second thread costs more to wake than it saves.
  int64_t work = extra;
  for (int64_t r = 0; r < rows && work < 65536; ++r) work += std::max<int32_t>(row_nnz[r], 0) + 8;
  return work < 65536 ? 1 : max_threads();
}

template <typename MakeSink>
void run_split(const Decoder& d, const HcsrMatrix& w, int64_t row_cost, int64_t extra, MakeSink make_sink) {
  const int team = team_size(w.row_nnz, w.rows, extra);
  const std::vector<int64_t> bounds = split_rows(w.row_nnz, w.rows, w.cols, row_cost, team);
#pragma omp parallel num_threads(team) if (team > 1)
  {
    const int t = thread_id();
    if (t < team) {
      auto sink = make_sink(bounds[t], bounds[t + 1]);
      decode_rows(d, w.row_bits, w.row_nnz, bounds[t], bounds[t + 1], sink);
    }
  }
}

template <int kVectors>
void forward_block(const Decoder& d, const CompressedLinearForwardParams& p, int64_t b0, int64_t nb) {
  constexpr int64_t kStride = 8 * kVectors;
  const int64_t rows = p.w.rows, cols = p.w.cols, batch = p.batch;
  AlignedBuffer<float> xt, yt;
  xt.reset(static_cast<size_t>((cols + 1) * kStride), /*zero=*/false);
  yt.reset(static_cast<size_t>(rows * kStride), /*zero=*/false);
  float* xt_ = xt.get();
  float* yt_ = yt.get();
#pragma omp parallel for schedule(static) if (cols * nb > 65536)
  for (int64_t c = 0; c <= cols; ++c) {
    for (int64_t j = 0; j < kStride; ++j)
      xt_[c * kStride + j] = (c < cols && j < nb) ? p.x[(b0 + j) * cols + c] : 0.f;
  }
  run_split(d, p.w, 8, rows * nb / 8, [&](int64_t, int64_t) {
    DotVectorSink<kVectors> s;
    s.xt = xt_;
    s.yt = yt_;
    return s;
  });
#pragma omp parallel for schedule(static) if (rows * nb > 65536)
  for (int64_t j = 0; j < nb; ++j)
    for (int64_t r = 0; r < rows; ++r) p.y[(b0 + j) * rows + r] = yt_[r * kStride + j];
  (void)batch;
}

}  // namespace

void compressed_linear_decode_cpu(const CompressedLinearDecodeParams& p) {
  Tables t;
  const Decoder d = make_decoder(p.w, t, "compressed_linear_decode_cpu");
  if (p.w.rows == 0 || p.w.cols == 0) return;
  const int64_t cols = p.w.cols;
  float* dense = p.dense;
  // The zeros are most of the work: a row costs cols / 8 besides its pairs.
  run_split(d, p.w, cols / 8 + 8, p.w.rows * cols / 8, [&](int64_t r0, int64_t r1) {
    std::memset(dense + r0 * cols, 0, static_cast<size_t>((r1 - r0) * cols) * sizeof(float));
    DenseSink s;
    s.dense = dense;
    s.cols = cols;
    return s;
  });
}

void compressed_linear_forward_cpu(const CompressedLinearForwardParams& p) {
  Tables t;
  const Decoder d = make_decoder(p.w, t, "compressed_linear_forward_cpu");
  LATENTOPS_CHECK(p.batch >= 1, "compressed_linear_forward_cpu: batch must be ≥ 1, got " << p.batch);
  const int64_t rows = p.w.rows, cols = p.w.cols;
  if (rows == 0) return;
  if (cols == 0) {
    std::fill(p.y, p.y + p.batch * rows, 0.f);
    return;
  }
  if (p.batch == 1) {
    std::vector<float> xp(static_cast<size_t>(cols) + 1, 0.f);
    std::copy(p.x, p.x + cols, xp.begin());
    run_split(d, p.w, 8, 0, [&](int64_t, int64_t) {
      DotSink s;
      s.x = xp.data();
      s.y = p.y;
      return s;
    });
    return;
  }
  for (int64_t b0 = 0; b0 < p.batch; b0 += 16) {
    const int64_t nb = std::min<int64_t>(16, p.batch - b0);
    if (nb <= 8)
      forward_block<1>(d, p, b0, nb);
    else
      forward_block<2>(d, p, b0, nb);
  }
}

}  // namespace latentops
