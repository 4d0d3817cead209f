"""Magnitude pruning: exact counts, the kept entries are the largest, ties, existing masks, the global
threshold, and the retraining hook."""

from __future__ import annotations

import pytest
import torch

from latentops.codecs.pruning import apply_pruning_mask, prune_magnitude, prune_magnitude_global

SHAPES = [(1,), (3,), (17,), (130, 67), (2, 3, 5)]
SPARSITIES = [0.0, 0.25, 0.5, 0.9, 1.0]


def _pruned_count(sparsity: float, numel: int) -> int:
    return round(sparsity * numel)


def _assert_largest_kept(weights: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    kept = torch.cat([w.abs().flatten()[m.flatten()] for w, m in zip(weights, masks)])
    pruned = torch.cat([w.abs().flatten()[~m.flatten()] for w, m in zip(weights, masks)])
    if kept.numel() and pruned.numel():
        assert kept.min() >= pruned.max()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_prunes_exactly_the_smallest(shape, sparsity, gen):
    weight = torch.randn(shape, generator=gen)
    mask = prune_magnitude(weight, sparsity)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    assert int((~mask).sum()) == _pruned_count(sparsity, weight.numel())
    _assert_largest_kept([weight], [mask])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype, gen):
    weight = torch.randn(17, 3, generator=gen).to(dtype)
    mask = prune_magnitude(weight, 0.4)
    assert int((~mask).sum()) == _pruned_count(0.4, 51)
    _assert_largest_kept([weight.double()], [mask])


def test_ties_break_by_index():
    # Equal magnitudes: the count stays exact, and lower flat indices go first (−1 ties with 1).
    weight = torch.tensor([1.0, -1.0, 1.0, 2.0, -1.0, 0.5])
    mask = prune_magnitude(weight, 0.5)
    assert mask.tolist() == [False, False, True, True, True, False]
    assert torch.equal(prune_magnitude(weight, 0.5), mask)


def test_existing_mask_stays_pruned(gen):
    weight = torch.randn(130, 67, generator=gen)
    first = prune_magnitude(weight, 0.5)
    # Pruning further never revives an entry, and the sparsity counts the old pruned ones.
    second = prune_magnitude(weight, 0.8, mask=first)
    assert not bool((second & ~first).any())
    assert int((~second).sum()) == _pruned_count(0.8, weight.numel())
    # A mask that prunes large weights: they stay pruned, the rest is magnitude-pruned.
    arbitrary = torch.rand(weight.shape, generator=gen) > 0.3
    result = prune_magnitude(weight, 0.5, mask=arbitrary)
    assert not bool((result & ~arbitrary).any())
    assert int((~result).sum()) == max(_pruned_count(0.5, weight.numel()), int((~arbitrary).sum()))
    _assert_largest_kept([weight.masked_fill(~arbitrary, 0.0)], [result])


def test_existing_mask_prunes_more_than_asked(gen):
    weight = torch.randn(17, generator=gen)
    mask = torch.zeros(17, dtype=torch.bool)
    mask[:2] = True
    assert torch.equal(prune_magnitude(weight, 0.1, mask=mask), mask)


def test_pruned_entries_may_be_nan_kept_may_not():
    weight = torch.tensor([float("nan"), 1.0, 2.0, 3.0])
    mask = torch.tensor([False, True, True, True])
    assert prune_magnitude(weight, 0.5, mask=mask).tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="weight must not be NaN"):
        prune_magnitude(weight, 0.5)


def test_global_threshold(gen):
    # Scales differ, so one threshold over all prunes the small-scale tensor much more.
    weights = {"a": torch.randn(130, 67, generator=gen) * 0.1, "b": torch.randn(17, generator=gen), "c": torch.ones(3)}
    total = sum(w.numel() for w in weights.values())
    masks = prune_magnitude_global(weights, 0.6)
    assert list(masks) == list(weights)
    assert all(masks[n].shape == w.shape and masks[n].dtype == torch.bool for n, w in weights.items())
    assert sum(int((~m).sum()) for m in masks.values()) == _pruned_count(0.6, total)
    _assert_largest_kept(list(weights.values()), list(masks.values()))
    assert (~masks["a"]).float().mean() > 0.6 > (~masks["b"]).float().mean()
    assert masks["c"].all()


def test_global_equals_per_tensor_for_one_tensor(gen):
    weight = torch.randn(17, 3, generator=gen)
    assert torch.equal(prune_magnitude_global({"w": weight}, 0.3)["w"], prune_magnitude(weight, 0.3))


def test_global_with_masks(gen):
    weights = {"a": torch.randn(17, generator=gen), "b": torch.randn(3, 5, generator=gen)}
    old = torch.rand(3, 5, generator=gen) > 0.5
    masks = prune_magnitude_global(weights, 0.5, masks={"b": old})
    assert not bool((masks["b"] & ~old).any())
    assert sum(int((~m).sum()) for m in masks.values()) == max(_pruned_count(0.5, 32), int((~old).sum()))
    assert prune_magnitude_global({}, 0.5) == {}


def test_apply_pruning_mask_keeps_zeros_through_training(gen):
    layer = torch.nn.Linear(17, 3)
    mask = prune_magnitude(layer.weight, 0.7)
    handle = apply_pruning_mask(layer.weight, mask)
    assert bool((layer.weight[~mask] == 0).all())
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    before = layer.weight.detach().clone()
    for _ in range(5):
        optimizer.zero_grad()
        layer(torch.randn(8, 17, generator=gen)).square().sum().backward()
        optimizer.step()
    assert bool((layer.weight[~mask] == 0).all())
    assert not torch.equal(layer.weight[mask], before[mask])
    handle.remove()
    layer(torch.randn(8, 17, generator=gen)).square().sum().backward()
    assert bool((layer.weight.grad[~mask] != 0).any())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda w: prune_magnitude(w, -0.1), ValueError, "sparsity"),
        (lambda w: prune_magnitude(w, 1.5), ValueError, "sparsity"),
        (lambda w: prune_magnitude(w, "0.5"), TypeError, "sparsity"),
        (lambda w: prune_magnitude(w.tolist(), 0.5), TypeError, "weight must be a torch.Tensor"),
        (lambda w: prune_magnitude(w.long(), 0.5), TypeError, "weight must be float"),
        (lambda w: prune_magnitude(w, 0.5, mask=torch.ones(3, 5)), TypeError, "mask must be a bool"),
        (lambda w: prune_magnitude(w, 0.5, mask=torch.ones(5, 3, dtype=torch.bool)), ValueError, "mask must have"),
        (lambda w: prune_magnitude_global([w], 0.5), TypeError, "weights must be a dict"),
        (lambda w: prune_magnitude_global({"a": w}, 0.5, masks={"b": w > 0}), ValueError, "masks has names"),
        (lambda w: prune_magnitude_global({"a": w.int()}, 0.5), TypeError, r"weights\['a'\]"),
        (lambda w: apply_pruning_mask(w, w > 0), TypeError, "param must be a tensor that requires grad"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(torch.randn(3, 5))
