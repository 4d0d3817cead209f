import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentops.robustness import fgsm, gaussian_noise, kbit_weights, pgd_linf, snr_db, with_test_time_dropout


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 7, 16), nn.ReLU(), nn.Linear(16, 4))


def _convnet():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 5 * 7, 4),
    )


def _images(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _labels(n, seed=0):
    return torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))


# ---- noise


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (4, 1, 2, 3), (3, 11), (2, 1)])
@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 33.0, 60.0])
def test_noise_hits_the_requested_snr_per_sample(shape, snr):
    x = _images(*shape)
    noisy = gaussian_noise(x, snr, seed=3)
    assert noisy.shape == x.shape and noisy.dtype == x.dtype
    achieved = snr_db(x, noisy)
    assert achieved.shape == (shape[0],)
    assert (achieved - snr).abs().max() < 0.1


def test_noise_float64_and_half():
    x = _images(2, 3, 4, 4).double()
    assert (snr_db(x, gaussian_noise(x, 20.0, seed=0)) - 20.0).abs().max() < 1e-9
    h = _images(2, 3, 8, 8).half()
    noisy = gaussian_noise(h, 20.0, seed=0)
    assert noisy.dtype == torch.float16
    assert (snr_db(h, noisy) - 20.0).abs().max() < 0.1


def test_noise_with_sigma_has_that_std():
    x = torch.full((8, 3, 32, 32), 0.5)
    noise = gaussian_noise(x, sigma=0.1, seed=0) - x
    assert abs(noise.mean().item()) < 2e-3
    assert abs(noise.std().item() - 0.1) < 2e-3
    assert torch.equal(gaussian_noise(x, sigma=0.0, seed=0), x)


def test_noise_clamp_and_zero_image():
    x = _images(3, 2, 6, 6)
    x[1] = 0
    clipped = gaussian_noise(x, 0.0, seed=1, clamp=True)
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert torch.equal(gaussian_noise(x, 10.0, seed=1)[1], x[1])  # an all-zero sample gets no noise


def test_noise_is_reproducible():
    x = _images(2, 3, 5, 7)
    assert torch.equal(gaussian_noise(x, 10.0, seed=5), gaussian_noise(x, 10.0, seed=5))
    a = gaussian_noise(x, 10.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, gaussian_noise(x, 10.0, seed=5))
    assert not torch.equal(a, gaussian_noise(x, 10.0, seed=6))
    assert torch.equal(gaussian_noise(x, sigma=0.1, seed=2), gaussian_noise(x, sigma=0.1, seed=2))


def test_noise_bad_arguments():
    x = _images(2, 3)
    with pytest.raises(ValueError, match="exactly one of snr_db and sigma"):
        gaussian_noise(x)
    with pytest.raises(ValueError, match="exactly one of snr_db and sigma"):
        gaussian_noise(x, 10.0, sigma=0.1)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_noise(x, sigma=-0.1)
    with pytest.raises(TypeError, match="snr_db"):
        gaussian_noise(x, "10")
    with pytest.raises(ValueError, match="snr_db"):
        gaussian_noise(x, float("inf"))
    with pytest.raises(TypeError, match="x"):
        gaussian_noise([0.5], 10.0)
    with pytest.raises(TypeError, match="x"):
        gaussian_noise(torch.zeros(2, 3, dtype=torch.long), 10.0)
    with pytest.raises(ValueError, match="x"):
        gaussian_noise(x + 2, 10.0)
    with pytest.raises(ValueError, match="x"):
        gaussian_noise(torch.zeros(0, 3), 10.0)
    with pytest.raises(ValueError, match="seed"):
        gaussian_noise(x, 10.0, seed=-1)
    with pytest.raises(ValueError, match="generator or seed"):
        gaussian_noise(x, 10.0, seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="generator"):
        gaussian_noise(x, 10.0, generator=3)
    with pytest.raises(TypeError, match="clamp"):
        gaussian_noise(x, 10.0, clamp="yes")
    with pytest.raises(ValueError, match="perturbed"):
        snr_db(x, x[:1])


# ---- attacks


def _no_grads(model):
    return all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("snr", [10.0, 20.0, 33.0, 45.0])
def test_fgsm_hits_the_requested_snr(n, snr):
    model = _convnet()
    x, y = _images(n, 3, 5, 7), _labels(n)
    adv = fgsm(model, x, y, snr_db=snr)
    assert (snr_db(x, adv) - snr).abs().max() < 0.1
    assert _no_grads(model)


def test_fgsm_equals_its_definition():
    model = _convnet()
    model.train()
    x, y = _images(3, 3, 5, 7), _labels(3)
    adv = fgsm(model, x, y, snr_db=25.0)
    assert model.training and all(m.training for m in model.modules())  # mode restored
    assert _no_grads(model)
    # by hand, in eval mode
    model.eval()
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y).backward()
    sign = xr.grad.sign()
    for i in range(3):
        delta = (x[i].square().sum() / 10**2.5 / sign[i].abs().sum()).sqrt()
        torch.testing.assert_close(adv[i], x[i] + delta * sign[i])
    clamped = fgsm(model, x, y, snr_db=5.0, clamp=True)
    assert clamped.min() >= 0 and clamped.max() <= 1


def test_fgsm_mixed_modes_restored_and_custom_loss():
    model = _convnet()
    model.eval()
    model[3].train()
    x, y = _images(2, 3, 5, 7), _labels(2)
    adv = fgsm(model, x, y, snr_db=20.0, loss=lambda out, t: F.cross_entropy(out, t, reduction="sum"))
    assert not model.training and model[3].training
    torch.testing.assert_close(adv, fgsm(model, x, y, snr_db=20.0))


def test_fgsm_bad_arguments():
    model, x, y = _mlp(), _images(2, 3, 5, 7), _labels(2)
    with pytest.raises(TypeError, match="model"):
        fgsm(lambda t: t, x, y)
    with pytest.raises(TypeError, match="snr_db"):
        fgsm(model, x, y, snr_db=None)
    with pytest.raises(ValueError, match="y"):
        fgsm(model, x, y[:1])
    with pytest.raises(TypeError, match="y"):
        fgsm(model, x, [0, 1])
    with pytest.raises(TypeError, match="loss"):
        fgsm(model, x, y, loss="ce")
    with pytest.raises(ValueError, match="x"):
        fgsm(model, -x, y)


def test_pgd_stays_in_its_ball_and_raises_the_loss():
    model = _mlp()
    x, y = _images(8, 3, 5, 7), _labels(8)
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.01])  # at the edges of [0, 1]
    eps = 0.03
    adv = pgd_linf(model, x, y, eps=eps, step=0.01, iterations=10)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y) + 0.01
    assert _no_grads(model) and model.training
    started = pgd_linf(model, x, y, eps=eps, step=0.01, iterations=3, random_start=True, seed=4)
    assert (started - x).abs().max() <= eps + 1e-6 and started.min() >= 0 and started.max() <= 1
    again = pgd_linf(model, x, y, eps=eps, step=0.01, iterations=3, random_start=True, seed=4)
    assert torch.equal(started, again)
    other = pgd_linf(model, x, y, eps=eps, step=0.01, iterations=3, random_start=True, seed=5)
    assert not torch.equal(started, other)
    assert torch.equal(pgd_linf(model, x, y, eps=0.0, step=0.01, iterations=2), x)


def test_pgd_bad_arguments():
    model, x, y = _mlp(), _images(2, 3, 5, 7), _labels(2)
    with pytest.raises(ValueError, match="eps"):
        pgd_linf(model, x, y, eps=-0.1, step=0.01, iterations=1)
    with pytest.raises(ValueError, match="step"):
        pgd_linf(model, x, y, eps=0.1, step=0.0, iterations=1)
    with pytest.raises(ValueError, match="iterations"):
        pgd_linf(model, x, y, eps=0.1, step=0.01, iterations=0)
    with pytest.raises(TypeError, match="iterations"):
        pgd_linf(model, x, y, eps=0.1, step=0.01, iterations=2.5)
    with pytest.raises(TypeError, match="random_start"):
        pgd_linf(model, x, y, eps=0.1, step=0.01, iterations=1, random_start=1)


# ---- model perturbations


def test_kbit_weights():
    model = _convnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for bits in (1, 2, 5):
        q = kbit_weights(model, bits)
        for (name, p), (_, orig) in zip(q.named_parameters(), model.named_parameters()):
            if p.dim() > 1:
                assert p.unique().numel() <= 2**bits
                assert p.min() == orig.min() and p.max() == orig.max()
                spacing = (orig.max() - orig.min()) / (2**bits - 1)
                assert (p - orig).abs().max() <= spacing / 2 + 1e-6
            else:
                assert torch.equal(p, orig), name  # biases and BatchNorm's scale and shift untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
    with pytest.raises(ValueError, match="bits"):
        kbit_weights(model, 0)
    with pytest.raises(TypeError, match="bits"):
        kbit_weights(model, 2.0)
    with pytest.raises(TypeError, match="model"):
        kbit_weights("model")


def test_dropout_p0_is_clean_and_hooks_are_removed():
    model = _mlp().eval()
    x = _images(4, 3, 5, 7)
    with torch.no_grad():
        clean = model(x)
        with with_test_time_dropout(model, 0.0, [model[2]]):
            assert torch.equal(model(x), clean)
        with with_test_time_dropout(model, 0.5, [model[1], "2"], seed=0) as m:
            assert m is model
            one, two = model(x), model(x)
            assert not torch.equal(one, clean) and not torch.equal(one, two)  # fresh draws
        assert all(not mod._forward_hooks for mod in model.modules())
        assert torch.equal(model(x), clean)
        with with_test_time_dropout(model, 0.5, [model[1], model[2]], seed=0):
            assert torch.equal(model(x), one)  # same seed, same draws
        with pytest.raises(RuntimeError, match="boom"), with_test_time_dropout(model, 0.5, [model[1]]):
            raise RuntimeError("boom")
        assert all(not mod._forward_hooks for mod in model.modules())
        with with_test_time_dropout(model, 1.0, [model[2]]):
            assert torch.equal(model(x), model[3].bias.expand(4, -1))
    assert not model.training


def test_dropout_generator_and_bad_arguments():
    model, x = _mlp(), _images(2, 3, 5, 7)
    with torch.no_grad():
        with with_test_time_dropout(model, 0.3, [model[1]], generator=torch.Generator().manual_seed(1)):
            a = model(x)
        with with_test_time_dropout(model, 0.3, [model[1]], seed=1):
            assert torch.equal(model(x), a)
    with pytest.raises(ValueError, match="p"):
        with_test_time_dropout(model, 1.5, [model[1]])
    with pytest.raises(TypeError, match="p"):
        with_test_time_dropout(model, "0.1", [model[1]])
    with pytest.raises(ValueError, match="modules"):
        with_test_time_dropout(model, 0.1, [nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="modules"):
        with_test_time_dropout(model, 0.1, ["nope"])
    with pytest.raises(ValueError, match="modules"):
        with_test_time_dropout(model, 0.1, [])
    with pytest.raises(TypeError, match="modules"):
        with_test_time_dropout(model, 0.1, model[1])
    with pytest.raises(ValueError, match="seed"):
        with_test_time_dropout(model, 0.1, [model[1]], seed=-2)


def test_dropout_keeps_a_namedtuple_output_a_namedtuple():
    from typing import NamedTuple

    class Pair(NamedTuple):
        a: torch.Tensor
        b: torch.Tensor

    class Split(torch.nn.Module):
        def forward(self, x):
            return Pair(x, 2 * x)

    model = torch.nn.Sequential(Split())
    with with_test_time_dropout(model, 0.5, [model[0]], seed=0):
        out = model(torch.ones(4, 8))
    assert isinstance(out, Pair) and set(out.a.unique().tolist()) <= {0.0, 2.0}
