"""Validation output for people (a table) and for programs (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from backfill_kit.common.formatting import percent_text, plural, printable, size_text
from backfill_kit.common.status import NEEDS_WORK, Status
from backfill_kit.validation.progress import PHASE_RULE, phase_table, progress_from

if TYPE_CHECKING:
    from rich.console import Console

    from backfill_kit.validation.validator import TableSummary, Validation

__all__ = ["print_validation", "validation_csv", "validation_json"]


_NON_ASCII = re.compile(r"[^\x00-\x7f]")

COLUMNS = [
    Status.COMPLETE,
    Status.PARTIAL,
    Status.NO_DATA,
    Status.FAILED,
    Status.NEVER_RAN,
    Status.RUNNING,
    Status.STALE,
    Status.LOST,
    Status.BOOTSTRAP,
]
STYLE = {
    Status.COMPLETE: "green",
    Status.PARTIAL: "yellow",
    Status.NO_DATA: "cyan",
    Status.FAILED: "red",
    Status.NEVER_RAN: "magenta",
    Status.RUNNING: "blue",
    Status.STALE: "red",
    Status.LOST: "red",
    Status.BOOTSTRAP: "dim",
}


def validation_json(v: Validation) -> bytes:
    """Indented at the top, one cell per line: readable, and fast to write. orjson writes all
    cells in one call, dates, moments and statuses natively (a call per cell costs ten times
    more); each cell then goes on its own line. Splitting on `},{"table":` is safe: inside a
    JSON string that quote would be escaped, and every cell starts with its table. Bytes, in
    ASCII: written out as they are, never decoded and encoded again (5 MB for four seasons)."""
    import orjson

    from backfill_kit.common.collector import no_gc_pauses
    from backfill_kit.validation.validator import Cell

    head = json.dumps(v.to_dict(cells=False), indent=2)
    as_object = _object_maker(Cell._fields)
    with no_gc_pauses():  # a dict per cell, all freed together: no cycles to look for
        cells = orjson.dumps(list(map(as_object, v.cells)))
    body = _ascii_only(cells[1:-1].replace(b'},{"table":', b'},\n    {"table":'))
    return head[:-2].encode() + b',\n  "cells": [\n    ' + body + b"\n  ]\n}"


@lru_cache(maxsize=1)
def _object_maker(fields: tuple[str, ...]) -> Callable[[tuple[Any, ...]], dict[str, Any]]:
    """`lambda row: {"table": row[0], "phase": row[1], ...}` for these fields, built from
    them as namedtuple builds its own methods: a dict display takes half the time of
    dict(zip(fields, row)), and it is made once per field list, never by hand."""
    if not all(name.isidentifier() for name in fields):  # they come from Cell, never from input
        raise ValueError(f"not field names: {fields}")
    items = ", ".join(f"{name!r}: row[{i}]" for i, name in enumerate(fields))
    maker: Callable[[tuple[Any, ...]], dict[str, Any]] = eval(f"lambda row: {{{items}}}")
    return maker


def _ascii_only(text: bytes) -> bytes:
    """UTF-8 JSON text with every non-ASCII character escaped, as json.dumps writes it, so that
    the output survives any terminal's encoding. They occur only inside strings (an error's text)."""
    if text.isascii():  # the common case, checked in C
        return text
    return _NON_ASCII.sub(lambda m: json.dumps(m.group())[1:-1], text.decode()).encode()


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
        f"[bold]{v.spec.name}[/]: {v.start} .. {v.end}, {plural(len(v.days), 'expected ' + v.spec.calendar.unit)}, "
        f"{plural(len(v.tables), 'table')}, {plural(len(v.queries), 'warehouse query', 'warehouse queries')} in {seconds:.2f} s"
    )
    if cost := cost_line(v):
        console.print(cost, soft_wrap=True)
    summary = v.summary()
    console.print(_summary_table(summary))
    console.print(f"\n[bold]Phases[/] ({PHASE_RULE})")
    console.print(phase_table(progress_from(summary).phases))
    _print_run_history(v, console)
    _print_worst(v, console, worst)
    _print_warnings(v, console)
    console.print(next_step(v), soft_wrap=True)


def cost_line(v: Validation) -> str:
    """What the queries cost, where the warehouse bills by bytes (BigQuery); else nothing."""
    cost = v.cost()
    billed, usd = cost["estimated_bytes_billed"], cost["estimated_usd"] or 0.0
    if cost["unknown_estimates"]:
        return (
            f"cost: unknown: BigQuery's dry run could not bound the {', '.join(cost['unknown_estimates'])} "
            "query (warehouse.maximum_bytes_billed, when set, still caps every job)"
        )
    if billed is None:
        return ""
    processed = int(cost["bytes_processed"] or 0)
    return (
        f"cost: {size_text(processed)} processed, at most {size_text(int(billed))} billed "
        f"(~${usd:.4f}), estimated by dry runs before each query ran"
    )


def _print_warnings(v: Validation, console: Console) -> None:
    if v.warnings:
        console.print(
            f"\n[bold yellow]Warnings[/] ({len(v.warnings)}: read {'it' if len(v.warnings) == 1 else 'them'} before a backfill)"
        )
        for warning in v.warnings:
            console.print(f"  ! {warning}", soft_wrap=True, markup=False)  # table names, not markup


def _summary_table(summary: Sequence[TableSummary]) -> object:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("phase / table")
    table.add_column("expected", justify="right")
    for status in COLUMNS:
        table.add_column(str(status).replace("_", " "), justify="right", style=STYLE[status])
    table.add_column("% complete", justify="right")
    table.add_column("% done", justify="right")
    phase = None
    for s in summary:
        if s.phase != phase:
            phase = s.phase
            table.add_row(f"[bold]{phase}[/]")
        cells = [f"{s.counts[st]:,}" if s.counts.get(st) else "-" for st in COLUMNS]
        table.add_row(
            f"  {s.table}", f"{s.expected:,}", *cells, percent_text(s.percent_complete), percent_text(s.percent_done)
        )
    return table


def _print_run_history(v: Validation, console: Console) -> None:
    """What the run history said: range runs and the reasons for "nothing to load"."""
    h = v.run_history
    if not h.get("attempts"):
        return
    line = (
        f"\nRun history: {plural(h['attempts'], 'attempt')}; "
        f"{plural(h['dates_from_range_runs'], 'processor-date')} covered by range runs"
    )
    if h["no_data_reasons"]:
        line += "; nothing to load: " + ", ".join(f"{reason} {n:,}" for reason, n in h["no_data_reasons"].items())
    console.print(line, soft_wrap=True, markup=False)


def _print_worst(v: Validation, console: Console, worst: int) -> None:
    runs = v.gap_runs()
    if not runs:
        return
    console.print(f"\n[bold]Largest gaps[/] ({plural(len(runs), 'run')} of consecutive dates in all)")
    for r in runs[:worst]:
        span = f"{r.first}" if r.first == r.last else f"{r.first} .. {r.last}"
        console.print(f"  [{STYLE[r.status]}]{r.status:<9}[/] {r.table:<34} {span:<24} {plural(r.dates, 'date'):>10}")
    failed = [r for r in runs if r.status is Status.FAILED]
    if failed:  # the error column read as text, whether it holds JSON, REPEATED fields or text
        console.print(f"\n[bold]Failures[/] ({plural(sum(r.dates for r in failed), 'cell')}), each with its last error")
        for r in sorted(failed, key=lambda r: (-r.dates, r.first))[:worst]:
            span = f"{r.first}" if r.first == r.last else f"{r.first} .. {r.last}"
            console.print(
                f"  {r.table} {span}: {r.last_error or '(no error recorded)'}"[:160],
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def next_step(v: Validation) -> str:
    counts = v.counts()
    work = {s: counts[s] for s in COLUMNS if s in NEEDS_WORK and counts.get(s)}
    fine = counts.get(Status.NO_DATA, 0)
    if not work:
        waiting = counts.get(Status.RUNNING, 0)
        if waiting:
            return f"\nNext: nothing to backfill; wait for {plural(waiting, 'running cell')} to finish, then validate again."
        return (
            f"\nNext: nothing to backfill. {plural(fine, 'cell')} had genuinely no data."
            if fine
            else "\nNext: nothing to backfill."
        )
    first_phase = next(c.phase for c in v.cells if c.status in NEEDS_WORK)
    detail = ", ".join(f"{s} {n:,}" for s, n in work.items())
    failed = " Failed cells: see last_error in --format json." if counts.get(Status.FAILED) else ""
    return (
        f"\nNext: {plural(sum(work.values()), 'cell')} {'needs' if sum(work.values()) == 1 else 'need'} a backfill ({detail}); start with phase "
        f"'{first_phase}', upstream first.{failed}"
    )


# --- preflight -----------------------------------------------------------------------------

MARK = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]", "skip": "[dim]skip[/]"}


def print_checks(checks: list[Any], console: Console, *, only: tuple[str, ...] = ()) -> None:
    """Each check (or only those whose outcome is in `only`), then the counts of all of them:
    a summary that shows the problems still counts every check that passed."""
    from rich.markup import escape

    for c in checks:
        if only and c.outcome not in only:
            continue
        todo = f" [dim]→ {escape(printable(c.todo))}[/]" if c.todo and c.outcome in ("warn", "fail") else ""
        console.print(f"{MARK[c.outcome]}  {c.name:<30} {escape(printable(c.why))}{todo}", soft_wrap=True)
    counts = {o: sum(c.outcome == o for c in checks) for o in MARK}
    console.print(
        f"\n{counts['pass']} passed, {plural(counts['warn'], 'warning')}, {counts['fail']} failed, {counts['skip']} skipped"
    )
