"""The embedded default: a DuckDB database file (or an in-memory database in tests)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from backfill_kit.errors import WarehouseError
from backfill_kit.warehouse.base import (
    CalendarRequest,
    Capabilities,
    CoverageTarget,
    MissingObject,
    ObjectsMissingError,
    QueryRecord,
    RecentRun,
    RunHistoryRequest,
    RunSummary,
)
from backfill_kit.warehouse.sql import (
    DUCKDB,
    calendar_sql,
    coverage_sql,
    range_params,
    recent_runs_sql,
    run_history_params,
    run_history_sql,
)

__all__ = ["DuckDBWarehouse"]


class DuckDBWarehouse:
    capabilities = Capabilities(name="duckdb", single_writer=True)

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        connection: Any = None,
        read_only: bool = True,
        spec_file: str = "",
        lock_wait_seconds: float | None = None,
    ) -> None:
        self.queries: list[QueryRecord] = []
        self.spec_file = spec_file or "<spec>"  # named when the spec's own SQL (the calendar filter) fails
        self.location = str(path) if path is not None else ":memory:"
        if connection is not None:
            self._con = in_utc(connection)
        elif self.location == ":memory:":
            self._con = in_utc(duckdb.connect())
        else:
            wait = LOCK_WAIT_SECONDS if lock_wait_seconds is None else lock_wait_seconds
            self._con = connect_file(Path(self.location), read_only, wait)

    def expected_dates(self, request: CalendarRequest, start: date, end: date) -> list[tuple[date, int]]:
        blame = request.blame(self.spec_file, "DuckDB")
        rows = self._run("calendar", calendar_sql(DUCKDB, request), range_params(start, end), blame=blame)
        return [(d, int(games)) for d, games in rows]

    def row_counts(self, targets: Sequence[CoverageTarget], start: date, end: date) -> list[tuple[int, date, int]]:
        if not targets:
            return []
        return self._run("coverage", coverage_sql(DUCKDB, targets), range_params(start, end))

    def run_summaries(
        self, request: RunHistoryRequest, processors: Sequence[str], start: date, end: date
    ) -> list[RunSummary]:
        params = run_history_params(request, processors, start, end)
        rows = self._run("run_history", run_history_sql(DUCKDB, request), params)
        new = tuple.__new__
        return [new(RunSummary, row) for row in rows]

    def recent_runs(
        self, request: RunHistoryRequest, processors: Sequence[str], start: date, end: date, since: datetime
    ) -> list[RecentRun]:
        # A TIMESTAMP column holds naive UTC; a TIMESTAMPTZ one is compared in the session's UTC.
        since = since.astimezone(UTC).replace(tzinfo=None) if since.tzinfo else since
        params = {**run_history_params(request, processors, start, end), "since": since}
        rows = self._run("recent_runs", recent_runs_sql(DUCKDB, request), params)
        return [RecentRun._make(row) for row in rows]

    def missing_objects(self, wanted: Mapping[str, Sequence[str]]) -> list[MissingObject]:
        rows = self._con.execute(
            "SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns"
        ).fetchall()
        columns: dict[str, set[str]] = {}
        for table, column in rows:
            columns.setdefault(table.lower(), set()).add(column.lower())
        missing: list[MissingObject] = []
        for table, cols in wanted.items():
            have = columns.get(table.lower())
            if have is None:
                missing.append(MissingObject(table))
            else:
                missing.extend(MissingObject(table, c) for c in cols if c.lower() not in have)
        return missing

    def hazards(self, targets: Sequence[CoverageTarget], start: date) -> list[str]:
        return []  # an embedded file neither expires partitions nor requires partition filters

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run any statement (for demo data and tests); not part of the contract."""
        rows: list[tuple[Any, ...]] = self._con.execute(sql, params or {}).fetchall()
        return rows

    def close(self) -> None:
        self._con.close()

    def _run(self, purpose: str, sql: str, params: dict[str, Any], blame: str = "") -> list[Any]:
        """Run a query of the contract; `blame` (as BigQuery's) names the spec field a refused
        query most likely comes from."""
        began = time.perf_counter()
        try:
            rows: list[Any] = self._con.execute(sql, params).fetchall()
        except duckdb.InterruptException:
            # Ctrl-C landed while DuckDB ran the query: it is the person's interrupt, not a
            # failed query, so every caller stops as it does on Ctrl-C anywhere else.
            raise KeyboardInterrupt from None
        except duckdb.CatalogException as exc:
            raise ObjectsMissingError(str(exc)) from exc
        except duckdb.BinderException as exc:
            if "not found" in str(exc).lower() or "does not have a column" in str(exc).lower():
                raise ObjectsMissingError(str(exc)) from exc
            raise _refused(purpose, exc, blame) from exc
        except duckdb.Error as exc:
            raise _refused(purpose, exc, blame) from exc
        self.queries.append(QueryRecord(purpose, sql, time.perf_counter() - began, len(rows)))
        return rows


def _refused(purpose: str, exc: Exception, blame: str) -> WarehouseError:
    failed = f"the {purpose} query failed: {_first_line(exc)}"
    return WarehouseError(f"{blame.rstrip('.')}. {failed}" if blame else failed)


def in_utc(con: Any) -> Any:
    """The session in UTC, whatever the machine's zone: a TIMESTAMPTZ's date, and every
    comparison with a naive moment, are then the same on every machine (and as BigQuery's)."""
    con.execute("SET TimeZone = 'UTC'")
    return con


LOCK_WAIT_SECONDS = 60.0  # how long an open waits, by default, for another process's lock on the file


def connect_file(path: Path, read_only: bool, wait_seconds: float = LOCK_WAIT_SECONDS) -> Any:
    """Open the file (its session in UTC), waiting while another process holds DuckDB's
    single-writer lock (a backfill job writing, say): that lock is held for seconds, not hours."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.02
    while True:
        try:
            return in_utc(duckdb.connect(str(path), read_only=read_only))
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None  # Ctrl-C while opening the file
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise WarehouseError(
                    f"cannot open the DuckDB warehouse {path}: {_first_line(exc)}", retryable=True
                ) from exc
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open the DuckDB warehouse {path}: {_first_line(exc)}") from exc
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
