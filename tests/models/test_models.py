import pytest
import torch

import latentops
from latentops.models import MODELS, build_model, default_scales


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 16, 16)])
def test_every_model_trains_each_group_on_its_own_loss(name, shape):
    torch.manual_seed(0)
    model = (
        build_model(name, shape, depth=3, latent=2, codebook_size=8)
        if name in ("vqvae", "softvq")
        else build_model(name, shape, depth=3, latent=2)
    )
    x = torch.rand(4, *shape) * 2 - 1
    z = model.encode(x)
    # softvq-paper's latent is one global vector and its precision head's output: (z, h)
    assert z.shape == ((4, 64 + 128) if name == "softvq-paper" else (4, 2, 4, 4))
    assert model.decode(z).shape == x.shape
    groups = model.param_groups()
    everything = [p for params in groups.values() for p in params]
    assert len(everything) == len(set(map(id, everything))) == len(list(model.parameters()))
    losses = model.losses(x)
    assert list(losses.per_group) == list(groups)
    for group, loss in losses.per_group.items():
        assert loss.dim() == 0 and torch.isfinite(loss)
        model.zero_grad(set_to_none=True)
        torch.autograd.backward(loss, inputs=groups[group], retain_graph=True)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in groups[group]), group
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.logs.values())


def test_acai_critic_regresses_the_mixing_coefficient():
    torch.manual_seed(0)
    model = build_model("acai", (1, 16, 16), depth=2, latent=2)
    x = torch.rand(6, 1, 16, 16)
    critic_params = model.param_groups()["critic"]
    losses = model.losses(x)
    # The critic's loss reaches no autoencoder parameter and the reverse is restricted by inputs=.
    grads = torch.autograd.grad(
        losses.per_group["critic"], list(model.encoder.parameters()), allow_unused=True, retain_graph=True
    )
    assert all(g is None or g.abs().sum() > 0 for g in grads)  # reached through x̂ (not detached)
    assert critic_params and all(p in set(model.critic.parameters()) for p in critic_params)


def test_default_scales_reach_a_4x4_latent():
    assert default_scales((1, 32, 32)) == 3
    assert default_scales((1, 8, 8)) == 1


@pytest.mark.parametrize(
    "kwargs, match", [({"depth": 0}, "depth"), ({"latent": 1.5}, "latent"), ({"scales": 6}, "scales")]
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("baseline", (1, 32, 32), **kwargs)
    with pytest.raises(ValueError, match="model"):
        build_model("gan", (1, 32, 32))


def test_paper_soft_vq_posterior_is_wu_and_flierls():
    # p_k ∝ exp(−½·s_k·‖z − c_k‖²)/√s_k with s_k = exp(−2·h_k), normalized after the factor.
    torch.manual_seed(0)
    model = build_model("softvq-paper", (1, 32, 32), depth=4, latent=2, code_dim=5, codebook_size=7).eval()
    code = torch.randn(3, 5 + 7)
    z, h = code[:, :5].double(), code[:, 5:].double()
    c = model.quantizer.codebook.detach().double()
    s = torch.exp(-2 * h)
    weights = torch.exp(-0.5 * s * torch.cdist(z, c).square()) / s.sqrt()
    z_hat = (weights / weights.sum(1, keepdim=True)) @ c
    with torch.no_grad():
        torch.testing.assert_close(model.decode(code), model._decode_quantized(z_hat.float()), atol=1e-5, rtol=1e-5)


def test_paper_soft_vq_precision_head_gradient():
    # The bottleneck as a function of the precision head's output h (s = exp(−2h), b = h), float64.
    gen = torch.Generator().manual_seed(1)
    z, c = torch.randn(4, 3, generator=gen, dtype=torch.float64), torch.randn(6, 3, generator=gen, dtype=torch.float64)
    h = torch.randn(4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: latentops.soft_quantize(z, c, torch.exp(-2 * h), h), (h,))


def test_paper_soft_vq_straight_through():
    # The decoder's input is ẑ in value; the reconstruction gradient goes to z unchanged and to
    # neither the codebook nor the precision head (they learn from the VQ losses only).
    torch.manual_seed(0)
    model = build_model("softvq-paper", (1, 32, 32), depth=4, latent=2, code_dim=5, codebook_size=7)
    code = torch.randn(3, 12, requires_grad=True)
    out = model._quantize(code)
    g = torch.randn(3, 5)
    out.quantized.backward(g)
    torch.testing.assert_close(code.grad[:, :5], g)
    assert not code.grad[:, 5:].any() and model.quantizer.codebook.grad is None
    with torch.no_grad():
        model.eval()
        assert torch.allclose(
            model._quantize(code).quantized,
            latentops.soft_quantize(code[:, :5], model.quantizer.codebook, torch.exp(-2 * code[:, 5:]), code[:, 5:]),
        )


def test_paper_soft_vq_probes_z_and_keeps_the_data_variance():
    torch.manual_seed(0)
    model = build_model("softvq-paper", (1, 32, 32), depth=4, latent=2, code_dim=5, codebook_size=7)
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    assert model.probe_latent(x).shape == (6, 5) and model.encode(x).shape == (6, 12)
    model.losses(x)
    assert model.data_variance.item() == pytest.approx(x.double().var().item(), rel=1e-6)
    model.losses(x * 2)  # the first batch's, kept (and saved with the model)
    assert model.data_variance.item() == pytest.approx(x.double().var().item(), rel=1e-6)
    assert "data_variance" in model.state_dict()


def test_acais_vae_minimizes_its_negative_elbo():
    torch.manual_seed(0)
    model = build_model("vae-acai", (1, 32, 32), depth=3, latent=2, scales=3, beta=0.5)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    maps = model.encoder(x)
    torch.testing.assert_close(model.probe_latent(x), maps)  # the classifier reads the map
    mean, log_var = model.to_mean(maps.flatten(1)), model.to_log_var(maps.flatten(1))
    torch.manual_seed(1)
    losses = model.losses(x)
    torch.manual_seed(1)
    z = mean + torch.randn_like(mean) * torch.exp(log_var / 2)
    p = torch.sigmoid(model.decoder(z.reshape(3, 2, 4, 4))).double()
    target = ((x + 1) / 2).double()
    # Bernoulli negative log-likelihood and KL, each summed per image, averaged over the batch.
    nll = -(target * p.log() + (1 - target) * (1 - p).log()).sum() / 3
    kl = 0.5 * (mean.square() + log_var.exp() - log_var - 1).double().sum() / 3
    assert losses.per_group["autoencoder"].item() == pytest.approx((nll + 0.5 * kl).item(), rel=1e-4)
    assert losses.logs["mse"].item() == pytest.approx(((2 * p - 1) - x.double()).square().mean().item(), rel=1e-4)
    # The code is a posterior sample, in evaluation too; decoded images lie in (−1, 1).
    model.eval()
    assert not torch.equal(model.encode(x), model.encode(x))
    assert model.decode(model.encode(x)).abs().max() < 1


def test_acais_vq_vae_quantizes_ten_vectors_of_the_map_size():
    torch.manual_seed(0)
    model = build_model("vqvae-acai", (1, 32, 32), depth=3, latent=16, scales=3, codebook_size=64)
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    maps = model.encode(x)
    assert maps.shape == (5, 16, 4, 4)  # ACAI's 4×4×16 on lines
    dense, out = model._bottleneck(maps)
    assert out.indices.shape == (5, 10) and model.quantizer.codebook.shape == (64, 256)
    assert dense.shape == maps.shape and model.probe_latent(x).shape == maps.shape
    # EMA codebook: the loss is beta times the commitment term alone (eval: no EMA update between).
    model.eval()
    _, out = model._bottleneck(maps)
    vectors = model.to_latents(maps.flatten(1)).reshape(5, 10, 256)
    commitment = (vectors - model.quantizer.codebook[out.indices]).square().mean()
    assert out.loss.item() == pytest.approx(10.0 * commitment.item(), rel=1e-4)
    assert build_model("vqvae-acai", (1, 32, 32)).quantizer.codebook.shape == (16384, 256)
