import importlib

import numpy as np
import pytest
import torch

from latentops.kmeans import KMeansResult, kmeans

kmeans_module = importlib.import_module("latentops.kmeans")

sklearn_cluster = pytest.importorskip("sklearn.cluster")
sklearn_datasets = pytest.importorskip("sklearn.datasets")
sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _digits() -> torch.Tensor:
    return torch.tensor(sklearn_datasets.load_digits().data, dtype=torch.float32)


def _inertia64(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> float:
    return float((x.double() - centroids.double()[labels]).square().sum())


def _count_assignments(monkeypatch) -> list[int]:
    calls = [0]
    real = kmeans_module.nearest_centroid

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(kmeans_module, "nearest_centroid", counting)
    return calls


@pytest.mark.parametrize("n_init", [1, 10])
def test_inertia_within_one_percent_of_sklearn_on_digits(n_init):
    x = _digits()
    seeds = range(5) if n_init == 1 else range(1)  # one restart is luck: average a few seeds
    ours = [kmeans(x, 10, n_init=n_init, seed=s).inertia for s in seeds]
    theirs = [sklearn_cluster.KMeans(10, n_init=n_init, random_state=s).fit(x.numpy()).inertia_
              for s in seeds]
    assert np.mean(ours) <= 1.01 * np.mean(theirs)


def test_result_is_consistent():
    x = _digits()[:1001]
    result = kmeans(x, 13, seed=3)
    assert isinstance(result, KMeansResult)
    centroids, labels, inertia = result
    assert centroids.shape == (13, 64) and centroids.dtype == torch.float32
    assert labels.shape == (1001,) and labels.dtype == torch.int64
    assert isinstance(inertia, float)
    # labels are the nearest centroids and inertia their squared distances
    ref = torch.cdist(x.double(), centroids.double()).argmin(1)
    assert torch.equal(labels, ref)
    assert inertia == pytest.approx(_inertia64(x, centroids, labels), rel=1e-5)


def test_blobs_recovered():
    x, y = sklearn_datasets.make_blobs(n_samples=3001, centers=7, n_features=5, cluster_std=0.5,
                                       random_state=11)
    x = torch.tensor(x, dtype=torch.float32)
    result = kmeans(x, 7, n_init=3, seed=1)
    sk = sklearn_cluster.KMeans(7, n_init=3, random_state=1).fit(x.numpy())
    assert result.inertia <= 1.01 * sk.inertia_
    assert sklearn_metrics.adjusted_rand_score(y, result.labels.numpy()) == 1.0


def test_subsampled_training_labels_every_point():
    x, _ = sklearn_datasets.make_blobs(n_samples=5003, centers=9, n_features=6, cluster_std=0.7,
                                       random_state=5)
    x = torch.tensor(x, dtype=torch.float32)
    full = kmeans(x, 9, n_init=3, seed=2)
    sampled = kmeans(x, 9, n_init=3, seed=2, max_points_per_centroid=40)  # 360 of 5003 points
    assert sampled.labels.shape == (5003,)
    assert torch.equal(sampled.labels, torch.cdist(x.double(), sampled.centroids.double()).argmin(1))
    assert sampled.inertia == pytest.approx(_inertia64(x, sampled.centroids, sampled.labels), rel=1e-5)
    assert sampled.inertia <= 1.06 * full.inertia  # centroids from ~40 points each: ~1/40 worse
    # No subsampling when N ≤ k · max_points_per_centroid.
    assert kmeans(x, 9, seed=2, max_points_per_centroid=1000).inertia == kmeans(x, 9, seed=2).inertia


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_deterministic_for_a_seed(init):
    x = torch.randn(517, 9)
    a = kmeans(x, 17, seed=5, init=init, n_init=2)
    b = kmeans(x, 17, seed=5, init=init, n_init=2)
    assert torch.equal(a.centroids, b.centroids)
    assert torch.equal(a.labels, b.labels)
    assert a.inertia == b.inertia


def test_batches_do_not_change_the_result():
    x, _ = sklearn_datasets.make_blobs(n_samples=1003, centers=5, n_features=3, random_state=2)
    x = torch.tensor(x, dtype=torch.float32)
    whole = kmeans(x, 5, seed=0)
    batched = kmeans(x, 5, seed=0, batch_size=97)
    assert torch.equal(whole.labels, batched.labels)
    torch.testing.assert_close(whole.centroids, batched.centroids, rtol=1e-5, atol=1e-5)
    assert batched.inertia == pytest.approx(whole.inertia, rel=1e-5)


def test_empty_cluster_is_reseeded_with_the_farthest_point():
    cloud = torch.randn(40, 2) * 0.1
    outlier = torch.tensor([[30.0, 0.0]])
    x = torch.cat([cloud[:25], outlier, cloud[25:]])
    # The second centroid is so far away that no point picks it: cluster 1 starts empty.
    init = torch.tensor([[0.0, 0.0], [-1000.0, 0.0]])
    empty_after_one = kmeans(x, 2, init=init, iters=1)
    assert torch.bincount(empty_after_one.labels, minlength=2)[1] == 0
    result = kmeans(x, 2, init=init, iters=5)
    assert torch.equal(result.centroids[1], outlier[0])
    assert result.labels[25] == 1
    assert (result.labels[torch.arange(41) != 25] == 0).all()
    torch.testing.assert_close(result.centroids[0], cloud.mean(0), rtol=1e-5, atol=1e-6)


def test_k_equals_n():
    x = torch.randn(17, 3)
    result = kmeans(x, 17, seed=4)
    assert sorted(result.labels.tolist()) == list(range(17))
    assert result.inertia == pytest.approx(0.0, abs=1e-9)
    torch.testing.assert_close(result.centroids[result.labels], x)


def test_kmeans_plusplus_with_several_centres_per_step(monkeypatch):
    # large k places ⌈k / _PP_SEQUENTIAL_STEPS⌉ centres per step: exercise it with a small k
    monkeypatch.setattr(kmeans_module, "_PP_SEQUENTIAL_STEPS", 3)
    x = _digits()
    ours = np.mean([kmeans(x, 10, seed=s).inertia for s in range(5)])
    theirs = np.mean([sklearn_cluster.KMeans(10, n_init=1, random_state=s).fit(x.numpy()).inertia_
                      for s in range(5)])
    assert ours <= 1.01 * theirs
    # Centres placed in one step may coincide; empty-cluster reseeding then separates them.
    small = torch.randn(23, 4)
    result = kmeans(small, 23, seed=1, iters=3)
    assert sorted(result.labels.tolist()) == list(range(23))
    assert result.inertia == pytest.approx(0.0, abs=1e-9)


def test_k_equals_one():
    x = torch.randn(130, 4, dtype=torch.float64)
    result = kmeans(x, 1)
    assert result.centroids.dtype == torch.float64
    torch.testing.assert_close(result.centroids[0], x.mean(0))
    assert (result.labels == 0).all()


def test_tensor_init_and_tol_early_stop(monkeypatch):
    x = torch.rand(3001, 2)  # uniform data: Lloyd converges slowly
    calls = _count_assignments(monkeypatch)
    loose = kmeans(x, 20, iters=100, tol=0.5, seed=0)
    loose_calls = calls[0]
    assert loose_calls == 2  # the first change is measured after the second assignment
    calls[0] = 0
    strict = kmeans(x, 20, iters=100, tol=1e-6, seed=0)
    assert calls[0] > loose_calls
    assert strict.inertia <= loose.inertia
    # Starting from a converged solution, the inertia does not change: one more step stops it.
    calls[0] = 0
    again = kmeans(x, 20, iters=100, init=strict.centroids, tol=0.0)
    assert calls[0] <= 3
    assert again.inertia <= strict.inertia * (1 + 1e-6)


def test_iters_one_returns_the_initial_centroids():
    x = torch.randn(101, 3)
    init = x[:4].clone()
    result = kmeans(x, 4, init=init, iters=1)
    assert torch.equal(result.centroids, init)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input(dtype):
    x = _digits()[:700]
    ref = kmeans(x, 8, seed=2)
    result = kmeans(x.to(dtype), 8, seed=2)
    assert result.centroids.dtype == dtype
    assert result.inertia == pytest.approx(ref.inertia, rel=0.02)


def test_non_contiguous_and_grad_input():
    base = torch.randn(5, 301, requires_grad=True)
    x = base.T  # (301, 5), not contiguous
    result = kmeans(x, 6, seed=1)
    ref = kmeans(x.detach().contiguous(), 6, seed=1)
    assert torch.equal(result.labels, ref.labels)
    assert not result.centroids.requires_grad


def test_verbose_shows_progress(capsys):
    kmeans(torch.randn(200, 2), 3, iters=4, tol=0.0, verbose=True)
    assert "k-means" in capsys.readouterr().err


def test_backend_is_passed_through():
    x = torch.randn(50, 3)
    assert kmeans(x, 4, backend="torch").inertia == pytest.approx(kmeans(x, 4).inertia, rel=1e-4)
    with pytest.raises(ValueError, match="backend"):
        kmeans(x, 4, backend="nonsense")


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(x=torch.randn(10)), ValueError, "x"),
    (dict(x=torch.randn(2, 3, 4)), ValueError, "x"),
    (dict(x=torch.randint(0, 5, (10, 2))), TypeError, "x"),
    (dict(x=[[1.0, 2.0]]), TypeError, "x"),
    (dict(k=0), ValueError, "k"),
    (dict(k=11), ValueError, "k"),
    (dict(k=2.0), TypeError, "k"),
    (dict(iters=0), ValueError, "iters"),
    (dict(n_init=0), ValueError, "n_init"),
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(max_points_per_centroid=0), ValueError, "max_points_per_centroid"),
    (dict(init="kmeans"), ValueError, "init"),
    (dict(init=3), TypeError, "init"),
    (dict(init=torch.randn(3, 2)), ValueError, "init"),
    (dict(init=torch.zeros(2, 2, dtype=torch.int64)), TypeError, "init"),
])
def test_bad_arguments(kwargs, error, name):
    args = dict(x=torch.randn(10, 2), k=2)
    args.update(kwargs)
    x, k = args.pop("x"), args.pop("k")
    with pytest.raises(error, match=rf"\b{name}\b"):
        kmeans(x, k, **args)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    x = _digits()
    gpu = kmeans(x.cuda(), 10, n_init=3, seed=0)
    again = kmeans(x.cuda(), 10, n_init=3, seed=0)
    assert gpu.centroids.is_cuda and gpu.labels.is_cuda
    assert torch.equal(gpu.centroids, again.centroids)  # deterministic on the GPU too
    cpu = kmeans(x, 10, n_init=3, seed=0)
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-3)
    half = kmeans(x.cuda().bfloat16(), 10, seed=0)
    assert half.centroids.dtype == torch.bfloat16
