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
   nor `maximum_bytes_billed`; a live run (BACKFILL_KIT_BIGQUERY_PROJECT) checks those.
11. It runs DuckDB's type rules, not GoogleSQL's: it accepts a DATE parameter against a TIMESTAMP
   column and a cast from JSON to STRING, which BigQuery refuses. tests/googlesql.py type-checks
   every query with Google's analyzer instead.
12. It ignores `location` and `jobTimeoutMs`, finishes a job within the insert call, gives dry
   runs no accuracy, and misreads a quoted pseudo-column (`_PARTITIONTIME` in backticks):
   the backend writes them bare; the tests raise BigQuery's errors as the real client does.
13. It parses each query's SQL again in every step of its pipeline (statement classification,
   DDL sync, each rewriter): about ten `sqlglot.parse_one` calls a job, most of its time.
   `_memoize_emulator_parsing` keeps the last trees it parsed and gives each caller from
   bqemulator its own copy (a copy costs a sixth of a parse; callers mutate their trees).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

__all__ = ["HOST", "WARNING_FILTERS", "Emulator", "short_retry"]

HOST = "127.0.0.1"  # loopback only
WARNING_FILTERS = [r"ignore:Arrow output on a DB-API result:UserWarning:bqemulator\.storage\.engine"]


def short_retry() -> Any:
    """The client's retry policy, giving up after 5 s instead of 10 minutes (8)."""
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(5)


PARSED_TREES = 512  # distinct statements kept (a test sends a few dozen)


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
        caller = sys._getframe(1).f_globals.get("__name__", "")
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
        return tree.copy()

    parse_one.memoized = True  # type: ignore[attr-defined]
    sqlglot.parse_one = parse_one


class Emulator:
    """bqemulator on a background thread with its own event loop."""

    def __init__(self) -> None:
        from bqemulator.config import LogLevel, PersistenceMode, Settings
        from bqemulator.server import EmulatorServer
        from bqemulator.storage.engine import DuckDBEngine

        DuckDBEngine._load_spatial = lambda self: None  # type: ignore[method-assign]  # 1: offline
        _memoize_emulator_parsing()  # 13
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
        return f"bk-test-{next(self._projects):04d}"

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
