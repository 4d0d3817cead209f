"""Run-time honesty of the cuda backend: it is offered only on a GPU whose architecture has code in
the build (SASS, or PTX the driver can compile) under a new-enough driver; elsewhere one warning and
the next backend. The rules (latentops._cuda_compat) and the selection (latentops._backend) are
tested with the device, the build and the driver mocked, so that they run without a GPU."""

import types
import warnings

import pytest
import torch

from latentops import _backend
from latentops._cuda_compat import parse_architectures, why_not

WHEEL = "75-real;80-real;86-real;89-real;90a-real;100-real;120"
CUDA13, R580, R550 = 13000, 13000, 12040


def test_parse_architectures():
    sass, ptx, unknown = parse_architectures(WHEEL)
    assert sass == [(7, 5, ""), (8, 0, ""), (8, 6, ""), (8, 9, ""), (9, 0, "a"), (10, 0, ""), (12, 0, "")]
    assert ptx == [(12, 0, "")]
    assert unknown == []
    assert parse_architectures("90-virtual 100f native") == ([(10, 0, "f")], [(9, 0, ""), (10, 0, "f")], ["native"])


@pytest.mark.parametrize(
    "capability",
    [(7, 5), (8, 0), (8, 6), (8, 7), (8, 9), (9, 0), (10, 0), (10, 3), (12, 0), (12, 1), (13, 0)],
)
def test_the_wheel_runs_on_every_gpu_since_turing(capability):
    assert why_not(capability, WHEEL, CUDA13, R580) is None


@pytest.mark.parametrize("capability", [(6, 1), (7, 0)])
def test_the_wheel_refuses_gpus_before_turing(capability):
    why = why_not(capability, WHEEL, CUDA13, R580)
    assert f"sm_{capability[0]}{capability[1]}" in why and "LATENTOPS_CUDA_ARCHS" in why


def test_a_development_build_for_hopper_only():
    assert why_not((9, 0), "90", CUDA13, R580) is None
    assert why_not((9, 0), "90a-real", CUDA13, R580) is None
    # sm_90a machine code is Hopper-only; plain sm_90 SASS does not run on Blackwell either, its PTX does.
    assert "sm_100" in why_not((10, 0), "90a-real", CUDA13, R580)
    assert "sm_100" in why_not((10, 0), "90-real", CUDA13, R580)
    assert why_not((10, 0), "90", CUDA13, R580) is None
    assert "sm_80" in why_not((8, 0), "90", CUDA13, R580)  # PTX never runs on an older GPU


def test_driver_older_than_the_runtime():
    why = why_not((9, 0), WHEEL, CUDA13, R550)
    assert "CUDA 12.4" in why and "CUDA 13.0" in why
    assert why_not((9, 0), WHEEL, CUDA13, 0) == "no CUDA driver was found"


def test_ptx_needs_a_driver_as_new_as_the_compiler():
    # A GPU newer than every SASS target runs the PTX only if the driver can compile it.
    assert why_not((13, 0), WHEEL, 13020, 13000) is not None
    assert why_not((13, 0), WHEEL, 13020, 13020) is None
    assert why_not((9, 0), WHEEL, 13020, 13000) is None  # SASS: minor-version compatibility suffices


def test_entries_that_cannot_be_checked_are_trusted():
    assert why_not((7, 0), "native", CUDA13, R580) is None


@pytest.fixture
def fake_gpu(monkeypatch):
    """A process with one GPU of a chosen capability and driver, and a CUDA build of latentops._C."""

    def make(capability, architectures=WHEEL, driver=R580):
        native = types.SimpleNamespace(
            has_cuda=True,
            cpu_supported=False,
            cuda_architectures=architectures,
            cuda_runtime_version=CUDA13,
            cuda_driver_version=lambda: driver,
        )
        monkeypatch.setattr(_backend, "native", native)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Fake GPU")
        monkeypatch.setattr(_backend, "_triton_kernels", lambda: None)  # no Triton: the next backend is torch
        _backend._cuda_kernels_run_on.cache_clear()

    yield make
    _backend._cuda_kernels_run_on.cache_clear()


def test_cuda_is_offered_where_the_build_runs(fake_gpu):
    fake_gpu((9, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _backend.available_on(torch.device("cuda")) == ["cuda", "torch"]
        assert _backend.available_on(torch.device("cuda", 0))[0] == "cuda"


@pytest.mark.parametrize(("capability", "driver", "reason"), [((7, 0), R580, "sm_70"), ((9, 0), R550, "CUDA 12.4")])
def test_cuda_is_withheld_with_one_warning(fake_gpu, capability, driver, reason):
    fake_gpu(capability, driver=driver)
    with pytest.warns(RuntimeWarning, match=f"no cuda backend on cuda:0 \\(Fake GPU\\).*{reason}"):
        assert _backend.available_on(torch.device("cuda")) == ["torch"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per GPU, not at every call
        assert _backend.available_on(torch.device("cuda", 0)) == ["torch"]
    kernels = _backend.Kernels(
        "demo", {"forward": {"cuda": None, "torch": None}}, {"cuda": (torch.float32,), "torch": (torch.float32,)}
    )
    with pytest.raises(ValueError, match="backend 'cuda' cannot run on cuda tensors here"):
        kernels.resolve("cuda", torch.device("cuda"), torch.float32)
    assert kernels.resolve(None, torch.device("cuda"), torch.float32) == "torch"
