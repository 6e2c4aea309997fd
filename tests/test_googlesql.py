"""Every query the BigQuery backend sends is valid GoogleSQL: type-checked by Google's own
analyzer (tests/googlesql.py), offline, against a catalog of a warehouse shaped like production.

The warehouse is built in the emulator through the real client, with production's column types
(../shared/domain.md): the run history's `errors` is JSON (in a second run history, REPEATED
records) and `started_at` a TIMESTAMP; date columns are DATE, DATETIME and TIMESTAMP; tables
that require a partition filter are partitioned on another column than their date, by
ingestion time, on an integer range, and one is external, hive-partitioned on a season key.
The emulator refuses a query over them without the filter, as BigQuery documents it. The monitor's look at it (a validation and
the recent runs) records every query the client sends, dry runs included, with its parameters'
types; each is analyzed against the catalog built from the same tables' metadata. The emulator (DuckDB underneath) runs them too,
so the verdicts are checked as well as the SQL.

The analyzer must reject today's known-bad SQL (a cast from JSON to STRING, a DATE parameter
against a TIMESTAMP column), so that this test cannot pass by accepting anything.

Then the results: GoogleSQL's reference evaluator answers the backend's queries, as the client
sends them, on production-shaped rows (tests/test_run_history.py's shape), and every cell and
run summary, every evidence field included, must be the DuckDB backend's on the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import googlesql
import pytest
from bq_emulator import Emulator, short_retry

from backfill_kit import load_spec, validate
from backfill_kit.validation.validator import history_request
from backfill_kit.warehouse import CoverageTarget, open_warehouse

pytest.importorskip("zetasql", reason="GoogleSQL's analyzer is the `zetasql` package, in the `test` extra")

GAME_DAYS = (date(2024, 11, 1), date(2024, 11, 2))
START, END = date(2024, 10, 30), date(2024, 11, 3)
NOW = datetime(2024, 11, 3, 12, 0)


def fields(columns: str) -> list[dict[str, str]]:
    """Schema fields as tables.get gives them, from "name TYPE, name TYPE, ..."."""
    return [dict(zip(("name", "type"), column.split(), strict=True)) for column in columns.split(", ")]


def day_partitioned(on: str | None, required: bool = False) -> dict[str, Any]:
    """A table resource's settings when partitioned by day on a column (None: ingestion time);
    the emulator keeps the filter requirement in timePartitioning only (tests/bq_emulator.py, 10)."""
    partitioning: dict[str, Any] = {"type": "DAY", "requirePartitionFilter": required}
    if on:
        partitioning["field"] = on
    return {"timePartitioning": partitioning, "requirePartitionFilter": required}


RUN_HISTORY = fields(
    "processor_name STRING, run_id STRING, phase STRING, data_date DATE, date_range_filter_start DATE, "
    "date_range_filter_end DATE, status STRING, started_at TIMESTAMP, processed_at TIMESTAMP, "
    "duration_seconds FLOAT, records_processed INTEGER, errors JSON, warnings JSON, failure_category STRING, "
    "skipped BOOLEAN, skip_reason STRING, retry_attempt INTEGER"
)
# name -> (schema fields, the resource's partitioning settings)
TABLES: dict[str, tuple[list[dict[str, str]], dict[str, Any]]] = {
    "nba_raw.nbac_schedule": (
        fields("game_id STRING, game_date DATE, game_status INTEGER"),
        day_partitioned("game_date", True),
    ),
    # partitioned by day on its date: counted from INFORMATION_SCHEMA.PARTITIONS
    "nba_raw.nbac_gamebook_player_stats": (fields("game_date DATE, player STRING"), day_partitioned("game_date")),
    # partitioned on another column, which queries must filter on
    "nba_raw.odds_api_player_points_props": (
        fields("game_date DATE, snapshot_timestamp TIMESTAMP, player STRING"),
        day_partitioned("snapshot_timestamp", True),
    ),
    # partitioned by ingestion time (_PARTITIONTIME), which queries must filter on
    "nba_raw.bettingpros_player_points_props": (fields("game_date DATE, player STRING"), day_partitioned(None, True)),
    "nba_raw.bdl_player_boxscores": (fields("game_date TIMESTAMP, player STRING"), {}),  # a TIMESTAMP date
    "nba_raw.nbac_injury_report": (fields("report_date DATETIME, player STRING"), {}),  # a DATETIME date
    # partitioned on an integer range, which queries must filter on
    "nba_raw.nbac_team_boxscore": (
        fields("game_date DATE, season_year INTEGER, team STRING"),
        {
            "rangePartitioning": {"field": "season_year", "range": {"start": "2000", "end": "2100", "interval": "1"}},
            "requirePartitionFilter": True,
        },
    ),
    # an external table, hive-partitioned on a season key, which queries must filter on
    "nba_raw.espn_boxscores": (
        fields("game_date DATE, player STRING, season STRING"),
        {
            "externalDataConfiguration": {
                "sourceFormat": "PARQUET",
                "sourceUris": ["gs://nba-props/espn_boxscores/*"],
                "hivePartitioningOptions": {
                    "mode": "AUTO",
                    "sourceUriPrefix": "gs://nba-props/espn_boxscores/",
                    "requirePartitionFilter": True,
                    "fields": ["season"],
                },
            }
        },
    ),
    "nba_reference.processor_run_history": (RUN_HISTORY, day_partitioned("data_date", True)),
}
# The same run history with its errors as REPEATED records instead of JSON.
REPEATED_ERRORS = {
    "name": "errors",
    "type": "RECORD",
    "mode": "REPEATED",
    "fields": [{"name": "error_type", "type": "STRING"}, {"name": "error_message", "type": "STRING"}],
}
TABLES["nba_reference.processor_run_history_repeated"] = (
    [REPEATED_ERRORS if f["name"] == "errors" else f for f in RUN_HISTORY],
    day_partitioned("data_date", True),
)

SPEC = """\
name: production_shaped
warehouse:
  backend: bigquery
  project: {project}
date_column: game_date
calendar:
  table: nba_raw.nbac_schedule
  date_column: game_date
  game_id_column: game_id
  filter: "game_status = 3 AND substr(game_id, 1, 3) IN ('002', '004', '005')"
  seasons:
    - {{name: 2024-25, start: 2024-10-22, end: 2025-06-22}}
run_history:
  table: nba_reference.processor_run_history
  columns: {{processor: processor_name, date: data_date, status: status, started_at: started_at,
            finished_at: processed_at, records: records_processed, error: errors, run_id: run_id,
            range_start: date_range_filter_start, range_end: date_range_filter_end}}
  statuses: {{running: [running], success: [success, partial], failed: [failed], skipped: [skipped]}}
  no_data_reasons: {{failure_category: [no_data_available], skip_reason: [no_data]}}
  max_range_days: 31
  stale_after_hours: 6
job_defaults:
  argv: ["{{python}}", "-c", "pass", "{{id}}", "{{start}}", "{{end}}"]
  skip_downstream: {{args: ["--no-trigger"]}}
phases:
  - name: raw
    tables:
      - {{id: gamebook, table: nba_raw.nbac_gamebook_player_stats, processor: NbacGamebookProcessor, min_rows_per_game: 1}}
      - {{id: odds_props, table: nba_raw.odds_api_player_points_props, processor: OddsApiPropsProcessor, min_rows: 1}}
      - {{id: bettingpros, table: nba_raw.bettingpros_player_points_props, processor: BettingPropsProcessor, min_rows: 1}}
      - {{id: bdl, table: nba_raw.bdl_player_boxscores, processor: BdlBoxscoresProcessor, min_rows: 1}}
      - {{id: injuries, table: nba_raw.nbac_injury_report, date_column: report_date,
          processor: NbacInjuryReportProcessor, min_rows: 1}}
      - {{id: team_boxscore, table: nba_raw.nbac_team_boxscore, processor: NbacTeamBoxscoreProcessor, min_rows: 1}}
      - {{id: espn, table: nba_raw.espn_boxscores, processor: EspnBoxscoresProcessor, min_rows: 1}}
"""

ROWS = """
INSERT INTO `{p}.nba_raw.nbac_schedule` (game_id, game_date, game_status)
  VALUES ('0022400001', '2024-11-01', 3), ('0022400002', '2024-11-02', 3);
INSERT INTO `{p}.nba_raw.nbac_gamebook_player_stats` (game_date, player) VALUES ('2024-11-01', 'a'), ('2024-11-02', 'a');
INSERT INTO `{p}.nba_raw.odds_api_player_points_props` (game_date, snapshot_timestamp, player)
  VALUES ('2024-11-01', '2024-10-31 18:00:00', 'a'), ('2024-11-02', '2025-03-01 09:00:00', 'a');
INSERT INTO `{p}.nba_raw.bettingpros_player_points_props` (game_date, player) VALUES ('2024-11-01', 'a');
INSERT INTO `{p}.nba_raw.bdl_player_boxscores` (game_date, player)
  VALUES ('2024-11-01 23:30:00', 'a'), ('2024-11-02 02:00:00', 'a');
INSERT INTO `{p}.nba_raw.nbac_injury_report` (report_date, player) VALUES ('2024-11-01 17:00:00', 'a');
INSERT INTO `{p}.nba_raw.nbac_team_boxscore` (game_date, season_year, team)
  VALUES ('2024-11-01', 2024, 'LAL'), ('2024-11-02', 2024, 'BOS');
INSERT INTO `{p}.nba_raw.espn_boxscores` (game_date, player, season) VALUES ('2024-11-02', 'a', '2024-25');
INSERT INTO `{p}.nba_reference.processor_run_history`
  (processor_name, run_id, data_date, status, started_at, processed_at, records_processed, errors)
  VALUES ('BettingPropsProcessor', 'r1', '2024-11-02', 'running', '2024-11-03 08:00:00', NULL, NULL, NULL),
         ('BettingPropsProcessor', 'r1', '2024-11-02', 'failed', '2024-11-03 08:00:00', '2024-11-03 08:01:00', 0,
          JSON '[{{"error_type": "HTTPError", "error_message": "503 from the odds source"}}]'),
         ('NbacGamebookProcessor', 'r2', '2024-11-01', 'success', '2024-11-02 08:00:00', '2024-11-02 08:02:00', 2,
          JSON '[]');
INSERT INTO `{p}.nba_reference.processor_run_history_repeated`
  (processor_name, run_id, data_date, status, started_at, processed_at, records_processed, errors)
  VALUES ('BettingPropsProcessor', 'r1', '2024-11-02', 'running', '2024-11-03 08:00:00', NULL, NULL, []),
         ('BettingPropsProcessor', 'r1', '2024-11-02', 'failed', '2024-11-03 08:00:00', '2024-11-03 08:01:00', 0,
          [STRUCT('HTTPError' AS error_type, '503 from the odds source' AS error_message)]),
         ('NbacGamebookProcessor', 'r2', '2024-11-01', 'success', '2024-11-02 08:00:00', '2024-11-02 08:02:00', 2, []);
"""


def create_tables(client: Any, project: str) -> None:
    from google.cloud import bigquery

    for dataset in {name.split(".")[0] for name in TABLES}:
        client.create_dataset(f"{project}.{dataset}", retry=short_retry())
    for name, (fields, settings) in TABLES.items():
        resource: dict[str, Any] = {
            "tableReference": {"projectId": project, "datasetId": name.split(".")[0], "tableId": name.split(".")[1]},
            "schema": {"fields": fields},
            **settings,
        }
        client.create_table(bigquery.Table.from_api_repr(resource), retry=short_retry())
    for statement in filter(str.strip, ROWS.format(p=project).split(";")):
        client.query(statement, retry=short_retry()).result(retry=short_retry())


@pytest.fixture(scope="module")
def production(bigquery_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The spec of a production-shaped warehouse in a project of its own on the emulator."""
    project = bigquery_emulator.new_project()
    client = bigquery_emulator.client(project)
    create_tables(client, project)
    client.close()
    spec = tmp_path_factory.mktemp("production") / "production.yaml"
    spec.write_text(SPEC.format(project=project))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.url)
        yield spec


@pytest.fixture(scope="module")
def catalog(production: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """GoogleSQL's analyzer over the production-shaped tables, as BigQuery describes them."""
    googlesql.start_analyzer(googlesql.code_cache() or tmp_path_factory.mktemp("googlesql"))
    wh = open_warehouse(load_spec(production))
    try:
        resources = [wh.client.get_table(wh.qualified(name)).to_api_repr() for name in TABLES]
    finally:
        wh.close()
    return googlesql.GoogleSQL(resources)


class Sent:
    """Every query the client sends: SQL, parameters (as BigQuery types them), dry run or not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from google.cloud import bigquery

        self.queries: list[tuple[str, dict[str, Any], bool]] = []
        real = bigquery.Client.query

        def recording(client: Any, sql: str, job_config: Any = None, **kwargs: Any) -> Any:
            parameters = {p.name: _declared(p) for p in (job_config.query_parameters if job_config else [])}
            self.queries.append((sql, parameters, bool(job_config and job_config.dry_run)))
            return real(client, sql, job_config=job_config, **kwargs)

        monkeypatch.setattr(bigquery.Client, "query", recording)


def _declared(parameter: Any) -> Any:
    """A query parameter's type, for the analyzer."""
    if hasattr(parameter, "array_type"):
        return googlesql.parameter_type(parameter.array_type, array=True)
    return googlesql.parameter_type(parameter.type_)


@pytest.mark.parametrize("errors", ["JSON", "REPEATED"])
def test_every_query_the_backend_sends_is_valid_googlesql(
    production: Path, catalog: Any, monkeypatch, tmp_path, errors
):
    if errors == "REPEATED":  # the same spec, on the run history whose errors are REPEATED records
        history = "table: nba_reference.processor_run_history\n"
        text = production.read_text().replace(history, history.replace("y\n", "y_repeated\n"))
        production = tmp_path / "repeated.yaml"
        production.write_text(text)
    sent = Sent(monkeypatch)
    spec = load_spec(production)
    wh = open_warehouse(spec)
    # What the monitor does: a validation (three queries), then the recent runs (one more).
    v = validate(spec, START, END, warehouse=wh, now=NOW)
    processors = sorted({t.processor for t in spec.tables})
    recent = wh.recent_runs(history_request(spec), processors, START, END, NOW - timedelta(days=30))
    wh.close()

    assert [q.purpose for q in wh.queries] == ["calendar", "coverage", "run_history", "recent_runs"]
    assert spec.run_history.table.endswith("_repeated") == (errors == "REPEATED")
    assert len(sent.queries) == 8 and [dry for _, _, dry in sent.queries] == [True, False] * 4
    assert {sql for sql, _, _ in sent.queries} == {q.sql for q in wh.queries}
    for sql, parameters, _ in sent.queries:
        catalog.check(sql, parameters)
    # The tables that must be filtered on their partitioning column are, in the coverage query.
    coverage = wh.queries[1].sql
    assert "(`snapshot_timestamp` >= @partitions_from OR `snapshot_timestamp` IS NULL)" in coverage
    assert "(_PARTITIONTIME >= @partitions_from OR _PARTITIONTIME IS NULL)" in coverage
    assert "(`season_year` >= @lowest_int OR `season_year` IS NULL)" in coverage  # an integer range
    assert "(`season` >= @lowest_text OR `season` IS NULL)" in coverage  # a hive key
    assert wh.queries[1].extra["counted_from_metadata"] == ["nba_raw.nbac_gamebook_player_stats"]
    # ... and the emulator's answers are right: every cell complete but bettingpros on
    # 2024-11-02 (its run failed), the injury report and ESPN (never ran); the error read from JSON.
    assert {(c.table, c.date): str(c.status) for c in v.cells if str(c.status) != "complete"} == {
        ("bettingpros", date(2024, 11, 2)): "failed",
        ("injuries", date(2024, 11, 2)): "never_ran",
        ("espn", date(2024, 11, 1)): "never_ran",
    }
    (failure,) = [r for r in recent if r.category == "failed"]
    assert "503 from the odds source" in failure.error  # JSON text today; the readable message later


def test_the_analyzer_rejects_what_bigquery_rejects(production: Path, catalog: Any, monkeypatch):
    """Today's known-bad SQL fails: the check above cannot pass by accepting anything."""
    spec = load_spec(production)
    wh = open_warehouse(spec)
    history = f"`{wh.project}`.`nba_reference`.`processor_run_history`"
    # The run history's JSON errors cast to STRING, as the run-history query used to read them.
    with pytest.raises(googlesql.RejectedQuery, match="Invalid cast from JSON to STRING"):
        catalog.check(
            f"SELECT CAST(`errors` AS STRING) FROM {history} WHERE `data_date` >= @start",
            {"start": googlesql.parameter_type("STRING")},
        )
    catalog.check(
        f"SELECT TO_JSON_STRING(`errors`) FROM {history} WHERE `data_date` >= @start",
        {"start": googlesql.parameter_type("STRING")},
    )
    # DATE parameters, as the backend used to send them, against a TIMESTAMP date column.
    sent = Sent(monkeypatch)
    wh.row_counts(_targets(spec), START, END)
    wh.close()
    sql, parameters, _ = sent.queries[-1]
    catalog.check(sql, parameters)
    as_dates = parameters | {"start": googlesql.parameter_type("DATE"), "stop": googlesql.parameter_type("DATE")}
    refused = "No matching signature for operator >= for argument types: TIMESTAMP, DATE"
    with pytest.raises(googlesql.RejectedQuery, match=refused):
        catalog.check(sql, as_dates)
    # A column the table does not have, and a function GoogleSQL does not know.
    with pytest.raises(googlesql.RejectedQuery, match="Unrecognized name: game_day"):
        catalog.check(sql.replace("`game_date`", "`game_day`", 1), parameters)
    with pytest.raises(googlesql.RejectedQuery, match="Function not found: list_contains"):
        catalog.check(sql.replace("COUNT(*)", "list_contains(@start, 1)", 1), parameters)


def _targets(spec: Any) -> list[CoverageTarget]:
    return [CoverageTarget(t.table, spec.date_column_of(t)) for t in spec.tables]


def test_the_emulator_counts_the_rows_of_tables_partitioned_on_another_column(production: Path):
    """A row is counted on its own date wherever it was written: odds props written months
    later, and bettingpros rows written today (ingestion time)."""
    spec = load_spec(production)
    wh = open_warehouse(spec)
    try:
        counts = wh.row_counts(_targets(spec), START, END)
    finally:
        wh.close()
    names = [t.id for t in spec.tables]
    found = sorted((names[k], d, n) for k, d, n in counts)
    assert found == [
        ("bdl", date(2024, 11, 1), 1),
        ("bdl", date(2024, 11, 2), 1),  # TIMESTAMP dates, by UTC date
        ("bettingpros", date(2024, 11, 1), 1),
        ("espn", date(2024, 11, 2), 1),  # hive-partitioned on its season
        ("gamebook", date(2024, 11, 1), 1),
        ("gamebook", date(2024, 11, 2), 1),
        ("injuries", date(2024, 11, 1), 1),  # a DATETIME date
        ("odds_props", date(2024, 11, 1), 1),
        ("odds_props", date(2024, 11, 2), 1),
        ("team_boxscore", date(2024, 11, 1), 1),  # partitioned on an integer range
        ("team_boxscore", date(2024, 11, 2), 1),
    ]


def test_a_refused_coverage_query_comes_with_the_table_settings_behind_it(production: Path, monkeypatch):
    """The emulator enforces no partition filter; BigQuery's refusal is raised as the client
    raises it. The tables' settings were read before the job, so the message can name them."""
    from google.api_core.exceptions import BadRequest
    from google.cloud import bigquery

    from backfill_kit.errors import WarehouseError

    refusal = (
        "Cannot query over table 'p.nba_raw.bettingpros_player_points_props' without a filter over "
        "column(s) '_PARTITION_LOAD_TIME', '_PARTITIONDATE', '_PARTITIONTIME' that can be used for "
        "partition elimination"
    )
    real_query = bigquery.Client.query

    def refuse_coverage(client: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        if " AS k, " in sql:
            raise BadRequest(refusal, errors=[{"reason": "invalidQuery", "message": refusal}])
        return real_query(client, sql, *args, **kwargs)

    monkeypatch.setattr(bigquery.Client, "query", refuse_coverage)
    with pytest.raises(WarehouseError) as info:
        validate(load_spec(production), START, END, now=NOW)
    said = str(info.value)
    assert said.startswith("BigQuery refused the coverage query; table settings that may explain it: ")
    assert (
        "nba_raw.odds_api_player_points_props: requires a partition filter: every query a backfill job "
        "runs on it must filter on snapshot_timestamp" in said
    )
    assert "nba_raw.bettingpros_player_points_props: requires a partition filter" in said
    assert "filter on _PARTITIONTIME" in said and said.endswith(f"estimating the coverage query failed: {refusal}")


def test_a_calendar_partitioned_by_ingestion_time_is_filtered_on_it_too(production: Path, catalog: Any, monkeypatch):
    from backfill_kit.warehouse import CalendarRequest

    sent = Sent(monkeypatch)
    wh = open_warehouse(load_spec(production))
    try:
        days = wh.expected_dates(CalendarRequest("nba_raw.bettingpros_player_points_props", "game_date"), START, END)
    finally:
        wh.close()
    assert days == [(date(2024, 11, 1), 1)]
    sql, parameters, _ = sent.queries[-1]
    assert "(_PARTITIONTIME >= @partitions_from OR _PARTITIONTIME IS NULL)" in sql
    catalog.check(sql, parameters)


# --- the same cells under GoogleSQL's reference evaluator ------------------------------------

EVALUATED_DAYS = [date(2024, 1, 8) + timedelta(i) for i in range(7)]
# Day-partitioned on their date column on BigQuery (counted from partition metadata); the
# play-by-play table is not (counted by a scan), so that both branches of the coverage query run.
EVALUATED_PARTITIONS = {
    "nba_raw.nbac_schedule": "game_date",
    "nba_raw.odds_api_player_points_props": "game_date",
    "nba_analytics.player_game_summary": "game_date",
    "nba_reference.processor_run_history": "data_date",
}


def write_every_shape(con: Any) -> None:
    """Production-shaped rows (test_run_history's shape) with every kind of evidence: range
    runs, no-data reasons, JSON errors and failures that recorded none ([], JSON null, NULL),
    skips for another reason, an unmapped status, crashed and recent `running` rows, a
    successful run whose rows are gone, and a row whose date is NULL."""
    from test_run_history import ProductionHistory

    d = EVALUATED_DAYS
    for day in d:
        con.execute("INSERT INTO nba_raw.nbac_schedule VALUES (?, ?, 3), (?, ?, 3)", [f"{day}-1", day, f"{day}-2", day])
    con.execute("INSERT INTO nba_raw.nbac_schedule VALUES ('x', NULL, 3)")
    con.execute("INSERT INTO nba_raw.odds_api_player_points_props VALUES (?, 'x'), (?, 'y'), (NULL, 'z')", [d[0], d[6]])
    con.execute("INSERT INTO nba_raw.nbac_play_by_play VALUES (?, 'x')", [d[4]])
    con.execute("INSERT INTO nba_analytics.player_game_summary VALUES (?, 'x'), (?, 'y')", [d[5], d[5]])
    h = ProductionHistory(con)
    odds, pbp, pgs = "OddsApiPropsProcessor", "NbacPlayByPlayProcessor", "PlayerGameSummaryProcessor"
    h.run(odds, d[0], "success", records=1)
    h.run(odds, d[1], "failed", category="no_data_available", error=("NoDataAvailableError", "no props"))
    h.run(odds, d[2], "failed", category="timeout", error=("TimeoutError", "read timed out"))
    for no_error in ("[]", "null", None):
        h.run(odds, d[2], "failed", category="timeout", no_error=no_error)
    h.run(odds, d[3], "skipped", skip="already_processed")
    h.run(odds, d[4], "SUCCESS")
    h.run(odds, d[5], "partial", records=3)  # mapped to success; its rows are gone: lost
    h.run(odds, d[6], "failed", no_error="null")
    h.run(odds, d[6], "success", records=1)
    h.run(pbp, d[0], "running", started=datetime(2025, 11, 1))  # crashed: stale
    h.run(pbp, d[1], "skipped", skip="no_data")
    h.run(pbp, d[2], "success", records=0)
    h.run(pbp, d[3], "running", started=datetime(2025, 11, 29, 22))  # still running
    h.run(pgs, d[4], "failed", category="upstream_failure", range_=(d[0], d[4]), error=("DependencyError", "stale"))
    h.run(pgs, d[2], "failed", no_error="null")
    h.run(pgs, d[6] + timedelta(10), "success", records=280, range_=(d[5], d[6] + timedelta(10)))


def json_or_null(text: str | None) -> object:
    """An error as JSON text compared by its value (engines write JSON each their own way);
    SQL NULL stays apart from JSON null."""
    return "NULL" if text is None else ("JSON", json.loads(text))


def comparable(rows: list[Any], error_field: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(json_or_null(v) if f == error_field else v for f, v in r._asdict().items()) for r in rows)


@pytest.mark.parametrize("tables_per_query", [None, 1], ids=["one coverage query", "one per table"])
def test_the_bigquery_queries_give_the_duckdb_cells_under_the_reference_evaluator(
    bigquery_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables_per_query: int | None
):
    """The BigQuery backend's queries, as the client sends them (SQL and parameters), are
    answered by GoogleSQL's reference evaluator on production-shaped rows; every cell, run
    summary and recent run is the DuckDB backend's on the same rows, every evidence field too,
    whether the row counts take one query or one per table."""
    from test_run_history import production_warehouse

    from backfill_kit.demo.load import with_warehouse

    googlesql.start_analyzer(googlesql.code_cache() or tmp_path)
    con, path = production_warehouse(tmp_path)
    write_every_shape(con)
    con.close()
    project = bigquery_emulator.new_project()
    bigquery_emulator.copy_duckdb(project, path, EVALUATED_PARTITIONS)
    duck_spec = load_spec(tmp_path / "prod.yaml")
    bq_path = tmp_path / "prod.bigquery.yaml"
    bq_path.write_text(
        with_warehouse((tmp_path / "prod.yaml").read_text(), ["backend: bigquery", f"project: {project}"])
    )
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.url)
    bq_spec = load_spec(bq_path)
    evaluator = reference_evaluator(bigquery_emulator, project, path, [t.table for t in bq_spec.tables])
    bigquery_emulator.answer_queries(project, evaluator.answer)

    start, end, now = EVALUATED_DAYS[0], EVALUATED_DAYS[-1], datetime(2025, 11, 30)
    processors = sorted({t.processor for t in duck_spec.tables})
    since = datetime(2025, 11, 20)
    answers = {}
    for name, spec in (("duckdb", duck_spec), ("bigquery", bq_spec)):
        wh = open_warehouse(spec)
        if name == "bigquery":
            wh.capabilities = replace(wh.capabilities, max_tables_per_query=tables_per_query)
        try:
            v = validate(spec, start, end, now=now, warehouse=wh)
            request = history_request(spec)
            answers[name] = (
                v,
                comparable(wh.run_summaries(request, processors, start, end), "last_error"),
                comparable(wh.recent_runs(request, processors, start, end, since), "error"),
            )
        finally:
            wh.close()
    (duck, duck_runs, duck_recent), (bq, bq_runs, bq_recent) = answers["duckdb"], answers["bigquery"]
    # Every query the backend sent was answered by the evaluator, and its dry run: those of the
    # validation (the coverage split or not), then the run history and the recent runs again.
    assert len(bq.queries) == (3 if tables_per_query is None else 5)
    assert len(evaluator.answered) == 2 * (len(bq.queries) + 2)
    assert set(evaluator.answered) >= {q.sql for q in bq.queries}
    counted = [t for q in bq.queries for t in q.extra.get("counted_from_metadata", [])]
    assert counted == list(EVALUATED_PARTITIONS)[1:3]
    assert bq.cells == duck.cells
    assert (bq.run_history, bq.unmapped_statuses) == (duck.run_history, duck.unmapped_statuses)
    assert bq_runs == duck_runs and bq_recent == duck_recent
    # ... and they are the cells the rows call for, so that agreeing cannot mean agreeing on nothing.
    got = {(c.table, (c.date - start).days): (str(c.status), c.last_error) for c in bq.cells}
    assert {status for status, _ in got.values()} == {
        "complete", "no_data", "failed", "never_ran", "stale", "running", "lost"
    }  # fmt: skip
    assert got[("odds", 2)] == ("failed", "TimeoutError: read timed out")
    assert got[("pgs", 2)] == ("failed", "DependencyError: stale")
    last_errors = {(s[0], (s[1] - start).days): s[9] for s in bq_runs}
    assert last_errors[("OddsApiPropsProcessor", 0)] == "NULL"  # a success recorded no error: NULL, not 'null'


def reference_evaluator(emulator: Emulator, project: str, database: Path, tables: list[str]) -> googlesql.Evaluator:
    """The evaluator over the tables the emulator holds (their `tables.get` resources) and the
    rows of the DuckDB file they were copied from, column by column in BigQuery's order."""
    import duckdb

    client = emulator.client(project)
    try:
        names = [*tables, "nba_raw.nbac_schedule", "nba_reference.processor_run_history"]
        resources = [client.get_table(f"{project}.{name}", retry=short_retry()).to_api_repr() for name in names]
    finally:
        client.close()
    con = duckdb.connect(str(database), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    rows = {}
    for name, resource in zip(names, resources, strict=True):
        columns = ", ".join(f'"{f["name"]}"' for f in resource["schema"]["fields"])
        rows[f"{project}.{name}"] = con.execute(f"SELECT {columns} FROM {name}").fetchall()
    con.close()
    return googlesql.Evaluator(resources, rows)


def test_a_partition_id_that_is_no_date_never_fails_the_partition_query(tmp_path: Path):
    """`__NULL__` (rows whose partitioning column is NULL) reaches the SELECT list when the
    WHERE lets it through (here, bounds that let every id through): BigQuery documents no
    order of evaluation, and PARSE_DATE failed on it; it is NULL, and the evaluator agrees."""
    from backfill_kit.warehouse.bigquery import partitions_sql

    googlesql.start_analyzer(googlesql.code_cache() or tmp_path)
    resource = {
        "tableReference": {"projectId": "p", "datasetId": "raw", "tableId": "boxscore"},
        "schema": {"fields": [{"name": "game_date", "type": "DATE"}]},
        "timePartitioning": {"type": "DAY", "field": "game_date"},
    }
    evaluator = googlesql.Evaluator([resource], {"p.raw.boxscore": [(date(2024, 1, 10),), (None,), (None,)]})
    sql = partitions_sql("p.raw", [(0, "t0")])
    text = {"type": "STRING"}
    bounds = {"t0": "boxscore", "first_partition": "", "after_partition": "~"}
    parameters = [{"name": n, "parameterType": text, "parameterValue": {"value": v}} for n, v in bounds.items()]
    _, rows = evaluator.answer(sql, parameters)
    assert set(rows) == {(0, date(2024, 1, 10), 1), (0, None, 2)}
    googlesql.GoogleSQL([resource]).check(sql, {n: googlesql.parameter_type("STRING") for n in bounds})
