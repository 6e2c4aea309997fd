"""Validation output for people (a table) and for programs (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

from .status import NEEDS_WORK, Status

if TYPE_CHECKING:
    from rich.console import Console

    from .validation import Validation

__all__ = ["print_validation", "validation_csv", "validation_json"]

COLUMNS = [
    Status.COMPLETE, Status.PARTIAL, Status.NO_DATA, Status.FAILED, Status.NEVER_RAN,
    Status.RUNNING, Status.STALE, Status.LOST, Status.BOOTSTRAP,
]
STYLE = {
    Status.COMPLETE: "green", Status.PARTIAL: "yellow", Status.NO_DATA: "cyan", Status.FAILED: "red",
    Status.NEVER_RAN: "magenta", Status.RUNNING: "blue", Status.STALE: "red", Status.LOST: "red",
    Status.BOOTSTRAP: "dim",
}


def validation_json(v: Validation) -> str:
    """Indented at the top, one cell per line: readable, and fast to write (json's C encoder
    is used only without indent)."""
    data = v.to_dict()
    cells = data.pop("cells")
    head = json.dumps(data, indent=2)
    body = ",\n    ".join(json.dumps(c) for c in cells)
    return head[:-2] + ',\n  "cells": [\n    ' + body + "\n  ]\n}"


def validation_csv(v: Validation) -> str:
    out = io.StringIO()
    fields = list(v.cells[0].to_dict()) if v.cells else ["table", "date", "status", "rows"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for cell in v.cells:
        row = cell.to_dict()
        row["warnings"] = "; ".join(cell.warnings)
        writer.writerow(row)
    return out.getvalue()


def print_validation(v: Validation, console: Console, *, worst: int = 8) -> None:
    seconds = sum(q.seconds for q in v.queries)
    console.print(
        f"[bold]{v.spec.name}[/]: {v.start} .. {v.end}, {len(v.days)} expected dates, "
        f"{len(v.tables)} tables, {len(v.queries)} warehouse queries in {seconds:.2f} s"
    )
    console.print(_summary_table(v))
    _print_worst(v, console, worst)
    console.print(next_step(v), soft_wrap=True)


def _summary_table(v: Validation) -> object:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("phase / table")
    table.add_column("expected", justify="right")
    for status in COLUMNS:
        table.add_column(str(status).replace("_", " "), justify="right", style=STYLE[status])
    table.add_column("% complete", justify="right")
    phase = None
    summary = v.summary()
    for s in summary:
        if s.phase != phase:
            phase = s.phase
            # A phase is as far along as its slowest table, never its best.
            slowest = min(x.percent_done for x in summary if x.phase == phase)
            table.add_row(f"[bold]{phase}[/]", *[""] * (len(COLUMNS) + 1), f"[bold]{slowest:.1f}% done[/]")
        cells = [f"{s.counts[st]:,}" if s.counts.get(st) else "-" for st in COLUMNS]
        table.add_row(f"  {s.table}", f"{s.expected:,}", *cells, f"{s.percent_complete:.1f}%")
    return table


def _print_worst(v: Validation, console: Console, worst: int) -> None:
    runs = v.gap_runs()
    if not runs:
        return
    console.print(f"\n[bold]Largest gaps[/] ({len(runs):,} runs of consecutive dates in all)")
    for r in runs[:worst]:
        span = f"{r.first}" if r.first == r.last else f"{r.first} .. {r.last}"
        console.print(f"  [{STYLE[r.status]}]{r.status:<9}[/] {r.table:<34} {span:<24} {r.dates:>4} dates")


def next_step(v: Validation) -> str:
    counts = v.counts()
    work = {s: counts[s] for s in COLUMNS if s in NEEDS_WORK and counts.get(s)}
    fine = counts.get(Status.NO_DATA, 0)
    if not work:
        waiting = counts.get(Status.RUNNING, 0)
        if waiting:
            return f"\nNext: nothing to backfill; wait for {waiting:,} running cells to finish, then validate again."
        return f"\nNext: nothing to backfill. {fine:,} cells had genuinely no data." if fine else "\nNext: nothing to backfill."
    first_phase = next(c.phase for c in v.cells if c.status in NEEDS_WORK)
    detail = ", ".join(f"{s} {n:,}" for s, n in work.items())
    return (
        f"\nNext: {sum(work.values()):,} cells need a backfill ({detail}); start with phase "
        f"'{first_phase}', upstream first. Failed cells: see last_error in --format json."
    )
