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
from datetime import date, datetime
from pathlib import Path

import pytest
from bq_emulator import Emulator
from click.testing import CliRunner, Result
from conftest import MINI_PARTITIONS, NOW, MiniWarehouse
from test_monitor import history  # noqa: F401  (the monitor's fixture, reused on BigQuery)

from backfill_kit import load_spec, validate
from backfill_kit.cli import cli
from backfill_kit.demo import init_demo
from backfill_kit.errors import MissingDependencyError, WarehouseError
from backfill_kit.warehouse import open_warehouse

D1 = date(2024, 1, 10)
SLICE = (date(2024, 10, 22), date(2024, 11, 30))  # a season's first weeks: bootstrap, lost, no-data
DEMO_NOW = datetime(2025, 11, 30, 12, 0)
LIVE = "BACKFILL_KIT_BIGQUERY_PROJECT"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def validate_args(spec: Path, *extra: str, start: date = date(2024, 1, 1), end: date = date(2024, 1, 31)) -> list[str]:
    return ["validate", "--spec", str(spec), "--start", str(start), "--end", str(end),
            "--now", "2024-04-10T00:00:00", *extra]


# --- the demo, loaded into BigQuery ----------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    init_demo(directory)
    return directory


@pytest.fixture(scope="module")
def loaded(demo_dir: Path, bigquery_emulator: Emulator) -> Iterator[tuple[Result, str]]:
    """`demo load --to bigquery` of a slice of the demo, through the CLI, into a project of its own."""
    project = bigquery_emulator.new_project()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.url)
        result = invoke("demo", "load", str(demo_dir), "--to", "bigquery", "--project", project,
                        "--dataset-prefix", "demo_", "--start", str(SLICE[0]), "--end", str(SLICE[1]))
        yield result, project


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
    assert bq.model_dump(exclude={"warehouse", "source"}) == duck.model_dump(exclude={"warehouse", "source"})
    client = on_emulator.client(project)
    schedule = client.get_table(f"{project}.demo_nba_raw.nbac_schedule").to_api_repr()
    assert schedule["timePartitioning"]["field"] == "game_date"
    rows = list(client.query(f"SELECT MIN(game_date), MAX(game_date) FROM `{project}.demo_nba_raw.nbac_schedule` "
                             "WHERE game_date >= '2000-01-01'").result())
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


def test_validate_shows_the_cost_and_the_tables_that_require_a_partition_filter(loaded, demo_dir, on_emulator):
    spec = demo_dir / "nba_props.bigquery.yaml"
    out = invoke(*validate_args(spec, start=SLICE[0], end=SLICE[1])).output
    assert "3 warehouse queries" in out
    # The emulator's dry runs say 0 bytes; BigQuery bills at least 10 MB a table: the calendar
    # and the run history, and one partition view per dataset (4).
    assert "cost: 0 bytes processed, about 60.0 MiB billed (~$0.0004)" in out
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
    "missing table": (("table: raw.props,", "table: raw.odds_props,"),
                      "phases[0].tables[1].table: table raw.odds_props does not exist in the warehouse"),
    "missing dataset": (("table: raw.props,", "table: odds.props,"),
                        "phases[0].tables[1].table: table odds.props does not exist in the warehouse (BigQuery project"),
    "malformed calendar filter": (('filter: "game_status = 3"', 'filter: "game_status = = 3"'),
                                  ": calendar.filter: not a valid SQL condition"),
    "unknown column in the calendar filter": (('filter: "game_status = 3"', 'filter: "game_state = 3"'),
                                              "calendar.filter: table raw.schedule has no column 'game_state'"),
    "query over the bytes ceiling": (("backend: bigquery\n", "backend: bigquery\n  maximum_bytes_billed: 1000000\n"),
                                     "the calendar query would bill about 10.0 MiB (~$0.0001), over "
                                     "warehouse.maximum_bytes_billed (1,000,000 bytes)"),
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


@pytest.mark.parametrize("backend", ["bigquery"])
def test_rate_limits_are_retried_with_backoff_then_reported_as_retryable(bq_spec: Path, monkeypatch):
    from google.api_core.exceptions import TooManyRequests

    import backfill_kit.warehouse.bigquery as backend_module

    pauses: list[float] = []
    monkeypatch.setattr(backend_module, "_sleep", pauses.append)
    spec = load_spec(bq_spec)
    wh = open_warehouse(spec)
    real_query, refusals = wh.client.query, iter(range(2))

    def busy_twice(*args, **kwargs):
        if next(refusals, None) is not None:
            raise TooManyRequests("Exceeded rate limits: too many concurrent queries for this project")
        return real_query(*args, **kwargs)

    monkeypatch.setattr(wh.client, "query", busy_twice)
    result = validate(spec, D1, D1, now=NOW, tables=["boxscore"], warehouse=wh)
    assert result.cells[0].status == "complete" and pauses == [2.0, 8.0]

    monkeypatch.setattr(wh.client, "query", lambda *a, **k: (_ for _ in ()).throw(TooManyRequests("quota exceeded")))
    with pytest.raises(WarehouseError, match="quota or rate limit") as info:
        validate(spec, D1, D1, now=NOW, warehouse=wh)
    assert info.value.retryable
    wh.close()


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
        "import sys\nfrom datetime import date\nimport backfill_kit.validation\n"
        "assert not [m for m in sys.modules if m.startswith('google')]\n"
        "from backfill_kit import load_spec, validate\n"
        f"v = validate(load_spec({str(spec)!r}), date(2024, 1, 1), date(2024, 1, 31))\n"
        "print(len(v.cells), sorted(m for m in sys.modules if m.startswith(('google', 'backfill_kit.warehouse.bigquery'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["5", "[]"]


def test_the_bigquery_section_is_checked_like_the_rest_of_the_spec(tmp_path):
    spec = load_spec(bigquery_spec(tmp_path, "backend: bigquery\n  project: my-project\n  maximum_bytes_billed: 10000000000"))
    assert (spec.warehouse.project, spec.warehouse.price_per_tib_usd) == ("my-project", 6.25)
    bad = bigquery_spec(tmp_path, "backend: bigquery\n  project: My_Project\n  credentials: key.json")
    result = invoke(*validate_args(bad))
    assert result.exit_code == 2
    assert "warehouse.project: 'My_Project' is not a valid project id" in result.output
    assert "warehouse.credentials: unknown field; expected one of: backend, project, location, credentials_file" in result.output
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
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    result = invoke(*validate_args(bigquery_spec(tmp_path)))
    assert result.exit_code == 2
    assert "no Google credentials were found" in result.output
    assert "gcloud auth application-default login" in result.output and "warehouse.credentials_file" in result.output


# --- real BigQuery, opt-in ----------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get(LIVE), reason=f"live BigQuery runs only with {LIVE}=<project id>")
def test_live_bigquery_validates_the_demo_in_three_billed_jobs(demo_dir, monkeypatch):
    from google.cloud import bigquery

    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    project, prefix = os.environ[LIVE], f"bk_live_{uuid.uuid4().hex[:8]}_"
    try:
        result = invoke("demo", "load", str(demo_dir), "--to", "bigquery", "--project", project,
                        "--dataset-prefix", prefix, "--start", str(SLICE[0]), "--end", str(SLICE[1]))
        assert result.exit_code == 0, result.output
        live = validate(load_spec(demo_dir / "nba_props.bigquery.yaml"), *SLICE, now=DEMO_NOW)
        duck = validate(load_spec(demo_dir / "nba_props.yaml"), *SLICE, now=DEMO_NOW)
        assert len({q.extra["job_id"] for q in live.queries}) == 3
        assert all(q.extra["bytes_billed"] >= 10 * 2**20 for q in live.queries)
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
