import itertools

import numpy as np
import pytest

from latentops.codecs import CorruptedFileError, huffman


def kraft(lengths):
    used = lengths[lengths > 0].astype(np.int64)
    return float(np.sum(2.0 ** (-used)))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_optimal_when_the_limit_does_not_bind(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    counts = rng.zipf(1 + alpha, 40).clip(max=1000) + rng.integers(0, 3, 40)
    lengths = huffman.huffman_lengths(counts, 15)
    assert kraft(lengths) == 1.0
    h = huffman.entropy_bits(counts)
    mean = float((counts * lengths).sum() / counts.sum())
    assert h <= mean < h + 1


def test_canonical_order_and_table_round_trip():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 100, 30)
    counts[[3, 7]] = 0
    lengths = huffman.huffman_lengths(counts, 12)
    words, bits = huffman.code_words(lengths)
    used = np.flatnonzero(lengths)
    order = used[np.lexsort((used, lengths[used]))]
    codes = [int(f"{int(words[s]):0{int(bits[s])}b}"[::-1], 2) for s in order]  # MSB-first code values
    assert all(a < b for a, b in itertools.pairwise(codes))  # canonical: increasing in (length, symbol)
    symbols = rng.choice(used, 5000)
    stream, total = huffman.pack_bits(words[symbols], bits[symbols])
    table, table_bits = huffman.decode_table(lengths)
    pos, out = 0, []
    for _ in symbols:
        entry = int(table[int(huffman.read_bits(stream, np.array([pos]), np.array([table_bits]))[0])])
        out.append(entry >> 4)
        pos += entry & 15
    assert pos == total and np.array_equal(out, symbols)


def test_length_limit_binding_still_decodes():
    counts = np.array([2**i for i in range(20)])  # plain Huffman lengths reach 19
    lengths = huffman.huffman_lengths(counts, 8)
    assert int(lengths.max()) == 8 and kraft(lengths) == 1.0
    huffman.check_lengths(lengths, "limited")
    table, _ = huffman.decode_table(lengths)
    words, _ = huffman.code_words(lengths)
    for s in range(20):
        assert table[int(words[s])] >> 4 == s


def test_check_lengths_refuses_incomplete_codes():
    with pytest.raises(CorruptedFileError, match="Kraft"):
        huffman.check_lengths(np.array([1, 2, 3], dtype=np.uint8), "x")
    with pytest.raises(CorruptedFileError, match="length"):
        huffman.check_lengths(np.array([0, 2], dtype=np.uint8), "x")


def test_max_length_beyond_the_tables_is_refused():
    with pytest.raises(ValueError, match="max_length must be in"):
        huffman.huffman_lengths(np.array([1, 1, 2, 3, 5, 8]), max_length=20)
