"""plan, run and backfill through the command line, on the mini warehouse."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MiniWarehouse

from backfill_kit.cli.commands import cli

D1, D2 = date(2024, 1, 10), date(2024, 1, 11)
RANGE = ["--start", "2024-01-01", "--end", "2024-01-31"]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def spec(mini: MiniWarehouse) -> Path:
    for d in (D1, D2):
        mini.games(d, 1).rows("raw.boxscore", d, 2).run("BoxscoreProcessor", d, "success", 2)
        mini.rows("raw.props", d, 3).rows("raw.backup_props", d, 1).rows("analytics.cache", d, 1)
    return mini.close()  # summary never ran on either date


def test_plan_prints_commands_and_writes_the_file(spec, tmp_path):
    out = tmp_path / "plans" / "p.json"
    result = invoke("plan", "--spec", str(spec), *RANGE, "--out", str(out))
    assert result.exit_code == 0
    assert "1 step over 2 table-dates in 1 stage" in result.output
    assert "summary  2024-01-10 .. 2024-01-11  (2 dates: never_ran 2)" in result.output
    assert "-c pass summary 2024-01-10 2024-01-11 --no-trigger" in result.output
    assert f"run it with: backfill-kit run --plan {out}" in result.output
    assert json.loads(out.read_text())["totals"]["steps"] == 1


def test_dry_run_starts_nothing(spec, tmp_path):
    out = tmp_path / "p.json"
    invoke("plan", "--spec", str(spec), *RANGE, "--out", str(out))
    result = invoke("run", "--plan", str(out), "--dry-run")
    assert result.exit_code == 0 and "dry run: nothing was started" in result.output
    assert not (tmp_path / "p.journal.jsonl").exists()


def test_backfill_runs_and_flags_a_job_that_wrote_nothing(spec):
    result = invoke("backfill", "--spec", str(spec), *RANGE)
    assert result.exit_code == 1, result.output  # validation still sees the gap: never a green exit
    assert "succeeded_without_data summary:2024-01-10..2024-01-11" in result.output
    assert "warning: summary:2024-01-10..2024-01-11 exited 0 but left all 2 of its dates without rows" in result.output
    assert "validation still finds 2 cells that need work (never_ran 2)" in result.output
    journal = spec.parent / "runs" / "plan-2024-01-01-2024-01-31.journal.jsonl"
    assert journal.exists()


def test_after_a_finished_plan_backfill_plans_what_is_still_missing(spec):
    invoke("backfill", "--spec", str(spec), *RANGE)
    runs = spec.parent / "runs"
    for n, extra in ((2, ()), (3, ("--resume",))):  # --resume never replays a finished plan
        again = invoke("backfill", "--spec", str(spec), *RANGE, *extra)
        assert f"planning what is still missing as {runs}/plan-2024-01-01-2024-01-31-{n}.json" in again.output
        assert again.exit_code == 1 and "validation still finds 2 cells that need work" in again.output
    replay = invoke("run", "--plan", str(runs / "plan-2024-01-01-2024-01-31.json"), "--resume")
    assert "already ran to its end" in replay.output and "validation still finds 2 cells" in replay.output
    assert replay.exit_code == 1


def test_backfill_exits_0_only_when_validation_finds_nothing_left(mini):
    mini.games(D1, 1).rows("raw.boxscore", D1, 2).run("BoxscoreProcessor", D1, "success", 2)
    mini.rows("raw.props", D1, 3).rows("raw.backup_props", D1, 1).rows("analytics.summary", D1, 1)
    spec = mini.rows("analytics.cache", D1, 1).close()
    result = invoke("backfill", "--spec", str(spec), "--start", "2024-01-10", "--end", "2024-01-10")
    assert result.exit_code == 0 and "nothing to backfill: validation finds no gaps" in result.output, result.output


def test_a_missing_or_broken_plan_is_one_message(tmp_path):
    missing = invoke("run", "--plan", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "cannot read the plan" in missing.output
    (tmp_path / "bad.json").write_text("{")
    broken = invoke("run", "--plan", str(tmp_path / "bad.json"))
    assert broken.exit_code == 2 and "not a plan file" in broken.output and "Traceback" not in broken.output


TOUCH_JOB = (
    'argv: ["{python}", "-c", "import pathlib, sys; pathlib.Path(\'ran-\' + sys.argv[1]).touch()", '
    '"{id}", "{start}", "{end}"]'
)


def test_a_plan_runs_from_any_folder_and_from_a_copy_of_the_project(spec, tmp_path, monkeypatch):
    import os
    import shutil

    spec.write_text(spec.read_text().replace('argv: ["{python}", "-c", "pass", "{id}", "{start}", "{end}"]', TOUCH_JOB))
    project = spec.parent
    monkeypatch.chdir(project)
    assert invoke("plan", "--spec", spec.name, *RANGE, "--out", "runs/plan.json").exit_code == 0
    plan_file = json.loads((project / "runs" / "plan.json").read_text())
    assert plan_file["spec"] == "../mini.yaml" and plan_file["stages"][0]["steps"][0]["workdir"] == ".."
    assert str(tmp_path) not in (project / "runs" / "plan.json").read_text()  # no absolute path at all

    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke("run", "--plan", os.path.relpath(copy / "runs" / "plan.json"))
    assert "running 1 step (0 succeeded before)" in result.output, result.output
    assert (copy / "ran-summary").exists()  # it ran in the copy ...
    assert not (project / "ran-summary").exists()  # ... not in the folder the plan was made in


def test_backfill_with_nothing_it_can_plan_says_why(mini):
    mini.games(D1, 1).run("BoxscoreProcessor", D1, "success", 0)  # boxscore: genuinely no data
    mini.rows("raw.props", D1, 3).rows("raw.backup_props", D1, 1).rows("analytics.cache", D1, 1)
    spec = mini.close()  # summary never ran, and cannot: its upstream has no rows
    result = invoke("backfill", "--spec", str(spec), "--start", "2024-01-10", "--end", "2024-01-10")
    assert result.exit_code == 1, result.output
    assert "validation still finds 1 cell that needs work (never_ran 1)" in result.output
    assert "No step can fix them yet: 1 cell waits for an upstream" in result.output
    assert "summary 2024-01-10: upstream boxscore is no_data" in result.output
    assert not (spec.parent / "runs").exists()  # no plan, no journal


def test_a_backfill_of_one_table_says_what_it_looked_at(spec):
    """'validation finds no gaps in D .. D' though summary has gaps on those dates: the
    messages name the tables looked at, and the command to see them looks at the same."""
    day = ["--start", "2024-01-10", "--end", "2024-01-11"]
    clean = invoke("backfill", "--spec", str(spec), *day, "--table", "boxscore")
    assert clean.exit_code == 0, clean.output
    assert clean.output.strip().endswith(
        "nothing to backfill: validation finds no gaps in table boxscore, 2024-01-10 .. 2024-01-11 "
        "(the other 4 tables not checked)"
    )
    left = invoke("backfill", "--spec", str(spec), *day, "--table", "summary", "--table", "props")
    assert left.exit_code == 1
    assert "that need work (never_ran 2) in tables props, summary, 2024-01-10 .. 2024-01-11 (the other 3" in left.output
    assert left.output.strip().endswith("--end 2024-01-11 --table props --table summary")
