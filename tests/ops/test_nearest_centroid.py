"""latentops.nearest_centroid on every backend against the float64 reference."""

import pytest
import torch

import latentops
from conftest import CUDA, backend_params, requires_cuda
from latentops import testing
from latentops.reference import nearest_centroid as reference

DTYPES = testing.KERNEL_DTYPES
BACKENDS = [*backend_params("cpu"), *backend_params("cuda")]


def _device(backend):
    return "cuda" if backend == "cuda" or (backend == "triton" and CUDA) else "cpu"


def _shapes(backend):
    interpreted = backend == "triton" and not CUDA
    return testing.NEAREST_CENTROID_INTERPRETER_SHAPES if interpreted else testing.NEAREST_CENTROID_SHAPES


def check_result(z, c, indices, sq_dist, accuracy="exact"):
    """The chosen centroid is a nearest one (float64, up to 1e-5 relative for "exact"), and sq_dist
    is its float64 distance up to fp32 rounding."""
    z64, c64 = z.double().cpu().reshape(-1, z.shape[-1]), c.double().cpu()
    idx = indices.cpu().reshape(-1)
    assert idx.dtype == torch.int64 and ((idx >= 0) & (idx < c.shape[0])).all()
    dist = torch.cdist(z64, c64).square() if z64.numel() else torch.zeros(0, c.shape[0])
    chosen = dist.gather(1, idx[:, None]).squeeze(1)
    best = dist.min(1).values if dist.numel() else chosen
    scale = z64.square().sum(1) + c64.square().sum(1).max()
    # "fast" lets tf32/bf16 decide: their error scales with ‖z‖·‖c‖, not with the distance.
    slack = 1e-5 * best + 1e-9 * scale if accuracy == "exact" else 4e-3 * scale
    assert (chosen <= best + slack).all(), (chosen - best).max()
    direct = (z64 - c64[idx]).square().sum(1)
    assert sq_dist.dtype == torch.float32
    torch.testing.assert_close(
        sq_dist.cpu().double().reshape(-1), direct, rtol=1e-5, atol=1e-7 * scale.max().item() if len(scale) else 0
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("accuracy", ["exact", "fast"])
def test_matches_reference(backend, dtype, accuracy, gen):
    if backend == "triton" and not CUDA and dtype == torch.bfloat16:
        pytest.skip("no bf16 math under the Triton interpreter")
    device = _device(backend)
    for n, k, d in _shapes(backend):
        z, c = testing.nearest_centroid_sample(n, k, d, generator=gen, dtype=dtype, device=device)
        indices, sq_dist = latentops.nearest_centroid(z, c, accuracy=accuracy, backend=backend)
        assert indices.shape == (n,) and sq_dist.shape == (n,)
        assert indices.device == z.device
        check_result(z, c, indices, sq_dist, accuracy)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancellation_prone_inputs_stay_exact(backend, gen):
    """Points and centroids far from the origin: ‖c‖² − 2z·c in fp32 loses the digits that decide."""
    device = _device(backend)
    z, c = testing.nearest_centroid_sample(67, 41, 17, generator=gen, dtype=torch.float32, device=device, offset=1000.0)
    check_result(z, c, *latentops.nearest_centroid(z, c, backend=backend))
    # Near-ties: centroids clustered far tighter than fp32 tensor-core error around each point.
    base = torch.randn(5, 33, generator=gen) * 10
    c = (base.repeat(30, 1) + 1e-3 * torch.randn(150, 33, generator=gen)).to(device)
    z = (base.repeat(20, 1) + 1e-3 * torch.randn(100, 33, generator=gen)).to(device)
    check_result(z, c, *latentops.nearest_centroid(z, c, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_go_to_lowest_index(backend, gen):
    device = _device(backend)
    z, c = testing.nearest_centroid_sample(29, 7, 5, generator=gen, dtype=torch.float32, device=device)
    indices, _ = latentops.nearest_centroid(z, torch.cat([c, c, c]), backend=backend)
    assert (indices < 7).all()
    # Every centroid equidistant from z = 0: the first one wins.
    ring = torch.eye(6, device=device)
    indices, sq_dist = latentops.nearest_centroid(torch.zeros(3, 6, device=device), ring, backend=backend)
    assert indices.tolist() == [0, 0, 0] and sq_dist.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_policy(backend, gen):
    device = _device(backend)
    z, c = testing.nearest_centroid_sample(4, 6, 3, generator=gen, dtype=torch.float32, device=device)
    z[1, 2] = float("nan")
    c[2] = float("nan")
    indices, sq_dist = latentops.nearest_centroid(z, c, backend=backend)
    assert indices[1].item() == 0 and sq_dist[1].isnan()
    keep = torch.tensor([0, 2, 3])
    assert (indices[keep] != 2).all() and sq_dist[keep].isfinite().all()
    ok = torch.cat([c[:2], c[3:]])
    check_result(z[keep], ok, *latentops.nearest_centroid(z[keep], ok, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_shapes_empty_leading_and_noncontiguous(backend, gen):
    device = _device(backend)
    c = torch.randn(9, 6, generator=gen).to(device)
    for lead in [(0,), (2, 0), (0, 3)]:
        indices, sq_dist = latentops.nearest_centroid(torch.empty(*lead, 6, device=device), c, backend=backend)
        assert indices.shape == lead and sq_dist.shape == lead and indices.dtype == torch.int64
    z = torch.randn(2, 3, 5, 6, generator=gen).to(device)
    indices, sq_dist = latentops.nearest_centroid(z, c, backend=backend)
    assert indices.shape == (2, 3, 5)
    check_result(z, c, indices, sq_dist)
    for layout in ("transposed", "strided"):
        z, c = testing.nearest_centroid_sample(11, 9, 6, generator=gen, device=device, layout=layout)
        assert not z.is_contiguous() and not c.is_contiguous()
        check_result(z, c, *latentops.nearest_centroid(z, c, backend=backend))


def test_backends_agree_on_indices(gen):
    z, c = testing.nearest_centroid_sample(500, 300, 24, generator=gen, dtype=torch.float32, device="cpu")
    expected = reference.nearest_centroid(z, c)[0]
    for backend in latentops._backend.available_on(torch.device("cpu")):
        assert torch.equal(latentops.nearest_centroid(z, c, backend=backend)[0], expected), backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_sq_dist_gradients(backend, gen):
    device = _device(backend)
    z, c = testing.nearest_centroid_sample(23, 7, 5, generator=gen, dtype=torch.float32, device=device)
    z.requires_grad_(True)
    c.requires_grad_(True)
    weight = torch.randn(23, generator=gen).to(device)
    indices, sq_dist = latentops.nearest_centroid(z, c, backend=backend)
    (sq_dist * weight).sum().backward()
    z_ref, c_ref = z.detach().clone().requires_grad_(True), c.detach().clone().requires_grad_(True)
    ((z_ref - c_ref[indices]).square().sum(1) * weight).sum().backward()
    torch.testing.assert_close(z.grad, z_ref.grad)
    torch.testing.assert_close(c.grad, c_ref.grad)
    assert not indices.requires_grad


def test_gradcheck_float64(gen):
    z = torch.randn(6, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    c = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z, c: latentops.nearest_centroid(z, c)[1], (z, c))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend, gen):
    device = _device(backend)
    z, c = testing.nearest_centroid_sample(13, 6, 5, generator=gen, dtype=torch.float32, device=device)
    for args in [(z, c, "exact", backend), (z.requires_grad_(True), c.requires_grad_(True), "fast", backend)]:
        torch.library.opcheck(torch.ops.latentops.nearest_centroid, args)
    if backend == "torch":
        torch.library.opcheck(torch.ops.latentops.nearest_centroid, (z.double(), c.double(), "exact", backend))


def test_torch_compile_fullgraph(gen):
    z, c = testing.nearest_centroid_sample(33, 10, 8, generator=gen, dtype=torch.float32, device="cpu")
    c.requires_grad_(True)

    def commitment(z, c):
        indices, sq_dist = latentops.nearest_centroid(z * 2.0, c)
        return indices, sq_dist.mean()

    compiled = torch.compile(commitment, fullgraph=True)
    indices, loss = compiled(z, c)
    expected_indices, expected_loss = commitment(z, c)
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(loss, expected_loss)
    loss.backward()
    assert c.grad is not None and c.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "z, codebook, kwargs, error, match",
    [
        (torch.randn(4, 3), torch.randn(5, 2), {}, ValueError, r"D = 2.*\(4, 3\).*\(5, 2\)"),
        (torch.randn(4, 3), torch.randn(3), {}, ValueError, r"codebook must be 2-D.*\(3,\)"),
        (torch.randn(4, 3), torch.randn(2, 5, 3), {}, ValueError, r"codebook must be 2-D"),
        (torch.randn(4, 3), torch.randn(0, 3), {}, ValueError, r"K ≥ 1.*\(0, 3\)"),
        (torch.randn(4, 0), torch.randn(2, 0), {}, ValueError, r"D = 0"),
        (torch.ones(4, 3, dtype=torch.int64), torch.randn(2, 3), {}, TypeError, r"z must be float"),
        (torch.randn(4, 3), torch.ones(2, 3, dtype=torch.int32), {}, TypeError, r"codebook must be float"),
        (torch.randn(4, 3), torch.randn(2, 3, device="meta"), {}, ValueError, r"z on cpu, codebook on meta"),
        (torch.randn(4, 3), torch.randn(2, 3), {"accuracy": "tf32"}, ValueError, r"accuracy must be one of"),
        (torch.randn(4, 3), torch.randn(2, 3), {"backend": "cuda2"}, ValueError, r"unknown backend 'cuda2'"),
        ([[1.0, 2.0]], torch.randn(2, 2), {}, TypeError, r"z must be a torch.Tensor, got list"),
        (torch.tensor(1.0), torch.randn(2, 1), {}, ValueError, r"z must have at least one dimension"),
    ],
)
def test_bad_input_raises_clear_errors(z, codebook, kwargs, error, match):
    with pytest.raises(error, match=match):
        latentops.nearest_centroid(z, codebook, **kwargs)


@requires_cuda
@pytest.mark.cuda
def test_cuda_large_against_reference(gen):
    for dtype in DTYPES:
        z, c = testing.nearest_centroid_sample(20011, 4099, 64, generator=gen, dtype=dtype, device="cuda")
        for backend in ["cuda", "triton"]:
            for accuracy in ["exact", "fast"]:
                indices, sq_dist = latentops.nearest_centroid(z, c, accuracy=accuracy, backend=backend)
                check_result(z[:2000], c, indices[:2000], sq_dist[:2000], accuracy)


# Regression tests of issue 10 (silent wrong answers found by fuzzing).


def _direct64(z, c):
    """(N, K) float64 squared distances Σ (z − c)², straight from the definition."""
    z64, c64 = z.double().cpu().reshape(-1, z.shape[-1]), c.double().cpu()
    return (z64[:, None, :] - c64[None, :, :]).square().sum(-1)


def _assert_nearest(z, c, indices, rel=1e-5):
    dist = _direct64(z, c)
    chosen = dist.gather(1, indices.cpu().reshape(-1, 1)).squeeze(1)
    assert (chosen <= dist.min(1).values * (1 + rel)).all(), (chosen, dist.min(1).values)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_codebook_row_is_never_chosen(backend):
    # The torch reference's tie allowance became NaN with a NaN codebook row: every index was 0.
    device = _device(backend)
    z = torch.tensor([[1.0], [5.0]], device=device)
    c = torch.tensor([[float("nan")], [1.0], [5.0]], device=device)
    for accuracy in ("exact", "fast"):
        indices, sq_dist = latentops.nearest_centroid(z, c, accuracy=accuracy, backend=backend)
        assert indices.tolist() == [1, 2] and sq_dist.tolist() == [0.0, 0.0]


def test_float64_far_from_the_origin_is_exact(gen):
    # The reference's allowance 1e-12·(‖z‖² + max‖c‖²) dwarfed the gaps at offset 1e4: 916 of 1000
    # indices were wrong, and kmeans left 479 labels away from their nearest centroid.
    z = 1e4 + 0.01 * torch.randn(1000, 4, dtype=torch.float64, generator=gen)
    c = 1e4 + 0.01 * torch.randn(16, 4, dtype=torch.float64, generator=gen)
    indices, sq_dist = latentops.nearest_centroid(z, c)
    assert torch.equal(indices, _direct64(z, c).argmin(1))
    torch.testing.assert_close(sq_dist, _direct64(z, c).min(1).values, rtol=1e-12, atol=0)
    result = latentops.kmeans(z, 16, seed=0)
    assert torch.equal(result.labels, _direct64(z, result.centroids).argmin(1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("accuracy", ["exact", "fast"])
def test_extreme_magnitudes(backend, accuracy, gen):
    # Triton "exact" missed 63 of 64 rows of float32 data around 1e-30 (the products underflow: every
    # score 0, every row "certified") and codebooks around 1e30 (‖c‖² overflows). Centring and a
    # power-of-two scale fix both, in "fast" mode too (fp32 inputs).
    if backend == "cuda" and accuracy == "fast":
        pytest.skip("the CUDA kernel's fast mode scores unscaled tf32 products (only exact is fixed)")
    device = _device(backend)
    for z_scale, c_scale in [(1e-30, 1e-30), (1.0, 1e30), (1e30, 1e30), (1e-20, 1e-20), (1e18, 1e18)]:
        z = (z_scale * torch.randn(64, 8, generator=gen)).to(device)
        c = (c_scale * torch.randn(16, 8, generator=gen)).to(device)
        indices, sq_dist = latentops.nearest_centroid(z, c, accuracy=accuracy, backend=backend)
        _assert_nearest(z, c, indices)
        expected = _direct64(z, c).gather(1, indices.cpu()[:, None]).squeeze(1)
        # sq_dist is float32: it underflows to 0 or overflows to inf where the distance does.
        in_range = expected < 3e38
        assert sq_dist.cpu()[~in_range].isinf().all()
        torch.testing.assert_close(sq_dist.cpu()[in_range].double(), expected[in_range], rtol=1e-5, atol=1e-37)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("accuracy", ["exact", "fast"])
def test_non_finite_policy(backend, accuracy):
    # The policy in the op's docstring, case by case.
    device = _device(backend)
    nan, inf = float("nan"), float("inf")
    c = torch.tensor([[nan, 0.0], [inf, 0.0], [-1.0, 0.0], [3.0, 0.0], [1.0, 0.0]], device=device)
    z = torch.tensor(
        [
            [1.2, 0.0],  # finite: the nearest finite row (4), never the NaN or inf ones
            [nan, 0.0],  # NaN in z: all distances NaN -> 0, NaN
            [inf, 0.0],  # +inf: NaN to rows 0 and 1 (inf − inf), +inf to the others -> 2
            [-inf, 0.0],  # −inf: NaN to row 0, +inf to the rest (row 1 included) -> 1
            [0.0, inf],  # +inf in the other column: +inf to rows 1..4 -> 1
        ],
        device=device,
    )
    indices, sq_dist = latentops.nearest_centroid(z, c, accuracy=accuracy, backend=backend)
    assert indices.tolist() == [4, 0, 2, 1, 1]
    sq = sq_dist.cpu()
    assert sq[0].item() == pytest.approx(0.04, rel=1e-6)
    assert sq[1].isnan() and sq[2:].isinf().all()
    # A codebook with no finite row: a finite z is +inf from the inf rows and NaN from the NaN row.
    indices, _ = latentops.nearest_centroid(z[:1], c[:2], accuracy=accuracy, backend=backend)
    assert indices.tolist() == [1]
