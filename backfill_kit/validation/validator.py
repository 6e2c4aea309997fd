"""Validation: for every table and expected date, one status and the evidence behind it.

Three warehouse queries in all, whatever the number of tables and dates: the calendar, the
row counts of every table (one UNION ALL; on BigQuery, one per 1,000 tables), and the run
history (one summary per processor and date, every attempt counted so that a retry never hides
an earlier failure).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from backfill_kit.common.arguments import as_date
from backfill_kit.common.collector import no_gc_pauses
from backfill_kit.common.status import GAP_STATUSES, NEEDS_WORK, Status
from backfill_kit.errors import InputError, Problem, WarehouseMismatchError
from backfill_kit.spec.load import field_lines, load_spec
from backfill_kit.spec.model import PipelineSpec, TableSpec
from backfill_kit.validation.calendar import ExpectedDay, expected_days
from backfill_kit.validation.progress import CellCounts, cell_counts, progress_from
from backfill_kit.warehouse import (
    CoverageTarget,
    ObjectsMissingError,
    QueryRecord,
    RunHistoryRequest,
    RunSummary,
    Warehouse,
    open_warehouse,
)
from backfill_kit.warehouse.base import DONE_CATEGORIES

if TYPE_CHECKING:
    from backfill_kit.validation.summaries import Gap

__all__ = ["Cell", "TableSummary", "Validation", "check_range", "classify", "validate"]

ERROR_LIMIT = 4000  # characters of a cell's last error: enough for any real message


class Cell(NamedTuple):
    """One table on one expected date: its status and the evidence for it.

    A named tuple, not a dataclass: a four-season validation makes tens of thousands of
    these, and a tuple is built several times faster.
    """

    table: str
    phase: str
    date: date
    season: str | None
    status: Status
    rows: int
    expected_rows: int
    attempts: int = 0
    failures: int = 0
    latest_status: str | None = None
    latest_started_at: datetime | None = None
    latest_seconds: float | None = None
    last_error: str | None = None
    fallback: str | None = None  # the fallback table that is complete on this date
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "phase": self.phase,
            "date": self.date.isoformat(),
            "season": self.season,
            "status": str(self.status),
            "rows": self.rows,
            "expected_rows": self.expected_rows,
            "attempts": self.attempts,
            "failures": self.failures,
            "latest_status": self.latest_status,
            "latest_started_at": self.latest_started_at.isoformat() if self.latest_started_at else None,
            "latest_seconds": self.latest_seconds,
            "last_error": self.last_error,
            "fallback": self.fallback,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class TableSummary:
    phase: str
    table: str
    counts: dict[Status, int]

    @property
    def progress(self) -> CellCounts:
        """Expected, complete, done, failed: counted as every view counts them (`progress`)."""
        return cell_counts(self.counts)

    @property
    def expected(self) -> int:
        """Expected dates that should have data: bootstrap dates are not counted."""
        return self.progress.expected

    @property
    def percent_complete(self) -> float:
        return self.progress.percent_complete

    @property
    def percent_done(self) -> float:
        """Complete or genuinely without data: nothing left to load."""
        return self.progress.percent_done

    @property
    def done(self) -> int:
        return self.progress.done

    @property
    def needs_work(self) -> int:
        return sum(n for s, n in self.counts.items() if s in NEEDS_WORK)


@dataclass
class Validation:
    spec: PipelineSpec
    start: date
    end: date
    days: list[ExpectedDay]
    cells: list[Cell]
    queries: list[QueryRecord]
    now: datetime
    tables: tuple[str, ...] = field(default=())
    # What a reader must know: the table hazards below, statuses the spec does not map, a range
    # reaching outside the calendar's seasons.
    warnings: list[str] = field(default_factory=list)
    # Table hazards that will bite a backfill of this range (partition expiration, required
    # partition filters), from the warehouse's metadata; empty where it has none.
    hazards: list[str] = field(default_factory=list)
    # Run-history statuses the spec does not map, and on how many (processor, date)s each.
    unmapped_statuses: dict[str, int] = field(default_factory=dict)
    # What the run history showed: attempts, dates covered by range runs, and the no-data
    # reasons of latest attempts that had nothing to load (processor-dates each).
    run_history: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_work(self) -> bool:
        return any(c.status in GAP_STATUSES for c in self.cells)

    def counts(self) -> Counter[Status]:
        return Counter(map(_STATUS, self.cells))

    def summary(self) -> list[TableSummary]:
        pairs = Counter(map(_TABLE_AND_STATUS, self.cells))  # one pass, in C
        per_table: dict[str, dict[Status, int]] = {t: {} for t in self.tables}
        for (table, status), n in pairs.items():
            per_table[table][status] = n
        return [TableSummary(self.spec.phase_of(t).name, t, per_table[t]) for t in self.tables]

    def gap_runs(self) -> list[Gap]:
        """Runs of consecutive expected dates sharing a gap status, longest first."""
        from backfill_kit.validation.summaries import gap_runs  # it imports Cell from here

        return gap_runs(self.cells, [day.date for day in self.days])

    def to_dict(self, *, cells: bool = True) -> dict[str, object]:
        """Everything, as JSON-ready values; without the cells when `cells` is False (a writer
        that streams them apart, as display.validation_json does)."""
        tables = self.summary()
        counts: Counter[Status] = Counter()
        for table in tables:
            counts.update(table.counts)
        data: dict[str, object] = {
            "spec": self.spec.name,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "generated_at": self.now.isoformat(),
            "expected_dates": len(self.days),
            "summary": {
                "cells": len(self.cells),
                "statuses": {str(s): n for s, n in sorted(counts.items())},
                "needs_work": sum(n for s, n in counts.items() if s in NEEDS_WORK),
                "tables": [
                    {
                        "table": s.table,
                        "phase": s.phase,
                        **s.progress.to_dict(),
                        "statuses": {str(k): v for k, v in sorted(s.counts.items())},
                    }
                    for s in tables
                ],
                **progress_from(tables).to_dict(),
            },
            "cells": [c.to_dict() for c in self.cells] if cells else None,
            "queries": [
                {
                    "purpose": q.purpose,
                    "seconds": round(q.seconds, 6),
                    "rows": q.rows,
                    "bytes_processed": q.bytes_processed,
                    **q.extra,
                    "sql": q.sql,
                }
                for q in self.queries
            ],
            "cost": self.cost(),
            "warnings": self.warnings,
            "unmapped_statuses": self.unmapped_statuses,
            "run_history": self.run_history,
        }
        if not cells:
            del data["cells"]
        return data

    def cost(self) -> Cost:
        """Bytes the queries processed, and the dry runs' estimate of bytes billed and dollars
        (None where the warehouse does not say, as DuckDB does not, or where a dry run could
        not bound a query from above: `unknown_estimates` names those)."""

        def total(values: list[object]) -> int | float | None:
            known = [v for v in values if isinstance(v, int | float)]
            return sum(known) if known else None

        unknown = [q.purpose for q in self.queries if q.extra.get("estimate_unknown")]
        billed = total([q.extra.get("estimated_bytes_billed") for q in self.queries])
        usd = total([q.extra.get("estimated_usd") for q in self.queries])
        return {
            "bytes_processed": total([q.bytes_processed for q in self.queries]),
            "estimated_bytes_billed": None if unknown else billed,
            "estimated_usd": None if unknown else usd,
            "unknown_estimates": unknown,
        }


class Cost(TypedDict):
    """What a validation's queries cost; None where the warehouse does not say."""

    bytes_processed: int | float | None
    estimated_bytes_billed: int | float | None
    estimated_usd: int | float | None
    unknown_estimates: list[str]


_STATUS = itemgetter(Cell._fields.index("status"))
_TABLE_AND_STATUS = itemgetter(Cell._fields.index("table"), Cell._fields.index("status"))


# --- the validation itself -----------------------------------------------------------------


def check_range(start: date, end: date) -> None:
    if end < start:
        raise InputError(
            f"the date range is reversed: --start {start} is after --end {end}. Swap them: the start comes first."
        )


def validate(
    spec: PipelineSpec | str | Path,
    start: date | str,
    end: date | str,
    *,
    tables: Sequence[str] | None = None,
    warehouse: Warehouse | None = None,
    now: datetime | None = None,
) -> Validation:
    """Give every (table, expected date) in [start, end] one status, with its evidence. `spec`
    may be a path (found by `arguments.find_file`'s rule); dates `date`s or `YYYY-MM-DD`."""
    if not isinstance(spec, PipelineSpec):
        spec = load_spec(spec)
    start, end = as_date(start, "start"), as_date(end, "end")
    check_range(start, end)
    selected = _select(spec, tables)
    now = _as_utc(now) if now else datetime.now(UTC)
    owned = warehouse is None
    wh = warehouse if warehouse is not None else open_warehouse(spec)
    first_query = len(wh.queries)
    with no_gc_pauses():
        try:
            days, rows, runs = _gather(spec, wh, selected, start, end)
            hazards = wh.hazards(_hazard_targets(spec, selected), start)
        finally:
            if owned:
                wh.close()
        cells = _classify_all(spec, selected, days, rows, runs, now)
    own = {spec.table(t).processor for t in selected}  # upstream processors were read as evidence only
    unmapped, history = _history_evidence({p: per_date for p, per_date in runs.items() if p in own})
    warnings = [*_season_warnings(spec, start, end), *_unmapped_warnings(spec, unmapped), *hazards]
    return Validation(
        spec,
        start,
        end,
        days,
        cells,
        wh.queries[first_query:],
        now,
        tuple(selected),
        warnings,
        hazards,
        unmapped,
        history,
    )


def _select(spec: PipelineSpec, tables: Sequence[str] | None) -> list[str]:
    if not tables:
        return [t.id for t in spec.tables]
    known = {t.id for t in spec.tables}
    if unknown := [t for t in tables if t not in known]:
        raise InputError(
            f"unknown table {', '.join(map(repr, unknown))} in {spec.file_name}; "
            f"declared tables: {', '.join(t.id for t in spec.tables)}"
        )
    return [t.id for t in spec.tables if t.id in set(tables)]  # spec order


def _involved(spec: PipelineSpec, selected: list[str]) -> list[TableSpec]:
    """The selected tables plus their fallbacks and dependencies, whose rows are evidence too."""
    wanted = set(selected)
    for table_id in selected:
        wanted.update(spec.table(table_id).depends_on)
    wanted.update(fb for t in list(wanted) if (fb := spec.table(t).fallback))
    return [t for t in spec.tables if t.id in wanted]


def _gather(
    spec: PipelineSpec, wh: Warehouse, selected: list[str], start: date, end: date
) -> tuple[list[ExpectedDay], dict[str, dict[date, int]], dict[str, dict[date, RunSummary]]]:
    """The three queries; their answers indexed by table (or processor) and date."""
    involved = _involved(spec, selected)
    targets = [CoverageTarget(t.table, spec.date_column_of(t)) for t in involved]
    processors = sorted({t.processor for t in involved})  # upstream runs date an empty read
    try:
        days = expected_days(spec, wh, start, end)
        counts = wh.row_counts(targets, start, end)
        summaries = wh.run_summaries(history_request(spec), processors, start, end)
    except ObjectsMissingError as exc:
        raise _mismatch(spec, wh, involved) from exc
    if not days:  # after the queries, so that a missing table or column is reported first
        raise InputError(_no_dates_message(spec, start, end))
    # Indexed in loops of a row each (1.7 M rows each at 1,000 tables): by position, not name.
    rows: dict[str, dict[date, int]] = {t.id: {} for t in involved}
    per_target = [rows[t.id] for t in involved]
    for k, d, n in counts:
        per_target[k][d] = n
    runs: dict[str, dict[date, RunSummary]] = {p: {} for p in processors}
    for summary in summaries:
        runs[summary[0]][summary[1]] = summary  # processor, date
    return days, rows, runs


def _seasons_text(spec: PipelineSpec) -> str:
    seasons = spec.calendar.seasons
    if not seasons:
        return "calendar.seasons declares none"
    return "the calendar knows the seasons " + ", ".join(f"{s.name} ({s.start} .. {s.end})" for s in seasons)


def _no_dates_message(spec: PipelineSpec, start: date, end: date) -> str:
    """Why a range has no expected date: nothing to validate is an input mistake, never 100%."""
    cal = spec.calendar
    inside = any(s.start <= end and start <= s.end for s in cal.seasons) or not cal.seasons
    if not inside:
        why = "the range lies outside every season"
    else:
        matching = " matching calendar.filter" if cal.filter else ""
        why = f"the schedule table {cal.table} has no games{matching} on those dates" if cal.table else "no season date"
    return (
        f"{spec.file_name}: no expected dates from {start} to {end}: {why}; {_seasons_text(spec)}. "
        "Choose dates inside a season, or add the season to calendar.seasons (a typo in a year?)."
    )


def _season_warnings(spec: PipelineSpec, start: date, end: date) -> list[str]:
    """A range reaching before the first season or past the last one: those dates are not
    expected, which is right for an off-season and wrong for a season missing from the spec."""
    seasons = sorted(spec.calendar.seasons, key=lambda s: s.start)
    if not seasons:
        return []
    out = []
    if start < seasons[0].start:
        out.append(
            f"the range starts {start}, before the first season the calendar knows ({seasons[0].name}, "
            f"from {seasons[0].start}): dates before it are not expected; add the season to calendar.seasons if it is missing"
        )
    if end > seasons[-1].end:
        out.append(
            f"the range ends {end}, after the last season the calendar knows ({seasons[-1].name}, "
            f"to {seasons[-1].end}): dates after it are not expected; add the season to calendar.seasons if it is missing"
        )
    return out


def _history_evidence(runs: dict[str, dict[date, RunSummary]]) -> tuple[dict[str, int], dict[str, Any]]:
    """Statuses the spec does not map (with the number of processor-dates showing each), and
    what the run history held: attempts, range-run dates, no-data reasons."""
    unmapped: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    attempts = ranged = 0
    for per_date in runs.values():
        for summary in per_date.values():
            attempts += summary.attempts
            ranged += summary.range_attempts > 0
            if summary.unmapped_statuses:
                unmapped.update(set(summary.unmapped_statuses.split("|")))  # once per processor-date
            if summary.latest_reason:
                reasons[summary.latest_reason] += 1
    history = {"attempts": attempts, "dates_from_range_runs": ranged, "no_data_reasons": dict(reasons.most_common())}
    return dict(sorted(unmapped.items())), history


def _unmapped_warnings(spec: PipelineSpec, unmapped: dict[str, int]) -> list[str]:
    if not unmapped:
        return []
    named = ", ".join(f"{status!r} (on {n:,} processor-dates)" for status, n in unmapped.items())
    return [
        f"the run history holds statuses the spec does not map: {named}; they are read as no evidence, "
        f"neither success nor failure: map them under run_history.statuses in {spec.file_name}"
    ]


def _hazard_targets(spec: PipelineSpec, selected: list[str]) -> list[CoverageTarget]:
    """Every table the validation read: the calendar, the tables involved, the run history."""
    cal, rh = spec.calendar, spec.run_history
    targets = [CoverageTarget(cal.table, cal.date_column)] if cal.table else []
    targets += [CoverageTarget(t.table, spec.date_column_of(t)) for t in _involved(spec, selected)]
    return [*targets, CoverageTarget(rh.table, rh.columns.date)]


def history_request(spec: PipelineSpec) -> RunHistoryRequest:
    rh = spec.run_history
    # By name: the column and status fields are all strings, so a positional slip would
    # silently query one column as another; an unknown name fails at once.
    return RunHistoryRequest(
        table=rh.table,
        **asdict(rh.columns),
        **asdict(rh.statuses),
        max_range_days=rh.max_range_days,
        no_data_reasons=tuple(rh.no_data_reasons.items()),
    )


def _mismatch(spec: PipelineSpec, wh: Warehouse, involved: list[TableSpec]) -> WarehouseMismatchError:
    """Every table and column the spec names that the warehouse lacks, each at its spec field."""
    fields: dict[tuple[str, str | None], str] = {}
    wanted: dict[str, list[str]] = {}

    def want(table: str, column: str | None, field: str) -> None:
        wanted.setdefault(table, [])
        if column:
            wanted[table].append(column)
        fields.setdefault((table, column), field)

    cal = spec.calendar
    if cal.table:
        want(cal.table, None, "calendar.table")
        want(cal.table, cal.date_column, "calendar.date_column")
        if cal.game_id_column:
            want(cal.table, cal.game_id_column, "calendar.game_id_column")
        if cal.filter:
            from backfill_kit.spec.calendar_filter import filter_columns

            for column in filter_columns(cal.filter, spec.warehouse.backend):
                want(cal.table, column, "calendar.filter")
    rh = spec.run_history
    want(rh.table, None, "run_history.table")
    for key, column in rh.columns.named().items():
        want(rh.table, column, f"run_history.columns.{key}")
    for column in rh.no_data_reasons:
        want(rh.table, column, f"run_history.no_data_reasons.{column}")
    for t in involved:
        path = spec.field_path(t.id)
        want(t.table, None, f"{path}.table")
        want(t.table, spec.date_column_of(t), f"{path}.date_column")
    found = [
        (fields.get((m.table, m.column), ""), _missing_text(m.table, m.column, m.detail))
        for m in wh.missing_objects(wanted)
    ]
    if not found:  # the query failed for another reason; most likely the calendar filter
        found = [("calendar.filter", "the calendar query names a column the schedule table does not have")]
    line_of = field_lines(spec)  # the file is read again: only on this error's path
    return WarehouseMismatchError([Problem(spec.file_name, field, text, line_of(field)) for field, text in found])


def _missing_text(table: str, column: str | None, detail: str | None = None) -> str:
    if column is None:
        why = f" ({detail})" if detail else ""
        return f"table {table} does not exist in the warehouse{why}; create it or fix the name"
    return f"table {table} has no column {column!r}; fix the column name"


# --- classification ------------------------------------------------------------------------


def classify(
    rows: int,
    expected_rows: int,
    run: RunSummary | None,
    *,
    in_bootstrap: bool,
    now: datetime,
    stale_after: timedelta,
) -> Status:
    """The one status of a cell. Rows decide first; without rows, the run history says why."""
    if rows >= expected_rows:
        return Status.COMPLETE
    if in_bootstrap:
        return Status.BOOTSTRAP
    if rows > 0:
        return Status.PARTIAL
    if run is None:
        return Status.NEVER_RAN
    category = run.latest_category
    if category == "running":
        started = _as_utc(run.latest_started_at) if run.latest_started_at else None
        return Status.RUNNING if started and now - started < stale_after else Status.STALE
    if category == "failed":
        return Status.FAILED
    if (run.best_success_records or 0) > 0:
        return Status.LOST
    if category in DONE_CATEGORIES:
        return Status.NO_DATA
    # A skip for another reason, or a status the spec does not map (named in a warning), says
    # nothing about the data: with no other attempt, the date reads as never run.
    return Status.NEVER_RAN


def _classify_all(
    spec: PipelineSpec,
    selected: list[str],
    days: list[ExpectedDay],
    rows: dict[str, dict[date, int]],
    runs: dict[str, dict[date, RunSummary]],
    now: datetime,
) -> list[Cell]:
    stale_after = timedelta(hours=spec.run_history.stale_after_hours)
    calendar = [(day.date, day.games, day.season, day) for day in days]  # unpacked once, not per table
    cells: list[Cell] = []
    for table_id in selected:
        cells.extend(_table_cells(spec, spec.table(table_id), calendar, rows, runs, now, stale_after))
    return cells


# The evidence a cell carries from its run summary, by name. The positions are looked up once,
# so the hot loop makes one C call per cell instead of six attribute lookups, and a reordered
# RunSummary cannot hand a cell the wrong field.
_EVIDENCE = itemgetter(
    *map(
        RunSummary._fields.index,
        ("attempts", "failures", "latest_status", "latest_started_at", "latest_seconds", "last_error"),
    )
)


def _table_cells(
    spec: PipelineSpec,
    table: TableSpec,
    calendar: list[tuple[date, int, str | None, ExpectedDay]],
    rows: dict[str, dict[date, int]],
    runs: dict[str, dict[date, RunSummary]],
    now: datetime,
    stale_after: timedelta,
) -> list[Cell]:
    """One table's cells. The hot loop of a validation (1.7 M cells at 1,000 tables): lookups
    are bound outside it, and a complete date is decided without a call."""
    phase = spec.phase_of(table.id)
    rows_on, run_on = rows.get(table.id, {}).get, runs.get(table.processor, {}).get
    fallback = spec.table(table.fallback) if table.fallback else None
    fallback_rows = rows.get(fallback.id, {}) if fallback else {}
    warned_on = _upstream_warnings(spec, table, rows.get(table.id, {}), rows).get
    outdated = _read_before_upstream(spec, table, rows, runs)
    need_for = {g: table.expected_rows(g) for g in {games for _, games, _, _ in calendar}}
    new, tid, pname, complete, no_data = tuple.__new__, table.id, phase.name, Status.COMPLETE, Status.NO_DATA
    error_text, evidence = _error_reader(), _EVIDENCE
    cells: list[Cell] = []
    add = cells.append
    for d, games, season, day in calendar:
        need = need_for[games]
        n = rows_on(d, 0)
        run = run_on(d)
        if n >= need:  # the common case
            status = complete
        else:
            status = classify(
                n, need, run, in_bootstrap=day.in_bootstrap(phase.bootstrap_days), now=now, stale_after=stale_after
            )
        covered, warned = None, warned_on(d, ())
        if status is no_data and outdated is not None and (why := outdated(d, run)):
            status, warned = Status.NEVER_RAN, (*warned, why)
        if status is no_data and fallback and fallback_rows.get(d, 0) >= fallback.expected_rows(games):
            covered = fallback.id
        if run is None:
            add(
                new(
                    Cell,
                    (tid, pname, d, season, status, n, need, 0, 0, None, None, None, None, covered, warned),
                )
            )
        else:
            attempts, failures, latest, started, seconds, error = evidence(run)
            add(
                new(
                    Cell,
                    (
                        tid,
                        pname,
                        d,
                        season,
                        status,
                        n,
                        need,
                        attempts,
                        failures,
                        latest,
                        started,
                        seconds,
                        error and error_text(error),
                        covered,
                        warned,
                    ),
                )
            )
    return cells


def _error_reader() -> Callable[[str], str | None]:
    """The readable message of an error column value, remembered: a range run's error is read
    once for all the dates it covers."""
    from backfill_kit.validation.summaries import readable_error  # it imports Cell from here

    @lru_cache(maxsize=4096)
    def read(raw: str) -> str | None:
        return readable_error(raw, ERROR_LIMIT)

    return read


def _upstream_warnings(
    spec: PipelineSpec, table: TableSpec, have: dict[date, int], rows: dict[str, dict[date, int]]
) -> dict[date, tuple[str, ...]]:
    """Dates with rows built while an upstream table (and its fallback) had nothing."""
    warned: dict[date, tuple[str, ...]] = {}
    for dep_id in table.depends_on:
        fallback = spec.table(dep_id).fallback
        fed = rows.get(dep_id, {}).keys() | (rows.get(fallback, {}).keys() if fallback else set())
        for d in have.keys() - fed:
            warned[d] = (*warned.get(d, ()), f"built on empty upstream {dep_id}")
    return warned


def _read_before_upstream(
    spec: PipelineSpec, table: TableSpec, rows: dict[str, dict[date, int]], runs: dict[str, dict[date, RunSummary]]
) -> Callable[[date, RunSummary | None], str | None] | None:
    """For a date without rows whose latest run found nothing to load: whether an upstream
    table (or its fallback) has rows there now that a run finishing after that one wrote. The
    run then read an upstream still empty, so its "no data" is no evidence either way. Asked
    of no_data cells only (None: a table without upstream tables)."""
    if not table.depends_on:
        return None
    sources = [
        (source.id, rows.get(source.id, {}), runs.get(source.processor, {}))
        for dep in table.depends_on
        for source in (spec.table(s) for s in (dep, spec.table(dep).fallback) if s)
    ]

    def why(d: date, run: RunSummary | None) -> str | None:
        if run is None or run.latest_started_at is None:
            return None
        read_at = _as_utc(run.latest_started_at)
        for name, have, history in sources:
            upstream = history.get(d) if have.get(d, 0) else None
            written = _finished_at(upstream) if upstream is not None else None
            if written is not None and written > read_at:
                return f"read no data before upstream {name} had its rows (written by its run of {written:%Y-%m-%d %H:%M} UTC)"
        return None

    return why


def _finished_at(run: RunSummary) -> datetime | None:
    """When a date's latest run ended (or began, while it runs)."""
    if run.latest_started_at is None:
        return None
    return _as_utc(run.latest_started_at) + timedelta(seconds=run.latest_seconds or 0)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def dates_with_rows(
    spec: PipelineSpec, table_id: str, dates: Sequence[date], *, warehouse: Warehouse | None = None
) -> frozenset[date]:
    """Which of these dates have rows in the table: the runner's one-query re-check of a step."""
    table = spec.table(table_id)
    wh = warehouse if warehouse is not None else open_warehouse(spec)
    try:
        counts = wh.row_counts([CoverageTarget(table.table, spec.date_column_of(table))], min(dates), max(dates))
    finally:
        if warehouse is None:
            wh.close()
    wanted = set(dates)
    return frozenset(d for _, d, n in counts if d in wanted and n > 0)
