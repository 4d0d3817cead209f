"""Refuse an extension module (or every one in a wheel) that would fail to load on an older glibc
without the link having said so.

A shared library may leave symbols undefined; the linker then records them without a version and
the loader looks for them at import. Linked against older glibc stubs (packaging/glibc_stubs.py),
a libc symbol that the old release lacks ends up exactly so: unversioned, resolved here, missing
there. auditwheel cannot see it (it reads versions only). Allowed undefined and unversioned: weak
symbols and the Python C API, which the interpreter provides.

    python packaging/check_linkage.py WHEEL_OR_SO...
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def unresolved(library: Path) -> list[str]:
    """Strong undefined symbols of `library` that carry no version and are not Python's."""
    table = subprocess.run(["objdump", "-T", str(library)], capture_output=True, text=True, check=True).stdout
    bad = []
    for line in table.splitlines():
        fields = line.split()
        # "0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.2.5) name": versioned;
        # "...  D  *UND*  0000000000000000  Base  name" or no version column at all: not
        if "*UND*" not in fields or fields[1] == "w" or any(f.startswith("(") for f in fields):
            continue
        name = fields[-1]
        if not name.startswith(("Py", "_Py")):
            bad.append(name)
    return bad


def libraries(path: Path, tmp: Path) -> list[Path]:
    if path.suffix != ".whl":
        return [path]
    with zipfile.ZipFile(path) as wheel:
        names = [n for n in wheel.namelist() if n.endswith(".so") or ".so." in n]
        wheel.extractall(tmp, members=names)
    return [tmp / n for n in names]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for path in map(Path, argv):
            for library in libraries(path, Path(tmp)):
                bad = unresolved(library)
                if bad:
                    failed = True
                    print(f"{path}: {library.name} leaves {len(bad)} symbols unversioned: {' '.join(sorted(bad))}")
                else:
                    print(f"{path}: {library.name}: every undefined symbol is versioned, weak or Python's")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
