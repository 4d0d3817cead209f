"""VectorQuantizer: the VQ-VAE bottleneck (van den Oord et al. 2017) on latentops.nearest_centroid,
with EMA codebook updates (VQ-VAE-2 / sonnet's VectorQuantizerEMA), dead-code replacement, k-means
initialization and codebook synchronization under torch.distributed."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from latentops.kmeans import kmeans
from latentops.ops import nearest_centroid
from latentops.ops.checks import check_bool, check_int, check_real


class VQOutput(NamedTuple):
    """quantized: (..., dim) in z's dtype, equal to the chosen codewords in value and to z in
    gradient (straight-through); indices: int64 (...); loss: float32 scalar to add to the training
    loss; perplexity: float32 scalar, exp of the entropy of this batch's code usage (local batch)."""

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor


class VectorQuantizer(nn.Module):
    """Vector-quantization bottleneck: each vector of z is replaced by its nearest codeword.

    Args:
        dim: size D of the vectors (z's last dimension).
        codebook_size: number K of codewords.
        beta: weight of the commitment loss ‖z − sg(q)‖² (mean over elements).
        ema_decay: None: the codebook is an nn.Parameter learned by gradient through the codebook
            loss ‖sg(z) − q‖², and loss = codebook loss + beta · commitment loss. A float in [0, 1):
            the codebook is a buffer updated in training mode by exponential moving averages of
            the cluster sizes and sums, with Laplace smoothing of the sizes (VQ-VAE-2, sonnet's
            VectorQuantizerEMA), and loss = beta · commitment loss.
        eps: Laplace smoothing constant of the EMA cluster sizes.
        dead_code_threshold: in training mode, codes whose usage (the EMA of their per-batch
            assignment count; decay ema_decay, or 0.99 with ema_decay=None) falls below this are
            replaced by random finite vectors of the current batch, and their usage is reset to the
            threshold. 0 disables it.
        kmeans_init: on the first training forward, set the codebook to latentops.kmeans of that
            batch (flattened; with fewer vectors than codes, the rest are random batch vectors).
        sync_distributed: under torch.distributed (initialized, world size > 1), all-reduce the
            cluster statistics, run k-means init on the data of all ranks, and take replacement
            vectors from rank 0's batch, so every rank holds the same codebook.
        kmeans_iters: Lloyd iterations of the k-means init.

    State: `codebook` (K, D) float32, `cluster_size` (K,) EMA usage (starts at 1: one
    pseudo-observation at each initial codeword, so codes no batch picks yet decay in place instead
    of being divided by a vanishing smoothed count), `embed_avg` (K, D) EMA of cluster sums (EMA
    mode only), `initted` (bool tensor: k-means init done).

    forward(z) takes z (..., dim) and returns VQOutput(quantized, indices, loss, perplexity). The
    training-mode updates happen after the assignment, so they affect the next call. The forward
    makes no host syncs apart from the one-time k-means init; in eval mode it changes no state and
    can be compiled with torch.compile. Keep the module in float32 (z may be half precision: the
    search runs on z cast to float32, quantized comes back in z's dtype).

    Non-finite inputs. One bad sample must not poison the codebook for good, and must not be
    hidden either. A row of z with a NaN or ±inf (after the cast to float32) is:
      - returned: its quantized row is NaN, its index is whatever latentops.nearest_centroid
        gives (0 for NaN), and the loss is non-finite, so a finite-loss check (or a GradScaler)
        skips the step;
      - left out of everything that changes the codebook: the EMA counts and sums, the usage
        that decides dead codes, the dead-code replacement candidates, the k-means init data, and
        (ema_decay=None) the codebook term of the loss, so the codebook's gradient stays finite;
      - left out of the perplexity.
    A batch without finite rows (an empty one included) leaves the state as it was: no decay, no
    replacement, no k-means init (the init waits for a batch with data). An update that would
    still make a code's statistics non-finite (float32 overflow of the sums of huge inputs) is
    skipped for that code. Under torch.distributed the same rules apply to the all-reduced
    statistics and to rank 0's replacement candidates, so ranks stay identical.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        beta: float = 0.25,
        ema_decay: float | None = 0.99,
        eps: float = 1e-5,
        dead_code_threshold: float = 0.0,
        kmeans_init: bool = False,
        sync_distributed: bool = True,
        kmeans_iters: int = 10,
    ):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.codebook_size = check_int("codebook_size", codebook_size)
        self.kmeans_iters = check_int("kmeans_iters", kmeans_iters)
        self.beta = check_real("beta", beta, minimum=0.0)
        if ema_decay is not None:
            ema_decay = check_real("ema_decay", ema_decay, minimum=0.0, maximum=1.0, open_maximum=True)
        self.ema_decay = ema_decay
        self.eps = check_real("eps", eps, minimum=0.0, open_minimum=True)
        self.dead_code_threshold = check_real("dead_code_threshold", dead_code_threshold, minimum=0.0)
        self.kmeans_init = check_bool("kmeans_init", kmeans_init)
        self.sync_distributed = check_bool("sync_distributed", sync_distributed)
        dim, codebook_size = self.dim, self.codebook_size

        codebook = torch.empty(codebook_size, dim)
        nn.init.kaiming_uniform_(codebook)
        if self.ema_decay is None:
            self.codebook = nn.Parameter(codebook)
        else:
            self.register_buffer("codebook", codebook)
            self.register_buffer("embed_avg", codebook.clone())
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("initted", torch.tensor(not self.kmeans_init))
        # Python mirror of `initted`, so forward never reads a tensor to decide on the init.
        self._initted = not self.kmeans_init
        self._ranks_synced = False
        self.register_load_state_dict_post_hook(_mirror_initted)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, beta={self.beta}, "
            f"ema_decay={self.ema_decay}, dead_code_threshold={self.dead_code_threshold}, "
            f"kmeans_init={self.kmeans_init}"
        )

    def forward(self, z: torch.Tensor) -> VQOutput:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if not z.is_floating_point():
            raise TypeError(f"z must be a float tensor, got {z.dtype}")
        if z.dim() < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (..., dim = {self.dim}), got {tuple(z.shape)}")
        flat = z.reshape(-1, self.dim)
        flat32 = flat.float()
        # Rows with a NaN/inf are returned but never reach the codebook (see the class docstring).
        finite = torch.isfinite(flat32).all(1)
        if self.training:
            distributed = self._distributed()
            if distributed and not self._ranks_synced:
                self._broadcast_state()
            if not self._initted:
                self._init_from_kmeans(flat32.detach()[finite], distributed)

        codebook = self.codebook
        with torch.no_grad():
            indices, _ = nearest_centroid(flat32.detach(), codebook.detach().float())
        q = F.embedding(indices, codebook).float()  # gradients reach a Parameter codebook
        commitment = _mean_sq(flat32, q.detach())
        if self.ema_decay is None:
            # where, not a product with the mask: 0 · NaN would still be NaN in the gradient.
            # Its mean is over the finite rows, so their gradient is the same with or without
            # bad rows in the batch.
            codebook_diff = torch.where(finite.unsqueeze(1), q - flat32.detach(), 0.0)
            codebook_loss = codebook_diff.square().sum() / (finite.sum() * self.dim).clamp_min(1)
            loss = codebook_loss + self.beta * commitment
        else:
            loss = self.beta * commitment
        # q + (z − sg(z)) rather than z + sg(q − z): the value is the codeword exactly, even where
        # |z| ≫ |q| would round z + (q − z) away from q. A non-finite row is NaN as a whole (its
        # index means nothing), not just where z was NaN.
        q_out = torch.where(finite.unsqueeze(1), q.detach(), float("nan")).to(flat.dtype)
        quantized = q_out + (flat - flat.detach())

        counts = torch.zeros(self.codebook_size, device=flat.device).index_add_(0, indices, finite.float())
        usage = counts / counts.sum().clamp_min(1.0)
        perplexity = torch.exp(-(usage * torch.log(usage.clamp_min(1e-10))).sum())

        if self.training:
            self._update(flat32.detach(), finite, indices, counts, distributed)
        return VQOutput(quantized.reshape(z.shape), indices.reshape(z.shape[:-1]), loss, perplexity)

    # -- training-mode state updates (all under no_grad, no host syncs) ------------------------

    def _distributed(self) -> bool:
        return self.sync_distributed and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    @torch.no_grad()
    def _broadcast_state(self) -> None:
        """Once: start every rank from rank 0's codebook, whatever their random init."""
        for tensor in self._state_tensors():
            dist.broadcast(tensor.data, src=0)
        self._ranks_synced = True

    def _state_tensors(self) -> list[torch.Tensor]:
        tensors = [self.codebook, self.cluster_size]
        if self.ema_decay is not None:
            tensors.append(self.embed_avg)
        return tensors

    @torch.no_grad()
    def _update(
        self, flat32: torch.Tensor, finite: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor, distributed: bool
    ) -> None:
        """EMA of the usage (and of the cluster sums in EMA mode) over the finite rows; counts
        holds only those rows. Every step is a torch.where, not an `if`: no host syncs."""
        ema = self.ema_decay is not None
        decay = self.ema_decay if ema else 0.99
        counts = counts.clone()
        if ema:
            # A large codebook (ACAI's 2^14 × 256) makes every full pass over it count: the EMA of
            # the sums is one scaled copy plus a scatter of the batch's rows, unless the sums of
            # all ranks are needed first.
            rows = torch.where(finite.unsqueeze(1), flat32, 0.0)
            if distributed:
                sums = torch.zeros_like(self.embed_avg).index_add_(0, indices, rows)
                dist.all_reduce(sums)
                avg = torch.add(self.embed_avg * decay, sums, alpha=1.0 - decay)
            else:
                avg = (self.embed_avg * decay).index_add_(0, indices, rows, alpha=1.0 - decay)
        if distributed:
            dist.all_reduce(counts)
        # No finite row anywhere (an empty batch included): no information, so no decay either;
        # with ema_decay=0 the update would otherwise divide zero sums by a zero total.
        has_data = counts.sum() > 0
        size = self.cluster_size * decay + counts * (1.0 - decay)
        ok = has_data & torch.isfinite(size)
        if ema:
            total = size.sum()
            smoothed = (size + self.eps) / (total + self.codebook_size * self.eps)
            code = avg / (smoothed * total).unsqueeze(1)
            # A code whose new statistics overflow float32 keeps its old ones (the batch's
            # contribution to it is dropped) rather than becoming inf/NaN for good. The old ones
            # are finite, so an overflow in avg shows in code too, and a row with an inf or NaN
            # has a non-finite sum (one pass, not isfinite's several).
            ok = ok & torch.isfinite(code.sum(1))
            torch.where(ok.unsqueeze(1), avg, self.embed_avg, out=self.embed_avg)
            torch.where(ok.unsqueeze(1), code, self.codebook.data, out=self.codebook.data)
        self.cluster_size.copy_(torch.where(ok, size, self.cluster_size))
        if self.dead_code_threshold > 0:
            self._replace_dead_codes(flat32, finite, distributed)

    def _replace_dead_codes(self, flat32: torch.Tensor, finite: torch.Tensor, distributed: bool) -> None:
        """Dead codes take uniformly drawn finite rows of the batch (rank 0's under
        torch.distributed); with no finite row there, they stay as they are, still dead."""
        dead = self.cluster_size < self.dead_code_threshold
        n = flat32.shape[0]
        if n > 0:
            # The r-th finite row, r uniform in [0, m): searchsorted on the running count of finite
            # rows finds it without reading m on the host. With m = 0 the pick is a non-finite row,
            # which the finiteness test below refuses.
            running = finite.cumsum(0)
            m = running[-1]
            r = (torch.rand(self.codebook_size, device=flat32.device) * m).long().clamp_max(m - 1).clamp_min(0)
            picks = torch.searchsorted(running, r + 1).clamp_max(n - 1)
            candidates = flat32[picks].to(self.codebook.dtype)
        else:  # an empty batch offers nothing (still joins the broadcast): NaN rows, refused below
            candidates = torch.full_like(self.codebook, float("nan"))
        if distributed:
            dist.broadcast(candidates, src=0)  # rank 0's batch supplies the replacements
        replace = dead & torch.isfinite(candidates).all(1)
        rows = replace.unsqueeze(1)
        self.codebook.copy_(torch.where(rows, candidates, self.codebook))
        self.cluster_size.masked_fill_(replace, self.dead_code_threshold)
        if self.ema_decay is not None:
            self.embed_avg.copy_(torch.where(rows, candidates * self.dead_code_threshold, self.embed_avg))

    @torch.no_grad()
    def _init_from_kmeans(self, flat32: torch.Tensor, distributed: bool) -> None:
        """Runs once (host syncs allowed): rank 0 clusters the data of all ranks and broadcasts."""
        data = _all_gather_rows(flat32) if distributed else flat32
        if data.shape[0] == 0:
            return  # nothing to learn from yet (same on every rank: data is gathered)
        rank = dist.get_rank() if distributed else 0
        centroids = torch.empty_like(self.codebook, dtype=torch.float32)
        sizes = torch.empty(self.codebook_size, device=centroids.device)
        if rank == 0:
            centroids, sizes = self._kmeans_codebook(data)
        if distributed:
            dist.broadcast(centroids, src=0)
            dist.broadcast(sizes, src=0)
        self.codebook.copy_(centroids)
        self.cluster_size.copy_(sizes)
        if self.ema_decay is not None:
            self.embed_avg.copy_(centroids * sizes.unsqueeze(1))
        self.initted.fill_(True)
        self._initted = True

    def _kmeans_codebook(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, k = data.shape[0], self.codebook_size
        seed = int(torch.randint(2**31 - 1, (1,)).item())  # follows torch.manual_seed
        result = kmeans(data, min(k, n), iters=self.kmeans_iters, seed=seed)
        sizes = torch.bincount(result.labels, minlength=k).float()
        centroids = result.centroids.float()
        if n < k:  # too few vectors: the remaining codes start at random batch vectors
            generator = torch.Generator().manual_seed(seed)
            extra = torch.randint(n, (k - n,), generator=generator).to(data.device)
            centroids = torch.cat([centroids, data[extra]])
        # Usage of at least 1, as at construction: a code without points keeps its position.
        sizes = sizes.clamp_min(1.0)
        # Finite data near the float32 limit can still overflow a mean or a cluster sum: such a
        # code starts at a batch vector with usage 1 instead (its sum is then the vector itself).
        bad = ~torch.isfinite(centroids).all(1)
        if bad.any():
            generator = torch.Generator().manual_seed(seed + 1)
            picks = torch.randint(n, (int(bad.sum()),), generator=generator).to(data.device)
            centroids[bad] = data[picks]
        if self.ema_decay is not None:
            sizes[~torch.isfinite(centroids * sizes.unsqueeze(1)).all(1)] = 1.0
        return centroids, sizes


def _mean_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of (a − b)², and 0 (still in the graph) for empty inputs."""
    return (a - b).square().sum() / max(a.numel(), 1)


def _all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """The rows of every rank, concatenated in rank order (ranks may hold different counts)."""
    world = dist.get_world_size()
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = [torch.empty_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    counts = [int(c.item()) for c in counts]
    padded = rows.new_zeros(max(counts), rows.shape[1])
    padded[: rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:c] for g, c in zip(gathered, counts)])


def _mirror_initted(module: VectorQuantizer, incompatible_keys) -> None:
    module._initted = bool(module.initted)
