"""The status vocabulary: exactly one per (table, expected date), each with what it means and
what to do about it."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DONE", "GAP_STATUSES", "NEEDS_WORK", "PROGRESS_WORDS", "Status", "percent"]


class Status(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"
    NO_DATA = "no_data"
    FAILED = "failed"
    NEVER_RAN = "never_ran"
    RUNNING = "running"
    STALE = "stale"
    LOST = "lost"
    BOOTSTRAP = "bootstrap"

    @property
    def meaning(self) -> str:
        return _MEANING[self][0]

    @property
    def action(self) -> str:
        return _MEANING[self][1]


_MEANING = {
    Status.COMPLETE: ("rows at or above the table's minimum", "nothing"),
    Status.PARTIAL: ("rows present but below the minimum", "rerun the date; find why rows were dropped"),
    Status.NO_DATA: (
        "no rows; the latest finished run succeeded with zero records, or failed or skipped with a "
        "no-data reason (run_history.no_data_reasons): the source had nothing",
        "nothing to load; use the fallback table when one is named",
    ),
    Status.FAILED: ("no rows; the latest finished run failed", "read the last error, fix the cause, rerun"),
    Status.NEVER_RAN: (
        "no rows and no run record that says why (none at all, only skips for another reason or "
        "statuses the spec does not map, or a 'no data' read before an upstream table had the rows it "
        "has there now)",
        "run the job: the data may well exist",
    ),
    Status.RUNNING: ("no rows yet; a run started recently and has not finished", "wait for it"),
    Status.STALE: (
        "no rows; the latest run started long ago and never finished (crashed or killed)",
        "rerun the date; the orphaned run will not finish",
    ),
    Status.LOST: (
        "no rows, yet a successful run wrote rows: they were deleted or expired since",
        "check partition expiration, then rerun",
    ),
    Status.BOOTSTRAP: (
        "inside the phase's bootstrap window at a season start: expected empty",
        "nothing: lookbacks have no history yet",
    ),
}

# Cells a backfill should rerun by default.
NEEDS_WORK = frozenset({Status.NEVER_RAN, Status.FAILED, Status.STALE, Status.LOST, Status.PARTIAL})
# Cells that are not (yet) as they should be; `running` is a gap that needs patience, not work.
GAP_STATUSES = NEEDS_WORK | {Status.RUNNING}

# The one vocabulary of progress, the same in validate, monitor, the reports and the explorer:
# "complete" counts cells with their rows; "done" counts cells with nothing left to load
# (complete, or the source genuinely had no data). Both over the expected cells (bootstrap
# dates excluded), shown side by side.
DONE = frozenset({Status.COMPLETE, Status.NO_DATA})
PROGRESS_WORDS = {
    "complete": "rows present (status complete)",
    "done": "complete, or genuinely no data: nothing left to load",
}


def percent(part: int, whole: int) -> float:
    """`part` of `whole` in percent; nothing expected counts as all of it."""
    return 100.0 * part / whole if whole else 100.0
