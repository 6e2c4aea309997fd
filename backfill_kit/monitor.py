"""Watching a backfill: progress per phase, table and season, rate, an ETA range, recent
failures, orphaned runs and where a runner is.

A phase is as far along as its slowest table, never its best; bootstrap dates are not
expected; the rate is counted from the run history, so it sees every runner and every job.
"""

from __future__ import annotations

import json
import statistics
from html import escape
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .arguments import as_date, find_file
from .coverage import readable_error
from .errors import BackfillKitError, InputError
from .journal import DONE_OUTCOMES, read_journal
from .locks import is_locked
from .spec import PipelineSpec
from .status import DONE, Status, percent
from .validation import Validation, check_range, history_request, validate
from .warehouse import RecentRun, Warehouse, open_warehouse

__all__ = [
    "MonitorWidget", "RunnerPosition", "Snapshot", "TableProgress", "eta_range", "find_journals",
    "monitor_widget", "take_snapshot",
]

@dataclass(frozen=True)
class TableProgress:
    phase: str
    table: str
    season: str | None
    expected: int  # expected dates minus bootstrap dates
    complete: int  # rows present
    done: int  # status.DONE: complete, or genuinely without data

    @property
    def remaining(self) -> int:
        return self.expected - self.done

    @property
    def percent(self) -> float:
        """Percent done (the progress a backfill can make)."""
        return percent(self.done, self.expected)

    @property
    def percent_complete(self) -> float:
        return percent(self.complete, self.expected)


@dataclass(frozen=True)
class PhaseProgress:
    phase: str
    percent: float  # the slowest table's, done
    slowest: str
    done: int
    expected: int
    complete: int = 0

    @property
    def percent_complete(self) -> float:
        return percent(self.complete, self.expected)


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
            row.update(percent=round(t.percent, 2), percent_done=round(t.percent, 2),
                       percent_complete=round(t.percent_complete, 2), remaining=t.remaining)
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
        spec=spec.name, start=start, end=end, taken_at=now, window_hours=window_hours,
        tables=tables, phases=phase_progress(tables),
        completed_in_window=len({(r.processor, r.date) for r in recent if r.category in ("success", "no_data")}),
        eta_seconds=eta_range(spec, remaining, _durations(v, journals)),
        failures=_failures(spec, recent), stale=_stale(v),
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
        for t in v.tables for s in seasons if expected[(t, s)]
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
    for phase, rows in phases.items():
        slowest_percent, slowest, _, _, _ = min(rows)
        out.append(PhaseProgress(phase, slowest_percent, slowest, sum(r[2] for r in rows), sum(r[3] for r in rows),
                                 sum(r[4] for r in rows)))
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
    from .estimates import history_samples, journal_samples

    samples = history_samples(v.cells) | {t: s for t, s in journal_samples(journals).items() if s}
    return {table: [seconds / dates for dates, seconds in runs if dates] for table, runs in samples.items()}


def _failures(spec: PipelineSpec, recent: list[RecentRun]) -> list[Failure]:
    table_of = {t.processor: t.id for t in spec.tables}
    return [
        Failure(table_of.get(r.processor, r.processor), r.date, r.finished_at,
                readable_error(r.error, 300, kinds=False) or "(no error recorded)")
        for r in recent if r.category == "failed"
    ]


def _stale(v: Validation) -> list[tuple[str, date, datetime | None]]:
    return [(c.table, c.date, c.latest_started_at) for c in v.cells if c.status is Status.STALE]


# --- runners -------------------------------------------------------------------------------


def find_journals(spec: PipelineSpec) -> list[Path]:
    """Journals of `backfill` runs beside the spec (runs/*.journal.jsonl)."""
    from .estimates import journals_beside

    return journals_beside(spec)


def runner_position(journal: Path) -> RunnerPosition:
    working = is_locked(journal.with_name(journal.name + ".lock"))
    try:
        state = read_journal(journal)
    except InputError as exc:  # one bad old journal must not blind the monitor to the rest
        return RunnerPosition(str(journal), working, None, None, (), 0, 0, problem=str(exc))
    stage = phase = None
    started: dict[str, None] = {}
    total = 0
    for e in state.events:
        if e["event"] == "run_started":
            total = e.get("steps", total)
        elif e["event"] == "stage_started":
            stage, phase = e.get("stage"), e.get("phase")
        elif e["event"] == "step_started":
            started[e["step"]] = None
        elif e["event"] == "step_finished":
            started.pop(e["step"], None)
    done = sum(1 for o in state.outcomes.values() if o in DONE_OUTCOMES)
    return RunnerPosition(str(journal), working, stage, phase, tuple(started) if working else (), done, total)


# --- JupyterLab ----------------------------------------------------------------------------


class MonitorWidget:
    """The monitor as a widget that refreshes itself every `interval` seconds.

    `look` takes a snapshot; the text the terminal shows is drawn into an HTML widget, so the
    widget needs nothing but ipywidgets. `refresh()` is what the timer calls, and what a test
    (or an impatient analyst) can call directly. A failed look is shown with its cause; the
    timer stops at once unless the error may pass by itself (a warehouse busy for a moment),
    and then after `MAX_FAILURES` failures in a row: a broken setup is reported once, not
    retried forever.
    """

    MAX_FAILURES = 3

    def __init__(self, look: Any, interval: float = 30.0) -> None:
        import threading

        import ipywidgets

        self._look, self.interval = look, interval
        self.view = ipywidgets.HTML()
        self.status = ipywidgets.HTML()
        self.widget = ipywidgets.VBox([self.status, self.view])
        self.failures = 0  # in a row
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def refresh(self) -> None:
        from rich.console import Console

        from .display import snapshot_view

        try:
            snap = self._look()
        except Exception as exc:  # noqa: BLE001 -- shown in the widget with its cause
            self._failed(exc)
            return
        self.failures = 0
        console = Console(record=True, width=140, file=_Discard(), color_system=None)
        console.print(snapshot_view(snap))
        # Columns stay aligned: no wrapping inside words (JupyterLab breaks output pre anywhere).
        self.view.value = f'<pre style="white-space:pre;word-break:normal;overflow-x:auto">{escape(console.export_text())}</pre>'
        self.status.value = escape(f"refreshed {snap.taken_at:%H:%M:%S} UTC, every {self.interval:g} s")

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        cause, now = _error_cause(exc), datetime.now(UTC)
        if getattr(exc, "retryable", False) and self.failures < self.MAX_FAILURES:
            self.status.value = _error_html(f"look failed at {now:%H:%M:%S} UTC ({self.failures} of "
                                            f"{self.MAX_FAILURES}), trying again in {self.interval:g} s: {cause}")
            return
        self._stop.set()
        self.status.value = _error_html(f"stopped at {now:%H:%M:%S} UTC: {cause}. "
                                        "Fix the cause, then run the cell again.")

    def start(self) -> MonitorWidget:
        import threading

        self._stop.clear()
        self.refresh()
        if not self.stopped:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="backfill-kit-monitor")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _error_cause(exc: BaseException) -> str:
    """An error as one line a person can act on: the toolkit's own message as it is, anything
    else with its type, and what caused it."""
    text = str(exc) if isinstance(exc, BackfillKitError) else f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None and not isinstance(exc, BackfillKitError):
        text += f" (caused by {type(cause).__name__}: {cause})"
    return text


def _error_html(text: str) -> str:
    return f'<span style="color:#b71c1c;white-space:pre-wrap">{escape(text)}</span>'


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None: ...


def monitor_widget(spec_path: str | Path, start: str | date, end: str | date, *, interval: float = 30.0,
                   window_hours: float = 2.0) -> MonitorWidget:
    """In a notebook: `monitor_widget("demo/nba_props.yaml", "2021-10-19", "2022-06-16")` as a
    cell's last line. Dates are dates or YYYY-MM-DD; a relative spec path is found by
    `arguments.find_file`'s rule (from notebooks/ too). Bad input raises here, once."""
    from .spec import load_spec

    start, end = as_date(start, "start"), as_date(end, "end")
    check_range(start, end)
    spec = load_spec(find_file(spec_path, "the spec"))
    journals = find_journals(spec)
    widget = MonitorWidget(lambda: take_snapshot(spec, start, end, window_hours=window_hours, journals=journals),
                           interval)
    return widget.start()
