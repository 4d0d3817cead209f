"""latentops.soft_quantize on every backend against the float64 reference."""

import pytest
import torch

import latentops
from conftest import CUDA, backend_params
from latentops import testing
from latentops.kernel_enums import PrecisionLayout

BACKENDS = [*backend_params("cpu"), *backend_params("cuda")]
PRECISION_LAYOUTS = [None, *PrecisionLayout]  # None: a Python float


def _device(backend):
    return "cuda" if backend == "cuda" or (backend == "triton" and CUDA) else "cpu"


def _shapes(backend):
    interpreted = backend == "triton" and not CUDA
    return testing.SOFT_QUANTIZE_INTERPRETER_SHAPES if interpreted else testing.SOFT_QUANTIZE_SHAPES


def _plain(z, c, s, b):
    """The formula itself, in float64, with an N×K matrix: the spec for small problems."""
    logits = -0.5 * torch.as_tensor(s, dtype=torch.float64) * torch.cdist(z, c).square()
    if b is not None:
        logits = logits + b
    return torch.softmax(logits, 1) @ c


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", PRECISION_LAYOUTS, ids=lambda p: "float" if p is None else p.name)
@pytest.mark.parametrize("with_prior", [False, True], ids=["no-prior", "prior"])
def test_forward_and_gradients_match_float64(backend, layout, with_prior, gen):
    device = _device(backend)
    for n, k, d in _shapes(backend):
        z64, c64, s64, b64 = testing.soft_quantize_sample(
            n, k, d, precision_layout=layout, log_prior=with_prior, generator=gen, dtype=torch.float64
        )
        g64 = torch.randn(n, d, generator=gen, dtype=torch.float64)
        leaves64 = [t.requires_grad_(True) for t in (z64, c64, s64, b64) if isinstance(t, torch.Tensor)]
        _plain(z64, c64, s64, b64).backward(g64)

        def to32(t):
            return t.detach().float().to(device).requires_grad_(True) if isinstance(t, torch.Tensor) else t

        z, c, s, b = (to32(t) for t in (z64, c64, s64, b64))
        out = latentops.soft_quantize(z, c, s, b, backend=backend)
        assert out.shape == (n, d) and out.dtype == torch.float32 and out.device == z.device
        out.backward(g64.float().to(device))
        assert _rel(out.cpu(), _plain(z64, c64, s64, b64)) < 2e-5
        leaves = [t for t in (z, c, s, b) if isinstance(t, torch.Tensor)]
        for name, mine, ref in zip("zcsb", leaves, leaves64):
            # A scalar or per-centroid s sums −½·a·‖z − c‖² over rows whose a sums to zero: fp32
            # cancellation leaves ~1e-4 there, whatever the kernel.
            tol = 1e-3 if name == "s" and layout in (PrecisionLayout.SCALAR, PrecisionLayout.PER_CENTROID) else 1e-4
            assert _rel(mine.grad.cpu(), ref.grad) < tol, (name, n, k, d)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_accuracy_lands_where_tf32_does(backend, gen):
    """accuracy="fast" (one tf32 product on GPUs; the CPU kernels stay exact) against float64,
    relative to how far a plain tf32-rounded computation lands."""
    device = _device(backend)
    n, k, d = (13, 5, 3) if backend == "triton" and not CUDA else (301, 77, 40)
    z64 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    c64 = torch.randn(k, d, generator=gen, dtype=torch.float64)
    g64 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    s = 4.0 / d
    z64.requires_grad_(True), c64.requires_grad_(True)
    _plain(z64, c64, s, None).backward(g64)
    z = z64.detach().float().to(device).requires_grad_(True)
    c = c64.detach().float().to(device).requires_grad_(True)
    out = latentops.soft_quantize(z, c, s, accuracy="fast", backend=backend)
    out.backward(g64.float().to(device))
    tf32_error = 2.0**-11 * d**0.5 * s * z64.detach().norm(dim=1).max().item() * c64.detach().norm(dim=1).max().item()
    assert _rel(out.cpu(), _plain(z64.detach(), c64.detach(), s, None)) < max(10 * tf32_error, 1e-4)
    assert _rel(z.grad.cpu(), z64.grad) < max(20 * tf32_error, 1e-3)
    assert _rel(c.grad.cpu(), c64.grad) < max(20 * tf32_error, 1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n, k, d", [(3, 65536, 2), (5, 7, 512)], ids=["K=65536", "D=512"])
def test_large_codebooks_and_dimensions(backend, n, k, d, gen):
    """The issue's limits, D up to 512 and K up to 65536, on every backend (few rows: the
    interpreter runs every tile)."""
    device = _device(backend)
    z64 = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    c64 = torch.randn(k, d, generator=gen, dtype=torch.float64, requires_grad=True)
    g64 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    s = 2.0 / d
    _plain(z64, c64, s, None).backward(g64)
    z = z64.detach().float().to(device).requires_grad_(True)
    c = c64.detach().float().to(device).requires_grad_(True)
    out = latentops.soft_quantize(z, c, s, backend=backend)
    out.backward(g64.float().to(device))
    # ẑ sums K float32 terms: rounding grows like √K (2.004e-5 was seen once at K = 65536)
    assert _rel(out.cpu(), _plain(z64.detach(), c64.detach(), s, None)) < (4e-5 if k > 4096 else 2e-5)
    assert _rel(z.grad.cpu(), z64.grad) < 1e-4
    assert _rel(c.grad.cpu(), c64.grad) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_inputs(backend, dtype, gen):
    if backend == "triton" and not CUDA and dtype == torch.bfloat16:
        pytest.skip("no bf16 math under the Triton interpreter")
    device = _device(backend)
    z = torch.randn(45, 16, generator=gen).to(device, dtype)
    c = torch.randn(21, 16, generator=gen).to(device, dtype)
    out = latentops.soft_quantize(z, c, 0.5, backend=backend)
    assert out.dtype == dtype
    ref = _plain(z.cpu().double(), c.cpu().double(), 0.5, None)
    plain_half = _plain(z.float().cpu(), c.float().cpu(), 0.5, None).to(dtype)  # how far a half path lands
    assert _rel(out.cpu(), ref) <= 2 * _rel(plain_half, ref) + 1e-2


@pytest.mark.parametrize("backend", BACKENDS)
def test_limits_and_stability(backend, gen):
    device = _device(backend)
    z = (torch.randn(29, 6, generator=gen) * 30).to(device)
    c = (torch.randn(11, 6, generator=gen) * 30).to(device)
    # s → ∞: the nearest centroid; huge distances and precisions stay finite.
    sharp = latentops.soft_quantize(z, c, 1e4, backend=backend)
    nearest = c[latentops.nearest_centroid(z, c)[0]]
    assert sharp.isfinite().all()
    torch.testing.assert_close(sharp, nearest, rtol=1e-5, atol=1e-4)
    # s → 0 with b = 0: the codebook mean.
    flat = latentops.soft_quantize(z, c, 1e-12, backend=backend)  # s·‖z − c‖² ~ 1e-8: uniform p
    torch.testing.assert_close(flat, c.mean(0).expand_as(flat), rtol=1e-5, atol=1e-4)
    # Far from the origin: the centred computation keeps its digits.
    z_far, c_far = z / 30 + 1000, c / 30 + 1000
    out = latentops.soft_quantize(z_far, c_far, 1.0, backend=backend)
    ref = _plain(z_far.cpu().double(), c_far.cpu().double(), 1.0, None)
    assert _rel(out.cpu() - 1000, ref - 1000) < 5e-4  # fp32 spacing at 1000 is 6e-5 of deviations ~0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_leading_dims_empty_and_noncontiguous(backend, gen):
    device = _device(backend)
    c = torch.randn(7, 5, generator=gen).to(device)
    assert latentops.soft_quantize(torch.empty(0, 5, device=device), c, backend=backend).shape == (0, 5)
    assert latentops.soft_quantize(torch.empty(2, 0, 5, device=device), c, backend=backend).shape == (2, 0, 5)
    z = torch.randn(2, 3, 5, generator=gen).to(device)
    s = torch.rand(2, 3, 1, generator=gen).to(device) + 0.5  # (..., 1): per vector
    out = latentops.soft_quantize(z, c, s, backend=backend)
    assert out.shape == (2, 3, 5)
    ref = _plain(z.reshape(6, 5).cpu().double(), c.cpu().double(), s.reshape(6, 1).cpu().double(), None)
    assert _rel(out.reshape(6, 5).cpu(), ref) < 2e-5
    for layout in ("transposed", "strided"):
        z, c, s, b = testing.soft_quantize_sample(9, 7, 5, log_prior=True, generator=gen, device=device, layout=layout)
        assert not z.is_contiguous() and not c.is_contiguous()
        ref = _plain(z.cpu().double(), c.cpu().double(), s, b.cpu().double())
        assert _rel(latentops.soft_quantize(z, c, s, b, backend=backend).cpu(), ref) < 2e-5


def test_return_probs(gen):
    z, c = torch.randn(4, 3, 6, generator=gen), torch.randn(9, 6, generator=gen)
    z_hat, probs = latentops.soft_quantize(z, c, 2.0, return_probs=True)
    assert probs.shape == (4, 3, 9)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 3))
    torch.testing.assert_close(probs @ c, z_hat, rtol=1e-5, atol=1e-5)


def test_gradcheck_float64(gen):
    z = torch.randn(6, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    c = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    for shape in [(), (6, 1), (1, 5), (6, 5)]:
        s = (torch.rand(shape, dtype=torch.float64, generator=gen) + 0.3).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda z, c, s, b: latentops.soft_quantize(z, c, s, b), (z, c, s, b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend, gen):
    device = _device(backend)
    z = torch.randn(13, 5, generator=gen).to(device).requires_grad_(True)
    c = torch.randn(6, 5, generator=gen).to(device).requires_grad_(True)
    s = (torch.rand(13, generator=gen) + 0.5).to(device).requires_grad_(True)
    b = torch.randn(6, generator=gen).to(device).requires_grad_(True)
    torch.library.opcheck(torch.ops.latentops.soft_quantize_forward, (z, c, s, 1, b, "exact", backend))
    torch.library.opcheck(
        torch.ops.latentops.soft_quantize_forward, (z.detach(), c.detach(), s[:1].detach(), 0, None, "fast", backend)
    )
    z_hat, lse = torch.ops.latentops.soft_quantize_forward(
        z.detach(), c.detach(), s.detach(), 1, b.detach(), "exact", backend
    )
    torch.library.opcheck(
        torch.ops.latentops.soft_quantize_backward,
        (
            torch.randn_like(z_hat),
            z.detach(),
            c.detach(),
            s.detach(),
            1,
            b.detach(),
            z_hat,
            lse,
            "exact",
            backend,
            True,
            True,
        ),
    )


def test_torch_compile_fullgraph(gen):
    z, c = torch.randn(33, 8, generator=gen), torch.randn(10, 8, generator=gen).requires_grad_(True)

    def loss(z, c):
        return (latentops.soft_quantize(z * 2.0, c, 0.5) - z).square().mean()

    compiled = torch.compile(loss, fullgraph=True)
    value = compiled(z, c)
    torch.testing.assert_close(value, loss(z, c))
    value.backward()
    assert c.grad is not None and c.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"codebook": torch.randn(5, 2)}, ValueError, r"D = 2.*\(4, 3\).*\(5, 2\)"),
        ({"codebook": torch.randn(0, 3)}, ValueError, r"codebook must be 2-D \(K, D\) with K ≥ 1"),
        ({"precision": -1.0}, ValueError, r"precision must be finite and ≥ 0, got -1.0"),
        (
            {"precision": torch.ones(4, 2)},
            ValueError,
            r"precision must be a float or a tensor of shape.*got shape \(4, 2\)",
        ),
        ({"precision": torch.ones(4, 1, dtype=torch.int64)}, TypeError, r"precision must be float"),
        ({"log_prior": torch.zeros(3)}, ValueError, r"log_prior must have shape \(K,\) = \(5,\)"),
        ({"z": torch.ones(4, 3, dtype=torch.int32)}, TypeError, r"z must be float"),
        ({"codebook": torch.randn(5, 3, device="meta")}, ValueError, r"z on cpu, codebook on meta"),
        ({"backend": "cuda"}, ValueError, r"backend 'cuda' cannot run on cpu tensors"),
        ({"accuracy": "tf32"}, ValueError, r"accuracy must be one of \('exact', 'fast'\), got 'tf32'"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, error, match):
    args = {"z": torch.randn(4, 3), "codebook": torch.randn(5, 3)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        latentops.soft_quantize(**args)


def test_peak_memory_stays_far_below_one_nxk_matrix():
    """fwd+bwd at N=65536, K=4096, D=64 on the CPU kernel: one N×K float32 matrix would be 1 GiB."""
    if "cpu" not in latentops.backends():
        pytest.skip("the C++ CPU kernel did not load")
    import resource
    import subprocess
    import sys

    code = (
        "import resource, torch, latentops\n"
        "z = torch.randn(65536, 64, requires_grad=True); c = torch.randn(4096, 64, requires_grad=True)\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "latentops.soft_quantize(z, c, 0.05, backend='cpu').sum().backward()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)"
    )
    del resource
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    extra = int(out.stdout.strip().splitlines()[-1])
    assert extra < 256 * 2**20, f"fwd+bwd grew the peak RSS by {extra / 2**20:.0f} MiB"


# -- issue 10: large logits, precision validation, the NaN/inf policy -----------------------------


def _plain64(z, c, s, b=None):
    """_plain on float64 copies, with the logits shifted by their row max (|l| reaches 1e10 here)."""
    z, c = z.detach().cpu().double(), c.detach().cpu().double()
    logits = -0.5 * torch.as_tensor(s, dtype=torch.float64) * torch.cdist(z, c).square()
    if b is not None:
        logits = logits + b.detach().cpu().double()
    return torch.softmax(logits - logits.amax(1, keepdim=True), 1) @ c


def _interpreted(backend):
    return backend == "triton" and not CUDA


@pytest.mark.parametrize("backend", BACKENDS)
def test_issue10_large_logits_stay_finite(backend, gen):
    """The CPU kernel took its running maximum in float32 while the logits were float64: beyond
    |l| ~ 1e9 every exp(l − max) underflowed (0/0) or overflowed."""
    device = _device(backend)
    z = torch.tensor([[1e5]], device=device)
    c = torch.tensor([[-1.0], [2.0]], device=device, requires_grad=True)
    out = latentops.soft_quantize(z, c, 0.5, backend=backend)
    assert out.item() == 2.0
    out.sum().backward()
    assert c.grad.isfinite().all()
    # K = 1: ẑ is the centroid, whatever the logit.
    c1 = torch.tensor([[3.0]], device=device, requires_grad=True)
    z1 = torch.tensor([[1e7]], device=device, requires_grad=True)
    out = latentops.soft_quantize(z1, c1, 1.0, backend=backend)
    out.sum().backward()
    assert out.item() == 3.0 and z1.grad.item() == 0.0 and c1.grad.item() == 1.0
    # s = 1e4, |z| ≈ 100: |l| ~ 1e8; nearly one-hot posteriors.
    n, k, d = (16, 16, 16) if _interpreted(backend) else (64, 128, 16)
    z = (torch.randn(n, d, generator=gen) * 25).to(device).requires_grad_(True)
    c = (torch.randn(k, d, generator=gen) * 25).to(device).requires_grad_(True)
    out = latentops.soft_quantize(z, c, 1e4, backend=backend)
    out.backward(torch.randn(n, d, generator=gen).to(device))
    assert out.isfinite().all() and z.grad.isfinite().all() and c.grad.isfinite().all()
    assert _rel(out.cpu(), _plain64(z, c, 1e4)) < 1e-5


def test_issue10_large_logits_without_the_backward_cache():
    """K > 8192: the CPU backward recomputes p in its second sweep instead of keeping sweep 1's.
    (The torch backend's float32 expanded distances cannot resolve this codebook at |z| = 1e5.)"""
    if "cpu" not in latentops.backends():
        pytest.skip("the C++ CPU kernel did not load")
    c = torch.linspace(-1.0, 2.0, 8200).unsqueeze(1).requires_grad_(True)
    z = torch.tensor([[1e5], [0.5], [-3.0]], requires_grad=True)
    g = torch.tensor([[1.0], [-2.0], [0.5]])
    out = latentops.soft_quantize(z, c, 0.5, backend="cpu")
    out.backward(g)
    z64, c64 = (t.detach().double().requires_grad_(True) for t in (z, c))
    logits = -0.5 * 0.5 * torch.cdist(z64, c64).square()
    out64 = torch.softmax(logits - logits.amax(1, keepdim=True).detach(), 1) @ c64
    out64.backward(g.double())
    assert _rel(out, out64) < 1e-6
    assert _rel(z.grad, z64.grad) < 1e-4 and _rel(c.grad, c64.grad) < 1e-4


@pytest.mark.parametrize(
    "precision, match",
    [
        (float("inf"), r"precision must be finite and ≥ 0, got inf"),
        (float("nan"), r"precision must be finite and ≥ 0, got nan"),
        (torch.tensor(float("nan")), r"precision must be finite and ≥ 0 everywhere, got an entry nan"),
        (torch.tensor([[1.0], [float("inf")], [1.0], [1.0]]), r"precision must be finite.*got an entry inf"),
        (torch.tensor([[1.0, -0.5, 1.0, 1.0, 1.0]]), r"precision must be finite and ≥ 0.*got an entry -0.5"),
    ],
)
def test_issue10_precision_must_be_finite_and_non_negative(precision, match):
    with pytest.raises(ValueError, match=match):
        latentops.soft_quantize(torch.randn(4, 3), torch.randn(5, 3), precision)


@pytest.mark.parametrize("bad", [True, "1.0", [1.0]], ids=["bool", "str", "list"])
def test_issue10_precision_type(bad):
    with pytest.raises(TypeError, match=r"precision must be a float or a tensor"):
        latentops.soft_quantize(torch.randn(4, 3), torch.randn(5, 3), bad)


def test_issue10_float64_keeps_a_float_precision_in_float64(gen):
    z = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    c = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    s = 0.1  # not a float32 number
    out = latentops.soft_quantize(z, c, s)
    assert (out - _plain64(z, c, s)).abs().max() < 1e-14
    torch.testing.assert_close(out, latentops.soft_quantize(z, c, torch.tensor(s, dtype=torch.float64)), rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_issue10_nan_policy(backend, gen):
    """Non-finite rows of z: NaN rows, the others untouched; a non-finite codebook entry or a NaN /
    +inf log prior: every row NaN; a −inf log prior excludes its centroid."""
    device = _device(backend)
    nan, inf = float("nan"), float("inf")
    z = torch.randn(6, 2, generator=gen).to(device)
    c = torch.randn(5, 2, generator=gen).to(device)
    bad = z.clone()
    bad[1, 0], bad[3, 1], bad[4, 0] = nan, inf, -inf
    out = latentops.soft_quantize(bad, c, 1.0, backend=backend)
    rows = torch.tensor([1, 3, 4], device=device)
    assert out[rows].isnan().all()
    keep = torch.tensor([0, 2, 5], device=device)
    torch.testing.assert_close(out[keep], latentops.soft_quantize(z[keep], c, 1.0, backend=backend))
    for value in (nan, inf, -inf):
        c_bad = c.clone()
        c_bad[2, 1] = value
        assert latentops.soft_quantize(z, c_bad, 1.0, backend=backend).isnan().all()
    for value in (nan, inf):
        prior = torch.zeros(5, device=device)
        prior[3] = value
        assert latentops.soft_quantize(z, c, 1.0, prior, backend=backend).isnan().all()
    prior = torch.zeros(5, device=device)
    prior[3] = -inf
    out = latentops.soft_quantize(z, c, 1.0, prior, backend=backend)
    keep_c = torch.tensor([0, 1, 2, 4], device=device)
    torch.testing.assert_close(out, latentops.soft_quantize(z, c[keep_c], 1.0, backend=backend))
    assert latentops.soft_quantize(z, c, 1.0, torch.full((5,), -inf, device=device), backend=backend).isnan().all()


@pytest.mark.parametrize("layout", PRECISION_LAYOUTS, ids=lambda p: "float" if p is None else p.name)
def test_a_log_prior_per_vector_matches_the_formula_and_its_gradients(layout, gen):
    # b of shape (N, K), e.g. Wu & Flierl's −½·log s_nk: the torch reference runs it.
    n, k, d = 13, 7, 5
    z, c, s, _ = testing.soft_quantize_sample(n, k, d, precision_layout=layout, generator=gen, dtype=torch.float64)
    b = torch.randn(n, k, generator=gen, dtype=torch.float64)
    for t in (z, c, s, b):
        if isinstance(t, torch.Tensor):
            t.requires_grad_(True)
    torch.testing.assert_close(latentops.soft_quantize(z, c, s, b), _plain(z, c, s, b))
    assert torch.autograd.gradcheck(latentops.soft_quantize, (z, c, s, b))
    # Leading dims stand for N, and the float32 call on the CPU also takes the reference.
    z3 = z.detach().float().reshape(1, n, d)
    got = latentops.soft_quantize(z3, c.detach().float(), 1.0, b.detach().float().reshape(1, n, k))
    torch.testing.assert_close(
        got.reshape(n, d).double(), _plain(z.detach(), c.detach(), 1.0, b.detach()), atol=1e-5, rtol=1e-5
    )


def test_a_log_prior_per_vector_poisons_only_its_row_and_names_the_backends_it_needs():
    z, c, b = torch.randn(4, 3), torch.randn(5, 3), torch.zeros(4, 5)
    b[2, 1] = float("nan")
    out = latentops.soft_quantize(z, c, 1.0, b)
    assert out[2].isnan().all() and out[[0, 1, 3]].isfinite().all()
    with pytest.raises(ValueError, match=r"backend 'cpu' takes a log_prior of shape \(K,\).*backend='torch'"):
        latentops.soft_quantize(z, c, 1.0, torch.zeros(4, 5), backend="cpu")
    with pytest.raises(ValueError, match=r"log_prior must have shape \(K,\) = \(5,\) or \(N, K\) = \(4, 5\)"):
        latentops.soft_quantize(z, c, 1.0, torch.zeros(3, 5))
