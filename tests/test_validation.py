"""Every status, proved on hand-built warehouses: each test runs on DuckDB and on BigQuery
(the emulator, through the real client); the test bodies know nothing of the backend."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import NOW, MiniWarehouse

from backfill_kit import Status, load_spec, validate
from backfill_kit.errors import InputError, WarehouseMismatchError

D1 = date(2024, 1, 10)  # mid-season 1, outside the bootstrap window


@pytest.fixture(params=["duckdb", "bigquery"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def check(mini: MiniWarehouse, start: date = date(2024, 1, 1), end: date = date(2024, 3, 31), **kw):
    return validate(load_spec(mini.close()), start, end, now=NOW, **kw)


def cell(result, table: str, d: date = D1):
    (found,) = [c for c in result.cells if c.table == table and c.date == d]
    return found


def test_complete_at_the_minimum_partial_below_it(mini):
    mini.games(D1, 8).rows("raw.boxscore", D1, 16)
    mini.games(D1 + timedelta(1), 8).rows("raw.boxscore", D1 + timedelta(1), 2)
    result = check(mini)
    assert cell(result, "boxscore").status is Status.COMPLETE
    partial = cell(result, "boxscore", D1 + timedelta(1))
    assert (partial.status, partial.rows, partial.expected_rows) == (Status.PARTIAL, 2, 16)


def test_never_ran_without_rows_or_records(mini):
    mini.games(D1)
    c = cell(check(mini), "boxscore")
    assert (c.status, c.attempts, c.latest_status) == (Status.NEVER_RAN, 0, None)


def test_the_two_rows_of_one_run_count_as_one_attempt(mini):
    mini.games(D1).rows("raw.boxscore", D1, 2).run("BoxscoreProcessor", D1, "success", 2)
    c = cell(check(mini), "boxscore")
    assert (c.status, c.attempts, c.failures, c.latest_status) == (Status.COMPLETE, 1, 0, "success")


def test_a_retry_after_a_failure_keeps_the_failure_in_the_evidence(mini):
    mini.games(D1).rows("raw.boxscore", D1, 2)
    mini.run("BoxscoreProcessor", D1, "failed", error='[{"error_message": "HTTP 503"}]')
    mini.run("BoxscoreProcessor", D1, "success", 2)
    c = cell(check(mini), "boxscore")
    assert (c.status, c.attempts, c.failures, c.latest_status) == (Status.COMPLETE, 2, 1, "success")
    assert "HTTP 503" in c.last_error


def test_a_failure_after_a_success_that_removed_the_rows_is_failed_not_lost(mini):
    mini.games(D1).run("BoxscoreProcessor", D1, "success", 2).run("BoxscoreProcessor", D1, "failed", error="boom")
    c = cell(check(mini), "boxscore")
    assert (c.status, c.attempts, c.failures, c.last_error) == (Status.FAILED, 2, 1, "boom")


def test_a_failure_after_a_success_that_kept_the_rows_is_complete(mini):
    mini.games(D1).rows("raw.boxscore", D1, 2)
    mini.run("BoxscoreProcessor", D1, "success", 2).run("BoxscoreProcessor", D1, "failed", error="boom")
    c = cell(check(mini), "boxscore")
    assert (c.status, c.latest_status, c.failures) == (Status.COMPLETE, "failed", 1)


def test_no_data_names_the_fallback_that_covers_the_date(mini):
    mini.games(D1).games(D1 + timedelta(1))
    for d in (D1, D1 + timedelta(1)):
        mini.run("PropsProcessor", d, "success", 0)
    mini.rows("raw.backup_props", D1, 5)
    result = check(mini)
    covered, uncovered = cell(result, "props"), cell(result, "props", D1 + timedelta(1))
    assert (covered.status, covered.fallback) == (Status.NO_DATA, "backup_props")
    assert (uncovered.status, uncovered.fallback) == (Status.NO_DATA, None)


def test_skipped_for_no_data_is_no_data(mini):
    mini.games(D1).run("PropsProcessor", D1, "skipped", 0)
    assert cell(check(mini), "props").status is Status.NO_DATA


def test_lost_when_a_success_wrote_rows_that_are_gone(mini):
    mini.games(D1).run("BoxscoreProcessor", D1, "success", 16)
    c = cell(check(mini), "boxscore")
    assert (c.status, c.rows) == (Status.LOST, 0)


def test_running_when_young_stale_when_old(mini):
    young, old = D1, D1 + timedelta(1)
    mini.games(young).games(old)
    mini.run("BoxscoreProcessor", young, "running", started=NOW - timedelta(minutes=30))
    mini.run("BoxscoreProcessor", old, "running", started=NOW - timedelta(hours=7))
    result = check(mini)
    assert cell(result, "boxscore", young).status is Status.RUNNING
    assert cell(result, "boxscore", old).status is Status.STALE


def test_an_orphaned_run_after_a_failure_is_stale(mini):
    mini.games(D1).run("BoxscoreProcessor", D1, "failed", error="x")
    mini.run("BoxscoreProcessor", D1, "running", started=NOW - timedelta(days=3))
    c = cell(check(mini), "boxscore")
    assert (c.status, c.attempts, c.failures) == (Status.STALE, 2, 1)


def test_bootstrap_boundaries_at_each_season_start(mini):
    for season_start in (date(2024, 1, 1), date(2024, 3, 1)):
        for offset in range(3):
            mini.games(season_start + timedelta(offset))
    result = check(mini)
    for season_start in (date(2024, 1, 1), date(2024, 3, 1)):
        statuses = [cell(result, "summary", season_start + timedelta(i)).status for i in range(3)]
        assert statuses == [Status.BOOTSTRAP, Status.BOOTSTRAP, Status.NEVER_RAN]
        assert cell(result, "boxscore", season_start).status is Status.NEVER_RAN  # raw has no bootstrap


def test_off_days_are_not_expected(mini):
    on_days = [date(2024, 1, 10), date(2024, 1, 12)]  # Jan 11 is an off day
    for d in on_days:
        mini.games(d).rows("raw.boxscore", d, 2)
    mini.games(date(2024, 1, 11), status=1)  # scheduled, never played: not final
    mini.games(date(2024, 2, 10))  # between seasons: not expected
    result = check(mini, date(2024, 1, 9), date(2024, 2, 28), tables=["boxscore"])
    assert [c.date for c in result.cells] == on_days
    assert result.summary()[0].percent_complete == 100.0
    assert not result.needs_work


def test_a_repeated_schedule_row_counts_its_game_once(mini):
    mini.games(D1, 1).con.execute("INSERT INTO raw.schedule VALUES (?, ?, 3)", [f"{D1}-0", D1])
    mini.rows("raw.boxscore", D1, 2)
    c = cell(check(mini), "boxscore")
    assert (c.status, c.expected_rows) == (Status.COMPLETE, 2)


def test_a_table_whose_date_column_is_not_game_date(mini):
    mini.games(D1).rows("analytics.cache", D1, 1)
    assert cell(check(mini), "cache").status is Status.COMPLETE


def test_a_table_with_no_rows_at_all(mini):
    mini.games(D1).games(D1 + timedelta(1))
    result = check(mini, tables=["cache"])
    assert {c.status for c in result.cells} == {Status.NEVER_RAN}
    assert len(result.cells) == 2


def test_rows_built_on_an_empty_upstream_are_flagged(mini):
    mini.games(D1).rows("analytics.summary", D1, 3)
    assert cell(check(mini), "summary").warnings == ("built on empty upstream boxscore",)


def test_no_data_read_before_the_upstream_had_its_rows_needs_a_backfill(mini):
    """A dependent ran while its upstream date was empty and wrote nothing (success, 0 records);
    the upstream was repaired since. Its "no data" is no evidence: the date needs a run again.
    A dependent run after the upstream's rows is believed."""
    early, repaired, late = (datetime(2024, 1, 11, h) for h in (1, 3, 5))
    mini.games(D1).games(D1 + timedelta(1))
    for d in (D1, D1 + timedelta(1)):
        mini.rows("raw.boxscore", d, 2).run("BoxscoreProcessor", d, "success", 2, started=repaired)
    mini.run("SummaryProcessor", D1, "success", 0, started=early)
    mini.run("SummaryProcessor", D1 + timedelta(1), "success", 0, started=late)
    result = check(mini)
    stale_read, believed = cell(result, "summary"), cell(result, "summary", D1 + timedelta(1))
    assert (stale_read.status, stale_read.latest_status, stale_read.attempts) == (Status.NEVER_RAN, "success", 1)
    assert stale_read.warnings == (
        "read no data before upstream boxscore had its rows (written by its run of 2024-01-11 03:02 UTC)",
    )
    assert (believed.status, believed.warnings) == (Status.NO_DATA, ())
    only_summary = check(mini, tables=["summary"])  # the upstream's runs are read for it all the same
    assert cell(only_summary, "summary").status is Status.NEVER_RAN
    assert only_summary.run_history["attempts"] == 2  # and counted as the summary's own history, not at all


def test_an_unknown_final_status_is_not_read_as_no_data_nor_as_failed(mini):
    mini.games(D1).run("BoxscoreProcessor", D1, "cancelled")
    result = check(mini)
    assert cell(result, "boxscore").status is Status.NEVER_RAN  # no evidence: the backfill reruns it
    assert result.unmapped_statuses == {"cancelled": 1}


def test_a_whole_validation_costs_three_queries(mini):
    for i in range(20):
        mini.games(D1 + timedelta(i), 3).run("BoxscoreProcessor", D1 + timedelta(i), "failed")
    result = check(mini)
    assert [q.purpose for q in result.queries] == ["calendar", "coverage", "run_history"]
    assert len(result.cells) == 20 * 5


def test_a_reversed_range_is_refused(mini):
    with pytest.raises(InputError, match="reversed"):
        check(mini, date(2024, 3, 1), date(2024, 1, 1))


def test_an_unknown_table_is_refused_naming_the_declared_ones(mini):
    with pytest.raises(InputError, match=r"unknown table 'nope'.*declared tables: boxscore"):
        check(mini, tables=["nope"])


def test_missing_tables_and_columns_are_all_reported_at_their_spec_fields(mini):
    mini.con.execute("DROP TABLE raw.props; ALTER TABLE analytics.cache RENAME COLUMN cache_date TO d")
    with pytest.raises(WarehouseMismatchError) as info:
        check(mini)
    fields = {p.field: p.message for p in info.value.problems}
    assert fields == {
        "phases[0].tables[1].table": "table raw.props does not exist in the warehouse; create it or fix the name",
        "phases[1].tables[1].date_column": "table analytics.cache has no column 'cache_date'; fix the column name",
    }
    # Each at its line, as the loader's own problems are: the table's entry in the spec file.
    text = Path(info.value.problems[0].file).read_text().splitlines()
    lines = {p.field: p.line for p in info.value.problems}
    assert lines == {
        "phases[0].tables[1].table": next(i for i, row in enumerate(text, 1) if "id: props," in row),
        "phases[1].tables[1].date_column": next(i for i, row in enumerate(text, 1) if "id: cache," in row),
    }


def test_stale_threshold_is_measured_from_now(mini):
    mini.games(D1).run("BoxscoreProcessor", D1, "running", started=datetime(2024, 4, 10, 8, 0))
    spec = load_spec(mini.close())
    at = lambda hour: validate(spec, D1, D1, now=datetime(2024, 4, 10, hour), tables=["boxscore"]).cells[0].status  # noqa: E731
    assert (at(13), at(14), at(15)) == (Status.RUNNING, Status.STALE, Status.STALE)
