"""Two gloo processes train a VectorQuantizer on different data; their codebooks must agree, and the
synced statistics must equal one process's on the concatenated batch. Non-finite rows and batches
without a finite row follow the module's policy on the synced path too: never in the statistics,
never a replacement, identical ranks."""

import datetime
import os

import pytest
import torch
import torch.distributed as dist

from conftest import run_processes
from latentops.nn import VectorQuantizer

WORLD = 2
DIM, CODES = 3, 12
TIMEOUT_S = 45
SCENARIOS = ("ema", "kmeans", "dead", "nonfinite", "nonfinite_dead")

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo"
)


def _batch(rank: int, step: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1000 * step + rank)
    rows = 37 + 6 * rank  # ranks hold different numbers of vectors
    return torch.randn(rows, DIM, generator=generator) + rank + shift


def _make(scenario: str) -> VectorQuantizer:
    torch.manual_seed(0)
    if scenario == "ema":
        return VectorQuantizer(DIM, CODES, ema_decay=0.8)
    if scenario == "kmeans":
        return VectorQuantizer(DIM, CODES, ema_decay=None, kmeans_init=True)
    if scenario == "nonfinite":  # decay 0: a batch without finite rows used to give 0 / 0
        return VectorQuantizer(DIM, CODES, ema_decay=0.0, kmeans_init=True)
    if scenario == "nonfinite_dead":
        return VectorQuantizer(DIM, CODES, ema_decay=0.5, dead_code_threshold=2.0)
    return VectorQuantizer(DIM, CODES, ema_decay=0.5, kmeans_init=True, dead_code_threshold=2.0)


def _spoil(z: torch.Tensor, every: int) -> torch.Tensor:
    """z with a NaN in every `every`-th row and ±inf rows next to them."""
    z = z.clone()
    z[::every, 0] = float("nan")
    z[1::every] = float("inf")
    z[2::every, -1] = -float("inf")
    return z


def _batches(scenario: str, rank: int) -> list[torch.Tensor]:
    if scenario == "dead":  # later batches move away: most codes fall out of use and get replaced
        return [_batch(rank, 0)] + [_batch(rank, s, shift=8.0) for s in (1, 2, 3)]
    if scenario == "nonfinite":  # bad rows; then rank 1 empty; then no finite row on any rank
        first, second, third = _batch(rank, 0), _batch(rank, 1), _batch(rank, 2)
        return [_spoil(first, 5), _spoil(second, 4)[: 0 if rank else None], torch.full_like(third, float("nan"))]
    if scenario == "nonfinite_dead":  # rank 0's last batch has no finite row: no replacement
        last = _spoil(_batch(rank, 3, shift=8.0), 1) if rank == 0 else _batch(rank, 3, shift=-8.0)
        return [_spoil(_batch(rank, 0), 6), *(_spoil(_batch(rank, s, shift=8.0), 3) for s in (1, 2)), last]
    return [_batch(rank, s) for s in range(3)]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        results = {}
        for scenario in SCENARIOS:
            vq = _make(scenario)
            torch.manual_seed(100 + rank)  # different random streams per rank
            if rank == 0:
                torch.manual_seed(7)  # the stream the k-means seed is drawn from
            for z in _batches(scenario, rank):
                vq(z)
            results[scenario] = {k: v.detach().clone() for k, v in vq.state_dict().items()}
            results[scenario]["last_batch"] = z
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _run_ranks(tmp_path) -> list[dict]:
    run_processes(_worker, (str(tmp_path / "init"), str(tmp_path)), WORLD, TIMEOUT_S)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    return _run_ranks(tmp_path_factory.mktemp("dist"))


def _single_process(scenario: str) -> VectorQuantizer:
    vq = _make(scenario)
    torch.manual_seed(7)
    per_rank = [_batches(scenario, r) for r in range(WORLD)]
    for step in range(len(per_rank[0])):
        vq(torch.cat([batches[step] for batches in per_rank]))
    return vq


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ranks_hold_identical_codebooks(rank_results, scenario):
    a, b = (results[scenario] for results in rank_results)
    assert not torch.equal(a["last_batch"], b["last_batch"]) or scenario == "nonfinite"
    for name in ("codebook", "cluster_size", "embed_avg"):  # non-finite rows never reach them
        assert name not in a or torch.isfinite(a[name]).all(), name
    for name in ("codebook", "cluster_size", "initted"):
        assert torch.equal(a[name], b[name]), name
    if "embed_avg" in a:
        assert torch.equal(a["embed_avg"], b["embed_avg"])


@pytest.mark.parametrize("scenario", ["ema", "kmeans", "nonfinite"])
def test_synced_state_equals_one_process_on_the_concatenated_batch(rank_results, scenario):
    single = _single_process(scenario).state_dict()
    synced = rank_results[0][scenario]
    for name, tensor in single.items():
        torch.testing.assert_close(synced[name], tensor, rtol=1e-5, atol=1e-5, msg=name)


def test_dead_codes_are_replaced_from_rank_zero(rank_results):
    state = rank_results[0]["dead"]
    assert bool(state["initted"])
    codebook = state["codebook"]
    from_rank0 = (codebook.unsqueeze(1) == rank_results[0]["dead"]["last_batch"]).all(-1).any(1)
    from_rank1 = (codebook.unsqueeze(1) == rank_results[1]["dead"]["last_batch"]).all(-1).any(1)
    assert from_rank0.sum() > 0  # replacements happened in the last step
    assert from_rank1.sum() == 0  # and came from rank 0's batch on both ranks


def test_no_replacement_when_rank_zero_has_no_finite_row(rank_results):
    # The last step: rank 0's batch is all non-finite, rank 1's far away: codes that die there
    # stay where they were (still dead) on both ranks instead of taking a NaN row.
    state = rank_results[0]["nonfinite_dead"]
    assert torch.isfinite(state["codebook"]).all()
    from_rank1 = (state["codebook"].unsqueeze(1) == rank_results[1]["nonfinite_dead"]["last_batch"]).all(-1)
    assert not from_rank1.any()
    assert (state["cluster_size"] < 2.0).any()  # some codes are dead and were left alone
