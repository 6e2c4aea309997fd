"""`backfill-kit spec draft` and `spec diff`, as a new user meets them: on the demo warehouse
(against the shipped spec), on a second pipeline with other naming conventions, on the demo in
the BigQuery emulator, and on a production-shaped run history that records output tables and
upstream checks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner, Result
from conftest import demo_for_module

from backfill_kit.cli.commands import cli
from backfill_kit.draft import draft_spec
from backfill_kit.spec.load import load_spec
from backfill_kit.spec.model import PipelineSpec
from backfill_kit.validation.validator import Validation, validate
from backfill_kit.warehouse.catalog import open_duckdb_catalog

NOW = datetime(2025, 11, 30, 12, 0)
DEMO_RANGE = (date(2021, 10, 19), date(2025, 6, 22))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def agreement(truth: Validation, drafted: Validation) -> tuple[float, int]:
    """Share of the true spec's cells to which the draft gives the same status, and how many
    cells the draft adds (dates its unfiltered calendar expects on top)."""
    statuses = {(c.table, c.date): c.status for c in drafted.cells}
    same = sum(1 for c in truth.cells if statuses.get((c.table, c.date)) == c.status)
    return same / len(truth.cells), len(drafted.cells) - len({(c.table, c.date) for c in truth.cells} & set(statuses))


def tables_of(spec: PipelineSpec) -> dict[str, tuple[str, str, str]]:
    """table -> (date column, processor, phase name)."""
    return {t.table: (spec.date_column_of(t), t.processor, spec.phase_of(t.id).name) for t in spec.tables}


# --- the demo ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(pristine_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo for this module, whose drafts are written next to it."""
    return demo_for_module(pristine_demo, tmp_path_factory)


@pytest.fixture(scope="module")
def demo_draft(demo: Path) -> Path:
    out = demo / "drafts" / "nba_props.yaml"
    result = invoke("spec", "draft", "--duckdb", str(demo / "nba_props.duckdb"), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "20 tables" in result.output
    return out


def test_the_demo_draft_names_every_table_its_date_column_processor_and_phase(demo: Path, demo_draft: Path):
    shipped, drafted = load_spec(demo / "nba_props.yaml"), load_spec(demo_draft)
    truth, found = tables_of(shipped), tables_of(drafted)
    assert set(found) == set(truth)
    assert {t: v[:2] for t, v in found.items()} == {t: v[:2] for t, v in truth.items()}
    # Phases wherever the run history records them (ml_feature_store_v2 has no run: its own phase).
    recorded = {t: v[2] for t, v in truth.items() if t != "nba_predictions.ml_feature_store_v2"}
    assert {t: found[t][2] for t in recorded} == recorded
    assert [p.name for p in drafted.phases][:3] == ["raw", "analytics", "precompute"]
    # The run history's mapping, range columns, no-data reasons and longest range, as shipped; the
    # statuses those present (the shipped spec also maps 'partial', which no run has).
    assert drafted.run_history == replace(shipped.run_history, statuses=drafted.run_history.statuses)
    for kind, values in asdict(drafted.run_history.statuses).items():
        assert set(values) <= set(getattr(shipped.run_history.statuses, kind))
    assert drafted.calendar.table == shipped.calendar.table and drafted.calendar.game_id_column == "game_id"
    assert [s.name for s in drafted.calendar.seasons] == [s.name for s in shipped.calendar.seasons]
    assert drafted.warehouse.path == "../nba_props.duckdb"  # relative to the draft, as specs are


def test_validating_with_the_demo_draft_agrees_with_the_shipped_spec_on_95_percent_of_cells(
    demo: Path, demo_draft: Path
):
    truth = validate(load_spec(demo / "nba_props.yaml"), *DEMO_RANGE, now=NOW)
    drafted = validate(load_spec(demo_draft), *DEMO_RANGE, now=NOW)
    share, extra = agreement(truth, drafted)
    print(
        f"demo: the draft gives {share:.2%} of {len(truth.cells):,} cells the shipped spec's status; {extra:,} extra cells"
    )
    assert share >= 0.95


def test_every_guess_carries_its_evidence_and_the_gaps_are_marked(demo_draft: Path):
    text = demo_draft.read_text()
    assert re.search(r"processor: NbacGamebookProcessor +# records = the table's rows on \d+ of \d+ dates run", text)
    assert re.search(r"date_column: report_date +# most distinct dates", text)
    assert re.search(r"min_rows: \d+ +# half the 1st percentile of rows per date \(p1 = \d+", text)
    assert re.search(r"processor: TeamDefenseZoneAnalysisProcessor +# GUESS by the naming convention", text)
    assert "# TODO filter:" in text and "game_status" in text
    assert re.search(r"bootstrap_days: 0 +# TODO", text)
    assert re.search(r"failure_category: \[no_data_available\] +# no_data_available in \d+ rows", text)
    assert "nba_reference.downstream_triggers: in the run history's dataset" in text


def test_the_draft_refuses_to_overwrite_and_plan_and_run_refuse_its_placeholder_job(demo: Path, demo_draft: Path):
    before = demo_draft.read_text()
    again = invoke("spec", "draft", "--duckdb", str(demo / "nba_props.duckdb"), "--out", str(demo_draft))
    assert again.exit_code == 2 and "already exists; pass --force" in again.output
    assert demo_draft.read_text() == before
    plan = invoke("plan", "--spec", str(demo_draft), "--start", "2024-01-01", "--end", "2024-01-31")
    assert plan.exit_code == 2
    assert "still the draft's placeholder" in plan.output and "job_defaults.argv" in plan.output
    checked = invoke(
        "validate",
        "--spec",
        str(demo_draft),
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
        "--now",
        "2025-11-30T12:00:00",
    )
    assert checked.exit_code in (0, 1) and "nbac_gamebook_player_stats" in checked.output


def test_a_plan_file_made_with_the_placeholder_is_refused_by_run(demo: Path, demo_draft: Path, tmp_path: Path):
    from backfill_kit.plan import build_plan

    plan = build_plan(validate(load_spec(demo_draft), date(2021, 10, 19), date(2021, 10, 25), now=NOW))
    path = tmp_path / "plan.json"
    plan.write(path)
    result = invoke("run", "--plan", str(path))
    assert result.exit_code == 2 and "still the draft's placeholder" in result.output
    assert not (tmp_path / "plan.journal.jsonl").exists()


def test_the_draft_writes_nothing_to_the_warehouse(demo: Path, demo_draft: Path):
    con = duckdb.connect(str(demo / "nba_props.duckdb"), read_only=True)
    try:
        tables = con.execute("SELECT count(*) FROM information_schema.tables").fetchall()[0][0]
    finally:
        con.close()
    catalog = open_duckdb_catalog(demo / "nba_props.duckdb")  # read-only: a write would raise
    try:
        draft_spec(catalog, warehouse={"backend": "duckdb", "path": "nba_props.duckdb"})
        assert all(q.sql.lstrip().upper().startswith(("SELECT", "WITH")) for q in catalog._wh.queries)
    finally:
        catalog.close()
    con = duckdb.connect(str(demo / "nba_props.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM information_schema.tables").fetchall()[0][0] == tables
    finally:
        con.close()


# --- spec diff ---------------------------------------------------------------------------


def test_spec_diff_names_a_misspelt_processor_a_missing_table_and_a_wrong_date_column(demo: Path, tmp_path: Path):
    text = (demo / "nba_props.yaml").read_text()
    text = text.replace("processor: NbacGamebookProcessor", "processor: NbacGamebookProcesor")
    text = text.replace("table: nba_raw.odds_api_game_lines", "table: nba_raw.odds_api_game_line")
    text = text.replace("date_column: cache_date", "date_column: game_date")
    text = text.replace("skipped: [skipped]", "skipped: [skip]")  # 'skipped' is then mapped nowhere
    injury = re.search(r"      - id: nbac_injury_report\n(        .*\n)+", text)
    assert injury is not None
    text = text.replace(injury.group(0), "")
    spec = tmp_path / "nba_props.yaml"
    spec.write_text(text.replace("path: nba_props.duckdb", f"path: {demo / 'nba_props.duckdb'}"))
    result = invoke("spec", "diff", "--spec", str(spec))
    assert result.exit_code == 1, result.output
    out = result.output
    assert re.search(
        r"phases\[0\]\.tables\[0\]\.processor: 'NbacGamebookProcesor' never appears in the run history; "
        r"the warehouse suggests NbacGamebookProcessor \(records = the table's rows",
        out,
    )
    assert "phases[0].tables[7].table: nba_raw.odds_api_game_line does not exist in the warehouse" in out
    assert (
        "phases[2].tables[3].date_column: nba_precompute.player_daily_cache has no column 'game_date'; its date columns: cache_date"
        in out
    )
    assert "nba_raw.nbac_injury_report is not in the spec" in out and "NbacInjuryReportProcessor" in out
    assert "nba_raw.odds_api_game_lines is not in the spec" in out  # the real name of the missing one
    assert re.search(
        r"run_history.statuses: status values in the run history that no list maps: skipped \([\d,]+ rows\)", out
    )
    assert "6 difference(s)" in out


def test_spec_diff_of_the_shipped_spec_finds_only_notes(demo: Path):
    result = invoke("spec", "diff", "--spec", str(demo / "nba_props.yaml"))
    assert result.exit_code == 0, result.output
    assert "agrees with its warehouse" in result.output
    assert "note: phases[2].tables[0].processor: 'TeamDefenseZoneAnalysisProcessor' has no run" in result.output


def test_spec_diff_reads_the_run_history_the_spec_maps_whatever_its_column_names(demo_copy: Path):
    """A status column no draft would guess (run_state): validate reads it through the spec's
    mapping, and so does spec diff, rather than refusing to find a run history at all."""
    import duckdb

    with duckdb.connect(str(demo_copy.with_suffix(".duckdb"))) as con:
        con.execute("ALTER TABLE nba_reference.processor_run_history RENAME COLUMN status TO run_state")
    spec = demo_copy
    text = spec.read_text()
    assert "\n    status: status\n" in text
    spec.write_text(text.replace("\n    status: status\n", "\n    status: run_state\n", 1))
    result = invoke("spec", "diff", "--spec", str(spec))
    assert result.exit_code == 0, result.output
    assert "agrees with its warehouse" in result.output


def test_spec_diff_says_when_the_date_column_is_not_the_partition_field():
    from backfill_kit.draft import _diff_date_column
    from backfill_kit.warehouse.catalog import ColumnInfo, TableInfo

    info = TableInfo("ds.t", (ColumnInfo("game_date", "date"), ColumnInfo("loaded_at", "timestamp")), "game_date")
    spec = type("S", (), {"date_column_of": staticmethod(lambda t: "loaded_at")})()
    table = type("T", (), {"table": "ds.t"})()
    [difference] = _diff_date_column(spec, table, "phases[0].tables[0]", info, None)
    assert (
        str(difference) == "phases[0].tables[0].date_column: 'loaded_at' is not the partition field of ds.t (game_date)"
    )


def test_bad_input_gets_one_message_and_exit_2(tmp_path: Path):
    missing = invoke("spec", "draft", "--duckdb", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path / "x.yaml"))
    assert missing.exit_code == 2 and "no such DuckDB file" in missing.output
    neither = invoke("spec", "draft", "--out", str(tmp_path / "x.yaml"))
    assert neither.exit_code == 2 and "--duckdb FILE or --bigquery PROJECT" in neither.output
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    none = invoke("spec", "draft", "--duckdb", str(empty), "--out", str(tmp_path / "x.yaml"))
    assert none.exit_code == 2 and "no run-history table found" in none.output
    assert not (tmp_path / "x.yaml").exists()


# --- a second pipeline, other conventions --------------------------------------------------

SHOP_SEASONS = ((date(2023, 12, 1), date(2024, 3, 29)), (date(2024, 12, 2), date(2025, 3, 31)))
SHOP_SPEC = """
name: ski_shop
warehouse: {{backend: duckdb, path: {path}}}
calendar:
  table: ref.store_calendar
  date_column: open_date
  seasons:
    - {{name: "2023-24", start: 2023-12-01, end: 2024-03-29}}
    - {{name: "2024-25", start: 2024-12-02, end: 2025-03-31}}
run_history:
  table: ops.job_runs
  columns: {{processor: job_name, date: run_date, status: state, started_at: start_time,
            finished_at: end_time, records: rows_written, error: error_message}}
  statuses: {{running: [RUNNING], success: [SUCCEEDED], failed: [FAILED], skipped: [SKIPPED]}}
job_defaults:
  argv: ["echo", "{{start}}", "{{end}}"]
phases:
  - name: raw
    tables:
      - {{id: orders, table: raw.orders, date_column: created_at, processor: orders_ingest, min_rows: 20}}
      - {{id: refunds, table: raw.refunds, date_column: refund_date, processor: refunds_ingest, min_rows: 2}}
      - {{id: store_calendar, table: ref.store_calendar, date_column: open_date, processor: calendar_sync}}
  - name: marts
    tables:
      - {{id: daily_revenue, table: marts.daily_revenue, date_column: revenue_date, processor: revenue_rollup,
         depends_on: [orders, refunds]}}
"""


def _weekdays(first: date, last: date) -> list[date]:
    return [first + timedelta(n) for n in range((last - first).days + 1) if (first + timedelta(n)).weekday() < 5]


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Rows into a table in one statement, a list parameter per column (executemany takes a
    statement per row)."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    con.execute(f"INSERT INTO {table} SELECT {', '.join(f'unnest(${i + 1})' for i in range(len(columns)))}", columns)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seasonal shop: snake-case job names that are not table names, a TIMESTAMP date
    column, upper-case states, no output, phase or run-id columns in the run history."""
    directory = tmp_path_factory.mktemp("shop")
    con = duckdb.connect(str(directory / "shop.duckdb"))
    for schema in ("raw", "ref", "marts", "ops"):
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute("CREATE TABLE ref.store_calendar (open_date DATE, store_code VARCHAR, opening_type VARCHAR)")
    con.execute("CREATE TABLE raw.orders (order_key VARCHAR, created_at TIMESTAMP, amount DOUBLE)")
    con.execute("CREATE TABLE raw.refunds (refund_key VARCHAR, refund_date DATE, settled_at TIMESTAMP, amount DOUBLE)")
    con.execute("CREATE TABLE marts.daily_revenue (revenue_date DATE, store_code VARCHAR, revenue DOUBLE)")
    con.execute(
        "CREATE TABLE ops.job_runs (job_name VARCHAR, run_date DATE, state VARCHAR, start_time TIMESTAMP, "
        "end_time TIMESTAMP, rows_written BIGINT, error_message VARCHAR)"
    )
    days = [d for first, last in SHOP_SEASONS for d in _weekdays(first, last)]
    runs = []
    # Each table's rows per day, written in one statement per table below (a statement per day
    # took seconds).
    calendar, orders_per_day, refunds_per_day, revenue = [], [], [], []
    for i, d in enumerate(days):
        at = datetime.combine(d + timedelta(1), datetime.min.time()) + timedelta(hours=6)
        calendar.append((d,))
        runs.append(("calendar_sync", d, "SUCCEEDED", at, 3, None))
        orders = 40 + i % 17
        if i % 50 == 7:  # a failed load: no rows
            runs.append(("orders_ingest", d, "FAILED", at, 0, "upstream API returned 503"))
            orders = 0
        elif i % 61 != 11:  # else: never ran
            orders_per_day.append((datetime.combine(d, datetime.min.time()) + timedelta(hours=9), orders))
            runs.append(("orders_ingest", d, "SUCCEEDED", at, orders, None))
        else:
            orders = 0
        refunds = 3 + i % 4
        refunds_per_day.append((d, at if i % 3 else None, refunds))
        runs.append(("refunds_ingest", d, "SUCCEEDED", at, refunds, None))
        if orders and i % 9:
            revenue.append((d,))
            runs.append(("revenue_rollup", d, "SUCCEEDED", at + timedelta(hours=1), 3, None))
        elif i % 9 == 0:
            runs.append(("revenue_rollup", d, "ABANDONED", at + timedelta(hours=1), 0, None))
    con.execute("CREATE TEMP TABLE calendar_days (d DATE)")
    insert_rows(con, "calendar_days", calendar)
    con.execute("INSERT INTO ref.store_calendar SELECT d, 'S' || s, 'regular' FROM calendar_days, range(3) t(s)")
    con.execute("CREATE TEMP TABLE order_days (opened TIMESTAMP, n BIGINT)")
    insert_rows(con, "order_days", orders_per_day)
    con.execute(
        "INSERT INTO raw.orders SELECT 'o' || n, opened + to_minutes(n), 10.0 "
        "FROM (SELECT opened, unnest(range(n)) AS n FROM order_days)"
    )
    con.execute("CREATE TEMP TABLE refund_days (d DATE, settled TIMESTAMP, n BIGINT)")
    insert_rows(con, "refund_days", refunds_per_day)
    con.execute(
        "INSERT INTO raw.refunds SELECT 'r' || n, d, CASE WHEN n = 0 THEN settled END, 5.0 "
        "FROM (SELECT d, settled, unnest(range(n)) AS n FROM refund_days)"
    )
    con.execute("CREATE TEMP TABLE revenue_days (d DATE)")
    insert_rows(con, "revenue_days", revenue)
    con.execute("INSERT INTO marts.daily_revenue SELECT d, 'S' || s, 100.0 FROM revenue_days, range(3) t(s)")
    con.execute(
        "CREATE TEMP TABLE runs (job VARCHAR, d DATE, state VARCHAR, started TIMESTAMP, n BIGINT, error VARCHAR)"
    )
    insert_rows(con, "runs", runs)
    con.execute("INSERT INTO ops.job_runs SELECT job, d, 'RUNNING', started, NULL, NULL, NULL FROM runs")
    con.execute(
        "INSERT INTO ops.job_runs SELECT job, d, state, started, started + INTERVAL 3 MINUTE, n, error FROM runs"
    )
    con.close()
    (directory / "truth.yaml").write_text(SHOP_SPEC.format(path="shop.duckdb"))
    return directory


def test_a_second_pipeline_with_other_conventions_is_drafted_right_and_its_gaps_marked(shop: Path):
    out = shop / "draft.yaml"
    result = invoke("spec", "draft", "--duckdb", str(shop / "shop.duckdb"), "--out", str(out), "--name", "ski_shop")
    assert result.exit_code == 0, result.output
    truth, drafted = load_spec(shop / "truth.yaml"), load_spec(out)
    assert {t: v[:2] for t, v in tables_of(drafted).items()} == {t: v[:2] for t, v in tables_of(truth).items()}
    assert drafted.run_history.columns == truth.run_history.columns
    assert drafted.run_history.statuses == truth.run_history.statuses
    assert [(s.name, s.start, s.end) for s in drafted.calendar.seasons] == [
        (s.name, s.start, s.end) for s in truth.calendar.seasons
    ]
    text = out.read_text()
    assert re.search(r"date_column: created_at +# the only TIMESTAMP column", text)
    assert re.search(r"date_column: refund_date +# most distinct dates \(\d+\); also settled_at", text)
    assert re.search(r"processor: revenue_rollup +# records = the table's rows", text)
    # What the warehouse cannot tell is marked: phases by dataset, no dependencies, an unmapped state.
    assert re.search(r"- name: marts +# GUESS: dataset marts, its runs start at 07:\d\d UTC on average", text)
    assert [p.name for p in drafted.phases] == ["raw", "ref", "marts"]  # by when their runs start
    assert text.count("# depends_on: TODO: no upstream checks recorded") == 4
    assert "# TODO statuses never mapped (a run with one reads as 'other'): ABANDONED" in text
    share, _ = agreement(
        validate(truth, *SHOP_SEASONS[0][:1], SHOP_SEASONS[1][1], now=NOW),
        validate(drafted, SHOP_SEASONS[0][0], SHOP_SEASONS[1][1], now=NOW),
    )
    print(f"shop: the draft gives {share:.2%} of the cells the true spec's status")
    assert share >= 0.95


# --- production's run history: output tables, phases and upstream checks -------------------


@pytest.fixture(scope="module")
def production_shaped(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo with the run-history columns production has and the demo lacks:
    output_dataset/output_table and upstream_dependencies (JSON [{table, status, age_hours}])."""
    from backfill_kit.demo.tables import TABLES

    directory = tmp_path_factory.mktemp("production")
    path = directory / "nba_props.duckdb"
    path.write_bytes((demo / "nba_props.duckdb").read_bytes())
    shipped = load_spec(demo / "nba_props.yaml")
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE nba_reference.processor_run_history ADD COLUMN output_dataset VARCHAR")
    con.execute("ALTER TABLE nba_reference.processor_run_history ADD COLUMN output_table VARCHAR")
    con.execute("ALTER TABLE nba_reference.processor_run_history ADD COLUMN upstream_dependencies JSON")
    for t in TABLES.values():
        deps = shipped.table(t.id).depends_on
        checks = (
            "["
            + ", ".join(f'{{"table": "{shipped.table(d).table}", "status": "ok", "age_hours": 7}}' for d in deps)
            + "]"
        )
        con.execute(
            "UPDATE nba_reference.processor_run_history SET output_dataset = ?, output_table = ?, "
            "upstream_dependencies = ?::JSON WHERE processor_name = ?",
            [t.schema, t.id, checks, t.processor],
        )
    con.close()
    return path


def test_production_columns_give_processors_by_output_table_and_dependencies_by_upstream_checks(
    demo: Path, production_shaped: Path, tmp_path: Path
):
    out = tmp_path / "draft.yaml"
    assert invoke("spec", "draft", "--duckdb", str(production_shaped), "--out", str(out)).exit_code == 0
    shipped, drafted = load_spec(demo / "nba_props.yaml"), load_spec(out)
    text = out.read_text()
    assert re.search(r"processor: NbacGamebookProcessor +# matched by output_table in [\d,]+ runs", text)
    recorded = [t for t in shipped.tables if t.processor in text and "GUESS" not in _comment(text, t.processor)]
    assert recorded, "some tables have runs"
    for t in recorded:  # dependencies wherever the run history records the upstream checks
        assert set(drafted.table(t.id).depends_on) == set(t.depends_on), t.id
    assert re.search(
        r"depends_on: \[nbac_team_boxscore\] +# recorded upstream checks: nbac_team_boxscore \(\d+\)", text
    )


def _comment(text: str, processor: str) -> str:
    line = next((x for x in text.splitlines() if f"processor: {processor}" in x), "")
    return line.partition("#")[2]


# --- the BigQuery emulator ------------------------------------------------------------------

SLICE = (date(2024, 10, 22), date(2024, 11, 12))
WINDOW = ("--start", str(SLICE[0]), "--end", str(SLICE[1]))


@pytest.fixture(scope="module", params=["demo", "production_shaped"])
def on_bigquery(request: pytest.FixtureRequest, bigquery_emulator) -> Iterator[tuple[Path, str]]:
    """The demo (as it is, and with production's run-history columns) loaded into the emulator:
    the DuckDB file and the BigQuery project."""
    from backfill_kit.demo.load import load_demo

    duck = request.getfixturevalue(request.param)
    directory = duck if duck.is_dir() else duck.parent
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.url)
        project = bigquery_emulator.new_project()
        load_demo(directory, project, dataset_prefix="demo_", start=SLICE[0], end=SLICE[1])
        yield directory / "nba_props.duckdb", project


def draft_over_the_slice(out: Path, *source: str) -> Result:
    """`spec draft` of pipeline nba_props from `source` (--duckdb FILE or --bigquery ...) over SLICE."""
    return invoke("spec", "draft", *source, *WINDOW, "--out", str(out), "--name", "nba_props")


def test_drafting_from_bigquery_gives_the_same_spec_as_from_duckdb(
    on_bigquery: tuple[Path, str], bigquery_emulator, tmp_path: Path
):
    duck_file, project = on_bigquery
    jobs_before = len(bigquery_emulator.query_jobs(project))
    on_bq = draft_over_the_slice(tmp_path / "bq.yaml", "--bigquery", project, "--dataset-prefix", "demo_")
    assert on_bq.exit_code == 0, on_bq.output
    on_duck = draft_over_the_slice(tmp_path / "duck.yaml", "--duckdb", str(duck_file))
    assert on_duck.exit_code == 0, on_duck.output
    bq, duck = load_spec(tmp_path / "bq.yaml"), load_spec(tmp_path / "duck.yaml")
    assert replace(bq, warehouse=duck.warehouse, source=duck.source) == duck
    assert bq.warehouse.backend == "bigquery" and bq.warehouse.dataset_prefix == "demo_"
    text = (tmp_path / "bq.yaml").read_text()
    assert re.search(r"date_column: report_date +# the table's day-partitioning field", text)
    if duck_file.parent.name.startswith("production"):  # upstream checks read from JSON on BigQuery too
        assert bq.table("player_game_summary").depends_on == ("nbac_gamebook_player_stats",)
    # Metadata and the run history only: every query job reads the run history or partition metadata.
    jobs = bigquery_emulator.query_jobs(project)[jobs_before:]
    assert jobs and all("processor_run_history" in j.query or "INFORMATION_SCHEMA.PARTITIONS" in j.query for j in jobs)


def test_the_bytes_ceiling_refuses_a_costly_draft_before_any_query_runs(
    on_bigquery: tuple[Path, str], bigquery_emulator, tmp_path: Path
):
    _, project = on_bigquery
    jobs_before = len(bigquery_emulator.query_jobs(project))
    result = draft_over_the_slice(
        tmp_path / "bq.yaml", "--bigquery", project, "--dataset-prefix", "demo_", "--maximum-bytes-billed", "1000"
    )
    assert result.exit_code == 2
    assert "would bill up to" in result.output and "--maximum-bytes-billed" in result.output
    assert len(bigquery_emulator.query_jobs(project)) == jobs_before
    assert not (tmp_path / "bq.yaml").exists()


def same_rows_every_day(
    path: Path, date_column: str, runs: str, writers: dict[str, tuple[str | None, int]]
) -> duckdb.DuckDBPyConnection:
    """A warehouse of schema s: each table of `writers` has 5 + n rows on day n of ten days from
    2024-01-01, and its writer (None: none) a success run of as many records in s.runs (with the
    columns `runs`) on each of its first so many days."""
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA s")
    con.execute(f"CREATE TABLE s.runs ({runs})")
    for table, (writer, days_run) in writers.items():
        con.execute(f"CREATE TABLE s.{table} ({date_column} DATE, v INTEGER)")
        for n in range(10):
            d = date(2024, 1, 1) + timedelta(n)
            con.execute(f"INSERT INTO s.{table} SELECT ?, 1 FROM range(?)", [d, 5 + n])
            if writer and n < days_run:
                con.execute(
                    "INSERT INTO s.runs VALUES (?, ?, 'success', ?, ?, ?)",
                    [writer, d, datetime(2024, 2, 1), datetime(2024, 2, 1, 0, 5), 5 + n],
                )
    return con


def test_tables_with_equal_rows_per_date_go_to_the_processors_named_after_them(tmp_path: Path):
    """After a backfill, a summary table often has exactly the rows of its source on every date:
    records alone cannot tell which processor writes which; the names can."""
    tables = {
        "raw_box_scores": "RawBoxScoresProcessor",
        "player_game_summary": "PlayerGameSummaryProcessor",
        "team_game_summary": "TeamGameSummaryProcessor",
    }
    runs = (
        "processor_name VARCHAR, data_date DATE, status VARCHAR, started_at TIMESTAMP, processed_at TIMESTAMP, "
        "records_processed BIGINT"
    )
    # Every table: the same rows on every date; the summaries ran on fewer dates (range runs, say).
    writers = {table: (processor, 10 if processor.startswith("Raw") else 5) for table, processor in tables.items()}
    same_rows_every_day(tmp_path / "w.duckdb", "game_date", runs, writers).close()
    out = tmp_path / "draft.yaml"
    assert invoke("spec", "draft", "--duckdb", str(tmp_path / "w.duckdb"), "--out", str(out)).exit_code == 0
    drafted = {t.id: t.processor for t in load_spec(out).tables}
    assert {t: drafted[t] for t in tables} == tables


def test_a_table_no_run_can_be_tied_to_gets_a_marked_placeholder_that_still_validates(tmp_path: Path):
    runs = "job VARCHAR, data_date DATE, status VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, records BIGINT"
    writers = {"alpha_facts": ("nightly_a", 10), "beta_facts": ("nightly_b", 10), "gamma_facts": (None, 0)}
    con = same_rows_every_day(tmp_path / "w.duckdb", "event_day", runs, writers)
    con.execute("INSERT INTO s.runs VALUES ('misc_cleanup', '2024-01-03', 'failed', '2024-02-01', '2024-02-01', 0)")
    con.close()
    out = tmp_path / "draft.yaml"
    assert invoke("spec", "draft", "--duckdb", str(tmp_path / "w.duckdb"), "--out", str(out)).exit_code == 0
    text = out.read_text()
    assert re.search(r"processor: nightly_a +# records = the table's rows on 10 of 10 dates run", text)
    assert re.search(
        r"processor: TODO_processor_of_gamma_facts +# TODO: no run writes this table that could be told; "
        r"unmatched processors: misc_cleanup",
        text,
    )
    result = invoke("validate", "--spec", str(out), "--start", "2024-01-01", "--end", "2024-01-10", "--format", "json")
    assert result.exit_code == 0, result.output  # every table has its rows: the placeholder does not get in the way
    assert '"gamma_facts"' in result.output


def test_a_draft_that_cannot_be_written_is_one_message(tmp_path: Path):
    """--out under a file, or under a folder that cannot be made, ended in a traceback."""
    from conftest import MINI_SPEC

    from backfill_kit.draft import write_draft
    from backfill_kit.errors import InputError

    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "draft.yaml"
    with pytest.raises(InputError, match=rf"^cannot write the draft {re.escape(str(out))}: .*--out$"):
        write_draft(MINI_SPEC, out, force=True)
    assert (tmp_path / "a-file").read_text() == ""
