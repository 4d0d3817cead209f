"""Property-based tests (hypothesis) of latentops.soft_quantize on every CPU backend: shapes with 0, 1
and odd sizes, every dtype and precision layout, with and without a log prior, non-contiguous
inputs, extreme and non-finite values. Each result is checked against the formula written out
below in float64 (not latentops.reference), and invalid arguments must raise ValueError or
TypeError naming the argument."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import latentops
from conftest import fuzz_examples
from latentops.kernel_enums import PrecisionLayout

CPU_BACKENDS = [
    name for name in ("cpu", "triton", "torch") if name in latentops._backend.available_on(torch.device("cpu"))
]
LAYOUTS = [None, *PrecisionLayout]  # None: a Python float
NAN, INF = float("nan"), float("inf")


def direct(z, c, s, b):
    """ẑ = softmax(−½·s·‖z − c‖² + b) @ c in float64 from pairwise differences (no expanded form,
    no centring), the row maximum subtracted (a constant for the gradient) so huge logits are fine.
    Differentiable: the gradients of the test come from torch autograd through it."""
    logits = -0.5 * s * (z.unsqueeze(1) - c.unsqueeze(0)).square().sum(-1)
    if b is not None:
        logits = logits + b
    return torch.softmax(logits - logits.amax(1, keepdim=True).detach(), 1) @ c


def _precision(layout, n, k, value, draw_tensor):
    """s as the caller passes it, and as an (n, k)-broadcastable float64 tensor for `direct`."""
    if layout is None:
        return value, torch.tensor(value, dtype=torch.float64)
    shape = {
        PrecisionLayout.SCALAR: (),
        PrecisionLayout.PER_ROW: (n, 1),
        PrecisionLayout.PER_CENTROID: (1, k),
        PrecisionLayout.FULL: (n, k),
    }[layout]
    s = draw_tensor(shape) * value
    return s, s


def _noncontiguous(t):
    """The same values in a transposed (column-major) buffer."""
    return t.t().contiguous().t() if isinstance(t, torch.Tensor) and t.dim() == 2 else t


@st.composite
def problems(draw):
    n = draw(st.sampled_from([0, 1, 2, 3, 5, 7]))
    k = draw(st.sampled_from([1, 2, 3, 5]))
    d = draw(st.sampled_from([1, 2, 3, 5]))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    layout = draw(st.sampled_from(LAYOUTS))
    scale = draw(st.sampled_from([1e-15, 1e-3, 1.0, 30.0]))
    offset = draw(st.sampled_from([0.0, 0.0, 1e3]))
    # s·scale² bounded: float32 distances then resolve the posteriors to ~1e-4 (the accuracy check
    # below); larger s·‖z − c‖² is the extreme regime of test_huge_logits_stay_finite_fuzzed.
    s_value = draw(st.sampled_from([0.0, 1e-3, 0.5, 4.0])) / (scale * scale)
    with_prior = draw(st.booleans())
    contiguous = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return n, k, d, dtype, layout, scale, offset, s_value, with_prior, contiguous, seed


@settings(max_examples=fuzz_examples(40))
@given(problem=problems())
def test_forward_and_backward_match_the_direct_formula(problem):
    n, k, d, dtype, layout, scale, offset, s_value, with_prior, contiguous, seed = problem
    gen = torch.Generator().manual_seed(seed)
    z64 = (torch.randn(n, d, generator=gen, dtype=torch.float64) * scale + offset).to(dtype).double()
    c64 = (torch.randn(k, d, generator=gen, dtype=torch.float64) * scale + offset).to(dtype).double()
    # s and b float32 numbers: the float32 calls pass them exactly
    b64 = torch.randn(k, generator=gen).double() if with_prior else None
    s_arg, s64 = _precision(layout, n, k, s_value, lambda shape: torch.rand(shape, generator=gen).double())
    g64 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    names = "zc" + ("s" if isinstance(s_arg, torch.Tensor) else "") + ("b" if with_prior else "")
    leaves64 = [z64, c64] + ([s64] if isinstance(s_arg, torch.Tensor) else []) + ([b64] if with_prior else [])
    for t in leaves64:
        t.requires_grad_(True)
    want = direct(z64, c64, s64, b64)
    want.backward(g64)
    half = dtype in (torch.float16, torch.bfloat16)
    for backend in CPU_BACKENDS:
        if dtype == torch.float64 and backend != "torch":
            continue  # float64 runs on the torch reference only (a named backend refuses it)
        if backend == "triton" and dtype == torch.bfloat16:
            continue  # no bf16 math under the Triton interpreter

        def leaf(t, like=dtype):
            t = t.detach().to(like)
            return (t if contiguous else _noncontiguous(t)).requires_grad_(True)

        z, c = leaf(z64), leaf(c64)
        side = torch.float64 if dtype == torch.float64 else torch.float32
        s = leaf(s64, side) if isinstance(s_arg, torch.Tensor) else s_arg
        b = leaf(b64, side) if with_prior else None
        out = latentops.soft_quantize(z, c, s, b, backend=backend)
        assert out.shape == (n, d) and out.dtype == dtype
        assert out.isfinite().all(), backend
        tol = 1e-12 if dtype == torch.float64 else 2e-2 if half else 2e-4
        span = torch.cat([c64.detach(), z64.detach()]).abs().amax() + 1e-30  # the natural scale
        err = (out.double() - want.detach()).abs().max() if n else 0.0
        assert err <= tol * span, (backend, err, span)
        if n == 0 or half:
            continue  # half gradients: covered by the plain tests; nothing flows back from no rows
        out.backward(g64.to(dtype))
        leaves = [z, c] + ([s] if isinstance(s, torch.Tensor) else []) + ([b] if b is not None else [])
        for name, mine, ref in zip(names, leaves, leaves64):
            assert mine.grad is not None and mine.grad.isfinite().all(), (backend, name)
            # grad_s sums −½·a·‖z − c‖² over terms that cancel (Σ_k a = 0): float32 leaves ~1e-3 there
            rel = 1e-9 if dtype == torch.float64 else 3e-3 if name == "s" else 5e-4
            bound = _grad_scale(name, g64, z64, c64, s_value, scale)
            # rounding noise of the products g·c and g·z (their size, not the result's, sets it)
            floor = (1e-14 if dtype == torch.float64 else 1e-5) * g64.abs().max() * span * d
            gap = (mine.grad.double() - ref.grad).abs().max()
            assert gap <= rel * (ref.grad.abs().max() + bound) + floor, (backend, name, gap, bound)


def _grad_scale(name, g, z, c, s, scale):
    """The size of the terms each gradient sums (its entries can cancel to far less)."""
    g_max, spread = g.abs().max().item(), scale * 4.0
    big = {"z": s * spread * spread, "c": 1.0 + s * spread * spread, "s": spread**2, "b": spread}[name]
    return g_max * (big + 1e-30) * max(1, z.shape[0]) * 1e-2


@settings(max_examples=fuzz_examples(15))
@given(
    n=st.sampled_from([1, 2, 5]),
    k=st.sampled_from([1, 2, 3]),
    d=st.sampled_from([1, 3]),
    magnitude=st.sampled_from([1e2, 1e4, 1e5, 1e7]),
    s_value=st.sampled_from([0.5, 1e4]),
    layout=st.sampled_from(LAYOUTS),
    seed=st.integers(0, 2**31 - 1),
)
def test_huge_logits_stay_finite_fuzzed(n, k, d, magnitude, s_value, layout, seed):
    """|l| up to 1e18: every backend stays finite, inside the codebook's box, and picks a centroid
    as the formula does where the posterior is clearly one-hot (issue 10: the CPU kernel went NaN)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=gen) * magnitude
    c = torch.randn(k, d, generator=gen) * magnitude / 10
    s_arg, s64 = _precision(layout, n, k, s_value, lambda shape: torch.rand(shape, generator=gen) + 0.5)
    want = direct(z.double(), c.double(), s64.double(), None)
    for backend in CPU_BACKENDS:
        zz = z.clone().requires_grad_(True)
        out = latentops.soft_quantize(zz, c, s_arg, backend=backend)
        assert out.isfinite().all(), backend
        assert (out >= c.amin(0) - 1e-3 * magnitude).all() and (out <= c.amax(0) + 1e-3 * magnitude).all()
        out.sum().backward()
        assert zz.grad.isfinite().all(), backend
        if backend == "cpu":  # float64 logits: the CPU kernel resolves them
            torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=1e-4 * magnitude)


@settings(max_examples=fuzz_examples(15))
@given(
    n=st.sampled_from([1, 3, 6]),
    k=st.sampled_from([1, 2, 4]),
    z_bad=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1), st.sampled_from([NAN, INF, -INF])), max_size=3),
    c_bad=st.sampled_from([None, NAN, INF, -INF]),
    prior=st.sampled_from([None, "finite", NAN, INF, -INF, "all -inf"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_nan_policy_fuzzed(n, k, z_bad, c_bad, prior, seed):
    """NaN rows exactly where the policy says, on every backend; the other rows as without the
    poisoned ones (a −inf prior simply excludes its centroid)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=gen)
    c = torch.randn(k, 2, generator=gen)
    bad_rows = torch.zeros(n, dtype=torch.bool)
    for row, col, value in z_bad:
        if row < n:
            z[row, col] = value
            bad_rows[row] = True
    if c_bad is not None:
        c[k - 1, 0] = c_bad
    b = None
    if prior is not None:
        b = torch.randn(k, generator=gen)
        if prior == "all -inf":
            b[:] = -INF
        elif prior != "finite":
            b[0] = prior
    every_row_nan = c_bad is not None or prior in (NAN, INF, "all -inf") or (prior == -INF and k == 1)
    expected_nan = bad_rows | every_row_nan
    keep_c = torch.ones(k, dtype=torch.bool)
    if prior == -INF and k > 1:
        keep_c[0] = False
    for backend in CPU_BACKENDS:
        out = latentops.soft_quantize(z, c, 0.7, b, backend=backend)
        assert torch.equal(out.isnan().any(1), expected_nan), backend
        assert torch.equal(out.isnan().all(1), expected_nan), backend
        good = ~expected_nan
        if good.any():
            want = direct(z[good].double(), c[keep_c].double(), 0.7, None if b is None else b[keep_c].double())
            torch.testing.assert_close(out[good].double(), want, rtol=1e-5, atol=1e-5)


BAD_ARGUMENTS = [
    ({"precision": -1e-30}, ValueError, "precision"),
    ({"precision": INF}, ValueError, "precision"),
    ({"precision": NAN}, ValueError, "precision"),
    ({"precision": 1e39}, ValueError, "precision"),  # beyond float32
    ({"precision": "fast"}, TypeError, "precision"),
    ({"precision": torch.tensor([[-1.0]])}, ValueError, "precision"),
    ({"precision": torch.full((4, 1), NAN)}, ValueError, "precision"),
    ({"precision": torch.full((1, 5), INF)}, ValueError, "precision"),
    ({"precision": torch.ones(3, 1)}, ValueError, "precision"),
    ({"precision": torch.ones(4, 1, dtype=torch.int32)}, TypeError, "precision"),
    ({"log_prior": torch.zeros(4)}, ValueError, "log_prior"),
    ({"log_prior": torch.zeros(5, dtype=torch.int64)}, TypeError, "log_prior"),
    ({"log_prior": [0.0] * 5}, TypeError, "log_prior"),
    ({"codebook": torch.zeros(5, 2)}, ValueError, "codebook"),
    ({"codebook": torch.zeros(0, 3)}, ValueError, "codebook"),
    ({"codebook": torch.zeros(5, 3, 1)}, ValueError, "codebook"),
    ({"z": torch.zeros(())}, ValueError, "z"),
    ({"z": torch.zeros(4, 3, dtype=torch.int64)}, TypeError, "z"),
    ({"accuracy": "tf32"}, ValueError, "accuracy"),
    ({"backend": "gpu"}, ValueError, "backend"),
]


@settings(max_examples=fuzz_examples(20))
@given(case=st.sampled_from(BAD_ARGUMENTS), layout=st.sampled_from(["contiguous", "transposed"]))
def test_invalid_arguments_name_the_argument(case, layout):
    kwargs, error, name = case
    args = {"z": torch.randn(4, 3), "codebook": torch.randn(5, 3), "precision": 1.0}
    if layout == "transposed":
        args = {key: _noncontiguous(value) for key, value in args.items()}
    args.update(kwargs)
    with pytest.raises(error, match=name):
        latentops.soft_quantize(**args)


def test_direct_formula_is_the_formula():
    """The test's own formula against a hand computation (K = 2, D = 1)."""
    z, c = torch.tensor([[0.0]], dtype=torch.float64), torch.tensor([[-1.0], [2.0]], dtype=torch.float64)
    p = 1.0 / (1.0 + math.exp(-0.5 * (4.0 - 1.0)))  # weight of c_0: its logit is −½ vs −2
    assert direct(z, c, torch.tensor(1.0, dtype=torch.float64), None).item() == pytest.approx(-p + 2 * (1 - p))
