"""Which backends exist here, and which one runs a given call: one rule for every op.

Backends: "cuda" (hand-written kernels in latentops._C), "triton" (latentops.kernels), "cpu" (C++
kernels in latentops._C) and "torch" (the pure-torch reference, always present). A missing
extension costs a one-line warning at import and the torch backend, never an import error; so does
a GPU the CUDA kernels cannot run on (latentops._cuda_compat: no code for its architecture in the
build, or a driver older than the kernels' CUDA runtime), once per GPU.

The requested backend of a call, first match wins: the call's `backend=` argument, the innermost
`use_backend(...)` block, the LATENTOPS_BACKEND environment variable (read at import). Then:
  * a backend named by the argument must be able to run the call (the op has a kernel for it,
    it loaded, it runs on the tensors' device and takes their dtype), else ValueError saying why;
  * a backend named by a block or the environment is a preference: used when it can run the
    call, otherwise the automatic choice decides (a float64 call inside use_backend("cpu") runs
    on the torch reference);
  * the automatic choice is the fastest backend that can run the call, skipping kernels that an
    op family declares used only when named (not yet validated on a GPU).

Triton is imported at the first call that runs on it, not with latentops: importing it costs
~0.3 s, and on a machine without a GPU (and without the Triton interpreter) it never runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import os
import warnings
from collections.abc import Callable

import torch

from latentops import _cuda_compat
from latentops._optional import import_optional
from latentops.native import library as native

BACKEND_NAMES = ("cuda", "triton", "cpu", "torch")
_FASTEST_FIRST = {"cuda": ("cuda", "triton", "torch"), "cpu": ("cpu", "triton", "torch")}
# Under the Triton interpreter the Triton kernels also run on CPU tensors (how CI tests them).
_TRITON_ON_CPU = os.environ.get("TRITON_INTERPRET") == "1"

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
ALL_FLOAT_DTYPES = (*KERNEL_DTYPES, torch.float64)
# What every family takes today: the kernels take 16- and 32-bit floats (the cpu launchers upcast
# 16-bit inputs), the torch reference float64 too.
KERNEL_AND_REFERENCE_DTYPES = {
    "cuda": KERNEL_DTYPES,
    "triton": KERNEL_DTYPES,
    "cpu": KERNEL_DTYPES,
    "torch": ALL_FLOAT_DTYPES,
}

if native is not None and not native.cpu_supported:
    warnings.warn(
        "latentops: no C++ CPU kernels here (they are x86-64 AVX2/FMA code: built on x86-64 unless "
        "LATENTOPS_CPU_KERNELS=OFF, run where the processor has AVX2/FMA); CPU tensors use the torch backend",
        RuntimeWarning,
        stacklevel=2,
    )


def _check_name(name: str, where: str) -> str:
    if name not in BACKEND_NAMES:
        raise ValueError(f"{where}: unknown backend {name!r}; expected one of {BACKEND_NAMES}")
    return name


_selected: list[str | None] = []
_env_backend = os.environ.get("LATENTOPS_BACKEND") or None
if _env_backend is not None:
    _check_name(_env_backend, "LATENTOPS_BACKEND")


@functools.cache
def _triton_kernels():
    """latentops.kernels if Triton can run here (a GPU, or the interpreter), imported on first
    use; None (with one warning if the import failed) otherwise."""
    if importlib.util.find_spec("triton") is None or not (torch.cuda.is_available() or _TRITON_ON_CPU):
        return None
    return import_optional("latentops.kernels", "the Triton kernels are", "falling back to the other backends")


def triton_kernel(family: str, name: str) -> Callable:
    """The Triton launcher latentops.kernels.<family>.<name>, imported at its first call."""

    def launch(*args, **kwargs):
        return getattr(getattr(_triton_kernels(), family), name)(*args, **kwargs)

    launch.__name__ = launch.__qualname__ = f"kernels.{family}.{name}"
    return launch


def backends() -> list[str]:
    """Names of the backends that can run in this process (on some device), fastest first."""
    present = {
        *available_on(torch.device("cpu")),
        *(available_on(torch.device("cuda")) if torch.cuda.is_available() else ()),
    }
    return [name for name in BACKEND_NAMES if name in present]


@functools.cache
def _cuda_kernels_run_on(index: int) -> bool:
    """Whether this build's CUDA kernels can run on GPU `index` (its architecture has code in the
    build, the driver is new enough); one warning per GPU where not."""
    why = _cuda_compat.why_not(
        torch.cuda.get_device_capability(index),
        native.cuda_architectures,
        native.cuda_runtime_version,
        native.cuda_driver_version(),
    )
    if why is not None:
        warnings.warn(
            f"latentops: no cuda backend on cuda:{index} ({torch.cuda.get_device_name(index)}): {why}; "
            f"the triton and torch backends take its calls",
            RuntimeWarning,
            stacklevel=2,
        )
    return why is None


def _cuda_present(device: torch.device) -> bool:
    if native is None or not native.has_cuda or not torch.cuda.is_available():
        return False
    return _cuda_kernels_run_on(torch.cuda.current_device() if device.index is None else device.index)


# Whether a backend can run on a device here; Triton is checked (and imported) only where it can run.
_PRESENT = {
    "cuda": _cuda_present,
    "triton": lambda device: (device.type == "cuda" or _TRITON_ON_CPU) and _triton_kernels() is not None,
    "cpu": lambda device: native is not None and native.cpu_supported,
    "torch": lambda device: True,
}


def available_on(device: torch.device) -> list[str]:
    """Backends that can run on tensors of `device`, fastest first."""
    return [name for name in _FASTEST_FIRST.get(device.type, ("torch",)) if _PRESENT[name](device)]


@contextlib.contextmanager
def use_backend(name: str | None):
    """Prefer backend `name` for the latentops ops inside the block (None: the automatic choice).
    A call the backend cannot run (another device, a dtype it lacks) takes the automatic choice."""
    if name is not None:
        _check_name(name, "use_backend")
    _selected.append(name)
    try:
        yield
    finally:
        _selected.pop()


@dataclasses.dataclass(frozen=True)
class Kernels:
    """One op family's implementations: per stage (e.g. "forward", "backward") a table from
    backend name to the function that runs that stage; every function of a stage takes the same
    arguments. `dtypes`: the input dtypes each backend takes (the cpu launchers upcast 16-bit
    inputs to float32). `used_only_when_named`: kernels not yet validated on a GPU, never the
    automatic choice."""

    family: str
    stages: dict[str, dict[str, Callable]]
    dtypes: dict[str, tuple[torch.dtype, ...]]
    used_only_when_named: tuple[str, ...] = ()

    def __post_init__(self):
        for stage, table in self.stages.items():
            if set(table) != set(self.dtypes):
                raise TypeError(
                    f"{self.family}: stage {stage!r} has backends {sorted(table)}, "
                    f"dtypes are declared for {sorted(self.dtypes)}"
                )

    def run(self, stage: str, backend: str, *args):
        return self.stages[stage][backend](*args)

    def _why_not(self, name: str, device: torch.device, dtype: torch.dtype) -> str | None:
        """Why backend `name` cannot run a call on (device, dtype), or None if it can."""
        if name not in self.dtypes:
            return f"{self.family} has no {name!r} kernel; it has {list(self.dtypes)}"
        if name not in available_on(device):
            return (
                f"backend {name!r} cannot run on {device.type} tensors here; available for "
                f"{device.type}: {[b for b in available_on(device) if b in self.dtypes]}"
            )
        if dtype not in self.dtypes[name]:
            return (
                f"backend {name!r} has no {str(dtype).removeprefix('torch.')} kernel for "
                f"{self.family}; it takes {[str(t).removeprefix('torch.') for t in self.dtypes[name]]} "
                f"(backend='torch' or None runs it)"
            )
        return None

    def resolve(self, backend: str | None, device: torch.device, dtype: torch.dtype) -> str:
        """The backend that runs a call on (device, dtype); see the module docstring."""
        if backend is not None:
            why = self._why_not(_check_name(backend, "backend"), device, dtype)
            if why is not None:
                raise ValueError(why)
            return backend
        preferred = _selected[-1] if _selected else _env_backend
        if preferred is not None and self._why_not(preferred, device, dtype) is None:
            return preferred
        for name in available_on(device):
            if name not in self.used_only_when_named and self._why_not(name, device, dtype) is None:
                return name
        raise AssertionError("the torch backend runs every call")

    # torch.compile takes the choice as a constant: it depends on Python state only, and may import
    # Triton, which dynamo cannot trace. This is what torch.compiler.assume_constant_result does,
    # without its import of torch._dynamo at decoration time (1.5-2.5 s on every `import latentops`).
    resolve._dynamo_marked_constant = True
