"""latentops.kmeans: Lloyd's k-means on CPU or GPU tensors, with the assignment step done by
latentops.nearest_centroid (so it runs on whichever backend that op picks)."""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from latentops.ops import nearest_centroid

INIT_METHODS = ("k-means++", "random")
_KMEANS_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# Temporaries of one batch (the float32 copy of its points, labels, distances) stay under this.
_BATCH_BYTES = 1 << 28
# k-means++ seeds from a random subsample of this many points per cluster (at least _PP_MIN_POINTS):
# seeding costs O(points · k · trials · D), as much as several Lloyd iterations on the full data
# otherwise, and the Lloyd iterations that follow run on every point anyway.
_PP_POINTS_PER_CLUSTER = 40
_PP_MIN_POINTS = 8192
_PP_SEQUENTIAL_STEPS = 1024


class KMeansResult(NamedTuple):
    """centroids (k, D) in x's dtype; labels int64 (N,): each point's centroid; inertia: Σ of the
    squared distances of the points to their centroids (a Python float)."""

    centroids: torch.Tensor
    labels: torch.Tensor
    inertia: float


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    iters: int = 50,
    n_init: int = 1,
    init: str | torch.Tensor = "k-means++",
    tol: float = 1e-4,
    seed: int = 0,
    backend: str | None = None,
    batch_size: int | None = None,
    max_points_per_centroid: int | None = None,
    verbose: bool = False,
) -> KMeansResult:
    """Cluster the rows of x into k clusters with Lloyd's algorithm.

    Args:
        x: (N, D) float tensor (float32, float16, bfloat16 or float64) on any device. Centroid sums
            are accumulated in float32 (float64 for float64 x).
        k: number of clusters, 1 ≤ k ≤ N.
        iters: at most this many assignment steps per run (each but the last followed by an
            update of the centroids).
        n_init: independent runs (successive draws of the generator seeded by `seed`); the
            lowest inertia wins.
            Ignored (one run) when `init` is a tensor.
        init: "k-means++" (greedy k-means++ as in scikit-learn, 2 + ⌊ln k⌋ candidates per step,
            run on a random subsample of max(40·k, 8192) points when N is larger, so seeding
            costs about as much as a few Lloyd iterations; for k > 1024 it places ⌈k/1024⌉
            centres per step, each the best of its own candidates, and centres of one step may
            coincide until the empty-cluster reseeding separates them), "random" (k distinct
            points of x), or a (k, D) tensor of starting centroids.
        tol: stop when the inertia changes by less than tol relative to it between two
            assignment steps (0: only when it stops changing).
        seed: seeds a CPU torch.Generator that draws all randomness, so results are deterministic
            for a seed on a given device and backend.
        backend: passed to latentops.nearest_centroid (None: the fastest for x's device).
        batch_size: points per assignment call; None keeps each batch's temporaries under 256 MiB.
        max_points_per_centroid: if set and N > k · this, train on a random subsample of that many
            points (FAISS's Kmeans does this with 256 by default), then assign every point once to
            the trained centroids for the returned labels and inertia. None trains on all points.
        verbose: show a tqdm progress bar over the iterations with the inertia.

    Returns:
        KMeansResult(centroids, labels, inertia) where labels and inertia are those of the last
        assignment step and centroids are the ones that step used, so the three agree.

    Clusters left empty by an update are re-seeded with the points farthest from their centroids
    (those points leave their old clusters), as scikit-learn does. One host sync per iteration
    (the inertia, for `tol` and empty-cluster checks); none per batch.
    """
    _check_args(x, k, iters, n_init, init, tol, batch_size)
    if max_points_per_centroid is not None and (
        isinstance(max_points_per_centroid, bool)
        or not isinstance(max_points_per_centroid, int)
        or max_points_per_centroid < 1
    ):
        raise ValueError(f"max_points_per_centroid must be None or an int ≥ 1, got {max_points_per_centroid!r}")
    n, d = x.shape
    if batch_size is None:
        batch_size = max(1, _BATCH_BYTES // (4 * d + 16))
    generator = torch.Generator().manual_seed(int(seed))
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    runs = 1 if isinstance(init, torch.Tensor) else n_init
    best: KMeansResult | None = None
    with torch.no_grad():
        x = everything = x.detach()
        if max_points_per_centroid is not None and n > k * max_points_per_centroid:
            rows = torch.randperm(n, generator=generator)[: k * max_points_per_centroid]
            x, n = x[rows.to(x.device)], k * max_points_per_centroid
        for run in range(runs):
            if isinstance(init, torch.Tensor):
                centroids = init.detach().to(device=x.device, dtype=acc).clone()
            elif init == "random":
                chosen = torch.randperm(n, generator=generator)[:k].to(x.device)
                centroids = x[chosen].to(acc)
            else:
                with _one_cpu_thread(x.device):
                    centroids = _kmeans_plusplus(x, k, generator, acc)
            result = _lloyd(x, centroids, iters, tol, backend, batch_size, acc, verbose and (run, runs))
            if best is None or result.inertia < best.inertia:
                best = result
        if x is not everything:
            best = _lloyd(everything, best.centroids, 1, tol, backend, batch_size, acc, False)
    return KMeansResult(best.centroids.to(x.dtype), best.labels, best.inertia)


def _check_args(x, k, iters, n_init, init, tol, batch_size) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _KMEANS_FLOAT_DTYPES:
        raise TypeError(f"x must be a float tensor (float32, float16, bfloat16, float64), got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (N, D), got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"x must have D ≥ 1 columns, got shape {tuple(x.shape)}")
    for name, value in (("k", k), ("iters", iters), ("n_init", n_init)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if k < 1 or k > x.shape[0]:
        raise ValueError(f"k must satisfy 1 ≤ k ≤ N = {x.shape[0]} (x has shape {tuple(x.shape)}), got k = {k}")
    if iters < 1:
        raise ValueError(f"iters must be ≥ 1, got {iters}")
    if n_init < 1:
        raise ValueError(f"n_init must be ≥ 1, got {n_init}")
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol >= 0:
        raise ValueError(f"tol must be a number ≥ 0, got {tol!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None or an int ≥ 1, got {batch_size!r}")
    if isinstance(init, torch.Tensor):
        if not init.is_floating_point():
            raise TypeError(f"init must be a float tensor, got {init.dtype}")
        if tuple(init.shape) != (k, x.shape[1]):
            raise ValueError(f"init tensor must have shape (k, D) = {(k, x.shape[1])}, got {tuple(init.shape)}")
    elif not isinstance(init, str):
        raise TypeError(f"init must be one of {INIT_METHODS} or a (k, D) tensor, got {type(init).__name__}")
    elif init not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS} or a (k, D) tensor, got {init!r}")


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """Run the CPU bookkeeping ops (k-means++ steps, the centroid update) on one thread.

    They are small or memory-bound: on the 2-core dev machine one thread ran them as fast as two
    when idle (update of 200,000×64 points: ~7 ms/iteration either way) and 5-20x faster when other
    processes load the cores (each parallel op then waits for a descheduled worker). The
    assignment itself (nearest_centroid) keeps all threads."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator, acc: torch.dtype) -> torch.Tensor:
    """Greedy k-means++ (scikit-learn's variant) on a random subsample; no host syncs."""
    n = x.shape[0]
    m = min(n, max(_PP_POINTS_PER_CLUSTER * k, _PP_MIN_POINTS))
    rows = torch.randperm(n, generator=generator)[:m].to(x.device) if m < n else None
    sample = (x[rows] if rows is not None else x).to(acc)
    trials = 2 + int(math.log(k))
    uniforms = torch.rand(k, trials, generator=generator, dtype=acc).to(x.device)
    first = torch.randint(m, (1,), generator=generator).to(x.device)
    # ‖a − b‖² = [−2a, ‖a‖², 1] · [b, 1, ‖b‖²]: one matmul per step, no extra pass for the norms.
    sq_norms = sample.square().sum(1, keepdim=True)
    ones = torch.ones_like(sq_norms)
    keys = torch.cat([sample, ones, sq_norms], 1).T.contiguous()
    queries = torch.cat([-2.0 * sample, sq_norms, ones], 1)

    # Up to _PP_SEQUENTIAL_STEPS steps: larger k places several centres per step (each the best
    # of its own candidates against the centres of earlier steps), keeping the step count, and so
    # the per-step launch overhead, bounded while each step is one larger matmul.
    per_step = max(1, -(-k // _PP_SEQUENTIAL_STEPS))
    per_step = min(per_step, max(1, _BATCH_BYTES // (4 * trials * m)))
    chosen = torch.empty(k, dtype=torch.int64, device=x.device)
    chosen[:1] = first
    closest = (queries[first] @ keys)[0].clamp_min_(0.0).index_fill_(0, first, 0.0)
    offsets = torch.arange(per_step, device=x.device) * trials
    c = 1
    while c < k:
        b = min(per_step, k - c)
        cumulative = closest.cumsum(0)
        # right=True: a draw of exactly 0 must not land on a point of zero mass (a chosen one).
        targets = (uniforms[c : c + b] * cumulative[-1]).reshape(-1)
        candidates = torch.searchsorted(cumulative, targets, right=True).clamp_max_(m - 1)
        dist = torch.minimum(queries[candidates] @ keys, closest)  # (b · trials, m)
        best = dist.sum(1).view(b, trials).argmin(1) + offsets[:b]
        picks = candidates[best]
        # The expanded form is off by rounding near 0: pin the chosen points' mass to exactly 0.
        closest = dist[best].amin(0).clamp_min_(0.0).index_fill_(0, picks, 0.0)
        chosen[c : c + b] = picks
        c += b
    return sample[chosen].clone()


def _lloyd(
    x: torch.Tensor,
    centroids: torch.Tensor,
    iters: int,
    tol: float,
    backend: str | None,
    batch_size: int,
    acc: torch.dtype,
    progress,
) -> KMeansResult:
    n, d = x.shape
    k = centroids.shape[0]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        run, runs = progress
        bar = tqdm(total=iters, desc="k-means" if runs == 1 else f"k-means run {run + 1}/{runs}", unit="it")
    previous = math.inf
    try:
        for it in range(iters):
            sums = torch.zeros(k, d, dtype=acc, device=x.device)
            counts = torch.zeros(k, dtype=torch.int64, device=x.device)
            inertia = torch.zeros((), dtype=torch.float64, device=x.device)
            labels, dists = [], []
            search_codebook = centroids if acc == torch.float64 else centroids.float()
            for start in range(0, n, batch_size):
                batch = x[start : start + batch_size].to(acc)
                idx, dist = nearest_centroid(batch, search_codebook, backend=backend)
                labels.append(idx)
                dists.append(dist)
                with _one_cpu_thread(x.device):
                    inertia += dist.sum(dtype=torch.float64)
                    batch_counts = torch.bincount(idx, minlength=k)
                    counts += batch_counts
                    sums += _cluster_sums(batch, idx, batch_counts)
            # The iteration's one host sync: the inertia and the number of empty clusters.
            current, n_empty = torch.stack([inertia, (counts == 0).sum().double()]).tolist()
            n_empty = int(n_empty)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(inertia=f"{current:.6g}")
            converged = abs(previous - current) <= tol * current
            if it == iters - 1 or converged:
                break
            previous = current
            if n_empty:
                _reseed_empty(x, sums, counts, labels, dists, n_empty, acc)
            centroids = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp_min(1).unsqueeze(1).to(acc), centroids)
    finally:
        if bar is not None:
            bar.close()
    labels = labels[0] if len(labels) == 1 else torch.cat(labels)
    return KMeansResult(centroids, labels, current)


def _cluster_sums(points: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Σ of the points of each cluster: embedding_bag over the points grouped by a stable sort.

    Deterministic on every device (CUDA's index_add_ is not: float atomics), and on CPU 2-3x faster
    than index_add_, which runs row by row.
    """
    order = torch.argsort(labels.to(torch.int32), stable=True)  # int32 keys sort ~2x faster
    offsets = torch.zeros(counts.shape[0] + 1, dtype=torch.int64, device=labels.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return F.embedding_bag(order, points, offsets, mode="sum", include_last_offset=True)


def _reseed_empty(x, sums, counts, labels, dists, n_empty, acc) -> None:
    """Move the n_empty points farthest from their centroids into the empty clusters."""
    labels = torch.cat(labels)
    far = torch.topk(torch.cat(dists), n_empty, sorted=True).indices
    empty = torch.nonzero(counts == 0).squeeze(1)
    points = x[far].to(acc)
    old = labels[far]
    sums.index_add_(0, old, -points)
    counts.index_add_(0, old, torch.full_like(old, -1))
    sums[empty] = points
    counts[empty] = 1
