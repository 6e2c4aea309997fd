"""Tables (pandas) of a validation, a plan and a runner's journal: for the execution log and
for analysts who want to go on from a report in a notebook.

The command line never imports this module; neither does the coverage report's hot path
(`validation.summaries` has the same summaries in plain Python).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import pandas as pd

from backfill_kit.running.journal import UNFINISHED, Event
from backfill_kit.validation.summaries import gap_runs, readable_error
from backfill_kit.validation.validator import Cell, Validation

if TYPE_CHECKING:
    from backfill_kit.plan import Plan

__all__ = ["attempts_frame", "cells_frame", "gaps_frame", "steps_frame"]


def cells_frame(validation: Validation) -> pd.DataFrame:
    """One row per (table, expected date), with the evidence behind its status; `day` is the
    date's position in the calendar of expected dates."""
    frame = pd.DataFrame.from_records(validation.cells, columns=list(Cell._fields))
    frame["status"] = frame["status"].map(str)
    frame["last_error"] = frame["last_error"].map(readable_error)
    days = {d.date: i for i, d in enumerate(validation.days)}
    frame["day"] = frame["date"].map(days).astype("int64")
    return frame


def gaps_frame(cells: Iterable[Cell], days: Sequence[date]) -> pd.DataFrame:
    """`summaries.gap_runs` as a frame: runs of one table's consecutive expected dates with
    the same gap status, longest first, with the last error seen and what to do."""
    columns = ["table", "phase", "status", "first", "last", "dates", "last error", "what to do"]
    return pd.DataFrame([g.row() for g in gap_runs(cells, days)], columns=columns)


# --- the journal ---------------------------------------------------------------------------


def attempts_frame(events: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per attempt of a step (and per step skipped without an attempt), with the
    stage it ran in, its start and finish times, outcome, exit code, retries and log."""
    rows: list[dict[str, Any]] = []
    open_attempts: dict[tuple[str, int], dict[str, Any]] = {}
    stage: dict[str, Any] = {}
    for event in events:
        kind = event.get("event")
        if kind == Event.STAGE_STARTED:
            stage = event
        elif kind == Event.STEP_STARTED:
            row = _attempt_row(event, stage)
            open_attempts[(event["step"], event.get("attempt", 1))] = row
            rows.append(row)
        elif kind == Event.STEP_FINISHED:
            _finish(rows, open_attempts, event, stage)
    return _typed_attempts(pd.DataFrame(rows, columns=ATTEMPT_COLUMNS))


ATTEMPT_COLUMNS = [
    "stage",
    "phase",
    "step",
    "table",
    "attempt",
    "started",
    "finished",
    "seconds",
    "outcome",
    "exit_code",
    "retries",
    "dates",
    "log",
    "tail",
    "reason",
]


def _attempt_row(event: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": stage.get("stage"),
        "phase": stage.get("phase"),
        "step": event["step"],
        "table": event.get("table"),
        "attempt": event.get("attempt", 1),
        "started": event.get("time"),
        "finished": None,
        "seconds": None,
        "outcome": UNFINISHED,
        "exit_code": None,
        "retries": None,
        "dates": event.get("dates"),
        "log": event.get("log"),
        "tail": None,
        "reason": None,
    }


def _finish(
    rows: list[dict[str, Any]],
    open_attempts: dict[tuple[str, int], dict[str, Any]],
    event: dict[str, Any],
    stage: dict[str, Any],
) -> None:
    row = open_attempts.pop((event["step"], event.get("attempt", 1)), None)
    if row is None:  # skipped: finished without ever starting
        row = _attempt_row({**event, "attempt": 0}, stage)
        row["started"] = event.get("time")
        rows.append(row)
    row.update(
        finished=event.get("time"),
        seconds=event.get("seconds", 0.0),
        outcome=event.get("outcome"),
        exit_code=event.get("exit_code"),
        retries=event.get("retries"),
        tail=event.get("tail"),
        reason=event.get("reason") or event.get("error"),
    )
    row["log"] = event.get("log") or row["log"]


def _typed_attempts(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ("started", "finished"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["exit_code"] = frame["exit_code"].astype("Int64")
    frame["retries"] = frame["retries"].astype("Int64")
    return frame


def steps_frame(attempts: pd.DataFrame, plan: Plan | None = None) -> pd.DataFrame:
    """One row per step: its last attempt's outcome and exit code, the time all its attempts
    took, its retries, dates and log tail. With the plan, the job's command and exact dates."""
    columns = [
        "stage",
        "phase",
        "step",
        "table",
        "first",
        "last",
        "dates",
        "outcome",
        "exit_code",
        "seconds",
        "attempts",
        "retries",
        "log",
        "tail",
        "command",
    ]
    if attempts.empty:
        return pd.DataFrame(columns=columns)
    by_step = attempts.groupby("step", sort=False)
    steps = by_step.tail(1).set_index("step").copy()
    steps["seconds"] = by_step["seconds"].sum(min_count=1)
    steps["attempts"] = by_step["attempt"].max()
    planned = {s.id: s for s in plan.steps} if plan is not None else {}
    steps["first"] = [_step_span(step, planned)[0] for step in steps.index]
    steps["last"] = [_step_span(step, planned)[1] for step in steps.index]
    steps["dates"] = [len(planned[s].dates) if s in planned else steps.at[s, "dates"] for s in steps.index]
    steps["command"] = [planned[s].command if s in planned else None for s in steps.index]
    steps["tail"] = steps["tail"].fillna(steps["reason"])
    return steps.reset_index()[columns]


def _step_span(step_id: str, planned: dict[str, Any]) -> tuple[date | None, date | None]:
    """The step's first and last date: from the plan, else from its id (`table:first..last`)."""
    if step_id in planned:
        return planned[step_id].start, planned[step_id].end
    _, _, span = step_id.partition(":")
    first, _, last = span.partition("..")
    try:
        return date.fromisoformat(first), date.fromisoformat(last or first)
    except ValueError:
        return None, None
