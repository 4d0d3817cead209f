import pytest
import torch

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
    assert z.shape == (4, 2, 4, 4)
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
