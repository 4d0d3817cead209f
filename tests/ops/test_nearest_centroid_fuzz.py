"""Property tests (hypothesis) of latentops.nearest_centroid on every CPU backend: shapes with 0, 1
and odd sizes, every dtype, non-contiguous layouts, values around 1e-30, 1e30 and 1e4 ± 0.01, exact
duplicates and near-ties, NaN and ±inf; each result against the direct float64 formula computed
here (not the reference under test), and every invalid argument refused by name."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import latentops
from conftest import backend_params, fuzz_examples

BACKENDS = backend_params("cpu")
# The Triton interpreter pays per program and op: fewer, smaller examples there.
EXAMPLES = {"cpu": 60, "torch": 60, "triton": 25}
MAX_N = {"cpu": 40, "torch": 40, "triton": 20}

# The "exact" contract (the op's docstring): the chosen centroid's true distance is within 1e-5
# relative of the minimum. Every backend decides hard rows with float64 direct distances, whose
# own error (and the Triton rescore's 2^-21 merge key) is far inside it.
EXACT_REL = 1e-5
# "fast" lets tf32/fp16/bf16 products decide: their error is ~2^-10 relative to ‖z‖·‖c‖ (not to
# the distance); the same slack as tests/ops/test_nearest_centroid.py's check_result.
FAST_SCALE_REL = 4e-3

FLOAT32_MAX = torch.finfo(torch.float32).max


def _magnitudes(dtype):
    """(name, z scale, codebook scale, offset) of the value ranges drawn for dtype."""
    if dtype == torch.float16:  # 6e-8 .. 65504: "tiny" and "huge" for its range
        return [("unit", 1.0, 1.0, 0.0), ("tiny", 1e-3, 1e-3, 0.0), ("huge", 1e3, 1e3, 0.0), ("offset", 0.5, 0.5, 1e3)]
    return [
        ("unit", 1.0, 1.0, 0.0),
        ("tiny", 1e-30, 1e-30, 0.0),
        ("huge", 1e30, 1e30, 0.0),
        ("huge codebook", 1.0, 1e30, 0.0),
        ("tiny codebook", 1.0, 1e-30, 0.0),
        ("offset", 0.01, 0.01, 1e4),
    ]


def _dtypes(backend):
    if backend == "torch":
        return [torch.float32, torch.float16, torch.bfloat16, torch.float64]
    if backend == "triton":  # no bf16 math under the Triton interpreter
        return [torch.float32, torch.float16]
    return [torch.float32, torch.float16, torch.bfloat16]


@st.composite
def cases(draw, backend):
    dtype = draw(st.sampled_from(_dtypes(backend)))
    n = draw(st.one_of(st.sampled_from([0, 1, 3, 17]), st.integers(0, MAX_N[backend])))
    k = draw(st.one_of(st.sampled_from([1, 2, 3]), st.integers(1, 20)))
    d = draw(st.one_of(st.sampled_from([1, 3, 8]), st.integers(1, 40)))
    return dict(
        dtype=dtype,
        n=n,
        k=k,
        d=d,
        magnitude=draw(st.sampled_from(_magnitudes(dtype))),
        structure=draw(st.sampled_from(["random", "duplicates", "z on centroids", "near ties"])),
        non_finite=draw(st.sampled_from(["none", "none", "z", "codebook", "both"])),
        layout=draw(st.sampled_from(["contiguous", "transposed", "strided"])),
        accuracy=draw(st.sampled_from(["exact", "fast"])),
        lead=draw(st.sampled_from(["none", "batch of one", "rows of one"])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _layout(t: torch.Tensor, layout: str, gen: torch.Generator) -> torch.Tensor:
    """The same values in a non-contiguous tensor."""
    if layout == "transposed":
        return t.T.contiguous().T
    if layout == "strided":
        wide = torch.empty(t.shape[0], 2 * t.shape[1], dtype=t.dtype)
        wide[:, ::2] = t
        return wide[:, ::2]
    return t


def _sample(case):
    gen = torch.Generator().manual_seed(case["seed"])
    n, k, d, dtype = case["n"], case["k"], case["d"], case["dtype"]
    _, z_scale, c_scale, offset = case["magnitude"]
    c = offset + c_scale * torch.randn(k, d, generator=gen, dtype=torch.float64)
    z = offset + z_scale * torch.randn(n, d, generator=gen, dtype=torch.float64)
    structure = case["structure"]
    if structure == "duplicates":  # exact ties: the lowest index must win
        c = c[torch.randint(0, max(1, k // 2), (k,), generator=gen)]
    elif structure == "near ties":  # centroids far closer together than tf32's error
        c = c[:1] + 1e-4 * c_scale * torch.randn(k, d, generator=gen, dtype=torch.float64)
    elif structure == "z on centroids" and n:  # distance 0 to some centroid
        z[::2] = c[torch.randint(0, k, (len(z[::2]),), generator=gen)]
    z, c = z.to(dtype), c.to(dtype)
    specials = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=dtype)
    for name, t in (("z", z), ("codebook", c)):
        if case["non_finite"] in (name, "both") and t.numel():
            hit = torch.rand(t.shape, generator=gen) < 0.15
            t[hit] = specials[torch.randint(0, 3, (int(hit.sum()),), generator=gen)]
    return _layout(z, case["layout"], gen), _layout(c, case["layout"], gen)


def _expected_distances(z, c):
    """(N, K) float64 Σ (z − c)², straight from the definition (NaN and inf by IEEE rules)."""
    z64, c64 = z.double(), c.double()
    return (z64[:, None, :] - c64[None, :, :]).square().sum(-1)


def _check_indices(z, c, indices, accuracy, backend):
    dist = _expected_distances(z, c)
    n, k = dist.shape
    assert indices.dtype == torch.int64 and indices.shape == (n,)
    assert ((indices >= 0) & (indices < k)).all()
    if n == 0:
        return
    number = ~dist.isnan()
    chosen = dist.gather(1, indices[:, None]).squeeze(1)
    # No number among the distances (z has a NaN, or every centroid is NaN away): index 0.
    none = ~number.any(1)
    assert (indices[none] == 0).all()
    rows = ~none
    # A NaN distance never wins over a number.
    assert (~chosen[rows].isnan()).all()
    best = dist.masked_fill(~number, torch.inf).amin(1)
    # Only infinite distances: the lowest index among them (exact ties).
    only_inf = rows & best.isinf()
    first_number = number.to(torch.uint8).argmax(1)
    assert torch.equal(indices[only_inf], first_number[only_inf])
    finite = rows & ~best.isinf()
    if accuracy == "exact":
        slack = EXACT_REL * best[finite]
    else:
        z64, c64 = z.double(), c.double()
        c_ok = c64.isfinite().all(1)
        c_norm = c64[c_ok].square().sum(1).max() if c_ok.any() else torch.tensor(0.0, dtype=torch.float64)
        slack = FAST_SCALE_REL * (z64[finite].square().sum(1) + c_norm)
    assert (chosen[finite] <= best[finite] + slack).all(), (chosen[finite] - best[finite]).max()
    # Exact duplicates of the chosen centroid with a lower index compute the same distance on
    # every backend: the lowest index must win. Not for Triton's "fast" mode under the
    # interpreter, where the scores come from numpy's BLAS, which can round two equal columns of
    # one product differently (found by the deep profile: 0.44172505 vs 0.44172508); tensor cores
    # sum every column in the same order.
    if accuracy == "fast" and backend == "triton":
        return
    c64 = c.double()
    same = (c64[:, None, :] == c64[None, :, :]).all(-1) & c64.isfinite().all(1)[:, None]
    lower = torch.tril(same, diagonal=-1)  # lower[j, i]: i < j and c_i == c_j
    assert not lower[indices[finite]].any(), "a lower-index duplicate of the chosen centroid exists"


def _check_sq_dist(z, c, indices, sq_dist):
    expected = (z.double() - c.double()[indices]).square().sum(-1)
    if z.dtype == torch.float64:
        assert sq_dist.dtype == torch.float64
        torch.testing.assert_close(sq_dist, expected, rtol=1e-12, atol=0, equal_nan=True)
        return
    assert sq_dist.dtype == torch.float32
    # A float32 sum: overflows to inf past float32's range, underflows (atol) below it.
    big = expected > FLOAT32_MAX / 2
    assert (sq_dist[big] >= FLOAT32_MAX / 4).all()
    torch.testing.assert_close(sq_dist[~big].double(), expected[~big], rtol=1e-5, atol=1e-37, equal_nan=True)


def _run_case(backend, case):
    z, c = _sample(case)
    # Leading dims (..., D): (1, N, D) or (N, 1, D).
    z_in = {"none": z, "batch of one": z[None], "rows of one": z[:, None, :]}[case["lead"]]
    indices, sq_dist = latentops.nearest_centroid(z_in, c, accuracy=case["accuracy"], backend=backend)
    assert indices.shape == z_in.shape[:-1] and sq_dist.shape == z_in.shape[:-1]
    indices, sq_dist = indices.reshape(-1), sq_dist.reshape(-1)
    _check_indices(z, c, indices, case["accuracy"], backend)
    _check_sq_dist(z, c, indices, sq_dist)
    return z, c, indices


def _backend_test(backend):
    @settings(max_examples=fuzz_examples(EXAMPLES[backend]))
    @given(case=cases(backend))
    def run(case):
        _run_case(backend, case)

    return run


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_fuzzed(backend):
    """Indices by the docstring's contract and NaN/inf policy, and sq_dist the direct distance."""
    _backend_test(backend)()


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_fuzzed(backend):
    """∂(w·sq_dist)/∂z = 2w(z − c_i), ∂/∂c_k = −Σ_{i_n = k} 2w(z_n − c_k), from float64 here."""

    @settings(max_examples=fuzz_examples(EXAMPLES[backend] // 3))
    @given(case=cases(backend))
    def run(case):
        case = dict(case, non_finite="none")
        if case["dtype"] not in (torch.float32, torch.float64):
            case["dtype"] = torch.float32  # 16-bit gradients round to 3 digits: the math is the same
        z, c = _sample(case)
        z.requires_grad_(True)
        c.requires_grad_(True)
        indices, sq_dist = latentops.nearest_centroid(z, c, accuracy=case["accuracy"], backend=backend)
        weight = torch.randn(sq_dist.shape, generator=torch.Generator().manual_seed(case["seed"]), dtype=z.dtype)
        (sq_dist * weight).sum().backward()
        diff = z.detach().double() - c.detach().double()[indices]
        grad_z = 2.0 * diff * weight.double()[:, None]
        grad_c = torch.zeros(c.shape, dtype=torch.float64).index_add_(0, indices, -grad_z)
        # A centroid's gradient sums its rows' terms, whose random-sign weights may cancel: its
        # rounding is relative to the sum of their magnitudes, not to the result.
        magnitude_c = torch.zeros(c.shape, dtype=torch.float64).index_add_(0, indices, grad_z.abs())
        for got, want, magnitude in ((z.grad, grad_z, grad_z.abs()), (c.grad, grad_c, magnitude_c)):
            assert got.dtype == z.dtype
            # Values far beyond 1 (1e30 data) get float32's relative error; tiny ones an absolute floor.
            floor = 1e-6 * want.abs().amax().item() if want.numel() else 0.0
            allowed = 1e-5 * magnitude + floor + 1e-37
            error = (got.double() - want).abs()
            assert bool((error <= allowed).all()), (
                f"gradient off by {(error - allowed).amax().item():.3g} beyond tolerance"
            )

    run()


def _invalid_cases():
    z, c = torch.randn(4, 3), torch.randn(5, 3)
    return st.sampled_from(
        [
            (dict(z=z.tolist()), TypeError, "z"),
            (dict(z=z.long()), TypeError, "z"),
            (dict(z=z.bool()), TypeError, "z"),
            (dict(z=torch.tensor(1.0)), ValueError, "z"),
            (dict(z=torch.randn(4, 2)), ValueError, "z"),
            (dict(codebook=None), TypeError, "codebook"),
            (dict(codebook=c.int()), TypeError, "codebook"),
            (dict(codebook=torch.randn(3)), ValueError, "codebook"),
            (dict(codebook=torch.randn(2, 5, 3)), ValueError, "codebook"),
            (dict(codebook=torch.randn(0, 3)), ValueError, "codebook"),
            (dict(z=torch.randn(4, 0), codebook=torch.randn(2, 0)), ValueError, "codebook"),
            (dict(codebook=torch.randn(5, 3, device="meta")), ValueError, "codebook"),
            (dict(accuracy="tf32"), ValueError, "accuracy"),
            (dict(accuracy=None), ValueError, "accuracy"),
            (dict(accuracy=1), ValueError, "accuracy"),
            (dict(backend="nonsense"), ValueError, "backend"),
            (dict(backend=3), ValueError, "backend"),
            (dict(z=z.double(), codebook=c.double(), backend="cpu"), ValueError, "backend"),
        ]
    )


@settings(max_examples=fuzz_examples(30))
@given(case=_invalid_cases())
def test_invalid_arguments_fuzzed(case):
    kwargs, error, name = case
    args = dict(z=torch.randn(4, 3), codebook=torch.randn(5, 3)) | kwargs
    with pytest.raises(error, match=rf"\b{name}\b"):
        latentops.nearest_centroid(args.pop("z"), args.pop("codebook"), **args)
