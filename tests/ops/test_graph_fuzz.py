"""Property-based tests (hypothesis) of latentops.similarity_graph (dense and k-NN), laplacian and
graph_smoothness on every CPU backend: 0, 1 and odd node counts, single / batched / layered inputs,
dtypes, non-contiguous inputs, tiny, huge and non-finite values, every option. Each result is
checked against the formulas written out below in float64 (not latentops.reference), and invalid
arguments must raise ValueError or TypeError naming the argument."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import latentops
from conftest import fuzz_examples

CPU_BACKENDS = [
    name for name in ("cpu", "triton", "torch") if name in latentops._backend.available_on(torch.device("cpu"))
]
NAN, INF = float("nan"), float("inf")


# -- the formulas, float64, one graph at a time -----------------------------------------------------


def direct_similarity(x, metric, sigma, relu):
    """W of x (n, d): cosines of the rows (each divided by its largest |entry| first, which leaves
    the cosine alone and keeps ‖x‖² representable; a zero row has similarity 0), or the Gaussian
    kernel of the pairwise differences; zero diagonal; ReLU."""
    x = x.double()
    if metric == "cosine":
        top = x.abs().amax(1, keepdim=True)
        x = torch.where(top > 0, x / torch.where(top > 0, top, 1.0), 0.0)
        norm = x.norm(dim=1, keepdim=True)
        xh = torch.where(norm > 0, x / torch.where(norm > 0, norm, 1.0), 0.0)
        w = xh @ xh.T
    else:
        w = torch.exp(-(x.unsqueeze(1) - x.unsqueeze(0)).square().sum(-1) / (2.0 * sigma * sigma))
    w = w * (1 - torch.eye(x.shape[0], dtype=w.dtype))
    return w.clamp_min(0.0) if relu else w


def direct_knn(w, k, symmetrize):
    """The k largest per row (diagonal included as a candidate), then symmetrized."""
    n = w.shape[0]
    if k is None or k >= n:
        return w
    idx = w.topk(k, 1).indices
    keep = torch.zeros_like(w, dtype=torch.bool).scatter(1, idx, True)
    a = torch.where(keep, w, 0.0)
    if symmetrize == "none":
        return a
    if symmetrize == "mean":
        return (a + a.T) / 2
    return torch.where(keep | keep.T, w, 0.0)


def knn_is_ambiguous(w, k):
    """Whether the k-th and (k+1)-th largest of some row are too close for float32 to order."""
    n = w.shape[0]
    if k is None or k >= n:
        return False
    top = w.topk(k + 1, 1).values
    return bool(((top[:, k - 1] - top[:, k]).abs() <= 1e-5 * (1 + top[:, k - 1].abs())).any())


def direct_normalized(w, normalize):
    """w_ij / √d_i / √d_j or w_ij / d_i with d the row sums (0 where d ≤ 0), as divisions: √d of a
    subnormal d is a normal number, so this holds for any float64 d."""
    if normalize in (None, "none"):
        return w
    d = w.sum(1)
    pos = d > 0
    safe = torch.where(pos, d, 1.0)
    if normalize == "rw":
        out = w / safe.unsqueeze(1)
        return torch.where(pos.unsqueeze(1), out, 0.0)
    root = safe.sqrt()
    out = w / root.unsqueeze(1) / root.unsqueeze(0)
    return torch.where(pos.unsqueeze(1) & pos.unsqueeze(0), out, 0.0)


def direct_laplacian(w, normalize):
    w = w * (1 - torch.eye(w.shape[0], dtype=w.dtype))
    d = w.sum(1)
    if normalize in (None, "none"):
        return torch.diag(d) - w
    return torch.diag((d > 0).double()) - direct_normalized(w, normalize)


# -- inputs ---------------------------------------------------------------------------------------


def _noncontiguous(t):
    """The same values in a buffer with the last two dimensions swapped."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


@st.composite
def graph_inputs(draw):
    n = draw(st.sampled_from([0, 1, 2, 3, 5, 6]))
    form = draw(st.sampled_from(["single", "batch", "list"]))
    widths = draw(st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=2))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16]))
    metric = draw(st.sampled_from(["cosine", "gaussian"]))
    scale = draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e25] if metric == "cosine" else [1e-3, 1.0, 5.0]))
    return dict(
        n=n,
        form=form,
        widths=widths,
        dtype=dtype,
        metric=metric,
        scale=scale,
        sigma=draw(st.sampled_from([0.5, 1.0, 3.0])) * (scale if metric == "gaussian" else 1.0),
        relu=draw(st.booleans()),
        k=draw(st.sampled_from([None, 1, 2, 3, 7])),
        symmetrize=draw(st.sampled_from(["union", "mean", "none"])),
        normalize=draw(st.sampled_from([None, "none", "sym", "rw"])),
        contiguous=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _make_x(p, gen):
    """(the op's x, the list of float64 (n, d) graphs it stands for)."""
    n, dtype, scale = p["n"], p["dtype"], p["scale"]
    if dtype == torch.float16 and scale != 1.0:
        scale = 1.0  # half has neither the range nor the digits for the extreme scales

    def draw(*shape):
        t = (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
        return t if p["contiguous"] else _noncontiguous(t)

    if p["form"] == "single":
        x = draw(n, p["widths"][0])
        return x, [x.double()]
    if p["form"] == "batch":
        x = draw(len(p["widths"]), n, p["widths"][0])
        return x, [g.double() for g in x]
    x = [draw(n, w) for w in p["widths"]]
    return x, [t.double() for t in x]


def _graphs(p, graphs64):
    """The float64 similarity graphs, and whether float32 cannot be expected to match them: a near-tie
    at the k-th neighbour (either choice is right), or a normalization by a degree that cancels to
    near 0 (signed weights without the ReLU: any rounding is then amplified without bound)."""
    ws = [direct_similarity(x, p["metric"], p["sigma"], p["relu"]) for x in graphs64]
    ambiguous = any(knn_is_ambiguous(w, p["k"]) for w in ws)
    if p["normalize"] in ("sym", "rw"):
        for w in ws:
            a = direct_knn(w, p["k"], p["symmetrize"])
            mass = a.abs().sum(1)
            ambiguous |= bool(((a.sum(1).abs() <= 1e-3 * mass) & (mass > 0)).any())
    return ws, ambiguous


def _tolerance(dtype):
    return {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-2}[dtype]


def _backends(dtype):
    return ["torch"] if dtype == torch.float64 else CPU_BACKENDS  # float64 runs on the reference


@settings(max_examples=fuzz_examples(40))
@given(p=graph_inputs())
def test_similarity_graph_matches_the_formula(p):
    gen = torch.Generator().manual_seed(p["seed"])
    x, graphs64 = _make_x(p, gen)
    ws, ambiguous = _graphs(p, graphs64)
    opts = {key: p[key] for key in ("k", "metric", "sigma", "relu", "symmetrize", "normalize")}
    want = [direct_normalized(direct_knn(w, p["k"], p["symmetrize"]), p["normalize"]) for w in ws]
    for backend in _backends(p["dtype"]):
        out = latentops.similarity_graph(x, backend=backend, **opts)
        expected_shape = (p["n"], p["n"]) if p["form"] == "single" else (len(graphs64), p["n"], p["n"])
        assert out.shape == expected_shape
        assert out.dtype == (torch.float64 if p["dtype"] == torch.float64 else torch.float32)
        assert out.isfinite().all(), backend
        if ambiguous:
            continue  # a near-tie at the k-th neighbour: either choice is right
        got = out if p["form"] != "single" else out.unsqueeze(0)
        tol = _tolerance(p["dtype"]) * (10 if p["normalize"] in ("sym", "rw") and not p["relu"] else 1)
        for g, (mine, ref) in enumerate(zip(got, want)):
            scale = (
                1.0
                if p["normalize"] in (None, "none") or p["relu"]
                else (ref.abs().max().item() if ref.numel() else 0.0) + 1.0
            )
            torch.testing.assert_close(mine.double(), ref, rtol=tol, atol=tol * scale, msg=f"{backend} graph {g}")
        if p["n"] > 1 and p["dtype"] != torch.float16 and p["normalize"] in (None, "none"):
            _check_gradients(p, x, opts, backend)  # (normalized: 1/d amplifies rounding, left out)


def _check_gradients(p, x, opts, backend):
    """dL/dx for L = Σ G ⊙ W against torch autograd through the float64 formulas."""
    inputs = x if isinstance(x, list) else [x]
    leaves = [t.detach().requires_grad_(True) for t in inputs]
    out = latentops.similarity_graph(leaves if isinstance(x, list) else leaves[0], backend=backend, **opts)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out.backward(grad_out.to(out.dtype))
    refs = [t.detach().double().requires_grad_(True) for t in inputs]
    graphs = list(refs[0].unbind(0)) if p["form"] == "batch" else refs
    want = [
        direct_normalized(
            direct_knn(direct_similarity(g, p["metric"], p["sigma"], p["relu"]), p["k"], p["symmetrize"]),
            p["normalize"],
        )
        for g in graphs
    ]
    torch.stack(want).backward(grad_out.reshape(len(want), p["n"], p["n"]))
    rel = 1e-9 if p["dtype"] == torch.float64 else 2e-3
    for mine, ref in zip(leaves, refs):
        assert mine.grad is not None and mine.grad.isfinite().all(), backend
        # The size of the terms row i's gradient sums, which sets its rounding noise: Σ|G|/‖x_i‖
        # for cosines, Σ|G|·(|x_i| + max|x|)/σ² for the Gaussian.
        x64 = ref.detach()
        if p["metric"] == "cosine":
            norms = x64.norm(dim=-1, keepdim=True)
            size = torch.where(norms > 0, 1.0 / torch.where(norms > 0, norms, 1.0), 0.0)
        else:
            size = (x64.abs().amax(-1, keepdim=True) + x64.abs().amax()) / p["sigma"] ** 2
        size = size * grad_out.abs().sum()
        gap = (mine.grad.double() - ref.grad).abs()
        assert (gap <= rel * size).all(), (backend, gap.max(), size.max())


@settings(max_examples=fuzz_examples(30))
@given(p=graph_inputs(), power=st.sampled_from([1, 2]), int_labels=st.booleans())
def test_graph_smoothness_matches_the_formula(p, power, int_labels):
    gen = torch.Generator().manual_seed(p["seed"])
    x, graphs64 = _make_x(p, gen)
    ws, ambiguous = _graphs(p, graphs64)
    n, classes = p["n"], 3
    if int_labels:
        labels = torch.randint(0, classes, (n,), generator=gen)
        y64 = torch.nn.functional.one_hot(labels, classes).double()
    else:
        labels = torch.rand(n, classes, generator=gen)
        y64 = labels.double()
    opts = {key: p[key] for key in ("k", "metric", "sigma", "relu", "symmetrize", "normalize")}
    want = []
    for w in ws:
        lap = direct_laplacian(direct_knn(w, p["k"], p["symmetrize"]), p["normalize"])
        z = y64
        for _ in range(power):
            z = lap @ z
        want.append((y64 * z).sum())
    want = torch.stack(want)
    for backend in _backends(p["dtype"]):
        s = latentops.graph_smoothness(x, labels, power=power, num_classes=classes, backend=backend, **opts)
        assert s.shape == (() if p["form"] == "single" else (len(graphs64),))
        assert s.isfinite().all(), backend
        if ambiguous:
            continue
        tol = _tolerance(p["dtype"]) * 10
        # s sums terms of size ‖Y‖²·‖L‖^m: its error scales with them, not with s
        size = y64.square().sum() * (2.0 * max(n, 1)) ** power
        torch.testing.assert_close(s.reshape(-1).double(), want, rtol=tol, atol=tol * size, msg=backend)


@settings(max_examples=fuzz_examples(40))
@given(
    n=st.sampled_from([0, 1, 2, 3, 5]),
    lead=st.lists(st.sampled_from([1, 2]), max_size=1),
    normalize=st.sampled_from([None, "none", "sym", "rw"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    scale=st.sampled_from([1e-44, 1e-40, 1e-310, 1e-3, 1.0, 1e30]),
    signed=st.booleans(),
    symmetric=st.booleans(),
    poison=st.sampled_from([None, NAN, INF, -INF]),
    contiguous=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_laplacian_matches_the_formula(n, lead, normalize, dtype, scale, signed, symmetric, poison, contiguous, seed):
    """Any square W: zero rows, subnormal and huge weights, signed entries; a non-finite entry makes
    its row NaN (and its column, with "sym"); the rest is finite and right."""
    if dtype == torch.float32 and scale == 1e-310:
        scale = 1e-45
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(*lead, n, n, generator=gen, dtype=torch.float64)
    w = w * (torch.rand(*lead, n, n, generator=gen, dtype=torch.float64) > 0.3)
    if signed:
        w = w - 0.2 * torch.rand(*lead, n, n, generator=gen, dtype=torch.float64)
    if symmetric:
        w = w + w.transpose(-1, -2)
    w = (w * scale).to(dtype)
    bad = torch.zeros(*lead, n, dtype=torch.bool)
    if poison is not None and n > 1:
        w[..., 0, 1] = poison  # off the diagonal: the diagonal is ignored
        bad[..., 0] = True
    w = w if contiguous else _noncontiguous(w)
    graphs = lead[0] if lead else 1
    w64 = w.double().reshape(graphs, n, n)
    lap = latentops.laplacian(w, normalize)
    norm = latentops.normalize_graph(w, normalize)
    assert lap.shape == w.shape and lap.dtype == dtype and norm.shape == w.shape
    for i, (mine, mine_norm, ref) in enumerate(zip(lap.reshape(graphs, n, n), norm.reshape(graphs, n, n), w64)):
        rows = bad.reshape(graphs, n)[i]
        nan_mask = rows.unsqueeze(1) | (rows.unsqueeze(0) if normalize == "sym" else torch.zeros_like(rows))
        assert torch.equal(mine.isnan(), nan_mask.expand(n, n)), (normalize, mine)
        ok = ~nan_mask.expand(n, n)
        clean = torch.where(ref.isfinite(), ref, 0.0)  # the other rows' degrees keep their entries
        tol = 1e-12 if dtype == torch.float64 else 2e-6
        want = direct_laplacian(clean, normalize)
        if normalize in (None, "none"):
            atol = tol * (clean.abs().sum(1, keepdim=True) + clean.abs().sum(0, keepdim=True))
        else:
            atol = tol * (want.abs() + 1)
        assert ((mine.double() - want).abs() <= atol + tol * want.abs())[ok].all(), (mine, want)
        assert mine[ok].isfinite().all()
        if normalize in ("sym", "rw") and poison is None:
            ref_norm = direct_normalized(ref, normalize)
            assert ((mine_norm.double() - ref_norm).abs() <= tol * (ref_norm.abs() + 1)).all()
            if normalize == "sym" and symmetric:
                assert torch.equal(mine_norm, mine_norm.transpose(-1, -2))


@settings(max_examples=fuzz_examples(15))
@given(
    metric=st.sampled_from(["cosine", "gaussian"]),
    k=st.sampled_from([None, 2]),
    which=st.sampled_from(["x", "labels"]),
    value=st.sampled_from([NAN, INF, -INF]),
    seed=st.integers(0, 2**31 - 1),
)
def test_nan_policy_fuzzed(metric, k, which, value, seed):
    """A graph with a non-finite x (or label) is NaN throughout on every backend; the others are
    the same as computed alone."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 2, generator=gen)
    y = torch.rand(3, 5, 2, generator=gen)
    poisoned = int(torch.randint(0, 3, (), generator=gen))
    if which == "x":
        x[poisoned, int(torch.randint(0, 5, (), generator=gen)), 1] = value
    else:
        y[poisoned, int(torch.randint(0, 5, (), generator=gen)), 0] = value
    clean = [g for g in range(3) if g != poisoned]
    for backend in CPU_BACKENDS:
        opts = dict(k=k, metric=metric, normalize="sym", backend=backend)
        s = latentops.graph_smoothness(x, y, **opts)
        assert s[poisoned].isnan() and s[clean].isfinite().all(), backend
        alone = latentops.graph_smoothness(x[clean], y[clean], **opts)
        torch.testing.assert_close(s[clean], alone)
        if which == "x":
            w = latentops.similarity_graph(x, **opts)
            assert w[poisoned].isnan().all() and w[clean].isfinite().all(), backend
            torch.testing.assert_close(w[clean], latentops.similarity_graph(x[clean], **opts))


BAD_CALLS = [
    (lambda: latentops.similarity_graph(torch.randn(4, 3), relu="no"), TypeError, "relu"),
    (lambda: latentops.similarity_graph(torch.randn(4, 3), relu=None), TypeError, "relu"),
    (lambda: latentops.similarity_graph(torch.randn(4, 3), k=0), ValueError, "k"),
    (lambda: latentops.similarity_graph(torch.randn(4, 3), k=1.5), TypeError, "k"),
    (lambda: latentops.similarity_graph(torch.randn(4, 3), sigma=-1.0), ValueError, "sigma"),
    (lambda: latentops.similarity_graph(torch.randn(4, 3), sigma=NAN), ValueError, "sigma"),
    (lambda: latentops.similarity_graph(torch.randn(4, 3), metric="l2"), ValueError, "metric"),
    (lambda: latentops.similarity_graph(torch.randn(4, 3), symmetrize="max"), ValueError, "symmetrize"),
    (lambda: latentops.similarity_graph(torch.randn(4, 3), normalize="row"), ValueError, "normalize"),
    (lambda: latentops.similarity_graph(torch.randn(4, 3), backend="gpu"), ValueError, "backend"),
    (lambda: latentops.similarity_graph(torch.randn(0, 4, 3)), ValueError, "x"),
    (lambda: latentops.similarity_graph(torch.randn(4, 0)), ValueError, "x"),
    (lambda: latentops.similarity_graph([]), ValueError, "x"),
    (lambda: latentops.similarity_graph([torch.zeros(0, 3, 4), torch.zeros(1, 2)]), ValueError, "x"),
    (lambda: latentops.similarity_graph(torch.ones(4, 3, dtype=torch.int64)), TypeError, "x"),
    (lambda: latentops.similarity_graph("x"), TypeError, "x"),
    (lambda: _smooth(labels=torch.tensor([0, -1, 1, 0])), ValueError, "labels"),
    (lambda: _smooth(labels=torch.tensor([0, 5, 1, 0]), num_classes=2), ValueError, "labels"),
    (lambda: _smooth(labels=torch.tensor([0, 1, 1, 0]), num_classes=-1), ValueError, "num_classes"),
    (lambda: _smooth(labels=torch.tensor([0, 1, 1, 0]), num_classes=0), ValueError, "num_classes"),
    (lambda: _smooth(labels=torch.tensor([0, 1, 1])), ValueError, "labels"),
    (lambda: _smooth(labels=torch.tensor([[0, 1], [1, 0], [0, 1], [1, 0]])), TypeError, "labels"),
    (lambda: _smooth(labels=torch.rand(4, 2, 1)), ValueError, "labels"),
    (lambda: _smooth(power=0), ValueError, "power"),
    (lambda: _smooth(power=1.5), TypeError, "power"),
    (lambda: latentops.graph_smoothness(torch.randn(0, 2), torch.zeros(0, dtype=torch.int64)), ValueError, "num_c"),
    (lambda: latentops.laplacian(torch.rand(3, 4)), ValueError, "W"),
    (lambda: latentops.laplacian(torch.rand(3, 3), "row"), ValueError, "normalize"),
    (lambda: latentops.normalize_graph(torch.ones(3, 3, dtype=torch.int32), None), TypeError, "W"),
]


def _smooth(**kwargs):
    args = {"x": torch.randn(4, 3), "labels": torch.tensor([0, 1, 1, 0])}
    args.update(kwargs)
    return latentops.graph_smoothness(**args)


@settings(max_examples=fuzz_examples(30))
@given(case=st.sampled_from(BAD_CALLS))
def test_invalid_arguments_name_the_argument(case):
    call, error, name = case
    with pytest.raises(error, match=name):
        call()


def test_direct_formulas_are_the_formulas():
    """The test's own formulas against hand values."""
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    w = direct_similarity(x, "cosine", 1.0, True)
    assert w[0, 1].item() == pytest.approx(2**-0.5) and w[2].abs().sum() == 0 and w[0, 0] == 0
    g = direct_similarity(torch.tensor([[0.0], [2.0]]), "gaussian", 1.0, True)
    assert g[0, 1].item() == pytest.approx(torch.exp(torch.tensor(-2.0)).item())
    lap = direct_laplacian(torch.tensor([[0.0, 2.0], [2.0, 0.0]], dtype=torch.float64), "sym")
    torch.testing.assert_close(lap, torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64))
