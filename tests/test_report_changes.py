"""What a coverage report says changed since the previous one of the same pipeline and range:
the comparison on real DuckDB validations, and `report coverage` twice with rows deleted between."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pytest
from click.testing import CliRunner
from conftest import MiniWarehouse

from backfill_kit.cli.commands import cli
from backfill_kit.reports.changes import cell_states, changes_between
from backfill_kit.spec.load import load_spec
from backfill_kit.validation.validator import validate

DAYS = [date(2024, 1, d) for d in range(10, 14)]


def build(mini: MiniWarehouse) -> MiniWarehouse:
    for d in DAYS:
        mini.games(d, 2).rows("raw.boxscore", d, 4).run("BoxscoreProcessor", d, "success", 4)
    mini.run("PropsProcessor", DAYS[1], "success", 0).rows("raw.backup_props", DAYS[1], 3)  # no data, covered
    return mini


def states(spec):
    return cell_states(validate(load_spec(spec), date(2024, 1, 1), date(2024, 1, 31)).cells)


def test_lost_rows_a_new_failure_and_a_fix_are_told_apart(mini):
    spec = build(mini).close()
    before = states(spec)
    with duckdb.connect(str(mini.dir / "mini.duckdb")) as con:
        con.execute("DELETE FROM raw.boxscore WHERE game_date = ?", [DAYS[0]])  # a partition expired
        con.execute("INSERT INTO raw.props SELECT ?, 'p' || i FROM range(5) t(i)", [DAYS[2]])  # a gap filled
    mini.con = duckdb.connect(str(mini.dir / "mini.duckdb"))
    mini._closed = False
    mini.run("PropsProcessor", DAYS[1], "failed", error="HTTP 500").close()  # no data, now failed
    changes = changes_between(before, states(spec), "coverage_before.html")
    assert [(c.table, c.date, c.before, c.after) for c in changes.no_longer_complete] == [
        ("boxscore", "2024-01-10", "complete", "lost")
    ]
    assert [(c.table, c.date, c.before, c.after) for c in changes.new_gaps] == [
        ("props", "2024-01-11", "no_data", "failed")
    ]
    assert [(c.table, c.date, c.before, c.after) for c in changes.fixed] == [
        ("props", "2024-01-12", "never_ran", "complete")
    ]
    assert changes.summary() == "since coverage_before.html: 1 cell no longer complete, 1 new gap, 1 fixed"


@pytest.mark.slow  # two papermill kernels
def test_report_coverage_compares_with_the_previous_report_and_fails_on_lost_cells(mini, tmp_path):
    spec = build(mini).close()
    out = tmp_path / "reports"
    args = [
        "report",
        "coverage",
        "--spec",
        str(spec),
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
        "--out-dir",
        str(out),
    ]
    first = CliRunner().invoke(cli, [*args, "--fail-if-no-longer-complete"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "changes:  no earlier report of this pipeline and range to compare with" in first.output
    with duckdb.connect(str(mini.dir / "mini.duckdb")) as con:
        con.execute("DELETE FROM raw.boxscore WHERE game_date = ?", [DAYS[3]])
    told = CliRunner().invoke(cli, args, catch_exceptions=False)  # without the flag: told, exit 0
    assert told.exit_code == 0 and "no longer complete: boxscore 2024-01-13 (complete -> lost)" in told.output
    with duckdb.connect(str(mini.dir / "mini.duckdb")) as con:
        con.execute("DELETE FROM raw.boxscore WHERE game_date = ?", [DAYS[2]])
    failed = CliRunner().invoke(cli, [*args, "--fail-if-no-longer-complete"], catch_exceptions=False)
    assert failed.exit_code == 1
    assert "no longer complete: boxscore 2024-01-12 (complete -> lost)" in failed.output
    assert "2024-01-13" not in failed.output  # compared with the report before, where it was lost already
    _, second_html, third_html = sorted(out.glob("coverage_*.html"))
    assert f"Since {second_html.name}: 1 cell no longer complete, 0 new gaps, 0 fixed" in third_html.read_text()
    assert json.loads(third_html.with_suffix(".cells.json").read_text())["cells"]["boxscore"]["2024-01-12"] == "lost"
    assert "since the previous: 1 no longer complete" in (out / "index.html").read_text()
