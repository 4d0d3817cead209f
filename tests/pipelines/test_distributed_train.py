"""The training loop under torch.distributed: two gloo processes split each global batch, average
gradients and keep VQ codebooks synchronized (what `torchrun --nproc-per-node 2 latentops train`
does)."""

import datetime
import os

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from conftest import run_processes
from latentops.data import LinesDataset
from latentops.pipelines import distributed, train
from latentops.pipelines.autoencoders import AutoencoderTask
from latentops.pipelines.run_folder import RunFolder, RunFolderBusy
from latentops.pipelines.runner import Runner

from .tiny import tiny_config

WORLD = 2
TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo"
)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        for model in ("baseline", "vqvae"):
            config = tiny_config(os.path.join(out_dir, model), model, steps=4)
            run = Runner(AutoencoderTask(config, LinesDataset(test_count=64)), distributed.setup("cpu"))
            run.run()
            torch.save(
                {k: v.detach().clone() for k, v in run.training.model.state_dict().items()},
                os.path.join(out_dir, f"{model}-rank{rank}.pt"),
            )
        # A folder another run holds: every rank must stop at once (not only rank 0, which takes
        # the lock, while the others wait for it at a barrier).
        config = tiny_config(os.path.join(out_dir, "held"), "baseline", steps=4)
        try:
            Runner(AutoencoderTask(config, LinesDataset(test_count=64)), distributed.setup("cpu")).run()
        except RunFolderBusy as error:
            with open(os.path.join(out_dir, f"held-rank{rank}.txt"), "w") as f:
                f.write(str(error))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    held = RunFolder(out / "held")
    held.lock()
    try:
        run_processes(_worker, (str(out / "init"), str(out)), WORLD, TIMEOUT_S)
    finally:
        held.unlock()
    return out


@pytest.mark.parametrize("model", ["baseline", "vqvae"])
def test_ranks_end_with_identical_models(two_ranks, model):
    a, b = (torch.load(two_ranks / f"{model}-rank{r}.pt") for r in range(WORLD))
    for name in a:
        assert torch.equal(a[name], b[name]), name
    saved = load_file(str(two_ranks / model / "checkpoint-4" / "model.safetensors"))
    assert all(torch.equal(saved[name], a[name]) for name in a)


def test_two_processes_train_like_one_on_the_global_batch(two_ranks, tmp_path):
    torch.set_num_threads(1)
    train(tiny_config(tmp_path / "single", "baseline", steps=4))
    single = load_file(str(tmp_path / "single" / "checkpoint-4" / "model.safetensors"))
    parallel = torch.load(two_ranks / "baseline-rank0.pt")
    for name, tensor in single.items():
        # Equal up to the order of the float sums (two half-batch means averaged vs one mean).
        torch.testing.assert_close(parallel[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_vq_codebook_moved_and_stayed_in_sync(two_ranks):
    state = torch.load(two_ranks / "vqvae-rank1.pt")
    assert bool(state["quantizer.initted"])


def test_a_locked_folder_stops_every_rank(two_ranks):
    for rank in range(WORLD):
        message = (two_ranks / f"held-rank{rank}.txt").read_text()
        assert f"pid {os.getpid()} on " in message, rank
    assert not (two_ranks / "held" / "metrics.jsonl").exists()
