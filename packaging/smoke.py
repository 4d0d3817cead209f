"""Smoke test of an installed latentops (a wheel or an sdist in a clean virtualenv): every op family
runs on every backend this install has for CPU tensors and matches the float64 torch reference, a
compressed model file round-trips, the `latentops` command answers --version, and the build is
what the caller expects.

    python packaging/smoke.py [--expect-cpu-kernels yes|no] [--expect-cuda yes|no]

Run it from outside the source tree (the installed package must be the one imported). Prints one
line per check and closes with "N passed, N failed"; exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import torch

import latentops
from latentops import codecs
from latentops.native import library

results: list[bool] = []


def check(name: str, fn) -> None:
    try:
        fn()
    except Exception:  # a smoke test reports every failure, then fails as a whole
        results.append(False)
        print(f"FAILED {name}\n{traceback.format_exc()}")
    else:
        results.append(True)
        print(f"ok     {name}")


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> None:
    error = (a.double() - b.double()).abs().max().item()
    scale = b.double().abs().max().item() + 1.0
    assert error <= tol * scale, f"max error {error:.3g} against the float64 reference (scale {scale:.3g})"


def op_checks(backend: str) -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(37, 19, generator=gen)
    codebook = torch.randn(11, 19, generator=gen)
    z64, c64 = z.double(), codebook.double()

    def nearest_centroid():
        index, sq = latentops.nearest_centroid(z, codebook, backend=backend)
        ref_index, ref_sq = latentops.nearest_centroid(z64, c64, backend="torch")
        assert torch.equal(index, ref_index), "indices differ from the reference"
        close(sq, ref_sq)

    def soft_quantize():
        close(
            latentops.soft_quantize(z, codebook, 0.7, backend=backend),
            latentops.soft_quantize(z64, c64, 0.7, backend="torch"),
        )

    def graph():
        layers = [torch.randn(23, 13, generator=gen), torch.randn(23, 3, 2, 2, generator=gen)]
        labels = torch.arange(23) % 4
        got = latentops.graph_smoothness(layers, labels, k=5, num_classes=4, backend=backend)
        ref = latentops.graph_smoothness([x.double() for x in layers], labels, k=5, num_classes=4, backend="torch")
        close(got, ref)
        w = latentops.similarity_graph(layers[0], k=5, backend=backend)
        close(w, latentops.similarity_graph(layers[0].double(), k=5, backend="torch"))
        close(latentops.laplacian(w).sum(1), torch.zeros(23))  # D − W: rows sum to zero

    def compressed_linear():
        weight = torch.randn(29, 41, generator=gen)
        mask = codecs.prune_magnitude(weight, 0.8)
        matrix = codecs.encode(codecs.quantize(weight, 8, method="uq", mask=mask), format="hcsr")
        x = torch.randn(5, 41, generator=gen)
        close(latentops.compressed_linear(x, matrix, backend=backend), x.double() @ matrix.decode().double().T)

    for name, fn in (
        ("nearest_centroid", nearest_centroid),
        ("soft_quantize", soft_quantize),
        ("graph_smoothness", graph),
        ("compressed_linear", compressed_linear),
    ):
        check(f"{name} on backend {backend}", fn)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expect-cpu-kernels", choices=("yes", "no"))
    parser.add_argument("--expect-cuda", choices=("yes", "no"))
    args = parser.parse_args()

    print(f"latentops {latentops.__version__} from {Path(latentops.__file__).parent}")
    source_tree = Path(__file__).resolve().parents[1] / "python"
    check("imported from the install, not the source tree", lambda: _not_under(latentops.__file__, source_tree))
    check("the version comes from the package metadata", lambda: _assert(latentops.__version__ != "0+unknown"))
    if args.expect_cpu_kernels:
        want = args.expect_cpu_kernels == "yes"
        check(f"C++ CPU kernels {'present' if want else 'absent'}", lambda: _assert(_cpu_kernels() == want))
    if args.expect_cuda:
        want = args.expect_cuda == "yes"
        check(f"CUDA kernels {'present' if want else 'absent'}", lambda: _assert(_has_cuda() == want))

    backends = latentops._backend.available_on(torch.device("cpu"))
    print(f"backends for CPU tensors: {backends}")
    for backend in backends:
        op_checks(backend)
    check(
        "kmeans", lambda: _assert(latentops.kmeans(torch.randn(200, 3), 4, iters=5, seed=0).centroids.shape == (4, 3))
    )
    check("a compressed model file round-trips", _file_round_trip)
    check("one OpenMP runtime in the process, torch's", _one_openmp_runtime)
    check("`latentops --version`", _cli_version)
    passed, failed = sum(results), len(results) - sum(results)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def _assert(condition: bool) -> None:
    assert condition


def _not_under(path: str, tree: Path) -> None:
    assert not Path(path).resolve().is_relative_to(tree), f"latentops was imported from the source tree {tree}"


def _cpu_kernels() -> bool:
    return library is not None and library.cpu_supported


def _has_cuda() -> bool:
    return library is not None and library.has_cuda


def _file_round_trip() -> None:
    weight = torch.randn(17, 9)
    matrix = codecs.encode(codecs.quantize(weight, 4, method="uq"), format="smallest")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.lops")
        codecs.save_file({"fc.weight": matrix}, path)
        loaded = codecs.load_file(path)[0]["fc.weight"]
    assert torch.equal(loaded.decode(), matrix.decode())


def _one_openmp_runtime() -> None:
    """The extension needs libgomp.so.1 and ships none: the loader must take the copy torch loaded."""
    mapped = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "libgomp" in line}
    assert len(mapped) <= 1 and all("torch" in path for path in mapped), f"libgomp mapped from {sorted(mapped)}"


def _cli_version() -> None:
    line = subprocess.run(
        [sys.executable, "-m", "latentops", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert line.startswith(f"latentops {latentops.__version__} (torch "), line


if __name__ == "__main__":
    sys.exit(main())
