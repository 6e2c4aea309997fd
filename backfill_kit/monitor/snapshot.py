"""Watching a backfill: progress per phase, table and season, the rate, an ETA, recent
failures, orphaned runs and where each runner is.

Progress is counted by `validation.progress` (a phase as far along as its slowest table; the
same numbers as `validate`), steps by `running.steps`, and the ETA by `running.eta`, from the
journal of the runner at work: the monitor adds no rule of its own. The rate is counted from
the run history, so it sees every runner and every job; it is shown, never turned into an ETA.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from backfill_kit.common.arguments import as_date
from backfill_kit.common.formatting import plural
from backfill_kit.common.status import Status
from backfill_kit.errors import InputError
from backfill_kit.running.eta import IDLE, UNKNOWN, Eta, plan_eta, run_eta
from backfill_kit.running.journal import Event, read_journal
from backfill_kit.running.locks import is_locked, journal_lock
from backfill_kit.running.steps import StepCounts, find_plan, journal_run
from backfill_kit.spec.model import PipelineSpec
from backfill_kit.validation.progress import CellCounts, PhaseProgress, TableProgress, progress_of, season_progress
from backfill_kit.validation.summaries import readable_error
from backfill_kit.validation.validator import Validation, history_request, validate
from backfill_kit.warehouse import RecentRun, Warehouse, open_warehouse
from backfill_kit.warehouse.base import DONE_CATEGORIES

__all__ = ["RunnerPosition", "Snapshot", "find_journals", "runner_position", "take_snapshot"]


@dataclass(frozen=True)
class Failure:
    table: str
    date: date
    finished_at: datetime
    error: str


@dataclass(frozen=True)
class RunnerPosition:
    journal: str
    working: bool  # a runner holds the journal's lock right now
    stage: int | None
    phase: str | None
    running: tuple[str, ...]
    steps: StepCounts
    eta: Eta | None = None  # while a runner works
    problem: str | None = None  # why the journal cannot be read; the monitor carries on

    def to_dict(self) -> dict[str, Any]:
        return {
            "journal": self.journal,
            "working": self.working,
            "stage": self.stage,
            "phase": self.phase,
            "running": list(self.running),
            "steps": self.steps.to_dict(),
            "eta": self.eta.to_dict() if self.eta else None,
            "problem": self.problem,
        }


@dataclass
class Snapshot:
    spec: str
    start: date
    end: date
    taken_at: datetime
    window_hours: float
    tables: list[TableProgress]  # per table and season
    phases: list[PhaseProgress]
    total: CellCounts
    completed_in_window: int
    eta: Eta
    failures: list[Failure] = field(default_factory=list)
    stale: list[tuple[str, date, datetime | None]] = field(default_factory=list)
    runners: list[RunnerPosition] = field(default_factory=list)

    @property
    def rate_per_hour(self) -> float:
        return self.completed_in_window / self.window_hours

    @property
    def remaining(self) -> int:
        return self.total.remaining

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "start": self.start,
            "end": self.end,
            "taken_at": self.taken_at,
            "window_hours": self.window_hours,
            "phases": [p.to_dict() for p in self.phases],
            "total": self.total.to_dict(),
            "remaining": self.remaining,
            "tables": [
                {"table": t.table, "phase": t.phase, "season": t.season, **t.cells.to_dict()} for t in self.tables
            ],
            "completed_in_window": self.completed_in_window,
            "rate_per_hour": round(self.rate_per_hour, 2),
            "eta": self.eta.to_dict() | {"text": self.eta.text()},
            "failures": [vars(f) for f in self.failures],
            "stale": [{"table": t, "date": d, "started_at": s} for t, d, s in self.stale],
            "runners": [r.to_dict() for r in self.runners],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str, indent=2)


def take_snapshot(
    spec: PipelineSpec,
    start: str | date,
    end: str | date,
    *,
    window_hours: float = 2.0,
    journals: Sequence[Path] = (),
    warehouse: Warehouse | None = None,
    now: datetime | None = None,
) -> Snapshot:
    """One look at the backfill: a validation (three queries) and the recent runs (one more)."""
    start, end = as_date(start, "start"), as_date(end, "end")
    now = now or datetime.now(UTC)
    wh = warehouse if warehouse is not None else open_warehouse(spec)
    try:
        v = validate(spec, start, end, warehouse=wh, now=now)
        processors = sorted({t.processor for t in spec.tables})
        recent = wh.recent_runs(history_request(spec), processors, start, end, now - timedelta(hours=window_hours))
    finally:
        if warehouse is None:
            wh.close()
    progress = progress_of(v)
    runners = [runner_position(j, now) for j in journals]
    return Snapshot(
        spec=spec.name,
        start=start,
        end=end,
        taken_at=now,
        window_hours=window_hours,
        tables=season_progress(v),
        phases=progress.phases,
        total=progress.total,
        completed_in_window=len({(r.processor, r.date) for r in recent if r.category in DONE_CATEGORIES}),
        eta=snapshot_eta(v, progress.total, runners),
        failures=_failures(spec, recent),
        stale=_stale(v),
        runners=runners,
    )


def snapshot_eta(v: Validation, total: CellCounts, runners: Sequence[RunnerPosition]) -> Eta:
    """The ETA of the runner at work (the one that has longest left), else the words for none."""
    at_work = [r.eta for r in runners if r.working and r.eta is not None]
    if at_work:
        return max(at_work, key=lambda e: (e.high is not None, e.high or 0.0))
    if not total.remaining:
        return Eta(IDLE, basis="nothing remaining")
    return _idle_estimate(v, total)


def _idle_estimate(v: Validation, total: CellCounts) -> Eta:
    """No runner: what a plan of the cells remaining would take, by the plan's estimate."""
    from backfill_kit.plan import build_plan
    from backfill_kit.running.estimates import estimator_for

    plan = build_plan(v, estimates=estimator_for(v.spec, v.cells))
    remaining = plural(total.remaining, "cell")
    if not plan.steps:
        return Eta(IDLE, basis=f"nothing left that a plan can run ({remaining} remaining: {_unplannable(v, total)})")
    estimate, steps = plan_eta(plan), plural(len(plan.steps), "step")
    if estimate.kind == UNKNOWN:
        return Eta(IDLE, basis=f"{remaining} remaining, for a plan of {steps}; {estimate.basis}")
    return Eta(
        IDLE,
        estimate.low,
        estimate.high,
        f"{remaining} remaining, which a plan of {steps} would take {estimate.span()} by {estimate.basis}",
    )


def _unplannable(v: Validation, total: CellCounts) -> str:
    running = v.counts().get(Status.RUNNING, 0)
    waiting = total.remaining - running
    parts = [f"{plural(running, 'cell')} {_wait(running)} for a run at work"] if running else []
    if waiting:
        parts.append(f"{plural(waiting, 'cell')} {_wait(waiting)} for an upstream no plan can fill")
    return ", ".join(parts)


def _wait(n: int) -> str:
    return "waits" if n == 1 else "wait"


def _failures(spec: PipelineSpec, recent: list[RecentRun]) -> list[Failure]:
    table_of = {t.processor: t.id for t in spec.tables}
    return [
        Failure(
            table_of.get(r.processor, r.processor),
            r.date,
            r.finished_at,
            readable_error(r.error, 300, kinds=False) or "(no error recorded)",
        )
        for r in recent
        if r.category == "failed"
    ]


def _stale(v: Validation) -> list[tuple[str, date, datetime | None]]:
    return [(c.table, c.date, c.latest_started_at) for c in v.cells if c.status is Status.STALE]


# --- runners -------------------------------------------------------------------------------


def find_journals(spec: PipelineSpec) -> list[Path]:
    """Journals of `backfill` runs beside the spec (runs/*.journal.jsonl)."""
    from backfill_kit.running.estimates import journals_beside

    return journals_beside(spec)


def engine_at_work(events: Sequence[dict[str, Any]]) -> bool:
    """A journal written from another engine's run (an Airflow run, `engine` in its first
    event) is at work while that run has not finished: no lock of ours says so there."""
    last = next((i for i in range(len(events) - 1, -1, -1) if events[i]["event"] == Event.RUN_STARTED), None)
    if last is None or not events[last].get("engine"):
        return False
    return not any(e["event"] == Event.RUN_FINISHED for e in events[last:])


def runner_position(journal: Path, now: datetime | None = None) -> RunnerPosition:
    """Where a journal's run is: its stage, its steps by outcome, and, while its runner works,
    its ETA."""
    working = is_locked(journal_lock(journal))
    try:
        state = read_journal(journal)
    except InputError as exc:  # one bad old journal must not blind the monitor to the rest
        return RunnerPosition(str(journal), working, None, None, (), StepCounts(0), problem=str(exc))
    working = working or engine_at_work(state.events)
    run = journal_run(state.events)
    stage = phase = None
    for e in state.events:
        if e["event"] == Event.STAGE_STARTED:
            stage, phase = e.get("stage"), e.get("phase")
    eta = None
    if working:
        plan, problem = find_plan(journal, state.events)
        eta = run_eta(plan, run, now or datetime.now(UTC)) if plan else Eta(UNKNOWN, basis=str(problem))
    running = tuple(run.open) if working else ()
    return RunnerPosition(str(journal), working, stage, phase, running, run.counts(working), eta)
