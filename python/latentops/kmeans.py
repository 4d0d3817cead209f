"""latentops.kmeans: k-means on CPU or GPU tensors: greedy k-means++, Lloyd's iterations polished
by batched Hartigan moves, and a merge-split search, with the assignment step done by
latentops.nearest_centroid (so it runs on whichever backend that op picks)."""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from latentops.ops.checks import check_int
from latentops.ops.nearest_centroid import KERNELS, _forward_impl

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
    iters: int = 300,
    n_init: int = 1,
    init: str | torch.Tensor = "k-means++",
    tol: float = 1e-4,
    seed: int = 0,
    backend: str | None = None,
    batch_size: int | None = None,
    max_points_per_centroid: int | None = None,
    verbose: bool = False,
) -> KMeansResult:
    """Cluster the rows of x into k clusters: Lloyd's algorithm from `n_init` seedings, then the best
    run refined by Hartigan's single-point moves and a merge-split search.

    Each run seeds the centroids (`init`) and iterates Lloyd until it converges (scikit-learn's
    rule, see `tol`) or `iters` steps are spent. The run with the lowest inertia is then refined,
    within at most as many assignment steps as the runs took together (at least 100, at most
    what `iters` leaves it), so the refinement at most doubles the work on large data:
    - polish: each time Lloyd converges, one batched step of Hartigan's method moves the points
      whose move to another cluster lowers the inertia with the means updated (Lloyd only looks
      at the old means, so it stops at partitions Hartigan still improves), and Lloyd resumes;
      the polish ends when Lloyd is converged after a Hartigan step that found nothing to move
      (or moved the centroids by no more than `tol`);
    - merge-split trials, while steps are left: the centroid whose removal costs least (its
      points going to their best other cluster; the next-cheapest after each failed trial) moves
      to a point drawn by D² sampling inside the cluster of largest squared error, and the run
      descends again from there (given up once Lloyd converges more than 1% above the best); the
      result is kept if its inertia is lower. Five failed trials in a row end the search.
    Lloyd alone stops in whichever local minimum the seeding leads to; the trials move centroids
    between clusters, which is what separates those minima (on scikit-learn's digits, two
    centroids sharing one digit while another covers two). With these, every seed tried on
    scikit-learn's real datasets ends at or below scikit-learn's inertia at equal n_init.

    Args:
        x: (N, D) float tensor (float32, float16, bfloat16 or float64) on any device. Centroid sums
            are accumulated in float32 (float64 for float64 x).
        k: number of clusters, 1 ≤ k ≤ N. k, iters, n_init, batch_size and
            max_points_per_centroid take Python or numpy integers or 0-d integer tensors (not bool
            or float).
        iters: assignment steps per run, and for the refinement (each step is one pass of
            nearest_centroid over the points). 300, scikit-learn's max_iter, lets a small problem
            converge and be refined; pass e.g. 20-25 (FAISS's default niter is 25) for a fast
            fixed-cost run on large data, where Lloyd alone takes a few hundred steps to converge.
        n_init: independent runs (successive draws of the generator seeded by `seed`); the
            lowest inertia wins.
            Ignored (one run) when `init` is a tensor.
        init: "k-means++" (greedy k-means++ as in scikit-learn, 2 + ⌊ln k⌋ candidates per step,
            run on a random subsample of max(40·k, 8192) points when N is larger, so seeding
            costs about as much as a few Lloyd iterations; for k > 1024 it places ⌈k/1024⌉
            centres per step, each the best of its own candidates, and centres of one step may
            coincide until the empty-cluster reseeding separates them), "random" (k distinct
            points of x), or a (k, D) tensor of starting centroids.
        tol: Lloyd iterations count as converged when no label changes or when the centroids
            moved by at most tol × (mean variance of x's columns) in total squared distance, as
            in scikit-learn (0: only when no label changes). The variance comes from at most
            32,768 evenly spaced rows.
        seed: an integer (Python, numpy or a 0-d integer tensor) in [−2⁶³, 2⁶⁴); seeds a CPU
            torch.Generator that draws all randomness, so results are deterministic for a seed on a
            given device and backend.
        backend: passed to latentops.nearest_centroid (None: the fastest for x's device).
        batch_size: points per assignment call; None keeps each batch's temporaries under 256 MiB.
        max_points_per_centroid: if set and N > k · this, train on a random subsample of that many
            points (FAISS's Kmeans does this with 256 by default), then assign every point once to
            the trained centroids for the returned labels and inertia. None trains on all points.
        verbose: show a tqdm progress bar per run and for the refinement, over their assignment
            steps, with the inertia.

    Returns:
        KMeansResult(centroids, labels, inertia) of the run with the lowest inertia, where labels
        and inertia are those of an assignment step and centroids are the ones it used, so the
        three agree.

    Non-finite values: x and a tensor `init` must be finite (a ValueError naming the argument
    otherwise, at the cost of one pass over x and a host sync). A NaN or inf point has no finite
    distance to any centroid and would make its centroid's mean, and the inertia, NaN; dropping
    such rows silently would change what is clustered, so the caller decides what they mean.
    Magnitudes: labels are exact nearest centroids at any magnitude (see nearest_centroid), but
    for non-float64 x the distances behind the inertia, the farthest-point reseeding and the
    merge-split draws are float32: past ~1e19 per coordinate they overflow to inf (and runs can
    no longer be compared), below ~1e-19 they underflow to 0. Scale such data first.

    Clusters left empty by an update are re-seeded with the points farthest from their centroids
    (those points leave their old clusters), as scikit-learn does. One host sync per assignment
    step (the inertia and the convergence counts) and one per call (the data's variance, for
    `tol`); none per batch.
    """
    k, iters, n_init, batch_size, max_points_per_centroid, seed = _check_args(
        x, k, iters, n_init, init, tol, batch_size, max_points_per_centroid, seed
    )
    n, d = x.shape
    if batch_size is None:
        batch_size = max(1, _BATCH_BYTES // (4 * d + 16))
    generator = torch.Generator().manual_seed(seed)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    runs = 1 if isinstance(init, torch.Tensor) else n_init
    best: _Descent | None = None
    lloyd_steps = 0
    with torch.no_grad():
        x = everything = x.detach()
        if max_points_per_centroid is not None and n > k * max_points_per_centroid:
            rows = torch.randperm(n, generator=generator)[: k * max_points_per_centroid]
            x, n = x[rows.to(x.device)], k * max_points_per_centroid
        # scikit-learn's tolerance: tol times the mean per-column variance of the training data.
        shift_tol = tol * _mean_variance(x) if tol > 0 else 0.0
        lloyd = _Lloyd(x.device, backend, batch_size, acc, shift_tol)
        for run in range(runs):
            if isinstance(init, torch.Tensor):
                centroids = init.detach().to(device=x.device, dtype=acc).clone()
            elif init == "random":
                chosen = torch.randperm(n, generator=generator)[:k].to(x.device)
                centroids = x[chosen].to(acc)
            else:
                with _one_cpu_thread(x.device):
                    centroids = _kmeans_plusplus(x, k, generator, acc)
            with _progress(verbose, iters, "k-means" if runs == 1 else f"k-means run {run + 1}/{runs}") as bar:
                result = lloyd.descend(x, centroids, iters, bar, polish=False)
            lloyd_steps += result.steps
            if best is None or result.inertia < best.inertia:
                best = result
        # The refinement costs at most what the runs did (or _MIN_REFINE_STEPS: on small data).
        left = min(iters - best.steps, max(lloyd_steps, _MIN_REFINE_STEPS))
        if left > 0 and k > 1:
            with _progress(verbose, left, "k-means polish") as bar:
                best = _refine(x, best, left, lloyd, generator, bar)
        if x is not everything:
            best = lloyd.descend(everything, best.centroids, 1, None)
    return KMeansResult(best.centroids.to(x.dtype), best.labels, best.inertia)


def _check_args(x, k, iters, n_init, init, tol, batch_size, max_points_per_centroid, seed) -> tuple:
    """Checks every argument; returns the integer ones as Python ints."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _KMEANS_FLOAT_DTYPES:
        raise TypeError(f"x must be a float tensor (float32, float16, bfloat16, float64), got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (N, D), got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"x must have D ≥ 1 columns, got shape {tuple(x.shape)}")
    k, iters, n_init = check_int("k", k), check_int("iters", iters), check_int("n_init", n_init)
    batch_size = check_int("batch_size", batch_size, optional=True)
    max_points_per_centroid = check_int("max_points_per_centroid", max_points_per_centroid, optional=True)
    seed = check_int("seed", seed, minimum=-(2**63))
    if seed >= 2**64:  # what torch.Generator.manual_seed takes
        raise ValueError(f"seed must be in [-2**63, 2**64), got {seed}")
    if k > x.shape[0]:
        raise ValueError(f"k must satisfy 1 ≤ k ≤ N = {x.shape[0]} (x has shape {tuple(x.shape)}), got k = {k}")
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol >= 0:
        raise ValueError(f"tol must be a number ≥ 0, got {tol!r}")
    if isinstance(init, torch.Tensor):
        if not init.is_floating_point():
            raise TypeError(f"init must be a float tensor, got {init.dtype}")
        if tuple(init.shape) != (k, x.shape[1]):
            raise ValueError(f"init tensor must have shape (k, D) = {(k, x.shape[1])}, got {tuple(init.shape)}")
        if not bool(init.isfinite().all()):
            raise ValueError("init must be finite: it holds NaN or inf")
    elif not isinstance(init, str):
        raise TypeError(f"init must be one of {INIT_METHODS} or a (k, D) tensor, got {type(init).__name__}")
    elif init not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS} or a (k, D) tensor, got {init!r}")
    # Last: the one check that reads all of x (and syncs with its device).
    bad = int((~x.detach().isfinite()).any(1).sum())
    if bad:
        raise ValueError(f"x must be finite: {bad} of its {x.shape[0]} rows hold NaN or inf")
    return k, iters, n_init, batch_size, max_points_per_centroid, seed


def _mean_variance(x: torch.Tensor) -> float:
    """Mean over the columns of their variance, from at most 32,768 evenly spaced rows (to 0.1% or
    so, plenty for a tolerance, at the cost of a fraction of one assignment step); one host sync."""
    rows = x[:: -(-x.shape[0] // 32768)].double()
    return float(rows.var(0, unbiased=False).mean())


@contextlib.contextmanager
def _progress(verbose: bool, total: int, desc: str):
    """A tqdm bar over assignment steps when verbose, else None."""
    if not verbose:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="step", desc=desc)
    try:
        yield bar
    finally:
        bar.close()


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


# Assignment steps the refinement (polish and merge-split) may take at least, whatever the runs took.
_MIN_REFINE_STEPS = 100
# Merge-split trials end after this many fail in a row (each tries the next-cheapest centroid).
_SWAP_PATIENCE = 5
# A trial whose Lloyd iterations converge more than this far above the best inertia is given up
# there: the Hartigan steps and Lloyd's tail still to come recover far less (~1e-4 on digits),
# and a trial that split a compact cluster in two would otherwise creep on for tens of steps.
_TRIAL_MARGIN = 0.01
# On CPU, sums by index_add_ (row by row) for at most this many elements, where it beats the
# sort of _cluster_sums (2x on scikit-learn's digits); above, the sort wins.
_INDEX_ADD_ELEMENTS = 1 << 18
# Elements of a CPU Hartigan step's (k, rows) distance block: it stays in cache.
_HARTIGAN_CHUNK_ELEMENTS = 1 << 16


class _Descent(NamedTuple):
    """The last assignment step of a descent: centroids, labels and inertia agree. `spare`: per
    point, what moving it to its best other cluster costs (None unless the descent finished,
    i.e. ended with a Hartigan step that moved nothing)."""

    centroids: torch.Tensor
    labels: torch.Tensor
    dists: torch.Tensor
    inertia: float
    steps: int
    spare: torch.Tensor | None


def _refine(x: torch.Tensor, best: _Descent, steps: int, lloyd: _Lloyd, generator: torch.Generator, bar) -> _Descent:
    """Hartigan polish of the Lloyd-converged `best`, then merge-split trials while steps are left."""
    k = best.centroids.shape[0]
    polished = lloyd.descend(x, best.centroids, steps, bar)
    left = steps - polished.steps
    if polished.inertia <= best.inertia:
        best = polished
    failed = 0
    while left > 0 and best.spare is not None and failed < _SWAP_PATIENCE and best.inertia > 0:
        uniform = float(torch.rand((), generator=generator, dtype=torch.float64))
        trial = lloyd.descend(
            x, _merge_split(x, best, failed % k, uniform), left, bar, best.inertia * (1 + _TRIAL_MARGIN)
        )
        left -= trial.steps
        if trial.inertia < best.inertia:
            best, failed = trial, 0
        else:
            failed += 1
    return best


def _merge_split(x: torch.Tensor, state: _Descent, rank: int, uniform: float) -> torch.Tensor:
    """Centroids for a trial: the centroid with the rank-th cheapest removal moves into the cluster
    of largest squared error, to a point of it drawn with probability ∝ its squared distance.
    Device ops only: no host sync."""
    centroids, labels = state.centroids, state.labels
    k, n = centroids.shape[0], labels.shape[0]
    per_cluster = _scatter_sum(torch.stack([state.spare, state.dists.to(state.spare.dtype)], 1), labels, k)
    removal, sse = per_cluster[:, 0], per_cluster[:, 1]
    leaving = torch.argsort(removal, stable=True)[rank : rank + 1]
    split = sse.index_fill(0, leaving, -1.0).argmax()
    weights = torch.where(labels == split, state.dists, 0).to(torch.float64)
    cumulative = weights.cumsum(0)
    point = torch.searchsorted(cumulative, (cumulative[-1] * uniform).view(1), right=True).clamp_max_(n - 1)
    return centroids.index_copy(0, leaving, x[point].to(centroids.dtype))


def _assign(z: torch.Tensor, codebook: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(sq_dist, indices) from latentops.nearest_centroid's implementation on a resolved backend,
    without the public op's checks and dispatch (they cost more than the kernel on small data)."""
    return _forward_impl(z, codebook, "exact", backend)


class _Lloyd:
    """Lloyd iterations with Hartigan steps at convergence (see kmeans)."""

    def __init__(self, device: torch.device, backend: str | None, batch_size: int, acc: torch.dtype, shift_tol: float):
        self.backend = KERNELS.resolve(backend, device, acc)
        self.batch_size, self.acc = batch_size, acc
        self.shift_tol = shift_tol
        self._augmented_of, self._augmented = None, None

    def _with_norms(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows start:stop of [x, ‖x‖²] in acc (Hartigan steps), kept for the next steps when all
        of x fits in _BATCH_BYTES."""
        if self._augmented_of is not x:
            if x.shape[0] * (x.shape[1] + 1) * torch.finfo(self.acc).bits // 8 > _BATCH_BYTES:
                rows = x[start:stop].to(self.acc)
                return torch.cat([rows, rows.square().sum(1, keepdim=True)], 1)
            points = x.to(self.acc)
            self._augmented_of, self._augmented = x, torch.cat([points, points.square().sum(1, keepdim=True)], 1)
        return self._augmented[start:stop]

    def descend(
        self,
        x: torch.Tensor,
        centroids: torch.Tensor,
        steps: int,
        bar,
        give_up_above: float = math.inf,
        polish: bool = True,
    ) -> _Descent:
        """At most `steps` assignment steps from `centroids` (1: just assign): Lloyd iterations,
        where an iteration that finds Lloyd converged (no label changed, or the centroids moved
        by at most shift_tol) updates with a Hartigan step instead; finished when the iteration
        after a Hartigan step finds Lloyd converged again and that step moved nothing or moved
        the centroids by at most shift_tol (with shift_tol = 0: no single-point move lowers the
        inertia, which also makes it a Lloyd fixed point). Without `polish`, finished when Lloyd
        converges. Given up, unfinished, at an iteration that finds Lloyd converged with the
        inertia above `give_up_above`."""
        n, d = x.shape
        k = centroids.shape[0]
        acc = self.acc
        previous = None  # labels of the partition whose means are `centroids`
        shift = torch.full((), math.inf, dtype=torch.float64, device=x.device)
        moved = torch.zeros((), dtype=torch.float64, device=x.device)
        polished = False  # a Hartigan step produced `centroids`
        spare = None
        for step in range(steps):
            codebook = centroids if acc == torch.float64 else centroids.float()
            if n <= self.batch_size:  # one batch: no accumulators
                batch = x.to(acc)
                dists, labels = _assign(batch, codebook, self.backend)
                with _one_cpu_thread(x.device):
                    counts = _label_counts(labels, k)
                    sums = _cluster_sums(batch, labels, counts)
                    inertia = dists.sum(dtype=torch.float64)
                    changed = (labels != previous).sum() if previous is not None else counts[0] * 0
            else:
                sums = torch.zeros(k, d, dtype=acc, device=x.device)
                counts = torch.zeros(k, dtype=torch.int64, device=x.device)
                inertia = torch.zeros((), dtype=torch.float64, device=x.device)
                changed = torch.zeros((), dtype=torch.int64, device=x.device)
                labels, dists = [], []
                for start in range(0, n, self.batch_size):
                    batch = x[start : start + self.batch_size].to(acc)
                    dist, idx = _assign(batch, codebook, self.backend)
                    labels.append(idx)
                    dists.append(dist)
                    with _one_cpu_thread(x.device):
                        inertia += dist.sum(dtype=torch.float64)
                        batch_counts = _label_counts(idx, k)
                        counts += batch_counts
                        sums += _cluster_sums(batch, idx, batch_counts)
                        if previous is not None:
                            changed += (idx != previous[start : start + self.batch_size]).sum()
                labels, dists = torch.cat(labels), torch.cat(dists)
            # The step's one host sync: inertia, empty clusters, convergence, the last moves.
            current, n_empty, n_changed, shifted, n_moved = torch.stack(
                [inertia, (counts == 0).sum().double(), changed.double(), shift, moved]
            ).tolist()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(inertia=f"{current:.6g}")
            converged = previous is not None and not n_empty and (n_changed == 0 or shifted <= self.shift_tol)
            # Done once converged after a Hartigan step that moved nothing, or too little to
            # shift the centroids by more than the tolerance.
            finished = converged and (
                k == 1 or not polish or (polished and (n_moved == 0 or shifted <= self.shift_tol))
            )
            if finished or step == steps - 1 or (converged and current > give_up_above):
                break
            if n_empty:
                _reseed_empty(x, sums, counts, labels, dists, int(n_empty), acc)
                converged = False
            with _one_cpu_thread(x.device):
                updated = torch.where(
                    counts.unsqueeze(1) > 0, sums / counts.clamp_min(1).unsqueeze(1).to(acc), centroids
                )
                polished = converged and k > 1
                if polished:
                    labels, updated, moved, spare = self._hartigan_step(x, labels, updated, sums, counts)
                shift = (updated - centroids).square().sum(dtype=torch.float64)
            previous, centroids = labels, updated
        return _Descent(centroids, labels, dists, current, step + 1, spare if finished else None)

    def _hartigan_step(self, x, labels, centroids, sums, counts):
        """One batched step of Hartigan's method on the partition `labels` with means `centroids`.

        Moving point p from cluster a (n_a points) to b changes the inertia by
        n_b/(n_b+1)·‖p − c_b‖² − n_a/(n_a−1)·‖p − c_a‖² with both means updated: negative moves
        exist at partitions where Lloyd is converged. If making every point's best such move at
        once lowers the inertia (computed exactly from the moved points), they are made;
        otherwise the matched ones: each cluster's best move is a candidate, applied if its gain
        is the largest among the candidates touching either of its clusters, so no cluster sees
        two moves and the gains add up exactly.

        Returns the new labels and means, the number of moves (a 0-d tensor) and each point's
        spare cost: n_b/(n_b+1)·‖p − c_b‖² − ‖p − c_a‖² for its best other cluster b.
        """
        acc = self.acc
        n, d = x.shape
        k = centroids.shape[0]
        size = counts.to(acc)
        grow = size / (size + 1)
        # A cluster's only point stays: its removal gains nothing.
        shrink = torch.where(counts > 1, size / (size - 1).clamp_min(1), 0)
        # grow_b·‖p − c_b‖² = [p, ‖p‖²] · [−2·grow_b·c_b, grow_b] + grow_b·‖c_b‖²: one matmul.
        weights = torch.cat([centroids * (-2.0 * grow).unsqueeze(1), grow.unsqueeze(1)], 1)
        bias = (grow * centroids.square().sum(1)).unsqueeze(1)
        into = torch.empty(n, dtype=acc, device=x.device)
        target = torch.empty(n, dtype=torch.int64, device=x.device)
        own = torch.empty(n, dtype=acc, device=x.device)
        # Rows per chunk from k and D only (not batch_size), so batching cannot change the result.
        if x.device.type == "cpu":
            rows = max(64, _HARTIGAN_CHUNK_ELEMENTS // k)
        else:
            rows = max(1, _BATCH_BYTES // (12 * (k + d)))
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            points = self._with_norms(x, start, stop)
            own_label = labels[start:stop]
            # (k, rows): twice as fast as (rows, k) for small k on CPU, and reduces over contiguous rows
            scaled = torch.addmm(bias, weights, points.T)
            scaled.scatter_(0, own_label.unsqueeze(0), math.inf)
            into[start:stop], target[start:stop] = scaled.min(0)
            own[start:stop] = (points[:, :d] - centroids[own_label]).square().sum(1)
        # Rounding in the expanded form: the exact gains decide below.
        gain = shrink[labels] * own - into
        spare = (into - own).clamp_min_(0)
        moves = _all_moves(x, labels, centroids, sums, counts, gain, target, grow, shrink, own, acc)
        if moves is None:
            moves = _matched_moves(x, labels, centroids, sums, counts, gain, target, grow, shrink, acc)
        return (*moves, spare)


def _all_moves(x, labels, centroids, sums, counts, gain, target, grow, shrink, own, acc):
    """Each point whose move to its best other cluster gains (by exact differences) makes it,
    if the inertia of the partition so reached, computed from the moved points alone, is lower;
    returns (labels, means, number of moves), or None when fewer than two points would move or
    the inertia would not drop. Host syncs: the candidates' count, and the decision."""
    k = centroids.shape[0]
    candidates = torch.nonzero(gain > 0).squeeze(1)
    if candidates.shape[0] < 2:
        return None
    points = x[candidates].to(acc)
    source, to = labels[candidates], target[candidates]
    # Exact single-move gains, from differences (the expanded form rounds).
    into = (points - centroids[to]).square().sum(1)
    out = own[candidates]
    moving = shrink[source] * out - grow[to] * into > 64 * torch.finfo(acc).eps * shrink[source] * out
    # Cluster C, with mean c, losing the points R and gaining A, changes its squared error by
    # Σ_A ‖p − c‖² − Σ_R ‖p − c‖² − ‖Σ_A (p − c) − Σ_R (p − c)‖² / n'_C (n'_C: its new size):
    # exact, and from the moved points only, so it does not cancel against the whole inertia.
    f64 = torch.float64
    weight = moving.to(f64)
    ones = moving.long()
    new_size = counts - _scatter_sum(ones, source, k) + _scatter_sum(ones, to, k)
    drift = _scatter_sum((points - centroids[to]).to(f64) * weight.unsqueeze(1), to, k) - _scatter_sum(
        (points - centroids[source]).to(f64) * weight.unsqueeze(1), source, k
    )
    change = ((into.to(f64) - out.to(f64)) * weight).sum() - (
        drift.square().sum(1) / new_size.clamp_min(1).to(f64)
    ).sum()
    n_moving, emptied, total = torch.stack([ones.sum().double(), (new_size <= 0).sum().double(), change]).tolist()
    if n_moving < 2 or emptied or not total < 0:
        return None
    moved = points * moving.unsqueeze(1).to(acc)
    sums += _scatter_sum(moved, to, k) - _scatter_sum(moved, source, k)
    counts.copy_(new_size)
    labels = labels.index_put((candidates,), torch.where(moving, to, source))
    means = sums / new_size.unsqueeze(1).to(acc)
    return labels, means, ones.sum().double()


def _matched_moves(x, labels, centroids, sums, counts, gain, target, grow, shrink, acc):
    """The matched moves of _hartigan_step, applied (sums and counts updated in place)."""
    n = x.shape[0]
    k = centroids.shape[0]
    # Each cluster's best candidate by the expanded-form gains (ties: the lowest point index) ...
    best_gain = torch.full((k,), -math.inf, dtype=acc, device=x.device).scatter_reduce_(0, labels, gain, "amax")
    index = torch.arange(n, device=x.device)
    point = (
        torch.full((k,), n, dtype=torch.int64, device=x.device)
        .scatter_reduce_(0, labels, torch.where(gain == best_gain[labels], index, n), "amin")
        .clamp_max_(n - 1)
    )
    # ... whose gain, from exact differences, must clear the rounding of the expanded form.
    clusters = torch.arange(k, device=x.device)
    move_to = target[point]
    candidate = x[point].to(acc)
    out = shrink * (candidate - centroids).square().sum(1)
    move_gain = out - grow[move_to] * (candidate - centroids[move_to]).square().sum(1)
    has = (labels[point] == clusters) & (move_gain > 64 * torch.finfo(acc).eps * out)
    move_gain = torch.where(has, move_gain, -math.inf)
    move_to = torch.where(has, move_to, clusters)
    # Keep a move if no candidate touching its source or target gains more (ties: lower point).
    touch = move_gain.clone().scatter_reduce_(0, move_to, move_gain, "amax")
    keep = has & (move_gain == touch) & (move_gain == touch[move_to])
    first = torch.where(keep, point, n)
    first = first.clone().scatter_reduce_(0, move_to, first, "amin")
    keep &= (point == first) & (point == first[move_to])
    moving = torch.where(keep.unsqueeze(1), candidate, 0)
    sums -= moving
    sums.index_add_(0, move_to, moving)  # one row per cluster at most: deterministic
    ones = keep.long()
    counts -= ones
    counts.index_add_(0, move_to, ones)
    new_label = torch.full((n + 1,), -1, dtype=torch.int64, device=x.device)
    new_label[torch.where(keep, point, n)] = torch.where(keep, move_to, -1)
    labels = torch.where(new_label[:n] >= 0, new_label[:n], labels)
    centroids = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp_min(1).unsqueeze(1).to(acc), centroids)
    return labels, centroids, ones.sum().double()


def _label_counts(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Points per cluster. bincount on CPU (fastest there); a scatter elsewhere, since CUDA's
    bincount reads the largest label back to the host to size its output (a sync per call)."""
    if labels.device.type == "cpu":
        return torch.bincount(labels, minlength=k)
    return torch.zeros(k, dtype=torch.int64, device=labels.device).scatter_add_(0, labels, torch.ones_like(labels))


def _cluster_sums(points: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Σ of the points (N, D) of each cluster: deterministic on every device.

    index_add_ on CPU for small batches; otherwise embedding_bag over the points grouped by a
    stable sort (CUDA's index_add_ is not deterministic: float atomics; on CPU the sort is 2-3x
    faster than index_add_ on large batches, which runs row by row)."""
    if points.device.type == "cpu" and points.numel() <= _INDEX_ADD_ELEMENTS:
        return torch.zeros(counts.shape[0], points.shape[1], dtype=points.dtype).index_add_(0, labels, points)
    order = torch.argsort(labels.to(torch.int32), stable=True)  # int32 keys sort ~2x faster
    offsets = torch.zeros(counts.shape[0] + 1, dtype=torch.int64, device=labels.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return F.embedding_bag(order, points, offsets, mode="sum", include_last_offset=True)


def _scatter_sum(values: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Σ of values (N,) or (N, M) per label in [0, k): deterministic on every device."""
    if values.dim() == 1:
        if values.device.type == "cpu" or not values.is_floating_point():
            return torch.zeros(k, dtype=values.dtype, device=values.device).index_add_(0, labels, values)
        return _cluster_sums(values.unsqueeze(1), labels, _label_counts(labels, k))[:, 0]
    return _cluster_sums(values, labels, _label_counts(labels, k))


def _reseed_empty(x, sums, counts, labels, dists, n_empty, acc) -> None:
    """Move the n_empty points farthest from their centroids into the empty clusters (sums,
    counts and labels updated in place)."""
    far = torch.topk(dists, n_empty, sorted=True).indices
    empty = torch.nonzero(counts == 0).squeeze(1)
    points = x[far].to(acc)
    old = labels[far]
    sums.index_add_(0, old, -points)
    counts.index_add_(0, old, torch.full_like(old, -1))
    sums[empty] = points
    counts[empty] = 1
    labels[far] = empty
