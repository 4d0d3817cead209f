"""Which layers of a model `latentops compress` compresses, with what fraction pruned and what k, and
how a layer is swapped for its shared-weight or compressed form in place."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from latentops.codecs import SharedWeights, prune_magnitude, prune_magnitude_global
from latentops.pipelines.compression.config import CompressConfig, parse_per_layer


@dataclasses.dataclass(frozen=True)
class Plan:
    """One layer's compression: its module's kind and its prune fraction and codebook size."""

    kind: str  # "linear" or "conv2d"
    prune: float
    k: int


def _kind(module: nn.Module) -> str | None:
    """ "linear" or "conv2d" for a layer compress can handle (CompressedConv2d: groups 1, zero
    padding), else None. Exactly these classes: a subclass may transform its weight in forward
    (ParsevalConv2d scales it), which the shared-weight and compressed layers would not do."""
    if type(module) is nn.Linear:
        return "linear"
    if type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros":
        return "conv2d"
    return None


def plan_layers(model: nn.Module, trained: list[nn.Parameter], config: CompressConfig) -> dict[str, Plan]:
    """The layers --layers names, among the Linear and Conv2d modules whose weight is in `trained`
    (the task's first parameter group: the classifier, or the autoencoder but not ACAI's critic),
    in the model's order; ValueError naming --layers or --per-layer for a name that is no such layer."""
    trained_ids = {id(p) for p in trained}
    candidates = {
        name: kind
        for name, module in model.named_modules()
        if (kind := _kind(module)) is not None and id(module.weight) in trained_ids
    }
    spec = config.layers.strip()
    if spec in ("all", "linear", "conv"):
        names = [n for n, kind in candidates.items() if spec == "all" or kind.startswith(spec)]
    else:
        names = [part.strip() for part in spec.split(",")]
        unknown = [n for n in names if n not in candidates]
        if unknown:
            raise ValueError(
                f"--layers: {unknown} are not layers compress can take; the model's are {list(candidates)}"
            )
    if not names:
        raise ValueError(f"--layers {spec!r} selects no layer; the model's are {list(candidates)}")
    overrides = parse_per_layer(config.per_layer)
    unknown = [n for n in overrides if n not in names]
    if unknown:
        raise ValueError(f"--per-layer: {unknown} are not among the compressed layers {names}")
    if config.scope == "global" and any(p is not None for p, _ in overrides.values()):
        raise ValueError("--per-layer: fractions pruned per layer need --scope layer (global has one threshold)")
    plans = {}
    for name in names:
        prune, k = overrides.get(name, (None, None))
        plans[name] = Plan(candidates[name], config.prune if prune is None else prune, config.k if k is None else k)
    return plans


def pruning_masks(model: nn.Module, plans: dict[str, Plan], scope: str, prune: float) -> dict[str, torch.Tensor]:
    """Per layer, the bool mask of its kept weights: the plan's fraction of smallest |w| pruned, per
    layer, or `prune` of all the layers' weights under one threshold (scope "global")."""
    weights = {name: model.get_submodule(name).weight.detach() for name in plans}
    if scope == "global":
        return prune_magnitude_global(weights, prune)
    return {name: prune_magnitude(w, plans[name].prune) for name, w in weights.items()}


def replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def compact(shared: SharedWeights) -> SharedWeights:
    """The same weight with the levels no kept entry uses dropped and the codes renumbered, so a
    format stores only the codebook that is needed (fine-tuning can also make levels equal: they
    stay two entries, as the codes tell them apart at no extra cost)."""
    used = torch.zeros(shared.k, dtype=torch.bool, device=shared.device)
    used[shared.codes[shared.mask].long()] = True
    if bool(used.all()) or not bool(used.any()):
        return shared
    renumber = torch.cumsum(used, 0) - 1
    codes = torch.where(shared.mask, renumber[shared.codes.long()], 0)
    return SharedWeights(codes, shared.codebook[used], shared.mask)


def group_of_modules(model: nn.Module, groups: dict[str, list[nn.Parameter]]) -> dict[str, str]:
    """Module name → the parameter group its parameters are in (a swapped layer keeps its name, so
    its new parameters go to its old group)."""
    owner = {id(p): group for group, params in groups.items() for p in params}
    return {name.rpartition(".")[0]: owner[id(p)] for name, p in model.named_parameters() if id(p) in owner}


def regroup(model: nn.Module, module_groups: dict[str, str], names: list[str]) -> dict[str, list[nn.Parameter]]:
    """The model's current parameters by the group their module was in."""
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in names}
    for name, p in model.named_parameters():
        group = module_groups.get(name.rpartition(".")[0])
        if group is not None:
            groups[group].append(p)
    return groups
