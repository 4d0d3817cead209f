"""One Huffman-coded symbol stream as HAM and sHAM store it, with periodic sync points.

The stream is the paper's: the code words of the symbols one after another, packed in 64-bit
words, a code word straddling two words where it falls across a boundary (as the authors'
`huffman.make_words_list_to_int` cuts a string of concatenated codes every 64 characters), the last
word zero-padded, ⌈bits / 64⌉ words in all. One difference: latentops' streams are LSB-first (a
word's first bit is its lowest; huffman.py's convention, which the lookup tables read), theirs
MSB-first (a word is the integer of a '0'/'1' string).

Decoding: one table lookup per symbol, never bit by bit. A single stream has no offsets, so we add
periodic sync points (`sync_bits`: the bit position of every `sync_every`-th symbol, a few bytes per
thousands of symbols), the way the authors' parallel dot product keeps the (word, bit) start of every
column (experiments/time_space/uws_testing_time_space.py, make_word_with_info); ours are every S
symbols instead of every column, so the work per lane does not depend on the matrix's shape. The
words themselves are the paper's. The decoder steps all segments at once: numpy operations over
⌈n / S⌉ lanes, S steps. Each segment must end exactly where the next begins, which also validates.
"""

from __future__ import annotations

import numpy as np

from latentops.codecs import huffman
from latentops.codecs.errors import CorruptedFileError

DEFAULT_SYNC_EVERY = 4096
MAX_SYNC_EVERY = 1 << 16
_BLOCK = 1 << 22  # symbols per block of the encoder: bounded temporaries


def encode_stream(symbols: np.ndarray, lengths: np.ndarray, sync_every: int = DEFAULT_SYNC_EVERY):
    """(words: int64 array of ⌈bits / 64⌉ words, sync_bits: int64 positions of symbols 0, S, 2S, …,
    bits) of `symbols` (ints < lengths.size) coded with the canonical code of `lengths`."""
    symbols = np.asarray(symbols).reshape(-1)
    code, code_bits = huffman.code_words(lengths)
    code_bits = code_bits.astype(np.uint64)
    counts = np.bincount(symbols, minlength=lengths.size) if symbols.size else np.zeros(lengths.size, np.int64)
    total = int((counts.astype(np.uint64) * code_bits).sum())
    out = np.zeros((total + 63) // 64 + 1, dtype=np.uint64)  # one spare word for spills
    sync = np.zeros((symbols.size + sync_every - 1) // sync_every, dtype=np.int64)
    base = 0
    for lo in range(0, symbols.size, _BLOCK):
        block = symbols[lo : lo + _BLOCK]
        bits = code_bits[block]
        start = np.cumsum(bits) - bits + np.uint64(base)
        first_sync = -lo % sync_every
        sync[(lo + first_sync) // sync_every : (lo + block.size + sync_every - 1) // sync_every] = start[
            first_sync::sync_every
        ]
        word = (start >> np.uint64(6)).astype(np.int64)
        shift = start & np.uint64(63)
        values = code[block]
        runs = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
        # each word is the OR of the codes that start in it, plus the high part of one that spills in
        out[word[runs]] |= np.bitwise_or.reduceat(values << shift, runs)
        spill = np.flatnonzero(shift + bits > np.uint64(64))
        out[word[spill] + 1] |= values[spill] >> (np.uint64(64) - shift[spill])
        base += int(bits.sum())
    return out[: (total + 63) // 64].view(np.int64), sync, total


def decode_stream(
    words: np.ndarray,
    sync_bits: np.ndarray,
    lengths: np.ndarray,
    n: int,
    sync_every: int,
    *,
    strict: bool,
    where: str = "stream",
) -> np.ndarray:
    """The n symbols (int16, or int32 for alphabets over 32767) of the stream; with strict=True and
    a one-symbol code, an empty array (there is nothing to check). strict=True (for validate)
    raises CorruptedFileError unless the stream is exactly what encode_stream writes:
    every segment ends at the next sync point, the last symbol ends in the last word, padding zero.
    The sync points, the length of the stream and the code must be checked before (check_stream)."""
    dtype = np.int16 if lengths.size <= 1 << 15 else np.int32
    if n == 0:
        return np.zeros(0, dtype=dtype)
    table, table_bits = huffman.decode_table(lengths)
    if table_bits == 0:  # one symbol, coded in 0 bits: nothing to check, and n may be huge
        return np.zeros(0, dtype=dtype) if strict else np.full(n, table[0] >> 4, dtype=dtype)
    w32 = np.asarray(words).view(np.uint32).astype(np.uint64)
    # pair[i] = words i and i + 1 as one 64-bit window; padding covers a lane that runs past the end
    pad = (sync_every * huffman.MAX_LENGTH) // 32 + 2
    w32 = np.concatenate([w32, np.zeros(pad, dtype=np.uint64)])
    pair = w32[:-1] | (w32[1:] << np.uint64(32))
    table_len = (table & 15).astype(np.uint64)
    table_sym = (table >> 4).astype(dtype)
    lanes = sync_bits.size
    pos = sync_bits.astype(np.uint64)
    out = np.empty((sync_every, lanes), dtype=dtype)
    window = np.empty(lanes, dtype=np.uint64)
    step_len = np.empty(lanes, dtype=np.uint64)
    mask = np.uint64((1 << table_bits) - 1)
    last = n - (lanes - 1) * sync_every  # symbols of the last segment
    last_end = None
    five, thirty_one = np.uint64(5), np.uint64(31)
    for step in range(sync_every):
        if step == last:
            last_end = int(pos[-1])
        np.take(pair, pos >> five, out=window)
        np.right_shift(window, pos & thirty_one, out=window)
        np.bitwise_and(window, mask, out=window)
        np.take(table_sym, window, out=out[step])
        np.take(table_len, window, out=step_len)
        pos += step_len
    if last_end is None:
        last_end = int(pos[-1])
    if strict:
        ends = pos[:-1].astype(np.int64)
        bad = np.flatnonzero(ends != sync_bits[1:])
        if bad.size:
            raise CorruptedFileError(
                f"{where}: segment {int(bad[0])}'s {sync_every} codes end at bit {int(ends[bad[0]])}, "
                f"not at the next sync point {int(sync_bits[bad[0] + 1])}"
            )
        n_words = np.asarray(words).size
        if last_end > 64 * n_words:
            raise CorruptedFileError(f"{where}: the {n} codes run to bit {last_end}, past the {n_words} words")
        if (last_end + 63) // 64 != n_words:
            raise CorruptedFileError(f"{where}: {n_words} words, but the codes end at bit {last_end}")
        if last_end % 64 and int(np.asarray(words)[-1].view(np.uint64) >> np.uint64(last_end % 64)):
            raise CorruptedFileError(f"{where}: the padding after the last code is not zero")
    return out.T.reshape(-1)[:n]


def check_stream(words, sync_bits, lengths, n: int, sync_every: int, where: str) -> None:
    """What decode_stream needs to stay in bounds: the code is a complete prefix code, the sync
    points are as many as the segments, start at 0, never decrease and lie within the stream, and
    the stream has enough bits for n codes of the shortest length."""
    huffman.check_lengths(lengths, f"{where}: lengths")
    if not 1 <= sync_every <= MAX_SYNC_EVERY:
        raise CorruptedFileError(f"{where}: sync_every {sync_every} must be in [1, {MAX_SYNC_EVERY}]")
    segments = (n + sync_every - 1) // sync_every
    if sync_bits.size != segments:
        raise CorruptedFileError(
            f"{where}: sync_bits has {sync_bits.size} entries, {n} symbols every {sync_every} need {segments}"
        )
    bits = 64 * np.asarray(words).size
    used = np.flatnonzero(lengths)
    if n and used.size == 0:
        raise CorruptedFileError(f"{where}: {n} symbols but an empty code")
    if used.size > 1:
        shortest = int(lengths[used].min())
        if n * shortest > bits:
            raise CorruptedFileError(
                f"{where}: words: the stream of {bits} bits is shorter than {n} codes of at least {shortest} bit(s)"
            )
    elif np.asarray(words).size:
        raise CorruptedFileError(f"{where}: words: a one-symbol code takes no words, got {np.asarray(words).size}")
    if sync_bits.size:
        s = sync_bits.astype(np.int64)
        if s[0] != 0 or bool((np.diff(s) < 0).any()) or int(s.max()) > bits:
            raise CorruptedFileError(f"{where}: sync_bits must start at 0, never decrease and stay within {bits} bits")
