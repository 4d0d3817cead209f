"""The packaging scripts' own checks (the artifacts themselves are built, installed in a clean
virtualenv and smoke-tested by packaging/check_install.sh, which `make test` runs first)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))

import check_linkage  # noqa: E402 (a script's module, found through the path above)


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("objdump") is None, reason="needs g++ and objdump")
def test_check_linkage_refuses_a_symbol_left_without_a_version(tmp_path):
    source = tmp_path / "lib.cpp"
    source.write_text(
        "#include <pthread.h>\n"
        'extern "C" void symbol_no_library_defines();\n'
        'extern "C" int PyLong_AsLong(void*);\n'  # Python's C API: the interpreter provides it
        'extern "C" void f() { pthread_self(); PyLong_AsLong(nullptr); symbol_no_library_defines(); }\n'
    )
    library = tmp_path / "lib.so"
    subprocess.run(["g++", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    assert check_linkage.unresolved(library) == ["symbol_no_library_defines"]
    assert check_linkage.main([str(library)]) == 1


def test_build_wheels_refuses_an_unknown_variant():
    result = subprocess.run(
        ["bash", str(ROOT / "packaging/build_wheels.sh"), "gpu"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "unknown variant 'gpu'" in result.stderr


def test_glibc_stubs_refuses_a_malformed_release():
    result = subprocess.run(
        [sys.executable, str(ROOT / "packaging/glibc_stubs.py"), "out", "--glibc", "2.x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--glibc must look like 2.28" in result.stderr


def test_one_cuda_architecture_list_for_every_wheel():
    script = (ROOT / "packaging/build_wheels.sh").read_text()
    archs = re.search(r'CUDA_ARCHS=\$\{CUDA_ARCHS:-"([^"]+)"\}', script)[1]
    # tomllib is Python 3.11+; the line is plain enough to read as text.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'LATENTOPS_CUDA_ARCHS = "{archs}"' in pyproject
    readme = (ROOT / "README.md").read_text()
    sass = ", ".join(a.removesuffix("-real") for a in archs.split(";") if not a.endswith("-virtual"))
    assert f"SASS for sm_{sass}" in readme
