"""Magnitude pruning (Han et al., Deep Compression; the pruning step of sHAM, Marinò et al. 2020):
keep the weights of largest |w|, per tensor or with one threshold over many tensors, and keep the
pruned ones at zero while the network is retrained."""

from __future__ import annotations

import torch
from torch.utils.hooks import RemovableHandle

from latentops.ops.checks import check_real, check_tensor


def prune_magnitude(weight: torch.Tensor, sparsity: float, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The mask (bool, weight's shape, True = kept) that prunes the `sparsity` fraction of smallest |w|.

    Exactly round(sparsity · numel) entries are pruned (Python's round: halves to even), so the
    count does not depend on ties: among equal |w| the entry of lower flat index goes first (a
    stable sort), which keeps the result deterministic. This is "keep |w| above the p-th
    percentile" made exact.

    Args:
        weight: float tensor of any shape; its kept entries must not be NaN.
        sparsity: fraction of weight's entries pruned in the result, in [0, 1] (0 keeps all, 1
            none).
        mask: an existing mask (bool, weight's shape) to prune further, as in iterative pruning:
            its pruned entries stay pruned and count towards the sparsity (they go first), so the
            result prunes max(round(sparsity · numel), already pruned) entries.
    """
    sparsity = check_real("sparsity", sparsity, minimum=0.0, maximum=1.0)
    key = _ranking_key("weight", weight, "mask", mask)
    return _keep_largest([key], sparsity)[0].view(weight.shape)


def prune_magnitude_global(
    weights: dict[str, torch.Tensor], sparsity: float, *, masks: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """One magnitude threshold over all tensors together (Deep Compression's and sHAM's global
    variant): the masks that prune round(sparsity · total numel) entries of smallest |w| among all
    of them, ties broken by position (tensors in the dict's order, then flat index).

    Args:
        weights: name → float tensor (any shapes, one device).
        sparsity: as in prune_magnitude, over the total number of entries.
        masks: optional name → existing mask for some of the names, as in prune_magnitude.
    Returns: name → bool mask (True = kept), each of its tensor's shape, in weights' order.
    """
    if not isinstance(weights, dict):
        raise TypeError(f"weights must be a dict of name → tensor, got {type(weights).__name__}")
    sparsity = check_real("sparsity", sparsity, minimum=0.0, maximum=1.0)
    masks = {} if masks is None else masks
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be None or a dict of name → bool tensor, got {type(masks).__name__}")
    unknown = set(masks) - set(weights)
    if unknown:
        raise ValueError(f"masks has names that are not in weights: {sorted(unknown)}")
    keys = [
        _ranking_key(f"weights[{name!r}]", weight, f"masks[{name!r}]", masks.get(name))
        for name, weight in weights.items()
    ]
    devices = {str(key.device) for key in keys}
    if len(devices) > 1:
        raise ValueError(f"weights must be on one device, got {sorted(devices)}")
    kept = _keep_largest(keys, sparsity)
    return {name: part.view(weight.shape) for (name, weight), part in zip(weights.items(), kept)}


def _ranking_key(name: str, weight, mask_name: str, mask) -> torch.Tensor:
    """Flat float64 |w| where kept, −1 (below every |w|) where `mask` already prunes."""
    check_tensor(name, weight)
    key = weight.detach().flatten().double().abs()
    if mask is not None:
        key = key.masked_fill(~check_mask(mask_name, mask, weight).flatten(), -1.0)
    if bool(torch.isnan(key).any()):
        raise ValueError(f"{name} must not be NaN where it is kept, got a NaN")
    return key


def _keep_largest(keys: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Per key, the flat kept mask after pruning the round(sparsity · total) smallest keys of all
    (at least the already-pruned ones); the stable sort breaks ties by position."""
    if not keys:
        return []
    key = torch.cat(keys)
    n_pruned = max(round(sparsity * key.numel()), int((key < 0).sum()))
    kept = torch.ones(key.numel(), dtype=torch.bool, device=key.device)
    kept[torch.argsort(key, stable=True)[:n_pruned]] = False
    return list(kept.split([k.numel() for k in keys]))


def apply_pruning_mask(param: torch.Tensor, mask: torch.Tensor) -> RemovableHandle:
    """Prune a parameter for retraining: zero its pruned entries now and register a gradient hook
    that zeroes their gradients (masked_fill, so a NaN gradient there is dropped too).

    With zero gradients, SGD (momentum, weight decay: decay of 0 is 0), Adam and AdamW leave the
    zeroed entries at exactly 0; an optimizer that moves parameters without a gradient would not.
    Returns the hook's handle: handle.remove() ends the masking (the zeros stay).
    """
    if not isinstance(param, torch.Tensor) or not param.requires_grad:
        raise TypeError(f"param must be a tensor that requires grad, got {type(param).__name__}")
    mask = check_mask("mask", mask, param)
    with torch.no_grad():
        param.masked_fill_(~mask, 0.0)
    return param.register_hook(lambda grad: grad.masked_fill(~mask, 0.0))


def check_mask(name: str, mask, weight: torch.Tensor) -> torch.Tensor:
    """A bool tensor of weight's shape on weight's device (the quantizers check theirs with it)."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"{name} must be a bool tensor (True = kept), got {got}")
    if mask.shape != weight.shape:
        raise ValueError(f"{name} must have the weight's shape {tuple(weight.shape)}, got {tuple(mask.shape)}")
    if mask.device != weight.device:
        raise ValueError(f"{name} must be on the weight's device {weight.device}, got {mask.device}")
    return mask
