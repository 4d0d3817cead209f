"""SoftVectorQuantizer: the soft-VQ bottleneck of Wu & Flierl on latentops.soft_quantize."""

import numpy as np
import pytest
import torch

import latentops
from latentops.nn import SoftVectorQuantizer


def test_soft_vector_quantizer(gen):
    torch.manual_seed(0)
    svq = SoftVectorQuantizer(6, 17, noise_std=0.1, precision=2.0, learn_precision=True, beta=0.3)
    z = torch.randn(4, 9, 6, generator=gen, requires_grad=True)
    quantized, loss, perplexity = svq(z)
    assert quantized.shape == z.shape and loss.shape == () and 1.0 <= perplexity.item() <= 17.0
    (quantized.sum() + loss).backward()
    assert z.grad is not None and svq.codebook.grad is not None and svq.log_precision.grad is not None
    # Eval: no noise, deterministic; hard=True gives codewords.
    svq.eval()
    a, b = svq(z).quantized, svq(z).quantized
    torch.testing.assert_close(a, b)
    hard = svq(z, hard=True).quantized
    indices = latentops.nearest_centroid(z.detach(), svq.codebook.detach())[0]
    torch.testing.assert_close(hard, svq.codebook[indices])
    # Loss: ‖ẑ − sg(z)‖² + β‖sg(ẑ) − z‖² (means), with ẑ the posterior mean.
    z_hat = latentops.soft_quantize(z, svq.codebook, svq.log_precision.exp())
    expected = (1 + 0.3) * (z_hat - z).square().mean()
    torch.testing.assert_close(svq(z).loss, expected)


def test_soft_vector_quantizer_straight_through_and_precision_head(gen):
    svq = SoftVectorQuantizer(5, 8, straight_through=True)
    z = torch.randn(12, 5, generator=gen, requires_grad=True)
    head = (torch.rand(12, 1, generator=gen) + 0.5).requires_grad_(True)
    quantized, loss, _ = svq(z, precision=head)
    quantized.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # straight-through: identity to z
    loss.backward()
    assert head.grad is not None and head.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"dim = 5"):
        svq(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"noise_std must be a finite float32 number ≥ 0"):
        SoftVectorQuantizer(5, 8, noise_std=-1.0)


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(dim=0), ValueError, "dim"),
        (dict(dim=True), TypeError, "dim"),
        (dict(codebook_size=-1), ValueError, "codebook_size"),
        (dict(codebook_size=3.0), TypeError, "codebook_size"),
        (dict(noise_std=INF), ValueError, "noise_std"),
        (dict(noise_std=NAN), ValueError, "noise_std"),
        (dict(precision="x"), TypeError, "precision"),  # issue 10: an unnamed TypeError from `>`
        (dict(precision=0.0), ValueError, "precision"),
        (dict(precision=-1.0), ValueError, "precision"),
        (dict(precision=INF), ValueError, "precision"),
        (dict(precision=NAN), ValueError, "precision"),
        (dict(precision=1e39), ValueError, "precision"),  # exp(log s) overflows float32
        (dict(precision=1e-50), ValueError, "precision"),  # and underflows to 0
        (dict(precision=torch.tensor(2.0)), TypeError, "precision"),  # a tensor goes to forward
        (dict(beta=-0.5), ValueError, "beta"),
        (dict(beta=INF), ValueError, "beta"),
        (dict(beta="0.25"), TypeError, "beta"),
        (dict(learn_precision="yes"), TypeError, "learn_precision"),
        (dict(straight_through=1), TypeError, "straight_through"),
        (dict(accuracy="tf32"), ValueError, "accuracy"),
        (dict(accuracy=None), ValueError, "accuracy"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, name):
    args = dict(dim=4, codebook_size=8)
    args.update(kwargs)
    with pytest.raises(error, match=name):
        SoftVectorQuantizer(args.pop("dim"), args.pop("codebook_size"), **args)


def test_integer_scalars_of_numpy_and_torch_are_ints():
    svq = SoftVectorQuantizer(np.int64(3), torch.tensor(5), precision=np.float32(2.0), learn_precision=np.bool_(True))
    assert (svq.dim, svq.codebook_size) == (3, 5) and svq.codebook.shape == (5, 3)
    assert isinstance(svq.log_precision, torch.nn.Parameter)


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("hard", [False, True])
def test_non_finite_rows_give_nan_rows_and_a_nan_loss(bad, hard, gen):
    svq = SoftVectorQuantizer(4, 6, precision=0.5).eval()
    z = torch.randn(2, 5, 4, generator=gen)
    z[0, 3, 2] = bad
    z[1, 0] = bad
    finite = torch.isfinite(z).all(-1)
    out = svq(z, hard=hard)
    assert torch.isnan(out.quantized[~finite]).all()  # no codeword stands in for a bad row
    assert torch.isnan(out.loss)
    clean = svq(z[finite], hard=hard)
    torch.testing.assert_close(out.quantized[finite], clean.quantized)  # other rows unaffected
    torch.testing.assert_close(out.perplexity, clean.perplexity)  # bad rows left out of it
    assert torch.isfinite(out.perplexity)


def test_a_non_finite_precision_row_is_left_out_of_the_perplexity(gen):
    svq = SoftVectorQuantizer(3, 4)
    z = torch.randn(6, 3, generator=gen)
    head = torch.rand(6, 1, generator=gen) + 0.5
    head[2] = NAN
    out = svq(z, precision=head)
    assert torch.isnan(out.quantized[2]).all() and torch.isfinite(out.quantized[[0, 1, 3, 4, 5]]).all()
    keep = [0, 1, 3, 4, 5]
    torch.testing.assert_close(out.perplexity, svq(z[keep], precision=head[keep]).perplexity)


def test_empty_batch(gen):
    svq = SoftVectorQuantizer(3, 4, noise_std=0.1)
    z = torch.randn(0, 2, 3, generator=gen, requires_grad=True)
    out = svq(z)
    assert out.quantized.shape == z.shape and out.perplexity.item() == 1.0
    assert not torch.isfinite(out.loss) or out.loss.item() == 0.0  # a mean over nothing


@pytest.mark.parametrize("shape", [(1, 3), (1, 1, 3), (0, 3), (2, 1, 3)])
def test_per_sample_precision_of_any_batch(shape, gen):
    # A single vector's (1, 1, 1) precision was passed whole to the perplexity's (1, D) rows: refused.
    svq = SoftVectorQuantizer(3, 4)
    z = torch.randn(shape, generator=gen)
    head = torch.rand(*shape[:-1], 1, generator=gen) + 0.5
    out = svq(z, precision=head)
    flat = z.reshape(-1, 3)
    expected = latentops.soft_quantize(flat, svq.codebook, head.reshape(-1, 1)).reshape(shape)
    torch.testing.assert_close(out.quantized, expected)
    assert torch.isfinite(out.perplexity)
