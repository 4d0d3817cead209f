"""Benchmark rows and their markdown, without torch (the GPU kit assembles its results file from the
JSON-lines log in a process that must not pay for importing torch). With ROWS set (run.py
--rows), Case.add appends every row to that file as soon as it is measured, so a run killed
midway keeps what it measured."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Row:
    name: str
    ms: float  # NaN: not timed (failed, wrong or skipped: see note)
    extra_mib: float | None  # peak device memory beyond the inputs and outputs (GPU only)
    error: float | None  # what the check measured against the float64 reference
    note: str = ""


@dataclass
class Case:
    title: str
    flops: float
    anchors: list[str]  # names of rows that the others are compared with
    rows: list[Row] = field(default_factory=list)
    family: str = ""  # the op family whose backends it times ("" for none)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        if ROWS is not None:
            line = {"case": self.title, "flops": self.flops, "anchors": self.anchors, **row.__dict__}
            with ROWS.open("a") as log:
                log.write(json.dumps(line) + "\n")


ROWS: Path | None = None

LEGEND = (
    "Times are medians; 'vs X' is X's time over the row's time (higher is faster), forward rows "
    "against forward anchors and backward against backward. Every row's output was checked against "
    "the float64 reference before it was timed; 'error' is what that check measured (relative "
    "error, or for indices the worst chosen distance's excess over the nearest, relative to "
    "‖z‖² + max‖c‖²)."
)


def read_rows(path: Path) -> list[Case]:
    """The cases of a JSON-lines log, in the order their first rows were written (a torn last line,
    from a run killed while writing it, is left out)."""
    cases: dict[str, Case] = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        case = cases.setdefault(entry["case"], Case(entry["case"], entry["flops"], entry["anchors"]))
        case.rows.append(Row(entry["name"], entry["ms"], entry["extra_mib"], entry["error"], entry["note"]))
    return list(cases.values())


def _stage(name: str) -> str | None:
    """'fwd' or 'bwd' for a row of harness.measure_forward_backward."""
    stage = name.rsplit(" ", 1)[-1]
    return stage if stage in ("fwd", "bwd") else None


def render_cases(cases: list[Case], title: str, preamble: str, level: int = 2) -> str:
    """The markdown: `title`, the preamble and legend, then one table per case under a heading of `level`."""
    lines = [title, "", f"{preamble} {LEGEND}", ""]
    for case in cases:
        anchors = {row.name: row.ms for row in case.rows if row.name in case.anchors}
        header = [
            "implementation",
            "time (ms)",
            *(["GFLOP/s"] if case.flops else []),
            *(f"vs {a}" for a in case.anchors),
            "error",
            "extra memory (MiB)",
            "note",
        ]
        lines += [
            f"{'#' * level} {case.title}",
            "",
            "| " + " | ".join(header) + " |",
            "|---|" + "---:|" * (len(header) - 2) + "---|",
        ]
        for row in case.rows:
            measured = row.ms == row.ms
            cells = [row.name, f"{row.ms:.3f}" if measured else "–"]
            if case.flops:
                cells.append(f"{case.flops / row.ms / 1e6:.0f}" if measured else "")
            cells += [
                f"{anchors[a] / row.ms:.2f}x"
                if a in anchors and measured and _stage(a) in (None, _stage(row.name))
                else ""
                for a in case.anchors
            ]
            cells += [
                f"{row.error:.1e}" if row.error is not None else "",
                f"{row.extra_mib:.1f}" if row.extra_mib is not None else "",
                row.note,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
