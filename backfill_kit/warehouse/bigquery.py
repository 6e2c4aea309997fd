"""Google BigQuery: the same three queries as DuckDB, for the fewest bytes billed.

- Tables partitioned by day on their date column are counted from
  `INFORMATION_SCHEMA.PARTITIONS` (metadata: none of their bytes are scanned); the other tables
  by one batched `UNION ALL` filtered on the date range, and on their partitioning column when
  it is another one (a time column, ingestion time, an integer range, a hive key) with a bound
  that drops no row: a predicate on that column alone, which is what BigQuery's documentation
  asks of a partition filter, so tables that require one work. Both
  go in the one coverage job; with more than 1,000 tables (the most a query may reference, and
  the most INFORMATION_SCHEMA.PARTITIONS answers for), in one job per 1,000.
- Queries follow the tables' schemas: date parameters are STRINGs, which GoogleSQL coerces to
  the DATE, DATETIME or TIMESTAMP column they meet; JSON and REPEATED columns are read with
  TO_JSON_STRING. tests/test_googlesql.py type-checks every query with Google's analyzer.
- Table metadata (partitioning, expiration, required filters, schema) comes from `tables.get`
  API calls, which are not jobs and cost nothing; it is cached for the life of this object
  (one validation).
- Every query is dry-run first; its estimated bytes and dollars are recorded, and a query whose
  estimate is over `maximum_bytes_billed` is refused before it runs (BigQuery is told the
  ceiling too, and refuses on its own count).
- One time limit bounds a query in all: its dry run, every attempt and every pause between them.
  Each job is given what is left of it as its timeout (BigQuery cancels it then), and we stop
  waiting then too.
- A failed job is retried, as a new job, only for a reason BigQuery's error-messages page says
  to retry (RETRYABLE_REASONS: backendError, internalError, rateLimitExceeded, their job*
  forms, tableUnavailable), with backoff, while the time limit leaves room. The reason decides,
  never the HTTP status: the client makes a 500 of every reason it does not know (a job
  cancelled at its timeout, one over maximum_bytes_billed), which are not retried. The
  client's own job retry (its 40-minute deadline) is off; its API-call retry only takes up
  what has no reason (a dropped connection, a proxy's 5xx) within the time limit, and a failed
  poll is told from a failed job by the job's own state (jobs.get).
- Native errors are translated here, once: a missing table or dataset, datasets in another
  location than `warehouse.location`, a missing permission (naming the role), a job over the
  time limit or over maximum_bytes_billed, rate limits and BigQuery's own errors (retried, then
  retryable), a daily quota (not retried: it resets tomorrow).

`google-cloud-bigquery` is imported by this module only, which is imported only for a spec
whose warehouse is BigQuery.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import TimeoutError as WaitTimeout
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from backfill_kit.common.formatting import size_text
from backfill_kit.errors import MissingDependencyError, WarehouseError
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
    BIGQUERY,
    PartitionBound,
    calendar_sql,
    coverage_sql,
    range_params,
    recent_runs_sql,
    run_history_params,
    run_history_sql,
)

try:
    import google.auth
    from google.api_core import exceptions as api_errors
    from google.api_core import retry as api_retry
    from google.api_core.exceptions import RetryError
    from google.auth import exceptions as auth_errors
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery
    from google.cloud.bigquery.retry import DEFAULT_RETRY
    from google.oauth2 import service_account
    from requests.exceptions import RequestException
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise MissingDependencyError(
        "google-cloud-bigquery", "bigquery", "The BigQuery warehouse (warehouse.backend: bigquery)"
    ) from exc

if TYPE_CHECKING:
    from backfill_kit.spec.model import PipelineSpec

__all__ = ["BigQueryWarehouse", "estimated_bytes_billed", "partitions_sql"]

MIB = 2**20
TIB = 2**40
MIN_BILLED_PER_TABLE = 10 * MIB  # on-demand queries bill at least 10 MB per table referenced
# A query references at most 1,000 tables, and INFORMATION_SCHEMA.PARTITIONS answers for at most
# 1,000 tables a query (BigQuery's quotas and limits).
MAX_TABLES_PER_QUERY = 1000
SCOPES = ("https://www.googleapis.com/auth/bigquery",)
API_RETRY_SECONDS = 120.0  # the client's own retries of one API call, at most
API_RETRY = DEFAULT_RETRY.with_timeout(API_RETRY_SECONDS)  # for metadata calls, which are no jobs
BACKOFF = (2.0, 8.0, 30.0)  # our pauses before retrying a retryable error
QUERY_TIME_LIMIT_SECONDS = 600.0  # one query in all: dry run, attempts and pauses
MIN_ATTEMPT_SECONDS = 5.0  # no attempt is started with less of the time limit left
HTTP_TIMEOUT_SECONDS = 60.0  # one API request (not a job)
# What BigQuery's error-messages page says to try again (a failed job: as a new job), with backoff.
RETRYABLE_REASONS = frozenset(
    {
        "backendError",
        "internalError",
        "rateLimitExceeded",
        "jobBackendError",
        "jobInternalError",
        "jobRateLimitExceeded",
        "tableUnavailable",
    }
)
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "jobRateLimitExceeded"})
# A quota (queries per day, bytes per day, free tier) resets tomorrow: retrying in minutes is no use.
QUOTA_REASON = "quotaExceeded"
TIMEOUT_REASON = "timeout"  # a job cancelled at its job_timeout_ms
CANCELLED_REASON = "stopped"  # a job cancelled (its message says "timed out" when at its timeout)
BYTES_BILLED_REASON = "bytesBilledLimitExceeded"
EARLIEST = "0001-01-01"  # the lowest DATE, DATETIME and TIMESTAMP
# The parameters holding the lowest value of each type a partitioning column has (date strings
# are coerced to DATE, DATETIME or TIMESTAMP), and the floor of each column type.
FLOORS: dict[str, object] = {"partitions_from": EARLIEST, "lowest_int": -(2**63), "lowest_text": ""}
FLOOR_OF_TYPE = {
    "DATE": "partitions_from",
    "DATETIME": "partitions_from",
    "TIMESTAMP": "partitions_from",
    "INTEGER": "lowest_int",
    "INT64": "lowest_int",
    "STRING": "lowest_text",
}
# A dry run's totalBytesProcessedAccuracy that bounds the bytes from above (an emulator gives none).
BOUNDING_ACCURACY = frozenset({"PRECISE", "UPPER_BOUND"})
# An error with no reason worth retrying: a 429 or 5xx (a proxy's, say: BigQuery's say why), a
# dropped connection.
RETRYABLE_TYPES = (
    api_errors.TooManyRequests,
    api_errors.InternalServerError,
    api_errors.BadGateway,
    api_errors.ServiceUnavailable,
    api_errors.GatewayTimeout,
)
TRANSPORT_ERRORS = (ConnectionError, RequestException, auth_errors.TransportError)
UNKNOWN_NAME = ("Unrecognized name", "not found in FROM clause", "does not have a column")
# "Not found: Dataset my-project:nba_raw was not found in location EU"
WRONG_LOCATION = re.compile(r"(?:Dataset|Table) ([^\s:]+):([\w-]+)\S* was not found in location (\S+)")
# How BigQuery is reached: the client's own convention for an emulator (no credentials then).
EMULATOR_HOST = "BIGQUERY_EMULATOR_HOST"

T = TypeVar("T")
_sleep = time.sleep  # replaced by tests of the backoff
_clock = time.monotonic  # the time limit's clock; tests of the backoff move it on as they sleep


class BigQueryWarehouse:
    capabilities = Capabilities(name="bigquery", partition_metadata=True, max_tables_per_query=MAX_TABLES_PER_QUERY)

    def __init__(
        self,
        client: Any,
        *,
        location: str | None = None,
        dataset_prefix: str = "",
        maximum_bytes_billed: int | None = None,
        price_per_tib_usd: float = 6.25,
        spec_file: str = "<spec>",
        time_limit_seconds: float = QUERY_TIME_LIMIT_SECONDS,
    ) -> None:
        self.queries: list[QueryRecord] = []
        self.project: str = client.project
        self.location = location
        self.dataset_prefix = dataset_prefix
        self.maximum_bytes_billed = maximum_bytes_billed
        self.price_per_tib_usd = price_per_tib_usd
        self.spec_file = spec_file
        self.time_limit_seconds = time_limit_seconds
        self.client = client  # a google.cloud.bigquery.Client
        self._tables: dict[str, dict[str, Any] | None] = {}  # spec name -> REST resource, None: missing
        self._why_missing: dict[str, str] = {}

    @classmethod
    def from_spec(cls, spec: PipelineSpec) -> BigQueryWarehouse:
        config = spec.warehouse
        assert config.backend == "bigquery"
        key = spec.resolve_path(config.credentials_file) if config.credentials_file else None
        client = connect(config.project, config.location, key, spec.file_name)
        return cls(
            client,
            location=config.location,
            dataset_prefix=config.dataset_prefix,
            maximum_bytes_billed=config.maximum_bytes_billed,
            price_per_tib_usd=config.price_per_tib_usd,
            spec_file=spec.file_name,
        )

    # --- the contract ----------------------------------------------------------------------

    def expected_dates(self, request: CalendarRequest, start: date, end: date) -> list[tuple[date, int]]:
        (resource,) = self._require([request.table])
        bound = _partition_bound(resource, request.date_column)
        sql = calendar_sql(BIGQUERY, replace(request, table=_name(resource)), bound)
        blame = request.blame(self.spec_file, "BigQuery")
        rows = self._run("calendar", sql, _range(start, end, sql), tables=1, blame=blame)
        return [(d, int(games)) for d, games in rows]

    def row_counts(self, targets: Sequence[CoverageTarget], start: date, end: date) -> list[tuple[int, date, int]]:
        """One coverage query per `max_tables_per_query` targets: a query may reference no more
        tables, nor ask INFORMATION_SCHEMA.PARTITIONS about more."""
        resources = self._require([t.table for t in targets]) if targets else []
        found: list[tuple[int, date, int]] = []
        for first, last, purpose in _chunks(len(targets), self.capabilities.max_tables_per_query, "coverage"):
            counted = self._row_counts(purpose, targets[first:last], resources[first:last], start, end)
            found.extend((first + k, d, n) for k, d, n in counted)
        return found

    def _row_counts(
        self,
        purpose: str,
        targets: Sequence[CoverageTarget],
        resources: Sequence[dict[str, Any]],
        start: date,
        end: date,
    ) -> list[tuple[int, date, int]]:
        """The coverage query of some targets: partition metadata and one scan, in one job."""
        by_metadata = _metadata_counted(targets, resources)
        scanned = [i for i in range(len(targets)) if i not in by_metadata]
        order = scanned + by_metadata  # k in the result -> index into targets
        parts, params = _partition_branches([resources[i] for i in by_metadata], len(scanned))
        views = len(parts)  # one INFORMATION_SCHEMA view per dataset
        if by_metadata:
            params |= {"first_partition": f"{start:%Y%m%d}", "after_partition": f"{end + timedelta(days=1):%Y%m%d}"}
        if scanned:
            named = [replace(targets[i], table=_name(resources[i])) for i in scanned]
            bounds = [_partition_bound(resources[i], targets[i].date_column) for i in scanned]
            parts.insert(0, coverage_sql(BIGQUERY, named, bounds))
        sql = "\nUNION ALL\n".join(parts)
        if scanned:
            params |= _range(start, end, sql)
        # Known before the job, so that a refusal comes with the table settings likely behind it.
        settings = [h for i in scanned if (h := _filter_hazard(targets[i].table, resources[i]))]
        blame = (
            f"BigQuery refused the {purpose} query; table settings that may explain it: " + " ".join(settings)
            if settings
            else ""
        )
        rows = self._run(
            purpose,
            sql,
            params,
            tables=len(scanned) + views,
            blame=blame,
            metadata_tables=[targets[i].table for i in by_metadata],
        )
        return [(order[k], d, int(n)) for k, d, n in rows]

    def run_summaries(
        self, request: RunHistoryRequest, processors: Sequence[str], start: date, end: date
    ) -> list[RunSummary]:
        (resource,) = self._require([request.table])
        sql = run_history_sql(BIGQUERY, replace(request, table=_name(resource)))
        params = run_history_params(request, processors, start, end)
        new = tuple.__new__
        return [new(RunSummary, row) for row in self._run("run_history", sql, params, tables=1)]

    def recent_runs(
        self, request: RunHistoryRequest, processors: Sequence[str], start: date, end: date, since: datetime
    ) -> list[RecentRun]:
        (resource,) = self._require([request.table])
        sql = recent_runs_sql(BIGQUERY, replace(request, table=_name(resource)))
        params = {**run_history_params(request, processors, start, end), "since": since}
        return [RecentRun._make(row) for row in self._run("recent_runs", sql, params, tables=1)]

    def missing_objects(self, wanted: Mapping[str, Sequence[str]]) -> list[MissingObject]:
        if not wanted:  # asked only whether BigQuery answers: one cheap API call, not a job
            self.call(
                "listing the datasets of the project",
                lambda: list(self.client.list_datasets(max_results=1, retry=API_RETRY, timeout=HTTP_TIMEOUT_SECONDS)),
            )
            return []
        missing: list[MissingObject] = []
        for table, columns in wanted.items():
            resource = self._resource(table)
            if resource is None:
                missing.append(MissingObject(table, None, self._why_missing.get(table)))
                continue
            have = {f["name"].lower() for f in resource.get("schema", {}).get("fields", [])}
            missing.extend(MissingObject(table, c) for c in columns if c.lower() not in have)
        return missing

    def hazards(self, targets: Sequence[CoverageTarget], start: date) -> list[str]:
        today = datetime.now(UTC).date()
        found: list[str] = []
        for table in dict.fromkeys(t.table for t in targets):
            resource = self._resource(table)
            if resource is not None:
                found.extend(table_hazards(table, resource, start, today))
        return found

    def close(self) -> None:
        self.client.close()

    # --- names -----------------------------------------------------------------------------

    def qualified(self, table: str) -> str:
        """`dataset.table` of the spec as `project.dataset.table`; a three-part name is kept."""
        parts = table.split(".")
        if len(parts) == 3:
            return table
        return f"{self.project}.{self.dataset_prefix}{parts[0]}.{parts[1]}"

    # --- metadata --------------------------------------------------------------------------

    def _resource(self, table: str) -> dict[str, Any] | None:
        """The table's REST resource (partitioning, expiration, schema), None when missing."""
        if table not in self._tables:
            name = self.qualified(table)
            try:
                found = self.call(
                    f"reading the metadata of {name}",
                    lambda: self.client.get_table(name, retry=API_RETRY, timeout=HTTP_TIMEOUT_SECONDS),
                )
                self._tables[table] = found.to_api_repr()
            except ObjectsMissingError:
                self._tables[table] = None
                if self._dataset_missing(name):
                    project, dataset, _ = name.split(".")
                    self._why_missing[table] = f"BigQuery project {project} has no dataset {dataset}"
        return self._tables[table]

    def _dataset_missing(self, name: str) -> bool:
        dataset = name.rsplit(".", 1)[0]
        try:
            self.call(
                f"reading dataset {dataset}",
                lambda: self.client.get_dataset(dataset, retry=API_RETRY, timeout=HTTP_TIMEOUT_SECONDS),
            )
        except ObjectsMissingError:
            return True
        return False

    def _require(self, tables: Sequence[str]) -> list[dict[str, Any]]:
        """The tables' metadata; a missing one raises before any query (validation then names
        every missing table and column at its spec field)."""
        resources = [self._resource(t) for t in tables]
        if lost := [t for t, r in zip(tables, resources, strict=True) if r is None]:
            raise ObjectsMissingError(f"missing in BigQuery: {', '.join(lost)}")
        return [r for r in resources if r is not None]

    # --- queries ---------------------------------------------------------------------------

    def _run(
        self,
        purpose: str,
        sql: str,
        params: dict[str, Any],
        *,
        tables: int,
        blame: str = "",
        metadata_tables: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """Dry run, cost guard, run: one job, retried as a new one for a retryable reason, all
        within the time limit. `tables` is how many tables the SQL references."""
        began = time.perf_counter()
        deadline = _clock() + self.time_limit_seconds
        parameters = [_parameter(name, value) for name, value in params.items()]
        estimate, accuracy = self.call(
            f"estimating the {purpose} query",
            lambda: self._dry_run(purpose, sql, parameters, deadline),
            blame,
            deadline,
        )
        billed = estimated_bytes_billed(estimate, tables)
        usd = billed / TIB * self.price_per_tib_usd
        bounded = accuracy in BOUNDING_ACCURACY
        if bounded:  # else the job's maximum_bytes_billed is the only guard: BigQuery counts
            self._guard(purpose, billed, usd)
        extra: dict[str, object] = {  # without a bound, no figure
            "estimated_bytes_processed": estimate,
            "estimate_accuracy": accuracy,
            "estimate_unknown": not bounded,
            "estimated_bytes_billed": billed if bounded else None,
            "estimated_usd": round(usd, 6) if bounded else None,
        }
        job, rows = self.call(
            f"running the {purpose} query", lambda: self._execute(purpose, sql, parameters, deadline), blame, deadline
        )
        extra |= {"job_id": job.job_id, "bytes_billed": job.total_bytes_billed}
        if metadata_tables:
            extra["counted_from_metadata"] = list(metadata_tables)
        self.queries.append(
            QueryRecord(purpose, sql, time.perf_counter() - began, len(rows), job.total_bytes_processed, extra)
        )
        return rows

    def _dry_run(self, purpose: str, sql: str, parameters: list[Any], deadline: float) -> tuple[int, str]:
        """Bytes the query would process, and how sure BigQuery is (PRECISE, UPPER_BOUND,
        LOWER_BOUND or UNKNOWN; an emulator says nothing: PRECISE)."""
        config = bigquery.QueryJobConfig(query_parameters=parameters, dry_run=True, use_query_cache=False)
        job = self._submit(sql, config, self._left(purpose, deadline))
        # The client has no accessor for the accuracy; it keeps the job resource in _properties.
        statistics = (job._properties.get("statistics") or {}).get("query") or {}
        accuracy = statistics.get("totalBytesProcessedAccuracy") or "PRECISE"
        return int(job.total_bytes_processed or 0), accuracy

    def _execute(
        self, purpose: str, sql: str, parameters: list[Any], deadline: float
    ) -> tuple[Any, list[tuple[Any, ...]]]:
        """One job, given what is left of the time limit (BigQuery cancels it then)."""
        left = self._left(purpose, deadline)
        config = bigquery.QueryJobConfig(
            query_parameters=parameters, labels={"tool": "backfill-kit"}, job_timeout_ms=int(left * 1000)
        )
        if self.maximum_bytes_billed is not None:
            config.maximum_bytes_billed = self.maximum_bytes_billed
        job = self._submit(sql, config, left)
        return job, self._rows(purpose, job, deadline)

    def _submit(self, sql: str, config: Any, left: float) -> Any:
        """jobs.insert, within what is left of the time limit; the client's job retry off."""
        return self.client.query(
            sql,
            job_config=config,
            location=self.location,
            retry=_unexplained(left),
            timeout=_http(left),
            job_retry=None,
        )

    def _rows(self, purpose: str, job: Any, deadline: float) -> list[tuple[Any, ...]]:
        """The job's rows, waited for until the deadline. jobs.getQueryResults answers a failed
        job with the job's error, but also fails on its own: the job's state (jobs.get) tells
        which, and a job still running is waited for again."""
        while True:
            left = self._left(purpose, deadline, job)
            try:
                rows = job.result(retry=_unexplained(left), timeout=left, job_retry=None)
                return [tuple(map(_naive_utc, row.values())) for row in rows]
            except WaitTimeout as exc:  # BigQuery cancels it too, at job_timeout_ms
                raise self._timed_out(f"the {purpose} query (job {job.job_id})") from exc
            except api_errors.GoogleAPICallError as exc:
                if (failure := self._job_failure(job, exc, left)) is not None:
                    raise failure from None
            _sleep(min(BACKOFF[0], max(deadline - _clock(), 0)))

    def _job_failure(self, job: Any, exc: Exception, left: float) -> Exception | None:
        """Why waiting for the job failed: its own errorResult, else the poll's error; None
        while it runs on (the poll failed, not the job)."""
        if job.state != "DONE":
            try:
                job.reload(retry=_unexplained(left), timeout=_http(left))
            except api_errors.GoogleAPIError:
                return exc  # BigQuery does not say: the poll's own error stands
            if job.state != "DONE":
                return None
        failed: Exception | None = job.exception() if job.error_result else None
        return failed or exc

    def _left(self, purpose: str, deadline: float, job: Any = None) -> float:
        """Seconds left of the query's time limit; none left is the query given up."""
        left = deadline - _clock()
        if left <= 0:
            raise self._timed_out(f"the {purpose} query" + (f" (job {job.job_id})" if job is not None else ""))
        return left

    def _timed_out(self, what: str) -> WarehouseError:
        return WarehouseError(
            f"{what} did not finish within {self.time_limit_seconds:g} s, the time limit of one query (its "
            "attempts and pauses included), and was given up; BigQuery may be busy: try again later, or "
            "validate fewer dates (--start/--end) or tables (--table).",
            retryable=True,
        )

    def _guard(self, purpose: str, billed: int, usd: float) -> None:
        ceiling = self.maximum_bytes_billed
        if ceiling is not None and billed > ceiling:
            raise WarehouseError(
                f"the {purpose} query would bill up to {size_text(billed, smallest='MiB')} (~${usd:.4f}), over "
                f"warehouse.maximum_bytes_billed ({ceiling:,} bytes) in {self.spec_file}; nothing was run. "
                "Raise maximum_bytes_billed, or validate fewer dates (--start/--end) or tables (--table)."
            )

    # --- errors ----------------------------------------------------------------------------

    def call(self, action: str, fn: Callable[[], T], blame: str = "", deadline: float | None = None) -> T:
        """Call BigQuery (`action` says what for, in messages); translate its errors once. An
        error BigQuery calls retryable is retried with backoff, while the deadline (when given)
        leaves room for another attempt, then given up as a retryable error."""
        for pause in (*BACKOFF, None):
            try:
                return fn()
            except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError, RequestException) as exc:
                if pause is None or not _retryable(exc) or not _room(deadline, pause):
                    raise self._translate(exc, action, blame) from exc
            _sleep(pause)
        raise AssertionError("unreachable")

    def _translate(self, exc: Exception, action: str, blame: str) -> WarehouseError:
        """One of the toolkit's errors for a native one; `blame` names the spec field an
        invalid query most likely comes from."""
        text = _message(exc)
        reasons = _reasons(exc)
        if wrong_location := WRONG_LOCATION.search(text):
            return self._location_error(action, *wrong_location.groups())
        if isinstance(exc, api_errors.NotFound) or any(s in text for s in UNKNOWN_NAME):
            return ObjectsMissingError(f"{action}: {text}")
        if BYTES_BILLED_REASON in reasons or "bytes billed" in text.lower():
            ceiling = f" ({self.maximum_bytes_billed:,} bytes)" if self.maximum_bytes_billed is not None else ""
            return WarehouseError(
                f"{action}: BigQuery refused to bill more than warehouse.maximum_bytes_billed{ceiling}: {text}. "
                f"It was not retried: raise maximum_bytes_billed in {self.spec_file}, or validate fewer dates "
                "(--start/--end) or tables (--table)."
            )
        if TIMEOUT_REASON in reasons or (CANCELLED_REASON in reasons and "timed out" in text.lower()):
            return self._timed_out(f"{action}: {text}; the query")  # BigQuery cancelled it at job_timeout_ms
        if CANCELLED_REASON in reasons:
            return WarehouseError(f"{action}: the job was cancelled: {text}. It was not retried.")
        if QUOTA_REASON in reasons:
            return WarehouseError(
                f"{action}: BigQuery quota exceeded: {text}. A quota (queries or bytes per day, "
                "the free tier) is not over in minutes, so it was not retried: try again once it "
                "resets, or raise it (Google Cloud console, IAM & Admin > Quotas)."
            )
        if _retryable(exc):
            what = (
                "rate limit"
                if reasons & RATE_LIMIT_REASONS
                else "error" + (f" ({', '.join(sorted(reasons))})" if reasons else "")
            )
            return WarehouseError(
                f"{action}: BigQuery {what}: {text}. It was retried with backoff as long as the query's time "
                f"limit ({self.time_limit_seconds:g} s) left room; try again in a few minutes.",
                retryable=True,
            )
        if isinstance(exc, api_errors.Forbidden):
            return WarehouseError(f"{action}: BigQuery denied access: {text}. {self._role_hint(text)}")
        if isinstance(exc, auth_errors.GoogleAuthError):
            return WarehouseError(f"{action}: the Google credentials were refused: {text}. {CREDENTIALS_HINT}")
        if isinstance(exc, RequestException | RetryError):
            return WarehouseError(f"{action}: BigQuery did not answer: {text}", retryable=True)
        return WarehouseError(f"{blame.rstrip('.')}. {action} failed: {text}" if blame else f"{action} failed: {text}")

    def _location_error(self, action: str, project: str, dataset: str, asked: str) -> WarehouseError:
        """Datasets looked for in one location and kept in another: said at warehouse.location,
        with the location each dataset of the spec is really in."""
        where = self._dataset_locations()
        real = sorted(set(where.values()))
        if len(real) > 1:
            listing = ", ".join(f"{name} in {location}" for name, location in where.items())
            fix = f"one query cannot read datasets in different locations ({listing}): copy them into one location"
        else:
            found = real[0] if real else "another location"
            fix = f"the datasets are in {found}: set `location: {found}` in the warehouse section, or leave it out"
        return WarehouseError(
            f"{self.spec_file}: warehouse.location: {action}: BigQuery looked for dataset "
            f"{project}:{dataset} in location {asked}, but {fix}."
        )

    def _dataset_locations(self) -> dict[str, str]:
        """Each dataset of the tables read so far, and its location as BigQuery reports it."""
        datasets = dict.fromkeys(_name(r).rsplit(".", 1)[0] for r in self._tables.values() if r is not None)
        found: dict[str, str] = {}
        for dataset in datasets:
            try:
                found[dataset] = self.client.get_dataset(
                    dataset, retry=API_RETRY, timeout=HTTP_TIMEOUT_SECONDS
                ).location
            except api_errors.GoogleAPIError:
                continue  # only for a better message: no new error while explaining one
        return found

    def _role_hint(self, text: str) -> str:
        if "jobs.create" in text:
            return f"Running queries needs roles/bigquery.jobUser on project {self.project}."
        return (
            f"Reading the spec's tables needs roles/bigquery.dataViewer on their datasets, and running "
            f"queries roles/bigquery.jobUser on project {self.project}."
        )


CREDENTIALS_HINT = (
    "Log in with `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
    "to a service-account key file (JSON), or name one in the spec's warehouse.credentials_file."
)


def connect(project: str, location: str | None, key_file: Path | None, spec_file: str = "<spec>") -> Any:
    """A BigQuery client: the key file when the spec names one, else Application Default
    Credentials; anonymous when BIGQUERY_EMULATOR_HOST points the client at an emulator."""
    if os.environ.get(EMULATOR_HOST):
        credentials: Any = AnonymousCredentials()
    elif key_file is not None:
        credentials = _key_file_credentials(key_file, spec_file)
    else:
        credentials = _default_credentials()
    return bigquery.Client(project=project, credentials=credentials, location=location)


def _key_file_credentials(key_file: Path, spec_file: str) -> Any:
    try:
        return service_account.Credentials.from_service_account_file(str(key_file), scopes=SCOPES)
    except FileNotFoundError as exc:
        raise WarehouseError(
            f"{spec_file}: warehouse.credentials_file: {key_file} does not exist "
            "(the path is relative to the spec file)"
        ) from exc
    except (ValueError, KeyError, OSError) as exc:
        raise WarehouseError(
            f"{spec_file}: warehouse.credentials_file: {key_file} is not a service-account "
            f"key file: {exc}. Download a JSON key of the service account."
        ) from exc


def _default_credentials() -> Any:
    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except auth_errors.DefaultCredentialsError as exc:
        if named := os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):  # the cause is that file, not a missing login
            raise WarehouseError(
                f"GOOGLE_APPLICATION_CREDENTIALS names {named}, which gives no credentials: {exc} "
                "Point it at a service-account key file (JSON), or unset it to use your gcloud login."
            ) from exc
        raise WarehouseError(f"no Google credentials were found. {CREDENTIALS_HINT}") from exc
    return credentials


# --- pure helpers ------------------------------------------------------------------------


def _chunks(n: int, size: int | None, purpose: str) -> list[tuple[int, int, str]]:
    """(first, last, purpose) of each run of at most `size` of `n` items (None: no limit); the
    purpose names the tables of its run when there is more than one."""
    size = size or max(n, 1)
    runs = [(first, min(first + size, n)) for first in range(0, n, size)]
    if len(runs) == 1:
        return [(0, n, purpose)]
    return [(first, last, f"{purpose} (tables {first + 1}-{last} of {n})") for first, last in runs]


def partitions_sql(dataset: str, keyed: Sequence[tuple[int, str]]) -> str:
    """Rows per daily partition of some tables of one dataset, read from metadata: no table
    bytes scanned. `keyed` pairs each table's result key with the parameter holding its name.

    The partition ids `__NULL__` and `__UNPARTITIONED__` are no dates: the WHERE keeps them out,
    and SAFE.PARSE_DATE makes them NULL rather than an error should BigQuery evaluate the SELECT
    list first (it documents no order)."""
    cases = " ".join(f"WHEN @{param} THEN {k}" for k, param in keyed)
    names = ", ".join(f"@{param}" for _, param in keyed)
    return (
        f"SELECT CASE table_name {cases} END AS k, SAFE.PARSE_DATE('%Y%m%d', partition_id) AS d, total_rows AS n "
        f"FROM {BIGQUERY.ident(dataset)}.INFORMATION_SCHEMA.PARTITIONS "
        f"WHERE table_name IN ({names}) AND partition_id >= @first_partition "
        "AND partition_id < @after_partition AND total_rows > 0"
    )


def _partition_branches(resources: Sequence[dict[str, Any]], first_k: int) -> tuple[list[str], dict[str, Any]]:
    """One PARTITIONS query per dataset, and the parameters naming its tables as BigQuery
    spells them (PARTITIONS.table_name is compared exactly); the tables' keys in the result
    follow the `first_k` scanned ones."""
    datasets: dict[str, list[tuple[int, str]]] = {}
    params: dict[str, Any] = {}
    for k, resource in enumerate(resources, start=first_k):
        dataset, table = _name(resource).rsplit(".", 1)
        datasets.setdefault(dataset, []).append((k, f"t{k}"))
        params[f"t{k}"] = table
    return [partitions_sql(dataset, keyed) for dataset, keyed in datasets.items()], params


def estimated_bytes_billed(bytes_processed: int, tables: int) -> int:
    """An upper bound of on-demand billing: bytes rounded up to a whole MB, plus the 10 MB
    minimum of every table referenced (a table read for less is billed 10 MB)."""
    rounded = -(-bytes_processed // MIB) * MIB
    return rounded + MIN_BILLED_PER_TABLE * max(tables, 1)


def table_hazards(table: str, resource: dict[str, Any], start: date, today: date) -> list[str]:
    """What this table's settings will do to a backfill of dates from `start` on."""
    found = [
        _expiration_hazard(table, resource, start, today),
        _filter_hazard(table, resource),
        _table_expiry_hazard(table, resource),
    ]
    return [h for h in found if h]


def _expiration_hazard(table: str, resource: dict[str, Any], start: date, today: date) -> str:
    expiration_ms = (resource.get("timePartitioning") or {}).get("expirationMs")
    if expiration_ms is None:
        return ""
    days, age = int(expiration_ms) // 86_400_000, (today - start).days
    if age <= days:
        return ""
    return (
        f"{table}: partitions expire {days} days after their date, but the range starts {start} "
        f"({age} days ago): rows backfilled for dates before {today - timedelta(days=days)} are deleted "
        "again at once. Lengthen or remove the table's partition expiration first."
    )


def _filter_hazard(table: str, resource: dict[str, Any]) -> str:
    if not _requires_filter(resource):
        return ""
    bound = _partition_bound(resource)
    columns = " or ".join(_hive_keys(resource)) or (bound.column if bound else "its partitioning column")
    return (
        f"{table}: requires a partition filter: every query a backfill job runs on it must "
        f"filter on {columns}, or BigQuery rejects it."
    )


def _requires_filter(resource: dict[str, Any]) -> bool:
    """require_partition_filter, wherever the table resource keeps it (on a hive-partitioned
    external table, in its hive partitioning options)."""
    hive = _hive_options(resource)
    partitioning = resource.get("timePartitioning") or {}
    return bool(
        resource.get("requirePartitionFilter")
        or partitioning.get("requirePartitionFilter")
        or hive.get("requirePartitionFilter")
    )


def _table_expiry_hazard(table: str, resource: dict[str, Any]) -> str:
    if not resource.get("expirationTime"):
        return ""
    when = datetime.fromtimestamp(int(resource["expirationTime"]) / 1000, UTC)
    return (
        f"{table}: the table itself expires at {when:%Y-%m-%d %H:%M} UTC, with every row in it; "
        "remove its expiration to keep it."
    )


def _name(resource: dict[str, Any]) -> str:
    """`project.dataset.table` as BigQuery spells it (a case-insensitive dataset answers to
    other spellings, but its metadata views hold this one)."""
    ref = resource["tableReference"]
    return f"{ref['projectId']}.{ref['datasetId']}.{ref['tableId']}"


def _partition_bound(resource: dict[str, Any], date_column: str = "") -> PartitionBound | None:
    """The column a table is partitioned on, with the floor of its type: a time column or
    _PARTITIONTIME (ingestion time), an integer range's column, a hive-partitioned external
    table's key (the date column when it is one); None when not partitioned, or on a hive key of
    a type with no floor here."""
    if (partitioning := resource.get("timePartitioning")) is not None:
        return PartitionBound(partitioning.get("field") or "_PARTITIONTIME")
    if (by_range := resource.get("rangePartitioning")) is not None:
        return PartitionBound(by_range["field"], "lowest_int")
    keys = _hive_keys(resource)
    if not keys:
        return None
    key = next((k for k in keys if k.lower() == date_column.lower()), keys[0])
    types = {f["name"].lower(): f.get("type", "").upper() for f in resource.get("schema", {}).get("fields", [])}
    floor = FLOOR_OF_TYPE.get(types.get(key.lower(), "STRING"))
    return PartitionBound(key, floor) if floor else None


def _hive_options(resource: dict[str, Any]) -> dict[str, Any]:
    options = (resource.get("externalDataConfiguration") or {}).get("hivePartitioningOptions")
    return options if isinstance(options, dict) else {}


def _hive_keys(resource: dict[str, Any]) -> list[str]:
    """A hive-partitioned external table's partition keys, as BigQuery lists them."""
    return [str(k) for k in _hive_options(resource).get("fields") or []]


def _metadata_counted(targets: Sequence[CoverageTarget], resources: Sequence[dict[str, Any]]) -> list[int]:
    """Targets whose rows per date are the rows of their daily partitions: partitioned by day on
    the date column, no rows still in the streaming buffer (not yet in a partition), listed once."""
    chosen: list[int] = []
    seen: set[str] = set()
    for i, (target, resource) in enumerate(zip(targets, resources, strict=True)):
        partitioning = resource.get("timePartitioning") or {}
        if (
            resource.get("type", "TABLE") == "TABLE"
            and partitioning.get("type") == "DAY"
            and (partitioning.get("field") or "").lower() == target.date_column.lower()
            and "streamingBuffer" not in resource
            and target.table not in seen
        ):
            chosen.append(i)
            seen.add(target.table)
    return chosen


def _parameter(name: str, value: Any) -> Any:
    """A query parameter; dates and moments go as STRINGs, which GoogleSQL coerces to the DATE,
    DATETIME or TIMESTAMP they are compared with (typed ones match one column type only)."""
    if isinstance(value, list | tuple):
        return bigquery.ArrayQueryParameter(name, "STRING", [str(v) for v in value])
    if isinstance(value, datetime):
        return bigquery.ScalarQueryParameter(name, "STRING", _moment(value))
    if isinstance(value, date):
        return bigquery.ScalarQueryParameter(name, "STRING", value.isoformat())
    if isinstance(value, int):
        return bigquery.ScalarQueryParameter(name, "INT64", value)
    return bigquery.ScalarQueryParameter(name, "STRING", str(value))


def _naive_utc(value: Any) -> Any:
    """TIMESTAMPs as naive UTC, as DuckDB gives them: the contract is the same on every backend."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _range(start: date, end: date, sql: str) -> dict[str, object]:
    """The date range as STRINGs, which GoogleSQL coerces to the DATE, DATETIME or TIMESTAMP
    column each meets (a DATE parameter cannot be compared with a TIMESTAMP), and the floors of
    the partitioning columns the SQL bounds."""
    found: dict[str, object] = {name: day.isoformat() for name, day in range_params(start, end).items()}
    return found | {name: floor for name, floor in FLOORS.items() if f"@{name}" in sql}


def _moment(value: datetime) -> str:
    """A moment as a STRING in UTC without a zone: coerced to TIMESTAMP (as UTC) or DATETIME."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S.%f}"


def _reasons(exc: Exception) -> set[str]:
    """BigQuery's reasons for an error; none for an unexplained one."""
    errors = getattr(exc, "errors", None) or []
    return {e["reason"] for e in errors if isinstance(e, dict) and e.get("reason")}


def _retryable(exc: Exception) -> bool:
    """Whether BigQuery's documentation says to try again. The reason decides when there is one,
    whatever HTTP status the client made of it (a 500 for every reason it does not know); the
    client's own retries given up (RetryError) are not retried again."""
    if isinstance(exc, RetryError):
        return False
    reasons = _reasons(exc)
    if reasons:
        return QUOTA_REASON not in reasons and bool(reasons & RETRYABLE_REASONS)  # a quota: even as 429
    return isinstance(exc, RETRYABLE_TYPES)


def _unexplained(left: float) -> Any:
    """The client's retry of one API call, for errors without a reason only (a dropped
    connection, a proxy's 5xx), within what is left of the time limit: an error with a reason
    (a failed job's, as jobs.getQueryResults answers it) is ours to decide on."""

    def predicate(exc: Exception) -> bool:
        return not _reasons(exc) and isinstance(exc, (*RETRYABLE_TYPES, *TRANSPORT_ERRORS))

    return api_retry.Retry(predicate=predicate, timeout=min(API_RETRY_SECONDS, left))


def _http(left: float) -> float:
    """One API request's timeout, within what is left of the time limit."""
    return min(HTTP_TIMEOUT_SECONDS, max(left, 1.0))


def _room(deadline: float | None, pause: float) -> bool:
    """Whether the deadline leaves room for a pause and one more attempt."""
    return deadline is None or deadline - _clock() - pause >= MIN_ATTEMPT_SECONDS


def _message(exc: Exception) -> str:
    """BigQuery's own words, without the HTTP method and URL the client puts before them."""
    errors = getattr(exc, "errors", None) or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    text = first.get("message") or getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0].rstrip(".")  # the messages built on it add their own
