"""Which backend runs a call: one rule for every op family (latentops._backend), and what importing
latentops and a first eager call cost (no Triton and no torch._dynamo unless they run)."""

import importlib
import os
import subprocess
import sys

import pytest
import torch

import latentops
from conftest import CUDA
from latentops import _backend

# The modules (latentops.ops re-exports the functions under the same names).
FAMILIES = {
    family: importlib.import_module(f"latentops.ops.{family}").KERNELS
    for family in ("nearest_centroid", "soft_quantize", "graph", "compressed_linear")
}
CPU = torch.device("cpu")


def _call(family: str, dtype: torch.dtype, **kwargs):
    gen = torch.Generator().manual_seed(0)
    x, c = torch.randn(6, 3, dtype=dtype, generator=gen), torch.randn(4, 3, dtype=dtype, generator=gen)
    if family == "nearest_centroid":
        return latentops.nearest_centroid(x, c, **kwargs)[1]
    if family == "soft_quantize":
        return latentops.soft_quantize(x, c, 0.5, **kwargs)
    if family == "compressed_linear":
        weight = latentops.codecs.encode_hcsr(
            torch.arange(12).reshape(4, 3) % 3, torch.ones(4, 3, dtype=torch.bool), c[:3, 0]
        )
        return latentops.compressed_linear(x, weight, **kwargs)
    return latentops.graph_smoothness(x, torch.arange(6) % 2, k=2, num_classes=2, **kwargs)


def _run_python(code: str, **env) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("LATENTOPS_BACKEND", "TRITON_INTERPRET")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True)
    return out.stdout.split("\n")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_declares_the_same_backends(family):
    kernels = FAMILIES[family]
    assert set(kernels.dtypes) == set(_backend.BACKEND_NAMES)
    for table in kernels.stages.values():
        assert set(table) == set(_backend.BACKEND_NAMES)
    assert torch.float64 in kernels.dtypes["torch"]


def test_a_stage_missing_a_backend_is_refused():
    with pytest.raises(TypeError, match="stage 'forward' has backends"):
        _backend.Kernels("toy", stages={"forward": {"torch": print}}, dtypes={"torch": (), "cpu": ()})


@pytest.mark.parametrize("family", FAMILIES)
def test_named_backend_that_cannot_take_the_dtype_is_an_error(family):
    if "cpu" not in _backend.available_on(CPU):
        pytest.skip("no C++ CPU kernels here")
    with pytest.raises(ValueError, match=r"backend 'cpu' has no float64 kernel.*backend='torch'"):
        _call(family, torch.float64, backend="cpu")


@pytest.mark.parametrize("family", FAMILIES)
def test_float64_runs_on_the_reference_when_not_named(family):
    expected = _call(family, torch.float64, backend="torch")
    assert expected.dtype == torch.float64
    assert torch.equal(_call(family, torch.float64), expected)
    with latentops.use_backend("cpu"):  # a preference: the call it cannot run falls back
        assert torch.equal(_call(family, torch.float64), expected)


def test_named_backend_on_the_wrong_device_is_an_error():
    if CUDA:
        pytest.skip("cuda is available here")
    with pytest.raises(ValueError, match=r"backend 'cuda' cannot run on cpu tensors"):
        latentops.nearest_centroid(torch.randn(2, 3), torch.randn(4, 3), backend="cuda")


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="backend: unknown backend 'gpu'"):
        latentops.nearest_centroid(torch.randn(2, 3), torch.randn(4, 3), backend="gpu")
    with pytest.raises(ValueError, match="use_backend: unknown backend 'gpu'"), latentops.use_backend("gpu"):
        pass
    with pytest.raises(subprocess.CalledProcessError) as error:
        subprocess.run(
            [sys.executable, "-c", "import latentops"],
            env={**os.environ, "LATENTOPS_BACKEND": "gpu"},
            capture_output=True,
            text=True,
            check=True,
        )
    assert "LATENTOPS_BACKEND: unknown backend 'gpu'" in error.value.stderr


def test_preference_order_argument_block_environment():
    kernels = FAMILIES["nearest_centroid"]
    automatic = kernels.resolve(None, CPU, torch.float32)
    assert automatic == _backend.available_on(CPU)[0]
    with latentops.use_backend("torch"):
        assert kernels.resolve(None, CPU, torch.float32) == "torch"
        assert kernels.resolve(automatic, CPU, torch.float32) == automatic  # the argument wins
        with latentops.use_backend(None):
            assert kernels.resolve(None, CPU, torch.float32) == automatic
    code = (
        "import importlib, torch; kernels = importlib.import_module('latentops.ops.nearest_centroid').KERNELS\n"
        "print(kernels.resolve(None, torch.device('cpu'), torch.float32))"
    )
    assert _run_python(code, LATENTOPS_BACKEND="torch")[0] == "torch"


def test_kernels_used_only_when_named_are_never_the_automatic_choice():
    present = _backend.available_on(CPU)
    table = {name: (lambda *args, name=name: name) for name in _backend.BACKEND_NAMES}
    kernels = _backend.Kernels(
        "toy",
        stages={"forward": table},
        dtypes={name: _backend.ALL_FLOAT_DTYPES for name in _backend.BACKEND_NAMES},
        used_only_when_named=(present[0],),
    )
    assert kernels.resolve(None, CPU, torch.float32) == present[1]
    assert kernels.resolve(present[0], CPU, torch.float32) == present[0]
    with latentops.use_backend(present[0]):
        assert kernels.resolve(None, CPU, torch.float32) == present[0]


def test_import_without_extension_warns_and_falls_back():
    code = (
        "import sys, warnings; sys.modules['latentops._C'] = None\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always'); import latentops, torch\n"
        "print(latentops.backends()); print(len([x for x in w if 'compiled extension' in str(x.message)]))\n"
        "print(latentops.nearest_centroid(torch.zeros(1, 2), torch.ones(3, 2))[0].tolist())"
    )
    lines = _run_python(code)
    assert "'cpu'" not in lines[0] and "'cuda'" not in lines[0] and "'torch'" in lines[0]
    assert lines[1] == "1" and lines[2] == "[0]"


def test_import_and_first_eager_calls_load_neither_triton_nor_dynamo():
    """torch._dynamo costs 1.5-2.5 s on the first custom-op call and Triton ~0.3 s to import: an
    eager call on CPU tensors (forward and backward, every family) must pay for neither."""
    code = (
        "import sys, torch, latentops\n"
        "print(sorted(m for m in ('triton', 'torch._dynamo') if m in sys.modules))\n"
        "z = torch.randn(9, 4, requires_grad=True); c = torch.randn(5, 4, requires_grad=True)\n"
        "(latentops.nearest_centroid(z, c)[1].sum() + latentops.soft_quantize(z, c).sum()\n"
        " + latentops.graph_smoothness(z, torch.arange(9) % 3, k=3, num_classes=3)).backward()\n"
        "latentops.kmeans(torch.randn(50, 4), 3)\n"
        "print(sorted(m for m in ('triton', 'torch._dynamo') if m in sys.modules))"
    )
    lines = _run_python(code)
    assert lines[0] == "[]" and lines[1] == "[]"
