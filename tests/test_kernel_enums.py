"""The kernel enums are defined once in C++ (csrc/include/latentops/enums.h) and mirrored once in
Python (latentops.kernel_enums); this test keeps the two from drifting apart."""

from __future__ import annotations

import enum
import re
from pathlib import Path

import pytest

import latentops.kernel_enums as kernel_enums

ENUMS_H = Path(__file__).resolve().parents[1] / "csrc" / "include" / "latentops" / "enums.h"


def _cpp_enums(text: str) -> dict[str, dict[str, int]]:
    """{enum name: {member name: value}} for every `enum class Name : int { kA = 0, ... };`."""
    text = re.sub(r"//[^\n]*", "", text)
    enums = {}
    for name, body in re.findall(r"enum\s+class\s+(\w+)\s*:\s*int\s*\{([^}]*)\}", text):
        members = {}
        for entry in filter(None, (e.strip() for e in body.split(","))):
            match = re.fullmatch(r"(k\w+)\s*=\s*(-?\d+)", entry)
            assert match, f"{name}: every member needs an explicit value, got {entry!r}"
            members[match[1]] = int(match[2])
        enums[name] = members
    return enums


def _python_name(cpp_member: str) -> str:
    """kPerCentroid -> PER_CENTROID, kBFloat16 -> BFLOAT16."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cpp_member.removeprefix("k")).upper()


CPP = _cpp_enums(ENUMS_H.read_text())
PYTHON = {
    name: cls
    for name, cls in vars(kernel_enums).items()
    if isinstance(cls, type) and issubclass(cls, enum.IntEnum) and cls.__module__ == kernel_enums.__name__
}


def test_header_parses():
    assert set(CPP) >= {"DType", "Accuracy", "GraphMetric", "PrecisionLayout"}
    assert all(CPP.values())


def test_same_enums():
    assert set(CPP) == set(PYTHON)


@pytest.mark.parametrize("name", sorted(CPP))
def test_same_members(name):
    expected = {_python_name(member): value for member, value in CPP[name].items()}
    assert {member.name: member.value for member in PYTHON[name]} == expected


def test_name_mapping():
    assert _python_name("kFloat32") == "FLOAT32"
    assert _python_name("kBFloat16") == "BFLOAT16"
    assert _python_name("kPerCentroid") == "PER_CENTROID"
