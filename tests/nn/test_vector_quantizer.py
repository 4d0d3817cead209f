import copy

import numpy as np
import pytest
import torch

from latentops.kmeans import kmeans
from latentops.nn import VectorQuantizer, VQOutput


def _nearest(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return torch.cdist(z.reshape(-1, z.shape[-1]).double(), codebook.double()).argmin(1)


def _buffers(module) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in module.state_dict().items()}


@pytest.mark.parametrize("shape", [(3, 17, 5), (7, 5), (1, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("ema_decay", [0.99, None])
@pytest.mark.parametrize("training", [True, False])
def test_shapes_types_and_values(shape, ema_decay, training):
    vq = VectorQuantizer(5, 13, ema_decay=ema_decay).train(training)
    codebook = vq.codebook.detach().clone()
    z = torch.randn(shape)
    out = vq(z)
    assert isinstance(out, VQOutput)
    quantized, indices, loss, perplexity = out
    assert quantized.shape == z.shape and quantized.dtype == z.dtype
    assert indices.shape == shape[:-1] and indices.dtype == torch.int64
    assert loss.shape == () and loss.dtype == torch.float32
    assert perplexity.shape == () and 1.0 <= perplexity.item() <= 13 + 1e-4
    assert torch.equal(indices.reshape(-1), _nearest(z, codebook))
    torch.testing.assert_close(quantized, codebook[indices])


def test_perplexity_is_exp_entropy():
    vq = VectorQuantizer(2, 4)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]]))
    z = torch.tensor([[0.1, 0], [0, 0.2], [9.9, 0], [0, 9.5]])  # usage 2/4, 1/4, 1/4, 0
    p = torch.tensor([0.5, 0.25, 0.25])
    expected = torch.exp(-(p * p.log()).sum())
    torch.testing.assert_close(vq.eval()(z).perplexity, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_straight_through_gradient_is_identity(dtype):
    vq = VectorQuantizer(6, 11)
    z = torch.randn(4, 9, 6, dtype=dtype, requires_grad=True)
    out = vq(z)
    assert out.quantized.dtype == dtype
    weights = torch.randn(z.shape, dtype=dtype)
    (out.quantized * weights).sum().backward()
    assert torch.equal(z.grad, weights)


def test_codebook_loss_gradients_match_reference():
    beta = 0.37
    vq = VectorQuantizer(4, 7, beta=beta, ema_decay=None)
    z = torch.randn(3, 19, 4, requires_grad=True)
    codebook = vq.codebook.detach().clone()
    out = vq(z)
    out.loss.backward()

    flat = z.detach().reshape(-1, 4).double()
    c = codebook.double()
    idx = _nearest(flat, c)
    q = c[idx]
    n_elements = flat.numel()
    expected_loss = (1 + beta) * (q - flat).square().sum() / n_elements
    torch.testing.assert_close(out.loss.double(), expected_loss, rtol=1e-5, atol=1e-7)
    # ∂/∂C_k of mean ‖sg(z) − q‖²: Σ_{n→k} 2 (C_k − z_n) / (N·D); commitment: 2β(z − q)/(N·D)
    grad_c = torch.zeros_like(c).index_add_(0, idx, 2 * (q - flat) / n_elements)
    torch.testing.assert_close(vq.codebook.grad.double(), grad_c, rtol=1e-5, atol=1e-7)
    grad_z = 2 * beta * (flat - q) / n_elements
    torch.testing.assert_close(z.grad.reshape(-1, 4).double(), grad_z, rtol=1e-5, atol=1e-7)


def test_ema_loss_is_commitment_only_and_codebook_is_a_buffer():
    vq = VectorQuantizer(3, 5, beta=0.5)
    assert "codebook" in dict(vq.named_buffers())
    assert list(vq.parameters()) == []
    z = torch.randn(20, 3, requires_grad=True)
    codebook = vq.codebook.clone()
    out = vq(z)
    expected = 0.5 * (codebook[_nearest(z, codebook)] - z.detach()).square().mean()
    torch.testing.assert_close(out.loss, expected)


def test_ema_update_matches_reference():
    decay, eps, k, d = 0.9, 1e-3, 9, 3
    vq = VectorQuantizer(d, k, ema_decay=decay, eps=eps)
    c0 = vq.codebook.clone()
    size0 = vq.cluster_size.clone()
    avg0 = vq.embed_avg.clone()
    z = torch.randn(5, 23, d)
    vq(z)

    flat = z.reshape(-1, d).double()
    idx = _nearest(flat, c0)
    counts = torch.bincount(idx, minlength=k).double()
    sums = torch.zeros(k, d, dtype=torch.float64).index_add_(0, idx, flat)
    size = decay * size0.double() + (1 - decay) * counts
    avg = decay * avg0.double() + (1 - decay) * sums
    total = size.sum()
    smoothed = (size + eps) / (total + k * eps) * total
    torch.testing.assert_close(vq.cluster_size.double(), size, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(vq.embed_avg.double(), avg, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(vq.codebook.double(), avg / smoothed.unsqueeze(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ema_decay", [0.99, None])
def test_dead_codes_are_replaced_by_batch_vectors(ema_decay):
    k, d, threshold = 8, 4, 1.0
    vq = VectorQuantizer(d, k, ema_decay=ema_decay, dead_code_threshold=threshold)
    with torch.no_grad():
        far = 100.0 + torch.arange(k - 1, dtype=torch.float32).unsqueeze(1).expand(k - 1, d)
        vq.codebook.copy_(torch.cat([torch.zeros(1, d), far]))
        if ema_decay is not None:
            vq.embed_avg.copy_(vq.codebook)
    z = torch.randn(37, d) * 0.1  # every vector picks code 0: codes 1..7 fall to usage 0.99 < 1
    before = _buffers(vq)
    vq.eval()(z)
    assert all(torch.equal(before[name], t) for name, t in vq.state_dict().items())
    out = vq.train()(z)
    assert (out.indices == 0).all()
    replaced = vq.codebook.detach()[1:]
    matches = (replaced.unsqueeze(1) == z.unsqueeze(0)).all(-1)  # (7, 37)
    assert matches.any(1).all(), "every dead code is now a batch vector"
    assert torch.equal(vq.cluster_size[1:], torch.full((k - 1,), threshold))
    assert vq.cluster_size[0] == pytest.approx(0.99 + 0.01 * 37)
    if ema_decay is not None:
        torch.testing.assert_close(vq.embed_avg[1:], replaced * threshold)


def test_no_replacement_without_threshold():
    vq = VectorQuantizer(4, 8, dead_code_threshold=0.0)
    with torch.no_grad():
        vq.codebook[1:] += 100.0
        vq.embed_avg.copy_(vq.codebook)
    far = vq.codebook[1:].clone()
    vq(torch.randn(30, 4) * 0.1)
    torch.testing.assert_close(vq.codebook[1:], far, rtol=1e-4, atol=1e-4)


def test_kmeans_init_uses_kmeans_of_the_first_batch():
    k, d = 6, 3
    vq = VectorQuantizer(d, k, ema_decay=None, kmeans_init=True, kmeans_iters=7)
    assert not bool(vq.initted)
    z = torch.randn(4, 31, d)
    vq.eval()(z)  # eval mode never initializes
    assert not bool(vq.initted)
    torch.manual_seed(123)
    vq.train()(z)
    assert bool(vq.initted)
    torch.manual_seed(123)
    seed = int(torch.randint(2**31 - 1, (1,)).item())
    ref = kmeans(z.reshape(-1, d), k, iters=7, seed=seed)
    torch.testing.assert_close(vq.codebook.detach(), ref.centroids)
    torch.testing.assert_close(
        vq.cluster_size,
        torch.bincount(ref.labels, minlength=k).float().clamp_min(1) * 0.99
        + 0.01 * torch.bincount(ref.labels, minlength=k).float(),
    )
    # no second init
    after = vq.codebook.detach().clone()
    vq(torch.randn(50, d) + 10)
    torch.testing.assert_close(vq.codebook.detach(), after)


def test_kmeans_init_with_ema_keeps_the_centroids():
    vq = VectorQuantizer(2, 5, kmeans_init=True)
    z = torch.randn(301, 2)
    out = vq(z)
    inertia = (vq.codebook[out.indices] - z).square().sum().item()
    ref = kmeans(z, 5, iters=10, seed=0)
    assert inertia <= 1.2 * ref.inertia
    # the first EMA step sees the same assignment, so the codebook stays at the centroids
    codebook = vq.codebook.clone()
    sizes = torch.bincount(out.indices, minlength=5).float()
    torch.testing.assert_close(vq.embed_avg, codebook * sizes.unsqueeze(1), rtol=1e-4, atol=1e-4)


def test_kmeans_init_with_fewer_vectors_than_codes():
    vq = VectorQuantizer(3, 10, kmeans_init=True, ema_decay=None)
    z = torch.randn(4, 3)
    vq(z)
    rows = vq.codebook.detach()
    is_batch_vector = (rows.unsqueeze(1) == z.unsqueeze(0)).all(-1).any(1)
    assert is_batch_vector.all()


def test_state_dict_round_trip():
    vq = VectorQuantizer(4, 9, kmeans_init=True, dead_code_threshold=0.3)
    for _ in range(3):
        vq(torch.randn(2, 21, 4))
    state = vq.state_dict()
    assert set(state) == {"codebook", "embed_avg", "cluster_size", "initted"}
    fresh = VectorQuantizer(4, 9, kmeans_init=True, dead_code_threshold=0.3)
    assert not fresh._initted
    fresh.load_state_dict(state)
    assert fresh._initted  # the Python mirror follows the loaded buffer: no second k-means
    for name, t in fresh.state_dict().items():
        assert torch.equal(t, state[name]), name
    z = torch.randn(5, 4)
    a, b = vq.eval()(z), fresh.eval()(z)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.quantized, b.quantized)
    # a module that learns by gradient round-trips too
    grad_vq = VectorQuantizer(4, 9, ema_decay=None)
    copy_vq = VectorQuantizer(4, 9, ema_decay=None)
    copy_vq.load_state_dict(grad_vq.state_dict())
    assert torch.equal(copy_vq.codebook, grad_vq.codebook)


def test_training_changes_buffers_and_eval_does_not():
    vq = VectorQuantizer(4, 9, dead_code_threshold=0.5)
    z = torch.randn(3, 11, 4)
    before = _buffers(vq)
    vq.eval()(z)
    after = _buffers(vq)
    assert all(torch.equal(before[name], after[name]) for name in before)
    vq.train()(z)
    assert not torch.equal(vq.codebook, before["codebook"])
    assert not torch.equal(vq.cluster_size, before["cluster_size"])


def test_empty_batch():
    vq = VectorQuantizer(4, 6, dead_code_threshold=2.0)
    z = torch.randn(0, 7, 4, requires_grad=True)
    out = vq(z)
    assert out.quantized.shape == (0, 7, 4) and out.indices.shape == (0, 7)
    assert out.loss.item() == 0.0 and out.perplexity.item() == pytest.approx(1.0)
    out.loss.backward()


def test_learns_a_codebook_by_gradient():
    torch.manual_seed(0)
    centers = torch.randn(4, 2) * 5
    vq = VectorQuantizer(2, 4, ema_decay=None, kmeans_init=True)
    optimizer = torch.optim.SGD(vq.parameters(), lr=0.5)
    for _ in range(30):
        z = centers[torch.randint(4, (64,))] + 0.1 * torch.randn(64, 2)
        optimizer.zero_grad()
        vq(z).loss.backward()
        optimizer.step()
    error = torch.cdist(centers, vq.codebook.detach()).min(1).values
    assert (error < 0.2).all()


def test_compiles_in_eval_mode():
    vq = VectorQuantizer(8, 16).eval()
    compiled = torch.compile(vq, fullgraph=True, backend="aot_eager")
    z = torch.randn(3, 5, 8)
    out, ref = compiled(z), vq(z)
    assert torch.equal(out.indices, ref.indices)
    torch.testing.assert_close(out.quantized, ref.quantized)
    torch.testing.assert_close(out.perplexity, ref.perplexity)


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(dim=0), ValueError, "dim"),
        (dict(dim=-3), ValueError, "dim"),
        (dict(dim=True), TypeError, "dim"),
        (dict(dim=4.0), TypeError, "dim"),
        (dict(codebook_size=0), ValueError, "codebook_size"),
        (dict(codebook_size=2.5), TypeError, "codebook_size"),
        (dict(codebook_size="8"), TypeError, "codebook_size"),
        (dict(kmeans_iters=0), ValueError, "kmeans_iters"),
        (dict(kmeans_iters=False), TypeError, "kmeans_iters"),
        (dict(beta=-1.0), ValueError, "beta"),
        (dict(beta="x"), TypeError, "beta"),  # issue 10: an unnamed TypeError from `>=`
        (dict(beta=INF), ValueError, "beta"),  # issue 10: accepted
        (dict(beta=NAN), ValueError, "beta"),
        (dict(beta=None), TypeError, "beta"),
        (dict(ema_decay=1.0), ValueError, "ema_decay"),
        (dict(ema_decay=-0.1), ValueError, "ema_decay"),
        (dict(ema_decay=NAN), ValueError, "ema_decay"),
        (dict(ema_decay="0.9"), TypeError, "ema_decay"),
        (dict(eps=0.0), ValueError, "eps"),
        (dict(eps=INF), ValueError, "eps"),  # issue 10: accepted
        (dict(eps=1e300), ValueError, "eps"),  # overflows the float32 state
        (dict(dead_code_threshold=-1.0), ValueError, "dead_code_threshold"),
        (dict(dead_code_threshold=INF), ValueError, "dead_code_threshold"),  # issue 10: accepted
        (dict(dead_code_threshold=NAN), ValueError, "dead_code_threshold"),
        (dict(kmeans_init="yes"), TypeError, "kmeans_init"),
        (dict(kmeans_init=1), TypeError, "kmeans_init"),
        (dict(sync_distributed=None), TypeError, "sync_distributed"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, name):
    args = dict(dim=4, codebook_size=8)
    args.update(kwargs)
    with pytest.raises(error, match=name):
        VectorQuantizer(args.pop("dim"), args.pop("codebook_size"), **args)


def test_integer_scalars_of_numpy_and_torch_are_ints():
    vq = VectorQuantizer(np.int64(4), torch.tensor(8), kmeans_iters=np.int32(3), beta=np.float32(0.5), eps=1)
    assert (vq.dim, vq.codebook_size, vq.kmeans_iters) == (4, 8, 3)
    assert all(type(v) is int for v in (vq.dim, vq.codebook_size, vq.kmeans_iters))
    assert vq.codebook.shape == (8, 4) and vq.beta == 0.5 and vq.eps == 1.0
    assert vq(torch.randn(5, 4)).quantized.shape == (5, 4)


# -- non-finite inputs and empty batches (issue 10, finding 5) -----------------------------------


def _finite_state(vq) -> bool:
    return all(torch.isfinite(t).all() for name, t in vq.state_dict().items() if t.is_floating_point())


@pytest.mark.parametrize("ema_decay", [0.0, 0.5, 0.99, None])
@pytest.mark.parametrize("dead_code_threshold", [0.0, 2.0])
def test_empty_batch_leaves_the_state_alone(ema_decay, dead_code_threshold):
    # issue 10: with ema_decay=0.0 an empty batch turned every code into NaN (0 / 0).
    vq = VectorQuantizer(3, 5, ema_decay=ema_decay, dead_code_threshold=dead_code_threshold)
    vq(torch.randn(40, 3))
    before = _buffers(vq)
    for shape in [(0, 3), (2, 0, 3)]:
        out = vq(torch.randn(shape))
        assert out.quantized.shape == shape and out.loss.item() == 0.0 and out.perplexity.item() == 1.0
    for name, t in vq.state_dict().items():
        assert torch.equal(t, before[name]), name
    assert _finite_state(vq)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9, None])
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_non_finite_rows_are_returned_but_never_reach_the_codebook(ema_decay, bad):
    torch.manual_seed(0)
    a = VectorQuantizer(4, 6, ema_decay=ema_decay, dead_code_threshold=1.5)
    b = copy.deepcopy(a)
    z = torch.randn(3, 9, 4)
    z[0, 2, 1] = bad
    z[2, 5] = bad
    finite = torch.isfinite(z).all(-1)
    codebook = a.codebook.detach().clone()
    zg = z.clone().requires_grad_(True)
    torch.manual_seed(1)
    out = a(zg)
    # Outputs: codewords for finite rows, NaN for the others, a non-finite loss to skip the step.
    assert torch.equal(out.quantized[finite], codebook[out.indices[finite]])
    assert torch.isnan(out.quantized[~finite]).all()
    assert not torch.isfinite(out.loss)
    # The state is the one a batch of only the finite rows gives (same draws for dead codes).
    torch.manual_seed(1)
    ref = b(z[finite])
    for name, t in a.state_dict().items():
        torch.testing.assert_close(t, b.state_dict()[name], rtol=1e-6, atol=1e-6, msg=name)
    assert _finite_state(a)
    assert out.perplexity == ref.perplexity
    if ema_decay is None:  # the codebook's gradient is the finite rows' only
        out.loss.backward()
        ref.loss.backward()
        assert torch.isfinite(a.codebook.grad).all()
        torch.testing.assert_close(a.codebook.grad, b.codebook.grad)


def test_one_nan_sample_does_not_poison_an_ema_codebook():
    # The case: after one NaN in an EMA batch, codes stayed NaN for good and dead-code
    # replacement spread them (150 of 512 codes).
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 512, dead_code_threshold=1.0)
    for step in range(6):
        z = torch.randn(256, 8)
        if step == 1:
            z[17, 3] = NAN
        vq(z)
        assert _finite_state(vq), step
    assert (vq.cluster_size >= 0).all()


@pytest.mark.parametrize("ema_decay", [0.0, 0.99, None])
def test_dead_codes_never_take_a_non_finite_row(ema_decay):
    k, d = 8, 3
    vq = VectorQuantizer(d, k, ema_decay=ema_decay, dead_code_threshold=5.0)
    before = _buffers(vq)
    # Only non-finite rows: every code is dead, and none is replaced (nothing finite to take).
    vq(torch.tensor([[NAN, 0.0, 0.0], [INF, 1.0, 1.0], [0.0, -INF, 2.0]]))
    for name, t in vq.state_dict().items():
        assert torch.equal(t, before[name]), name
    # One finite row among many bad ones: every dead code becomes that row.
    z = torch.full((50, d), NAN)
    z[1::2] = INF
    z[31] = torch.tensor([0.5, -1.5, 2.0])
    vq(z)
    assert torch.equal(vq.codebook.detach(), z[31].expand(k, d))
    assert torch.equal(vq.cluster_size, torch.full((k,), 5.0))


def test_eval_mode_non_finite_rows_change_nothing():
    vq = VectorQuantizer(4, 7, dead_code_threshold=1.0).eval()
    before = _buffers(vq)
    z = torch.randn(6, 4)
    z[1, 0], z[4, 3] = NAN, -INF
    out = vq(z)
    finite = torch.isfinite(z).all(1)
    assert torch.equal(out.quantized[finite], vq.codebook[out.indices[finite]])
    assert torch.isnan(out.quantized[~finite]).all() and out.indices[1] == 0
    assert torch.isinf(out.loss) or torch.isnan(out.loss)
    counts = torch.bincount(out.indices[finite], minlength=7).float() / finite.sum()
    p = counts[counts > 0]
    torch.testing.assert_close(out.perplexity, torch.exp(-(p * p.log()).sum()))
    for name, t in vq.state_dict().items():
        assert torch.equal(t, before[name]), name


@pytest.mark.parametrize("ema_decay", [0.99, None])
def test_kmeans_init_uses_finite_rows_and_waits_for_them(ema_decay):
    vq = VectorQuantizer(2, 3, kmeans_init=True, ema_decay=ema_decay)
    vq(torch.full((5, 2), NAN))
    assert not vq._initted and not bool(vq.initted)
    z = torch.randn(40, 2)
    z[::3, 1] = INF
    vq(z)
    assert vq._initted and _finite_state(vq)


def test_huge_finite_inputs_keep_the_state_finite():
    # Sums of float32 values near the limit overflow; such a code keeps its old statistics.
    vq = VectorQuantizer(2, 3, ema_decay=0.5, dead_code_threshold=0.5, kmeans_init=True)
    for _ in range(3):
        codebook = vq.codebook.clone()
        out = vq(torch.full((20, 2), 3e38) * torch.randn(20, 1).sign())
        assert _finite_state(vq)
    assert torch.equal(out.quantized, codebook[out.indices])  # exact even at this scale


def test_bad_inputs():
    vq = VectorQuantizer(4, 8)
    with pytest.raises(ValueError, match="dim = 4"):
        vq(torch.randn(3, 5))
    with pytest.raises(TypeError, match="float"):
        vq(torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="Tensor"):
        vq([[0.0] * 4])


def test_deepcopy_keeps_working():
    vq = VectorQuantizer(4, 8, kmeans_init=True)
    vq(torch.randn(20, 4))
    clone = copy.deepcopy(vq)
    assert clone._initted
    clone(torch.randn(3, 4))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda(dtype):
    vq = VectorQuantizer(16, 64, kmeans_init=True, dead_code_threshold=0.5).cuda()
    z = torch.randn(4, 257, 16, device="cuda", dtype=dtype, requires_grad=True)
    out = vq(z)
    assert out.quantized.is_cuda and out.quantized.dtype == dtype
    out.quantized.float().sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    vq.eval()
    compiled = torch.compile(vq, fullgraph=True)
    ref = vq(z.detach())
    got = compiled(z.detach())
    assert torch.equal(got.indices, ref.indices)
