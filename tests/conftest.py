"""Hand-built warehouses: a tiny pipeline whose every cell a test can reason about; and the
four-season demo, built once per session and copied to each test that uses it.

A MiniWarehouse is built in DuckDB, one fact at a time. Tests that take the `backend` fixture
from a module that parametrizes it (test_validation.py) run on BigQuery too: on close, the
DuckDB file is copied into the BigQuery emulator (tests/bq_emulator.py) and the spec's
warehouse section, and nothing else, is rewritten to point at it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from bq_emulator import WARNING_FILTERS, Emulator, short_retry

# Two short seasons; the analytics phase has two bootstrap days at each season start.
MINI_SPEC = """\
name: mini
warehouse:
  backend: duckdb
  path: mini.duckdb
date_column: game_date
calendar:
  table: raw.schedule
  date_column: game_date
  game_id_column: game_id
  filter: "game_status = 3"
  seasons:
    - {name: s1, start: 2024-01-01, end: 2024-01-31}
    - {name: s2, start: 2024-03-01, end: 2024-03-31}
run_history:
  table: ref.run_history
  columns: {processor: processor_name, date: data_date, status: status, started_at: started_at,
            finished_at: processed_at, records: records_processed, error: errors, run_id: run_id}
  statuses: {running: [running], success: [success], failed: [failed], skipped: [skipped]}
  stale_after_hours: 6
job_defaults:
  argv: ["{python}", "-c", "pass", "{id}", "{start}", "{end}"]
  skip_downstream: {args: ["--no-trigger"]}
phases:
  - name: raw
    tables:
      - {id: boxscore, table: raw.boxscore, processor: BoxscoreProcessor, min_rows_per_game: 2}
      - {id: props, table: raw.props, processor: PropsProcessor, min_rows: 3, fallback: backup_props}
      - {id: backup_props, table: raw.backup_props, processor: BackupPropsProcessor, priority: fallback}
  - name: analytics
    bootstrap_days: 2
    tables:
      - {id: summary, table: analytics.summary, processor: SummaryProcessor, depends_on: [boxscore]}
      - {id: cache, table: analytics.cache, date_column: cache_date, processor: CacheProcessor, depends_on: [summary]}
"""

NOW = datetime(2024, 4, 10, 12, 0, 0)


# On BigQuery, these mini tables are partitioned by day on their date column (counted from
# partition metadata); raw.props and analytics.cache are not (counted by a scan).
MINI_PARTITIONS = {
    "raw.schedule": "game_date",
    "raw.boxscore": "game_date",
    "raw.backup_props": "game_date",
    "analytics.summary": "game_date",
    "ref.run_history": "data_date",
}


class MiniWarehouse:
    """Builds the mini pipeline's DuckDB file one fact at a time; with an emulator, `close`
    copies it into a BigQuery project of its own and points the spec there."""

    def __init__(self, directory: Path, emulator: Emulator | None = None) -> None:
        self.dir = directory
        self.spec_path = directory / "mini.yaml"
        self.spec_text = MINI_SPEC
        self.spec_path.write_text(MINI_SPEC)
        self.emulator = emulator
        self.project = emulator.new_project() if emulator else None
        self._closed = False
        self.con = duckdb.connect(str(directory / "mini.duckdb"))
        self.con.execute(
            textwrap.dedent("""
            CREATE SCHEMA raw; CREATE SCHEMA analytics; CREATE SCHEMA ref;
            CREATE TABLE raw.schedule (game_id VARCHAR, game_date DATE, game_status INT);
            CREATE TABLE raw.boxscore (game_date DATE, team VARCHAR);
            CREATE TABLE raw.props (game_date DATE, player VARCHAR);
            CREATE TABLE raw.backup_props (game_date DATE, player VARCHAR);
            CREATE TABLE analytics.summary (game_date DATE, player VARCHAR);
            CREATE TABLE analytics.cache (cache_date DATE, player VARCHAR);
            CREATE TABLE ref.run_history (processor_name VARCHAR, run_id VARCHAR, data_date DATE,
                status VARCHAR, started_at TIMESTAMP, processed_at TIMESTAMP,
                records_processed BIGINT, errors VARCHAR);
        """)
        )
        self._runs = 0

    def history_settings(self, yaml_lines: str) -> MiniWarehouse:
        """More `run_history` settings (YAML indented by two), e.g. no-data reasons."""
        self.spec_text = self.spec_text.replace("  stale_after_hours: 6\n", f"  stale_after_hours: 6\n{yaml_lines}")
        self.spec_path.write_text(self.spec_text)
        return self.add_history_columns()

    def add_history_columns(self) -> MiniWarehouse:
        """The production run history's range and reason columns (domain.md)."""
        for column in (
            "date_range_filter_start DATE",
            "date_range_filter_end DATE",
            "failure_category VARCHAR",
            "skip_reason VARCHAR",
        ):
            self.con.execute(f"ALTER TABLE ref.run_history ADD COLUMN IF NOT EXISTS {column}")
        return self

    def games(self, d: date, n: int = 1, status: int = 3) -> MiniWarehouse:
        for i in range(n):
            self.con.execute("INSERT INTO raw.schedule VALUES (?, ?, ?)", [f"{d}-{i}", d, status])
        return self

    def rows(self, table: str, d: date, n: int) -> MiniWarehouse:
        self.con.execute(f"INSERT INTO {table} SELECT ?, 'x' || i FROM range(?) t(i)", [d, n])
        return self

    def run(
        self,
        processor: str,
        d: date,
        status: str,
        records: int = 0,
        *,
        started: datetime | None = None,
        error: str | None = None,
        finished: bool = True,
        run_id: str | None = "",
        range_: tuple[date, date] | None = None,
        failure_category: str | None = None,
        skip_reason: str | None = None,
        took: timedelta = timedelta(minutes=2),
    ) -> MiniWarehouse:
        """One run the way the real pipeline writes it: a `running` row, then its final row.
        A range run (`range_`) writes its rows once, dated at the range's end."""
        self._runs += 1
        run_id = f"run-{self._runs}" if run_id == "" else run_id
        started = started or datetime.combine(d, datetime.min.time()) + timedelta(days=1, hours=self._runs % 12)
        first, last = range_ or (None, None)
        columns = "processor_name, run_id, data_date, status, started_at, processed_at, records_processed, errors"
        running = [processor, run_id, d, "running", started, None, None, None]
        final = [processor, run_id, d, status, started, started + took, records, error]
        if range_ or failure_category or skip_reason:
            self.add_history_columns()
            columns += ", date_range_filter_start, date_range_filter_end, failure_category, skip_reason"
            running += [first, last, None, None]
            final += [first, last, failure_category, skip_reason]
        insert = f"INSERT INTO ref.run_history ({columns}) VALUES ({', '.join('?' * len(running))})"
        self.con.execute(insert, running)
        if finished and status != "running":
            self.con.execute(insert, final)
        return self

    def close(self) -> Path:
        if not self._closed:
            self._closed = True
            self.con.close()
            if self.emulator is not None:
                self._copy_to_bigquery()
        return self.spec_path

    def _copy_to_bigquery(self) -> None:
        from backfill_kit.demo.load import with_warehouse

        assert self.emulator is not None and self.project is not None
        self.emulator.copy_duckdb(self.project, self.dir / "mini.duckdb", MINI_PARTITIONS)
        self.spec_path.write_text(with_warehouse(self.spec_text, ["backend: bigquery", f"project: {self.project}"]))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Three workers for every two cores for `-n auto`: many tests wait on something (a job, a
    kernel, a browser, the emulator's thread) while another keeps the core busy; more workers
    only fight for it. Measured on 2 cores, whole suite: 2 workers 208 s; 3 workers 138-144 s;
    4 workers 146-155 s; 5 workers 149 s."""
    return min(8, max(2, 3 * (os.cpu_count() or 1) // 2))


def pytest_configure(config: pytest.Config) -> None:
    # The suite starts hundreds of Python processes (workers, the CLI, jobs, kernels): they
    # share the bytecode the first of them compiles (in __pycache__, which git ignores) even
    # where the environment says not to write it. Measured: a tenth of the quick round's CPU.
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for line in WARNING_FILTERS:  # the emulator's own warnings, not the toolkit's
        config.addinivalue_line("filterwarnings", line)
    # The user's cache (checked specs and filters) is theirs: the suite, and every command it
    # starts, keeps its own, so that a run never reads what a previous one left behind.
    os.environ["BACKFILL_KIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="backfill-kit-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.pop("BACKFILL_KIT_CACHE_DIR", ""), ignore_errors=True)


# tests/on_airflow/ runs inside the Airflow environments (test_on_airflow_2.py and _3.py start it).
collect_ignore = ["on_airflow"]


# Fixtures that cost seconds: a test using one, directly or through another fixture, is slow.
SLOW_FIXTURES = {"bigquery_emulator", "pristine_demo"}


# xdist hands whole files to its workers in collection order (--dist loadfile with
# --no-loadscope-reorder): the longest files go first, so that no worker is left alone at the
# end with a minute of `make demo` or JupyterLab while the others idle, and short files fill
# the end. The order of their wall times in a whole run (2 cores, 3 workers, 2026-11-30);
# test_spec_cache.py early for the quick round (-m "not slow"), where it is the longest.
LONGEST_FIRST = (
    "test_on_airflow_3_services.py",
    "test_on_airflow_3.py",
    "test_on_airflow_2.py",
    "test_readme.py",
    "test_jupyterlab.py",
    "test_reports.py",
    "test_bigquery.py",
    "test_runner_faults.py",
    "test_runner_properties.py",
    "test_spec_cache.py",
    "test_validation.py",
    "test_run_history.py",
    "test_runner.py",
    "test_draft.py",
    "test_googlesql.py",
    "test_demo_backfill.py",
    "test_demo_warehouse.py",
    "test_arguments.py",
    "test_monitor.py",
    "test_preflight.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest files first; mark slow every test on the BigQuery emulator (a second or
    more of REST round trips each; also those whose `mini` warehouse is parametrized onto it)
    and every test of the four-season demo (a build of seconds, once per session)."""
    items.sort(key=lambda item: LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else 99)
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_bigquery = callspec is not None and callspec.params.get("backend") == "bigquery"
        if on_bigquery or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[Emulator]:
    """One emulator for the session, started on first use, on 127.0.0.1 only."""
    pytest.importorskip("bqemulator", reason="the BigQuery emulator is in the `test` extra")
    import backfill_kit.warehouse.bigquery as bigquery_backend

    emulator = Emulator().start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bigquery_backend, "API_RETRY", short_retry())
        yield emulator
    emulator.stop()


@pytest.fixture
def backend() -> str:
    """The warehouse the `mini` fixture builds; modules parametrize it to run on both."""
    return "duckdb"


@pytest.fixture
def mini(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> MiniWarehouse:
    if backend == "bigquery":
        emulator = request.getfixturevalue("bigquery_emulator")
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", emulator.url)
        return MiniWarehouse(tmp_path, emulator)
    return MiniWarehouse(tmp_path)


# --- the four-season demo, built once ---------------------------------------------------------

DEMO_FILES = ("nba_props.yaml", "nba_props.duckdb")


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this session sees (each worker's basetemp is a child of it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def pristine_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's folder (spec and warehouse), built once per session whatever the number of
    workers: the first to ask builds it under a file lock, the others wait and reuse it. Tests
    only read it (`read_only=True`); one that writes takes a copy (`demo_copy`, `copy_demo`)."""
    from filelock import FileLock

    from backfill_kit.demo import init_demo

    shared = _shared_dir(tmp_path_factory)
    directory = shared / "demo-pristine"
    with FileLock(shared / "demo-pristine.lock"):
        if not directory.exists():
            building = shared / "demo-building"
            shutil.rmtree(building, ignore_errors=True)
            init_demo(building)
            building.rename(directory)  # all or nothing: a worker never sees half a demo
    return directory


def copy_demo(pristine: Path, directory: Path) -> Path:
    """A copy of the demo's spec and warehouse in `directory`; the spec's path."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in DEMO_FILES:
        shutil.copy(pristine / name, directory / name)
    return directory / DEMO_FILES[0]


def demo_for_module(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a copy of the demo, for a module-scoped fixture to share."""
    directory = tmp_path_factory.mktemp("demo")
    copy_demo(pristine, directory)
    return directory


@pytest.fixture
def demo_copy(pristine_demo: Path, tmp_path: Path) -> Path:
    """A fresh, writable copy of the demo for one test: its spec's path."""
    return copy_demo(pristine_demo, tmp_path)
