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
            replaced by random vectors of the current batch, and their usage is reset to the
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
        for name, value in (("dim", dim), ("codebook_size", codebook_size), ("kmeans_iters", kmeans_iters)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {value!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be ≥ 0, got {beta!r}")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be None or in [0, 1), got {ema_decay!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if not dead_code_threshold >= 0:
            raise ValueError(f"dead_code_threshold must be ≥ 0, got {dead_code_threshold!r}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.beta = float(beta)
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.eps = float(eps)
        self.dead_code_threshold = float(dead_code_threshold)
        self.kmeans_init = bool(kmeans_init)
        self.sync_distributed = bool(sync_distributed)
        self.kmeans_iters = kmeans_iters

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
        if self.training:
            distributed = self._distributed()
            if distributed and not self._ranks_synced:
                self._broadcast_state()
            if not self._initted:
                self._init_from_kmeans(flat32.detach(), distributed)

        codebook = self.codebook
        with torch.no_grad():
            indices, _ = nearest_centroid(flat32.detach(), codebook.detach().float())
        q = F.embedding(indices, codebook).float()  # gradients reach a Parameter codebook
        commitment = _mean_sq(flat32, q.detach())
        if self.ema_decay is None:
            loss = _mean_sq(q, flat32.detach()) + self.beta * commitment
        else:
            loss = self.beta * commitment
        quantized = flat + (q.to(flat.dtype) - flat).detach()

        counts = torch.zeros(self.codebook_size, device=flat.device).index_add_(
            0, indices, torch.ones(indices.shape, device=flat.device)
        )
        usage = counts / max(indices.shape[0], 1)
        perplexity = torch.exp(-(usage * torch.log(usage.clamp_min(1e-10))).sum())

        if self.training:
            self._update(flat32.detach(), indices, counts, distributed)
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
    def _update(self, flat32: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor, distributed: bool) -> None:
        ema = self.ema_decay is not None
        decay = self.ema_decay if ema else 0.99
        if ema:
            sums = torch.zeros_like(self.embed_avg).index_add_(0, indices, flat32)
            stats = torch.cat([counts.unsqueeze(1), sums], 1)
        else:
            stats = counts.unsqueeze(1).clone()
        if distributed:
            dist.all_reduce(stats)
        self.cluster_size.mul_(decay).add_(stats[:, 0], alpha=1.0 - decay)
        if ema:
            self.embed_avg.mul_(decay).add_(stats[:, 1:], alpha=1.0 - decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps)
            self.codebook.copy_(self.embed_avg / (smoothed * total).unsqueeze(1))
        if self.dead_code_threshold > 0:
            self._replace_dead_codes(flat32, distributed)

    def _replace_dead_codes(self, flat32: torch.Tensor, distributed: bool) -> None:
        dead = self.cluster_size < self.dead_code_threshold
        n = flat32.shape[0]
        if n > 0:
            picks = torch.randint(n, (self.codebook_size,), device=flat32.device)
            candidates = flat32[picks].to(self.codebook.dtype)
        else:  # an empty batch replaces codes by themselves (still joins the broadcast)
            candidates = self.codebook.detach().clone()
        if distributed:
            dist.broadcast(candidates, src=0)  # rank 0's batch supplies the replacements
        dead_rows = dead.unsqueeze(1)
        self.codebook.copy_(torch.where(dead_rows, candidates, self.codebook))
        self.cluster_size.masked_fill_(dead, self.dead_code_threshold)
        if self.ema_decay is not None:
            self.embed_avg.copy_(torch.where(dead_rows, candidates * self.dead_code_threshold, self.embed_avg))

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
        return centroids, sizes.clamp_min(1.0)


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
