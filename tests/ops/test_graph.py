"""latentops.similarity_graph / laplacian / graph_smoothness on every backend against the float64
reference (latentops.reference.graph), the identities, scipy and scikit-learn."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import latentops
from conftest import CUDA, backend_params, fuzz_examples
from latentops import testing
from latentops.reference import graph as ref

BACKENDS = [*backend_params("cpu"), *backend_params("cuda")]
# (metric, relu, symmetrize, normalize, power): every option at least once, without the full
# product (the Triton interpreter pays per program).
CONFIGS = [
    ("cosine", True, "union", None, 1),
    ("cosine", True, "mean", "sym", 1),
    ("cosine", True, "none", "rw", 2),
    # Without the ReLU, degrees can come near 0 and normalization is ill-conditioned: unnormalized.
    ("cosine", False, "union", None, 1),
    ("gaussian", True, "union", "rw", 1),
    ("gaussian", True, "mean", None, 2),
    ("gaussian", True, "none", "sym", 1),
]


def _device(backend):
    return "cuda" if backend == "cuda" or (backend == "triton" and CUDA) else "cpu"


def _interpreted(backend):
    return backend == "triton" and not CUDA


def _rel(a, b):
    return ((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm().clamp_min(1e-30)).item()


def _sigma(ds):
    return math.sqrt(sum(ds) / len(ds))


def _reference_smoothness(layers64, y64, **kw):
    return torch.stack([ref.smoothness(x, y64, **kw) for x in layers64])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric, relu, symmetrize, normalize, power", CONFIGS)
def test_smoothness_and_gradients_match_float64(backend, metric, relu, symmetrize, normalize, power, gen):
    device = _device(backend)
    for n, ds, k in testing.GRAPH_INTERPRETER_SHAPES if _interpreted(backend) else testing.GRAPH_SHAPES:
        layers64, y64 = testing.graph_sample(
            n, ds, 4, soft_labels=True, generator=gen, dtype=torch.float64, requires_grad=True
        )
        kw = dict(
            k=k, power=power, metric=metric, sigma=_sigma(ds), relu=relu, symmetrize=symmetrize, normalize=normalize
        )
        expected = _reference_smoothness(layers64, y64, **kw)
        expected.sum().backward()
        layers = [t.detach().float().to(device).requires_grad_(True) for t in layers64]
        y = y64.detach().float().to(device).requires_grad_(True)
        s = latentops.graph_smoothness(layers, y, backend=backend, **kw)
        assert s.shape == (len(ds),) and s.dtype == torch.float32
        s.sum().backward()
        assert _rel(s.detach(), expected.detach()) < 2e-5, (n, ds, k)
        for mine, theirs in zip(layers, layers64):
            assert _rel(mine.grad, theirs.grad) < 1e-4, (n, ds, k)
        assert _rel(y.grad, y64.grad) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n, d", [(4096, 32), (3, 65536)], ids=["n=4096", "d=65536"])
def test_issue_limits(backend, n, d, gen):
    """The issue's limits: n up to 4096 and d up to 65536 per layer, forward and backward. With n
    = 4096 random points, some row's k-th and (k+1)-th similarities lie closer than fp32 rounding
    and fp32 and float64 keep different neighbours; so the points come in tight groups of k + 1,
    whose k-NN graph is the groups, whatever the rounding."""
    if _interpreted(backend) and n > 64:
        pytest.skip("the interpreter would run ~33,000 tile programs")
    device = _device(backend)
    k = min(15, n)
    centres = torch.randn(-(-n // (k + 1)), d, generator=gen, dtype=torch.float64)
    x64 = centres.repeat_interleave(k + 1, 0)[:n] + 0.05 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    x64.requires_grad_(True)
    y64 = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    expected = ref.smoothness(x64, y64, k=k)
    expected.backward()
    x = x64.detach().float().to(device).requires_grad_(True)
    s = latentops.graph_smoothness(x, y64.float().to(device), k=k, backend=backend)
    s.sum().backward()
    assert _rel(s.detach(), expected.detach()) < 2e-5
    assert _rel(x.grad, x64.grad) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symmetrize", ["union", "mean", "none"])
def test_similarity_graph_matches_float64(backend, symmetrize, gen):
    device = _device(backend)
    n, d, k = (11, 9, 3) if _interpreted(backend) else (67, 40, 6)
    x64 = torch.randn(2, n, d, generator=gen, dtype=torch.float64)
    x64[1, 3] = 0.0  # a zero row: similarity 0, no NaN
    for normalize in (None, "sym"):
        w = latentops.similarity_graph(
            x64.float().to(device), k=k, symmetrize=symmetrize, normalize=normalize, backend=backend
        )
        expected = torch.stack([ref.similarity_graph(x, k=k, symmetrize=symmetrize, normalize=normalize) for x in x64])
        assert w.shape == (2, n, n) and torch.isfinite(w).all()
        assert _rel(w, expected) < 2e-5
        if symmetrize != "none":
            assert torch.equal(w, w.transpose(1, 2))  # exactly: each pair's value is computed once
    w = latentops.similarity_graph(x64[0].float().to(device), metric="gaussian", sigma=3.0, backend=backend)
    assert w.shape == (n, n)
    assert _rel(w, ref.similarity_graph(x64[0], metric="gaussian", sigma=3.0)) < 2e-5
    assert torch.equal(w, w.T) and (w.diagonal() == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_cases(backend, gen):
    device = _device(backend)

    def check(x64, y64, **kw):
        x = x64.float().to(device).requires_grad_(True)
        s = latentops.graph_smoothness(x, y64.float().to(device), backend=backend, **kw)
        s.sum().backward()
        x64 = x64.clone().requires_grad_(True)
        expected = (
            ref.smoothness(x64, y64, **kw)
            if x64.dim() == 2
            else torch.stack([ref.smoothness(t, y64, **kw) for t in x64.unbind(0)])
        )
        expected.sum().backward()
        assert torch.isfinite(s).all() and torch.isfinite(x.grad).all()
        assert _rel(s.detach(), expected.detach()) < 2e-5 or (s.detach().cpu().double() - expected).abs().max() < 1e-6
        assert (x.grad.cpu().double() - x64.grad).abs().max() < 1e-4 * max(1.0, x64.grad.abs().max().item())
        return x.grad

    y = torch.rand(7, 3, generator=gen, dtype=torch.float64)
    x = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    check(x, y, k=7)  # k = n: the dense graph
    check(x, y, k=50)  # k > n
    torch.testing.assert_close(
        latentops.graph_smoothness(x.float().to(device), y.float().to(device), k=50, backend=backend),
        latentops.graph_smoothness(x.float().to(device), y.float().to(device), backend=backend),
    )
    check(torch.randn(2, 4, generator=gen, dtype=torch.float64), y[:2], k=1)  # n = 2
    check(torch.randn(7, 1, generator=gen, dtype=torch.float64), y, k=2, metric="gaussian")  # d = 1
    check(torch.randn(7, 1, generator=gen, dtype=torch.float64), y)  # d = 1, cosine, dense
    x_zero = torch.randn(2, 7, 6, generator=gen, dtype=torch.float64)
    x_zero[0, 2] = 0.0
    x_zero[1, 5] = 0.0
    grad = check(x_zero, y, k=3, normalize="sym")  # zero rows: no NaN, zero gradient
    assert (grad[0, 2] == 0).all() and (grad[1, 5] == 0).all()
    grad = check(x_zero, y, k=None)
    assert (grad[0, 2] == 0).all() and (grad[1, 5] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_single_node_and_half_inputs(backend, gen):
    device = _device(backend)
    empty = torch.randn(2, 0, 5, device=device, requires_grad=True)
    s = latentops.graph_smoothness(empty, torch.rand(0, 3, device=device), k=3, backend=backend)
    assert s.shape == (2,) and (s == 0).all()
    s.sum().backward()
    assert empty.grad.shape == (2, 0, 5)
    assert latentops.similarity_graph(torch.randn(0, 4, device=device), k=2, backend=backend).shape == (0, 0)
    one = latentops.graph_smoothness(
        torch.randn(1, 4, device=device), torch.rand(1, 2, device=device), k=3, backend=backend
    )
    assert one.item() == 0.0
    x = torch.randn(11, 6, generator=gen)
    y = torch.rand(11, 2, generator=gen)
    for dtype in (torch.float16, torch.bfloat16):
        if dtype == torch.bfloat16 and _interpreted(backend):
            continue  # no bf16 under the Triton interpreter
        xd = x.to(dtype)
        s = latentops.graph_smoothness(xd.to(device), y.to(device), k=3, backend=backend)
        assert s.dtype == torch.float32  # computed in float32 from the 16-bit inputs
        assert _rel(s, ref.smoothness(xd.double(), y.double(), k=3)) < 2e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_list_and_noncontiguous_inputs(backend, gen):
    device = _device(backend)
    n = 9
    y = torch.rand(n, 2, generator=gen)
    x = torch.randn(3, n, 6, generator=gen).to(device)
    batched = latentops.graph_smoothness(x, y.to(device), k=3, backend=backend)
    as_list = latentops.graph_smoothness(list(x), y.to(device), k=3, backend=backend)
    single = torch.stack([latentops.graph_smoothness(t, y.to(device), k=3, backend=backend) for t in x])
    assert batched.shape == (3,) and single[0].shape == ()
    torch.testing.assert_close(batched, as_list)
    torch.testing.assert_close(batched, single)
    # Per-graph labels (G, n, C), feature maps (n, C, H, W) and a transposed (non-contiguous) layer.
    y3 = torch.rand(2, n, 2, generator=gen).to(device)
    fmap = torch.randn(n, 2, 3, 3, generator=gen).to(device)
    trans = torch.randn(5, n, generator=gen).to(device).T
    s = latentops.graph_smoothness([fmap, trans], y3, k=4, backend=backend)
    expected = torch.stack(
        [
            ref.smoothness(fmap.flatten(1).double().cpu(), y3[0].double().cpu(), k=4),
            ref.smoothness(trans.double().cpu(), y3[1].double().cpu(), k=4),
        ]
    )
    assert _rel(s, expected) < 2e-5
    # Integer labels are one-hot classes.
    classes = torch.randint(0, 3, (n,), generator=gen).to(device)
    torch.testing.assert_close(
        latentops.graph_smoothness(x, classes, k=3, backend=backend),
        latentops.graph_smoothness(x, torch.nn.functional.one_hot(classes, 3).float(), k=3, backend=backend),
    )


def test_identities_scipy_and_sklearn(gen):
    scipy_lap = pytest.importorskip("scipy.sparse.csgraph").laplacian
    kneighbors_graph = pytest.importorskip("sklearn.neighbors").kneighbors_graph
    x = torch.randn(23, 8, generator=gen, dtype=torch.float64) + 2.0  # all cosines positive
    y = torch.rand(23, 3, generator=gen, dtype=torch.float64)
    for symmetrize in ("union", "mean"):
        w = latentops.similarity_graph(x, k=5, symmetrize=symmetrize)
        pairwise = 0.5 * (w * torch.cdist(y, y).square()).sum()
        torch.testing.assert_close(latentops.graph_smoothness(x, y, k=5, symmetrize=symmetrize), pairwise)
        for normalize in (None, "rw"):
            rows = latentops.laplacian(w, normalize).sum(1)
            torch.testing.assert_close(rows, torch.zeros_like(rows), atol=1e-12, rtol=0)
        torch.testing.assert_close(latentops.laplacian(w), torch.from_numpy(scipy_lap(w.numpy())))
        torch.testing.assert_close(latentops.laplacian(w, "sym"), torch.from_numpy(scipy_lap(w.numpy(), normed=True)))
    # An isolated node: scipy's convention (L_ii = 0) on both normalizations.
    w = latentops.similarity_graph(x, k=4)
    w[3], w[:, 3] = 0.0, 0.0
    torch.testing.assert_close(latentops.laplacian(w, "sym"), torch.from_numpy(scipy_lap(w.numpy(), normed=True)))
    # k-NN support and weights: scikit-learn's cosine neighbours (self excluded), W = 1 − distance.
    w = latentops.similarity_graph(x, k=5, symmetrize="none")
    knn = torch.from_numpy(kneighbors_graph(x.numpy(), 5, mode="distance", metric="cosine").toarray())
    assert torch.equal(w != 0, knn != 0)
    torch.testing.assert_close(w[knn != 0], 1.0 - knn[knn != 0])


def test_gradcheck_float64(gen):
    x = torch.randn(2, 8, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    for kw in [
        dict(k=3),
        dict(k=3, symmetrize="mean", normalize="sym"),
        dict(k=2, normalize="rw", power=2),
        dict(k=None, normalize="sym"),
        dict(k=3, metric="gaussian", sigma=2.0, symmetrize="none"),
        dict(k=None, metric="gaussian", sigma=2.0, relu=False),
    ]:
        assert torch.autograd.gradcheck(lambda x, y, kw=kw: latentops.graph_smoothness(x, y, **kw), (x, y)), kw
    assert torch.autograd.gradcheck(lambda x: latentops.similarity_graph(x, k=3, normalize="sym"), (x,))
    assert torch.autograd.gradcheck(lambda x: latentops.similarity_graph(x, relu=False), (x,))
    w = torch.rand(6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    for normalize in (None, "sym", "rw"):
        assert torch.autograd.gradcheck(lambda w, normalize=normalize: latentops.laplacian(w, normalize), (w,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend, gen):
    device = _device(backend)
    xs = [torch.randn(9, d, generator=gen).to(device).requires_grad_(True) for d in (4, 7)]
    for metric in ("cosine", "gaussian"):
        torch.library.opcheck(torch.ops.latentops.similarity_graph_knn, (xs, 3, metric, 2.0, True, backend))
        torch.library.opcheck(torch.ops.latentops.similarity_graph_dense, (xs, metric, 2.0, True, backend))
    # A (B, n, d) element stands for B graphs (how a batched x reaches the kernels).
    batched = [torch.randn(2, 9, 5, generator=gen).to(device).requires_grad_(True), xs[0]]
    torch.library.opcheck(torch.ops.latentops.similarity_graph_knn, (batched, 4, "cosine", 1.0, False, backend))
    plain = [x.detach() for x in xs]
    vals, idx, stats = torch.ops.latentops.similarity_graph_knn(plain, 3, "cosine", 1.0, True, backend)
    torch.library.opcheck(
        torch.ops.latentops.similarity_graph_knn_backward,
        (torch.randn_like(vals), plain, idx, vals, stats, "cosine", 1.0, True, backend),
    )
    w, stats = torch.ops.latentops.similarity_graph_dense(plain, "gaussian", 2.0, True, backend)
    torch.library.opcheck(
        torch.ops.latentops.similarity_graph_dense_backward,
        (torch.randn_like(w), plain, w, stats, "gaussian", 2.0, True, backend),
    )


def test_torch_compile_fullgraph(gen):
    x = torch.randn(2, 12, 6, generator=gen, requires_grad=True)
    y = torch.rand(12, 3, generator=gen)

    def loss(x):
        return (
            latentops.graph_smoothness(x * 2.0, y, k=3, normalize="sym").sum()
            + latentops.similarity_graph(x, k=None).square().sum()
        )

    compiled = torch.compile(loss, fullgraph=True)
    value = compiled(x)
    torch.testing.assert_close(value, loss(x))
    value.backward()
    grad = x.grad.clone()
    x.grad = None
    loss(x).backward()
    torch.testing.assert_close(grad, x.grad)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"labels": torch.rand(5, 2)}, ValueError, r"labels must be \(n, C\) = \(4, C\).*got shape \(5, 2\)"),
        ({"labels": torch.zeros(5, dtype=torch.int64)}, ValueError, r"labels must have n = 4 entries.*\(5,\)"),
        ({"k": 0}, ValueError, r"k must be None or an integer ≥ 1, got 0"),
        ({"k": 2.5}, TypeError, r"k must be None or an integer ≥ 1"),
        ({"power": 0}, ValueError, r"power must be an integer ≥ 1"),
        ({"x": [torch.randn(4, 3), torch.randn(5, 3)]}, ValueError, r"same n.*x\[1\] has shape \(5, 3\)"),
        ({"x": []}, ValueError, r"x must be a non-empty list"),
        ({"x": torch.randn(4)}, ValueError, r"x must be \(n, d\), \(B, n, d\).*got shape \(4,\)"),
        ({"x": torch.ones(4, 3, dtype=torch.int64)}, TypeError, r"x must be float"),
        ({"x": torch.randn(4, 0)}, ValueError, r"at least one feature"),
        ({"metric": "l1"}, ValueError, r"metric must be one of \('cosine', 'gaussian'\), got 'l1'"),
        ({"normalize": "row"}, ValueError, r"normalize must be one of"),
        ({"symmetrize": "max"}, ValueError, r"symmetrize must be one of"),
        ({"sigma": 0.0}, ValueError, r"sigma must be a number > 0"),
        ({"labels": torch.rand(4, 2, device="meta")}, ValueError, r"x on cpu, labels on meta"),
        ({"labels": [0, 1, 2, 3]}, TypeError, r"labels must be a torch.Tensor"),
        ({"backend": "gpu"}, ValueError, r"unknown backend 'gpu'"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, error, match):
    args = {"x": torch.randn(4, 3), "labels": torch.rand(4, 2)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        latentops.graph_smoothness(**args)


def test_bad_graph_inputs():
    for op in (latentops.laplacian, latentops.normalize_graph):
        with pytest.raises(ValueError, match=r"W must be \(..., n, n\).*\(3, 4\)"):
            op(torch.rand(3, 4), None)
        with pytest.raises(ValueError, match=r"normalize must be one of"):
            op(torch.rand(3, 3), "row")
        with pytest.raises(TypeError, match=r"W must be float"):
            op(torch.ones(3, 3, dtype=torch.int64), None)
    with pytest.raises(ValueError, match=r"x\[0\] on cpu, x\[1\] on meta"):
        latentops.similarity_graph([torch.randn(4, 3), torch.randn(4, 3, device="meta")])


@settings(max_examples=fuzz_examples(60))
@given(
    n=st.integers(0, 9),
    lead=st.lists(st.integers(1, 3), max_size=2),
    normalize=st.sampled_from(ref.NORMALIZE),
    scale=st.sampled_from([0.0, 1e-30, 1.0, 1e30]),
    seed=st.integers(0, 2**31 - 1),
)
def test_normalize_graph_fuzzed(n, lead, normalize, scale, seed):
    """Any square batch, zero and isolated rows, tiny and huge weights: the spec's values, finite,
    and symmetric where W is (the "sym" normalization of a symmetric W)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(*lead, n, n, generator=gen, dtype=torch.float64) * scale
    w = w * (torch.rand(*lead, n, n, generator=gen, dtype=torch.float64) > 0.3)  # some rows all zero
    w = w + w.transpose(-1, -2)
    out = latentops.normalize_graph(w, normalize)
    assert out.shape == w.shape and out.dtype == w.dtype and out.isfinite().all()
    torch.testing.assert_close(out, ref.normalized(w, normalize))
    if normalize == "sym":
        torch.testing.assert_close(out, out.transpose(-1, -2))


# -- issue 10: subnormal degrees, tiny and huge cosine rows, named errors, the NaN/inf policy ------


@pytest.mark.parametrize("backend", BACKENDS)
def test_issue10_subnormal_degrees_normalize_exactly(backend):
    """exp(−91.125) is subnormal in float32: d^(−1/2)·d^(−1/2) overflowed to inf (inf·0 = NaN)."""
    device = _device(backend)
    x = torch.tensor([[0.0], [13.5], [100.0]], device=device)
    expected = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    for normalize in ("sym", "rw"):
        w = latentops.similarity_graph(x, metric="gaussian", normalize=normalize, backend=backend)
        torch.testing.assert_close(w.cpu(), expected, rtol=1e-6, atol=0)
        w = latentops.similarity_graph(x, k=1, metric="gaussian", normalize=normalize, backend=backend)
        torch.testing.assert_close(w.cpu(), expected, rtol=1e-6, atol=0)
    w = latentops.similarity_graph(x, metric="gaussian", backend=backend)
    assert 0 < w[0, 1].item() < 1e-38
    lap = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    for normalize in ("sym", "rw"):
        torch.testing.assert_close(latentops.laplacian(w, normalize).cpu(), lap, rtol=1e-6, atol=0)
        torch.testing.assert_close(latentops.normalize_graph(w, normalize).cpu(), expected, rtol=1e-6, atol=0)
        labels = torch.tensor([0, 1, 1], device=device)
        for k in (None, 2):
            s = latentops.graph_smoothness(x, labels, k=k, metric="gaussian", normalize=normalize, backend=backend)
            assert s.item() == pytest.approx(2.0, rel=1e-6)
    # float64, where exp(−722) is subnormal: the same.
    w64 = latentops.similarity_graph(
        torch.tensor([[0.0], [38.0], [100.0]], dtype=torch.float64), metric="gaussian", normalize="sym"
    )
    torch.testing.assert_close(w64, expected.double(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_issue10_tiny_and_huge_cosine_rows(backend):
    """‖x‖² underflowed for |x| ≲ 1e-23 (zero rows) and overflows for |x| ≳ 1e19."""
    device = _device(backend)
    base = torch.tensor([[1.0, 2.0], [2.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    expected = ref.similarity(base.double(), relu=False)
    x = (base * torch.tensor([[1e-30], [1e-40], [1e25], [1.0]])).to(device)
    for k in (None, 2):
        w = latentops.similarity_graph(x, k=k, relu=False, symmetrize="none", backend=backend).cpu()
        want = ref.knn(expected, k, "none")
        torch.testing.assert_close(w.double(), want, rtol=1e-6, atol=1e-7)
    # d cos / dx ~ 1/‖x‖: finite down to ‖x‖ ~ 1e-38 in float32 (the 1e-40 row's is beyond float32)
    x = x[[0, 2, 3]].detach().requires_grad_(True)
    latentops.similarity_graph(x, k=2, backend=backend).sum().backward()
    assert x.grad.isfinite().all()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: latentops.similarity_graph(torch.randn(4, 3), relu="no"), TypeError, r"relu must be a bool"),
        (lambda: _smooth(labels=torch.tensor([0, -1, 1, 0])), ValueError, r"labels must be class indices ≥ 0"),
        (lambda: _smooth(labels=torch.tensor([0, 3, 1, 0]), num_classes=3), ValueError, r"labels must be < num"),
        (lambda: _smooth(labels=torch.tensor([0, 1, 1, 0]), num_classes=-1), ValueError, r"num_classes must be"),
        (lambda: _smooth(labels=torch.tensor([0, 1, 1, 0]), num_classes=2.0), TypeError, r"num_classes must be"),
        (lambda: _smooth(relu=1), TypeError, r"relu must be a bool"),
        (
            lambda: latentops.graph_smoothness(torch.randn(0, 3), torch.zeros(0, dtype=torch.int64)),
            ValueError,
            r"num_classes must be given for empty integer labels",
        ),
    ],
)
def test_issue10_argument_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _smooth(**kwargs):
    args = {"x": torch.randn(4, 3), "labels": torch.tensor([0, 1, 1, 0])}
    args.update(kwargs)
    return latentops.graph_smoothness(**args)


def test_issue10_empty_layers_and_empty_labels():
    assert latentops.similarity_graph([torch.zeros(0, 3, 4)]).shape == (1, 0, 0)
    assert latentops.similarity_graph([torch.zeros(0, 3, 4), torch.zeros(0, 2)], k=2).shape == (2, 0, 0)
    s = latentops.graph_smoothness(torch.randn(0, 3), torch.zeros(0, dtype=torch.int64), num_classes=2)
    assert s.item() == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_issue10_nan_policy(backend, gen):
    """A graph whose x (or labels) holds a NaN or ±inf is NaN throughout; the others are untouched."""
    device = _device(backend)
    x = torch.randn(3, 6, 4, generator=gen).to(device)
    bad = x.clone()
    bad[1, 2, 3], bad[2, 0, 0] = float("nan"), float("inf")
    y = torch.rand(6, 2, generator=gen).to(device)
    for metric in ("cosine", "gaussian"):
        for k in (None, 2):
            kw = dict(k=k, metric=metric, normalize="sym", backend=backend)
            w = latentops.similarity_graph(bad, **kw)
            assert w[1:].isnan().all()
            torch.testing.assert_close(w[0], latentops.similarity_graph(x[0], **kw))
            s = latentops.graph_smoothness(bad, y, **kw)
            assert s[1:].isnan().all()
            torch.testing.assert_close(s[0], latentops.graph_smoothness(x[0], y, **kw))
    y_bad = torch.rand(3, 6, 2, generator=gen).to(device)
    y_bad[2, 1, 0] = float("nan")
    s = latentops.graph_smoothness(x, y_bad, backend=backend)
    assert s[:2].isfinite().all() and s[2].isnan()


def test_issue10_laplacian_nan_policy():
    nan, inf = float("nan"), float("inf")
    w = torch.rand(5, 5) + 0.1
    w = w + w.T
    bad = w.clone()
    bad[1, 3] = nan
    bad[3, 1] = inf
    for normalize in (None, "sym", "rw"):
        lap = latentops.laplacian(bad, normalize)
        rows = torch.tensor([1, 3])
        keep = torch.tensor([0, 2, 4])
        assert lap[rows].isnan().all()
        if normalize == "sym":
            assert lap[:, rows].isnan().all()
            assert lap[keep][:, keep].isfinite().all()
        else:
            assert lap[keep].isfinite().all()
    assert latentops.normalize_graph(bad, None) is bad
    assert latentops.normalize_graph(bad, "rw")[rows].isnan().all()
