// Decode and y = x·Wᵀ on the hcsr form, on the CPU (contract: latentops/compressed_linear.h).
//
// The decode is a chain of dependent lookups (bits → gap table → shift → value table → shift), ~14
// cycles of latency per (gap, value) pair but only ~16 instructions. So each thread decodes kLanes
// rows at once, round-robin (Huff0's 4-stream trick): the lanes' chains overlap and the loop runs at
// instruction throughput. A lane that finishes its row takes the next one of its chunk of rows.
//
// Measured on the 2-core EPYC (W 8192² 95% pruned, k = 32, the encoder's tables): ~7.5 cycles per
// pair per thread. What limits it: the ~17 instructions of a pair plus its group's refill, and 16
// GPRs for 4 lanes' (container, E) + tables, masks and x, so gcc keeps two lanes' containers on
// the stack (store-forwarding on their chains); then the rare paths' mispredictions.
//
// Tried and measured slower (same case, one thread, interleaved A/B, min of 12 x 3 rounds, batch 1):
// a joint (gap, value) table built per call, indexed by the next 11 or 12 bits, decoding a whole
// pair in one lookup ({(gap + 1) << 6 | total length, value}, 8 bytes) and sending the rest to the
// two-lookup path after a refill, groups of 4: 10.2-13.5 ms (11 bits) and 9.1-9.5 ms (12 bits) vs
// 8.1-8.8 ms here. Pairs longer than the index are 9.4% (11 bits) and 5.6% (12 bits) of this
// matrix's pairs (mean 8.6 bits): their branch mispredicts, about one every 11-18 pairs, cost more
// than the saved lookup: the slow-path blocks took ~40% of the samples (perf, cpu-clock). gcc still
// spills lane state to the stack. Taking the slow path out of line (noinline, by value) was slower
// again (its call clobbers the lanes' registers), and so was a 4-byte entry at 12 bits (16 KB:
// uint16 meta, uint16 index into a per-call palette of values; 9.3 ms vs 8.2). Also no better:
// 8 lanes (9.3-9.7 ms vs 8.5-8.6), root bits 12/7 (groups of 3; 8.1-8.4, within noise) and 11/8
// (9.2-12 ms). Reading x at an L1-resident column instead (a wrong-result experiment) saved only
// ~10-15%: most likely the decode's instructions, ~26 per pair with the refill, are the cost (this
// VM has no PMU counters to confirm it).
//
// Per lane a 64-bit container holds the stream from bit p on (one unaligned load at byte p >> 3,
// shifted by p & 7: ≥ 57 valid bits, the same bits as the contract's peeks), and a group of
// `group` pairs (group · longest fast pair ≤ 57) is decoded from it by shifts alone, then the
// container is refilled. The tables are repacked per call so that a pair costs two lookups and no
// field extraction, with root tables of kGapRootBits / kValueRootBits index bits (zlib's
// two-level idea: small enough for L1 next to x; the encoder's longer codes are its rare symbols):
//   gap:   uint16 ((symbol + 1) << 6 | length); a shift by the entry shifts by its length (shrx
//          uses the low 6 bits), and E += entry advances both the column (E >> 6) and the bits
//          consumed in the group (E & 63, < 64 since a group takes ≤ 57). The escape symbol
//          (kEscapeEntry: its raw bits are read after a refill) and the rest (kRareEntry: a code
//          longer than the root, a symbol > kMaxFastSymbol or a negative one: the whole pair is
//          decoded from the original tables, then a refill) carry flag bit 15.
//   value: 8 bytes (code length, codebook value); 0 for a symbol outside the codebook; length
//          kLongCode for a code longer than the root (decoded from the original table).
//
// Bounds without per-pair checks: a lane runs unchecked only for as many pairs as cannot take it
// past fast_end (pair_max bits each: the longest pair, escape included), and its column is clamped
// to `cols` at each refill: within a group it may run at most group · (kMaxFastSymbol + 1) past
// cols, into zero padding of x that the sinks read (the dense sink tests col < cols). A row's count
// is clamped to `cols` (columns strictly increase), so the work of any input is bounded by
// rows · cols pairs and nothing hangs. Near the end of the stream a row finishes in a checked loop
// that stops exactly where the contract says.
//
// The product: batch 1 accumulates a scalar per lane (x[col] · value); batch 2..16 one or two AVX2
// vectors per lane over x transposed to (cols + pad) x 8 or x 16; larger batches run in blocks of 16,
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
constexpr int kChunksPerThread = 16;  // row chunks per thread (see run_split)
constexpr int kMaxGroup = 4;             // pairs per container refill, at most
constexpr int kContainerBits = 57;       // valid bits after a refill
constexpr int32_t kMaxFastSymbol = 510;  // (symbol + 1) fits bits 6..14 of a gap entry
constexpr uint32_t kRareEntry = 1u << 15;  // gap entry flag: escape (| 1 << 14) or a symbol the fast table cannot hold
constexpr uint32_t kEscapeEntry = kRareEntry | (1u << 14);
constexpr int kMaxTableBits = 15;         // code lengths are 4-bit fields, so no table needs more
// Root bits of the repacked tables (zlib's two-level idea): they stay small enough for L1 next to
// x; a longer code (rare: Huffman gives long codes to rare symbols) takes the exact path.
constexpr int kGapRootBits = 12;
constexpr int kValueRootBits = 10;
constexpr uint32_t kLongCode = 255;  // value entry length of a code longer than the root

struct ValueEntry {
  uint32_t length;
  float value;
};

// The tables and bounds one decode reads.
struct Decoder {
  const uint32_t* words;
  const unsigned char* bytes;  // the same stream
  int64_t stream_end;          // a contract peek at p is in bounds iff 0 ≤ p < stream_end
  int64_t fast_end;            // refills and peeks of the unchecked loop stay below it
  int64_t cols;
  const int32_t* gap_lut;      // the original tables: special pairs and the checked loop
  const int32_t* value_lut;
  const uint16_t* gap;         // repacked
  const ValueEntry* value;
  uint64_t gap_mask, value_mask;            // of the original tables
  const float* codebook;
  int64_t k;
  int64_t escape;
  int escape_bits;
  uint32_t escape_mask;
  int64_t pair_max;            // the most bits one pair can take
  int group;                   // pairs per refill
  int64_t x_pad;               // zero columns the sinks' x needs past cols
};

// The contract's peek (low 32 bits of it); p must be in [0, stream_end).
inline uint32_t peek(const Decoder& d, int64_t p) {
  uint64_t w;
  std::memcpy(&w, d.words + (p >> 5), sizeof(w));
  return static_cast<uint32_t>(w >> (p & 31));
}

// ≥ 57 valid stream bits from p; p must be below fast_end.
inline uint64_t refill(const Decoder& d, int64_t p) {
  uint64_t w;
  std::memcpy(&w, d.bytes + (p >> 3), sizeof(w));
  return w >> (p & 7);
}

// The value code at bit p (in bounds), from the original table; 0 for a symbol outside the codebook.
inline ValueEntry exact_value(const Decoder& d, int64_t p) {
  const int32_t e = d.value_lut[peek(d, p) & d.value_mask];
  const int32_t s = e >> 4;
  return {static_cast<uint32_t>(e & 15), (s >= 0 && s < d.k) ? d.codebook[s] : 0.f};
}

// The contract, every bound checked: decodes `left` pairs of a row from (p, col) or stops early.
template <typename Sink>
void checked_row(const Decoder& d, int64_t p, int64_t col, int64_t left, Sink& sink, int lane) {
  for (; left > 0; --left) {
    if (p < 0 || p >= d.stream_end) return;
    const int32_t e = d.gap_lut[peek(d, p) & d.gap_mask];
    int64_t gap = e >> 4;
    p += e & 15;
    if (gap == d.escape) {
      if (p >= d.stream_end) return;
      gap = d.escape + static_cast<int64_t>(peek(d, p) & d.escape_mask);
      p += d.escape_bits;
    }
    if (gap < 0) return;
    col += gap + 1;
    if (col >= d.cols) return;
    if (p >= d.stream_end) return;
    const ValueEntry v = exact_value(d, p);
    p += v.length;
    sink.put(lane, col + 1, v.value);
  }
}

// How many pairs from p cannot take the unchecked loop past fast_end: each refill and peek of them
// lies at or before p + fast · pair_max < fast_end.
inline int64_t fast_steps(const Decoder& d, int64_t p, int64_t left) {
  if (p < 0 || p >= d.fast_end) return 0;
  if (d.pair_max == 0) return left;
  return std::min(left, (d.fast_end - 1 - p) / d.pair_max);
}

// One lane of the unchecked loop: p is where the container starts, E = (col + 1) << 6 | bits
// consumed since p. (col + 1 ≥ 0 keeps E unsigned at the row's start, col = -1; the sinks take
// c1 = col + 1 and index arrays shifted by one.)
struct LaneState {
  uint64_t bits;
  int64_t p;
  uint64_t E;
};

inline __attribute__((always_inline)) void begin_group(const Decoder& d, LaneState& s) {
  s.p += static_cast<int64_t>(s.E & 63);
  const int64_t c1 = std::min(static_cast<int64_t>(s.E >> 6), d.cols + 1);
  s.E = static_cast<uint64_t>(c1) << 6;
  s.bits = refill(d, s.p);
}

// What the hot loop reads per pair, as values the compiler keeps in registers. The repacked tables
// always have 2^kGapRootBits and 2^kValueRootBits entries (smaller ones repeated), so that their
// masks are constants and not two more live registers.
struct Hot {
  const uint16_t* gap;
  const ValueEntry* value;
  static constexpr uint64_t gap_mask = (uint64_t{1} << kGapRootBits) - 1;
  static constexpr uint64_t value_mask = (uint64_t{1} << kValueRootBits) - 1;
};

struct Special {
  int64_t p, c1;
  float value;
};

// A pair whose gap entry is special, decoded exactly from the original tables at bit p with column
// c1 - 1 before it. By value, so that the hot loop's state never has its address taken.
__attribute__((noinline)) Special special_pair(const Decoder& d, int64_t p, int64_t c1) {
  int64_t col = c1 - 1;
  const int32_t e = d.gap_lut[peek(d, p) & d.gap_mask];
  p += e & 15;
  int64_t gap = e >> 4;
  if (gap == d.escape) {
    gap = d.escape + static_cast<int64_t>(peek(d, p) & d.escape_mask);
    p += d.escape_bits;
  }
  col = gap < 0 ? d.cols : std::min(col + gap + 1, d.cols);  // a negative gap stops the row
  const ValueEntry v = exact_value(d, p);
  return {p + v.length, col + 1, v.value};
}

__attribute__((noinline)) ValueEntry long_value(const Decoder& d, int64_t p) { return exact_value(d, p); }

template <typename Sink>
inline __attribute__((always_inline)) void pair(const Decoder& d, const Hot& h, LaneState& s, Sink& sink,
                                                int lane) {
  const uint32_t e = h.gap[s.bits & h.gap_mask];
  if (__builtin_expect(e & kRareEntry, 0)) {
    if (e < kEscapeEntry) {  // a symbol the fast table cannot hold: all from the original tables
      const Special r = special_pair(d, s.p + static_cast<int64_t>(s.E & 63), static_cast<int64_t>(s.E >> 6));
      s.p = r.p;
      s.E = static_cast<uint64_t>(r.c1) << 6;
      s.bits = refill(d, r.p);
      sink.put(lane, r.c1, r.value);
      return;
    }
    // The escape: refill at its raw bits, so the container holds them, the value code and the rest
    // of the group (make_decoder sizes groups for that).
    const int64_t p = s.p + static_cast<int64_t>(s.E & 63) + (e & 63);
    s.bits = refill(d, p);
    const int64_t gap = d.escape + static_cast<int64_t>(s.bits & d.escape_mask);
    s.bits >>= d.escape_bits;
    s.p = p + d.escape_bits;
    s.E = static_cast<uint64_t>(std::min(static_cast<int64_t>(s.E >> 6) + gap + 1, d.cols + 1)) << 6;
  } else {
    s.bits >>= (e & 63);  // shrx takes the low 6 bits: the length
    s.E += e;
  }
  ValueEntry v = h.value[s.bits & h.value_mask];
  if (__builtin_expect(v.length == kLongCode, 0)) {  // longer than the root table: exact, then refill
    const int64_t p = s.p + static_cast<int64_t>(s.E & 63);
    v = long_value(d, p);
    s.p = p + v.length;
    s.bits = refill(d, s.p);
    s.E &= ~uint64_t{63};
    sink.put(lane, static_cast<int64_t>(s.E >> 6), v.value);
    return;
  }
  s.bits >>= v.length;
  s.E += v.length;
  sink.put(lane, static_cast<int64_t>(s.E >> 6), v.value);
}

// `groups` groups of each of the 4 lanes, round-robin; kGroup: the group size when known at compile
// time (unrolled), else 0 and `group`.
template <int kGroup, typename Sink>
inline __attribute__((always_inline)) void lockstep(const Decoder& d, const Hot& h, int64_t groups, int group,
                                                    LaneState& s0, LaneState& s1, LaneState& s2, LaneState& s3,
                                                    Sink& sink) {
  static_assert(kLanes == 4, "the round-robin below is written out for 4 lanes");
  for (int64_t g = 0; g < groups; ++g) {
    begin_group(d, s0);
    begin_group(d, s1);
    begin_group(d, s2);
    begin_group(d, s3);
#pragma GCC unroll 4
    for (int j = 0; j < (kGroup ? kGroup : group); ++j) {
      pair(d, h, s0, sink, 0);
      pair(d, h, s1, sink, 1);
      pair(d, h, s2, sink, 2);
      pair(d, h, s3, sink, 3);
    }
  }
}

struct Lane {
  int64_t row, left, fast;
  LaneState s;
  bool busy;
};

// Decodes rows [r0, r1) into `sink`: begin_row(lane, r), put(lane, c1, value) with c1 = col + 1
// (col may be ≥ cols, within x's padding: ignore it), end_row(lane, r).
template <typename Sink>
void decode_rows(const Decoder& d, const int64_t* row_bits, const int32_t* row_nnz, int64_t r0, int64_t r1,
                 const Sink& sink_in) {
  Sink sink = sink_in;
  const int group = d.group;
  const Hot hot{d.gap, d.value};
  int64_t next = r0;
  Lane lanes[kLanes];
  // `pairs` (≤ fast) unchecked pairs of one lane.
  auto advance = [&](int i, int64_t pairs) {
    Lane& l = lanes[i];
    l.left -= pairs;
    l.fast -= pairs;
    while (pairs > 0) {
      begin_group(d, l.s);
      const int64_t n = std::min<int64_t>(pairs, group);
      for (int64_t j = 0; j < n; ++j) pair(d, hot, l.s, sink, i);
      pairs -= n;
    }
    l.s.p += static_cast<int64_t>(l.s.E & 63);
    l.s.E &= ~uint64_t{63};
  };
  // Gives lane i the next row that has unchecked pairs to decode (rows without any are done here);
  // false when there is none.
  auto start = [&](int i) -> bool {
    Lane& l = lanes[i];
    l.busy = false;
    while (next < r1) {
      const int64_t r = next++;
      l.row = r;
      l.s.p = row_bits[r];
      l.s.E = 0;
      l.left = std::min<int64_t>(std::max<int32_t>(row_nnz[r], 0), d.cols);
      sink.begin_row(i, r);
      l.fast = fast_steps(d, l.s.p, l.left);
      if (l.fast > 0) return l.busy = true;
      checked_row(d, l.s.p, -1, l.left, sink, i);
      sink.end_row(i, r);
    }
    return false;
  };
  // Lane i's row is past its unchecked pairs: more unchecked ones when the actual position allows,
  // else the rest checked and the row ends. False when the row is done.
  auto resume = [&](int i) -> bool {
    Lane& l = lanes[i];
    if (l.left > 0) l.fast = fast_steps(d, l.s.p, l.left);
    if (l.fast > 0) return true;
    if (l.left > 0) checked_row(d, l.s.p, static_cast<int64_t>(l.s.E >> 6) - 1, l.left, sink, i);
    sink.end_row(i, l.row);
    return false;
  };
  // Runs lane i alone until it has a full group of unchecked pairs (or no row); false: no row.
  auto settle = [&](int i) -> bool {
    while (lanes[i].busy && lanes[i].fast < group) {
      if (lanes[i].fast > 0) advance(i, lanes[i].fast);
      if (!resume(i) && !start(i)) return false;
    }
    return lanes[i].busy;
  };
  bool all = true;
  for (int i = 0; i < kLanes; ++i) all = (start(i) && settle(i)) && all;
  while (all) {
    int64_t groups = lanes[0].fast;
    for (int i = 1; i < kLanes; ++i) groups = std::min(groups, lanes[i].fast);
    groups /= group;
    // Locals whose address is never taken, so that they live in registers.
    LaneState s0 = lanes[0].s, s1 = lanes[1].s, s2 = lanes[2].s, s3 = lanes[3].s;
    Sink hs = sink;
    const Hot h = hot;
    if (group == 2)  // the root tables' longest pair, 12 + 10 bits, makes groups of 2
      lockstep<2>(d, h, groups, 2, s0, s1, s2, s3, hs);
    else
      lockstep<0>(d, h, groups, group, s0, s1, s2, s3, hs);
    sink = hs;
    lanes[0].s = s0, lanes[1].s = s1, lanes[2].s = s2, lanes[3].s = s3;
    for (int i = 0; i < kLanes; ++i) {
      Lane& l = lanes[i];
      l.s.p += static_cast<int64_t>(l.s.E & 63);
      l.s.E &= ~uint64_t{63};
      l.left -= groups * group;
      l.fast -= groups * group;
      if (!settle(i)) all = false;
    }
  }
  // Out of rows for some lane: the others finish theirs alone.
  for (int i = 0; i < kLanes; ++i) {
    while (lanes[i].busy) {
      advance(i, lanes[i].fast);
      if (!resume(i)) lanes[i].busy = lanes[i].busy && start(i);
    }
  }
}

// Dense rows: zeroed by the caller, kept entries written.
struct DenseSink {
  float* dense;
  int64_t cols;
  float* row[kLanes];  // shifted by one: row[i][c1] is column c1 - 1
  void begin_row(int i, int64_t r) { row[i] = dense + r * cols - 1; }
  void put(int i, int64_t c1, float v) {
    if (c1 <= cols) row[i][c1] = v;
  }
  void end_row(int, int64_t) {}
};

// Batch 1: y[r] = Σ value · x[col], x zero-padded past cols.
struct DotSink {
  const float* x;  // shifted by one
  float* y;
  float acc[kLanes];
  void begin_row(int i, int64_t) { acc[i] = 0.f; }
  void put(int i, int64_t c1, float v) { acc[i] = __builtin_fmaf(v, x[c1], acc[i]); }
  void end_row(int i, int64_t r) { y[r] = acc[i]; }
};

// Batch up to 8·kVectors: yt[r][0:S] = Σ value · xt[col][0:S], xt with S = 8·kVectors columns and
// zero rows past cols.
template <int kVectors>
struct DotVectorSink {
  static constexpr int kStride = 8 * kVectors;
  const float* xt;  // shifted by one row
  float* yt;
  __m256 acc[kLanes][kVectors];
  void begin_row(int i, int64_t) {
    for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm256_setzero_ps();
  }
  void put(int i, int64_t c1, float value) {
    const __m256 w = _mm256_set1_ps(value);
    const float* src = xt + c1 * kStride;
    for (int v = 0; v < kVectors; ++v) acc[i][v] = _mm256_fmadd_ps(w, _mm256_load_ps(src + 8 * v), acc[i][v]);
  }
  void end_row(int i, int64_t r) {
    for (int v = 0; v < kVectors; ++v) _mm256_store_ps(yt + r * kStride + 8 * v, acc[i][v]);
  }
};

// The repacked tables a Decoder points into.
struct Tables {
  std::vector<uint16_t> gap;
  std::vector<ValueEntry> value;
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
  d.bytes = reinterpret_cast<const unsigned char*>(w.words);
  d.stream_end = w.n_words >= 2 ? 32 * (w.n_words - 1) : 0;
  d.fast_end = w.n_words >= 2 ? 32 * w.n_words - 64 : 0;  // a refill at p reads bytes up to p/8 + 7
  d.cols = w.cols;
  d.gap_lut = w.gap_lut;
  d.value_lut = w.value_lut;
  d.escape = w.escape;
  d.escape_bits = w.escape_bits;
  d.escape_mask = w.escape_bits == 0 ? 0u : (1u << w.escape_bits) - 1u;
  const size_t n_gap = size_t{1} << w.gap_bits, n_value = size_t{1} << w.value_bits;
  d.gap_mask = n_gap - 1;
  d.value_mask = n_value - 1;
  d.codebook = w.codebook;
  d.k = w.k;
  const int gap_root = std::min(w.gap_bits, kGapRootBits), value_root = std::min(w.value_bits, kValueRootBits);
  const size_t n_gap_root = size_t{1} << gap_root, n_value_root = size_t{1} << value_root;
  // Whether the root index i decides the entry: every extension of it to the full table agrees
  // (always so for a canonical table and a code no longer than the root).
  auto decided = [](const int32_t* lut, size_t n, size_t n_root, size_t i) {
    for (size_t j = i + n_root; j < n; j += n_root)
      if (lut[j] != lut[i]) return false;
    return true;
  };
  int max_gap_len = 0, max_fast_gap_len = 0, max_value_len = 0, max_fast_value_len = 0;
  int32_t max_fast_symbol = 0;
  for (size_t i = 0; i < n_gap; ++i) max_gap_len = std::max(max_gap_len, w.gap_lut[i] & 15);
  for (size_t i = 0; i < n_value; ++i) max_value_len = std::max(max_value_len, w.value_lut[i] & 15);
  t.gap.resize(n_gap_root);
  for (size_t i = 0; i < n_gap_root; ++i) {
    const int32_t e = w.gap_lut[i];
    const int32_t s = e >> 4, len = e & 15;
    const bool rooted = len <= gap_root && decided(w.gap_lut, n_gap, n_gap_root, i);
    const bool escape = rooted && s == w.escape && s >= 0;
    const bool fast = rooted && !escape && s >= 0 && s <= kMaxFastSymbol;
    t.gap[i] = static_cast<uint16_t>(
        (escape ? kEscapeEntry : fast ? static_cast<uint32_t>(s + 1) << 6 : kRareEntry) | len);
    if (fast || escape) max_fast_gap_len = std::max(max_fast_gap_len, len);
    if (fast) max_fast_symbol = std::max(max_fast_symbol, s);
  }
  t.value.resize(n_value_root);
  for (size_t i = 0; i < n_value_root; ++i) {
    const int32_t e = w.value_lut[i];
    const int32_t s = e >> 4, len = e & 15;
    if (len <= value_root && decided(w.value_lut, n_value, n_value_root, i)) {
      t.value[i] = {static_cast<uint32_t>(len), (s >= 0 && s < w.k) ? w.codebook[s] : 0.f};  // else bounded garbage
      max_fast_value_len = std::max(max_fast_value_len, len);
    } else {
      t.value[i] = {kLongCode, 0.f};
    }
  }
  // Repeated up to the fixed sizes: an index's low bits pick the same entry.
  t.gap.resize(size_t{1} << kGapRootBits);
  for (size_t i = n_gap_root; i < t.gap.size(); ++i) t.gap[i] = t.gap[i & (n_gap_root - 1)];
  t.value.resize(size_t{1} << kValueRootBits);
  for (size_t i = n_value_root; i < t.value.size(); ++i) t.value[i] = t.value[i & (n_value_root - 1)];
  d.gap = t.gap.data();
  d.value = t.value.data();
  d.pair_max = max_gap_len + w.escape_bits + max_value_len;
  // A group fits the container from its refill on, and so does the rest of it after an escape's
  // refill (escape bits, the value code, up to group - 1 more pairs).
  const int fast_pair = max_fast_gap_len + max_fast_value_len;
  d.group = kMaxGroup;
  while (d.group > 1 && (d.group * fast_pair > kContainerBits ||
                         w.escape_bits + max_fast_value_len + (d.group - 1) * fast_pair > kContainerBits))
    --d.group;
  d.x_pad = static_cast<int64_t>(d.group) * (max_fast_symbol + 1) + 1;
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

// Rows in chunks of about equal work, handed out dynamically: on a shared machine a thread that
// is descheduled (or slow to wake) leaves its chunks to the others instead of stalling the call
// at the barrier. make_sink(r0, r1) gives a chunk's sink.
template <typename MakeSink>
void run_split(const Decoder& d, const HcsrMatrix& w, int64_t row_cost, int64_t extra, MakeSink make_sink) {
  const int team = team_size(w.row_nnz, w.rows, extra);
  const int chunks = team == 1 ? 1 : static_cast<int>(std::min<int64_t>(w.rows, int64_t{kChunksPerThread} * team));
  const std::vector<int64_t> bounds = split_rows(w.row_nnz, w.rows, w.cols, row_cost, chunks);
#pragma omp parallel for num_threads(team) schedule(dynamic, 1) if (team > 1)
  for (int c = 0; c < chunks; ++c)
    decode_rows(d, w.row_bits, w.row_nnz, bounds[c], bounds[c + 1], make_sink(bounds[c], bounds[c + 1]));
}

template <int kVectors>
void forward_block(const Decoder& d, const CompressedLinearForwardParams& p, int64_t b0, int64_t nb) {
  constexpr int64_t kStride = 8 * kVectors;
  const int64_t rows = p.w.rows, cols = p.w.cols, xrows = cols + d.x_pad;
  AlignedBuffer<float> xt, yt;
  xt.reset(static_cast<size_t>(xrows * kStride), /*zero=*/false);
  yt.reset(static_cast<size_t>(rows * kStride), /*zero=*/false);
  float* xt_ = xt.get();
  float* yt_ = yt.get();
#pragma omp parallel for schedule(static) if (cols * nb > 65536)
  for (int64_t c = 0; c < xrows; ++c) {
    for (int64_t j = 0; j < kStride; ++j)
      xt_[c * kStride + j] = (c < cols && j < nb) ? p.x[(b0 + j) * cols + c] : 0.f;
  }
  run_split(d, p.w, 8, rows * nb / 8, [&](int64_t, int64_t) {
    DotVectorSink<kVectors> s;
    s.xt = xt_ - kStride;
    s.yt = yt_;
    return s;
  });
#pragma omp parallel for schedule(static) if (rows * nb > 65536)
  for (int64_t j = 0; j < nb; ++j)
    for (int64_t r = 0; r < rows; ++r) p.y[(b0 + j) * rows + r] = yt_[r * kStride + j];
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
    std::vector<float> xp(static_cast<size_t>(cols + d.x_pad), 0.f);
    std::copy(p.x, p.x + cols, xp.begin());
    run_split(d, p.w, 8, 0, [&](int64_t, int64_t) {
      DotSink s;
      s.x = xp.data() - 1;
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
