"""The Python API's paths and dates as people write them: from the project folder, from
notebooks/ (where JupyterLab starts a kernel), as strings or dates."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from backfill_kit.common.arguments import as_date, find_file
from backfill_kit.errors import InputError

if TYPE_CHECKING:
    from click.testing import Result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder (pyproject.toml) inside an outer folder that has a file of the same name."""
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "nba_props.yaml").write_text("outer: the search never gets here\n")
    root = tmp_path / "project"
    (root / "demo").mkdir(parents=True)
    (root / "notebooks" / "deep").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "demo" / "nba_props.yaml").write_text("name: demo\n")
    return root


def test_a_relative_path_from_the_project_folder_is_kept_as_given(project, monkeypatch):
    monkeypatch.chdir(project)
    assert find_file("demo/nba_props.yaml", "the spec") == Path("demo/nba_props.yaml")


@pytest.mark.parametrize("cwd", ["notebooks", "notebooks/deep"])
def test_a_relative_path_from_a_folder_inside_the_project_is_found_above(project, monkeypatch, cwd):
    monkeypatch.chdir(project / cwd)
    assert find_file("demo/nba_props.yaml", "the spec") == project / "demo" / "nba_props.yaml"


def test_the_working_directory_comes_first(project, monkeypatch):
    (project / "notebooks" / "demo").mkdir()
    (project / "notebooks" / "demo" / "nba_props.yaml").write_text("name: local\n")
    monkeypatch.chdir(project / "notebooks")
    assert find_file("demo/nba_props.yaml", "the spec") == Path("demo/nba_props.yaml")


def test_a_missing_file_names_every_place_looked_at_and_not_beyond_the_project(project, monkeypatch):
    monkeypatch.chdir(project / "notebooks" / "deep")
    with pytest.raises(InputError) as error:
        find_file("demo/missing.yaml", "the spec", hint="make demo writes it")
    message = str(error.value)
    looked = [line.strip() for line in message.splitlines() if line.startswith("  ")]
    assert looked == [str(project / p / "demo" / "missing.yaml") for p in ("notebooks/deep", "notebooks", "")]
    assert message.startswith("the spec demo/missing.yaml does not exist") and "make demo writes it" in message


def test_an_absolute_path_is_taken_as_it_is(project):
    assert find_file(project / "demo" / "nba_props.yaml", "the spec") == project / "demo" / "nba_props.yaml"


@pytest.mark.parametrize("value", ["2021-10-19", " 2021-10-19 ", date(2021, 10, 19), datetime(2021, 10, 19, 7, 30)])
def test_dates_are_strings_or_dates(value):
    assert as_date(value, "start") == date(2021, 10, 19)


@pytest.mark.parametrize("value", ["19/10/2021", "20211019", "2021-W42-2", "2021-292"])
def test_a_bad_date_names_its_argument_and_the_format(value):
    """Only the form the message promises: Python's parser also takes the compact and week forms."""
    with pytest.raises(InputError, match=rf"end '{value}' is not a date; write it as YYYY-MM-DD"):
        as_date(value, "end")


# --- the rule at work: the Python API and `backfill-kit report` from inside a project ----------


@pytest.fixture
def inside_project(mini, monkeypatch) -> Path:
    """The mini pipeline's folder as a project (pyproject.toml), the working directory its
    notebooks/ folder, as in a JupyterLab kernel."""
    for day in (date(2024, 1, 1), date(2024, 1, 2), date(2024, 3, 5)):
        mini.games(day, 2).rows("raw.boxscore", day, 4)
    spec = mini.close()
    (spec.parent / "pyproject.toml").write_text("")
    (spec.parent / "notebooks").mkdir()
    monkeypatch.chdir(spec.parent / "notebooks")
    return spec


def test_the_notebook_api_finds_the_spec_from_notebooks_and_takes_dates_either_way(inside_project):
    pytest.importorskip("ipywidgets")
    from backfill_kit.reports import explore
    from backfill_kit.reports import notebook as report

    audit = report.coverage("mini.yaml", "2024-01-01", date(2024, 3, 31))
    assert audit.validation.spec.source == inside_project and audit.spec_ref == "mini.yaml"
    explorer = explore.explorer("mini.yaml", date(2024, 1, 1), "2024-01-31")
    assert explorer.validation.end == date(2024, 1, 31) and explorer.spec_ref == "mini.yaml"


def report_coverage(spec: str) -> Result:
    """`backfill-kit report coverage --spec SPEC` of January 2024, from the working directory."""
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    arguments = [
        "report",
        "coverage",
        "--spec",
        spec,
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
        "--out-dir",
        "out",
    ]
    return CliRunner().invoke(cli, arguments, catch_exceptions=False)


@pytest.mark.slow  # a papermill kernel
def test_backfill_kit_report_runs_from_notebooks_with_the_path_from_the_project(inside_project):
    """The CLI checks the spec by the rule, and the papermill kernel, started in the same
    working directory, finds it by the same rule."""
    result = report_coverage("mini.yaml")
    assert result.exit_code == 0, result.output
    assert list((inside_project.parent / "notebooks" / "out").glob("coverage_mini_*.html"))


def test_a_spec_found_nowhere_is_one_message_naming_every_place(inside_project):
    result = report_coverage("nope.yaml")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        f"  {inside_project.parent / 'notebooks' / 'nope.yaml'}\n  {inside_project.parent / 'nope.yaml'}\n"
        in result.output
    )


def test_the_explorer_on_a_range_without_game_dates_says_so(inside_project):
    pytest.importorskip("ipywidgets")
    from backfill_kit.reports import explore

    with pytest.raises(InputError, match="no expected dates from 2024-01-10 to 2024-01-20"):  # not a TraitError
        explore.explorer("mini.yaml", "2024-01-10", "2024-01-20")  # inside a season, no games


@pytest.mark.parametrize(
    "command",
    [
        ["validate"],
        ["plan"],
        ["backfill", "--dry-run"],
        ["preflight", "--quick"],
        ["monitor"],
        ["spec", "diff"],
    ],
)
def test_every_spec_option_follows_the_rule_from_notebooks(inside_project, command):
    """`--spec` of every command finds `mini.yaml` from notebooks/, and one found nowhere is one
    message listing every place looked at."""
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    dates = [] if command[0] == "spec" else ["--start", "2024-01-01", "--end", "2024-01-31"]
    found = CliRunner().invoke(cli, [*command, "--spec", "mini.yaml", *dates], catch_exceptions=False)
    assert found.exit_code in (0, 1), found.output  # 1: gaps remain (or the warehouse differs)
    missing = CliRunner().invoke(cli, [*command, "--spec", "nope.yaml", *dates], catch_exceptions=False)
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert (
        f"  {inside_project.parent / 'notebooks' / 'nope.yaml'}\n  {inside_project.parent / 'nope.yaml'}\n"
        in missing.output
    )


def test_validate_takes_a_spec_path_and_string_dates(inside_project):
    from backfill_kit.validation.validator import validate

    v = validate("mini.yaml", "2024-01-01", date(2024, 1, 31))
    assert v.spec.source == inside_project and (v.start, v.end) == (date(2024, 1, 1), date(2024, 1, 31))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            '{\n  "format": 1,\n  "spec": "mini.yaml",\n  "stages": []\n}\n',
            "a backfill plan (made by backfill-kit plan); run it",
        ),
        ('{"event": "run_started", "time": "2024-01-01T00:00:00"}\n', "a runner journal (JSON lines)"),
        ('{"summary": {}, "cells": []}', "JSON output of validate or preflight"),
        ((Path(__file__).parents[1] / "notebooks" / "explore.ipynb").read_text(), "a Jupyter notebook"),
        ("<!DOCTYPE html><html></html>", "an HTML file (a report?)"),
    ],
)
def test_a_file_of_another_kind_given_as_the_spec_is_named_as_such(tmp_path, text, named):
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    wrong = tmp_path / "given.json"
    wrong.write_text(text)
    result = CliRunner().invoke(
        cli, ["validate", "--spec", str(wrong), "--start", "2024-01-01", "--end", "2024-01-31"], catch_exceptions=False
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"not a pipeline spec: this is {named}" in result.output


def test_the_explorer_shows_complete_and_done_for_what_is_chosen(inside_project):
    pytest.importorskip("ipywidgets")
    from backfill_kit.reports import explore
    from backfill_kit.validation.progress import counts_of_cells

    chosen = explore.explorer("mini.yaml", "2024-01-01", "2024-03-31")
    expected = counts_of_cells(chosen.validation.cells).expected
    assert "% complete (rows present), " in chosen.progress_note.value
    assert f"of {expected:,} expected cells" in chosen.progress_note.value
    chosen.tables.value = ("boxscore",)  # every boxscore date has its rows
    assert "100% complete (rows present), 100% done" in chosen.progress_note.value


def test_a_folder_given_for_a_file_is_named_as_a_folder(project, monkeypatch):
    monkeypatch.chdir(project)
    with pytest.raises(InputError, match=r"^the spec demo is a folder, not a file; give the path of the file in it$"):
        find_file("demo", "the spec")


@pytest.fixture
def no_project(tmp_path: Path) -> Path:
    """A folder with no project above it (no pyproject.toml, no .git, up to /), as under /tmp;
    pytest's temporary folders are usually such a place, which this checks."""
    outside = tmp_path / "outside"
    (outside / "work").mkdir(parents=True)
    if any((f / m).exists() for f in (outside, *outside.parents) for m in ("pyproject.toml", ".git")):
        pytest.skip(f"{tmp_path} is inside a project; the case needs a folder that is not")
    return outside


def test_outside_any_project_a_relative_path_is_looked_up_in_the_working_directory_only(no_project, monkeypatch):
    """Under /tmp, a pipeline.yaml someone else left in /tmp was used without a word:
    validate read their warehouse, backfill ran their jobs. Only the working directory counts."""
    (no_project / "pipeline.yaml").write_text("name: someone else's\n")
    monkeypatch.chdir(no_project / "work")
    with pytest.raises(InputError) as error:
        find_file("pipeline.yaml", "the spec")
    message = str(error.value)
    assert [line.strip() for line in message.splitlines() if line.startswith("  ")] == [
        str(no_project / "work" / "pipeline.yaml")
    ]
    assert "outside a project, in the working directory only" in message


def test_the_cli_refuses_a_spec_planted_above_a_folder_outside_any_project(no_project, monkeypatch):
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli
    from backfill_kit.demo import example_spec_text

    (no_project / "pipeline.yaml").write_text(example_spec_text())
    monkeypatch.chdir(no_project / "work")
    result = CliRunner().invoke(
        cli, ["validate", "--spec", "pipeline.yaml", "--start", "2021-10-19", "--end", "2021-10-20"]
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: the spec pipeline.yaml does not exist")
    assert f"  {no_project / 'work' / 'pipeline.yaml'}\n" in result.output
    assert str(no_project / "pipeline.yaml") not in result.output and "Traceback" not in result.output
