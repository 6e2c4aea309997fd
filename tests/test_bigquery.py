"""The BigQuery backend as a user meets it, on the emulator through the real client: the demo
loaded and validated for three jobs, partition metadata instead of scans, cost estimates and
the bytes ceiling, table hazards, and one clear message (exit 2) for every mistake.

The status-by-status contract tests live in test_validation.py and run on both backends.
A live run on real BigQuery is opt-in: set BACKFILL_KIT_BIGQUERY_PROJECT to a project id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from bq_emulator import Emulator
from click.testing import CliRunner, Result
from conftest import MINI_PARTITIONS, NOW, MiniWarehouse, demo_for_module
from test_monitor import history  # noqa: F401  (the monitor's fixture, reused on BigQuery)

from backfill_kit import load_spec, validate
from backfill_kit.cli.commands import cli
from backfill_kit.errors import MissingDependencyError, WarehouseError
from backfill_kit.warehouse import open_warehouse

D1 = date(2024, 1, 10)
SLICE = (date(2024, 10, 22), date(2024, 11, 30))  # a season's first weeks: bootstrap, lost, no-data
DEMO_NOW = datetime(2025, 11, 30, 12, 0)
LIVE = "BACKFILL_KIT_BIGQUERY_PROJECT"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def validate_args(spec: Path, *extra: str, start: date = date(2024, 1, 1), end: date = date(2024, 1, 31)) -> list[str]:
    return [
        "validate",
        "--spec",
        str(spec),
        "--start",
        str(start),
        "--end",
        str(end),
        "--now",
        "2024-04-10T00:00:00",
        *extra,
    ]


# --- the demo, loaded into BigQuery ----------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(pristine_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo, where `demo load` writes its BigQuery spec."""
    return demo_for_module(pristine_demo, tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(demo_dir: Path, bigquery_emulator: Emulator) -> Iterator[tuple[Result, str]]:
    """`demo load --to bigquery` of a slice of the demo, through the CLI, into a project of its own."""
    project = bigquery_emulator.new_project()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.url)
        yield load_slice(demo_dir, project, "demo_"), project


def load_slice(demo_dir: Path, project: str, prefix: str) -> Result:
    """`demo load --to bigquery` of the test slice, through the CLI."""
    return invoke(
        "demo", "load", str(demo_dir), "--to", "bigquery", "--project", project, "--dataset-prefix", prefix,
        "--start", str(SLICE[0]), "--end", str(SLICE[1]),
    )  # fmt: skip


@pytest.fixture
def on_emulator(bigquery_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.url)
    return bigquery_emulator


def test_demo_load_copies_every_table_and_writes_a_spec_changed_only_in_its_warehouse(loaded, demo_dir, on_emulator):
    result, project = loaded
    assert result.exit_code == 0, result.output
    assert f"{project}.demo_nba_raw.nbac_schedule" in result.output
    assert f"{project}.demo_nba_reference.processor_run_history" in result.output
    duck, bq = load_spec(demo_dir / "nba_props.yaml"), load_spec(demo_dir / "nba_props.bigquery.yaml")
    assert (bq.warehouse.backend, bq.warehouse.project, bq.warehouse.dataset_prefix) == ("bigquery", project, "demo_")
    assert replace(bq, warehouse=duck.warehouse, source=duck.source) == duck
    client = on_emulator.client(project)
    schedule = client.get_table(f"{project}.demo_nba_raw.nbac_schedule").to_api_repr()
    assert schedule["timePartitioning"]["field"] == "game_date"
    rows = list(
        client.query(
            f"SELECT MIN(game_date), MAX(game_date) FROM `{project}.demo_nba_raw.nbac_schedule` "
            "WHERE game_date >= '2000-01-01'"
        ).result()
    )
    assert SLICE[0] <= rows[0][0] and rows[0][1] <= SLICE[1]


def test_the_whole_demo_costs_three_jobs_and_reads_partition_metadata_not_tables(loaded, demo_dir, on_emulator):
    _, project = loaded
    spec = load_spec(demo_dir / "nba_props.bigquery.yaml")
    jobs_before = len(on_emulator.query_jobs(project))
    result = validate(spec, *SLICE, now=DEMO_NOW)
    assert len(on_emulator.query_jobs(project)) - jobs_before == 3
    assert [q.purpose for q in result.queries] == ["calendar", "coverage", "run_history"]
    coverage = result.queries[1]
    assert coverage.extra["counted_from_metadata"] == [t.table for t in spec.tables]
    # Every FROM of the coverage query is a dataset's partition metadata: no table is scanned.
    assert coverage.sql.count("FROM ") == coverage.sql.count("INFORMATION_SCHEMA.PARTITIONS") == 4
    # The same answer as DuckDB, cell for cell.
    duck = validate(load_spec(demo_dir / "nba_props.yaml"), *SLICE, now=DEMO_NOW)
    assert result.cells == duck.cells
    assert {c.status for c in result.cells} >= {"complete", "no_data", "never_ran", "lost", "bootstrap"}


def test_more_tables_than_a_query_may_reference_are_counted_in_one_query_per_so_many(loaded, demo_dir, on_emulator):
    """BigQuery lets a query reference 1,000 tables, and INFORMATION_SCHEMA.PARTITIONS answer
    for 1,000: with the limit set to 7, the demo's 20 tables are counted in 3 queries, none
    naming more than 7 tables, and the cells are the same."""
    _, project = loaded
    spec = load_spec(demo_dir / "nba_props.bigquery.yaml")
    wh = open_warehouse(spec)
    wh.capabilities = replace(wh.capabilities, max_tables_per_query=7)
    jobs_before = len(on_emulator.query_jobs(project))
    result = validate(spec, *SLICE, now=DEMO_NOW, warehouse=wh)
    wh.close()
    assert len(on_emulator.query_jobs(project)) - jobs_before == 5
    assert [q.purpose for q in result.queries] == [
        "calendar",
        "coverage (tables 1-7 of 20)",
        "coverage (tables 8-14 of 20)",
        "coverage (tables 15-20 of 20)",
        "run_history",
    ]
    coverage = result.queries[1:4]
    asked = [q.extra["counted_from_metadata"] for q in coverage]
    assert [len(tables) for tables in asked] == [7, 7, 6]
    assert [table for tables in asked for table in tables] == [t.table for t in spec.tables]
    assert all(q.sql.count("FROM ") <= 7 and q.sql.count(" THEN ") <= 7 for q in coverage)
    assert result.cells == validate(load_spec(demo_dir / "nba_props.yaml"), *SLICE, now=DEMO_NOW).cells


def test_validate_shows_the_cost_and_the_tables_that_require_a_partition_filter(loaded, demo_dir, on_emulator):
    spec = demo_dir / "nba_props.bigquery.yaml"
    out = invoke(*validate_args(spec, start=SLICE[0], end=SLICE[1])).output
    assert "3 warehouse queries" in out
    # The emulator's dry runs say 0 bytes; BigQuery bills at least 10 MB a table: the calendar
    # and the run history, and one partition view per dataset (4).
    assert "cost: 0 bytes processed, at most 60.0 MiB billed (~$0.0004)" in out
    assert "nba_raw.nbac_schedule: requires a partition filter" in out
    assert "nba_analytics.team_offense_game_summary: requires a partition filter" in out
    data = json.loads(invoke(*validate_args(spec, "--format", "json", start=SLICE[0], end=SLICE[1])).output)
    assert all(q["bytes_processed"] == 0 and q["estimated_bytes_billed"] >= 10 * 2**20 for q in data["queries"])
    assert data["cost"]["estimated_bytes_billed"] == 60 * 2**20
    assert len(data["warnings"]) == 3


# --- the contract's BigQuery specifics, on the mini warehouse ---------------------------------


@pytest.mark.parametrize("backend", ["bigquery"])
def test_partitioned_tables_are_counted_from_metadata_the_others_by_one_scan(mini: MiniWarehouse):
    mini.games(D1, 2).rows("raw.boxscore", D1, 4).rows("raw.props", D1, 3).rows("analytics.cache", D1, 1)
    result = validate(load_spec(mini.close()), D1, D1, now=NOW)
    coverage = result.queries[1]
    assert coverage.extra["counted_from_metadata"] == ["raw.boxscore", "raw.backup_props", "analytics.summary"]
    assert set(coverage.extra["counted_from_metadata"]) <= set(MINI_PARTITIONS)
    assert "`raw`.`props`" in coverage.sql and "`analytics`.`cache`" in coverage.sql
    assert "`raw`.`boxscore`" not in coverage.sql
    statuses = {c.table: (c.status, c.rows) for c in result.cells}
    assert statuses["boxscore"] == ("complete", 4) and statuses["props"] == ("complete", 3)


@pytest.mark.parametrize("backend", ["bigquery"])
def test_tables_counted_by_scan_and_by_metadata_split_per_so_many_give_the_same_counts(mini: MiniWarehouse):
    for d in (D1, date(2024, 1, 11)):
        mini.games(d, 2).rows("raw.boxscore", d, 4).rows("raw.props", d, 3).rows("analytics.cache", d, 1)
    spec = load_spec(mini.close())
    whole = validate(spec, D1, date(2024, 1, 11), now=NOW)
    wh = open_warehouse(spec)
    wh.capabilities = replace(wh.capabilities, max_tables_per_query=2)
    split = validate(spec, D1, date(2024, 1, 11), now=NOW, warehouse=wh)
    wh.close()
    purposes = [q.purpose for q in split.queries]
    assert purposes[1:4] == [f"coverage (tables {a}-{b} of 5)" for a, b in ((1, 2), (3, 4), (5, 5))]
    assert split.cells == whole.cells and {c.rows for c in split.cells} == {0, 1, 3, 4}


@pytest.mark.parametrize("backend", ["bigquery"])
def test_partition_expiration_shorter_than_the_range_is_a_warning(mini: MiniWarehouse, on_emulator):
    mini.games(D1).rows("raw.boxscore", D1, 2)
    spec = mini.close()
    client = on_emulator.client(mini.project)
    table = client.get_table(f"{mini.project}.raw.boxscore")
    table.time_partitioning.expiration_ms = 30 * 86_400_000
    client.update_table(table, ["time_partitioning"])
    result = invoke(*validate_args(spec))
    assert "raw.boxscore: partitions expire 30 days after their date, but the range starts 2024-01-01" in result.output
    data = json.loads(invoke(*validate_args(spec, "--format", "json")).output)
    assert any(w.startswith("raw.boxscore: partitions expire 30 days") for w in data["warnings"])


@pytest.mark.parametrize("backend", ["bigquery"])
def test_the_monitor_sees_on_bigquery_what_it_sees_on_duckdb(history: Path, mini: MiniWarehouse):  # noqa: F811
    from conftest import MINI_SPEC
    from test_monitor import snapshot

    duck_spec = mini.dir / "duck.yaml"  # the same facts, still in the DuckDB file
    duck_spec.write_text(MINI_SPEC)
    on_bigquery, on_duckdb = snapshot(history).to_dict(), snapshot(duck_spec).to_dict()
    assert on_bigquery == on_duckdb
    assert on_bigquery["completed_in_window"] == 3 and on_bigquery["failures"]  # recent runs were read


@pytest.fixture
def bq_spec(mini: MiniWarehouse) -> Path:
    for d in (D1, date(2024, 1, 11)):
        mini.games(d, 2).rows("raw.boxscore", d, 4).run("BoxscoreProcessor", d, "success", 4)
    return mini.close()


MISTAKES = {
    "missing table": (
        ("table: raw.props,", "table: raw.odds_props,"),
        "phases[0].tables[1].table: table raw.odds_props does not exist in the warehouse",
    ),
    "missing dataset": (
        ("table: raw.props,", "table: odds.props,"),
        "phases[0].tables[1].table: table odds.props does not exist in the warehouse (BigQuery project",
    ),
    "malformed calendar filter": (
        ('filter: "game_status = 3"', 'filter: "game_status = = 3"'),
        ": calendar.filter: not a valid SQL condition",
    ),
    "unknown column in the calendar filter": (
        ('filter: "game_status = 3"', 'filter: "game_state = 3"'),
        "calendar.filter: table raw.schedule has no column 'game_state'",
    ),
    "query over the bytes ceiling": (
        ("backend: bigquery\n", "backend: bigquery\n  maximum_bytes_billed: 1000000\n"),
        "the calendar query would bill up to 10.0 MiB (~$0.0001), over "
        "warehouse.maximum_bytes_billed (1,000,000 bytes)",
    ),
}


@pytest.mark.parametrize("backend", ["bigquery"])
@pytest.mark.parametrize("case", MISTAKES)
def test_a_mistake_on_bigquery_gets_one_clear_message_and_exit_2(bq_spec: Path, mini: MiniWarehouse, on_emulator, case):
    (old, new), message = MISTAKES[case]
    text = bq_spec.read_text()
    assert old in text
    bq_spec.write_text(text.replace(old, new, 1))
    jobs_before = len(on_emulator.query_jobs(mini.project))
    result = invoke(*validate_args(bq_spec))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert message in " ".join(result.output.split())
    assert str(bq_spec) in result.output
    if case == "missing dataset":
        assert f"BigQuery project {mini.project} has no dataset odds" in result.output
    if case in ("query over the bytes ceiling", "malformed calendar filter"):
        assert len(on_emulator.query_jobs(mini.project)) == jobs_before  # refused before any job ran


@pytest.mark.parametrize("backend", ["bigquery"])
def test_a_missing_permission_names_the_role_to_grant(bq_spec: Path, mini: MiniWarehouse, monkeypatch):
    from google.api_core.exceptions import Forbidden
    from google.cloud import bigquery

    def denied(self, *args, **kwargs):
        raise Forbidden(f"User does not have bigquery.jobs.create permission in project {mini.project}.")

    monkeypatch.setattr(bigquery.Client, "query", denied)
    result = invoke(*validate_args(bq_spec))
    assert result.exit_code == 2
    assert f"needs roles/bigquery.jobUser on project {mini.project}" in result.output

    def hidden(self, *args, **kwargs):
        raise Forbidden("Access Denied: Table raw.schedule: Permission bigquery.tables.get denied")

    monkeypatch.setattr(bigquery.Client, "get_table", hidden)
    result = invoke(*validate_args(bq_spec))
    assert result.exit_code == 2
    assert "roles/bigquery.dataViewer on their datasets" in result.output


def bigquery_refusal(reason: str, message: str, status: int = 403) -> Exception:
    """The exception the client raises for a BigQuery error response: an HTTP status (403 for
    quotas and rate limits) and the reason BigQuery gives."""
    from google.api_core.exceptions import from_http_status

    return from_http_status(status, message, errors=[{"reason": reason, "domain": "global", "message": message}])


RATE_LIMIT = ("rateLimitExceeded", "Exceeded rate limits: too many concurrent queries for this project")
DAILY_QUOTA = ("quotaExceeded", "Quota exceeded: Your project exceeded quota for free query bytes scanned.")


@pytest.mark.parametrize("backend", ["bigquery"])
def test_rate_limits_are_retried_with_backoff_then_reported_as_retryable(bq_spec: Path, monkeypatch):
    import backfill_kit.warehouse.bigquery as backend_module

    pauses: list[float] = []
    monkeypatch.setattr(backend_module, "_sleep", pauses.append)
    spec = load_spec(bq_spec)
    wh = open_warehouse(spec)
    real_query, refusals = wh.client.query, iter(range(2))

    def busy_twice(*args, **kwargs):
        if next(refusals, None) is not None:
            raise bigquery_refusal(*RATE_LIMIT)
        return real_query(*args, **kwargs)

    monkeypatch.setattr(wh.client, "query", busy_twice)
    result = validate(spec, D1, D1, now=NOW, tables=["boxscore"], warehouse=wh)
    assert result.cells[0].status == "complete" and pauses == [2.0, 8.0]

    pauses.clear()
    monkeypatch.setattr(wh.client, "query", lambda *a, **k: (_ for _ in ()).throw(bigquery_refusal(*RATE_LIMIT)))
    with pytest.raises(WarehouseError, match="BigQuery rate limit: Exceeded rate limits") as info:
        validate(spec, D1, D1, now=NOW, warehouse=wh)
    assert info.value.retryable and pauses == [2.0, 8.0, 30.0]
    wh.close()


@pytest.mark.parametrize("backend", ["bigquery"])
def test_a_spent_daily_quota_is_not_retried_and_says_so(bq_spec: Path, monkeypatch):
    import backfill_kit.warehouse.bigquery as backend_module

    pauses: list[float] = []
    monkeypatch.setattr(backend_module, "_sleep", pauses.append)
    from google.cloud import bigquery

    monkeypatch.setattr(bigquery.Client, "query", lambda *a, **k: (_ for _ in ()).throw(bigquery_refusal(*DAILY_QUOTA)))
    with pytest.raises(WarehouseError, match="BigQuery quota exceeded: Quota exceeded: Your project") as info:
        validate(load_spec(bq_spec), D1, D1, now=NOW)
    assert not info.value.retryable and pauses == []
    assert "was not retried" in str(info.value)
    result = invoke(*validate_args(bq_spec))  # through the CLI: one message, exit 2
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output


@pytest.mark.parametrize("backend", ["bigquery"])
def test_datasets_in_another_location_are_named_at_warehouse_location(bq_spec: Path, mini: MiniWarehouse, monkeypatch):
    """BigQuery answers a query run in the wrong location with a 404 (the emulator ignores
    locations): it used to read as a calendar.filter mistake."""
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    located = "backend: bigquery\n  location: asia-northeast1\n"
    bq_spec.write_text(bq_spec.read_text().replace("backend: bigquery\n", located))
    text = f"Not found: Dataset {mini.project}:raw was not found in location asia-northeast1"

    def elsewhere(*args, **kwargs):
        raise NotFound(text, errors=[{"reason": "notFound", "domain": "global", "message": text}])

    monkeypatch.setattr(bigquery.Client, "query", elsewhere)
    result = invoke(*validate_args(bq_spec))
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert f"{bq_spec}: warehouse.location:" in said
    assert f"looked for dataset {mini.project}:raw in location asia-northeast1, but the datasets are in US" in said
    assert "set `location: US`" in said and "calendar.filter" not in said


@pytest.mark.parametrize("backend", ["bigquery"])
def test_every_job_has_what_is_left_of_the_time_limit_and_one_past_it_is_given_up(bq_spec: Path, monkeypatch):
    from concurrent.futures import TimeoutError as WaitTimeout

    from google.cloud import bigquery

    configs: list[Any] = []
    real_query = bigquery.Client.query

    def recording(client, sql, job_config=None, **kwargs):
        configs.append((job_config, kwargs))
        return real_query(client, sql, job_config=job_config, **kwargs)

    monkeypatch.setattr(bigquery.Client, "query", recording)
    validate(load_spec(bq_spec), D1, D1, now=NOW)
    jobs = [config for config, _ in configs if not config.dry_run]
    assert len(jobs) == 3 and all(590_000 <= int(config.job_timeout_ms) <= 600_000 for config in jobs)
    assert all(0 < kwargs["timeout"] <= 60.0 for _, kwargs in configs)  # each API request too
    assert all(kwargs["job_retry"] is None for _, kwargs in configs)  # the client's own (40 minutes) is off

    def never_done(self, *args, **kwargs):  # what the client raises when result() waits in vain
        raise WaitTimeout()

    monkeypatch.setattr(bigquery.QueryJob, "result", never_done)
    with pytest.raises(WarehouseError, match=r"the calendar query \(job .+\) did not finish within 600 s") as info:
        validate(load_spec(bq_spec), D1, D1, now=NOW)
    assert info.value.retryable


TIMED_OUT = ("timeout", "Job execution was cancelled: Job timed out after 600 s")
OVER_BYTES_BILLED = (
    "bytesBilledLimitExceeded",
    "Query exceeded limit for bytes billed: 1000000000. 2000000000 or higher required.",
)
TOO_MANY_QUERIES = ("rateLimitExceeded", "Exceeded rate limits: too many concurrent queries for this project")
SEEN_BY = pytest.mark.parametrize("seen_by_results", [False, True], ids=["jobs.get", "getQueryResults"])


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backend's pauses, recorded instead of slept; its clock moves on by as much."""
    import time

    import backfill_kit.warehouse.bigquery as backend_module

    pauses: list[float] = []
    monkeypatch.setattr(backend_module, "_sleep", pauses.append)
    monkeypatch.setattr(backend_module, "_clock", lambda: time.monotonic() + sum(pauses))
    return pauses


def calendar_jobs(emulator: Emulator, project: str) -> list[dict[str, Any]]:
    """The query jobs of the calendar query the project ran, as its job history shows them."""
    jobs = [j.to_api_repr() for j in emulator.query_jobs(project)]
    return [j for j in jobs if "AS games" in j["configuration"]["query"]["query"]]


@pytest.mark.parametrize("backend", ["bigquery"])
@SEEN_BY
def test_a_job_cancelled_at_its_time_limit_is_not_run_again(bq_spec, mini, on_emulator, slept, seen_by_results):
    """BigQuery cancels a job at its job_timeout_ms with reason `timeout`, which the client
    makes a 500 of (it does not know the reason): every 500 was retried, so a query cancelled
    at its 10-minute limit ran 4 times (40 minutes, 4 bills)."""
    on_emulator.fail_queries(mini.project, TIMED_OUT, seen_by_results=seen_by_results)
    with pytest.raises(
        WarehouseError, match="Job timed out after 600 s; the query did not finish within 600 s"
    ) as info:
        validate(load_spec(bq_spec), D1, D1, now=NOW)
    assert info.value.retryable and slept == []
    assert len(calendar_jobs(on_emulator, mini.project)) == 1


@pytest.mark.parametrize("backend", ["bigquery"])
@SEEN_BY
def test_a_job_over_maximum_bytes_billed_is_not_run_again_and_says_what_to_raise(
    bq_spec, mini, on_emulator, slept, seen_by_results
):
    bq_spec.write_text(
        bq_spec.read_text().replace("backend: bigquery\n", "backend: bigquery\n  maximum_bytes_billed: 1000000000\n")
    )
    on_emulator.fail_queries(mini.project, OVER_BYTES_BILLED, seen_by_results=seen_by_results)
    result = invoke(*validate_args(bq_spec))
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert (
        "running the calendar query: BigQuery refused to bill more than warehouse.maximum_bytes_billed "
        "(1,000,000,000 bytes): Query exceeded limit for bytes billed: 1000000000. 2000000000 or higher required. "
        f"It was not retried: raise maximum_bytes_billed in {bq_spec}" in said
    )
    assert slept == [] and len(calendar_jobs(on_emulator, mini.project)) == 1


@pytest.mark.parametrize("backend", ["bigquery"])
@SEEN_BY
def test_a_rate_limited_job_is_run_again_with_backoff(bq_spec, mini, on_emulator, slept, seen_by_results):
    on_emulator.fail_queries(mini.project, TOO_MANY_QUERIES, TOO_MANY_QUERIES, seen_by_results=seen_by_results)
    result = validate(load_spec(bq_spec), D1, D1, now=NOW, tables=["boxscore"])
    assert result.cells[0].status == "complete"
    assert slept == [2.0, 8.0] and len(calendar_jobs(on_emulator, mini.project)) == 3


@pytest.mark.parametrize("backend", ["bigquery"])
def test_one_time_limit_bounds_a_query_its_attempts_and_pauses_included(bq_spec, mini, on_emulator, slept):
    """Rate-limited on every attempt, with a 40 s limit: attempts at 0, 2 and 10 s; a third
    pause (30 s) would leave no room for a fourth. Each job is given what is left of the limit."""
    on_emulator.fail_queries(mini.project, *[TOO_MANY_QUERIES] * 5)
    spec = load_spec(bq_spec)
    wh = open_warehouse(spec)
    wh.time_limit_seconds = 40
    with pytest.raises(WarehouseError, match="BigQuery rate limit: Exceeded rate limits") as info:
        validate(spec, D1, D1, now=NOW, warehouse=wh)
    wh.close()
    assert info.value.retryable and "as long as the query's time limit (40 s) left room" in str(info.value)
    assert slept == [2.0, 8.0]
    jobs = calendar_jobs(on_emulator, mini.project)
    assert len(jobs) == 3
    given = sorted((int(j["configuration"]["jobTimeoutMs"]) for j in jobs), reverse=True)
    assert [round(ms / 1000) for ms in given] == [40, 38, 30]  # what was left at each attempt's start


@pytest.mark.parametrize("backend", ["bigquery"])
@pytest.mark.parametrize("accuracy", ["UNKNOWN", "LOWER_BOUND"])
def test_a_dry_run_that_cannot_bound_the_bytes_shows_the_cost_as_unknown(bq_spec: Path, monkeypatch, accuracy):
    from google.cloud import bigquery

    real_query = bigquery.Client.query

    def unsure(client, sql, job_config=None, **kwargs):
        job = real_query(client, sql, job_config=job_config, **kwargs)
        if not job_config.dry_run:
            return job
        resource = job.to_api_repr()  # BigQuery's answer for, e.g., a query on an external table
        resource["statistics"] = {"query": {"totalBytesProcessed": "0", "totalBytesProcessedAccuracy": accuracy}}
        return bigquery.QueryJob.from_api_repr(resource, client)

    monkeypatch.setattr(bigquery.Client, "query", unsure)
    out = invoke(*validate_args(bq_spec)).output
    assert "cost: unknown: BigQuery's dry run could not bound the calendar, coverage, run_history query" in out
    data = json.loads(invoke(*validate_args(bq_spec, "--format", "json")).output)
    assert data["cost"]["estimated_bytes_billed"] is None and data["cost"]["estimated_usd"] is None
    assert data["cost"]["unknown_estimates"] == ["calendar", "coverage", "run_history"]
    assert all(q["estimate_accuracy"] == accuracy and q["estimated_bytes_billed"] is None for q in data["queries"])


def test_the_estimate_is_an_upper_bound_of_what_bigquery_bills():
    from backfill_kit.warehouse.bigquery import estimated_bytes_billed

    mib = 2**20
    # Two tables read for 15 MB and 1 byte: BigQuery bills 15 + 10 (the second table's minimum).
    billed = 15 * mib + 10 * mib
    assert estimated_bytes_billed(15 * mib + 1, tables=2) >= billed
    assert estimated_bytes_billed(0, tables=3) == 30 * mib  # nothing read: each table's minimum
    assert estimated_bytes_billed(15 * mib + 1, tables=2) == 16 * mib + 20 * mib


def test_partition_metadata_is_matched_on_the_table_name_as_bigquery_spells_it():
    """A case-insensitive dataset answers `raw.BoxScore` with the table `boxscore`, and its
    PARTITIONS view holds `boxscore`: the name to compare is BigQuery's."""
    from google.cloud import bigquery

    from backfill_kit.warehouse.bigquery import _partition_branches

    resource = bigquery.Table("p.raw.boxscore").to_api_repr()  # as tables.get returns it
    (sql,), params = _partition_branches([resource], first_k=0)
    assert params == {"t0": "boxscore"}
    assert "FROM `p`.`raw`.INFORMATION_SCHEMA.PARTITIONS" in sql


def test_every_partitioning_gets_a_bound_on_its_own_column_and_every_required_filter_is_named():
    """An integer range's column and a hive key get a bound of their own type (a date string
    cannot bound them); a hive-partitioned external table keeps its requirement in its hive
    options, and was neither filtered nor warned about."""
    from backfill_kit.warehouse.bigquery import _partition_bound, table_hazards
    from backfill_kit.warehouse.sql import PartitionBound

    by_range = {
        "rangePartitioning": {"field": "season_year", "range": {"start": "2000", "end": "2100", "interval": "1"}},
        "requirePartitionFilter": True,
    }
    by_ingestion = {"timePartitioning": {"type": "DAY"}, "requirePartitionFilter": True}
    hive = {
        "type": "EXTERNAL",
        "schema": {"fields": [{"name": "game_date", "type": "DATE"}, {"name": "season", "type": "STRING"}]},
        "externalDataConfiguration": {
            "hivePartitioningOptions": {"mode": "AUTO", "requirePartitionFilter": True, "fields": ["season"]}
        },
    }
    assert _partition_bound(by_range) == PartitionBound("season_year", "lowest_int")
    assert _partition_bound(by_ingestion) == PartitionBound("_PARTITIONTIME", "partitions_from")
    assert _partition_bound(hive, "game_date") == PartitionBound("season", "lowest_text")
    on_date = {**hive, "externalDataConfiguration": {"hivePartitioningOptions": {"fields": ["season", "game_date"]}}}
    assert _partition_bound(on_date, "game_date") == PartitionBound(
        "game_date", "partitions_from"
    )  # the date range is it
    assert table_hazards("raw.t", by_range, D1, D1) == [
        "raw.t: requires a partition filter: every query a backfill job runs on it must filter on season_year, "
        "or BigQuery rejects it."
    ]
    assert "must filter on _PARTITIONTIME" in table_hazards("raw.t", by_ingestion, D1, D1)[0]
    assert "must filter on season, or BigQuery rejects it" in table_hazards("raw.t", hive, D1, D1)[0]


# --- installing, importing, configuring --------------------------------------------------------


def bigquery_spec(tmp_path: Path, section: str = "backend: bigquery\n  project: my-project") -> Path:
    from conftest import MINI_SPEC

    path = tmp_path / "bq.yaml"
    path.write_text(MINI_SPEC.replace("backend: duckdb\n  path: mini.duckdb", section))
    return path


def test_without_the_client_library_the_message_says_what_to_install(tmp_path, monkeypatch):
    import google.cloud

    monkeypatch.setitem(sys.modules, "google.cloud.bigquery", None)  # as if not installed
    monkeypatch.delattr(google.cloud, "bigquery", raising=False)
    monkeypatch.delitem(sys.modules, "backfill_kit.warehouse.bigquery", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'backfill-kit\[bigquery\]'"):
        open_warehouse(load_spec(bigquery_spec(tmp_path)))
    result = invoke(*validate_args(bigquery_spec(tmp_path)))
    assert result.exit_code == 2
    assert "needs the 'google-cloud-bigquery' package" in result.output


def test_duckdb_users_never_load_the_bigquery_client(mini: MiniWarehouse):
    mini.games(D1).rows("raw.boxscore", D1, 2)
    spec = mini.close()
    code = (
        "import sys\nfrom datetime import date\nimport backfill_kit.validation.validator\n"
        "assert not [m for m in sys.modules if m.startswith('google')]\n"
        "from backfill_kit import load_spec, validate\n"
        f"v = validate(load_spec({str(spec)!r}), date(2024, 1, 1), date(2024, 1, 31))\n"
        "print(len(v.cells), sorted(m for m in sys.modules if m.startswith(('google', 'backfill_kit.warehouse.bigquery'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["5", "[]"]


def test_the_bigquery_section_is_checked_like_the_rest_of_the_spec(tmp_path):
    spec = load_spec(
        bigquery_spec(tmp_path, "backend: bigquery\n  project: my-project\n  maximum_bytes_billed: 10000000000")
    )
    assert (spec.warehouse.project, spec.warehouse.price_per_tib_usd) == ("my-project", 6.25)
    bad = bigquery_spec(tmp_path, "backend: bigquery\n  project: My_Project\n  credentials: key.json")
    result = invoke(*validate_args(bad))
    assert result.exit_code == 2
    assert "warehouse.project: 'My_Project' is not a valid project id" in result.output
    assert (
        "warehouse.credentials: unknown field; expected one of: backend, project, location, credentials_file"
        in result.output
    )
    result = invoke(*validate_args(bigquery_spec(tmp_path, "backend: snowflake")))
    assert "warehouse.backend: unknown backend 'snowflake'; expected one of: duckdb, bigquery" in result.output


def test_a_missing_key_file_is_named_at_its_spec_field(tmp_path, monkeypatch):
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    spec = bigquery_spec(tmp_path, "backend: bigquery\n  project: my-project\n  credentials_file: keys/sa.json")
    result = invoke(*validate_args(spec))
    assert result.exit_code == 2
    assert f"warehouse.credentials_file: {tmp_path / 'keys' / 'sa.json'} does not exist" in result.output


def test_without_credentials_the_message_says_how_to_log_in(tmp_path, monkeypatch):
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))  # no gcloud login
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # nor a metadata server to ask
    result = invoke(*validate_args(bigquery_spec(tmp_path)))
    assert result.exit_code == 2
    assert "no Google credentials were found" in result.output
    assert "gcloud auth application-default login" in result.output and "warehouse.credentials_file" in result.output
    assert "GOOGLE_APPLICATION_CREDENTIALS" in result.output


@pytest.mark.parametrize("key", ["missing", "not a key"])
def test_a_credentials_variable_naming_a_bad_file_is_named(tmp_path, monkeypatch, key):
    """The message said 'no Google credentials were found' and to log in, hiding that
    GOOGLE_APPLICATION_CREDENTIALS names a file that does not exist or holds no key."""
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    named = tmp_path / "sa.json"
    if key == "not a key":
        named.write_text("{}")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(named))
    result = invoke(*validate_args(bigquery_spec(tmp_path)))
    assert result.exit_code == 2
    assert result.output.startswith(
        f"error: GOOGLE_APPLICATION_CREDENTIALS names {named}, which gives no credentials: "
    )
    assert "or unset it to use your gcloud login" in result.output and "Traceback" not in result.output


# --- real BigQuery, opt-in ----------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get(LIVE), reason=f"live BigQuery runs only with {LIVE}=<project id>")
def test_live_bigquery_validates_the_demo_in_three_billed_jobs(demo_dir, monkeypatch):
    from google.cloud import bigquery

    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    project, prefix = os.environ[LIVE], f"bk_live_{uuid.uuid4().hex[:8]}_"
    try:
        result = load_slice(demo_dir, project, prefix)
        assert result.exit_code == 0, result.output
        live = validate(load_spec(demo_dir / "nba_props.bigquery.yaml"), *SLICE, now=DEMO_NOW)
        duck = validate(load_spec(demo_dir / "nba_props.yaml"), *SLICE, now=DEMO_NOW)
        assert len({q.extra["job_id"] for q in live.queries}) == 3
        assert all(q.extra["bytes_billed"] >= 10 * 2**20 for q in live.queries)
        # The estimate is an upper bound of what BigQuery billed, or says it is unknown.
        assert all(
            q.extra["estimated_bytes_billed"] is None or q.extra["estimated_bytes_billed"] >= q.extra["bytes_billed"]
            for q in live.queries
        )
        assert live.cells == duck.cells
    finally:
        client = bigquery.Client(project=project)
        for dataset in client.list_datasets():
            if dataset.dataset_id.startswith(prefix):
                client.delete_dataset(dataset.reference, delete_contents=True)


@pytest.mark.parametrize("backend", ["bigquery"])
def test_preflight_checks_table_hazards_on_bigquery(mini: MiniWarehouse, on_emulator):
    from backfill_kit.preflight import run_preflight

    mini.games(D1).rows("raw.boxscore", D1, 2)
    spec = mini.close()

    def hazards() -> tuple[str, str]:
        checks = run_preflight(load_spec(spec), date(2024, 1, 1), date(2024, 1, 31), quick=True)
        (check,) = [c for c in checks if c.name == "table hazards"]
        return check.outcome, check.why

    assert hazards() == ("pass", "no partition expiration, filter or cost hazard in the range")
    client = on_emulator.client(mini.project)
    table = client.get_table(f"{mini.project}.raw.boxscore")
    table.time_partitioning.expiration_ms = 30 * 86_400_000
    client.update_table(table, ["time_partitioning"])
    outcome, why = hazards()
    assert outcome == "warn" and "raw.boxscore: partitions expire 30 days after their date" in why
