"""Whether the CUDA kernels of this build of latentops._C can run on a given GPU, and if not, why.

A build carries machine code (SASS) for the architectures it was compiled for and, for some, PTX
that the driver compiles at load time for newer GPUs; the CUDA runtime, linked statically, needs a
driver at least as new as its own major version (CUDA 13: R580). Checked before offering the
"cuda" backend, so that a GPU the build has no code for, or a too-old driver, costs one warning and
the next backend instead of an error at the first call. The rules are pure functions of the build's
architecture list (CMake's CUDA_ARCHITECTURES entries: "80", "90a-real", "120-virtual", ...), the
device's compute capability and the two versions, so that tests can feed them any machine.
"""

from __future__ import annotations

import re

_ENTRY = re.compile(r"(?P<major>\d+?)(?P<minor>\d)(?P<suffix>[af]?)(?:-(?P<kind>real|virtual))?")


def parse_architectures(spec: str) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]], list[str]]:
    """(SASS targets, PTX targets, entries not understood) of a CMake CUDA_ARCHITECTURES list:
    each target is (major, minor, suffix) with suffix "" (portable), "a" (this exact GPU only) or
    "f" (this family). "NN" means both SASS and PTX, "NN-real" SASS only, "NN-virtual" PTX only."""
    sass, ptx, unknown = [], [], []
    for entry in spec.replace(";", " ").split():
        match = _ENTRY.fullmatch(entry)
        if match is None:
            unknown.append(entry)  # "native", "all", "all-major": not checkable here
            continue
        target = (int(match["major"]), int(match["minor"]), match["suffix"])
        if match["kind"] != "virtual":
            sass.append(target)
        if match["kind"] != "real":
            ptx.append(target)
    return sass, ptx, unknown


def _sass_runs(target: tuple[int, int, str], capability: tuple[int, int]) -> bool:
    major, minor, suffix = target
    if suffix == "a":
        return capability == (major, minor)
    # Binary compatibility holds within a major version, towards newer minors.
    return capability[0] == major and capability[1] >= minor


def _ptx_runs(target: tuple[int, int, str], capability: tuple[int, int]) -> bool:
    major, minor, suffix = target
    if suffix == "a":
        return capability == (major, minor)
    if suffix == "f":
        return capability[0] == major and capability[1] >= minor
    return capability >= (major, minor)


def _sm(target: tuple[int, int, str]) -> str:
    return f"{target[0]}{target[1]}{target[2]}"


def _cuda_version(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def why_not(capability: tuple[int, int], architectures: str, runtime_version: int, driver_version: int) -> str | None:
    """Why the kernels of a build for `architectures`, with CUDA runtime `runtime_version` (e.g.
    13000), cannot run on a GPU of compute `capability` under a driver supporting CUDA
    `driver_version` (cudaDriverGetVersion; 0: no driver); None if they can."""
    sass, ptx, unknown = parse_architectures(architectures)
    if driver_version == 0:
        return "no CUDA driver was found"
    if driver_version // 1000 < runtime_version // 1000:
        return (
            f"the driver supports CUDA {_cuda_version(driver_version)}, older than the CUDA "
            f"{_cuda_version(runtime_version)} runtime latentops' kernels were built with (update the driver, "
            f"or build latentops from source with your CUDA toolkit)"
        )
    if unknown or any(_sass_runs(t, capability) for t in sass):
        return None
    if any(_ptx_runs(t, capability) for t in ptx):
        if driver_version < runtime_version:
            return (
                f"this build has only PTX for sm_{capability[0]}{capability[1]}, which a driver for CUDA "
                f"{_cuda_version(driver_version)} cannot compile (it was made by CUDA {_cuda_version(runtime_version)})"
            )
        return None
    have = " ".join(f"sm_{_sm(t)}" for t in sass) + "".join(f" compute_{_sm(t)}" for t in ptx)
    arch = f"{capability[0]}{capability[1]}"
    return (
        f"this build has code for {have.strip() or 'no architecture'}, none of which runs on sm_{arch} "
        f"(build from source with LATENTOPS_CUDA_ARCHS={arch})"
    )
