"""Property tests (hypothesis) of latentops.kmeans on every CPU backend: sizes from one point up,
k up to N, repeated points, every dtype, non-contiguous x, values far from the origin and (float64)
around 1e-30 and 1e30; the result checked against direct float64 distances computed here, and
invalid arguments (non-finite x included) refused by name."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import backend_params, fuzz_examples
from latentops.kmeans import kmeans

# Each kmeans call is a few assignment steps; the Triton interpreter pays ~0.1 s for each.
EXAMPLES = {"cpu": 25, "torch": 25, "triton": 4}


def _magnitudes(dtype):
    """(z scale, offset) drawn for dtype. float32 distances (and so the inertia, a float32 sum for
    non-float64 x) stay inside float32's range; float64 goes to 1e±30."""
    common = [(1.0, 0.0), (0.01, 1e4)]
    if dtype == torch.float64:
        return [*common, (1e-30, 0.0), (1e30, 0.0)]
    if dtype == torch.float32:
        return [*common, (1e-15, 0.0), (1e15, 0.0)]
    return [(1.0, 0.0), (0.5, 100.0)]


@st.composite
def cases(draw, backend):
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    if backend != "torch" and dtype == torch.float64:
        dtype = torch.float32  # float64 runs on the torch reference whatever the backend
    if backend == "triton" and dtype == torch.bfloat16:
        dtype = torch.float16  # no bf16 math under the Triton interpreter
    n = draw(st.integers(1, 50))
    k = draw(st.integers(1, min(n, 6)))
    init = draw(st.sampled_from(["k-means++", "random", "tensor"]))
    return dict(
        dtype=dtype,
        n=n,
        k=k,
        d=draw(st.integers(1, 5)),
        magnitude=draw(st.sampled_from(_magnitudes(dtype))),
        distinct=draw(st.sampled_from([None, 1, 2, 3])),  # few distinct points: empty clusters
        transposed=draw(st.booleans()),
        init=init,
        n_init=draw(st.integers(1, 2)),
        iters=draw(st.integers(1, 8 if backend != "triton" else 3)),
        tol=draw(st.sampled_from([0.0, 1e-4])),
        batch_size=draw(st.sampled_from([None, 7])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _sample(case):
    gen = torch.Generator().manual_seed(case["seed"])
    scale, offset = case["magnitude"]
    x = offset + scale * torch.randn(case["n"], case["d"], generator=gen, dtype=torch.float64)
    if case["distinct"] is not None:
        x = x[torch.randint(0, case["distinct"], (case["n"],), generator=gen).clamp_max(case["n"] - 1)]
    x = x.to(case["dtype"])
    if case["transposed"]:
        x = x.T.contiguous().T
    init = case["init"]
    if init == "tensor":
        init = x[torch.randperm(case["n"], generator=gen)[: case["k"]]].clone()
    return x, init


@pytest.mark.parametrize("backend", backend_params("cpu"))
def test_kmeans_fuzzed(backend):
    """Labels are nearest centroids of the returned ones (float64 direct distances, the
    nearest_centroid "exact" contract), the inertia their sum, centroids finite in x's dtype."""

    @settings(max_examples=fuzz_examples(EXAMPLES[backend]))
    @given(case=cases(backend))
    def run(case):
        x, init = _sample(case)
        n, k = case["n"], case["k"]
        result = kmeans(
            x,
            k,
            init=init,
            n_init=case["n_init"],
            iters=case["iters"],
            tol=case["tol"],
            batch_size=case["batch_size"],
            seed=case["seed"],
            backend=backend,
        )
        centroids, labels, inertia = result
        assert centroids.shape == (k, x.shape[1]) and centroids.dtype == x.dtype
        assert centroids.isfinite().all()
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert ((labels >= 0) & (labels < k)).all()
        assert isinstance(inertia, float) and np.isfinite(inertia) and inertia >= 0
        if x.dtype in (torch.float16, torch.bfloat16):
            return  # labels refer to the float32 centroids, returned rounded to x's dtype
        dist = (x.double()[:, None, :] - centroids.double()[None, :, :]).square().sum(-1)
        chosen = dist.gather(1, labels[:, None]).squeeze(1)
        assert (chosen <= dist.min(1).values * (1 + 1e-5)).all()
        # float32 distances are summed in float64: float32 rounding, plus underflow for tiny data.
        assert inertia == pytest.approx(chosen.sum().item(), rel=1e-5, abs=1e-37 * n)

    run()


@settings(max_examples=fuzz_examples(40))
@given(
    argument=st.sampled_from(["x", "k", "iters", "n_init", "seed", "batch_size", "max_points_per_centroid", "init"]),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=3),
        st.integers(-3, 0),
        st.just(torch.tensor([2])),
        st.just(np.float32(2.0)),
    ),
    non_finite=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
)
def test_kmeans_invalid_arguments_fuzzed(argument, value, non_finite):
    """Every bad value raises TypeError/ValueError naming its argument; so does non-finite x."""
    args = dict(x=torch.randn(10, 2), k=2)
    if argument == "x":
        args["x"] = args["x"].clone()
        args["x"][3, 1] = non_finite
    elif argument == "init":
        args["init"] = torch.zeros(2, 2).index_fill_(0, torch.tensor([1]), non_finite)
    elif argument == "seed" and isinstance(value, int) and not isinstance(value, bool):
        value = 2**64  # small negative seeds are valid
    elif argument in ("batch_size", "max_points_per_centroid") and value is None:
        value = 0  # None means "not set"
    if argument not in ("x", "init"):
        args[argument] = value
    with pytest.raises((TypeError, ValueError), match=rf"\b{argument}\b"):
        kmeans(args.pop("x"), args.pop("k"), **args)
