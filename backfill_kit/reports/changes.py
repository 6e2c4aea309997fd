"""What changed since the previous coverage report of the same pipeline and range.

Each coverage report keeps, beside its HTML, the status of every cell it showed
(`<report>.cells.json`), and what changed since the newest earlier one of the same pipeline
and range in its folder: new gaps, cells fixed, and cells that were complete and are no longer
(partitions expired, rows deleted). A scheduled audit fails on the last kind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from backfill_kit.common.outputs import write_output
from backfill_kit.common.status import DONE, NEEDS_WORK, Status
from backfill_kit.validation.validator import Cell

__all__ = [
    "CELLS_SUFFIX",
    "Change",
    "Changes",
    "States",
    "cell_states",
    "change_rows",
    "changes_between",
    "previous_report",
    "read_cells_file",
    "write_cells_file",
]

CELLS_SUFFIX = ".cells.json"
CELLS_FORMAT = 1

States = dict[tuple[str, str], str]  # (table, date) -> status


@dataclass(frozen=True)
class Change:
    table: str
    date: str
    before: str
    after: str


@dataclass
class Changes:
    """Three disjoint lists: a cell that was complete and is no longer is not also a new gap."""

    previous: str | None = None  # the previous report's HTML file name; None: there was none
    no_longer_complete: list[Change] = field(default_factory=list)
    new_gaps: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "no_longer_complete": len(self.no_longer_complete),
            "new_gaps": len(self.new_gaps),
            "fixed": len(self.fixed),
        }

    def summary(self) -> str:
        if self.previous is None:
            return "no earlier report of this pipeline and range to compare with"
        c = self.counts()
        cells = "cell" if c["no_longer_complete"] == 1 else "cells"
        gaps = "gap" if c["new_gaps"] == 1 else "gaps"
        return (
            f"since {self.previous}: {c['no_longer_complete']:,} {cells} no longer complete, "
            f"{c['new_gaps']:,} new {gaps}, {c['fixed']:,} fixed"
        )

    def to_dict(self) -> dict[str, Any]:
        lists = {k: [vars(x) for x in getattr(self, k)] for k in ("no_longer_complete", "new_gaps", "fixed")}
        return {"previous": self.previous, **lists}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Changes:
        lists = {k: [Change(**x) for x in data.get(k, [])] for k in ("no_longer_complete", "new_gaps", "fixed")}
        return cls(data.get("previous"), **lists)


_GAP = {str(s) for s in NEEDS_WORK}
_DONE = {str(s) for s in DONE}


def cell_states(cells: Iterable[Cell]) -> States:
    return {(c.table, c.date.isoformat()): str(c.status) for c in cells}


def changes_between(previous: States, current: States, previous_name: str) -> Changes:
    out = Changes(previous_name)
    for key in sorted(current, key=lambda k: (k[1], k[0])):
        before, after = previous.get(key), current[key]
        change = Change(key[0], key[1], before or "-", after)
        if before == Status.COMPLETE and after != Status.COMPLETE:
            out.no_longer_complete.append(change)
        elif after in _GAP and before not in _GAP:
            out.new_gaps.append(change)
        elif before in _GAP and after in _DONE:
            out.fixed.append(change)
    return out


# --- the file beside each report ---------------------------------------------------------------


def write_cells_file(path: Path, meta: dict[str, Any], states: States, changes: Changes) -> None:
    by_table: dict[str, dict[str, str]] = {}
    for (table, day), status in states.items():
        by_table.setdefault(table, {})[day] = status
    data = {"format": CELLS_FORMAT, **meta, "cells": by_table, "changes": changes.to_dict()}
    write_output(
        path, json.dumps(data, separators=(",", ":")), what="a report's cells file", hint="choose another --out-dir"
    )


def read_cells_file(path: Path) -> dict[str, Any] | None:
    """A report's cells file, or None when it is unreadable or not one (never an error: the
    comparison is then with the report before it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == CELLS_FORMAT else None


def states_of(data: dict[str, Any]) -> States:
    return {(table, day): status for table, days in data.get("cells", {}).items() for day, status in days.items()}


def previous_report(out_dir: Path, spec: str, start: date, end: date, before: str) -> tuple[str, States] | None:
    """The newest cells file in `out_dir` of the same pipeline and range made before `before`
    (an ISO time; the same second counts, as two reports can share one): its report's name and its cells."""
    found = []
    for path in out_dir.glob(f"*{CELLS_SUFFIX}"):
        data = read_cells_file(path)
        if data and (data.get("spec"), data.get("start"), data.get("end")) == (spec, str(start), str(end)):
            made = str(data.get("generated_at", ""))
            if made <= before:  # the current report is not written yet
                found.append((made, path, data))
    if not found:
        return None
    _, path, data = max(found, key=lambda f: (f[0], f[1].name))
    return path.name.removesuffix(CELLS_SUFFIX) + ".html", states_of(data)


def change_rows(changes: Changes, limit: int) -> Iterator[dict[str, Any]]:
    """Rows for a report's table: the kind, the cell, its status then and now."""
    for kind, items in (
        ("no longer complete", changes.no_longer_complete),
        ("new gap", changes.new_gaps),
        ("fixed", changes.fixed),
    ):
        for c in items[:limit]:
            yield {"change": kind, "table": c.table, "date": c.date, "before": c.before, "now": c.after}
        if len(items) > limit:
            yield {"change": kind, "table": f"... and {len(items) - limit:,} more", "date": "", "before": "", "now": ""}
