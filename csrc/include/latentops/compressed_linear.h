// Matmul on the compressed form: y = x·Wᵀ (x: batch x cols, W: rows x cols) with W held in the
// "hcsr" format of latentops.codecs (python/latentops/codecs/hcsr.py writes it; its docstring is the
// format's definition) and decoded on the fly, never materialized; and the decode itself.
//
// The bit stream. Bits are read LSB-first from little-endian uint32 words: the 32 bits starting at
// bit p are
//   peek(p) = low 32 bits of ((uint64)words[p >> 5] | (uint64)words[(p >> 5) + 1] << 32) >> (p & 31)
// (the encoder pads the stream with two zero words, so a well-formed row never reads past n_words).
// Row r is coded in bits [row_bits[r], row_bits[r + 1]) as row_nnz[r] pairs (gap code, value code),
// in increasing column order, starting from col = -1:
//   e = gap_lut[peek(p) & ((1 << gap_bits) - 1)];    p += e & 15;   s = e >> 4;
//   if (s == escape) { gap = escape + (peek(p) & ((1 << escape_bits) - 1));  p += escape_bits; }
//   else gap = s;
//   col += gap + 1;
//   e = value_lut[peek(p) & ((1 << value_bits) - 1)];  p += e & 15;
//   W[r][col] = codebook[e >> 4];
// Every other entry of W is 0. A lookup table entry is (symbol << 4) | code length (0..15): the
// canonical Huffman codes of the format, expanded so one lookup decodes one symbol (a table of
// 2^bits entries, bits = the longest code; bits = 0 for an alphabet of one symbol, coded in 0 bits).
// escape_bits is 0..31.
//
// Safety. The caller validates a matrix once (CompressedMatrix.validate decodes it with every bound
// checked). The kernels still never read outside `words` or the tables and never write outside their
// outputs on any input: a row ends early at a column ≥ cols or a word index ≥ n_words - 1.
#pragma once
#include <cstdint>

namespace latentops {

struct HcsrMatrix {
  const uint32_t* words;    // n_words little-endian words (the stream, padded)
  int64_t n_words;
  const int64_t* row_bits;  // rows + 1 bit offsets, row_bits[0] = 0
  const int32_t* row_nnz;   // rows
  const int32_t* gap_lut;   // 2^gap_bits entries
  const int32_t* value_lut; // 2^value_bits entries
  const float* codebook;    // k values
  int64_t rows, cols, k;
  int32_t gap_bits, value_bits, escape, escape_bits;
};

// dense (rows x cols, row-major): overwritten, zeros included.
struct CompressedLinearDecodeParams {
  HcsrMatrix w;
  float* dense;
};

// y = x·Wᵀ: x (batch x cols, row-major), y (batch x rows, row-major, overwritten). batch ≥ 1.
struct CompressedLinearForwardParams {
  HcsrMatrix w;
  const float* x;
  int64_t batch;
  float* y;
};

void compressed_linear_decode_cpu(const CompressedLinearDecodeParams& p);
void compressed_linear_forward_cpu(const CompressedLinearForwardParams& p);

// `stream`: a cudaStream_t; all pointers on the device.
void compressed_linear_decode_cuda(const CompressedLinearDecodeParams& p, void* stream);
void compressed_linear_forward_cuda(const CompressedLinearForwardParams& p, void* stream);

}  // namespace latentops
