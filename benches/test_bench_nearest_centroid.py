"""pytest-benchmark suite, CPU: latentops nearest_centroid vs FAISS and torch on the issue's case.

    .venv/bin/python -m pytest benches --benchmark-enable --benchmark-group-by=param:case

Every timed call is also checked against the reference, so a fast wrong kernel cannot pass.
"""

import pytest
import torch

import latentops
from latentops.reference import nearest_centroid as reference

CASES = {"N16384-K1024-D64": (16384, 1024, 64), "N200000-K256-D64": (200_000, 256, 64)}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request):
    n, k, d = CASES[request.param]
    gen = torch.Generator().manual_seed(0)
    z, c = torch.randn(n, d, generator=gen), torch.randn(k, d, generator=gen)
    return request.param, z, c, reference.nearest_centroid(z, c)[0]


def test_latentops_cpu(benchmark, case):
    name, z, c, expected = case
    benchmark.group = name
    indices, _ = benchmark(latentops.nearest_centroid, z, c, backend="cpu")
    assert torch.equal(indices, expected)


def test_faiss_flat_l2(benchmark, case):
    faiss = pytest.importorskip("faiss")
    name, z, c, expected = case
    benchmark.group = name
    index = faiss.IndexFlatL2(c.shape[1])
    index.add(c.numpy())
    _, found = benchmark(index.search, z.numpy(), 1)
    assert (torch.from_numpy(found[:, 0]) == expected).float().mean() > 0.999


def test_torch_cdist_argmin(benchmark, case):
    name, z, c, expected = case
    benchmark.group = name
    indices = benchmark(lambda: torch.cdist(z, c).argmin(1))
    assert (indices == expected).float().mean() > 0.999


def test_torch_mm_argmin(benchmark, case):
    name, z, c, expected = case
    benchmark.group = name
    indices = benchmark(lambda: ((c * c).sum(1) - 2 * z @ c.T).argmin(1))
    assert (indices == expected).float().mean() > 0.999
