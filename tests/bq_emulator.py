"""The BigQuery emulator of the test suite, and every patch it needs, in this one place.

bqemulator 1.4.0 (pinned in the `test` extra, never a runtime dependency) serves BigQuery's
REST API on top of DuckDB. It runs in this process, on its own thread and event loop, bound to
127.0.0.1 on a free port; the tests reach it with the real google-cloud-bigquery client,
pointed at it by BIGQUERY_EMULATOR_HOST (the client's own convention). Each test gets its own
project in one emulator, so its datasets and jobs are its own.

What the emulator needs, and why:

1. Startup installs DuckDB's `spatial` extension (for GEOGRAPHY), a download that fails
   offline: `DuckDBEngine._load_spatial` is skipped. No test uses GEOGRAPHY.
2. Startup also downloads DuckDB's avro and other format extensions: turned off by its
   `enable_format_extensions` setting.
3. `bqemulator.testing` imports Docker's testcontainers, which its pytest plugin and its
   `ThreadedEmulator` need: the plugin is off (`-p no:bqemulator` in pyproject) and `Emulator`
   below does what ThreadedEmulator does, in a few lines.
4. Its DuckDB thread takes Arrow from a DB-API result, on which DuckDB 2 warns; under the
   suite's `filterwarnings = error` that fails every query. `WARNING_FILTERS` (added by
   conftest) ignores that one warning, from that one module.
5. Dry runs report 0 bytes: the toolkit's estimates then rest on BigQuery's 10 MB minimum per
   table referenced, which the bytes-ceiling test relies on.
6. It refuses the client's `*/*` multipart upload (`load_table_from_json`): rows go in as
   Parquet through `load_table_from_file`, by the toolkit's own demo loader.
7. `to_dataframe()` reaches for the real BigQuery Storage API: the toolkit iterates rows.
8. An API call the emulator fails with a 500 (and a bad row in `insert_rows_json`) is retried
   by the client for 10 minutes: `short_retry()` caps the toolkit's retries at a few seconds.
9. It builds INFORMATION_SCHEMA.PARTITIONS as a literal VALUES list that it then parses: quick
   for weeks of partitions, a minute for the four-season demo. Tests load a slice of dates.
10. It keeps `requirePartitionFilter` inside `timePartitioning` only, and enforces neither it
   nor `maximum_bytes_billed`: 19 keeps and enforces the first as BigQuery documents it, 18
   fails a job as BigQuery does over the second; a live run (BACKFILL_KIT_BIGQUERY_PROJECT)
   checks both.
11. It runs DuckDB's type rules, not GoogleSQL's: it accepts a DATE parameter against a TIMESTAMP
   column and a cast from JSON to STRING, which BigQuery refuses. tests/googlesql.py type-checks
   every query with Google's analyzer instead.
12. It ignores `location` and `jobTimeoutMs`, finishes a job within the insert call, gives dry
   runs no accuracy, and misreads a quoted pseudo-column (`_PARTITIONTIME` in backticks):
   the backend writes them bare; the tests raise BigQuery's errors as the real client does.
13. It parses each query's SQL again in every step of its pipeline (statement classification,
   DDL sync, each rewriter): about ten `sqlglot.parse_one` calls a job, most of its time.
   `_memoize_emulator_parsing` keeps the last trees it parsed and gives each caller from
   bqemulator its own copy (a copy costs a sixth of a parse; callers mutate their trees),
   except the checks that only read the tree (`READ_ONLY_PARSERS`): they share it.
14. Copying a test's DuckDB warehouse in over REST (the toolkit's demo loader: a dataset, a
   table and a load job for each table) took ~40 round trips a test. `Emulator.copy_duckdb`
   writes it straight into the emulator's storage, on the emulator's thread, through its own
   handlers for new datasets and tables. `demo load` still goes over REST (test_bigquery.py);
   every query, call and check of a test goes through the real client.
15. It translates every statement to DuckDB's SQL anew, though the toolkit dry-runs each
   query before it runs it, and tests send the same queries, each to a project of its own:
   translation was then most of a job's time. `_memoize_emulator_translation` keeps each
   translation, keyed on all it depends on (the statement after the emulator's catalog
   rewrites, the tables' column types, the caller) with the project id written as a
   placeholder: a translation carries a project id through, never looks into it. The same
   for the job's next step, `rewrite_table_refs` (it writes the project into table names).
16. Its answers are DuckDB's. `Emulator.answer_queries` has another engine answer every query
   of one project, dry runs included (tests/googlesql.py's `Evaluator`, GoogleSQL's reference
   evaluator): it gets the SQL and the `queryParameters` as the REST API received them, and
   its rows go back as the emulator's own (an Arrow table, sent as BigQuery's REST rows), so
   the client reads them as it reads BigQuery's.
17. Its rewrite of `SAFE.f(...)` (as DuckDB's `TRY(f(...))`) parses the whole statement and
   writes it back, after INFORMATION_SCHEMA views were expanded into VALUES lists whose column
   names that round trip drops ("Referenced column table_name not found"):
   `_safe_calls_in_text` makes the same rewrite in the text, leaving the rest as it is.
18. Its jobs never fail as BigQuery's do: a job ends with its result, or its error is raised at
   once. `Emulator.fail_queries` makes a project's next query jobs (dry runs never) fail as a
   BigQuery job fails: jobs.insert answers RUNNING, then jobs.get says DONE with
   `status.errorResult` {reason, message}. When the failure is first seen by
   jobs.getQueryResults, the first jobs.get still says RUNNING and getQueryResults answers with
   the HTTP code BigQuery's error-messages page gives the reason (`HTTP_CODES`). From the
   errorResult, the client makes its exception of the reason, a 500 for one it does not know
   (timeout, bytesBilledLimitExceeded).
19. It keeps no `rangePartitioning`, top-level `requirePartitionFilter` or
   `externalDataConfiguration` of a table (10): `_keep_table_settings` keeps them as given (a
   hive-partitioned external table is an empty native table underneath, reported EXTERNAL),
   and `_require_partition_filters` refuses, as BigQuery documents it, a query over a table
   that requires a partition filter without a predicate that references only its partitioning
   column (a conjunct of its SELECT's WHERE), with BigQuery's message ("Cannot query over table
   ... without a filter over column(s) ... that can be used for partition elimination").
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["HOST", "WARNING_FILTERS", "Answer", "Emulator", "short_retry"]

# An engine's answer to a query: (sql, REST queryParameters) -> ([(column, BigQuery type)], rows)
Answer = Callable[[str, Sequence[Mapping[str, Any]]], tuple[list[tuple[str, str]], list[tuple[Any, ...]]]]

HOST = "127.0.0.1"  # loopback only
WARNING_FILTERS = [r"ignore:Arrow output on a DB-API result:UserWarning:bqemulator\.storage\.engine"]


def short_retry() -> Any:
    """The client's retry policy, giving up after 5 s instead of 10 minutes (8)."""
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(5)


PARSED_TREES = 512  # distinct statements kept (a test sends a few dozen)
# bqemulator's functions that parse a statement only to look at it (what kind of statement,
# which tables it names): most of a job's parses. They get the kept tree itself, not a copy.
READ_ONLY_PARSERS = {
    ("bqemulator.jobs.executor", "_parse_for_classification"),
    ("bqemulator.jobs.executor", "_reject_dml_on_immutable"),
    ("bqemulator.jobs.executor", "_capture_dml_snapshots"),
    ("bqemulator.jobs.routine_ddl", "detect_drop_routine"),
    ("bqemulator.catalog.ddl_sync", "_detect_plain_create_table"),
    ("bqemulator.catalog.ddl_sync", "_detect_catalog_drop"),
    ("bqemulator.catalog.ddl_sync", "_detect_create_schema"),
    ("bqemulator.catalog.ddl_sync", "_detect_plain_create_view"),
    ("bqemulator.sql.catalog_schema", "build_catalog_schema"),
}


def _memoize_emulator_parsing() -> None:
    """`sqlglot.parse_one`, memoized for callers inside bqemulator only (13): the toolkit's own
    parsing (calendar.filter) never goes through it. A statement that fails to parse is not
    kept, so its error is raised each time, as before."""
    import sqlglot

    original = sqlglot.parse_one
    if getattr(original, "memoized", False):
        return
    trees: OrderedDict[Any, Any] = OrderedDict()

    def parse_one(sql: Any, *args: Any, **kwargs: Any) -> Any:
        frame = sys._getframe(1)
        caller = frame.f_globals.get("__name__", "")
        try:
            key = (sql, args, tuple(sorted(kwargs.items())))
            hash(key)
        except TypeError:
            key = None
        if key is None or not caller.startswith("bqemulator"):
            return original(sql, *args, **kwargs)
        tree = trees.get(key)
        if tree is None:
            tree = trees[key] = original(sql, *args, **kwargs)
            if len(trees) > PARSED_TREES:
                trees.popitem(last=False)
        else:
            trees.move_to_end(key)
        return tree if (caller, frame.f_code.co_name) in READ_ONLY_PARSERS else tree.copy()

    parse_one.memoized = True  # type: ignore[attr-defined]
    sqlglot.parse_one = parse_one


TRANSLATIONS = 512  # distinct statements kept
PROJECT = "bk-test-{:04d}"  # the emulator's project ids, all of one length (new_project)
ANY_PROJECT = re.compile(r"bk-test-\d{4}")
SOME_PROJECT = PROJECT.format(0)  # the placeholder: never a test's project


class _ByProject:
    """Results of a function of a statement, kept with the statement's one project id written
    as a placeholder (15); a result that names the project other than `named` times (when
    given) is not kept: something looked into the project id."""

    def __init__(self) -> None:
        self.kept: OrderedDict[str, str] = OrderedDict()

    def get(self, sql: str, key: Any) -> tuple[str, str | None, str | None]:
        projects = set(ANY_PROJECT.findall(sql))
        project = projects.pop() if len(projects) == 1 else None
        general = repr((ANY_PROJECT.sub(SOME_PROJECT, sql) if project else sql, key))
        kept = self.kept.get(general)
        if kept is None:
            return general, project, None
        self.kept.move_to_end(general)
        return general, project, kept.replace(SOME_PROJECT, project) if project else kept

    def keep(self, general: str, project: str | None, result: str, named: int | None = None) -> None:
        if SOME_PROJECT in result or (project is not None and named is not None and result.count(project) != named):
            return
        self.kept[general] = result.replace(project, SOME_PROJECT) if project else result
        if len(self.kept) > TRANSLATIONS:
            self.kept.popitem(last=False)


def _memoize_emulator_translation() -> None:
    """`SQLTranslator.translate` and `rewrite_table_refs`, memoized (15). A failed translation
    is not kept: its error is raised afresh each time."""
    import bqemulator.jobs.executor as executor
    from bqemulator.domain.result import Ok
    from bqemulator.sql.translator import SQLTranslator

    original = SQLTranslator.translate
    if getattr(original, "memoized", False):
        return
    translations, table_refs = _ByProject(), _ByProject()

    def translate(self: Any, bq_sql: str, *, schema: Any = None, caller: Any = None, **kwargs: Any) -> Any:
        key = (sorted((schema or {}).items()), caller, sorted(kwargs.items()))
        general, project, kept = translations.get(bq_sql, key)
        if kept is not None:
            return Ok(kept)
        result = original(self, bq_sql, schema=schema, caller=caller, **kwargs)
        if isinstance(result, Ok):
            translations.keep(general, project, result.value, bq_sql.count(project) if project else None)
        return result

    rewrite = executor.rewrite_table_refs

    def rewrite_table_refs(duckdb_sql: str, project_id: str) -> str:
        if not ANY_PROJECT.fullmatch(project_id) or ANY_PROJECT.search(duckdb_sql.replace(project_id, "")):
            return rewrite(duckdb_sql, project_id)  # another project named: not kept
        general, _, kept = table_refs.get(f"{project_id} {duckdb_sql}", None)
        if kept is not None:
            return kept
        result = rewrite(duckdb_sql, project_id)
        table_refs.keep(general, project_id, result)
        return result

    translate.memoized = True  # type: ignore[attr-defined]
    SQLTranslator.translate = translate  # type: ignore[method-assign]
    executor.rewrite_table_refs = rewrite_table_refs


SAFE_CALL = re.compile(r"\bSAFE\.(\w+)\(", re.IGNORECASE)


def _safe_calls_in_text() -> None:
    """`SAFE.f(args)` written as `TRY(f(args))` in the statement's text (17)."""
    import bqemulator.sql.translator as translator
    from googlesql import call_bounds

    if getattr(translator.rewrite_safe_helpers, "in_text", False):
        return

    def rewrite_safe_helpers(bq_sql: str) -> str:
        while found := SAFE_CALL.search(bq_sql):
            close, _ = call_bounds(bq_sql, found.end())
            call = f"{found[1]}({bq_sql[found.end() : close]})"
            bq_sql = f"{bq_sql[: found.start()]}TRY({call}){bq_sql[close + 1 :]}"
        return bq_sql

    rewrite_safe_helpers.in_text = True  # type: ignore[attr-defined]
    translator.rewrite_safe_helpers = rewrite_safe_helpers


# BigQuery's error-messages page: the HTTP code of each reason (bytesBilledLimitExceeded, not on
# it, is the 400 BigQuery answers with "Query exceeded limit for bytes billed").
HTTP_CODES = {
    "backendError": 503,
    "internalError": 500,
    "rateLimitExceeded": 403,
    "quotaExceeded": 403,
    "jobBackendError": 400,
    "jobInternalError": 400,
    "jobRateLimitExceeded": 400,
    "timeout": 400,
    "bytesBilledLimitExceeded": 400,
}
FAILING: dict[str, list[tuple[str, str, bool]]] = {}  # project -> (reason, message, seen by getQueryResults)
FAILED_JOBS: dict[str, tuple[str, str, bool]] = {}  # job id -> its failure (18)
JOB_READS: dict[str, int] = {}  # job id -> jobs.get calls answered


def _fail_jobs_as_bigquery_does() -> None:
    """jobs.insert, jobs.get and jobs.getQueryResults of the failing jobs (18)."""
    import bqemulator.api.routes.jobs as routes
    import bqemulator.jobs.executor as executor

    original = routes._execute_query_or_failed_meta
    if getattr(original, "failing", False):
        return

    async def execute_or_fail(*, project_id: str, job_id: str, config: dict[str, Any], ctx: Any, **kwargs: Any) -> Any:
        if not FAILING.get(project_id):
            return await original(project_id=project_id, job_id=job_id, config=config, ctx=ctx, **kwargs)
        FAILED_JOBS[job_id] = FAILING[project_id].pop(0)
        now = ctx.clock.now()
        return routes.JobMeta(
            project_id=project_id, job_id=job_id, job_type="QUERY", state="RUNNING", configuration=config,
            statistics={"query": {}}, creation_time=now, start_time=now, etag=routes.generate_etag(project_id, job_id, str(now)),
        )  # fmt: skip

    class Results(dict):  # type: ignore[type-arg]
        """JOB_RESULTS, whose getQueryResults of a failed job answers with its HTTP error."""

        def get(self, job_id: Any, default: Any = None) -> Any:
            if job_id in FAILED_JOBS:
                reason, message, _ = FAILED_JOBS[job_id]
                raise _job_error(reason, message)
            return super().get(job_id, default)

    execute_or_fail.failing = True  # type: ignore[attr-defined]
    routes._execute_query_or_failed_meta = execute_or_fail
    executor.JOB_RESULTS = routes.JOB_RESULTS = Results(executor.JOB_RESULTS)


def _job_error(reason: str, message: str) -> Exception:
    """The DomainError the emulator renders as BigQuery's HTTP error for `reason`."""
    from bqemulator.domain.errors import DomainError

    kind = type(reason, (DomainError,), {"http_status": HTTP_CODES[reason], "bq_reason": reason})
    return kind(message)


def _read_failed_jobs(catalog: Any) -> None:
    """The catalog's jobs.get: a failing job is RUNNING, then DONE with its errorResult (18)."""
    original = catalog.get_job
    if getattr(original, "failing", False):
        return

    def get_job(project_id: str, job_id: str) -> Any:
        meta = original(project_id, job_id)
        if meta is None or job_id not in FAILED_JOBS:
            return meta
        reason, message, by_results = FAILED_JOBS[job_id]
        JOB_READS[job_id] = reads = JOB_READS.get(job_id, 0) + 1
        if by_results and reads == 1:
            return meta
        error = {"reason": reason, "message": message}
        return meta.model_copy(update={"state": "DONE", "error_result": error, "end_time": meta.start_time})

    get_job.failing = True  # type: ignore[attr-defined]
    catalog.get_job = get_job


KEPT_SETTINGS = ("rangePartitioning", "requirePartitionFilter", "externalDataConfiguration")
TABLE_SETTINGS: dict[tuple[str, str, str], dict[str, Any]] = {}  # (project, dataset, table) -> settings (19)


def _keep_table_settings() -> None:
    """tables.insert and tables.patch keep the settings the emulator drops; tables.get gives them (19)."""
    import bqemulator.api.routes.tables as routes

    to_meta, to_rest = routes._rest_to_table_meta, routes._table_to_rest
    if getattr(to_rest, "keeps", False):
        return

    def rest_to_table_meta(project_id: str, dataset_id: str, body: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        meta = to_meta(project_id, dataset_id, body, *args, **kwargs)
        kept = {key: body[key] for key in KEPT_SETTINGS if key in body}
        if kept:
            TABLE_SETTINGS.setdefault((project_id, dataset_id, meta.table_id), {}).update(kept)
        return meta

    def table_to_rest(t: Any) -> dict[str, Any]:
        resource = to_rest(t)
        kept = TABLE_SETTINGS.get((t.project_id, t.dataset_id, t.table_id), {})
        return {**resource, **kept, **({"type": "EXTERNAL"} if "externalDataConfiguration" in kept else {})}

    table_to_rest.keeps = True  # type: ignore[attr-defined]
    routes._rest_to_table_meta, routes._table_to_rest = rest_to_table_meta, table_to_rest


def _require_partition_filters() -> None:
    """Queries and dry runs over a table that requires a partition filter are refused without one (19)."""
    import bqemulator.api.routes.jobs as routes

    original = routes.execute_query_job
    if getattr(original, "filters", False):
        return

    async def execute_query_job(project_id: str, job_id: str, bq_sql: str, *args: Any, **kwargs: Any) -> Any:
        ctx = args[1] if len(args) > 1 else kwargs["ctx"]
        if refusal := _unfiltered(bq_sql, project_id, ctx.catalog):
            from bqemulator.domain.errors import InvalidQueryError

            raise InvalidQueryError(refusal)
        return await original(project_id, job_id, bq_sql, *args, **kwargs)

    execute_query_job.filters = True  # type: ignore[attr-defined]
    routes.execute_query_job = execute_query_job


def _unfiltered(sql: str, project: str, catalog: Any) -> str:
    """BigQuery's refusal of the first table the query reads without the partition filter it
    requires; empty when there is none."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="bigquery")
    except sqlglot.errors.ParseError:
        return ""  # the emulator says what is wrong with it
    for table in tree.find_all(exp.Table):
        select = table.find_ancestor(exp.Select)
        if select is None:  # what a DML statement writes, not a read
            continue
        columns = _required_filter(catalog, table.catalog or project, table.db, table.name)
        where = select.args.get("where")
        conjuncts = list(where.this.flatten()) if where is not None and isinstance(where.this, exp.And) else []
        conjuncts = conjuncts or ([where.this] if where is not None else [])
        if columns and not any(_only_on(c, columns) for c in conjuncts):
            names = ", ".join(f"'{c}'" for c in sorted(columns))
            return (
                f"Cannot query over table '{table.catalog or project}.{table.db}.{table.name}' without a filter "
                f"over column(s) {names} that can be used for partition elimination"
            )
    return ""


def _only_on(predicate: Any, columns: set[str]) -> bool:
    from sqlglot import exp

    found = [c.name for c in predicate.find_all(exp.Column)]
    return bool(found) and all(name.lower() in columns for name in found)


def _required_filter(catalog: Any, project: str, dataset: str, table: str) -> set[str]:
    """The partitioning columns (lowercase) a query over the table must filter on; none when it
    requires no filter."""
    if not dataset or dataset.upper() == "INFORMATION_SCHEMA":
        return set()
    meta = catalog.get_table(project, dataset, table)
    kept = TABLE_SETTINGS.get((project, dataset, table), {})
    hive = (kept.get("externalDataConfiguration") or {}).get("hivePartitioningOptions") or {}
    time = meta.time_partitioning if meta is not None else None
    required = kept.get("requirePartitionFilter") or hive.get("requirePartitionFilter")
    if time is not None and (time.require_partition_filter or required):
        return {time.field.lower()} if time.field else {"_partitiontime", "_partitiondate"}
    if required and "rangePartitioning" in kept:
        return {kept["rangePartitioning"]["field"].lower()}
    if required and hive:
        return {str(key).lower() for key in hive.get("fields") or []}
    return set()


ANSWERS: dict[str, Answer] = {}  # project -> the engine that answers its queries (16)


def _answer_queries_elsewhere() -> None:
    """bqemulator's query body, replaced for the projects in ANSWERS (16)."""
    import bqemulator.jobs.executor as executor

    original = executor._run_query_body
    if getattr(original, "answers", False):
        return

    async def run_query_body(*, project_id: str, bq_sql: str, query_params: Any, **kwargs: Any) -> Any:
        answer = ANSWERS.get(project_id)
        if answer is None:
            return await original(project_id=project_id, bq_sql=bq_sql, query_params=query_params, **kwargs)
        columns, rows = answer(bq_sql, query_params or [])
        return _arrow(columns, rows)

    run_query_body.answers = True  # type: ignore[attr-defined]
    executor._run_query_body = run_query_body


def _arrow(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> Any:
    """Rows as the Arrow table the emulator's own engine would have made of them."""
    import pyarrow as pa

    kinds = {
        "STRING": pa.string(),
        "INTEGER": pa.int64(),
        "FLOAT": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "DATE": pa.date32(),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    }
    return pa.table(
        {name: pa.array([row[i] for row in rows], type=kinds[kind]) for i, (name, kind) in enumerate(columns)}
    )


class _Body:
    """The one part of a request the emulator's handlers read: its JSON body."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    async def json(self) -> dict[str, Any]:
        return self.body


class Emulator:
    """bqemulator on a background thread with its own event loop."""

    def __init__(self) -> None:
        from bqemulator.config import LogLevel, PersistenceMode, Settings
        from bqemulator.server import EmulatorServer
        from bqemulator.storage.engine import DuckDBEngine

        DuckDBEngine._load_spatial = lambda self: None  # type: ignore[method-assign]  # 1: offline
        _memoize_emulator_parsing()  # 13
        _memoize_emulator_translation()  # 15
        _safe_calls_in_text()  # 17
        _fail_jobs_as_bigquery_does()  # 18
        _keep_table_settings()  # 19
        _require_partition_filters()  # 19
        settings = Settings(
            persistence_mode=PersistenceMode.EPHEMERAL,
            rest_host=HOST,
            rest_port=0,
            grpc_host=HOST,
            grpc_port=0,
            enable_format_extensions=False,
            log_level=LogLevel.ERROR,
            metrics_enabled=False,
        )
        self.server = EmulatorServer(settings)
        self.start_seconds = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="bqemulator", daemon=True)
        self._projects = itertools.count(1)

    @property
    def url(self) -> str:
        return self.server.rest_url

    def start(self) -> Emulator:
        began = time.perf_counter()
        self._thread.start()
        if not self._ready.wait(timeout=60):
            raise RuntimeError("the BigQuery emulator did not start within 60 s")
        if self._error is not None:
            raise self._error
        self.start_seconds = time.perf_counter() - began
        return self

    def stop(self) -> None:
        if self._error is None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def new_project(self) -> str:
        """A project of its own for one test: its datasets and its jobs."""
        return PROJECT.format(next(self._projects))

    def copy_duckdb(self, project: str, database: Path, partitioned: Mapping[str, str]) -> None:
        """Every table of a DuckDB file (schema.table) as a BigQuery table of `project`
        (dataset.table), partitioned by day on the column `partitioned` names for it (14)."""
        copying = self._copy_duckdb(project, database, partitioned)
        asyncio.run_coroutine_threadsafe(copying, self._loop).result(timeout=60)

    async def _copy_duckdb(self, project: str, database: Path, partitioned: Mapping[str, str]) -> None:
        from bqemulator.api.routes.datasets import insert_dataset
        from bqemulator.api.routes.tables import insert_table
        from bqemulator.storage.sql_identifiers import quoted_table_ref

        from backfill_kit.demo.load import TYPES

        ctx = self.server._context
        source = f"copied_{uuid.uuid4().hex}"
        ctx.engine.execute(f"ATTACH '{database}' AS {source} (READ_ONLY)")
        try:
            tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for schema, table, column, kind in ctx.engine.execute(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_catalog = ? ORDER BY table_schema, table_name, ordinal_position",
                [source],
            ).fetchall():
                tables.setdefault((schema, table), []).append((column, kind))
            for dataset in sorted({schema for schema, _ in tables}):
                await insert_dataset(project, _Body({"datasetReference": {"datasetId": dataset}}), ctx)
            for (dataset, table), columns in tables.items():
                resource: dict[str, Any] = {
                    "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
                    "schema": {"fields": [{"name": c, "type": TYPES[kind], "mode": "NULLABLE"} for c, kind in columns]},
                }
                partition = partitioned.get(f"{dataset}.{table}")
                if partition in dict(columns):
                    resource["timePartitioning"] = {"type": "DAY", "field": partition}
                await insert_table(project, dataset, _Body(resource), ctx)
                target = quoted_table_ref(project, dataset, table)
                async with ctx.engine.write_lock():  # naive timestamps are read as UTC, the engine's zone
                    ctx.engine.execute(f'INSERT INTO {target} SELECT * FROM {source}."{dataset}"."{table}"')
                    rows = ctx.engine.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
                meta = ctx.catalog.get_table(project, dataset, table)
                ctx.catalog.update_table(meta.model_copy(update={"num_rows": rows}))
        finally:
            ctx.engine.execute(f"DETACH {source}")

    def answer_queries(self, project: str, answer: Answer) -> None:
        """Every query of `project` (dry runs too) is answered by `answer`, not DuckDB (16)."""
        _answer_queries_elsewhere()
        ANSWERS[project] = answer

    def fail_queries(self, project: str, *failures: tuple[str, str], seen_by_results: bool = False) -> None:
        """The next query jobs of `project` fail with these (reason, message), as BigQuery's
        do (18); `seen_by_results`: first seen by jobs.getQueryResults, with its HTTP code."""
        _read_failed_jobs(self.server._context.catalog)
        FAILING.setdefault(project, []).extend((reason, message, seen_by_results) for reason, message in failures)

    def client(self, project: str) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=self.url)
        )

    def query_jobs(self, project: str) -> list[Any]:
        """The query jobs the project ran, as its job history shows them (dry runs left out)."""
        client = self.client(project)
        try:
            return [j for j in client.list_jobs(retry=short_retry()) if j.job_type == "query" and not j.dry_run]
        finally:
            client.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:  # surfaced by start(), in the test's thread
            self._error = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()
