"""Write stub glibc libraries of an older glibc (default 2.28, manylinux_2_28's) into a folder, for
linking latentops._C so that it runs on every Linux whose glibc is at least that old.

Why: a module linked against this machine's glibc (2.36) binds each libc symbol to its newest
version (pthread_create@GLIBC_2.34, exp@GLIBC_2.29, ...) and then refuses to load on RHEL 8 or
Ubuntu 20.04, where torch's own manylinux_2_28 wheels run. The usual cure is a manylinux container,
which this machine cannot run. Zig (the `ziglang` package on PyPI) ships the symbol lists of every
glibc release and builds link-time stubs of any of them: libraries with the old release's symbols
at their old versions and no code. Linking against those instead of the system's libraries binds
every reference to a version the old glibc has, and a reference the old glibc cannot satisfy fails
the link instead of the user's import. The stubs are used at link time only; nothing of them ships.

    python packaging/glibc_stubs.py OUT_DIR [--glibc 2.28]

OUT_DIR then holds the stubs under their sonames plus the names the linker looks for (libc.so as
a linker script, like the system's, so that libc_nonshared.a's wrappers come along; libm.so,
libpthread.so, libdl.so, librt.so, ...). CMake takes the folder as LATENTOPS_GLIBC_STUBS.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The libraries whose stubs zig builds, by the file name zig gives them: the name under which the
# linker finds each one with -l<name> is lib<name>.so.
SONAMES = {
    "libc.so.6": "c",
    "libm.so.6": "m",
    "libpthread.so.0": "pthread",
    "libdl.so.2": "dl",
    "librt.so.1": "rt",
    "libutil.so.1": "util",
    "libresolv.so.2": "resolv",
}
DYNAMIC_LOADER = "ld-linux-x86-64.so.2"  # zig names its stub libld.so.2
ZIG_CC = (sys.executable, "-m", "ziglang", "cc")


def zig_stub_paths(glibc: str) -> list[Path]:
    """Has zig link an empty shared library against glibc `glibc` and returns the stub libraries
    and libc_nonshared.a named on its linker line (zig builds them into its cache on first use)."""
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp, "empty.c"), Path(tmp, "empty.so")
        source.write_text("int latentops_empty(void) { return 0; }\n")
        run = subprocess.run(
            [*ZIG_CC, "-target", f"x86_64-linux-gnu.{glibc}", "-shared", "-v", "-o", str(output), str(source)],
            capture_output=True,
            text=True,
        )
    if run.returncode != 0:
        raise SystemExit(f"zig could not link against glibc {glibc}:\n{run.stderr[-2000:]}")
    # On a cold cache zig first links the stubs themselves, each on an ld.lld line of its own.
    lines = run.stderr.splitlines()
    linker_line = next((line for line in lines if line.startswith("ld.lld ") and f" -o {output} " in line), None)
    if linker_line is None:
        raise SystemExit("zig printed no ld.lld line; its -v output changed:\n" + run.stderr[-2000:])
    return [Path(p) for p in re.findall(r"(\S+/(?:lib\w+\.so\.\d+|libc_nonshared\.a))(?=\s|$)", linker_line)]


def write_stubs(out: Path, glibc: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    found = {path.name: path for path in zig_stub_paths(glibc)}
    missing = [name for name in (*SONAMES, "libld.so.2", "libc_nonshared.a") if name not in found]
    if missing:
        raise SystemExit(f"zig's linker line lacks {missing}; found {sorted(found)}")
    for soname, name in SONAMES.items():
        shutil.copyfile(found[soname], out / soname)
        if name != "c":
            (out / f"lib{name}.so").unlink(missing_ok=True)
            (out / f"lib{name}.so").symlink_to(soname)
    shutil.copyfile(found["libld.so.2"], out / DYNAMIC_LOADER)
    shutil.copyfile(found["libc_nonshared.a"], out / "libc_nonshared.a")
    # What the system's libc.so says, with the stubs in place of the real libraries.
    (out / "libc.so").write_text(
        f"OUTPUT_FORMAT(elf64-x86-64)\nGROUP ( {out}/libc.so.6 {out}/libc_nonshared.a "
        f"AS_NEEDED ( {out}/{DYNAMIC_LOADER} ) )\n"
    )
    (out / "GLIBC_VERSION").write_text(glibc + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the stubs into")
    parser.add_argument("--glibc", default="2.28", help="the glibc release to stub (default: 2.28)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"2\.\d+", args.glibc):
        parser.error(f"--glibc must look like 2.28, got {args.glibc!r}")
    write_stubs(args.out.resolve(), args.glibc)
    print(f"glibc {args.glibc} stubs in {args.out}")


if __name__ == "__main__":
    main()
