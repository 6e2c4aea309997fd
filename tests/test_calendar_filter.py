"""calendar.filter: the one piece of SQL in a spec, accepted only as a condition on the
calendar table's own columns, refused at load otherwise, and run as it was checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MINI_SPEC, MiniWarehouse

from backfill_kit.cli.commands import cli
from backfill_kit.errors import SpecError
from backfill_kit.spec.calendar_filter import filter_problem
from backfill_kit.spec.load import parse_spec

MINI_FILTER = 'filter: "game_status = 3"'


def with_filter(text: str, condition: str) -> str:
    assert MINI_FILTER in text
    return text.replace(MINI_FILTER, f"filter: {json.dumps(condition)}")


def validate_mini(spec: Path, *extra: str):
    args = ["validate", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", *extra]
    return CliRunner().invoke(cli, args)


def test_a_filter_reading_a_file_is_refused_before_any_query(mini: MiniWarehouse, tmp_path):
    """A filter calling read_csv used to run, and the file's lines came back in the error."""
    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nroot,hunter2-TOPSECRET\n")
    spec = mini.close()
    spec.write_text(with_filter(spec.read_text(), f"read_csv('{secret}') IS NOT NULL"))
    result = validate_mini(spec)
    assert result.exit_code == 2
    assert "calendar.filter: the function READ_CSV is not allowed" in result.output
    assert "TOPSECRET" not in result.output and "Traceback" not in result.output


REFUSED = {
    "a subquery": ("game_id IN (SELECT game_id FROM raw.boxscore)", "a subquery is not allowed"),
    "a scalar subquery": ("game_status = (SELECT max(game_status) FROM raw.schedule)", "a subquery is not allowed"),
    "a table function": ("EXISTS (SELECT * FROM read_parquet('x.parquet'))", "is not allowed"),
    "an unknown function": ("getenv('HOME') = '/root'", "the function GETENV is not allowed"),
    "a second statement": ("game_status = 3; DROP TABLE raw.schedule", "one condition only"),
    "a comment cutting the query": ("game_status = 3 --", "comments are not allowed"),
    "a block comment": ("game_status = 3 /* x */", "comments are not allowed"),
    "another table's column": ("boxscore.team = 'BOS'", "name the calendar table's columns alone"),
    "not a condition": ("game_status + 1", "is not a condition"),
    "broken SQL": ("game_status = = 3", "not a valid SQL condition"),
    "an unbalanced parenthesis": ("game_status = 3) OR (1 = 1", "not a valid SQL condition"),
    "too long": ("game_status = 3" + " OR game_status = 3" * 200, "longer than 2000 characters"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_anything_but_a_condition_on_the_calendar_is_refused_at_load(tmp_path, case):
    condition, reason = REFUSED[case]
    path = tmp_path / "mini.yaml"
    with pytest.raises(SpecError) as info:
        parse_spec(with_filter(MINI_SPEC, condition), path)
    (problem,) = info.value.problems
    assert (problem.field, problem.line) == ("calendar.filter", MINI_SPEC.splitlines().index(f"  {MINI_FILTER}") + 1)
    assert reason in problem.message


def test_a_bad_filter_is_reported_with_the_other_problems(tmp_path):
    text = with_filter(MINI_SPEC, "getenv('HOME') = '/root'").replace("stale_after_hours: 6", "stale_after_hours: -1")
    with pytest.raises(SpecError) as info:
        parse_spec(text, tmp_path / "mini.yaml")
    assert {p.field for p in info.value.problems} == {"run_history.stale_after_hours", "calendar.filter"}


ACCEPTED = [
    "game_status = 3",
    "game_status <> 2 AND game_id IS NOT NULL",
    "game_status IN (2, 3) OR NOT (game_id LIKE '001%')",
    "game_status BETWEEN 2 AND 3",
    "substr(game_id, 1, 3) IN ('002', '004', '005')",  # the example spec's
    "lower(trim(game_id)) LIKE 'x%' AND length(game_id) > 3",
    "coalesce(game_status, 0) * 2 - 1 > abs(-3)",
    "CAST(game_status AS INT) = 3 AND game_date >= DATE '2024-01-01'",
    "EXTRACT(month FROM game_date) <> 2",
]


@pytest.mark.parametrize("condition", ACCEPTED)
@pytest.mark.parametrize("dialect", ["duckdb", "bigquery"])
def test_conditions_on_the_calendar_columns_are_accepted(condition, dialect):
    assert filter_problem(condition, dialect) is None


def test_the_query_runs_the_filter_as_checked(mini: MiniWarehouse):
    mini.games(date(2024, 1, 10), 2).games(date(2024, 1, 11), 1, status=1).games(date(2024, 1, 12), 1, status=2)
    spec = mini.close()
    spec.write_text(with_filter(spec.read_text(), "game_status != 1 AND game_status IN (2, 3)"))
    result = validate_mini(spec, "--format", "json")
    data = json.loads(result.output)
    assert data["expected_dates"] == 2  # the 11th's only game is not counted
    (calendar_sql,) = [q["sql"] for q in data["queries"] if q["purpose"] == "calendar"]
    assert "(game_status <> 1 AND game_status IN (2, 3))" in calendar_sql  # sqlglot's text, not the spec's


def test_a_filter_the_warehouse_refuses_is_named_with_its_file_and_text(mini: MiniWarehouse):
    """A well-formed filter can still fail as a query (a text compared with a number): the
    message names the spec, the field and the filter, the likeliest culprit."""
    mini.games(date(2024, 1, 10))
    spec = mini.close()
    spec.write_text(with_filter(spec.read_text(), "game_status = 'final'"))
    result = validate_mini(spec)
    assert result.exit_code == 2
    assert f"{spec}: calendar.filter: DuckDB refused the calendar query, which includes this filter" in result.output
    assert "\"game_status = 'final'\"" in result.output and "Traceback" not in result.output


def test_a_column_the_calendar_lacks_is_named(mini: MiniWarehouse):
    spec = mini.close()
    spec.write_text(with_filter(spec.read_text(), "game_status = 3 AND game_state = 'final'"))
    result = validate_mini(spec)
    assert result.exit_code == 2
    assert "calendar.filter: table raw.schedule has no column 'game_state'; fix the column name" in result.output


def test_sqlglot_is_imported_only_for_a_spec_with_a_filter(tmp_path):
    without = tmp_path / "plain.yaml"
    without.write_text(MINI_SPEC.replace(f"  {MINI_FILTER}\n", ""))
    with_one = tmp_path / "filtered.yaml"
    with_one.write_text(MINI_SPEC)
    code = (
        "import sys; from backfill_kit.spec.load import load_spec; load_spec(sys.argv[1]); "
        "print('sqlglot' in sys.modules)"
    )
    env = {**os.environ, "BACKFILL_KIT_CACHE_DIR": str(tmp_path / "cache")}
    # The second load of the filtered spec is served by the user's cache: no parser at all.
    for path, imported in ((without, "False"), (with_one, "True"), (with_one, "False")):
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True, env=env
        )
        assert out.stdout.strip() == imported
