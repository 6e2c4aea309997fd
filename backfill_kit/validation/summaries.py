"""A validation summarised for people: per season and table, per cause, runs of gaps.

Plain Python over cells (the full validation or any filtered part of it), so that the coverage
report runs without pandas: importing pandas alone costs a quarter of the report's time budget
over a bare notebook. `frames` turns the same rows into DataFrames for analysts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from backfill_kit.common.formatting import printable
from backfill_kit.common.status import GAP_STATUSES, NEEDS_WORK, Status
from backfill_kit.validation.validator import Cell

__all__ = [
    "BREAKDOWN_ORDER",
    "Gap",
    "breakdown_rows",
    "gap_runs",
    "no_data_rows",
    "readable_error",
    "season_counts",
]

# The causes a reader must tell apart, in the order the report explains them.
BREAKDOWN_ORDER = (
    Status.NEVER_RAN,
    Status.FAILED,
    Status.NO_DATA,
    Status.STALE,
    Status.LOST,
    Status.PARTIAL,
    Status.RUNNING,
)


def readable_error(raw: object, limit: int = 400, *, kinds: bool = True) -> str | None:
    """The run history's error column as one line a person reads: `type: message` per error.

    The pipeline stores a JSON list of {error_type, error_message, timestamp}, as JSON, as
    REPEATED fields or as text; the warehouse hands it over as JSON text (a text column's
    value JSON-encoded once more). Anything else is shown as it is, control characters
    removed. Long texts are cut so that a hover label stays on the screen."""
    if not isinstance(raw, str) or not raw:  # pandas holds a missing error as NaN
        return None
    text = _error_items(_decoded(_decoded(raw)), kinds)
    text = " ".join(printable(text).split())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decoded(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _error_items(value: object, kinds: bool) -> str:
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        parts = [_one_error(i, kinds) if isinstance(i, dict) else _error_items(i, kinds) for i in value]
        return "; ".join(p for p in parts if p)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _one_error(item: dict[str, Any], kinds: bool) -> str:
    kind, message = item.get("error_type"), item.get("error_message")
    if kind and message:
        return f"{kind}: {message}" if kinds else str(message)
    return str(message or kind or json.dumps(item))


def season_counts(cells: Iterable[Cell]) -> dict[str, dict[str, Counter[str]]]:
    """Cells per season, then table, then status, seasons in calendar order."""
    out: dict[str, dict[str, Counter[str]]] = {}
    for cell in cells:
        out.setdefault(cell.season or "(no season)", {}).setdefault(cell.table, Counter())[str(cell.status)] += 1
    return out


def breakdown_rows(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Each cause of a missing cell: how many cells and tables, what it means, what to do."""
    counts: Counter[Status] = Counter()
    tables: dict[Status, set[str]] = {}
    for cell in cells:
        counts[cell.status] += 1
        tables.setdefault(cell.status, set()).add(cell.table)
    return [
        {
            "status": str(s),
            "cells": counts[s],
            "tables": len(tables.get(s, ())),
            "backfill reruns it": "yes" if s in NEEDS_WORK else "no",
            "meaning": s.meaning,
            "what to do": s.action,
        }
        for s in BREAKDOWN_ORDER
    ]


@dataclass(frozen=True)
class Gap:
    """Consecutive expected dates of one table with the same gap status."""

    table: str
    phase: str
    status: Status
    first: date
    last: date
    dates: int
    last_error: str | None

    def row(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "phase": self.phase,
            "status": str(self.status),
            "first": self.first,
            "last": self.last,
            "dates": self.dates,
            "last error": self.last_error,
            "what to do": self.status.action,
        }


def gap_runs(cells: Iterable[Cell], days: Sequence[date]) -> list[Gap]:
    """Runs of consecutive expected dates (`days`, the calendar) of one table with the same gap
    status, longest first; each with the latest error seen in it."""
    position = {d: i for i, d in enumerate(days)}
    per_table: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.status in GAP_STATUSES and cell.date in position:
            per_table.setdefault(cell.table, []).append(cell)
    gaps: list[Gap] = []
    for table_cells in per_table.values():
        table_cells.sort(key=lambda c: position[c.date])
        gaps.extend(_runs(table_cells, position))
    return sorted(gaps, key=lambda g: (-g.dates, g.first, g.table))


def _runs(cells: list[Cell], position: dict[date, int]) -> Iterable[Gap]:
    run: list[Cell] = []
    for cell in [*cells, None]:
        if run and (
            cell is None or cell.status is not run[0].status or position[cell.date] != position[run[-1].date] + 1
        ):
            errors = [c.last_error for c in run if c.last_error]
            yield Gap(
                run[0].table,
                run[0].phase,
                run[0].status,
                run[0].date,
                run[-1].date,
                len(run),
                readable_error(errors[-1]) if errors else None,
            )
            run = []
        if cell is not None:
            run.append(cell)


def no_data_rows(cells: Iterable[Cell]) -> list[dict[str, Any]]:
    """Per table, its `no_data` cells: how many, their first and last date, and how many of them
    each fallback covers (complete on that date); the rest have no fallback with data."""
    per_table: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.status is Status.NO_DATA:
            per_table.setdefault(cell.table, []).append(cell)
    rows = []
    for table, mine in per_table.items():
        covered = Counter(c.fallback for c in mine if c.fallback)
        rows.append(
            {
                "table": table,
                "no data": len(mine),
                "first": min(c.date for c in mine),
                "last": max(c.date for c in mine),
                "covered by fallback": ", ".join(f"{name} ({n:,})" for name, n in covered.most_common()) or "none",
                "not covered": len(mine) - sum(covered.values()),
            }
        )
    return rows
