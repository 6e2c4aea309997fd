"""The run history's shapes (range rows, no-data reasons, JSON errors, unmapped statuses) and
the defects of reading it (merged attempts, ties, time zones), each on a hand-built warehouse.
Tests taking `mini` run on DuckDB and on BigQuery (the emulator, through the real client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta

import pytest
from conftest import NOW, MiniWarehouse

from backfill_kit import Status, load_spec, validate
from backfill_kit.errors import InputError

D1 = date(2024, 1, 10)
RANGES = (
    "  columns: {processor: processor_name, date: data_date, status: status, started_at: started_at,\n"
    "            finished_at: processed_at, records: records_processed, error: errors, run_id: run_id,\n"
    "            range_start: date_range_filter_start, range_end: date_range_filter_end}\n"
)
REASONS = "  no_data_reasons: {failure_category: [no_data_available], skip_reason: [no_data]}\n"
CLI = [
    sys.executable,
    "-c",
    "import sys; from backfill_kit.cli.commands import main; sys.argv[0] = 'backfill-kit'; main()",
]


@pytest.fixture(params=["duckdb", "bigquery"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def with_ranges(mini: MiniWarehouse) -> MiniWarehouse:
    mini.spec_text = mini.spec_text.replace(
        mini.spec_text[mini.spec_text.index("  columns:") : mini.spec_text.index("  statuses:")], RANGES
    )
    mini.spec_path.write_text(mini.spec_text)
    return mini.add_history_columns()


def check(mini: MiniWarehouse, start: date = date(2024, 1, 1), end: date = date(2024, 1, 31), **kw):
    return validate(load_spec(mini.close()), start, end, now=NOW, **kw)


def cells(result, table: str = "boxscore") -> dict[date, object]:
    return {c.date: c for c in result.cells if c.table == table}


def days(first: date, n: int) -> list[date]:
    return [first + timedelta(i) for i in range(n)]


# --- range rows ------------------------------------------------------------------------------


def test_a_failed_range_run_fails_every_expected_date_of_its_range(mini):
    for d in days(D1, 5):
        mini.games(d)
    error = json.dumps([{"error_type": "DependencyError", "error_message": "upstream is 700 days old"}])
    with_ranges(mini).run("BoxscoreProcessor", D1 + timedelta(4), "failed", range_=(D1, D1 + timedelta(4)), error=error)
    got = cells(check(mini))
    assert {d: c.status for d, c in got.items()} == dict.fromkeys(days(D1, 5), Status.FAILED)
    assert {(c.attempts, c.failures, c.latest_status, c.last_error) for c in got.values()} == {
        (1, 1, "failed", "DependencyError: upstream is 700 days old")
    }


def test_a_range_run_ending_after_the_range_and_a_crashed_range_run_count_per_date(mini):
    for d in days(D1, 6):
        mini.games(d)
    with_ranges(mini).run("BoxscoreProcessor", D1 + timedelta(40), "success", 2, range_=(D1, D1 + timedelta(40)))
    mini.run(
        "PropsProcessor", D1 + timedelta(2), "running", range_=(D1, D1 + timedelta(2)), started=datetime(2024, 3, 1)
    )
    result = check(mini, D1, D1 + timedelta(5))
    assert {c.status for c in cells(result).values()} == {Status.NO_DATA}  # success, 0 rows, range records not per date
    props = cells(result, "props")
    assert [props[d].status for d in days(D1, 6)] == [Status.STALE] * 3 + [Status.NEVER_RAN] * 3


def test_a_single_date_retry_after_a_failed_range_decides_that_date_only(mini):
    for d in days(D1, 3):
        mini.games(d)
    with_ranges(mini).run(
        "BoxscoreProcessor",
        D1 + timedelta(2),
        "failed",
        range_=(D1, D1 + timedelta(2)),
        started=datetime(2024, 2, 1),
        error="boom",
    )
    mini.rows("raw.boxscore", D1, 2).run("BoxscoreProcessor", D1, "success", 2, started=datetime(2024, 2, 2))
    got = cells(check(mini))
    assert (got[D1].status, got[D1].attempts, got[D1].failures) == (Status.COMPLETE, 2, 1)
    assert [got[d].status for d in days(D1 + timedelta(1), 2)] == [Status.FAILED] * 2


def test_a_range_longer_than_max_range_days_is_not_searched_beyond_it(mini):
    mini.games(D1)
    with_ranges(mini).history_settings("  max_range_days: 10\n")
    mini.run("BoxscoreProcessor", D1 + timedelta(30), "failed", range_=(D1, D1 + timedelta(30)))
    assert cells(check(mini, D1, D1))[D1].status is Status.NEVER_RAN
    sql = next(q.sql for q in check(mini, D1, D1).queries if q.purpose == "run_history")
    assert "date_range_filter_start" in sql


# --- no-data reasons, unmapped statuses --------------------------------------------------------


def test_no_data_reasons_turn_a_failure_or_a_skip_into_nothing_to_load(mini):
    d2, d3, d4, d5 = days(D1 + timedelta(1), 4)
    for d in days(D1, 5):
        mini.games(d)
    mini.history_settings(REASONS)
    mini.run(
        "BoxscoreProcessor", D1, "failed", failure_category="no_data_available", error='[{"error_message": "no props"}]'
    )
    mini.run("BoxscoreProcessor", d2, "skipped", skip_reason="no_data")
    mini.run("BoxscoreProcessor", d3, "failed", failure_category="processing_error", error="boom")
    mini.run("BoxscoreProcessor", d3, "skipped", skip_reason="already_processed")  # later: no evidence
    mini.run("BoxscoreProcessor", d4, "skipped", skip_reason="already_processed")
    mini.run("BoxscoreProcessor", d5, "failed", failure_category="no_data_available")
    mini.run("BoxscoreProcessor", d5, "failed", failure_category="timeout")
    got = cells(check(mini))
    assert [got[d].status for d in (D1, d2, d3, d4, d5)] == [
        Status.NO_DATA,
        Status.NO_DATA,
        Status.FAILED,
        Status.NEVER_RAN,
        Status.FAILED,
    ]
    assert (got[D1].failures, got[D1].last_error, got[d3].attempts, got[d3].latest_status) == (
        0,
        "no props",
        2,
        "failed",
    )


def test_without_no_data_reasons_a_skip_still_means_nothing_to_load(mini):
    mini.games(D1).run("BoxscoreProcessor", D1, "skipped", skip_reason="already_processed")
    assert cells(check(mini))[D1].status is Status.NO_DATA


def test_unmapped_statuses_are_named_in_a_warning_never_read_as_failed(mini):
    mini.games(D1).games(D1 + timedelta(1)).games(D1 + timedelta(2))
    mini.run("BoxscoreProcessor", D1, "SUCCESS")
    mini.run("BoxscoreProcessor", D1, "SUCCESS", started=datetime(2024, 1, 11, 9))  # a retry: still one date
    mini.run("BoxscoreProcessor", D1 + timedelta(1), "failed", error="boom")
    mini.run("BoxscoreProcessor", D1 + timedelta(1), "cancelled")
    mini.run("PropsProcessor", D1 + timedelta(2), "SUCCESS")
    result = check(mini)
    got = cells(result)
    assert (got[D1].status, got[D1 + timedelta(1)].status) == (Status.NEVER_RAN, Status.FAILED)
    assert result.unmapped_statuses == {"SUCCESS": 2, "cancelled": 1}
    (warning,) = [w for w in result.warnings if "does not map" in w]
    assert "'SUCCESS' (on 2 processor-dates), 'cancelled' (on 1 processor-dates)" in warning
    assert "run_history.statuses" in warning


# --- one latest attempt, never merged ----------------------------------------------------------


def test_the_latest_attempt_is_one_run_ties_broken_by_finish_then_run_id(mini):
    at = datetime(2024, 2, 1, 8)
    mini.games(D1).games(D1 + timedelta(1))
    mini.run("BoxscoreProcessor", D1, "failed", started=at, took=timedelta(minutes=9), error="late finish")
    mini.run("BoxscoreProcessor", D1, "success", started=at, took=timedelta(minutes=3))
    d2 = D1 + timedelta(1)
    mini.run("BoxscoreProcessor", d2, "success", started=at, run_id="b")
    mini.run("BoxscoreProcessor", d2, "failed", started=at, run_id="a", error="smaller run id")
    got = cells(check(mini))
    first = got[D1]
    assert (first.status, first.latest_status, first.latest_seconds, first.latest_started_at, first.attempts) == (
        Status.FAILED,
        "failed",
        540,
        at,
        2,
    )
    assert (got[d2].status, got[d2].latest_status, got[d2].latest_seconds) == (Status.NO_DATA, "success", 120)


def test_repeated_or_missing_run_ids_never_merge_attempts(mini):
    mini.games(D1).games(D1 + timedelta(1))
    mini.run("BoxscoreProcessor", D1, "success", started=datetime(2024, 2, 1), run_id="daily")
    mini.run("BoxscoreProcessor", D1, "failed", started=datetime(2024, 2, 2), run_id="daily", error="boom")
    d2 = D1 + timedelta(1)
    mini.run("BoxscoreProcessor", d2, "success", started=datetime(2024, 2, 1), run_id=None)
    mini.run("BoxscoreProcessor", d2, "failed", started=datetime(2024, 2, 2), run_id=None, error="boom")
    mini.run("BoxscoreProcessor", d2, "running", started=datetime(2024, 2, 3), run_id=None)  # a crash
    got = cells(check(mini))
    assert (got[D1].status, got[D1].attempts, got[D1].failures) == (Status.FAILED, 2, 1)
    assert (got[d2].status, got[d2].attempts, got[d2].failures) == (Status.STALE, 3, 1)


# --- errors as JSON, REPEATED or text -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["duckdb"])
@pytest.mark.parametrize("column_type", ["JSON", "STRUCT(error_type VARCHAR, error_message VARCHAR)[]"])
def test_errors_held_as_json_or_repeated_fields_read_as_messages(mini, column_type):
    mini.games(D1)
    mini.con.execute(f"ALTER TABLE ref.run_history ALTER errors TYPE {column_type} USING NULL")
    mini.run("BoxscoreProcessor", D1, "failed")
    value = "[{'error_type': 'ReadTimeout', 'error_message': 'read timed out'}]"
    mini.con.execute(
        f"UPDATE ref.run_history SET errors = {value if 'STRUCT' in column_type else repr(value.replace(chr(39), chr(34)))}::{column_type} WHERE status = 'failed'"
    )
    assert cells(check(mini))[D1].last_error == "ReadTimeout: read timed out"


# --- the same verdict on every machine, and no silent green ------------------------------------


def test_the_same_warehouse_gives_the_same_cells_in_every_time_zone(tmp_path):
    mini = MiniWarehouse(tmp_path)
    for d in days(D1, 3):
        mini.games(d)
    # Timestamps with a zone, near midnight UTC: read in Los Angeles they fall on the day before.
    mini.con.execute("ALTER TABLE raw.boxscore ALTER game_date TYPE TIMESTAMPTZ")
    mini.con.execute("ALTER TABLE ref.run_history ALTER started_at TYPE TIMESTAMPTZ")
    mini.con.execute("ALTER TABLE ref.run_history ALTER processed_at TYPE TIMESTAMPTZ")
    mini.con.execute("INSERT INTO raw.boxscore VALUES ('2024-01-10 01:30:00+00', 'a'), ('2024-01-10 02:30:00+00', 'b')")
    mini.run("PropsProcessor", D1 + timedelta(1), "running", started=datetime(2024, 4, 10, 6, 30))
    spec = mini.close()
    outputs = []
    for zone in ("UTC", "America/Los_Angeles"):
        result = subprocess.run(
            [
                *CLI,
                "validate",
                "--spec",
                str(spec),
                "--start",
                "2024-01-10",
                "--end",
                "2024-01-12",
                "--now",
                "2024-04-10T12:00:00",
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": zone},
            timeout=120,
        )
        assert result.returncode == 1, result.stderr
        outputs.append(json.loads(result.stdout)["cells"])
    assert outputs[0] == outputs[1]
    by_key = {(c["table"], c["date"]): c["status"] for c in outputs[0]}
    assert by_key[("boxscore", "2024-01-10")] == "complete"
    assert by_key[("props", "2024-01-11")] == "running"  # started 5.5 h before now: not yet stale


def test_a_range_without_expected_dates_is_refused_naming_the_seasons(mini):
    mini.games(D1)
    spec = mini.close()
    with pytest.raises(
        InputError,
        match=r"no expected dates from 2023-01-01 to 2023-01-31.*outside every season.*"
        r"s1 \(2024-01-01 \.\. 2024-01-31\), s2",
    ):
        validate(load_spec(spec), date(2023, 1, 1), date(2023, 1, 31), now=NOW)
    result = subprocess.run(
        [*CLI, "validate", "--spec", str(spec), "--start", "2024-03-01", "--end", "2024-03-31"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "has no games matching calendar.filter" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_range_reaching_past_the_last_season_warns(mini):
    mini.games(D1)
    result = check(mini, date(2023, 12, 1), date(2024, 5, 1))
    assert any("before the first season the calendar knows (s1, from 2024-01-01)" in w for w in result.warnings)
    assert any("after the last season the calendar knows (s2, to 2024-03-31)" in w for w in result.warnings)
    assert not check(mini, date(2024, 1, 1), date(2024, 3, 31)).warnings


# --- a warehouse shaped like production -------------------------------------------------------

PRODUCTION_HISTORY = """processor_name VARCHAR, run_id VARCHAR, phase VARCHAR, output_dataset VARCHAR,
    output_table VARCHAR, data_date DATE, date_range_filter_start DATE, date_range_filter_end DATE,
    status VARCHAR, started_at TIMESTAMPTZ, processed_at TIMESTAMPTZ, duration_seconds DOUBLE,
    records_processed BIGINT, records_created BIGINT, records_updated BIGINT, records_skipped BIGINT,
    errors JSON, warnings JSON, summary JSON, failure_category VARCHAR, skipped BOOLEAN, skip_reason VARCHAR,
    retry_attempt BIGINT, backfill_mode BOOLEAN, force_reprocess BOOLEAN, test_mode BOOLEAN,
    trigger_source VARCHAR, parent_processor VARCHAR, upstream_dependencies JSON, missing_dependencies JSON"""

PRODUCTION_SPEC = """\
name: production_shaped
warehouse: {backend: duckdb, path: prod.duckdb}
date_column: game_date
calendar:
  table: nba_raw.nbac_schedule
  game_id_column: game_id
  filter: "game_status = 3"
  seasons: [{name: 2023-24, start: 2023-10-24, end: 2024-06-17}]
run_history:
  table: nba_reference.processor_run_history
  columns: {processor: processor_name, date: data_date, status: status, started_at: started_at,
            finished_at: processed_at, records: records_processed, error: errors, run_id: run_id,
            range_start: date_range_filter_start, range_end: date_range_filter_end}
  statuses: {running: [running], success: [success, partial], failed: [failed], skipped: [skipped]}
  no_data_reasons: {failure_category: [no_data_available], skip_reason: [no_data]}
  max_range_days: 31
job_defaults:
  argv: ["{python}", "-c", "pass", "{start}", "{end}"]
  skip_downstream: {args: ["--skip-downstream-trigger"]}
phases:
  - name: raw
    tables:
      - {id: odds, table: nba_raw.odds_api_player_points_props, processor: OddsApiPropsProcessor}
      - {id: pbp, table: nba_raw.nbac_play_by_play, processor: NbacPlayByPlayProcessor}
  - name: analytics
    tables:
      - {id: pgs, table: nba_analytics.player_game_summary, processor: PlayerGameSummaryProcessor}
"""


class ProductionHistory:
    """Writes runs the way production's processors do: `running`, then the final row."""

    def __init__(self, con) -> None:
        self.con, self.n = con, 0

    def run(
        self,
        processor: str,
        d: date,
        status: str,
        *,
        records: int = 0,
        error: tuple[str, str] | None = None,
        category: str | None = None,
        skip: str | None = None,
        range_: tuple[date, date] | None = None,
        started: datetime | None = None,
        no_error: str | None = "[]",
    ) -> None:
        """`no_error` is what the final row's `errors` holds without an `error`: an empty list
        (production's), 'null' (JSON null) or None (NULL)."""
        self.n += 1
        started = started or datetime(2025, 11, 20, 1, 0) + timedelta(minutes=self.n)
        errors = (
            json.dumps([{"error_type": error[0], "error_message": error[1], "timestamp": started.isoformat()}])
            if error
            else no_error
        )
        first, last = range_ or (None, None)
        row = (
            "INSERT INTO nba_reference.processor_run_history (processor_name, run_id, phase, data_date, "
            "date_range_filter_start, date_range_filter_end, status, started_at, processed_at, duration_seconds, "
            "records_processed, errors, failure_category, skipped, skip_reason, retry_attempt, backfill_mode, "
            "trigger_source) VALUES (?, ?, 'phase_x', ?, ?, ?, ?, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ, ?, ?, ?::JSON, ?, ?, ?, 1, TRUE, 'manual')"
        )
        run_id = f"{processor}_{d:%Y%m%d}_{self.n:08x}"
        at = f"{started.isoformat()}+00:00"
        self.con.execute(
            row, [processor, run_id, d, first, last, "running", at, None, None, None, "[]", None, False, None]
        )
        if status != "running":
            done = f"{(started + timedelta(seconds=75)).isoformat()}+00:00"
            self.con.execute(
                row,
                [
                    processor,
                    run_id,
                    d,
                    first,
                    last,
                    status,
                    at,
                    done,
                    75.0,
                    records,
                    errors,
                    category,
                    status == "skipped",
                    skip,
                ],
            )


def production_warehouse(directory):
    import duckdb

    path = directory / "prod.duckdb"
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    for schema in ("nba_raw", "nba_analytics", "nba_reference"):
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute("CREATE TABLE nba_raw.nbac_schedule (game_id VARCHAR, game_date DATE, game_status BIGINT)")
    for table in (
        "nba_raw.odds_api_player_points_props",
        "nba_raw.nbac_play_by_play",
        "nba_analytics.player_game_summary",
    ):
        con.execute(f"CREATE TABLE {table} (game_date DATE, player_lookup VARCHAR)")
    con.execute(f"CREATE TABLE nba_reference.processor_run_history ({PRODUCTION_HISTORY})")
    (directory / "prod.yaml").write_text(PRODUCTION_SPEC)
    return con, path


def copy_to_emulator(directory, con, request, monkeypatch) -> None:
    import tempfile
    from pathlib import Path

    from backfill_kit.demo.load import copy_table, with_warehouse
    from backfill_kit.warehouse.bigquery import BigQueryWarehouse

    emulator = request.getfixturevalue("bigquery_emulator")
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", emulator.url)
    project = emulator.new_project()
    wh = BigQueryWarehouse(emulator.client(project))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in (
                "nba_raw.nbac_schedule",
                "nba_raw.odds_api_player_points_props",
                "nba_raw.nbac_play_by_play",
                "nba_analytics.player_game_summary",
                "nba_reference.processor_run_history",
            ):
                partition = "data_date" if name.startswith("nba_reference") else "game_date"
                copy_table(con, wh, name, Path(tmp), partition_column=partition)
    finally:
        wh.close()
    spec = directory / "prod.yaml"
    spec.write_text(with_warehouse(PRODUCTION_SPEC, ["backend: bigquery", f"project: {project}"]))


def test_a_warehouse_shaped_like_production_reads_right(tmp_path, backend, request, monkeypatch):
    con, _ = production_warehouse(tmp_path)
    d = [date(2024, 1, 8) + timedelta(i) for i in range(7)]
    for day in d:
        con.execute("INSERT INTO nba_raw.nbac_schedule VALUES (?, ?, 3), (?, ?, 3)", [f"{day}-1", day, f"{day}-2", day])
    con.execute("INSERT INTO nba_raw.odds_api_player_points_props VALUES (?, 'x')", [d[0]])
    con.execute("INSERT INTO nba_analytics.player_game_summary VALUES (?, 'x')", [d[5]])
    h = ProductionHistory(con)
    h.run("OddsApiPropsProcessor", d[0], "success", records=1)
    h.run(
        "OddsApiPropsProcessor",
        d[1],
        "failed",
        category="no_data_available",
        error=("NoDataAvailableError", "no props for the date"),
    )
    h.run("OddsApiPropsProcessor", d[2], "failed", category="timeout", error=("TimeoutError", "read timed out"))
    h.run("OddsApiPropsProcessor", d[3], "skipped", skip="already_processed")
    h.run("OddsApiPropsProcessor", d[4], "SUCCESS")
    h.run("NbacPlayByPlayProcessor", d[0], "running", started=datetime(2025, 11, 1))  # crashed
    h.run("NbacPlayByPlayProcessor", d[1], "skipped", skip="no_data")
    # Phase 3 range runs: one row for the whole range, dated at its end; the second ends after the range.
    h.run(
        "PlayerGameSummaryProcessor",
        d[4],
        "failed",
        category="upstream_failure",
        range_=(d[0], d[4]),
        error=("DependencyError", "nba_raw.nbac_gamebook_player_stats is 700 days old"),
    )
    h.run(
        "PlayerGameSummaryProcessor", d[6] + timedelta(10), "success", records=280, range_=(d[5], d[6] + timedelta(10))
    )
    if backend == "bigquery":
        copy_to_emulator(tmp_path, con, request, monkeypatch)
    con.close()
    result = validate(load_spec(tmp_path / "prod.yaml"), d[0], d[-1], now=datetime(2025, 11, 30))
    got = {(c.table, (c.date - d[0]).days): (str(c.status), c.last_error) for c in result.cells}
    assert got == {
        ("odds", 0): ("complete", None),
        ("odds", 1): ("no_data", "NoDataAvailableError: no props for the date"),
        ("odds", 2): ("failed", "TimeoutError: read timed out"),
        ("odds", 3): ("never_ran", None),
        ("odds", 4): ("never_ran", None),
        ("odds", 5): ("never_ran", None),
        ("odds", 6): ("never_ran", None),
        ("pbp", 0): ("stale", None),
        ("pbp", 1): ("no_data", None),
        **{("pbp", i): ("never_ran", None) for i in range(2, 7)},
        **{
            ("pgs", i): ("failed", "DependencyError: nba_raw.nbac_gamebook_player_stats is 700 days old")
            for i in range(5)
        },
        ("pgs", 5): ("complete", None),
        ("pgs", 6): ("no_data", None),
    }
    assert result.unmapped_statuses == {"SUCCESS": 1}
    assert result.run_history["no_data_reasons"] == {"failure_category no_data_available": 1, "skip_reason no_data": 1}
    assert result.run_history["dates_from_range_runs"] == 7
    stale = next(c for c in result.cells if c.table == "pbp" and c.date == d[0])
    assert stale.latest_started_at == datetime(2025, 11, 1)  # UTC, naive, on every backend


def test_a_failure_that_recorded_no_error_never_hides_an_earlier_message(tmp_path, backend, request, monkeypatch):
    """A retry that failed without a message ([], JSON null or NULL in `errors`) used to be the
    "last error" picked, so the cell showed none: the earlier failure's message was hidden,
    for a single date and for a range run's dates alike. A run with no error has none."""
    from backfill_kit.validation.validator import history_request
    from backfill_kit.warehouse import open_warehouse

    con, _ = production_warehouse(tmp_path)
    d = days(date(2024, 1, 8), 3)
    for day in d:
        con.execute("INSERT INTO nba_raw.nbac_schedule VALUES (?, ?, 3)", [f"{day}-1", day])
    h = ProductionHistory(con)
    h.run("OddsApiPropsProcessor", d[0], "failed", category="timeout", error=("HTTPError", "503 from the odds source"))
    for no_error in ("[]", "null", None):  # three later retries that recorded nothing
        h.run("OddsApiPropsProcessor", d[0], "failed", category="timeout", no_error=no_error)
    h.run("OddsApiPropsProcessor", d[1], "success", no_error="null")
    h.run("OddsApiPropsProcessor", d[2], "failed", category="timeout", no_error="null")
    h.run(
        "PlayerGameSummaryProcessor",
        d[2],
        "failed",
        range_=(d[0], d[2]),
        error=("DependencyError", "upstream is 700 days old"),
    )
    h.run("PlayerGameSummaryProcessor", d[2], "failed", range_=(d[0], d[2]), no_error="null")
    h.run("PlayerGameSummaryProcessor", d[1], "failed", no_error="[]")
    if backend == "bigquery":
        copy_to_emulator(tmp_path, con, request, monkeypatch)
    con.close()
    spec = load_spec(tmp_path / "prod.yaml")
    result = validate(spec, d[0], d[-1], now=datetime(2025, 11, 30))
    got = {(c.table, (c.date - d[0]).days): (str(c.status), c.failures, c.last_error) for c in result.cells}
    odds, pgs = "HTTPError: 503 from the odds source", "DependencyError: upstream is 700 days old"
    assert {k: v for k, v in got.items() if k[0] != "pbp"} == {
        ("odds", 0): ("failed", 4, odds),
        ("odds", 1): ("no_data", 0, None),
        ("odds", 2): ("failed", 1, None),
        ("pgs", 0): ("failed", 2, pgs),
        ("pgs", 1): ("failed", 3, pgs),
        ("pgs", 2): ("failed", 2, pgs),
    }
    wh = open_warehouse(spec)
    try:
        summaries = wh.run_summaries(history_request(spec), [t.processor for t in spec.tables], d[0], d[-1])
    finally:
        wh.close()
    # The error as the warehouse hands it over: JSON text, or None when nothing was recorded.
    assert {(s.processor, (s.date - d[0]).days): s.last_error is None for s in summaries} == {
        ("OddsApiPropsProcessor", 0): False,
        ("OddsApiPropsProcessor", 1): True,
        ("OddsApiPropsProcessor", 2): True,
        **{("PlayerGameSummaryProcessor", i): False for i in range(3)},
    }


def test_the_monitor_counts_a_range_run_per_date_and_no_data_as_done_not_failed(mini):
    from backfill_kit.monitor import take_snapshot

    for d in days(D1, 4):
        mini.games(d)
    with_ranges(mini).history_settings(REASONS)
    recently = NOW - timedelta(minutes=30)
    mini.run("SummaryProcessor", D1 + timedelta(2), "success", 9, range_=(D1, D1 + timedelta(2)), started=recently)
    mini.run("BoxscoreProcessor", D1, "failed", failure_category="no_data_available", started=recently)
    mini.run(
        "BoxscoreProcessor",
        D1 + timedelta(1),
        "failed",
        error='[{"error_type": "E", "error_message": "boom"}]',
        started=recently,
    )
    snap = take_snapshot(load_spec(mini.close()), D1, D1 + timedelta(3), now=NOW)
    assert snap.completed_in_window == 3 + 1
    assert [(f.table, f.date, f.error) for f in snap.failures] == [("boxscore", D1 + timedelta(1), "boom")]


def test_a_no_data_reason_without_values_is_a_spec_error_at_its_field(tmp_path):
    from backfill_kit.errors import SpecError

    mini = MiniWarehouse(tmp_path)
    mini.history_settings("  no_data_reasons: {failure_category: []}\n")
    with pytest.raises(SpecError) as info:
        load_spec(mini.close())
    (problem,) = info.value.problems
    assert problem.field == "run_history.no_data_reasons"
    assert "'failure_category' lists no values" in problem.message and problem.line == 20


@pytest.mark.parametrize("backend", ["duckdb"])
def test_a_missing_reason_or_range_column_is_named_at_its_spec_field(mini):
    from backfill_kit.errors import WarehouseMismatchError

    mini.games(D1)
    with_ranges(mini).history_settings("  no_data_reasons: {failure_reason: [none]}\n")
    mini.con.execute("ALTER TABLE ref.run_history DROP COLUMN date_range_filter_end")
    with pytest.raises(WarehouseMismatchError) as info:
        check(mini)
    assert {p.field for p in info.value.problems} == {
        "run_history.columns.range_end",
        "run_history.no_data_reasons.failure_reason",
    }
