"""Watching a backfill: progress per phase, table and season, rate, an ETA range, recent
failures, orphaned runs and where a runner is.

A phase is as far along as its slowest table, never its best; bootstrap dates are not
expected; the rate is counted from the run history, so it sees every runner and every job.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from backfill_kit.common.arguments import as_date
from backfill_kit.common.status import DONE, Status, percent
from backfill_kit.errors import InputError
from backfill_kit.running.journal import DONE_OUTCOMES, Event, read_journal
from backfill_kit.running.locks import is_locked, journal_lock
from backfill_kit.spec.model import PipelineSpec
from backfill_kit.validation.summaries import readable_error
from backfill_kit.validation.validator import Validation, history_request, validate
from backfill_kit.warehouse import RecentRun, Warehouse, open_warehouse
from backfill_kit.warehouse.base import DONE_CATEGORIES

__all__ = [
    "PhaseProgress",
    "RunnerPosition",
    "Snapshot",
    "TableProgress",
    "eta_range",
    "find_journals",
    "take_snapshot",
]


class _Completeness:
    """The share of expected dates whose rows are present, for a table and for a phase alike."""

    complete: int
    expected: int

    @property
    def percent_complete(self) -> float:
        return percent(self.complete, self.expected)


@dataclass(frozen=True)
class TableProgress(_Completeness):
    phase: str
    table: str
    season: str | None
    expected: int  # expected dates minus bootstrap dates
    complete: int  # rows present
    done: int  # status.DONE: complete, or genuinely without data

    @property
    def percent(self) -> float:
        """Percent done (the progress a backfill can make)."""
        return percent(self.done, self.expected)

    @property
    def remaining(self) -> int:
        return self.expected - self.done


@dataclass(frozen=True)
class PhaseProgress(_Completeness):
    phase: str
    percent: float  # the slowest table's, done
    slowest: str
    done: int
    expected: int
    complete: int


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
    done: int
    total: int
    problem: str | None = None  # why the journal cannot be read; the monitor carries on


@dataclass
class Snapshot:
    spec: str
    start: date
    end: date
    taken_at: datetime
    window_hours: float
    tables: list[TableProgress]
    phases: list[PhaseProgress]
    completed_in_window: int
    eta_seconds: tuple[float, float] | None
    failures: list[Failure] = field(default_factory=list)
    stale: list[tuple[str, date, datetime | None]] = field(default_factory=list)
    runners: list[RunnerPosition] = field(default_factory=list)

    @property
    def rate_per_hour(self) -> float:
        return self.completed_in_window / self.window_hours

    @property
    def remaining(self) -> int:
        return sum(t.remaining for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate_per_hour"] = round(self.rate_per_hour, 2)
        data["remaining"] = self.remaining
        for t, row in zip(self.tables, data["tables"], strict=True):
            row.update(
                percent=round(t.percent, 2),
                percent_done=round(t.percent, 2),
                percent_complete=round(t.percent_complete, 2),
                remaining=t.remaining,
            )
        return data

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
    tables = progress(v)
    remaining = Counter[str]()
    for t in tables:
        remaining[t.table] += t.remaining
    return Snapshot(
        spec=spec.name,
        start=start,
        end=end,
        taken_at=now,
        window_hours=window_hours,
        tables=tables,
        phases=phase_progress(tables),
        completed_in_window=len({(r.processor, r.date) for r in recent if r.category in DONE_CATEGORIES}),
        eta_seconds=eta_range(spec, remaining, _durations(v, journals)),
        failures=_failures(spec, recent),
        stale=_stale(v),
        runners=[runner_position(j) for j in journals],
    )


def progress(v: Validation) -> list[TableProgress]:
    """Per table and season; bootstrap dates are not expected."""
    expected: Counter[tuple[str, str | None]] = Counter()
    complete: Counter[tuple[str, str | None]] = Counter()
    done: Counter[tuple[str, str | None]] = Counter()
    for c in v.cells:
        if c.status is Status.BOOTSTRAP:
            continue
        expected[(c.table, c.season)] += 1
        complete[(c.table, c.season)] += c.status is Status.COMPLETE
        done[(c.table, c.season)] += c.status in DONE
    seasons = list(dict.fromkeys(day.season for day in v.days))
    return [
        TableProgress(v.spec.phase_of(t).name, t, s, expected[(t, s)], complete[(t, s)], done[(t, s)])
        for t in v.tables
        for s in seasons
        if expected[(t, s)]
    ]


def phase_progress(tables: Sequence[TableProgress]) -> list[PhaseProgress]:
    """Each phase at its slowest table's progress, over all seasons."""
    per_table: dict[str, list[TableProgress]] = defaultdict(list)
    for t in tables:
        per_table[t.table].append(t)
    phases: dict[str, list[tuple[float, str, int, int, int]]] = defaultdict(list)
    for table, rows in per_table.items():
        done, expected = sum(r.done for r in rows), sum(r.expected for r in rows)
        complete = sum(r.complete for r in rows)
        phases[rows[0].phase].append((percent(done, expected), table, done, expected, complete))
    out = []
    for phase, measured in phases.items():
        # The least done; among equals, the least complete (all done, one table had nothing to load).
        slowest_percent, slowest, _, _, _ = min(measured, key=lambda m: (m[0], percent(m[4], m[3]), m[1]))
        out.append(
            PhaseProgress(
                phase,
                slowest_percent,
                slowest,
                sum(r[2] for r in measured),
                sum(r[3] for r in measured),
                sum(r[4] for r in measured),
            )
        )
    return out


def eta_range(
    spec: PipelineSpec, remaining: Counter[str], durations: dict[str, list[float]]
) -> tuple[float, float] | None:
    """Seconds left, from the median and the 90th percentile of past per-date durations,
    each phase's work spread over its workers and the phases one after another. A table with
    no past duration borrows the median of all; with none at all there is no estimate."""
    everything = [s for v in durations.values() for s in v]
    if not everything:
        return None if sum(remaining.values()) else (0.0, 0.0)
    low = high = 0.0
    for phase in spec.phases:
        workers = 1 if phase.mode == "sequential" else phase.max_workers
        for table in phase.tables:
            samples = durations.get(table.id) or everything
            low += remaining[table.id] * statistics.median(samples) / workers
            high += remaining[table.id] * _p90(samples) / workers
    return low, high


def _p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10, method="inclusive")[-1] if len(samples) > 1 else samples[0]


def _durations(v: Validation, journals: Sequence[Path]) -> dict[str, list[float]]:
    """Seconds per date, per table, as the planner's estimates take them: the steps of the
    journals followed first (this pipeline's jobs as the runner ran them), else the run
    history's runs (a range run's duration spread over its range, never counted on each date)."""
    from backfill_kit.running.estimates import history_samples, journal_samples

    samples = history_samples(v.cells) | {t: s for t, s in journal_samples(journals).items() if s}
    return {table: [seconds / dates for dates, seconds in runs if dates] for table, runs in samples.items()}


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


def runner_position(journal: Path) -> RunnerPosition:
    working = is_locked(journal_lock(journal))
    try:
        state = read_journal(journal)
    except InputError as exc:  # one bad old journal must not blind the monitor to the rest
        return RunnerPosition(str(journal), working, None, None, (), 0, 0, problem=str(exc))
    stage = phase = None
    started: dict[str, None] = {}
    total = 0
    for e in state.events:
        if e["event"] == Event.RUN_STARTED:
            total = e.get("steps", total)
        elif e["event"] == Event.STAGE_STARTED:
            stage, phase = e.get("stage"), e.get("phase")
        elif e["event"] == Event.STEP_STARTED:
            started[e["step"]] = None
        elif e["event"] == Event.STEP_FINISHED:
            started.pop(e["step"], None)
    done = sum(1 for o in state.outcomes.values() if o in DONE_OUTCOMES)
    return RunnerPosition(str(journal), working, stage, phase, tuple(started) if working else (), done, total)
