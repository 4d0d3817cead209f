"""SharedWeights and the quantizers (cws, pws, uq, ecsq): the invariants every method keeps, each
method's own defining property, the limits (k = 1, large k, all pruned, all kept) and the errors."""

from __future__ import annotations

import itertools
import math

import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import fuzz_examples
from latentops.codecs.pruning import prune_magnitude
from latentops.codecs.quantizers import METHODS, quantize
from latentops.codecs.shared_weights import SharedWeights

SHAPES = [(1,), (3,), (17,), (130, 67)]
# A few k-means assignment steps keep the tests fast where k-means' quality is not what they check.
FAST = {"cws": {"iters": 10}}


def _weights(shape, distribution: str, gen) -> torch.Tensor:
    if distribution == "laplace":
        uniform = torch.rand(shape, generator=gen, dtype=torch.float64) - 0.5
        return (-uniform.sign() * torch.log1p(-2 * uniform.abs())).float() * 0.05
    return torch.randn(shape, generator=gen) * 0.05


def _check_invariants(shared: SharedWeights, weight: torch.Tensor, mask: torch.Tensor, k: int) -> None:
    """What every method promises: float32 codebook, sorted, distinct, at most k levels; int32 codes
    in range; pruned entries exactly +0.0; kept entries inside [min, max] of the kept weights."""
    codebook, codes, dense = shared.codebook, shared.codes, shared.dense()
    assert codebook.dtype == torch.float32 and codes.dtype == torch.int32 and dense.dtype == torch.float32
    assert 1 <= codebook.numel() <= k
    assert bool((codebook[1:] > codebook[:-1]).all())
    assert shared.shape == weight.shape and torch.equal(shared.mask, mask)
    assert codes.numel() == 0 or (int(codes.min()) >= 0 and int(codes.max()) < codebook.numel())
    pruned = dense[~mask]
    assert bool((pruned == 0).all()) and not bool(pruned.signbit().any())
    kept = weight.float()[mask]
    if kept.numel():
        assert bool((dense[mask] >= kept.min()).all()) and bool((dense[mask] <= kept.max()).all())
    else:
        assert codebook.tolist() == [0.0]


# --- SharedWeights ---------------------------------------------------------------------------


def test_dense_is_codebook_at_codes_where_kept(gen):
    codebook = torch.tensor([-1.5, -0.0, 0.25, 3.0])
    codes = torch.randint(0, 4, (17, 3), generator=gen)
    mask = torch.rand(17, 3, generator=gen) > 0.4
    shared = SharedWeights(codes, codebook, mask)
    assert shared.codes.dtype == torch.int32 and shared.k == 4 and shared.shape == (17, 3)
    expected = torch.where(mask, codebook[codes], torch.zeros(()))
    assert torch.equal(shared.dense(), expected)
    # Pruned entries are +0.0 even where the code points at the −0.0 codeword.
    assert not bool(shared.dense()[~mask].signbit().any())
    assert torch.equal(shared.to("cpu").dense(), shared.dense())


def test_entropy():
    codes = torch.arange(16).reshape(4, 4) % 4
    mask = torch.ones(4, 4, dtype=torch.bool)
    assert SharedWeights(codes, torch.arange(4.0), mask).entropy() == pytest.approx(2.0)
    mask[:, 1:] = False  # the kept entries all use code 0
    assert SharedWeights(codes, torch.arange(4.0), mask).entropy() == 0.0
    assert SharedWeights(codes, torch.arange(4.0), torch.zeros_like(mask)).entropy() == 0.0


@pytest.mark.parametrize(
    ("codes", "codebook", "mask", "error", "match"),
    [
        ([0, 1], torch.zeros(2), torch.ones(2, dtype=torch.bool), TypeError, "codes must be a torch.Tensor"),
        (torch.zeros(2), torch.zeros(2), torch.ones(2, dtype=torch.bool), TypeError, "codes must be an integer"),
        (torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool),
         TypeError, "codebook must be a float"),
        (torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.ones(2), TypeError, "mask must be a bool"),
        (torch.zeros(2, dtype=torch.long), torch.zeros(1, 2), torch.ones(2, dtype=torch.bool), ValueError,
         "codebook must be 1-D"),
        (torch.zeros(2, dtype=torch.long), torch.zeros(0), torch.ones(2, dtype=torch.bool), ValueError,
         "codebook must be 1-D"),
        (torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.ones(3, dtype=torch.bool), ValueError,
         "mask must have codes' shape"),
        (torch.tensor([0, 2]), torch.zeros(2), torch.ones(2, dtype=torch.bool), ValueError, r"codes must lie in \[0"),
        (torch.tensor([-1, 0]), torch.zeros(2), torch.ones(2, dtype=torch.bool), ValueError, r"codes must lie in \[0"),
        (torch.zeros(2, dtype=torch.long), torch.tensor([0.0, math.inf]), torch.ones(2, dtype=torch.bool),
         ValueError, "codebook must be finite"),
    ],
)  # fmt: skip
def test_shared_weights_bad_fields(codes, codebook, mask, error, match):
    with pytest.raises(error, match=match):
        SharedWeights(codes, codebook, mask)


# --- every method ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("distribution", ["normal", "laplace"])
@pytest.mark.parametrize("k", [1, 3, 16, 256])
def test_invariants_with_mask(method, shape, distribution, k, gen):
    weight = _weights(shape, distribution, gen)
    mask = prune_magnitude(weight, 0.5)
    shared = quantize(weight, k, method=method, mask=mask, seed=3, **FAST.get(method, {}))
    _check_invariants(shared, weight, mask, k)
    again = quantize(weight, k, method=method, mask=mask, seed=3, **FAST.get(method, {}))
    assert torch.equal(again.codes, shared.codes) and torch.equal(again.codebook, shared.codebook)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [1, 256, 1024])
def test_all_kept_and_large_k(method, k, gen):
    weight = _weights((130, 67), "laplace", gen)
    shared = quantize(weight, k, method=method, **FAST.get(method, {}))
    _check_invariants(shared, weight, torch.ones_like(weight, dtype=torch.bool), k)
    if k == 1:
        assert shared.k == 1


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(0,), (17,), (130, 67)])
def test_all_pruned(method, shape, gen):
    weight = torch.randn(shape, generator=gen)
    mask = torch.zeros(shape, dtype=torch.bool)
    shared = quantize(weight, 8, method=method, mask=mask)
    assert shared.codebook.tolist() == [0.0] and bool((shared.codes == 0).all())
    assert torch.equal(shared.dense(), torch.zeros(shape))


@pytest.mark.parametrize("method", METHODS)
def test_k_above_distinct_values(method):
    weight = torch.tensor([0.5, -1.0, 0.5, 2.0, -1.0, 0.5, 0.0])
    options = {"lam": 0.0} if method == "ecsq" else {}  # lam > 0 would merge the rare levels
    shared = quantize(weight, 65536, method=method, **options)
    _check_invariants(shared, weight, torch.ones(7, dtype=torch.bool), 65536)
    if method in ("cws", "ecsq"):
        assert shared.codebook.tolist() == [-1.0, 0.0, 0.5, 2.0]
        assert torch.equal(shared.dense(), weight)


@pytest.mark.parametrize("method", METHODS)
def test_other_dtypes_are_quantized_as_float32(method, gen):
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        weight = _weights((17, 3), "normal", gen).to(dtype)
        _check_invariants(
            quantize(weight, 5, method=method, **FAST.get(method, {})), weight, torch.ones(17, 3, dtype=torch.bool), 5
        )


def test_pruned_non_finite_weights_are_ignored():
    weight = torch.tensor([math.nan, 1.0, math.inf, 2.0])
    mask = torch.tensor([False, True, False, True])
    assert quantize(weight, 2, mask=mask).dense().tolist() == [0.0, 1.0, 0.0, 2.0]


# --- each method's defining property ---------------------------------------------------------


def test_cws_is_a_kmeans_fixed_point(gen):
    weight = _weights((30, 40), "laplace", gen)
    shared = quantize(weight, 8, method="cws")
    kept = weight.flatten().double()
    codes = shared.codes.flatten().long()
    for level, centroid in enumerate(shared.codebook.double()):
        cell = kept[codes == level]
        assert cell.numel() > 0
        assert float(centroid) == pytest.approx(float(cell.mean()), abs=1e-5 * float(kept.abs().max()))
    # Codes are the nearest level (ties aside).
    distances = (kept[:, None] - shared.codebook.double()[None, :]).abs()
    assert torch.allclose(distances.gather(1, codes[:, None])[:, 0], distances.min(1).values, rtol=0, atol=1e-12)


def test_cws_linear_init_keeps_outliers():
    # Deep Compression's point for linear initialization: the few large weights get their own level.
    weight = torch.cat([torch.linspace(-0.01, 0.01, 997), torch.tensor([1.0, 1.01, -1.0])])
    shared = quantize(weight, 4, method="cws", iters=20)
    assert shared.codebook.min() < -0.9 and shared.codebook.max() > 0.9


def test_pws_rounds_to_interval_ends(gen):
    weight = _weights((130, 67), "normal", gen)
    mask = prune_magnitude(weight, 0.3)
    shared = quantize(weight, 9, method="pws", mask=mask)
    kept = weight[mask]
    # The levels are kept weights (quantile ends), each weight went to the level just below or above it.
    assert bool(torch.isin(shared.codebook, kept).all())
    levels = shared.codebook
    above = torch.searchsorted(levels, kept).clamp(max=levels.numel() - 1)
    dense = shared.dense()[mask]
    assert bool(((dense == levels[above]) | (dense == levels[(above - 1).clamp(min=0)])).all())


def _pws_interval(weight: torch.Tensor, levels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each weight's interval ends v ≤ w ≤ V among the levels and its chance (w − v)/(V − v) of V."""
    w, levels = weight.double(), levels.double()
    above = torch.searchsorted(levels, w, right=True).clamp(1, levels.numel() - 1)
    below_value, above_value = levels[above - 1], levels[above]
    return below_value, above_value, (w - below_value) / (above_value - below_value)


def test_pws_is_unbiased(gen):
    # Σ(dense − w) over n weights has mean 0 and variance Σ p(1 − p)(V − v)² under independent
    # rounding: a z-test at 5σ (false alarm 6e-7) per seed.
    weight = _weights((130, 67), "laplace", gen).flatten()
    for seed in (0, 1):
        shared = quantize(weight, 5, method="pws", seed=seed)
        below_value, above_value, p = _pws_interval(weight, shared.codebook)
        variance = (p * (1 - p) * (above_value - below_value) ** 2).sum()
        z = float((shared.dense().double() - weight.double()).sum() / variance.sqrt())
        assert abs(z) < 5, z
    # Per weight over 200 seeds: the number of roundings up is Binomial(200, p) (an exact test: p
    # near 0 or 1 is common, where a normal approximation fails); false alarm < 17 · 1e-6.
    small = _weights((17,), "normal", gen)
    draws = torch.stack([quantize(small, 3, method="pws", seed=s).codes for s in range(200)])
    levels = quantize(small, 3, method="pws").codebook  # the ends do not depend on the seed
    below_value, _, p = _pws_interval(small, levels)
    ups = (levels.double()[draws.long()] > below_value).sum(0)
    for count, chance in zip(ups.tolist(), p.tolist()):
        assert scipy.stats.binomtest(count, 200, chance).pvalue > 1e-6, (count, chance)


def test_pws_seed_changes_the_draws(gen):
    weight = _weights((130, 67), "normal", gen)
    assert not torch.equal(
        quantize(weight, 4, method="pws", seed=0).codes, quantize(weight, 4, method="pws", seed=1).codes
    )


def test_pws_k1_is_the_mean():
    weight = torch.tensor([1.0, 2.0, 6.0])
    assert quantize(weight, 1, method="pws").codebook.tolist() == [3.0]


@pytest.mark.parametrize("k", [2, 5, 16, 1024])
def test_uq_levels_are_uniform_over_the_range(k, gen):
    weight = _weights((130, 67), "laplace", gen)
    mask = prune_magnitude(weight, 0.5)
    info = {}
    shared = quantize(weight, k, method="uq", mask=mask, info=info)
    kept = weight[mask]
    levels = shared.codebook.double()
    assert levels.numel() == k
    assert levels[0] == kept.min() and levels[-1] == kept.max()
    step = (kept.max().double() - kept.min().double()) / (k - 1)
    assert info["step"] == pytest.approx(float(step)) and info["offset"] == -float(kept.min())
    assert torch.allclose(levels.diff(), step.expand(k - 1), rtol=1e-5, atol=1e-7)
    # δ·round((w + b)/δ) − b, up to float32 rounding of the levels.
    b, w = info["offset"], kept.double()
    expected = step * torch.round((w + b) / step) - b
    assert torch.allclose(shared.dense()[mask].double(), expected, rtol=0, atol=1e-6)


def test_uq_k1_and_constant_weights():
    assert quantize(torch.tensor([1.0, 3.0]), 1, method="uq").codebook.tolist() == [2.0]
    assert quantize(torch.full((5,), 0.25), 16, method="uq").codebook.tolist() == [0.25]


@pytest.mark.parametrize("lam", [0.0, 0.01, 0.5])
def test_ecsq_cost_never_rises_and_ends_at_a_fixed_point(lam, gen):
    weight = _weights((130, 67), "laplace", gen)
    mask = prune_magnitude(weight, 0.5)
    info = {}
    shared = quantize(weight, 32, method="ecsq", mask=mask, lam=lam, info=info)
    history = info["cost_history"]
    assert len(history) == info["rounds"] + 1 >= 2
    assert all(later <= earlier for earlier, later in itertools.pairwise(history))
    # The returned state has the last recorded cost, and no weight would rather move to another level.
    w = weight[mask].double()
    codes = shared.codes[mask].long()
    counts = torch.bincount(codes, minlength=shared.k).double()
    assert bool((counts > 0).all())
    penalty = -lam * torch.log(counts / w.numel())
    cost = (w[:, None] - shared.codebook.double()[None, :]).abs() + penalty[None, :]
    assert float(cost.gather(1, codes[:, None]).sum()) / w.numel() == pytest.approx(history[-1], rel=1e-12)
    if info["rounds"] < 100:  # converged, not stopped by max_iter
        assert torch.allclose(cost.gather(1, codes[:, None])[:, 0], cost.min(1).values, rtol=0, atol=1e-12)
    # Each level is a median of its cell.
    for level, value in enumerate(shared.codebook.double()):
        cell = w[codes == level]
        assert int((cell < value).sum()) <= cell.numel() / 2 and int((cell > value).sum()) <= cell.numel() / 2


def test_ecsq_larger_lambda_fewer_levels(gen):
    weight = _weights((130, 67), "normal", gen) * 20  # unit scale: lam trades distortion against nats
    counts = [quantize(weight, 64, method="ecsq", lam=lam).k for lam in (0.0, 0.05, 2.0)]
    assert counts[0] >= counts[1] >= counts[2] and counts[2] < counts[0]


def test_ecsq_max_iter_bounds_the_rounds(gen):
    info = {}
    quantize(_weights((130, 67), "normal", gen), 64, method="ecsq", lam=0.0, max_iter=2, info=info)
    assert info["rounds"] <= 2


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"weight": [1.0, 2.0]}, TypeError, "weight must be a torch.Tensor"),
        ({"weight": torch.ones(3, dtype=torch.long)}, TypeError, "weight must be float"),
        ({"mask": torch.ones(3)}, TypeError, "mask must be a bool"),
        ({"mask": torch.ones(4, dtype=torch.bool)}, ValueError, "mask must have the weight's shape"),
        ({"k": 0}, ValueError, "k must be an integer ≥ 1, got 0"),
        ({"k": 2.5}, TypeError, "k must be"),
        ({"k": True}, TypeError, "k must be"),
        ({"k": 65537}, ValueError, "k must be an integer ≤ 65536, got 65537"),
        ({"method": "kmeans"}, ValueError, "method must be one of"),
        ({"method": "ecsq", "lam": -0.5}, ValueError, "lam must be"),
        ({"method": "ecsq", "lam": "big"}, TypeError, "lam must be"),
        ({"method": "ecsq", "max_iter": 0}, ValueError, "max_iter must be"),
        ({"method": "cws", "iters": 0}, ValueError, "iters must be"),
        ({"method": "cws", "lam": 0.5}, TypeError, "method 'cws' takes iters; got the option"),
        ({"method": "uq", "iters": 5}, TypeError, "method 'uq' takes no options"),
        ({"seed": -(2**64)}, ValueError, "seed must be"),
        ({"seed": 1.5}, TypeError, "seed must be"),
        ({"info": []}, TypeError, "info must be None or a dict"),
        ({"weight": torch.tensor([1.0, math.nan, 2.0])}, ValueError, "weight must be finite"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"weight": torch.tensor([0.1, -0.2, 0.3]), "k": 2, **kwargs}
    with pytest.raises(error, match=match):
        quantize(arguments.pop("weight"), arguments.pop("k"), **arguments)


# --- fuzz ------------------------------------------------------------------------------------


@settings(max_examples=fuzz_examples(60))
@given(
    shape=st.lists(st.integers(0, 9), min_size=1, max_size=3),
    k=st.sampled_from([1, 2, 3, 7, 64, 65536]),
    method=st.sampled_from(METHODS),
    sparsity=st.sampled_from([0.0, 0.3, 0.9, 1.0]),
    scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e30]),
    repeats=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_fuzz_invariants(shape, k, method, sparsity, scale, repeats, seed):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=gen) * scale
    if repeats:  # few distinct values, many ties
        weight = torch.round(weight / scale) * scale
    mask = prune_magnitude(weight, sparsity)
    shared = quantize(weight, k, method=method, mask=mask, seed=seed, **FAST.get(method, {}))
    _check_invariants(shared, weight, mask, k)
