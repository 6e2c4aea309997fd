"""The pipeline spec: a warehouse, its calendar, its run history and its phases of tables.

Plain frozen dataclasses: what a field accepts is written beside it (spec/constraints.py) and
checked when a file is loaded (spec/load.py, with pydantic); the objects themselves import
nothing heavy, so a spec served from the user's cache costs no validation library.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from backfill_kit.common.limits import date_out_of_bounds
from backfill_kit.errors import Problem, SpecError
from backfill_kit.spec.constraints import CHECKED, Bounds, Check, TaggedBy

__all__ = [
    "BigQuerySettings",
    "Calendar",
    "DuckDBSettings",
    "JobSpec",
    "Phase",
    "PipelineSpec",
    "RunHistory",
    "Season",
    "TableSpec",
]

TABLE_REF = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*\.)?[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TABLE_WHAT = "table name: dataset.table or project.dataset.table"
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
LOCATION = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
DATASET_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
JOB_PLACEHOLDERS = frozenset({"start", "end", "id", "table", "processor", "python"})
MAX_TIMEOUT_SECONDS = 30 * 86400  # a step that needs longer should be cut into smaller ones
MAX_RETRIES = 100
MAX_WORKERS = 256  # jobs at once in a phase: more than any one machine runs side by side
MAX_ROWS_PER_GAME = 1_000_000


class FrozenMap(dict[str, Any]):
    """A mapping of a spec (an environment, the no-data reasons) that cannot change after
    loading, and hashes: the spec's objects are frozen, so `hash(spec)` (e.g. an lru_cache
    over a spec in a notebook) works and a mapping cannot be edited behind the spec's back.
    A dict otherwise: it equals, prints and serializes as one."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a spec's mappings cannot change; build a new spec with dataclasses.replace")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy build it whole, never item by item
        return (type(self), (dict(self),))


def _frozen(value: dict[str, Any] | None) -> FrozenMap | None:
    return None if value is None else FrozenMap(value)


Frozen = Check(_frozen)


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):  # `$` would let a trailing newline in
        raise ValueError(f"{value!r} is not a valid {what}")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> Check:
    return Check(lambda value: _check(pattern, value, what))


def _in_bounds(value: date) -> date:
    if reason := date_out_of_bounds(value):
        raise ValueError(reason)
    return value


def _written_as_a_date(value: Any) -> Any:
    """A season date as the file writes one, YYYY-MM-DD: pydantic would read a number as Unix
    time (0 is 1970-01-01, 20211019 a confusing error)."""
    if isinstance(value, bool | int | float):
        raise ValueError("write the date as YYYY-MM-DD, e.g. 2021-10-19, not as a number")
    return value


def command_problem(value: Any) -> str | None:
    """Why an argv, a folder or an environment could not be handed to a process, or None."""
    if isinstance(value, dict):
        texts = [*value.keys(), *value.values()]
    else:
        texts = [value] if isinstance(value, str) else list(value or ())
    if any("\0" in text for text in texts):
        return "contains a NUL character, which no command line or environment can carry"
    if isinstance(value, dict) and any(not name or "=" in name for name in value):
        return "an environment variable name is empty or contains '='"
    return None


def _runnable_by_a_process(value: Any) -> Any:
    if reason := command_problem(value):
        raise ValueError(reason)
    return value


def _reason_columns(value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    for column, values in value.items():
        _check(IDENTIFIER, column, "column name")
        if not values:
            raise ValueError(f"column {column!r} lists no values; list the values that mean nothing to load")
    return value


# Text a spec puts into SQL or into a name, each checked whole by one pattern, once.
ColumnName = Annotated[str, _matching(IDENTIFIER, "column name")]
TableId = Annotated[str, _matching(IDENTIFIER, "table id (letters, digits, underscores)")]
TableName = Annotated[str, _matching(TABLE_REF, TABLE_WHAT)]
ProjectId = Annotated[str, _matching(PROJECT_ID, "project id (lowercase letters, digits and hyphens)")]
Location = Annotated[str, _matching(LOCATION, "location, e.g. US, EU or europe-west1")]
# Empty is no prefix at all.
DatasetPrefix = Annotated[
    str, Check(lambda v: v and _check(DATASET_PREFIX, v, "dataset prefix (letters, digits, underscores)"))
]
SeasonDate = Annotated[date, Check(_written_as_a_date, before=True), Check(_in_bounds)]
Name = Annotated[str, Bounds(min_length=1)]  # shown and matched as written: never empty
Runnable = Check(_runnable_by_a_process)  # an argv, a folder or an environment for a process
ExitCode = Annotated[int, Bounds(ge=1, le=255)]  # what a process can exit with, success (0) aside


class _Checked:
    __pydantic_config__: ClassVar[dict[str, Any]] = CHECKED


@dataclass(frozen=True, kw_only=True)
class DuckDBSettings(_Checked):
    """An embedded DuckDB database file; `dataset.table` names map to `schema.table`."""

    backend: Literal["duckdb"]
    path: Name  # the database file, relative to the spec file, or ':memory:'


@dataclass(frozen=True, kw_only=True)
class BigQuerySettings(_Checked):
    """Google BigQuery; `dataset.table` names map to `project.dataset.table` (with
    `dataset_prefix` put before the dataset), so a spec moves from DuckDB by this section alone.
    Credentials: the service-account key file named here, else Application Default Credentials."""

    backend: Literal["bigquery"]
    project: ProjectId  # runs the queries and holds the datasets
    location: Location | None = None  # where the datasets live, e.g. US or europe-west1
    credentials_file: str | None = None  # a service-account key (JSON), relative to the spec file
    dataset_prefix: DatasetPrefix = ""  # put before every dataset name, e.g. 'dev_'
    # Refuse any query estimated to bill more; BigQuery takes an INT64 here.
    maximum_bytes_billed: Annotated[int | None, Bounds(ge=1, le=2**63 - 1)] = None
    price_per_tib_usd: Annotated[float, Bounds(ge=0, le=1e6)] = 6.25  # on-demand price, for the cost estimates


WAREHOUSES: dict[str, type[_Checked]] = {"duckdb": DuckDBSettings, "bigquery": BigQuerySettings}


@dataclass(frozen=True, kw_only=True)
class Season(_Checked):
    name: Name
    start: SeasonDate
    end: SeasonDate


@dataclass(frozen=True, kw_only=True)
class Calendar(_Checked):
    """Where expected dates come from: dates with (filtered) rows in a schedule table, inside
    the season windows; or, without a table, every day of the season windows."""

    table: TableName | None = None
    date_column: ColumnName = "game_date"
    game_id_column: ColumnName | None = None  # counts games per date, deduplicated
    filter: str | None = None  # an SQL condition, e.g. final games only
    seasons: tuple[Season, ...] = ()
    # What one expected date is, in the reader's words ("game date", "business day", "fixture"):
    # how validate and the reports count them. Its plural is the word plus s.
    unit: Name = "date"

    @property
    def units(self) -> str:
        return f"{self.unit}s"

    @property
    def definition(self) -> str:
        """Which dates are expected, as the spec says it: the reports' one line about the calendar."""
        if self.table is None:
            return "every day of the seasons"
        where = f" where {self.filter}" if self.filter else ""
        return f"the dates of {self.table}{where}, inside the seasons"


@dataclass(frozen=True, kw_only=True)
class RunHistoryColumns(_Checked):
    processor: ColumnName
    date: ColumnName
    status: ColumnName
    started_at: ColumnName
    finished_at: ColumnName
    records: ColumnName
    error: ColumnName | None = None  # text, JSON or REPEATED: a list of {error_type, error_message}
    run_id: ColumnName | None = None  # pairs the `running` row and the final row of one run
    range_start: ColumnName | None = None  # first date of a range run's range; NULL for one date
    range_end: ColumnName | None = None  # last date of a range run's range; NULL for one date

    def named(self) -> dict[str, str]:
        """The columns the spec names, by field: the optional ones only when given."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}


@dataclass(frozen=True, kw_only=True)
class RunStatuses(_Checked):
    """Which values of the status column mean what."""

    running: tuple[str, ...] = ("running",)
    success: tuple[str, ...] = ("success",)
    failed: tuple[str, ...] = ("failed",)
    skipped: tuple[str, ...] = ("skipped",)


@dataclass(frozen=True, kw_only=True)
class RunHistory(_Checked):
    table: TableName
    columns: RunHistoryColumns
    statuses: RunStatuses = field(default_factory=RunStatuses)
    stale_after_hours: Annotated[float, Bounds(gt=0, le=24 * 366)] = 6.0
    # Which values of which columns turn a failed or skipped row into "nothing to load", e.g.
    # {failure_category: [no_data_available], skip_reason: [no_data]}. Once given, a skip that
    # matches none of them (already_processed) is no evidence: earlier attempts and rows decide.
    no_data_reasons: Annotated[dict[str, tuple[str, ...]], Check(_reason_columns), Frozen] = field(
        default_factory=FrozenMap
    )
    max_range_days: Annotated[int, Bounds(ge=1, le=3660)] = 62  # the longest range a range run covers, in days

    @property
    def ranges(self) -> bool:
        return self.columns.range_start is not None or self.columns.range_end is not None


@dataclass(frozen=True, kw_only=True)
class SkipDownstream(_Checked):
    """How a job is told not to trigger downstream work: extra arguments and/or environment."""

    args: Annotated[tuple[str, ...], Runnable] = ()
    env: Annotated[dict[str, str], Runnable, Frozen] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        if not self.args and not self.env:  # {} would pass for a guarantee and keep none
            raise ValueError("is empty: give the args and/or env that keep the job from triggering downstream work")


@dataclass(frozen=True, kw_only=True)
class JobOverrides(_Checked):
    """Job settings at any level (spec, phase, table); the nearest level wins per field."""

    argv: Annotated[tuple[str, ...] | None, Runnable] = None
    workdir: Annotated[str | None, Runnable] = None
    env: Annotated[dict[str, str] | None, Runnable, Frozen] = None
    skip_downstream: SkipDownstream | None = None
    max_dates_per_step: Annotated[int | None, Bounds(ge=1)] = None
    timeout_seconds: Annotated[float | None, Bounds(gt=0, le=MAX_TIMEOUT_SECONDS)] = None
    transient_exit_codes: tuple[ExitCode, ...] | None = None
    retries: Annotated[int | None, Bounds(ge=0, le=MAX_RETRIES)] = None
    dry_run_args: Annotated[tuple[str, ...] | None, Runnable] = None  # appended for preflight's dry run
    # The job waits for (and retries on) DuckDB's single-writer lock, so that it can run beside
    # other jobs writing the same file: preflight's check of a parallel phase on DuckDB.
    waits_for_lock: bool | None = None


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A table's backfill job after merging spec, phase and table settings."""

    argv: tuple[str, ...]
    workdir: str = "."
    env: dict[str, str] = field(default_factory=FrozenMap)
    skip_downstream: SkipDownstream | None = None
    max_dates_per_step: int = 30
    timeout_seconds: float = 3600.0
    transient_exit_codes: tuple[int, ...] = ()
    retries: int = 2
    dry_run_args: tuple[str, ...] | None = None  # None: the job cannot rehearse
    waits_for_lock: bool = False


@dataclass(frozen=True, kw_only=True)
class TableSpec(_Checked):
    id: TableId
    table: TableName
    date_column: ColumnName | None = None
    processor: Name  # as the run history writes it
    priority: Literal["critical", "important", "fallback", "optional"] = "critical"
    min_rows: Annotated[int, Bounds(ge=1)] = 1  # rows a date needs to be complete
    # Rows per scheduled game; bounded so that rows for a date's games stay a finite number.
    min_rows_per_game: Annotated[float | None, Bounds(gt=0, le=MAX_ROWS_PER_GAME)] = None
    fallback: str | None = None  # the table id whose data stands in when this one has none
    depends_on: tuple[str, ...] = ()
    job: JobOverrides | None = None

    def expected_rows(self, games: int) -> int:
        """Rows a date with `games` games needs to count as complete."""
        per_game = math.ceil(self.min_rows_per_game * games) if self.min_rows_per_game else 0
        return max(self.min_rows, per_game)


@dataclass(frozen=True, kw_only=True)
class Phase(_Checked):
    name: Name
    mode: Literal["parallel", "sequential"] = "parallel"
    max_workers: Annotated[int, Bounds(ge=1, le=MAX_WORKERS)] = 1
    bootstrap_days: Annotated[int, Bounds(ge=0, le=366)] = 0  # days after each season start expected empty
    job: JobOverrides | None = None
    tables: Annotated[tuple[TableSpec, ...], Bounds(min_length=1)]


@dataclass(frozen=True, kw_only=True)
class PipelineSpec(_Checked):
    name: Name
    warehouse: Annotated[DuckDBSettings | BigQuerySettings, TaggedBy("backend")]
    calendar: Calendar
    run_history: RunHistory
    date_column: ColumnName | None = None  # the date column of tables that name none
    job_defaults: JobOverrides | None = None
    cascade: Literal["none", "dependents"] = "none"
    phases: Annotated[tuple[Phase, ...], Bounds(min_length=1)]

    source: Path | None = None  # the file this spec was read from, set by the loader

    @cached_property
    def tables(self) -> tuple[TableSpec, ...]:
        return tuple(t for phase in self.phases for t in phase.tables)

    @cached_property
    def table_positions(self) -> dict[str, tuple[int, int]]:
        return {t.id: (p, i) for p, phase in enumerate(self.phases) for i, t in enumerate(phase.tables)}

    def table(self, table_id: str) -> TableSpec:
        return self.phases[self.table_positions[table_id][0]].tables[self.table_positions[table_id][1]]

    def phase_of(self, table_id: str) -> Phase:
        return self.phases[self.table_positions[table_id][0]]

    def field_path(self, table_id: str) -> str:
        """Where a table is declared, e.g. ``phases[1].tables[2]``, for error messages."""
        p, i = self.table_positions[table_id]
        return f"phases[{p}].tables[{i}]"

    def date_column_of(self, table: TableSpec) -> str:
        """The table's date column, else the spec's: `load_spec` refuses a table with neither."""
        column = table.date_column or self.date_column
        if column is None:  # a spec built in Python, around the loader's checks
            where, what = f"{self.field_path(table.id)}.date_column", "required: name the table's date column here"
            raise SpecError([Problem(self.file_name, where, f"{what} or set a top-level date_column")])
        return column

    def job_of(self, table: TableSpec) -> JobSpec:
        """The table's job: per field, the table's setting, else its phase's, else the spec's."""
        merged: dict[str, Any] = {}
        for level in (self.job_defaults, self.phase_of(table.id).job, table.job):
            if level is not None:
                merged.update((f.name, v) for f in fields(level) if (v := getattr(level, f.name)) is not None)
        if "argv" not in merged:  # `load_spec` refuses this; a spec built in Python may not
            where = f"{self.field_path(table.id)}.job.argv"
            raise SpecError(
                [Problem(self.file_name, where, "required: no argv here, in the phase's job or in job_defaults")]
            )
        return JobSpec(**merged)

    def resolve_path(self, path: str) -> Path:
        """A path from the spec, relative to the spec file's folder."""
        base = self.source.parent if self.source else Path.cwd()
        return (base / path).resolve()

    @property
    def folder(self) -> Path:
        """The spec file's folder as messages show it (see file_name); the working directory
        for a spec built in Python."""
        return Path(self.file_name).parent if self.source else Path.cwd()

    @property
    def file_name(self) -> str:
        """The spec file as messages name it: from the working directory when it is inside it."""
        if self.source is None:
            return "<spec>"
        try:
            return str(self.source.relative_to(Path.cwd()))
        except (ValueError, OSError):  # elsewhere, or the working directory is gone
            return str(self.source)
