"""The GPU kit's Python side (benches/gpu_check.sh runs the phases; this reads and writes their files).

    python benches/gpu_check.py resources BUILD_LOG      registers, spills, stack per kernel (ptxas -v)
    python benches/gpu_check.py sass SASS_DUMP           instruction mix per kernel (cuobjdump --dump-sass)
    python benches/gpu_check.py verdicts WORK            per kernel: build, tests, sanitizers (markdown)
    python benches/gpu_check.py skips WORK               run.py --skip arguments for kernels that failed
    python benches/gpu_check.py sanitize                 every CUDA kernel once, on tiny odd shapes
    python benches/gpu_check.py profile                  per-kernel times of the nearest-centroid and
                                                         soft-quantization pipelines, exact mode's re-decided rows
    python benches/gpu_check.py assemble WORK OUT_MD     the results file from whatever phases finished
    python benches/gpu_check.py sample WORK              sample phase outputs (the dry run assembles them)

Phase outputs in WORK: record.txt, phases.tsv (name, budget, seconds, exit status), build.log,
build.failed (only if the CUDA build failed), sass.txt, tests-<family>.log (pytest -v),
tests-<family>.status (pytest's exit status) and junit-<family>.xml, rows.jsonl (benchmark rows
as measured), pipeline/<run>/metrics.json, profile.md, memcheck.log, racecheck.log. Only resources,
sass, verdicts, skips, assemble and sample run without a GPU; none of them imports torch except
sample.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import table

FAMILIES = ("nearest_centroid", "soft_quantize", "graph", "compressed_linear")
# Kernel-name prefixes of each family in csrc/cuda/*.cu, for the sanitizer logs and SASS.
KERNEL_PREFIX = {"nearest_centroid": "nc_", "soft_quantize": "sq_", "graph": "sg_", "compressed_linear": "cl_"}
KERNEL_NAME = "(" + "|".join(prefix.rstrip("_") for prefix in KERNEL_PREFIX.values()) + ")_"
GPU_BACKENDS = ("cuda", "triton")
SASS_OPCODES = ("HGMMA", "HMMA", "FFMA", "FMUL", "LDGSTS", "LDSM", "LDL", "STL")


def _short(mangled: str) -> str:
    """A readable kernel name from a mangled one: the kernel and its bool/int template arguments
    (others keep their mangled codes)."""
    match = re.search(r"((?:nc|sq|sg|cl)_\w+?_kernel)(I.*?E)?(?:Ev|v|E|$)", mangled)
    if not match:
        return mangled[:60]
    if not match.group(2):
        return match.group(1)
    arguments = re.sub(r"Lb([01])E", lambda m: ("false", "true")[int(m.group(1))] + ",", match.group(2)[1:])
    arguments = re.sub(r"Li(-?\d+)E", r"\1,", arguments)
    return f"{match.group(1)}<{arguments.rstrip(',')}>"


def resources(log: str) -> list[dict]:
    """ptxas -v's report per kernel entry: registers, spill bytes, stack frame, shared memory."""
    kernels, current = [], None
    for line in log.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)' for '(\w+)'", line):
            current = {"kernel": _short(m.group(1)), "arch": m.group(2), "registers": None, "smem": 0}
            kernels.append(current)
        elif current is not None and (
            m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        ):
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif current is not None and (m := re.search(r"Used (\d+) registers", line)):
            current["registers"] = int(m.group(1))
            if s := re.search(r"(\d+) bytes smem", line):
                current["smem"] = int(s.group(1))
    return [k for k in kernels if re.match(KERNEL_NAME, k["kernel"])]


def sass_mix(dump: str) -> dict[str, Counter]:
    """Opcode counts per kernel of a cuobjdump --dump-sass listing (static counts, not executed)."""
    mix, current = {}, None
    for line in dump.splitlines():
        if m := re.search(r"Function : (\w+)", line):
            current = mix.setdefault(_short(m.group(1)), Counter())
        elif current is not None and (m := re.search(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]+)", line)):
            current[m.group(1)] += 1
    return {name: counts for name, counts in mix.items() if re.match(KERNEL_NAME, name)}


def test_results(work: Path, family: str) -> dict[str, Counter] | None:
    """Per GPU backend, the outcomes of a family's GPU tests, read from pytest -v's log (which,
    unlike the JUnit file, survives a timeout); None if the family's tests never started."""
    log = work / f"tests-{family}.log"
    if not log.exists():
        return None
    outcomes: dict[str, Counter] = {backend: Counter() for backend in GPU_BACKENDS}
    outcomes["other"] = Counter()
    # pytest -v writes "path::test[id] OUTCOME"; with xdist workers, "[gw0] [ 5%] OUTCOME path::test[id]".
    outcome_re = r"PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS"
    text = log.read_text()
    found = [m.groups() for m in re.finditer(rf"^\S+::(\S+) ({outcome_re})", text, re.M)]
    found += [m.groups()[::-1] for m in re.finditer(rf"^\[gw\d+\] \[\s*\d+%\] ({outcome_re}) \S+::(\S+)", text, re.M)]
    for test, outcome in found:
        backend = next((b for b in GPU_BACKENDS if f"cuda-{b}" in test), "other")
        outcomes[backend][outcome] += 1
    return outcomes


def _tests_finished(work: Path, family: str) -> bool:
    """Whether pytest ran all of a family's tests: it exited by itself with 0 (all passed) or 1
    (some failed), not killed by the timeout (124, 137, or no status written)."""
    status = work / f"tests-{family}.status"
    return status.exists() and status.read_text().strip() in ("0", "1")


def _sanitizer_verdict(work: Path, tool: str, family: str) -> str:
    log = work / f"{tool}.log"
    if not log.exists():
        return "not run"
    text = log.read_text()
    prefix = KERNEL_PREFIX[family]
    errors = [line for line in text.splitlines() if "=========" in line and prefix in line]
    if errors:
        return f"{len(errors)} error lines"
    if "ERROR SUMMARY: 0 errors" in text or "RACECHECK SUMMARY: 0 hazards" in text:
        return "clean"
    return "unfinished" if "ERROR SUMMARY" not in text and "RACECHECK SUMMARY" not in text else "errors elsewhere"


def verdicts(work: Path) -> list[tuple[str, str, str, str]]:
    """(family, backend, verdict, detail) per GPU kernel: passed only if it built, its GPU tests
    ran and all passed (and, for CUDA, the sanitizers found nothing)."""
    built = not (work / "build.failed").exists()
    rows = []
    for family in FAMILIES:
        results = test_results(work, family)
        for backend in GPU_BACKENDS:
            if backend == "cuda" and not built:
                rows.append((family, backend, "FAILED", "the CUDA build failed"))
                continue
            if results is None:
                rows.append((family, backend, "NOT RUN", "its tests did not start"))
                continue
            counts = results[backend]
            bad = counts["FAILED"] + counts["ERROR"]
            ran = bad + counts["PASSED"]
            detail = f"{counts['PASSED']}/{ran} tests passed" + (
                f", {counts['SKIPPED']} skipped" if counts["SKIPPED"] else ""
            )
            if other_failed := results["other"]["FAILED"] + results["other"]["ERROR"]:
                detail += f"; {other_failed} of the family's tests naming no backend failed"
            finished = _tests_finished(work, family)
            if not finished:
                detail += " (of those that ran: the family's tests did not finish)"
            sanitizers = {}
            if backend == "cuda":
                sanitizers = {tool: _sanitizer_verdict(work, tool, family) for tool in ("memcheck", "racecheck")}
                detail += "".join(f"; {tool} {found}" for tool, found in sanitizers.items())
            if bad:
                verdict = "FAILED"
            elif ran == 0:
                verdict = "NOT RUN"
            elif not finished:
                verdict = "INCOMPLETE"
            elif any(found.endswith("error lines") for found in sanitizers.values()):
                verdict = "SANITIZER ERRORS"
            else:
                verdict = "passed"
            rows.append((family, backend, verdict, detail))
    return rows


def skips(work: Path) -> list[str]:
    """run.py --skip arguments: kernels whose build or tests failed are not timed."""
    return [
        f"--skip={family}:{backend}={verdict.lower()}: {detail.split(';')[0]} (phase 3)"
        for family, backend, verdict, detail in verdicts(work)
        if verdict in ("FAILED", "NOT RUN")
    ]


def _phases_table(work: Path) -> list[str]:
    path = work / "phases.tsv"
    lines = ["| phase | budget (s) | took (s) | exit status |", "|---|---:|---:|---|"]
    if path.exists():
        for line in path.read_text().splitlines():
            name, budget, seconds, status = [*line.split("\t"), "", "", ""][:4]
            meaning = {"0": "ok", "124": "TIMED OUT", "137": "KILLED (timeout)"}.get(status, f"FAILED ({status})")
            lines.append(f"| {name} | {budget} | {seconds} | {meaning} |")
    return lines


def _pipeline_table(work: Path) -> list[str]:
    """The autoencoder pipeline's training throughput, one row per run (model-backend[-preferred])."""
    runs = sorted((work / "pipeline").glob("*/metrics.json"))
    if not runs:
        return []
    lines = [
        "## Autoencoder pipeline throughput (lines, batch 64, warm-up interval excluded)",
        "",
        "| run | backend | images/s | steps |",
        "|---|---|---:|---:|",
    ]
    for path in runs:
        metrics = json.loads(path.read_text())
        speed = metrics.get("images_per_s")
        speed = f"{speed:,.0f}" if speed else "–"
        lines.append(f"| {path.parent.name} | {metrics.get('backend')} | {speed} | {metrics.get('steps')} |")
    return [*lines, ""]


def assemble(work: Path) -> str:
    """The results file: record, phases, verdict per kernel, build resources, SASS mix, the
    benchmark table and the profile, from whatever phases finished."""
    record = (work / "record.txt").read_text().strip() if (work / "record.txt").exists() else "(not recorded)"
    out = ["# GPU check", "", "```", record, "```", "", "## Phases", "", *_phases_table(work), ""]
    out += ["## Verdict per kernel", "", "| family | backend | verdict | detail |", "|---|---|---|---|"]
    out += [f"| {f} | {b} | {v} | {d} |" for f, b, v, d in verdicts(work)]
    out.append("")
    if (work / "build.log").exists():
        kernels = resources((work / "build.log").read_text())
        out += [
            "## Registers and spills (ptxas -v)",
            "",
            "| kernel | arch | registers | spill stores/loads (B) | stack (B) | static smem (B) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for k in kernels:
            spills = f"{k.get('spill_stores', '?')}/{k.get('spill_loads', '?')}"
            out.append(
                f"| {k['kernel']} | {k['arch']} | {k['registers']} | {spills} | {k.get('stack', '?')} | {k['smem']} |"
            )
        out.append("")
    if (work / "sass.txt").exists():
        mix = sass_mix((work / "sass.txt").read_text())
        out += [
            "## Instruction mix (static SASS counts)",
            "",
            "| kernel | " + " | ".join(SASS_OPCODES) + " |",
            "|---|" + "---:|" * len(SASS_OPCODES),
        ]
        out += [
            f"| {name} | " + " | ".join(str(counts[op]) for op in SASS_OPCODES) + " |"
            for name, counts in sorted(mix.items())
        ]
        out.append("")
    if (work / "rows.jsonl").exists():
        out.append(
            table.render_cases(table.read_rows(work / "rows.jsonl"), "## Benchmarks", "Measured in this run.", level=3)
        )
    out += _pipeline_table(work)
    if (work / "profile.md").exists():
        out += ["## Profile", "", (work / "profile.md").read_text().strip(), ""]
    return "\n".join(out) + "\n"


def sample(work: Path) -> None:
    """Sample outputs of every phase, in the formats the tools write them (for the dry run)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "record.txt").write_text("commit: sample\ngpu: (dry run)\n")
    (work / "phases.tsv").write_text("record\t10\t1\t0\nbuild\t100\t64\t0\ntests\t100\t100\t124\n")
    kernel = "_ZN9latentops12_GLOBAL__N_114nc_gemm_kernelILb1ELi4EEEvNS0_8GemmArgsE"
    (work / "build.log").write_text(
        f"ptxas info    : Compiling entry function '{kernel}' for 'sm_90a'\n"
        f"ptxas info    : Function properties for {kernel}\n"
        "    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 168 registers, used 1 barriers, 384 bytes cmem[0]\n"
    )
    (work / "sass.txt").write_text(
        f"\t\tFunction : {kernel}\n"
        "        /*0000*/                   LDC R1, c[0x0][0x28] ;\n"
        "        /*0010*/                   HMMA.1688.F32.TF32 R4, R8, R12, R4 ;\n"
        "        /*0020*/              @!P0 LDL R2, [R1] ;\n"
    )
    (work / "tests-nearest_centroid.log").write_text(
        "tests/ops/test_nearest_centroid.py::test_matches_reference[cuda-cuda] PASSED [ 50%]\n"
        "tests/ops/test_nearest_centroid.py::test_matches_reference[cuda-triton] FAILED [100%]\n"
    )
    (work / "tests-nearest_centroid.status").write_text("1\n")
    (work / "tests-compressed_linear.log").write_text(  # pytest-xdist's -v lines
        "[gw2] [ 50%] PASSED tests/ops/test_compressed_linear.py::test_a[cuda-cuda] \n"
    )
    (work / "tests-compressed_linear.status").write_text("0\n")
    # soft_quantize's tests were killed by the timeout: no status
    (work / "tests-soft_quantize.log").write_text("tests/ops/test_soft_quantize.py::test_a[cuda-cuda] PASSED [ 1%]\n")
    (work / "pipeline" / "softvq-ops").mkdir(parents=True)
    (work / "pipeline" / "softvq-ops" / "metrics.json").write_text(
        '{"backend": "ops", "images_per_s": 12345.6, "steps": 400}'
    )
    (work / "memcheck.log").write_text("========= COMPUTE-SANITIZER\nok\n========= ERROR SUMMARY: 0 errors\n")
    import harness  # noqa: F401  (the writer the benchmark uses; imports torch)

    table.ROWS = work / "rows.jsonl"
    case = table.Case("nearest centroid N=37 K=13 D=19", 2.0 * 37 * 13 * 19, ["anchor"], family="nearest_centroid")
    case.add(table.Row("anchor", 2.0, 1.0, 0.0))
    case.add(table.Row("latentops cuda fp32 exact", 1.0, 0.5, 1e-7))
    case.add(table.Row("latentops triton fp32 exact", float("nan"), None, None, "skipped: failed (phase 3)"))
    table.ROWS = None
    with (work / "rows.jsonl").open("a") as log:
        log.write('{"case": "torn')  # a run killed while writing a row
    (work / "profile.md").write_text("| kernel | ms |\n|---|---:|\n| nc_gemm_kernel | 1.0 |\n")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    command, args = argv[0], argv[1:]
    if command == "resources":
        for k in resources(Path(args[0]).read_text(errors="replace")):
            print(k)
    elif command == "sass":
        for name, counts in sass_mix(Path(args[0]).read_text(errors="replace")).items():
            print(name, dict(counts))
    elif command == "verdicts":
        for row in verdicts(Path(args[0])):
            print(" | ".join(row))
    elif command == "skips":
        print("\n".join(skips(Path(args[0]))))
    elif command == "assemble":
        target = Path(args[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".tmp")
        partial.write_text(assemble(Path(args[0])))
        partial.replace(target)  # a kill mid-write leaves the previous results
    elif command == "sample":
        sample(Path(args[0]))
    elif command in ("sanitize", "profile"):
        import gpu_probes

        return getattr(gpu_probes, command)()
    else:
        print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
