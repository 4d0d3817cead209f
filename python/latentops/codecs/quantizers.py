"""Scalar quantizers for weight sharing: each maps the kept entries of a weight tensor to a small
float32 codebook and returns SharedWeights. The four methods of sHAM (Marinò et al., ICPR 2020):
k-means weight sharing (CWS, as in Deep Compression), probabilistic weight sharing (PWS), uniform
quantization (UQ) and entropy-constrained scalar quantization (ECSQ)."""

from __future__ import annotations

import torch

from latentops.codecs.pruning import check_mask, prune_magnitude
from latentops.codecs.shared_weights import CODES_DTYPE, SharedWeights
from latentops.kmeans import kmeans
from latentops.ops.checks import check_choice, check_int, check_real, check_tensor

METHODS = ("cws", "pws", "uq", "ecsq")
# The most levels a codebook may have: sHAM's formats code indices in 16 bits.
MAX_LEVELS = 65536
# The method-specific keyword options and their defaults.
METHOD_OPTIONS = {
    "cws": {"iters": 100},
    "pws": {},
    "uq": {},
    "ecsq": {"lam": 0.5, "max_iter": 100, "tol": 0.0},
}


def quantize(
    weight: torch.Tensor,
    k: int,
    *,
    method: str = "cws",
    mask: torch.Tensor | None = None,
    seed: int = 0,
    info: dict | None = None,
    **options,
) -> SharedWeights:
    """Share the kept weights among at most k float32 values.

    The weights are quantized as float32 values (the codebook's dtype); pruned entries are ignored
    and get code 0. The codebook comes back sorted ascending without duplicates or unused levels
    (uq keeps its whole uniform grid), so it may be shorter than k: always when the kept weights
    have fewer than k distinct values. Without kept weights the codebook is the single level 0.0.
    Deterministic for a given seed (and device).

    Methods:
        "cws": k-means on the kept weights (latentops.kmeans, 1-D), started from k levels spaced
            linearly over [min, max], the initialization Deep Compression found best (it keeps
            the rare large weights, which matter most, their own centroids). Codes are the
            nearest level. Option iters (default 100): k-means assignment steps. With at most k
            distinct kept values the codebook is those values, exactly.
        "pws": probabilistic weight sharing: the ends v_0 < … of k − 1 equal-count (quantile)
            intervals of the kept weights are the levels (nearest-rank quantiles, so each level is
            a kept weight; equal ends merge), and each weight rounds to one end of its interval
            [v, V] at random, to V with probability (w − v)/(V − v), so E[dense] = w. The draws
            come from a CPU torch.Generator seeded by `seed`. k = 1: the one level is the mean.
        "uq": uniform quantization δ·round((w + b)/δ) − b with δ = (max − min)/(k − 1) and
            b = −min, i.e. k levels spaced δ apart from min to max (fewer where float32 cannot
            tell them apart); each weight goes to its nearest level. k = 1 (or min = max): the
            one level is the midpoint of [min, max].
        "ecsq": entropy-constrained scalar quantization (sHAM's uECSQ, with absolute distances as
            in the paper): minimizes the cost J = Σ_i |w_i − c(i)| − lam · ln p(i) over the
            assignment, the levels c and their probabilities p, by coordinate descent: from k
            equal-count groups of the sorted weights, repeat (1) assign each weight to the level
            of least |w − c| − lam · ln p_c (exactly, by lower envelopes: no n × k matrix),
            (2) move each level to the median of its cell (the minimizer of Σ|w − c| over the
            cell; a mean would minimize squared distances and could raise J), (3) set
            p_c = count_c / n, dropping empty cells and merging equal levels. Each step minimizes
            J over its variables, so J never rises; it stops when J no longer falls by more than
            tol (mean cost per kept weight) or after max_iter rounds. Options lam (default 0.5,
            as sHAM; ≥ 0; 0 is 1-D k-medians; larger lam, fewer levels; note |w − c| is in the
            weights' units and −ln p in nats, so lam's effect depends on the weights' scale),
            max_iter (100), tol (0.0).

    Args:
        weight: float tensor (float32, float16, bfloat16, float64) of any shape, finite where kept.
        k: most levels, 1 ≤ k ≤ 65536.
        method: one of METHODS.
        mask: None (keep all) or a bool tensor of weight's shape, True = kept.
        seed: seeds k-means (cws) and the random rounding (pws); an integer in [−2⁶³, 2⁶⁴).
        info: if a dict, filled with what the method found: "levels" (codebook length) for all,
            "inertia" (cws: Σ squared distances of the final k-means), "step" and "offset"
            (uq: δ and b), "cost_history" (ecsq: mean cost per kept weight of the starting state
            and of each accepted round, non-increasing) and "rounds" (ecsq).
        **options: the method's options above; any other is a TypeError.
    """
    weight = check_tensor("weight", weight)
    k = check_int("k", k, minimum=1)
    if k > MAX_LEVELS:
        raise ValueError(f"k must be an integer ≤ {MAX_LEVELS}, got {k}")
    method = check_choice("method", method, METHODS)
    seed = check_int("seed", seed, minimum=-(2**63))
    if seed >= 2**64:  # what torch.Generator.manual_seed takes
        raise ValueError(f"seed must be in [-2**63, 2**64), got {seed}")
    if info is not None and not isinstance(info, dict):
        raise TypeError(f"info must be None or a dict, got {type(info).__name__}")
    options = _check_options(method, options)
    mask = torch.ones_like(weight, dtype=torch.bool) if mask is None else check_mask("mask", mask, weight).detach()

    values = weight.detach().float()[mask]
    if not bool(torch.isfinite(values).all()):
        raise ValueError("weight must be finite (as float32) where the mask keeps it, got a NaN or ±inf")
    info = {} if info is None else info
    if values.numel() == 0:
        levels, kept_codes = torch.zeros(1, device=weight.device), values.to(CODES_DTYPE)
    else:
        levels, kept_codes = _QUANTIZERS[method](values, k, seed, info, **options)
    info["levels"] = levels.numel()
    codes = torch.zeros(weight.shape, dtype=CODES_DTYPE, device=weight.device)
    codes[mask] = kept_codes.to(CODES_DTYPE)
    return SharedWeights(codes, levels, mask)


def _check_options(method: str, options: dict) -> dict:
    defaults = METHOD_OPTIONS[method]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        takes = ", ".join(defaults) or "no options"
        raise TypeError(f"method {method!r} takes {takes}; got the option(s) {unknown}")
    merged = {**defaults, **options}
    if method == "cws":
        merged["iters"] = check_int("iters", merged["iters"], minimum=1)
    if method == "ecsq":
        merged["lam"] = check_real("lam", merged["lam"], minimum=0.0)
        merged["max_iter"] = check_int("max_iter", merged["max_iter"], minimum=1)
        merged["tol"] = check_real("tol", merged["tol"], minimum=0.0)
    return merged


def _cws(values: torch.Tensor, k: int, seed: int, info: dict, *, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    distinct = torch.unique(values)
    if distinct.numel() <= k:
        info["inertia"] = 0.0
        return distinct, torch.searchsorted(distinct, values)
    init = torch.linspace(float(distinct[0]), float(distinct[-1]), k, device=values.device)
    # tol=0: Lloyd runs until no label changes (or iters), so the levels are the means of their cells.
    result = kmeans(values[:, None], k, init=init[:, None], iters=iters, tol=0.0, seed=seed)
    info["inertia"] = result.inertia
    levels = _lloyd_polish(values, torch.unique(result.centroids[:, 0]), iters)
    # A float32 cell mean can round past its cell's extreme weight (n equal values summed); the
    # clamp moves no true mean and keeps every level inside [min, max].
    levels = levels.clamp(distinct[0], distinct[-1])
    return _compact(levels, _nearest_level(values, levels))  # nearest to the float32 levels


def _lloyd_polish(values: torch.Tensor, levels: torch.Tensor, steps: int) -> torch.Tensor:
    """Lloyd's steps in float64 on the 1-D data, from k-means' float32 levels, until no code changes
    (at most `steps`): each level is then the mean of its cell and each weight has its nearest level,
    which k-means' float32 sums and its iteration limit do not promise. Cheap in 1-D: a step is a
    sorted search and two bincounts."""
    v = values.double()
    codes = _nearest_level(v, levels.double())
    for _ in range(steps):
        counts = torch.bincount(codes, minlength=levels.numel())
        means = torch.bincount(codes, weights=v, minlength=levels.numel())[counts > 0] / counts[counts > 0]
        new_codes = _nearest_level(v, means)
        converged = torch.equal(new_codes, torch.cumsum(counts > 0, 0)[codes] - 1)
        codes, levels = new_codes, means
        if converged:
            break
    return levels.float()


def _pws(values: torch.Tensor, k: int, seed: int, info: dict) -> tuple[torch.Tensor, torch.Tensor]:
    if k == 1:
        return values.double().mean().float().reshape(1), torch.zeros_like(values, dtype=torch.long)
    ordered = values.sort().values
    ranks = torch.linspace(0, ordered.numel() - 1, k, dtype=torch.float64, device=values.device).round().long()
    ends = torch.unique(ordered[ranks])
    if ends.numel() == 1:
        return ends, torch.zeros_like(values, dtype=torch.long)
    lower = (torch.searchsorted(ends, values, right=True) - 1).clamp(0, ends.numel() - 2)
    below, above = ends[lower].double(), ends[lower + 1].double()
    p_upper = (values.double() - below) / (above - below)
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(values.numel(), generator=generator, dtype=torch.float64).to(values.device)
    return _compact(ends, lower + (uniform < p_upper).long())


def _uq(values: torch.Tensor, k: int, seed: int, info: dict) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = values.min().double(), values.max().double()
    if k == 1 or low == high:
        levels = ((low + high) / 2).float().reshape(1)
        step = 0.0
    else:
        step = float((high - low) / (k - 1))
        grid = low + step * torch.arange(k, dtype=torch.float64, device=values.device)
        # float32 rounding must not push the end levels outside [min, max]; levels float32 cannot
        # tell apart (a tiny range at large k) merge.
        levels = torch.unique(grid.float().clamp(float(low), float(high)))
    info["step"], info["offset"] = step, -float(low)
    return levels, _nearest_level(values, levels)


def _ecsq(
    values: torch.Tensor, k: int, seed: int, info: dict, *, lam: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    # Everything runs on the sorted weights in float64 (levels stay float32 values: medians of
    # float32 weights), and the codes go back to the original order at the end.
    ordered, order = values.sort()
    w = ordered.double()
    n = w.numel()
    groups = min(k, n)
    codes = torch.arange(n, device=w.device) * groups // n  # equal-count groups of the sorted weights
    levels, codes, counts = _median_cells(w, codes, groups)
    cost = _ecsq_cost(w, levels, codes, counts, lam)
    history = [cost / n]
    for _ in range(max_iter):
        penalty = -lam * torch.log(counts / n)
        assigned = _envelope_argmin(w, levels.double(), penalty)
        new_levels, new_codes, new_counts = _median_cells(w, assigned, levels.numel())
        new_cost = _ecsq_cost(w, new_levels, new_codes, new_counts, lam)
        if new_cost > cost:  # only float64 rounding can do this; keep the last state
            break
        converged = cost - new_cost <= tol * n
        levels, codes, counts, cost = new_levels, new_codes, new_counts, new_cost
        history.append(cost / n)
        if converged:
            break
    info["cost_history"], info["rounds"] = history, len(history) - 1
    unsorted = torch.empty_like(codes)
    unsorted[order] = codes
    return levels, unsorted


def _median_cells(w: torch.Tensor, codes: torch.Tensor, cells: int) -> tuple[torch.Tensor, ...]:
    """Levels (float32, sorted, distinct), codes and counts of the non-empty cells of `codes` over
    the sorted weights w, each level the lower median of its cell (an actual weight, so exactly a
    float32 value; any point between the two middle weights minimizes Σ|w − c|)."""
    by_cell = torch.argsort(codes, stable=True)  # grouped by cell, still sorted inside each
    counts = torch.bincount(codes, minlength=cells)
    starts = torch.cumsum(counts, 0) - counts
    occupied = counts > 0
    medians = w[by_cell][(starts + (counts - 1) // 2)[occupied]].float()
    renumber = torch.cumsum(occupied, 0) - 1
    levels, codes = _compact(medians, renumber[codes])
    return levels, codes, torch.bincount(codes, minlength=levels.numel()).double()


def _ecsq_cost(w, levels, codes, counts, lam) -> float:
    n = w.numel()
    distortion = (w - levels.double()[codes]).abs().sum()
    rate = -(counts * torch.log(counts / n)).sum()  # Σ_i −ln p(i), grouped by cell
    return float(distortion + lam * rate)


def _envelope_argmin(w: torch.Tensor, levels: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """argmin_c |w − c| + penalty_c for every w, with levels sorted ascending, in O(n log k).

    For the levels at or below w the cost is w + (penalty − c), minimized by a prefix minimum of
    penalty − c; above w it is (penalty + c) − w, minimized by a suffix minimum of penalty + c.
    Ties go to the lower level."""
    best_left, left_at = torch.cummin(penalty - levels, 0)
    best_right, right_at = torch.cummin((penalty + levels).flip(0), 0)
    best_right, right_at = best_right.flip(0), levels.numel() - 1 - right_at.flip(0)
    split = torch.searchsorted(levels, w, right=True)  # levels[:split] ≤ w < levels[split:]
    inf = torch.tensor(float("inf"), dtype=w.dtype, device=w.device)
    has_left, has_right = split > 0, split < levels.numel()
    left = (split - 1).clamp(min=0)
    right = split.clamp(max=levels.numel() - 1)
    left_cost = torch.where(has_left, w + best_left[left], inf)
    right_cost = torch.where(has_right, best_right[right] - w, inf)
    return torch.where(left_cost <= right_cost, left_at[left], right_at[right])


def _nearest_level(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """The index of the nearest of the sorted levels to each value, exactly (float64 distances to
    the two neighbours; a value halfway goes to the lower level)."""
    above = torch.searchsorted(levels, values).clamp(max=levels.numel() - 1)
    below = (above - 1).clamp(min=0)
    v = values.double()
    closer_below = (v - levels[below].double()).abs() <= (levels[above].double() - v).abs()
    return torch.where(closer_below, below, above)


def _compact(levels: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The used levels, sorted and distinct (equal levels merge), and the codes renumbered."""
    used, codes = torch.unique(codes, return_inverse=True)
    distinct, merged = torch.unique(levels[used], return_inverse=True)
    return distinct, merged[codes]


_QUANTIZERS = {"cws": _cws, "pws": _pws, "uq": _uq, "ecsq": _ecsq}


def prune_and_quantize(
    weight: torch.Tensor, k: int, *, sparsity: float = 0.0, method: str = "cws", seed: int = 0, **options
) -> SharedWeights:
    """The weight pruned by magnitude to `sparsity` (prune_magnitude), then its kept entries shared
    into at most k levels by `method` (quantize, with seed and options)."""
    return quantize(weight, k, method=method, mask=prune_magnitude(weight, sparsity), seed=seed, **options)
