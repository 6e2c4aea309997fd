"""Hostile inputs: every one ends in one message naming the file, line or field, exit 2, in
well under a second; never a traceback, a hang or a silently wrong value."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from deadline import ends_in_time
from plan_documents import PLAN, STEP, plan_with

from backfill_kit.demo import example_spec_text
from backfill_kit.errors import SpecError
from backfill_kit.spec.load import load_spec

EXAMPLE = example_spec_text()


def spec_problems(tmp_path: Path, content: str | bytes) -> list[str]:
    """The problems of a spec file holding `content`; loading must take well under a second."""
    path = tmp_path / "spec.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with ends_in_time(1.0), pytest.raises(SpecError) as info:
        load_spec(path)
    return [str(p).removeprefix(f"{path}:") for p in info.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(i for i, row in enumerate(text.splitlines(), 1) if needle in row)


# --- the spec file -------------------------------------------------------------------------


def test_a_misspelt_top_level_key_is_named_not_a_hang(tmp_path):
    text = EXAMPLE.replace("\nphases:", "\nphase:")
    assert spec_problems(tmp_path, text) == [
        " phases: required field is missing",
        f"{line_of(text, 'phase:')}: phase: unknown field; expected one of: name, warehouse, calendar, run_history, "
        "date_column, job_defaults, cascade, phases",
    ]


def test_a_file_holding_only_a_name_lists_what_is_missing(tmp_path):
    assert spec_problems(tmp_path, "name: x\n") == [
        f" {field}: required field is missing" for field in ("warehouse", "calendar", "run_history", "phases")
    ]


def test_a_300_byte_alias_bomb_is_refused_at_once(tmp_path):
    rows = ["a: &a [x,x,x,x,x,x,x,x,x]"]
    rows += [f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
    bomb = "\n".join(rows) + "\n"  # 9**9 = 387 million values once expanded
    assert len(bomb) < 350
    (problem,) = spec_problems(tmp_path, bomb)
    assert "more than 50,000 values once YAML aliases are expanded" in problem


def test_an_alias_that_refers_to_itself_is_refused(tmp_path):
    (problem,) = spec_problems(tmp_path, "name: &x [*x]\n")
    assert problem.startswith("1: nested deeper than 50 levels")


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path):
    assert spec_problems(tmp_path, EXAMPLE + "#" * (1 << 20)) == [
        " the file is larger than 1024 KiB; a spec is a few kilobytes of YAML"
    ]


def test_a_folder_or_a_pipe_is_not_read(tmp_path):
    import os

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # reading it would block until someone writes
    for path in (tmp_path, fifo):
        with pytest.raises(SpecError, match="not a regular file"):
            load_spec(path)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    text = EXAMPLE.replace("    max_workers: 5\n", "    max_workers: 5\n    max_workers: 1\n", 1)
    assert text != EXAMPLE
    first = line_of(text, "max_workers: 5")
    assert spec_problems(tmp_path, text) == [
        f"{first + 1}: phases[1].max_workers: the key 'max_workers' appears twice (first on line {first}); "
        "YAML would silently keep the last: keep one"
    ]


def test_a_spec_that_is_not_utf8(tmp_path):
    text = EXAMPLE.replace("name: nba_props", "name: nbä_props")
    (problem,) = spec_problems(tmp_path, text.encode("latin-1"))
    assert (
        problem
        == f"{line_of(text, 'nbä')}: not UTF-8 text (byte 0xe4 at offset {text.index('ä')}); save the file as UTF-8"
    )


def test_an_impossible_season_date_names_its_field(tmp_path):
    text = EXAMPLE.replace("start: 2021-10-19", "start: 2021-02-30", 1)
    assert text != EXAMPLE
    (problem,) = spec_problems(tmp_path, text)
    assert problem == (
        f"{line_of(text, '2021-02-30')}: calendar.seasons[0].start: Input should be a valid date or "
        "datetime, day value is outside expected range (got '2021-02-30')"
    )


def test_a_season_date_beyond_what_the_warehouses_represent(tmp_path):
    text = EXAMPLE.replace("end: 2022-06-16", "end: 9999-12-31", 1)
    assert text != EXAMPLE
    (problem,) = spec_problems(tmp_path, text)
    assert (
        "calendar.seasons[0].end: 9999-12-31 is outside the dates backfill-kit handles (1678-01-01 .. 2261-12-31)"
        in problem
    )


def test_identifiers_refuse_a_trailing_newline(tmp_path):
    text = EXAMPLE.replace("date_column: game_date", 'date_column: "game_date\\n"', 1)
    assert text != EXAMPLE
    problems = spec_problems(tmp_path, text)
    assert any("'game_date\\n' is not a valid column name" in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "field"),
    [('"--warehouse"', "job_defaults.argv"), ('"--skip-downstream-trigger"', "job_defaults.skip_downstream.args")],
)
def test_a_command_no_process_could_take_is_refused_at_load(tmp_path, old, field):
    """A NUL character in an argument made the runner crash at the first step."""
    assert old in EXAMPLE
    problems = spec_problems(tmp_path, EXAMPLE.replace(old, old[:-1] + '\\0"', 1))
    assert any(f"{field}: contains a NUL character" in p for p in problems), problems


@pytest.mark.parametrize("value", [".inf", ".nan", "1e300"])
def test_numbers_that_would_overflow_date_arithmetic(tmp_path, value):
    text = EXAMPLE.replace("stale_after_hours: 6", f"stale_after_hours: {value}", 1)
    assert text != EXAMPLE
    (problem,) = spec_problems(tmp_path, text)
    assert "run_history.stale_after_hours:" in problem


# --- command-line dates --------------------------------------------------------------------

DATED_COMMANDS = {
    "validate": ["validate", "--spec", "S"],
    "plan": ["plan", "--spec", "S"],
    "preflight": ["preflight", "--spec", "S"],
    "monitor": ["monitor", "--spec", "S"],
    "backfill": ["backfill", "--spec", "S", "--dry-run"],
    "report coverage": ["report", "coverage", "--spec", "S", "--out-dir", "R"],
    "demo load": ["demo", "load", "D", "--to", "bigquery", "--project", "some-project"],
}


def cli_run(tmp_path: Path, args: list[str]) -> Any:
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    spec = tmp_path / "spec.yaml"
    spec.write_text(EXAMPLE)
    names = {"S": str(spec), "R": str(tmp_path / "reports"), "D": str(tmp_path)}
    result = CliRunner().invoke(cli, [names.get(a, a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("command", DATED_COMMANDS)
@pytest.mark.parametrize("dates", [("2021-10-19", "9999-12-31"), ("0001-01-01", "2021-10-19")])
def test_dates_beyond_what_can_be_represented_are_one_message(tmp_path, command, dates):
    result = cli_run(tmp_path, [*DATED_COMMANDS[command], "--start", dates[0], "--end", dates[1]])
    assert result.exit_code == 2
    bad = dates[1] if dates[1].startswith("9999") else dates[0]
    assert f"{bad} is outside the dates backfill-kit handles (1678-01-01 .. 2261-12-31)" in result.output
    assert [p.name for p in tmp_path.rglob("*")] == ["spec.yaml"]  # nothing written


@pytest.mark.parametrize("command", DATED_COMMANDS)
def test_a_reversed_range_is_one_message(tmp_path, command):
    result = cli_run(tmp_path, [*DATED_COMMANDS[command], "--start", "2022-01-02", "--end", "2022-01-01"])
    assert result.exit_code == 2
    assert "the date range is reversed: --start 2022-01-02 is after --end 2022-01-01" in result.output
    assert [p.name for p in tmp_path.rglob("*")] == ["spec.yaml"]


@pytest.mark.parametrize(
    "option", [["--now", "9999-12-31T00:00:00"], ["--window-hours", "1e30"], ["--interval", "1e30"]]
)
def test_times_and_durations_are_bounded(tmp_path, option):
    command = "validate" if option[0] == "--now" else "monitor"
    result = cli_run(tmp_path, [*DATED_COMMANDS[command], "--start", "2022-01-01", "--end", "2022-01-02", *option])
    assert result.exit_code == 2
    assert f"Invalid value for '{option[0]}'" in result.output


# --- plan files ----------------------------------------------------------------------------


def run_plan(tmp_path: Path, content: str) -> Any:
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    path = tmp_path / "plan.json"
    path.write_text(content)
    result = CliRunner().invoke(cli, ["run", "--plan", str(path), "--ignore-preflight"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]  # nothing started, nothing written
    return result


BAD_PLANS = {
    "empty argv": (plan_with(step={"argv": []}), "step 'a:2024-01-02..2024-01-03': argv is empty: no command to run"),
    "a JSON list": ([PLAN], "not a backfill-kit plan (a JSON list, where a plan is a JSON object)"),
    "no worker": (plan_with(stage={"workers": 0}), "stage 1: workers is 0, a stage needs at least one"),
    "endless timeout": (plan_with(step={"timeout_seconds": 1e308}), "timeout_seconds is 1e+308"),
    "argv as text": (
        plan_with(step={"argv": "python3 -c pass"}),
        "stages[0].steps[0].argv: Input should be a valid tuple (got 'python3 -c pass')",
    ),
    "impossible date": (plan_with(start="2024-02-30"), "start: Input should be a valid date"),
    "date out of range": (plan_with(end="9999-12-31"), "9999-12-31 is outside the dates backfill-kit handles"),
    "reversed": (plan_with(start="2024-02-01"), "end 2024-01-31 is before start 2024-02-01"),
    "step twice": ({**PLAN, "stages": [{**PLAN["stages"][0], "steps": [STEP, STEP]}]}, "appears twice"),
    "another format": (plan_with(format=2), "format 2, expected 1"),
    "a NUL in argv": (plan_with(step={"argv": ["python3", "-c", "pass\u0000"]}), "its argv contains a NUL character"),
    "a bad variable name": (
        plan_with(step={"env": {"A=B": "1"}}),
        "its env an environment variable name is empty or contains '='",
    ),
}


@pytest.mark.parametrize("case", BAD_PLANS)
def test_a_bad_plan_file_is_one_message_naming_the_field(tmp_path, case):
    import json

    content, message = BAD_PLANS[case]
    result = run_plan(tmp_path, json.dumps(content))
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'plan.json'}")
    assert message in result.output


def test_the_sample_plan_is_good(tmp_path):
    import json

    from backfill_kit.plan import load_plan

    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    assert load_plan(tmp_path / "plan.json").stages[0].steps[0].argv == ("python3", "-c", "pass")


def test_a_file_of_another_kind_is_named(tmp_path):
    journal = '{"event": "run_started", "at": "2024-02-01T00:00:00+00:00", "plan": "plan.json"}\n'
    for content, kind in (
        (journal, "a runner journal"),
        (journal * 3, "a runner journal"),
        (EXAMPLE, "a pipeline spec (YAML); make a plan from it with backfill-kit plan --spec"),
        ('{"spec": "x", "cells": [], "summary": {}}', "validate's JSON output"),
        ("<!DOCTYPE html>\n<html></html>", "an HTML file"),
    ):
        result = run_plan(tmp_path, content)
        assert result.exit_code == 2
        assert f"{tmp_path / 'plan.json'}: not a plan file: this is {kind}" in result.output


def test_a_plan_that_is_not_utf8(tmp_path):
    (tmp_path / "plan.json").write_bytes(b'{"format": 1, "spec_name": "\xe9"}')
    from backfill_kit.errors import InputError
    from backfill_kit.plan import load_plan

    with pytest.raises(InputError, match=r"not a plan file \(not UTF-8 text: byte 0xe9 at offset 28\)"):
        load_plan(tmp_path / "plan.json")


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Any:
    """A folder holding the example spec that nobody may write to: by its mode for a normal
    user; for root (who ignores modes), a tmpfs remounted read-only, else skipped."""
    import os
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        (folder / "spec.yaml").write_text(EXAMPLE)
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without the right to mount a read-only tmpfs")
    try:
        (folder / "spec.yaml").write_text(EXAMPLE)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_backfill_in_a_read_only_spec_folder_is_one_message(read_only_folder, monkeypatch):
    """The plan is written beside the spec; the validation itself is stubbed to a tiny one,
    the point being what happens when the plan cannot be written."""
    from click.testing import CliRunner

    import backfill_kit.cli.commands as cli_module
    from backfill_kit.plan import load_plan

    sample = read_only_folder.parent / "sample.json"
    sample.write_text(__import__("json").dumps(PLAN))
    monkeypatch.setattr(cli_module, "_validation", lambda *args: None)
    monkeypatch.setattr(cli_module, "_plan_of", lambda *args: load_plan(sample))
    spec = read_only_folder / "spec.yaml"
    result = CliRunner().invoke(
        cli_module.cli,
        ["backfill", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", "--ignore-preflight"],
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith(
        f"error: cannot write the plan {read_only_folder}/runs/plan-2024-01-01-2024-01-31.json: "
    )
    assert "choose a writable place with --out" in result.output
    assert sorted(p.name for p in read_only_folder.iterdir()) == ["spec.yaml"]


def test_a_plan_that_cannot_be_written_leaves_nothing(tmp_path):
    import json

    from backfill_kit.errors import InputError
    from backfill_kit.plan import load_plan

    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    plan = load_plan(tmp_path / "plan.json")
    (tmp_path / "runs").write_text("a file where the folder should be")
    with pytest.raises(
        InputError, match=r"cannot write the plan .*runs/plan.json: .*choose a writable place with --out"
    ):
        plan.write(tmp_path / "runs" / "plan.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "runs"]


# --- reports -------------------------------------------------------------------------------


def test_report_coverage_on_a_missing_warehouse_leaves_nothing(tmp_path):
    result = cli_run(
        tmp_path,
        ["report", "coverage", "--spec", "S", "--out-dir", "R", "--start", "2022-01-01", "--end", "2022-01-05"],
    )
    assert result.exit_code == 2
    assert "warehouse.path: the DuckDB file" in result.output
    assert [p.name for p in tmp_path.rglob("*")] == ["spec.yaml"]  # no notebook, no report folder


@pytest.mark.parametrize(
    "option",
    [
        ["--project", "my-project\n  credentials_file: /etc/key.json"],
        ["--dataset-prefix", "demo_\nlocation: EU"],
        ["--location", "EU\n"],
    ],
)
def test_values_demo_load_writes_into_a_spec_are_checked_as_the_spec_would(tmp_path, option):
    args = ["demo", "load", "D", "--to", "bigquery", "--project", "some-project", *option]
    result = cli_run(tmp_path, args)
    assert result.exit_code == 2
    assert f"Invalid value for '{option[0]}'" in result.output


def test_a_notebook_is_named_as_such_wherever_a_file_is_expected(tmp_path):
    """One reading of a file's kind serves --spec, --plan and --journal alike."""
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    notebook = tmp_path / "explore.ipynb"
    notebook.write_text((Path(__file__).parents[1] / "notebooks" / "explore.ipynb").read_text())
    for args, said in (
        (
            ["validate", "--spec", str(notebook), "--start", "2024-01-01", "--end", "2024-01-31"],
            "this is a Jupyter notebook",
        ),
        (["run", "--plan", str(notebook)], "not a plan file: this is a Jupyter notebook"),
        (["report", "execution", "--journal", str(notebook)], "it is a Jupyter notebook"),
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and said in result.output, result.output


# --- the spec's values, as a person mistypes them -------------------------------------------


def test_rows_per_game_that_overflow_are_refused_at_load(tmp_path):
    """1e308 rows per game loaded, then validate crashed (int of NaN) on a date with 2 games."""
    text = EXAMPLE.replace("min_rows_per_game: 20", "min_rows_per_game: 1.0e308", 1)
    assert text != EXAMPLE
    (problem,) = spec_problems(tmp_path, text)
    assert f"{line_of(text, '1.0e308')}: phases[0].tables[0].min_rows_per_game: Input should be less than" in problem


@pytest.mark.parametrize(("written", "given"), [("0", "0"), ("20211019", "20211019")])
def test_a_season_date_written_as_a_number_is_refused(tmp_path, written, given):
    """pydantic reads a number as Unix time: 0 loaded as 1970-01-01 without a word."""
    text = EXAMPLE.replace("start: 2021-10-19", f"start: {written}", 1)
    (problem,) = spec_problems(tmp_path, text)
    assert problem == (
        f"{line_of(text, f'start: {written},')}: calendar.seasons[0].start: write the date as YYYY-MM-DD, "
        f"e.g. 2021-10-19, not as a number (got {given})"
    )


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("name: nba_props", "name: ''", "name"),
        ("processor: NbacTeamBoxscoreProcessor", "processor: ''", "phases[0].tables[1].processor"),
        ("{name: 2021-22,", "{name: '',", "calendar.seasons[0].name"),
        ("path: nba_props.duckdb", "path: ''", "warehouse.path"),
    ],
)
def test_an_empty_name_is_refused(tmp_path, old, new, field):
    """An empty processor matched no run, silently; an empty spec name led every line."""
    text = EXAMPLE.replace(old, new, 1)
    assert text != EXAMPLE
    (problem,) = spec_problems(tmp_path, text)
    assert f"{field}: String should have at least 1 character (got '')" in problem


MAPPING = "a mapping (key: value on each line, or {key: value})"
LIST = "a list (one '- item' per line, or [a, b])"


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("  backend: duckdb\n  path: nba_props.duckdb", "  - duckdb", "warehouse", f"{MAPPING}, not a list"),
        (
            "    running: [running]\n    success: [success, partial]\n    failed: [failed]\n    skipped: [skipped]",
            "    - running",
            "run_history.statuses",
            f"{MAPPING}, not a list",
        ),
        (
            "    failure_category: [no_data_available]\n    skip_reason: [no_data]",
            "    - no_data",
            "run_history.no_data_reasons",
            f"{MAPPING}, not a list",
        ),
        ('args: ["--skip-downstream-trigger"]', "- x", "job_defaults.skip_downstream", f"{MAPPING}, not a list"),
        ("[no_data_available]", "no_data_available", "failure_category", f"{LIST}, not 'no_data_available'"),
        ("depends_on: [nbac_gamebook_player_stats]", "depends_on: {a: 1}", "depends_on", f"{LIST}, not a mapping"),
    ],
)
def test_a_list_for_a_mapping_and_back_names_both_in_yaml_words(tmp_path, old, new, field, message):
    """pydantic's own words named Python: 'a valid tuple', 'an instance of RunStatuses'."""
    text = EXAMPLE.replace(old, new, 1)
    assert text != EXAMPLE
    problems = [p for p in spec_problems(tmp_path, text) if field in p]
    assert len(problems) == 1 and problems[0].endswith(f"{field}: should be {message}"), problems


def test_a_source_key_is_an_unknown_field_not_silently_replaced(tmp_path):
    text = EXAMPLE.replace("name: nba_props", "name: nba_props\nsource: /elsewhere/spec.yaml", 1)
    (problem,) = spec_problems(tmp_path, text)
    assert problem.startswith(f"{line_of(text, 'source:')}: source: unknown field; expected one of: name,")


def test_a_control_character_is_named_at_its_line(tmp_path):
    """The message was the YAML library's: a byte position in '<unicode string>', no line."""
    text = EXAMPLE.replace("nbac_team_boxscore\n", "nbac_team\0boxscore\n", 1)
    (problem,) = spec_problems(tmp_path, text)
    assert problem == (
        f"{line_of(text, 'team' + chr(0))}: not valid YAML: the character U+0000 is not allowed "
        "(control characters are not allowed); remove it"
    )


def test_demo_init_where_nothing_can_be_written_is_one_message(tmp_path, read_only_folder):
    """A folder that cannot be made (under a file) or written ended in a traceback
    (FileNotFoundError from mkdir, duckdb's IOException from the database file)."""
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    (tmp_path / "a-file").write_text("")
    for target in (tmp_path / "a-file" / "demo", read_only_folder):
        result = CliRunner().invoke(cli, ["demo", "init", str(target)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"error: cannot write the demo into {target}: "), result.output
        assert result.output.rstrip().endswith("; choose a folder you can write")
        assert "Traceback" not in result.output
    assert sorted(p.name for p in read_only_folder.iterdir()) == ["spec.yaml"]


@pytest.mark.parametrize(
    ("old", "new", "field", "key"),
    [
        ("    max_workers: 4", "    4: max_workers", "phases[0].4", "4"),
        ("    max_workers: 4", "    ~: 4", "phases[0].~", "~ (null)"),
        ("  workdir: .", "  workdir: .\n  env: {5: x}", "job_defaults.env.5", "5"),
        ("    skip_reason: [no_data]", "    7: [no_data]", "run_history.no_data_reasons.7", "7"),
    ],
)
def test_a_key_that_is_not_text_is_named_as_a_key(tmp_path, old, new, field, key):
    """It read 'phases[0][4]: Keys should be strings' (a key shown as a list index) and
    'job_defaults.env[5].[key]: Input should be a valid string'."""
    text = EXAMPLE.replace(old, new, 1)
    assert text != EXAMPLE
    (problem,) = spec_problems(tmp_path, text)
    assert problem.endswith(f"{field}: the key {key} is not text; keys are names: write the field's name, or quote it")
    assert "[key]" not in problem


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("maximum_bytes_billed: 99999999999999999999999999", "warehouse.maximum_bytes_billed"),
        ("price_per_tib_usd: 1.0e308", "warehouse.price_per_tib_usd"),
    ],
)
def test_bigquery_numbers_beyond_what_bigquery_takes_are_refused_at_load(tmp_path, setting, field):
    """maximum_bytes_billed is an INT64 to BigQuery: a larger one loaded, and failed at the
    first query (or, without credentials, never said)."""
    warehouse = "warehouse:\n  backend: duckdb\n  path: nba_props.duckdb"
    assert warehouse in EXAMPLE
    text = EXAMPLE.replace(warehouse, f"warehouse:\n  backend: bigquery\n  project: my-project\n  {setting}", 1)
    (problem,) = spec_problems(tmp_path, text)
    assert f"{field}: Input should be less than or equal to" in problem


@pytest.mark.parametrize(
    ("old", "new", "problems"),
    [
        (
            "max_workers: 4",
            "max_workers: 99999999999999999999999",
            ["max_workers: Input should be less than or equal to 256"],
        ),
        (
            "transient_exit_codes: [75]",
            "transient_exit_codes: [99999999999999999999, -5]",
            [
                "transient_exit_codes[0]: Input should be less than or equal to 255",
                "transient_exit_codes[1]: Input should be greater than or equal to 1",
            ],
        ),
    ],
)
def test_worker_counts_and_exit_codes_beyond_what_a_machine_has_are_refused(tmp_path, old, new, problems):
    """A phase of 10**23 workers loaded and was printed as a plan; an exit code no process can
    return made a retry rule that never fires."""
    assert old in EXAMPLE
    found = spec_problems(tmp_path, EXAMPLE.replace(old, new, 1))
    assert len(found) == len(problems)
    for problem, expected in zip(found, problems, strict=True):
        assert expected in problem


@pytest.mark.parametrize(("written", "read"), [("yes", "true"), ("on", "true"), ("false", "false")])
def test_a_number_is_never_a_yes_or_no(tmp_path, written, read):
    """YAML reads `yes` as true, and pydantic would take true as 1: one worker, silently."""
    (problem,) = spec_problems(tmp_path, EXAMPLE.replace("max_workers: 4", f"max_workers: {written}", 1))
    assert f"max_workers: write a number, not {read} (YAML reads yes, no, on and off" in problem


# --- pipes and devices where a file should be ------------------------------------------------
# A named pipe blocks whoever opens it until someone opens its other end. Where the toolkit
# opens it in Python, a test's time limit (SIGALRM) ends the hang; DuckDB opens its file in C,
# where no signal reaches, so those commands run as a process of their own, cut after 30 s.


class Ran:
    """A command's end, in-process (click's runner) or as a process: exit code and streams."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


def kit(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> Ran:
    """`backfill-kit ARGS` as a process of its own, as a person runs it."""
    import os
    import subprocess
    import sys

    command = [str(Path(sys.executable).parent / "backfill-kit"), *map(str, args)]
    env = {**os.environ, **(env or {})}
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=30, env=env)
    return Ran(done.returncode, done.stdout, done.stderr)


def kit_here(*args: str | Path, cwd: Path) -> Ran:
    """`backfill-kit ARGS` in this process (click's runner) from `cwd`, cut after 10 s."""
    import os

    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    here = Path.cwd()
    os.chdir(cwd)
    try:
        with ends_in_time(5.0):
            result = CliRunner().invoke(cli, list(map(str, args)))
    finally:
        os.chdir(here)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return Ran(result.exit_code, result.stdout, result.stderr)


def refused(done: Ran, *said: str) -> str:
    """The one message of a command that refused its input with exit 2."""
    assert done.code == 2, (done.code, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("error: ") and done.stderr.count("error: ") == 1, done.stderr
    for text in said:
        assert text in done.stderr, done.stderr
    return done.stderr


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


ONE_DAY = ("--start", "2024-01-10", "--end", "2024-01-10")


@pytest.fixture
def piped(mini: Any) -> Any:
    """The mini pipeline, with a named pipe `pipe` beside its spec and a plan made from it."""
    import os

    mini.games(date(2024, 1, 10), 1).close()
    os.mkfifo(mini.dir / "pipe")
    assert kit_here("plan", "--spec", "mini.yaml", *ONE_DAY, "--out", "plan.json", cwd=mini.dir).code == 0
    return mini


def test_a_warehouse_path_naming_a_pipe_is_refused_before_duckdb_opens_it(piped):
    piped.spec_path.write_text(piped.spec_text.replace("path: mini.duckdb", "path: pipe"))
    before = files_in(piped.dir)
    done = kit("validate", "--spec", "mini.yaml", *ONE_DAY, cwd=piped.dir)
    refused(done, f"mini.yaml: warehouse.path: {piped.dir / 'pipe'} is a named pipe (FIFO), not a DuckDB file")
    refused(kit("spec", "diff", "--spec", "mini.yaml", cwd=piped.dir), "pipe is a named pipe (FIFO), not a DuckDB")
    refused(kit("spec", "draft", "--duckdb", "pipe", "--out", "x.yaml", cwd=piped.dir), "pipe is a named pipe (FIFO)")
    assert files_in(piped.dir) == before


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["run", "--plan", "plan.json", "--journal", "pipe"], "the journal pipe is a named pipe (FIFO), not a regular"),
        (
            ["run", "--plan", "plan.json", "--journal", "pipe", "--resume"],
            "the journal pipe is a named pipe (FIFO), not a regular",
        ),
        (["run", "--plan", "pipe"], "pipe: a named pipe (FIFO), not a regular file; give the plan file (JSON)"),
        (["report", "execution", "--journal", "pipe"], "the journal pipe is a named pipe (FIFO), not a file"),
        (["validate", "--spec", "pipe", *ONE_DAY], "the spec pipe is a named pipe (FIFO), not a file"),
    ],
    ids=["run journal", "resume journal", "run plan", "report journal", "spec"],
)
def test_a_pipe_given_for_a_file_is_refused_before_it_is_opened(piped, args, said):
    before = files_in(piped.dir)
    refused(kit_here(*args, cwd=piped.dir), said)
    assert files_in(piped.dir) == before  # no lock, no journal, no log folder, no report


def test_a_pipe_where_the_runs_logs_go_is_refused_before_anything_starts(piped):
    (piped.dir / "plan.logs").symlink_to("pipe")
    before = files_in(piped.dir)
    refused(kit_here("run", "--plan", "plan.json", cwd=piped.dir), "the logs folder plan.logs is a named pipe (FIFO)")
    assert files_in(piped.dir) == before


def test_a_pipe_among_the_journals_beside_the_spec_blocks_neither_plan_nor_monitor(piped):
    """`plan` reads runs/*.journal.jsonl for its estimates, `monitor` follows them."""
    import os

    (piped.dir / "runs").mkdir()
    os.mkfifo(piped.dir / "runs" / "old.journal.jsonl")
    assert kit_here("plan", "--spec", "mini.yaml", *ONE_DAY, cwd=piped.dir).code == 0
    watched = kit_here("monitor", "--spec", "mini.yaml", *ONE_DAY, "--once", cwd=piped.dir)
    assert watched.code == 0, watched.stderr
    assert "runs/old.journal.jsonl is a named pipe (FIFO), not a regular file" in " ".join(watched.stdout.split())


def test_a_credentials_file_naming_a_pipe_is_refused_before_it_is_read(piped, monkeypatch):
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    bigquery, duckdb = "backend: bigquery\n  project: my-project", "backend: duckdb\n  path: mini.duckdb"
    piped.spec_path.write_text(piped.spec_text.replace(duckdb, f"{bigquery}\n  credentials_file: pipe"))
    done = kit_here("validate", "--spec", "mini.yaml", *ONE_DAY, cwd=piped.dir)
    refused(done, f"mini.yaml: warehouse.credentials_file: {piped.dir / 'pipe'} is a named pipe (FIFO), not a key")
    piped.spec_path.write_text(piped.spec_text.replace(duckdb, bigquery))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(piped.dir / "pipe"))
    done = kit_here("validate", "--spec", "mini.yaml", *ONE_DAY, cwd=piped.dir)
    refused(done, f"GOOGLE_APPLICATION_CREDENTIALS names {piped.dir / 'pipe'}, which is a named pipe (FIFO)")


def test_a_pipe_in_the_reports_folder_does_not_block_its_index(tmp_path):
    import os

    from backfill_kit.reports.render import write_index

    os.mkfifo(tmp_path / "planted.html")
    with ends_in_time(2.0):
        index = write_index(tmp_path)
    assert "planted.html" not in index.read_text()


JOURNAL_START = {
    "event": "run_started",
    "time": "2024-02-01T00:00:00",
    "plan": "plan.json",
    "plan_sha": "x",
    "steps": 1,
}


def test_a_pipe_planted_at_a_journals_lock_does_not_block_the_monitor(piped):
    import os

    (piped.dir / "runs").mkdir()
    (piped.dir / "runs" / "old.journal.jsonl").write_text(json.dumps(JOURNAL_START) + "\n")
    os.mkfifo(piped.dir / "runs" / "old.journal.jsonl.lock")
    watched = kit_here("monitor", "--spec", "mini.yaml", *ONE_DAY, "--once", cwd=piped.dir)
    assert watched.code == 0 and "Journal runs/old.journal.jsonl" in watched.stdout, watched.stdout + watched.stderr


# --- JSON from outside, however deep ----------------------------------------------------------

DEEP = "[" * 5000 + "]" * 5000  # json.loads recurses once per level: a RecursionError at ~1,000


def failed_once(mini: Any, error: str) -> Any:
    """The mini pipeline with one failed run of boxscore on 2024-01-10, its error column `error`."""
    mini.games(date(2024, 1, 10), 1).run("BoxscoreProcessor", date(2024, 1, 10), "failed", error=error).close()
    return mini


def boxscore_cell(folder: Path) -> dict[str, Any]:
    """validate's JSON cell of boxscore on 2024-01-10."""
    args = ("validate", "--spec", "mini.yaml", *ONE_DAY, "--format", "json", "--table", "boxscore")
    (cell,) = json.loads(kit_here(*args, cwd=folder).stdout)["cells"]
    return dict(cell)


MARK = "(JSON nested deeper than 50 levels, shown as text) [[[["


def test_a_run_history_error_nested_5000_deep_is_shown_as_text_marked(mini):
    failed_deep = failed_once(mini, DEEP)
    validated = kit_here("validate", "--spec", "mini.yaml", *ONE_DAY, cwd=failed_deep.dir)
    assert validated.code == 1 and MARK in validated.stdout, validated.stdout + validated.stderr
    cell = boxscore_cell(failed_deep.dir)
    assert cell["status"] == "failed" and cell["last_error"].startswith(MARK)
    assert len(cell["last_error"]) <= 4000  # cut like any long error, the mark kept
    watched = kit_here("monitor", "--spec", "mini.yaml", *ONE_DAY, "--window-hours", "100000", cwd=failed_deep.dir)
    assert watched.code == 0 and MARK in " ".join(watched.stdout.split()), watched.stdout + watched.stderr
    for command in (["plan"], ["preflight", "--quick"]):
        done = kit_here(*command, "--spec", "mini.yaml", *ONE_DAY, cwd=failed_deep.dir)
        assert done.code in (0, 1, 2) and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ('[{"error_type": "E", "error_message": 1e999}]', '[{"error_type": "E", "error_message": 1e999}]'),
        ('[{"error_type": "E", "error_message": ' + "9" * 5000 + "}]", '[{"error_type": "E", "error_message": 999'),
        ('[{"error_type": "E", "error_message": NaN}]', '[{"error_type": "E", "error_message": NaN}]'),
        ('[{"error_type": "E", "error_message": "' + "x" * 5_000_000 + '"}]', "E: xxxx"),
    ],
    ids=["float overflow", "5000 digits", "NaN", "5 MB"],
)
def test_a_run_history_error_with_huge_numbers_or_text_is_shown(mini, error, shown):
    cell = boxscore_cell(failed_once(mini, error).dir)
    assert cell["last_error"].startswith(shown) and len(cell["last_error"]) <= 4000


def plan_text_with(line: str, value: str) -> str:
    """The sample plan as `plan` writes it (indented), with `value` in place of one line's value."""
    text = json.dumps(PLAN, indent=2)
    assert f"{line}," in text
    return text.replace(f"{line},", f"{line.split(':')[0]}: {value},", 1)


@pytest.mark.parametrize(
    ("line", "value", "said"),
    [
        ('"options": {}', DEEP, "nested deeper than 50 levels"),
        ('"timeout_seconds": 60', "NaN", "NaN is not a finite number"),
        ('"timeout_seconds": 60', "-Infinity", "-Infinity is not a finite number"),
        ('"retries": 1', "1e999", "1e999 is not a finite number"),
        ('"workers": 2', "9" * 5000, "a number of more than 4,300 digits"),
    ],
    ids=["deep", "NaN", "-Infinity", "1e999", "5000 digits"],
)
def test_a_plan_file_deep_or_with_numbers_json_lacks_is_one_message_at_its_line(tmp_path, line, value, said):
    text = plan_text_with(line, value)
    where = next(i for i, row in enumerate(text.splitlines(), 1) if row.strip().startswith(line.split(":")[0]))
    result = run_plan(tmp_path, text)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'plan.json'}:{where}: not a plan file ({said}); make a new")


def test_a_plan_with_more_workers_than_a_spec_allows_is_refused(tmp_path):
    result = run_plan(tmp_path, json.dumps(plan_with(stage={"workers": 10**300})))
    assert result.exit_code == 2
    assert "stage 1: workers is more than 256, the most a phase runs at once" in result.output


@pytest.mark.parametrize(
    ("second", "said"),
    [
        (
            '{"event": "stage_started", "time": "2024-02-01T00:00:01", "stage": 1, "deep": ' + DEEP + "}",
            "nested deeper than 50 levels",
        ),
        (
            '{"event": "stage_started", "time": "2024-02-01T00:00:01", "stage": 1, "seconds": NaN}',
            "NaN is not a finite number",
        ),
        (
            '{"event": "stage_started", "time": "2024-02-01T00:00:01", "stage": ' + "1" * 5000 + "}",
            "a number of more than 4,300 digits",
        ),
    ],
    ids=["deep", "NaN", "5000 digits"],
)
@pytest.mark.parametrize("command", ["run --resume", "report execution"])
def test_a_journal_line_deep_or_with_numbers_json_lacks_is_one_message_at_its_line(tmp_path, second, said, command):
    (tmp_path / "plan.json").write_text(json.dumps(plan_with(spec="")))
    journal = tmp_path / "plan.journal.jsonl"
    journal.write_text(json.dumps(JOURNAL_START) + "\n" + second + "\n")
    args = {
        "run --resume": ["run", "--plan", "plan.json", "--resume"],
        "report execution": ["report", "execution", "--journal", "plan.journal.jsonl", "--out-dir", "reports"],
    }[command]
    before = files_in(tmp_path)
    refused(kit_here(*args, cwd=tmp_path), f"plan.journal.jsonl:2: the journal line is corrupt: {said}. Nothing was")
    assert files_in(tmp_path) == before


def test_a_journal_whose_first_line_nests_5000_deep_is_named_as_no_journal(tmp_path):
    (tmp_path / "j.jsonl").write_text(DEEP + "\n")
    refused(kit_here("report", "execution", "--journal", "j.jsonl", cwd=tmp_path), "is not a backfill-kit journal")


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("dates", 10**400, "not a number of dates (1 to 213,301, every date backfill-kit handles)"),
        ("dates", 0, "not a number of dates"),
        ("exit_code", 10**30, "beyond a 64-bit integer"),
        ("seconds", "12", "not a float"),
        ("time", "2024-W05-4", "not a time as YYYY-MM-DDTHH:MM:SS+00:00"),
    ],
)
def test_numbers_and_times_an_edited_journal_claims_are_refused_at_its_line(mini, field, value, said):
    """10**400 dates overflowed the fit of `plan` and the ETA of `monitor` (int to float); a week
    date, seconds as text or an exit code past int64 crashed the execution report."""
    mini.games(date(2024, 1, 10), 1).close()
    started = {"event": "step_started", "time": "2024-02-01T00:00:01", "step": "a", "table": "boxscore", "attempt": 1}
    (mini.dir / "runs").mkdir()
    journal = mini.dir / "runs" / "old.journal.jsonl"
    journal.write_text(json.dumps(JOURNAL_START) + "\n" + json.dumps({**started, "dates": 2, field: value}) + "\n")
    planned = kit_here("plan", "--spec", "mini.yaml", *ONE_DAY, cwd=mini.dir)
    assert planned.code == 0 and "estimated unknown" in planned.stdout, planned.stdout + planned.stderr
    watched = kit_here("monitor", "--spec", "mini.yaml", *ONE_DAY, cwd=mini.dir)
    assert watched.code == 0, watched.stdout + watched.stderr
    assert f"runs/old.journal.jsonl:2: the journal line is corrupt: a step_started event whose '{field}' is" in (
        " ".join(watched.stdout.split())
    )
    assert said in " ".join(watched.stdout.split())


def test_a_report_in_the_reports_folder_whose_description_nests_deep_is_listed_plainly(tmp_path):
    from backfill_kit.reports.render import META, write_index

    (tmp_path / "odd.html").write_text(f"<html><head><meta name=\"{META}\" content='{'[' * 2000}'></head></html>")
    assert "odd.html" in write_index(tmp_path).read_text()


# --- job placeholders ------------------------------------------------------------------------

MINI_ARGV = '["{python}", "-c", "pass", "{id}", "{start}", "{end}"]'


def with_argv(mini: Any, *extra: str) -> Any:
    """The mini pipeline with `extra` arguments (YAML flow items) after its job's own."""
    assert MINI_ARGV in mini.spec_text
    mini.spec_path.write_text(
        mini.spec_text.replace(MINI_ARGV, MINI_ARGV[:-1] + "".join(f", {e}" for e in extra) + "]")
    )
    return mini


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ('"{start:d}"', "{start:d} has a format spec (:d)"),  # a ValueError traceback at `plan`
        ('"{start:>300000000}"', "{start:>300000000} has a format spec (:>300000000)"),  # a MemoryError
        ('"{start!r}"', "{start!r} has a conversion (!r)"),  # the job was handed '2024-01-10', quoted
        ('"{start.year}"', "{start.year} has an attribute (.year)"),
        ('"{start[0]}"', "{start[0]} has an index ([0])"),
        ('"{0}"', "{0} names no placeholder"),
        ('"{}"', "{} names no placeholder"),
        ('"{begin}"', "{begin} names no placeholder"),
        ('"--day={start"', "a '{' on its own"),  # a ValueError traceback at load
        ('"a}b"', "a '}' on its own"),
    ],
)
def test_a_placeholder_is_a_name_alone_in_braces(mini, written, why):
    with_argv(mini.games(date(2024, 1, 10), 1), written).close()
    problem = refused(
        kit_here("plan", "--spec", "mini.yaml", *ONE_DAY, cwd=mini.dir), "the pipeline spec has 1 problem"
    )
    line = next(i for i, row in enumerate(mini.spec_path.read_text().splitlines(), 1) if written in row)
    assert (
        f"  mini.yaml:{line}: job_defaults.argv[6]: {why} in {json.loads(written)!r}; a placeholder is a name alone"
        in problem
    )
    assert (
        "one of {end}, {id}, {processor}, {python}, {start}, {table} (a literal brace is written {{ or }})" in problem
    )


def test_doubled_braces_are_one_literal_brace(mini):
    with_argv(mini.games(date(2024, 1, 10), 1), r'"--config={{\"day\": \"{start}\"}}"', '"{{id}}"').close()
    planned = kit_here("plan", "--spec", "mini.yaml", *ONE_DAY, "--format", "json", cwd=mini.dir)
    assert planned.code == 0, planned.stderr
    argv = json.loads(planned.stdout)["stages"][0]["steps"][0]["argv"]
    assert argv[6:8] == ['--config={"day": "2024-01-10"}', "{id}"]


def test_a_placeholder_inherited_by_every_table_is_named_once_where_it_is_written(mini):
    with_argv(mini, '"{start!s}"').close()
    problem = refused(kit_here("validate", "--spec", "mini.yaml", *ONE_DAY, cwd=mini.dir))
    assert problem.count("{start!s}") == 2 and "job_defaults.argv[6]" in problem  # once, with its text quoted


# --- job commands preflight cannot look at ---------------------------------------------------

NOBODY = 65534


def as_nobody(*args: str | Path, cwd: Path) -> Ran:
    """`backfill-kit ARGS` as the unprivileged uid 65534 (setpriv), with no user cache (the
    suite's is root's)."""
    import os
    import shutil
    import subprocess
    import sys

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run a command as another uid")
    user = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    env = {**os.environ, "BACKFILL_KIT_CACHE_DIR": ""}
    if subprocess.run([*user, sys.executable, "-c", "import backfill_kit"], env=env, capture_output=True).returncode:
        pytest.skip(f"uid {NOBODY} cannot run this Python ({sys.executable})")
    command = [*user, str(Path(sys.executable).parent / "backfill-kit"), *map(str, args)]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, env=env)
    return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def closed_job_folder() -> Any:
    """The mini pipeline in a folder anyone may read, whose job is in `jobs/`: root's, mode 0700."""
    import os
    import shutil
    import tempfile

    from conftest import MiniWarehouse

    folder = Path(tempfile.mkdtemp(prefix="backfill-kit-closed-"))
    try:
        folder.chmod(0o755)
        mini = MiniWarehouse(folder)
        mini.games(date(2024, 1, 10), 1).close()
        assert MINI_ARGV in mini.spec_text
        job = 'workdir: jobs\n  argv: ["./job.sh", "{id}", "{start}", "{end}"]'
        mini.spec_path.write_text(mini.spec_text.replace(f"argv: {MINI_ARGV}", job))
        (folder / "jobs").mkdir(mode=0o700)
        (folder / "jobs" / "job.sh").write_text("#!/bin/sh\nexit 0\n")
        (folder / "jobs" / "job.sh").chmod(0o755)
        (folder / "runs").mkdir()
        os.chown(folder / "runs", NOBODY, NOBODY)  # where that user's backfill writes its plan
        yield mini
    finally:
        shutil.rmtree(folder)


def test_a_job_in_a_folder_the_user_cannot_enter_is_a_failed_check_naming_both(closed_job_folder):
    folder = closed_job_folder.dir
    said = f"'./job.sh': cannot look at {folder}/jobs/job.sh: this user may not enter the folder {folder}/jobs"
    assert kit_here("plan", "--spec", "mini.yaml", *ONE_DAY, "--out", "plan.json", cwd=folder).code == 0
    for args in (
        ["preflight", "--spec", "mini.yaml", *ONE_DAY, "--quick"],
        ["run", "--plan", "plan.json"],
        ["backfill", "--spec", "mini.yaml", *ONE_DAY, "--out", "runs/plan.json"],
    ):
        done = as_nobody(*args, cwd=folder)
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        assert done.code == 1, (args, done.stdout, done.stderr)
        assert "job commands resolve" in done.stdout and said in " ".join(done.stdout.split()), done.stdout


def test_a_job_module_under_a_missing_package_is_a_failed_check(mini):
    """find_spec('nope.job') raises ModuleNotFoundError (it imports 'nope'): preflight crashed."""
    mini.games(date(2024, 1, 10), 1).close()
    mini.spec_path.write_text(mini.spec_text.replace('"-c", "pass"', '"-m", "nope.job"'))
    done = kit_here("preflight", "--spec", "mini.yaml", *ONE_DAY, "--quick", cwd=mini.dir)
    assert done.code == 1, done.stdout + done.stderr
    said = "boxscore: module 'nope.job' cannot be imported (ModuleNotFoundError: No module named 'nope')"
    assert said in " ".join(done.stdout.split())


# --- text from outside, on screen ------------------------------------------------------------

# A bidi override (U+202E) makes a terminal or a browser show what follows reversed; with the
# isolates, zero-width characters, the BOM and the line separator, text reads otherwise than it
# is. A lone surrogate (\ud800, valid JSON) cannot be encoded at all.
HIDDEN = "\u202e\u202c\u200b\u2066\u2069\u2028\u2029\ufeff\U000e0041"
# As the run history holds it: JSON text, the characters as they are, and a lone surrogate escaped.
SNEAKY = '[{"error_type": "PermissionError", "error_message": "ok \u202e;tixe\u202c \u200bfine\u2066x\u2069 a\u2028b\ufeff \\ud800"}]'


def hidden_in(text: str) -> list[str]:
    import unicodedata

    return [f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cf", "Cs", "Zl", "Zp")]


SHOWN = "PermissionError: ok ;tixe finex a b"


def test_invisible_characters_of_a_run_history_error_never_reach_the_terminal(mini):
    sneaky = failed_once(mini, SNEAKY)
    validated = kit_here("validate", "--spec", "mini.yaml", *ONE_DAY, cwd=sneaky.dir)
    assert validated.code == 1 and SHOWN in validated.stdout and hidden_in(validated.stdout) == [], validated.stdout
    cell = boxscore_cell(sneaky.dir)
    assert cell["last_error"].startswith(SHOWN) and hidden_in(cell["last_error"]) == []
    watched = kit_here("monitor", "--spec", "mini.yaml", *ONE_DAY, "--window-hours", "100000", cwd=sneaky.dir)
    assert watched.code == 0 and SHOWN.split(": ", 1)[1] in watched.stdout and hidden_in(watched.stdout) == []


def test_invisible_characters_never_reach_a_reports_text(mini, tmp_path):
    from backfill_kit import reports

    sneaky = failed_once(mini, SNEAKY)

    audit = reports.coverage(sneaky.spec_path, "2024-01-10", "2024-01-10")
    gaps = audit.gaps().data
    assert SHOWN in gaps and hidden_in(gaps) == []
    journal = tmp_path / "plan.journal.jsonl"
    finished = {
        "event": "run_finished",
        "time": "2024-02-01T00:00:01",
        "outcome": "completed",
        "warnings": [f"odd \u202eoutput{HIDDEN}"],
    }
    journal.write_text(json.dumps(JOURNAL_START) + "\n" + json.dumps(finished) + "\n")
    warnings = reports.execution(journal).warnings().data
    assert "odd output" in warnings and hidden_in(warnings) == []


def test_invisible_characters_in_a_message_quoting_outside_text_never_reach_the_terminal(tmp_path):
    """Every error message goes through the same gate: a path, say, quoted as it was given."""
    done = kit_here("validate", "--spec", "sp\u202eec.yaml", *ONE_DAY, cwd=tmp_path)
    assert "the spec spec.yaml does not exist" in refused(done) and hidden_in(done.stderr) == []
