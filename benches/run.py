"""The benchmark table: every latentops backend against what users run today, in one process.

    python benches/run.py [--out FILE] [--quick] [--only PREFIX,...] [--rows FILE] [--skip FAMILY:BACKEND=WHY ...]

One module per op family (nearest_centroid.py, soft_quantize.py, graph.py, kmeans.py), one per
pipeline cost (laplacian_regularizer.py), plus
startup.py (import and first-call costs); harness.py times and renders. On a GPU the cases are
timed with triton.testing.do_bench (median of CUDA-event timings); on a CPU, the median of
wall-clock repeats. Every row is checked against the float64 reference before it is timed, and
shows its speed-up over the case's anchors measured in the same run.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

import harness
import table
from ceilings import ceilings_case
from compressed_linear import compressed_linear_case, compressed_linear_decode_case
from graph import graph_smoothness_case
from harness import render
from kmeans import kmeans_case
from laplacian_regularizer import laplacian_regularizer_case
from nearest_centroid import nearest_centroid_case
from soft_quantize import soft_quantize_case
from startup import startup_case


def _compressed_linear_cases(device: str, quick: bool) -> list[tuple]:
    """The issue's layer, W 8192x8192 95% pruned with k = 32 levels (2048² when quick), at batch 1,
    8 and 64 on the CPU and 1, 4 and 16 on a GPU, and its decode."""
    n = 2048 if quick else 8192
    batches = (1, 4, 16) if device == "cuda" else (1, 8, 64)
    return [
        *((compressed_linear_case, (n, n, 32, 0.95, batch, device, quick)) for batch in batches),
        (compressed_linear_decode_case, (n, n, 32, 0.95, device, quick)),
    ]


def plan(device: str, quick: bool) -> list[tuple]:
    if device == "cuda":
        cases = [
            (ceilings_case, (device, quick)),
            (nearest_centroid_case, (262144, 4096, 64, device, quick)),
            (nearest_centroid_case, (65536, 16384, 256, device, quick)),
            (soft_quantize_case, (65536, 4096, 64, device, quick)),
            (graph_smoothness_case, (8, 1024, 16384, 10, device, quick)),
            (laplacian_regularizer_case, (100, 2, device, quick)),
            *_compressed_linear_cases(device, quick),
        ]
        return cases if quick else [*cases, (kmeans_case, (1_000_000, 20_000, 256, 25, device))]
    cases = [
        (startup_case, (device,)),
        (nearest_centroid_case, (16384, 1024, 64, device, quick)),
        (soft_quantize_case, (16384, 1024, 64, device, quick)),
        (graph_smoothness_case, (4, 256, 4096, 10, device, quick)),
        (laplacian_regularizer_case, (100, 2, device, quick)),
        *_compressed_linear_cases(device, quick),
    ]
    return cases if quick else [*cases, (kmeans_case, (200_000, 256, 64, 20, device))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--quick", action="store_true", help="smaller cases, shorter timings")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--only", help="run only the cases whose function name starts with one of these (comma-separated), e.g. graph"
    )
    parser.add_argument("--rows", type=Path, help="append every row to this JSON-lines file as it is measured")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="FAMILY:BACKEND=WHY",
        help="do not time this backend of this op family; its row says WHY (repeatable)",
    )
    args = parser.parse_args(argv)
    table.ROWS = args.rows
    for entry in args.skip:
        pair, _, why = entry.partition("=")
        family, _, backend = pair.partition(":")
        harness.SKIP[family, backend] = why or "skipped"
    if args.device == "cuda":
        name = torch.cuda.get_device_name()
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    cases = [
        fn(*case_args)
        for fn, case_args in plan(args.device, args.quick)
        if not args.only or fn.__name__.startswith(tuple(args.only.split(",")))
    ]
    markdown = render(cases, name)
    print("\n" + markdown)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown + "\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
