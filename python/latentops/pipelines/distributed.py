"""Data parallelism for the training loop: process-group setup from torchrun's environment and
gradient averaging.

Gradients are averaged by hand (one flattened all-reduce per parameter group after its backward)
instead of DistributedDataParallel: the adversarial models step two optimizers on two losses whose
backwards are restricted to their own parameters, which DDP's reducer (one backward per forward,
every parameter once) does not fit."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0, world: int = 1) -> torch.device:
    """--device (auto, cpu, cuda, cuda:N; run_options.DEVICE checks the spelling) as a device of
    this machine; ValueError naming --device when it has no such device, rather than torch's
    assertion from deep inside CUDA's initialization."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        target = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if target.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: this machine has no CUDA device (or torch was built without CUDA); "
                "use --device cpu"
            )
        count = torch.cuda.device_count()
        index = target.index if target.index is not None else (local_rank if world > 1 else torch.cuda.current_device())
        if index >= count:
            raise ValueError(
                f"--device {device}: this process would use cuda:{index}, but the machine has {count} CUDA device(s)"
            )
        target = torch.device("cuda", index)
    return target


def setup(device: str) -> Context:
    """The device and, under torchrun (WORLD_SIZE > 1), the process group: gloo on CPU, nccl on
    CUDA with one GPU per local rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank, world)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    context = Context(rank, world, target)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        context.initialized_here = True
    return context


def teardown(context: Context) -> None:
    if context.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def broadcast_module(module: torch.nn.Module) -> None:
    """Every rank starts from rank 0's parameters and buffers."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """Replace each .grad by its mean over ranks (missing gradients count as zeros)."""
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def gather_objects(obj) -> list:
    """obj of every rank, in rank order (a one-element list when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
