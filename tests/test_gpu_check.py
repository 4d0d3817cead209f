"""The GPU kit (benches/gpu_check.sh) cannot run here, but its plan and its results assembly can:
the dry run prints every phase with its budget and assembles the results file from sample phase
outputs, so CI catches a plan over its time or an assembly that no longer reads what the phases
write."""

import re
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEASE_PLAN_S = 560  # the call's 600 s limit, and a machine start, within the 15-minute lease


def test_dry_run_plans_within_the_lease_and_assembles_the_results(tmp_path):
    env = {"OUT": str(tmp_path), "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["bash", "benches/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    total = int(re.search(r"plan total: (\d+) s", done.stdout).group(1))
    budgets = [int(m) for m in re.findall(r"^  \S+\s+(\d+)  ", done.stdout, re.M)]
    assert total == sum(budgets) <= LEASE_PLAN_S
    for phase in ("record", "build", "tests", "bench-ceilings", "bench-kmeans", "pipeline", "profile", "memcheck"):
        assert re.search(rf"^  {phase}\s", done.stdout, re.M), phase
    results = (tmp_path / "results.md").read_text()
    # What each phase's sample output should turn into.
    assert "| tests | 100 | 100 | TIMED OUT |" in results
    assert "| nearest_centroid | cuda | passed | 1/1 tests passed; memcheck clean; racecheck not run |" in results
    assert "| nearest_centroid | triton | FAILED | 0/1 tests passed |" in results
    assert "| graph | cuda | NOT RUN |" in results
    assert (
        "| soft_quantize | cuda | INCOMPLETE | 1/1 tests passed (of those that ran: the family's tests did not finish);"
        in results
    )
    assert "| softvq-ops | ops | 12,346 | 400 |" in results
    assert "| compressed_linear | cuda | passed | 1/1 tests passed; memcheck clean; racecheck not run |" in results
    assert "| nc_gemm_kernel<true,4> | sm_90a | 168 | 4/4 | 8 | 0 |" in results
    assert "| nc_gemm_kernel<true,4> | 0 | 1 | 0 | 0 | 0 | 0 | 1 | 0 |" in results
    assert "| latentops cuda fp32 exact | 1.000 | 0 | 2.00x | 1.0e-07 | 0.5 |  |" in results
    assert "torn" not in results  # the row a killed run left half-written is left out
    assert "| nc_gemm_kernel | 1.0 |" in results
    with tarfile.open(tmp_path / "phases.tgz") as logs:
        assert {"./record.txt", "./rows.jsonl", "./build.log"} <= set(logs.getnames())


def test_kernels_that_failed_their_tests_are_not_timed(tmp_path):
    sys.path.insert(0, str(ROOT / "benches"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benches"))
    (tmp_path / "tests-graph.log").write_text(
        "tests/ops/test_graph.py::test_a[cuda-cuda] PASSED\n"
        "tests/ops/test_graph.py::test_a[cuda-triton] ERROR\n"
        "tests/ops/test_graph.py::test_b[cuda-torch] PASSED\n"
    )
    (tmp_path / "tests-graph.status").write_text("1\n")  # pytest ended by itself, with a failure
    (tmp_path / "build.failed").touch()
    skipped = gpu_check.skips(tmp_path)
    # The build failed: every CUDA kernel; graph's Triton kernel failed; the others never started.
    assert "--skip=graph:cuda=failed: the CUDA build failed (phase 3)" in skipped
    assert "--skip=graph:triton=failed: 0/1 tests passed (phase 3)" in skipped
    assert "--skip=soft_quantize:triton=not run: its tests did not start (phase 3)" in skipped
    assert len(skipped) == 2 * len(gpu_check.FAMILIES)
