"""Canonical, length-limited Huffman codes: lengths from symbol counts, the code words, and the
lookup tables that decode one symbol per lookup (never bit by bit).

Conventions shared by every format of latentops.codecs and by the kernels (see
csrc/include/latentops/compressed_linear.h):
- a code is given by its lengths alone (one uint8 per symbol, 0 = the symbol never occurs):
  canonical code words in (length, symbol) order, as DEFLATE assigns them;
- streams are LSB-first, so a code word is stored bit-reversed (its first bit is the lowest);
- an alphabet with one used symbol codes it in 0 bits (its stored length is 1, by convention);
- a lookup table has 2^bits int32 entries, bits = the longest length, entry = symbol << 4 | length.
"""

from __future__ import annotations

import heapq

import numpy as np

from latentops.codecs.errors import CorruptedFileError

# Limits of the tables: 15 is what the 4 length bits of a table entry hold; 12 keeps a table at
# 16 KiB, in a CPU core's L1 with room for the stream and x.
MAX_LENGTH = 15
DEFAULT_MAX_LENGTH = 12


def huffman_lengths(counts: np.ndarray, max_length: int = DEFAULT_MAX_LENGTH) -> np.ndarray:
    """Code lengths (uint8) of a Huffman code for these symbol counts, no length above max_length.

    Unused symbols get 0; one used symbol gets 1 (coded in 0 bits). Where plain Huffman codes exceed
    max_length, the lengths are limited as JPEG's Annex K.3 does (move leaves up the tree, then give
    the shortest codes to the most frequent symbols): optimal when the limit does not bind, within a
    fraction of a bit per symbol of the optimal limited code when it does."""
    if not 1 <= max_length <= MAX_LENGTH:
        raise ValueError(
            f"max_length must be in [1, {MAX_LENGTH}] (a table entry holds 4 bits of length), got {max_length}"
        )
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(counts.size, dtype=np.uint8)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used] = 1
        return lengths
    if used.size > 1 << max_length:
        raise ValueError(f"{used.size} symbols cannot be coded in at most {max_length} bits")
    # Huffman's merge, tracking each leaf's depth: heap items (count, tie-break, leaves).
    heap = [(int(counts[s]), i, [int(s)]) for i, s in enumerate(used)]
    heapq.heapify(heap)
    depth = dict.fromkeys(used.tolist(), 0)
    order = len(heap)
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        for s in a:
            depth[s] += 1
        for s in b:
            depth[s] += 1
        heapq.heappush(heap, (c1 + c2, order, a + b))
        order += 1
    longest = max(depth.values())
    if longest <= max_length:
        for s, d in depth.items():
            lengths[s] = d
        return lengths
    # How many codes of each length, then JPEG's adjustment: a pair of leaves at the deepest level
    # moves up one level and a leaf at a shallower level j becomes an internal node with two
    # children at j + 1; repeat until nothing is deeper than max_length.
    per_length = np.bincount(list(depth.values()), minlength=longest + 1)
    for i in range(longest, max_length, -1):
        while per_length[i] > 0:
            j = i - 2
            while per_length[j] == 0:
                j -= 1
            per_length[i] -= 2
            per_length[i - 1] += 1
            per_length[j + 1] += 2
            per_length[j] -= 1
    # The most frequent symbols take the shortest codes (ties by symbol, for determinism).
    by_frequency = used[np.lexsort((used, -counts[used]))]
    assigned = np.repeat(np.arange(per_length.size), per_length)
    lengths[by_frequency] = assigned[: by_frequency.size]
    return lengths


def check_lengths(lengths: np.ndarray, what: str) -> None:
    """Refuse lengths that are no complete prefix code (Kraft sum ≠ 1), as a CorruptedFileError
    naming `what`: a decoder built from them could otherwise meet bit patterns that decode to
    nothing."""
    lengths = np.asarray(lengths)
    if lengths.dtype != np.uint8 or lengths.ndim != 1:
        raise CorruptedFileError(f"{what}: code lengths must be a 1-D uint8 array, got {lengths.dtype} {lengths.shape}")
    if lengths.size and int(lengths.max()) > MAX_LENGTH:
        raise CorruptedFileError(f"{what}: a code length is {int(lengths.max())} > {MAX_LENGTH}")
    used = lengths[lengths > 0].astype(np.int64)
    if used.size == 0:
        return
    if used.size == 1:
        if used[0] != 1:
            raise CorruptedFileError(f"{what}: a single used symbol must have length 1, got {int(used[0])}")
        return
    kraft = int(np.sum(np.left_shift(np.int64(1), MAX_LENGTH - used)))
    if kraft != 1 << MAX_LENGTH:
        raise CorruptedFileError(
            f"{what}: the code lengths are no complete prefix code (Kraft sum {kraft / (1 << MAX_LENGTH)} ≠ 1)"
        )


def code_words(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(words, bits) per symbol: the canonical code word bit-reversed (uint64, ready for an LSB-first
    stream) and the number of bits written for it (0 for the only symbol of a one-symbol code)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    words = np.zeros(lengths.size, dtype=np.uint64)
    bits = lengths.copy()
    used = np.flatnonzero(lengths)
    if used.size <= 1:
        bits[:] = 0
        return words, bits
    order = used[np.lexsort((used, lengths[used]))]
    code, previous = 0, int(lengths[order[0]])
    for i, s in enumerate(order.tolist()):
        length = int(lengths[s])
        if i:
            code = (code + 1) << (length - previous)
        previous = length
        words[s] = int(f"{code:0{length}b}"[::-1], 2)
    return words, bits


def decode_table(lengths: np.ndarray) -> tuple[np.ndarray, int]:
    """(table, bits): the int32 lookup table of 2^bits entries, symbol << 4 | length, indexed by the
    next `bits` bits of an LSB-first stream."""
    words, bits = code_words(lengths)
    table_bits = int(bits.max()) if bits.size else 0
    table = np.zeros(1 << table_bits, dtype=np.int32)
    for s in np.flatnonzero(np.asarray(lengths)).tolist():
        length = int(bits[s])
        # every index whose low `length` bits are the (reversed) code word
        table[int(words[s]) :: 1 << length] = (s << 4) | length
    return table, table_bits


def entropy_bits(counts: np.ndarray) -> float:
    """H in bits per symbol of the empirical distribution `counts`."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if p.size else 0.0


def pack_bits(values: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, int]:
    """Write each value in `bits[i]` bits (≤ 32), one after another LSB-first: (uint32 words with two
    zero words of padding after the last bit, total bits). Vectorized: values never overlap, so each
    64-bit word is the OR of the pieces that start in it plus the spill of the one before."""
    values = np.asarray(values, dtype=np.uint64)
    bits = np.asarray(bits, dtype=np.int64)
    total = int(bits.sum())
    n_words64 = (total + 63) // 64 + 1
    out = np.zeros(n_words64, dtype=np.uint64)
    if values.size:
        start = np.cumsum(bits) - bits
        word, shift = start >> 6, (start & 63).astype(np.uint64)
        low = values << shift
        first = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
        out[word[first]] = np.bitwise_or.reduceat(low, first)
        spill = np.flatnonzero((start & 63) + bits > 64)
        # a value that crosses into the next word: its high part (each word takes at most one)
        out[word[spill] + 1] |= values[spill] >> (np.uint64(64) - shift[spill])
    n_words32 = (total + 31) // 32 + 2
    padded = np.zeros(n_words32, dtype=np.uint32)
    as32 = out.view(np.uint32)
    padded[: min(n_words32, as32.size)] = as32[:n_words32]
    return padded, total


def read_bits(words: np.ndarray, start: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The `bits`-wide (≤ 32) fields starting at bit positions `start` of an LSB-first uint32 stream
    (vectorized; the positions must lie within the padded stream)."""
    w = np.asarray(words, dtype=np.uint64)
    start = np.asarray(start, dtype=np.int64)
    i, shift = start >> 5, (start & 31).astype(np.uint64)
    window = (w[i] | (w[i + 1] << np.uint64(32))) >> shift
    return window & ((np.uint64(1) << np.asarray(bits, dtype=np.uint64)) - np.uint64(1))
