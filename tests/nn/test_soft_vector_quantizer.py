"""SoftVectorQuantizer: the soft-VQ bottleneck of Wu & Flierl on latentops.soft_quantize."""

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
