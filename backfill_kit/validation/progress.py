"""Progress, counted once: the cells complete, done, remaining and failed per table (and per
season), per phase and over everything, and the one rule that says how far along a phase is.

Every view renders from here: `validate`, the monitor (terminal, JSON, the JupyterLab widget),
the reports and the explorer. "complete" counts cells with their rows; "done" the cells with
nothing left to load (complete, or the source genuinely had no data: `status.DONE`); both over
the expected cells, bootstrap dates excluded. "remaining" is what is not done, "failed" the
cells whose latest run failed.

THE phase rule: a phase is as far along as its slowest table, never its best, and never an
average of its tables. The slowest is the least done; among tables equally done, the least
complete (every table done, one of them because its source had nothing: that one); then the
first in the spec's order. A phase's percentages are that one table's; its cell counts are
all its tables' together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backfill_kit.common.formatting import percent_text, plural
from backfill_kit.common.status import DONE, Status, percent

if TYPE_CHECKING:
    from backfill_kit.validation.validator import Cell, TableSummary, Validation

__all__ = [
    "PHASE_COLUMNS",
    "PHASE_RULE",
    "CellCounts",
    "PhaseProgress",
    "Progress",
    "TableProgress",
    "cell_counts",
    "counts_of_cells",
    "phase_progress",
    "phase_rows",
    "phase_table",
    "progress_from",
    "progress_of",
    "progress_text",
    "season_progress",
    "slowest",
]

PHASE_RULE = "a phase is as far along as its slowest table"


@dataclass(frozen=True)
class CellCounts:
    """Cells of one table, season, phase or range: how many are expected, complete, done, failed."""

    expected: int = 0  # expected cells, bootstrap dates not counted
    complete: int = 0  # rows present
    done: int = 0  # complete, or genuinely without data: nothing left to load
    failed: int = 0  # the latest run failed

    @property
    def remaining(self) -> int:
        return self.expected - self.done

    @property
    def percent_complete(self) -> float:
        return percent(self.complete, self.expected)

    @property
    def percent_done(self) -> float:
        return percent(self.done, self.expected)

    def __add__(self, other: CellCounts) -> CellCounts:
        return CellCounts(
            self.expected + other.expected,
            self.complete + other.complete,
            self.done + other.done,
            self.failed + other.failed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "complete": self.complete,
            "done": self.done,
            "remaining": self.remaining,
            "failed": self.failed,
            "percent_complete": round(self.percent_complete, 2),
            "percent_done": round(self.percent_done, 2),
        }


def cell_counts(statuses: Mapping[Status, int]) -> CellCounts:
    """The counts of cells whose statuses are counted in `statuses`."""
    return CellCounts(
        expected=sum(n for s, n in statuses.items() if s is not Status.BOOTSTRAP),
        complete=statuses.get(Status.COMPLETE, 0),
        done=sum(n for s, n in statuses.items() if s in DONE),
        failed=statuses.get(Status.FAILED, 0),
    )


@dataclass(frozen=True)
class TableProgress:
    """One table's cells, over one season (`season`) or every season of the range (None)."""

    phase: str
    table: str
    season: str | None
    cells: CellCounts

    @property
    def expected(self) -> int:
        return self.cells.expected

    @property
    def complete(self) -> int:
        return self.cells.complete

    @property
    def done(self) -> int:
        return self.cells.done

    @property
    def remaining(self) -> int:
        return self.cells.remaining

    @property
    def percent_complete(self) -> float:
        return self.cells.percent_complete

    @property
    def percent_done(self) -> float:
        return self.cells.percent_done


@dataclass(frozen=True)
class PhaseProgress:
    """A phase as far along as its slowest table: that table's percentages, and the cells of
    all its tables together (what remains and what failed in the phase)."""

    phase: str
    slowest: str
    percent_complete: float
    percent_done: float
    cells: CellCounts

    @property
    def remaining(self) -> int:
        return self.cells.remaining

    @property
    def failed(self) -> int:
        return self.cells.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "slowest": self.slowest,
            "percent_complete": round(self.percent_complete, 2),
            "percent_done": round(self.percent_done, 2),
            "cells": self.cells.to_dict(),
        }


def slowest(tables: Sequence[TableProgress]) -> TableProgress:
    """THE phase rule's table: the least done; among equals the least complete; then the first."""
    return min(tables, key=lambda t: (t.percent_done, t.percent_complete))


def phase_progress(tables: Sequence[TableProgress]) -> list[PhaseProgress]:
    """Each phase, in the order its tables come, from its tables' progress over every season."""
    per_phase: dict[str, list[TableProgress]] = {}
    for t in tables:
        per_phase.setdefault(t.phase, []).append(t)
    out = []
    for phase, mine in per_phase.items():
        last = slowest(mine)
        total = sum((t.cells for t in mine), CellCounts())
        out.append(PhaseProgress(phase, last.table, last.percent_complete, last.percent_done, total))
    return out


@dataclass(frozen=True)
class Progress:
    """A validation's progress: per table, per phase, and over every cell."""

    tables: list[TableProgress]
    phases: list[PhaseProgress]
    total: CellCounts

    def to_dict(self) -> dict[str, Any]:
        return {"rule": PHASE_RULE, "phases": [p.to_dict() for p in self.phases], "total": self.total.to_dict()}


def progress_of(v: Validation) -> Progress:
    """Per table over the whole range (the validation's own summary, one pass over its cells)."""
    return progress_from(v.summary())


def progress_from(summaries: Iterable[TableSummary]) -> Progress:
    """The same from per-table summaries already made, in the validation's table order."""
    tables = [TableProgress(s.phase, s.table, None, cell_counts(s.counts)) for s in summaries]
    return Progress(tables, phase_progress(tables), sum((t.cells for t in tables), CellCounts()))


def season_progress(v: Validation) -> list[TableProgress]:
    """Per table and season, seasons in calendar order; a season without expected cells of a
    table is left out."""
    counts: Counter[tuple[str, str | None, Status]] = Counter((c.table, c.season, c.status) for c in v.cells)
    per: dict[tuple[str, str | None], dict[Status, int]] = {}
    for (table, season, status), n in counts.items():
        per.setdefault((table, season), {})[status] = n
    seasons = list(dict.fromkeys(day.season for day in v.days))
    rows = []
    for table in v.tables:
        for season in seasons:
            cells = cell_counts(per.get((table, season), {}))
            if cells.expected:
                rows.append(TableProgress(v.spec.phase_of(table).name, table, season, cells))
    return rows


def counts_of_cells(cells: Iterable[Cell]) -> CellCounts:
    """The counts over any cells (a filtered part of a validation)."""
    return cell_counts(Counter(c.status for c in cells))


def progress_text(cells: Iterable[Cell]) -> str:
    """ "complete" and "done" side by side, in the words of every view."""
    counts = counts_of_cells(cells)
    return (
        f"{percent_text(counts.percent_complete)} complete (rows present), {percent_text(counts.percent_done)} done "
        f"(complete or genuinely no data) of {plural(counts.expected, 'expected cell')}; "
        f"{counts.remaining:,} remaining, {counts.failed:,} failed"
    )


# The phase table, as validate, the monitor and the reports show it: one header, one row per phase.
PHASE_COLUMNS = ("phase", "% complete", "% done", "slowest table", "remaining", "failed")


def phase_rows(phases: Sequence[PhaseProgress]) -> list[tuple[str, ...]]:
    return [
        (
            p.phase,
            percent_text(p.percent_complete),
            percent_text(p.percent_done),
            p.slowest,
            f"{p.remaining:,}",
            f"{p.failed:,}",
        )
        for p in phases
    ]


def phase_table(phases: Sequence[PhaseProgress]) -> Any:
    """The phase rows as a rich table, for every terminal view (`validate`, the monitor)."""
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for name in PHASE_COLUMNS:
        table.add_column(name, justify="left" if name in ("phase", "slowest table") else "right")
    for row in phase_rows(phases):
        table.add_row(*row)
    return table
