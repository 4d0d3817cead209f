import numpy as np
import pytest
import torch
from codecs_helpers import dense, random_shared, shared

from latentops.codecs import CorruptedFileError, huffman
from latentops.codecs.csc import CscMatrix
from latentops.codecs.formats import FORMATS, encode
from latentops.codecs.ham import ham_paper_psi
from latentops.codecs.sham import sham_paper_psi

NAMES = list(FORMATS)


def round_trip(s, name):
    m = encode(s, name)
    back = FORMATS[name].from_parts(m.shape, {k: v.clone() for k, v in m.parts.items()}, dict(m.meta))
    out = back.decode()
    assert out.dtype == torch.float32 and out.shape == m.shape
    assert torch.equal(out.view(torch.int32), dense(s).view(torch.int32)), name  # bit-exact, +0.0 included
    assert m.nbytes == sum(t.numel() * t.element_size() for t in m.parts.values()) + 4 * (len(m.meta) + 2)
    assert m.psi == pytest.approx(m.nbytes / max(1, 4 * m.shape[0] * m.shape[1]))
    return m


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "shape, k, density, laplace",
    [((17, 130), 32, 0.1, False), ((64, 96), 16, 0.05, True), ((33, 65), 256, 0.5, True), ((5, 200), 1024, 0.3, False)],
)
def test_round_trip(gen, name, shape, k, density, laplace):
    round_trip(random_shared(gen, shape, k, density, laplace), name)


@pytest.mark.parametrize("name", NAMES)
def test_edge_cases(gen, name):
    s = random_shared(gen, (9, 11), 8, 0.4)
    s.mask[3] = False  # an empty output unit
    s.mask[:, 4] = False  # an empty input
    round_trip(s, name)
    round_trip(random_shared(gen, (6, 7), 4, 0.0), name)  # all zero
    round_trip(random_shared(gen, (6, 7), 4, 1.0), name)  # fully dense
    round_trip(random_shared(gen, (6, 7), 1, 0.5), name)  # k = 1
    round_trip(random_shared(gen, (1, 1), 1, 1.0), name)
    round_trip(random_shared(gen, (0, 5), 3, 0.5), name)
    round_trip(random_shared(gen, (70000, 3), 16, 0.5), name)  # > 65,536 rows
    long_gap = random_shared(gen, (3, 20000), 4, 0.0)
    long_gap.mask[0, [0, 19999]] = True  # a gap longer than any escape or filler
    long_gap.mask[2, 12345] = True
    round_trip(long_gap, name)


@pytest.mark.parametrize("name", NAMES)
def test_negative_zero_and_duplicate_codebook_values(gen, name):
    s = shared(
        torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]),
        torch.tensor([-0.0, 0.0, 1.5, 1.5]),
        torch.tensor([[True, True, False, True], [True, False, True, True]]),
    )
    round_trip(s, name)


def test_csc_fillers():
    s = shared(torch.zeros(1, 40, dtype=torch.int64), torch.tensor([2.0]), torch.zeros(1, 40, dtype=torch.bool))
    s.mask[0, [0, 39]] = True
    m = CscMatrix.encode(s, index_bits=3)
    # gap 38 with 3-bit relative indices: ⌊38 / 8⌋ = 4 fillers
    assert int(m.parts["column_pointers"][-1]) == 2 + 4
    assert torch.equal(m.decode(), dense(s))


def test_sham_and_ham_paper_psi(gen):
    s = random_shared(gen, (64, 128), 32, 0.05, laplace=True)
    sham, ham = encode(s, "sham"), encode(s, "ham")
    q = int(s.mask.sum())
    n, m = 128, 64
    k = int(sham.parts["lengths"].count_nonzero())
    expected = q / (n * m) * (1 + np.log2(k)) / 32 + 6 * k / (n * m) + (n + m + 1) / (n * m)
    assert sham.paper_psi() == pytest.approx(expected)
    assert sham.paper_psi(corrected=True) == pytest.approx(expected + (q - n) / (n * m))
    assert sham_paper_psi((m, n), q, k) == pytest.approx(expected)
    kh = int(ham.parts["lengths"].count_nonzero())
    assert ham.paper_psi() == pytest.approx((1 + np.log2(kh)) / 32 + 6 * kh / (n * m)) == ham_paper_psi((m, n), kh)


@pytest.mark.parametrize("name", ["ham", "sham"])
def test_mean_code_length_within_entropy_bound(gen, name):
    s = random_shared(gen, (128, 256), 16, 0.3)
    m = encode(s, name)
    d = dense(s).view(torch.int32)
    values = d if name == "ham" else d[d != 0]
    _, counts = np.unique(values.numpy(), return_counts=True)
    lengths = m.parts["lengths"].numpy()
    assert int(lengths.max()) < huffman.DEFAULT_MAX_LENGTH  # the limit does not bind
    h = huffman.entropy_bits(counts)
    bits = 64 * m.parts["words"].numel()
    assert h * values.numel() <= bits < (h + 1) * values.numel() + 64


def tamper_cases():
    """(format, what to do to the parts/meta, words the error names)."""

    def set_part(name, f):
        def apply(m):
            m.parts[name] = f(m.parts[name].clone())

        return apply

    def flip_length(t):
        t[int(t.argmax())] -= 1
        return t

    def bump_first(t):
        t[0] = int(t[0]) + 1
        return t

    def big_last(t):
        t[-1] = 60000
        return t

    def negative_first(t):  # an 8-byte count or index is stored signed: a negative one is refused
        t = t.to(torch.int64)
        t[0] = -1
        return t

    return [
        ("ham", set_part("lengths", flip_length), "lengths"),
        ("ham", set_part("words", lambda t: t[:-1]), "words"),
        ("ham", set_part("sync_bits", lambda t: t[:-1]), "sync_bits"),
        ("ham", set_part("words", lambda t: t ^ 0x5555), "words"),
        ("ham", set_part("values", lambda t: t[:-1]), "values"),
        ("sham", set_part("lengths", flip_length), "lengths"),
        ("sham", set_part("row_indices", big_last), "row_indices"),
        ("sham", set_part("column_counts", bump_first), "column_counts"),
        ("sham", set_part("words", lambda t: t[: t.numel() // 2]), "words"),
        ("csc", set_part("fields", lambda t: t[:-3]), "fields"),
        ("csc", set_part("column_pointers", bump_first), "column_pointers"),
        ("csc", set_part("codebook", lambda t: t[:-1]), "value_bits"),
        ("hcsr", set_part("value_lengths", flip_length), "value_lengths"),
        ("hcsr", set_part("words", lambda t: t[:-3]), "stream"),
        ("hcsr", set_part("row_nnz", negative_first), "negative"),
        ("sham", set_part("row_indices", negative_first), "negative"),
        ("sham", set_part("column_counts", negative_first), "negative"),
    ]


@pytest.mark.parametrize("name, tamper, named", tamper_cases())
def test_validate_refuses_tampered_parts(gen, name, tamper, named):
    s = random_shared(gen, (40, 300), 16, 0.2, laplace=True)
    m = encode(s, name)
    tamper(m)
    with pytest.raises(CorruptedFileError, match=named):
        FORMATS[name].from_parts(m.shape, m.parts, m.meta)


@pytest.mark.parametrize("name", NAMES)
def test_validate_refuses_wrong_schema(gen, name):
    m = encode(random_shared(gen, (4, 5), 3, 0.5), name)
    with pytest.raises(CorruptedFileError, match="parts"):
        FORMATS[name].from_parts(m.shape, {**m.parts, "extra": torch.zeros(1)}, m.meta)
    with pytest.raises(CorruptedFileError, match="meta"):
        FORMATS[name].from_parts(m.shape, m.parts, {**m.meta, "nope": 1})


def test_encode_arguments(gen):
    s = random_shared(gen, (4, 5), 3, 0.5)
    with pytest.raises(ValueError, match="ham, sham, csc, hcsr, smallest"):
        encode(s, "zip")
    with pytest.raises(TypeError, match="format"):
        encode(s, 3)
    with pytest.raises(ValueError, match="2-D"):
        encode(shared(s.codes[0], s.codebook, s.mask[0]), "ham")
    with pytest.raises(TypeError, match="SharedWeights"):
        encode(torch.zeros(3, 3))
    smallest = encode(s, "smallest")
    assert smallest.nbytes == min(encode(s, f).nbytes for f in FORMATS)
