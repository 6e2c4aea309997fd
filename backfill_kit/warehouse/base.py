"""The warehouse contract: the few questions validation asks a warehouse, and nothing else.

Validation, planning and running talk to a `Warehouse`; only the backend modules import a
database client. Each method is one round trip, recorded in `queries`, so that a whole
validation can be shown (and tested) to cost exactly three queries; the row counts are split
into one query per `Capabilities.max_tables_per_query` tables where the warehouse sets one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple, Protocol, runtime_checkable

from backfill_kit.errors import WarehouseError

__all__ = [
    "DONE_CATEGORIES",
    "CalendarRequest",
    "Capabilities",
    "CoverageTarget",
    "MissingObject",
    "ObjectsMissingError",
    "QueryRecord",
    "RecentRun",
    "RunHistoryRequest",
    "RunSummary",
    "Warehouse",
]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, as data: callers branch on flags, never on backend names."""

    name: str
    partition_metadata: bool = False  # can count rows per partition without scanning
    single_writer: bool = False  # one process at a time may write (DuckDB's file lock)
    # The most tables one query may reference (BigQuery: 1,000); None: no limit. row_counts
    # splits its query into one per so many tables.
    max_tables_per_query: int | None = None


@dataclass(frozen=True)
class CalendarRequest:
    table: str
    date_column: str
    game_id_column: str | None = None
    filter: str | None = None

    def blame(self, spec_file: str, warehouse: str) -> str:
        """What to say first when `warehouse` refuses the calendar query: its filter is the one
        piece of SQL the user wrote, the likeliest culprit. Empty without a filter."""
        if not self.filter:
            return ""
        return (
            f"{spec_file}: calendar.filter: {warehouse} refused the calendar query, which includes this "
            f"filter ({self.filter!r}); check that it is a valid {warehouse} SQL condition on the schedule "
            "table's columns and their types"
        )


@dataclass(frozen=True)
class CoverageTarget:
    table: str
    date_column: str


@dataclass(frozen=True)
class RunHistoryRequest:
    table: str
    processor: str
    date: str
    status: str
    started_at: str
    finished_at: str
    records: str
    error: str | None
    run_id: str | None
    running: tuple[str, ...]
    success: tuple[str, ...]
    failed: tuple[str, ...]
    skipped: tuple[str, ...]
    # Range runs: one row stands for every date from range_start to range_end (each NULL on a
    # single-date row); such rows lie within max_range_days of the dates they cover.
    range_start: str | None = None
    range_end: str | None = None
    max_range_days: int = 0
    # (column, values): a failed or skipped row holding one of the values had nothing to load.
    # Without any, a skip means "nothing to load"; with some, only a matching skip does.
    no_data_reasons: tuple[tuple[str, tuple[str, ...]], ...] = ()


# Run categories after which a date has nothing left to load: its rows, or none to be had.
DONE_CATEGORIES = frozenset({"success", "no_data"})


class RunSummary(NamedTuple):
    """All attempts of one processor on one date, summarised; a run's two rows count once.

    The latest_* fields come from one attempt: the latest that is evidence (not a skip for
    another reason, not an unmapped status), ties broken by later finish, then run id."""

    processor: str
    date: date
    attempts: int
    failures: int
    latest_category: str  # running, success, failed, no_data, ignored (a skip for another reason) or other
    latest_status: str
    latest_started_at: datetime | None
    latest_seconds: float | None  # how long the latest finished run took
    best_success_records: int | None  # of single-date runs: a range run's records are not per date
    last_error: str | None  # the error column as JSON text (see validation.summaries.readable_error)
    unmapped_statuses: str | None  # statuses the spec does not map, joined by '|'; one may repeat
    latest_reason: str | None  # when the latest attempt had nothing to load by a no-data reason: which
    range_attempts: int  # attempts on this date that were range runs


class RecentRun(NamedTuple):
    """The final row of one run: what the monitor counts and lists."""

    processor: str
    date: date
    category: str  # success, failed, no_data (nothing to load) or other
    finished_at: datetime
    seconds: float | None
    error: str | None


@dataclass(frozen=True)
class MissingObject:
    table: str
    column: str | None = None  # None: the table itself is missing
    detail: str | None = None  # the backend's own words, e.g. that the whole dataset is missing


class ObjectsMissingError(WarehouseError):
    """A query named a table or column the warehouse does not have; `missing_objects` says which."""


@dataclass
class QueryRecord:
    """One warehouse round trip, as it was issued."""

    purpose: str
    sql: str
    seconds: float
    rows: int
    bytes_processed: int | None = None
    # Backend facts, as JSON-ready values; BigQuery records job_id, bytes_billed and the dry
    # run's estimated_bytes_processed, estimated_bytes_billed and estimated_usd.
    extra: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Warehouse(Protocol):
    capabilities: Capabilities
    queries: list[QueryRecord]

    def expected_dates(self, request: CalendarRequest, start: date, end: date) -> list[tuple[date, int]]:
        """Dates with rows in the calendar table, and the number of distinct games on each."""
        ...

    def row_counts(self, targets: Sequence[CoverageTarget], start: date, end: date) -> list[tuple[int, date, int]]:
        """(index into targets, date, rows) for every target date with rows: one query in all, or
        one per `capabilities.max_tables_per_query` targets."""
        ...

    def run_summaries(
        self, request: RunHistoryRequest, processors: Sequence[str], start: date, end: date
    ) -> list[RunSummary]:
        """One summary per (processor, date) with any run record: one query in all."""
        ...

    def recent_runs(
        self, request: RunHistoryRequest, processors: Sequence[str], start: date, end: date, since: datetime
    ) -> list[RecentRun]:
        """Final rows of runs on dates in [start, end] that finished at or after `since`."""
        ...

    def missing_objects(self, wanted: Mapping[str, Sequence[str]]) -> list[MissingObject]:
        """Which of these tables, or of their columns, the warehouse does not have."""
        ...

    def hazards(self, targets: Sequence[CoverageTarget], start: date) -> list[str]:
        """Table settings that will bite a backfill of dates from `start` on (partition
        expiration, required partition filters), read from metadata, never by a query."""
        ...

    def close(self) -> None: ...
