"""Google BigQuery: the same three queries as DuckDB, for the fewest bytes billed.

- Tables partitioned by day on their date column are counted from
  `INFORMATION_SCHEMA.PARTITIONS` (metadata: none of their bytes are scanned); the other tables
  by one batched `UNION ALL` filtered on the date range, so tables that require a partition
  filter work. Both go in the one coverage job.
- Table metadata (partitioning, expiration, required filters, schema) comes from `tables.get`
  API calls, which are not jobs and cost nothing; it is cached for the life of this object
  (one validation).
- Every query is dry-run first; its estimated bytes and dollars are recorded, and a query whose
  estimate is over `maximum_bytes_billed` is refused before it runs (BigQuery is told the
  ceiling too, and refuses on its own count).
- Native errors are translated here, once: a missing table or dataset, a missing permission
  (naming the role), quota and rate limits (retryable, retried with backoff).

`google-cloud-bigquery` is imported by this module only, which is imported only for a spec
whose warehouse is BigQuery.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import MissingDependencyError, WarehouseError
from .base import (
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
from .sql import BIGQUERY, calendar_sql, coverage_sql, recent_runs_sql, run_history_params, run_history_sql

try:
    import google.auth
    from google.api_core import exceptions as api_errors
    from google.api_core.exceptions import RetryError
    from google.auth import exceptions as auth_errors
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery
    from google.cloud.bigquery.retry import DEFAULT_RETRY
    from google.oauth2 import service_account
    from requests.exceptions import RequestException
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise MissingDependencyError("google-cloud-bigquery", "bigquery", "The BigQuery warehouse (warehouse.backend: bigquery)") from exc

if TYPE_CHECKING:
    from ..spec import PipelineSpec

__all__ = ["BigQueryWarehouse", "estimated_bytes_billed", "partitions_sql"]

MIB = 2**20
TIB = 2**40
MIN_BILLED_PER_TABLE = 10 * MIB  # on-demand queries bill at least 10 MB per table referenced
SCOPES = ("https://www.googleapis.com/auth/bigquery",)
API_RETRY = DEFAULT_RETRY.with_timeout(120)  # the client's own retries, capped at 2 minutes
BACKOFF = (2.0, 8.0, 30.0)  # our pauses before retrying a quota or rate-limit error
RETRYABLE_REASONS = frozenset({"rateLimitExceeded", "quotaExceeded", "backendError", "internalError"})
RETRYABLE_TYPES = (api_errors.TooManyRequests, api_errors.InternalServerError, api_errors.BadGateway,
                   api_errors.ServiceUnavailable, api_errors.GatewayTimeout)
UNKNOWN_NAME = ("Unrecognized name", "not found in FROM clause", "does not have a column")
# How BigQuery is reached: the client's own convention for an emulator (no credentials then).
EMULATOR_HOST = "BIGQUERY_EMULATOR_HOST"

T = TypeVar("T")
_sleep = time.sleep  # replaced by tests of the backoff


class BigQueryWarehouse:
    capabilities = Capabilities(name="bigquery", partition_metadata=True, dry_run=True)

    def __init__(
        self,
        client: Any,
        *,
        location: str | None = None,
        dataset_prefix: str = "",
        maximum_bytes_billed: int | None = None,
        price_per_tib_usd: float = 6.25,
        spec_file: str = "<spec>",
    ) -> None:
        self.queries: list[QueryRecord] = []
        self.project: str = client.project
        self.location = location
        self.dataset_prefix = dataset_prefix
        self.maximum_bytes_billed = maximum_bytes_billed
        self.price_per_tib_usd = price_per_tib_usd
        self.spec_file = spec_file
        self.client = client  # a google.cloud.bigquery.Client
        self._tables: dict[str, dict[str, Any] | None] = {}  # spec name -> REST resource, None: missing
        self._why_missing: dict[str, str] = {}

    @classmethod
    def from_spec(cls, spec: PipelineSpec) -> BigQueryWarehouse:
        config = spec.warehouse
        assert config.backend == "bigquery"
        key = spec.resolve_path(config.credentials_file) if config.credentials_file else None
        client = connect(config.project, config.location, key, spec.file_name)
        return cls(client, location=config.location, dataset_prefix=config.dataset_prefix,
                   maximum_bytes_billed=config.maximum_bytes_billed,
                   price_per_tib_usd=config.price_per_tib_usd, spec_file=spec.file_name)

    # --- the contract ----------------------------------------------------------------------

    def expected_dates(self, request: CalendarRequest, start: date, end: date) -> list[tuple[date, int]]:
        self._require([request.table])
        sql = calendar_sql(BIGQUERY, replace(request, table=self.qualified(request.table)))
        blame = ""
        if request.filter:  # the one piece of SQL the user wrote: the likeliest culprit
            blame = (f"{self.spec_file}: calendar.filter: BigQuery refused the calendar query, which "
                     f"includes this filter ({request.filter!r}); check that it is a valid BigQuery SQL "
                     "condition on the schedule table's columns")
        rows = self._run("calendar", sql, _range(start, end), tables=1, blame=blame)
        return [(d, int(games)) for d, games in rows]

    def row_counts(self, targets: Sequence[CoverageTarget], start: date, end: date) -> list[tuple[int, date, int]]:
        if not targets:
            return []
        resources = self._require([t.table for t in targets])
        by_metadata = _metadata_counted(targets, resources)
        scanned = [i for i in range(len(targets)) if i not in by_metadata]
        order = scanned + by_metadata  # k in the result -> index into targets
        parts, params = self._partition_branches(targets, by_metadata, len(scanned))
        views = len(parts)  # one INFORMATION_SCHEMA view per dataset
        if by_metadata:
            params |= {"first_partition": f"{start:%Y%m%d}", "after_partition": f"{end + timedelta(days=1):%Y%m%d}"}
        if scanned:
            parts.insert(0, coverage_sql(BIGQUERY, [self._qualify(targets[i]) for i in scanned]))
            params |= _range(start, end)
        rows = self._run("coverage", "\nUNION ALL\n".join(parts), params, tables=len(scanned) + views,
                         metadata_tables=[targets[i].table for i in by_metadata])
        return [(order[k], d, int(n)) for k, d, n in rows]

    def run_summaries(
        self, request: RunHistoryRequest, processors: Sequence[str], start: date, end: date
    ) -> list[RunSummary]:
        self._require([request.table])
        sql = run_history_sql(BIGQUERY, replace(request, table=self.qualified(request.table)))
        params = run_history_params(request, processors, start, end)
        new = tuple.__new__
        return [new(RunSummary, row) for row in self._run("run_history", sql, params, tables=1)]

    def recent_runs(
        self, request: RunHistoryRequest, processors: Sequence[str], start: date, end: date, since: datetime
    ) -> list[RecentRun]:
        self._require([request.table])
        sql = recent_runs_sql(BIGQUERY, replace(request, table=self.qualified(request.table)))
        params = {**run_history_params(request, processors, start, end), "since": since}
        return [RecentRun._make(row) for row in self._run("recent_runs", sql, params, tables=1)]

    def missing_objects(self, wanted: dict[str, Sequence[str]]) -> list[MissingObject]:
        if not wanted:  # asked only whether BigQuery answers: one cheap API call, not a job
            self.call("listing the datasets of the project", lambda: list(self.client.list_datasets(max_results=1, retry=API_RETRY)))
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

    def _qualify(self, target: CoverageTarget) -> CoverageTarget:
        return replace(target, table=self.qualified(target.table))

    # --- metadata --------------------------------------------------------------------------

    def _resource(self, table: str) -> dict[str, Any] | None:
        """The table's REST resource (partitioning, expiration, schema), None when missing."""
        if table not in self._tables:
            name = self.qualified(table)
            try:
                found = self.call(f"reading the metadata of {name}",
                                   lambda: self.client.get_table(name, retry=API_RETRY))
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
            self.call(f"reading dataset {dataset}", lambda: self.client.get_dataset(dataset, retry=API_RETRY))
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

    def _partition_branches(
        self, targets: Sequence[CoverageTarget], by_metadata: list[int], first_k: int
    ) -> tuple[list[str], dict[str, Any]]:
        """One PARTITIONS query per dataset, and the parameters naming its tables; the tables'
        keys in the result follow the `first_k` scanned ones."""
        datasets: dict[str, list[tuple[int, str]]] = {}
        params: dict[str, Any] = {}
        for k, i in enumerate(by_metadata, start=first_k):
            dataset, table = self.qualified(targets[i].table).rsplit(".", 1)
            datasets.setdefault(dataset, []).append((k, f"t{k}"))
            params[f"t{k}"] = table
        return [partitions_sql(dataset, keyed) for dataset, keyed in datasets.items()], params

    # --- queries ---------------------------------------------------------------------------

    def _run(self, purpose: str, sql: str, params: dict[str, Any], *, tables: int, blame: str = "",
             metadata_tables: Sequence[str] = ()) -> list[tuple[Any, ...]]:
        """Dry run, cost guard, run: one job. `tables` is how many tables the SQL references."""
        began = time.perf_counter()
        parameters = [_parameter(name, value) for name, value in params.items()]
        estimate = self.call(f"estimating the {purpose} query", lambda: self._dry_run(sql, parameters), blame)
        billed = estimated_bytes_billed(estimate, tables)
        usd = billed / TIB * self.price_per_tib_usd
        self._guard(purpose, billed, usd)
        job, rows = self.call(f"running the {purpose} query", lambda: self._execute(sql, parameters), blame)
        extra: dict[str, object] = {
            "job_id": job.job_id, "bytes_billed": job.total_bytes_billed, "estimated_bytes_processed": estimate,
            "estimated_bytes_billed": billed, "estimated_usd": round(usd, 6),
        }
        if metadata_tables:
            extra["counted_from_metadata"] = list(metadata_tables)
        self.queries.append(QueryRecord(purpose, sql, time.perf_counter() - began, len(rows),
                                        job.total_bytes_processed, extra))
        return rows

    def _dry_run(self, sql: str, parameters: list[Any]) -> int:
        config = bigquery.QueryJobConfig(query_parameters=parameters, dry_run=True, use_query_cache=False)
        job = self.client.query(sql, job_config=config, location=self.location, retry=API_RETRY)
        return int(job.total_bytes_processed or 0)

    def _execute(self, sql: str, parameters: list[Any]) -> tuple[Any, list[tuple[Any, ...]]]:
        config = bigquery.QueryJobConfig(query_parameters=parameters, labels={"tool": "backfill-kit"})
        if self.maximum_bytes_billed is not None:
            config.maximum_bytes_billed = self.maximum_bytes_billed
        job = self.client.query(sql, job_config=config, location=self.location, retry=API_RETRY)
        return job, [tuple(map(_naive_utc, row.values())) for row in job.result(retry=API_RETRY)]

    def _guard(self, purpose: str, billed: int, usd: float) -> None:
        ceiling = self.maximum_bytes_billed
        if ceiling is not None and billed > ceiling:
            raise WarehouseError(
                f"the {purpose} query would bill about {_size(billed)} (~${usd:.4f}), over "
                f"warehouse.maximum_bytes_billed ({ceiling:,} bytes) in {self.spec_file}; nothing was run. "
                "Raise maximum_bytes_billed, or validate fewer dates (--start/--end) or tables (--table)."
            )

    # --- errors ----------------------------------------------------------------------------

    def call(self, action: str, fn: Callable[[], T], blame: str = "") -> T:
        """Call BigQuery (`action` says what for, in messages); translate its errors once, and
        retry quota and rate-limit errors with backoff before giving up with a retryable error."""
        for pause in (*BACKOFF, None):
            try:
                return fn()
            except (api_errors.GoogleAPIError, auth_errors.GoogleAuthError, RequestException) as exc:
                if pause is None or not _retryable(exc, _reasons(exc)):
                    raise self._translate(exc, action, blame) from exc
            _sleep(pause)
        raise AssertionError("unreachable")

    def _translate(self, exc: Exception, action: str, blame: str) -> WarehouseError:
        """One of the toolkit's errors for a native one; `blame` names the spec field an
        invalid query most likely comes from."""
        text = _message(exc)
        reasons = _reasons(exc)
        if isinstance(exc, api_errors.NotFound) or any(s in text for s in UNKNOWN_NAME):
            return ObjectsMissingError(f"{action}: {text}")
        if "bytesBilledLimitExceeded" in reasons or "bytes billed" in text.lower():
            return WarehouseError(f"{action}: BigQuery refused it: {text}. Raise warehouse.maximum_bytes_billed "
                                  f"in {self.spec_file}, or validate fewer dates or tables.")
        if _retryable(exc, reasons):
            return WarehouseError(f"{action}: BigQuery quota or rate limit: {text}. It was retried with backoff; "
                                  "try again in a few minutes.", retryable=True)
        if isinstance(exc, api_errors.Forbidden):
            return WarehouseError(f"{action}: BigQuery denied access: {text}. {self._role_hint(text)}")
        if isinstance(exc, auth_errors.GoogleAuthError):
            return WarehouseError(f"{action}: the Google credentials were refused: {text}. {CREDENTIALS_HINT}")
        if isinstance(exc, RequestException | RetryError):
            return WarehouseError(f"{action}: BigQuery did not answer: {text}", retryable=True)
        return WarehouseError(f"{blame}. {action} failed: {text}" if blame else f"{action} failed: {text}")

    def _role_hint(self, text: str) -> str:
        if "jobs.create" in text:
            return f"Running queries needs roles/bigquery.jobUser on project {self.project}."
        return (f"Reading the spec's tables needs roles/bigquery.dataViewer on their datasets, and running "
                f"queries roles/bigquery.jobUser on project {self.project}.")


CREDENTIALS_HINT = ("Log in with `gcloud auth application-default login`, or name a service-account key "
                    "file in the spec's warehouse.credentials_file.")


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
        raise WarehouseError(f"{spec_file}: warehouse.credentials_file: {key_file} does not exist "
                             "(the path is relative to the spec file)") from exc
    except (ValueError, KeyError, OSError) as exc:
        raise WarehouseError(f"{spec_file}: warehouse.credentials_file: {key_file} is not a service-account "
                             f"key file: {exc}. Download a JSON key of the service account.") from exc


def _default_credentials() -> Any:
    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except auth_errors.DefaultCredentialsError as exc:
        raise WarehouseError(f"no Google credentials were found. {CREDENTIALS_HINT}") from exc
    return credentials


# --- pure helpers ------------------------------------------------------------------------


def partitions_sql(dataset: str, keyed: Sequence[tuple[int, str]]) -> str:
    """Rows per daily partition of some tables of one dataset, read from metadata: no table
    bytes scanned. `keyed` pairs each table's result key with the parameter holding its name."""
    cases = " ".join(f"WHEN @{param} THEN {k}" for k, param in keyed)
    names = ", ".join(f"@{param}" for _, param in keyed)
    return (
        f"SELECT CASE table_name {cases} END AS k, PARSE_DATE('%Y%m%d', partition_id) AS d, total_rows AS n "
        f"FROM {BIGQUERY.ident(dataset)}.INFORMATION_SCHEMA.PARTITIONS "
        f"WHERE table_name IN ({names}) AND partition_id >= @first_partition "
        "AND partition_id < @after_partition AND total_rows > 0"
    )


def estimated_bytes_billed(bytes_processed: int, tables: int) -> int:
    """On-demand billing: bytes rounded up to a whole MB, at least 10 MB per table referenced."""
    rounded = -(-bytes_processed // MIB) * MIB
    return max(rounded, MIN_BILLED_PER_TABLE * max(tables, 1))


def table_hazards(table: str, resource: dict[str, Any], start: date, today: date) -> list[str]:
    """What this table's settings will do to a backfill of dates from `start` on."""
    found: list[str] = []
    partitioning = resource.get("timePartitioning") or {}
    expiration_ms = partitioning.get("expirationMs")
    if expiration_ms is not None:
        days = int(expiration_ms) // 86_400_000
        age = (today - start).days
        if age > days:
            found.append(
                f"{table}: partitions expire {days} days after their date, but the range starts {start} "
                f"({age} days ago): rows backfilled for dates before {today - timedelta(days=days)} are deleted "
                "again at once. Lengthen or remove the table's partition expiration first."
            )
    if resource.get("requirePartitionFilter") or partitioning.get("requirePartitionFilter"):
        column = partitioning.get("field") or "_PARTITIONTIME"
        found.append(f"{table}: requires a partition filter: every query a backfill job runs on it must "
                     f"filter on {column}, or BigQuery rejects it.")
    if resource.get("expirationTime"):
        when = datetime.fromtimestamp(int(resource["expirationTime"]) / 1000, UTC)
        found.append(f"{table}: the table itself expires at {when:%Y-%m-%d %H:%M} UTC, with every row in it; "
                     "remove its expiration to keep it.")
    return found


def _metadata_counted(targets: Sequence[CoverageTarget], resources: Sequence[dict[str, Any]]) -> list[int]:
    """Targets whose rows per date are the rows of their daily partitions: partitioned by day on
    the date column, no rows still in the streaming buffer (not yet in a partition), listed once."""
    chosen: list[int] = []
    seen: set[str] = set()
    for i, (target, resource) in enumerate(zip(targets, resources, strict=True)):
        partitioning = resource.get("timePartitioning") or {}
        if (resource.get("type", "TABLE") == "TABLE" and partitioning.get("type") == "DAY"
                and (partitioning.get("field") or "").lower() == target.date_column.lower()
                and "streamingBuffer" not in resource and target.table not in seen):
            chosen.append(i)
            seen.add(target.table)
    return chosen


def _parameter(name: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        return bigquery.ArrayQueryParameter(name, "STRING", [str(v) for v in value])
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return bigquery.ScalarQueryParameter(name, "TIMESTAMP", moment)
    if isinstance(value, date):
        return bigquery.ScalarQueryParameter(name, "DATE", value)
    if isinstance(value, int):
        return bigquery.ScalarQueryParameter(name, "INT64", value)
    return bigquery.ScalarQueryParameter(name, "STRING", str(value))


def _naive_utc(value: Any) -> Any:
    """TIMESTAMPs as naive UTC, as DuckDB gives them: the contract is the same on every backend."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _range(start: date, end: date) -> dict[str, date]:
    return {"start": start, "stop": end + timedelta(days=1)}


def _reasons(exc: Exception) -> set[str]:
    return {e.get("reason", "") for e in getattr(exc, "errors", None) or [] if isinstance(e, dict)}


def _retryable(exc: Exception, reasons: set[str]) -> bool:
    return isinstance(exc, RETRYABLE_TYPES) or bool(reasons & RETRYABLE_REASONS)


def _message(exc: Exception) -> str:
    """BigQuery's own words, without the HTTP method and URL the client puts before them."""
    errors = getattr(exc, "errors", None) or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    text = first.get("message") or getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0]


def _size(n: int) -> str:
    for unit, scale in (("TiB", TIB), ("GiB", 2**30), ("MiB", MIB)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"
