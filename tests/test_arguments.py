"""The Python API's paths and dates as people write them: from the project folder, from
notebooks/ (where JupyterLab starts a kernel), as strings or dates."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from backfill_kit.arguments import as_date, find_file
from backfill_kit.errors import InputError


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


def test_a_bad_date_names_its_argument_and_the_format():
    with pytest.raises(InputError, match=r"end '19/10/2021' is not a date; write it as YYYY-MM-DD"):
        as_date("19/10/2021", "end")
