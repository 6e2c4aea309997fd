"""The command line as a user meets it: exit codes, output formats, one clear message on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MiniWarehouse

from backfill_kit.cli.commands import cli

D1 = date(2024, 1, 10)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(directory.rglob("*"))}


@pytest.fixture
def spec(mini: MiniWarehouse) -> Path:
    for d in (D1, date(2024, 1, 11)):
        mini.games(d, 2).rows("raw.boxscore", d, 4).run("BoxscoreProcessor", d, "success", 4)
    mini.run("PropsProcessor", D1, "failed", error="HTTP 500 from the odds API")
    return mini.close()


def validate_args(spec: Path, *extra: str) -> list[str]:
    return [
        "validate",
        "--spec",
        str(spec),
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
        "--now",
        "2024-04-10T00:00:00",
        *extra,
    ]


def test_table_output_says_what_to_do_and_exits_1_on_gaps(spec):
    result = invoke(*validate_args(spec))
    assert result.exit_code == 1
    assert "mini: 2024-01-01 .. 2024-01-31, 2 expected dates, 5 tables, 3 warehouse queries" in result.output
    lines = result.output.splitlines()
    # "% complete" and "% done" side by side, per table and for each phase's slowest table.
    assert lines[1].split()[-4:] == ["%", "complete", "%", "done"]
    assert any(line.startswith("  boxscore") and line.split()[-2:] == ["100%", "100%"] for line in lines)
    # A phase is as far along as its slowest table: props has nothing done yet.
    assert "Phases (a phase is as far along as its slowest table)" in result.output
    phases = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] in (["raw"], ["analytics"])}
    assert phases["raw"] == ["0.0%", "0.0%", "props", "4", "1"]  # % complete, % done, slowest, remaining, failed
    assert "Next: 8 cells need a backfill (failed 1, never_ran 7); start with phase 'raw'" in result.output


def test_one_of_anything_is_said_in_the_singular(spec):
    """'1 tables', '1 cells', 'running 1 steps': a count and its noun agree everywhere."""
    from backfill_kit.common.formatting import plural

    assert (plural(1, "table"), plural(2, "table"), plural(1_234, "cell")) == ("1 table", "2 tables", "1,234 cells")
    assert plural(1, "query", "queries") == "1 query" and plural(3, "query", "queries") == "3 queries"
    result = invoke(*validate_args(spec, "--table", "props"))
    assert ", 2 expected dates, 1 table, 3 warehouse queries in " in result.output
    assert "Failures (1 cell), each with its last error" in result.output
    assert "Next: 2 cells need a backfill (failed 1, never_ran 1)" in result.output


def test_exit_0_when_nothing_needs_work(spec):
    assert invoke(*validate_args(spec, "--table", "boxscore")).exit_code == 0


def test_json_has_cells_summary_and_the_queries_issued(spec):
    result = invoke(*validate_args(spec, "--format", "json"))
    data = json.loads(result.output)
    assert result.exit_code == 1
    props = next(c for c in data["cells"] if c["table"] == "props" and c["date"] == "2024-01-10")
    assert (props["status"], props["rows"], props["last_error"]) == ("failed", 0, "HTTP 500 from the odds API")
    assert data["summary"]["statuses"] == {"complete": 2, "failed": 1, "never_ran": 7}
    assert [q["purpose"] for q in data["queries"]] == ["calendar", "coverage", "run_history"]
    assert all(q["sql"].startswith(("SELECT", "WITH")) for q in data["queries"])


def test_json_cells_are_one_per_line_and_ascii_whatever_the_error_text(mini):
    # An error quoting JSON and non-ASCII text: the writer must neither split a cell inside it
    # nor fail on a terminal that only takes ASCII.
    error = 'bad payload [{"id": 1},{"table": "x"}] from café ✓ 😀'
    mini.games(D1, 1).run("PropsProcessor", D1, "failed", error=error)
    args = validate_args(mini.close(), "--format", "json", "--table", "props")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "backfill-kit"), *args],
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert done.returncode == 1, done.stderr
    text = done.stdout.decode("ascii")
    cell_lines = [line for line in text.splitlines() if line.startswith('    {"table":')]
    assert [json.loads(line.rstrip(","))["table"] for line in cell_lines] == ["props"]
    (cell,) = json.loads(text)["cells"]
    assert (cell["status"], cell["last_error"], cell["date"]) == ("failed", error, "2024-01-10")


def test_csv_is_one_row_per_cell(spec):
    lines = invoke(*validate_args(spec, "--format", "csv")).output.splitlines()
    assert lines[0].startswith("table,phase,date,season,status,rows")
    assert len(lines) == 1 + 2 * 5


BAD_INPUT = {
    "reversed range": (
        ["--start", "2024-02-01", "--end", "2024-01-01"],
        "the date range is reversed: --start 2024-02-01 is after --end 2024-01-01",
    ),
    "malformed date": (
        ["--start", "2024-13-01", "--end", "2024-01-31"],
        "'2024-13-01' is not a date; write it as YYYY-MM-DD",
    ),
    "compact date": (
        ["--start", "20240101", "--end", "2024-01-31"],
        "'20240101' is not a date; write it as YYYY-MM-DD",
    ),
    "unknown table": (
        ["--start", "2024-01-01", "--end", "2024-01-31", "--table", "boxscores"],
        "unknown table 'boxscores'",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_arguments_get_one_message_and_exit_2(spec, case):
    args, message = BAD_INPUT[case]
    before = snapshot(spec.parent)
    result = invoke("validate", "--spec", str(spec), *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert snapshot(spec.parent) == before


SPEC_EDITS = {
    "unknown spec field": (
        ("    tables:\n      - {id: boxscore,", "    workers: 3\n    tables:\n      - {id: boxscore,"),
        "phases[0].workers: unknown field",
    ),
    "undefined dependency": (
        ("depends_on: [boxscore]", "depends_on: [boxscroe]"),
        "depends on undefined table 'boxscroe'",
    ),
    "dependency cycle": (
        ("processor: BoxscoreProcessor,", "processor: BoxscoreProcessor, depends_on: [boxscore],"),
        "dependency cycle: boxscore -> boxscore",
    ),
    "missing table": (
        ("table: raw.props,", "table: raw.odds_props,"),
        "phases[0].tables[1].table: table raw.odds_props does not exist in the warehouse",
    ),
    "missing date column": (
        ("date_column: cache_date", "date_column: cached_on"),
        "phases[1].tables[1].date_column: table analytics.cache has no column 'cached_on'",
    ),
    "missing warehouse file": (("path: mini.duckdb", "path: elsewhere.duckdb"), "warehouse.path: the DuckDB file"),
}


@pytest.mark.parametrize("case", SPEC_EDITS)
def test_a_broken_spec_gets_one_message_naming_the_field_and_exit_2(spec, case):
    (old, new), message = SPEC_EDITS[case]
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))
    before = snapshot(spec.parent)
    result = invoke(*validate_args(spec))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    assert message in result.output
    assert str(spec) in result.output
    assert snapshot(spec.parent) == before


def test_help_loads_no_heavy_module():
    code = (
        "import sys; from backfill_kit.cli.commands import main; sys.argv = ['backfill-kit', '--help']\n"
        "try: main()\nexcept SystemExit: pass\n"
        "print(sorted(m for m in ('duckdb', 'pydantic', 'sqlglot', 'orjson', 'rich', 'pandas', 'yaml', 'plotly', 'papermill', 'nbconvert', 'nbformat', 'ipywidgets', 'IPython') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_validation_never_imports_a_database_client():
    code = "import sys, backfill_kit.validation.validator, backfill_kit.validation.calendar; print('duckdb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_pointer_to_failed_cells_errors_appears_only_when_a_cell_failed(spec):
    """It was printed after every gap list, failures or not."""
    with_failure = invoke(*validate_args(spec))
    assert with_failure.output.rstrip().endswith("Failed cells: see last_error in --format json.")
    for table in ("props", "backup_props", "summary", "cache"):
        result = invoke(*validate_args(spec, "--table", table))
        if result.exit_code == 1 and "failed" not in result.output.rsplit("Next:", 1)[1]:
            assert "Failed cells" not in result.output
            break
    else:
        pytest.fail("no table with gaps and no failure in the mini warehouse")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("output", [[], ["--format", "json"], ["--format", "csv"]])
def test_output_to_a_full_disk_is_one_message_not_a_traceback(spec, output):
    """`validate > /dev/full` (a cron job's log on a full disk) ended in an OSError traceback."""
    kit = str(Path(sys.executable).parent / "backfill-kit")
    with open("/dev/full", "w") as full:
        result = subprocess.run([kit, *validate_args(spec, *output)], stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 1
    assert result.stderr == "error: No space left on device: free some space, then run the command again\n"
