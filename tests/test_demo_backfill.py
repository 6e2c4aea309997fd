"""The demo end to end: real jobs on the real demo warehouse, through the real CLI.

The full four-season backfill is the one `make demo` runs: tests/test_readme.py checks what
it leaves behind, on the project it builds once for every README command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

CLI = [
    sys.executable,
    "-c",
    "import sys; from backfill_kit.cli.commands import main; sys.argv[0] = 'backfill-kit'; main()",
]
FIRST_WEEKS = ["--start", "2021-10-19", "--end", "2021-11-20"]

pytestmark = pytest.mark.slow  # real jobs, one Python process per step


@pytest.fixture
def demo(demo_copy: Path) -> Path:
    """A fresh copy of the demo, before any backfill: its spec."""
    return demo_copy


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


def statuses(spec: Path, *range_args: str) -> dict[str, int]:
    result = cli("validate", "--spec", str(spec), *range_args, "--format", "json")
    return json.loads(result.stdout)["summary"]["statuses"]


def triggers(spec: Path) -> int:
    with duckdb.connect(str(spec.with_suffix(".duckdb")), read_only=True) as con:
        return con.execute("SELECT count(*) FROM nba_reference.downstream_triggers").fetchone()[0]


def summary_job(warehouse: str) -> list[str]:
    """The demo job of player_game_summary on three dates, as a plan step runs it (less the skip flag)."""
    dates = ["--start-date", "2021-10-19", "--end-date", "2021-10-21"]
    return [sys.executable, "-m", "backfill_kit.demo.job", "player_game_summary", "--warehouse", warehouse, *dates]


def test_a_failing_job_stops_the_stage_and_resume_reruns_only_that_step(demo):
    fault = {"BACKFILL_KIT_DEMO_FAULTS": "team_offense_game_summary:fail=2021-10-26"}
    first = cli("backfill", "--spec", str(demo), *FIRST_WEEKS, env=fault)
    assert first.returncode == 1
    journal = demo.parent / "runs" / "plan-2021-10-19-2021-11-20.journal.jsonl"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    failed = [e for e in events if e["event"] == "step_finished" and e["outcome"] == "failed"]
    assert [e["table"] for e in failed] == ["team_offense_game_summary"]
    assert "1 date failed: upstream API returned HTTP 503 (2021-10-26)" in failed[0]["tail"]
    assert not any(e["event"] == "stage_started" and e["phase"] == "precompute" for e in events)
    succeeded = {e["step"] for e in events if e["event"] == "step_finished" and e["outcome"] == "succeeded"}

    again = cli("backfill", "--spec", str(demo), *FIRST_WEEKS, "--resume")
    assert again.returncode == 0, again.stdout[-2000:]
    events = [json.loads(line) for line in journal.read_text().splitlines()][len(events) :]
    rerun = {e["step"] for e in events if e["event"] == "step_started"}
    assert failed[0]["step"] in rerun and not (rerun & succeeded)
    assert set(statuses(demo, *FIRST_WEEKS)) <= {"complete", "no_data", "bootstrap"}


def test_a_job_not_told_to_skip_fires_the_next_phase(demo):
    job = summary_job("nba_props.duckdb")
    quiet = subprocess.run([*job, "--skip-downstream-trigger"], cwd=demo.parent, capture_output=True, text=True)
    assert quiet.returncode == 0 and triggers(demo) == 0
    loud = subprocess.run(job, cwd=demo.parent, capture_output=True, text=True)
    assert loud.returncode == 0 and "the next phase will start" in loud.stdout
    assert triggers(demo) == 1


def test_a_job_refuses_a_warehouse_path_that_does_not_exist(demo):
    job = summary_job("nope.duckdb")
    result = subprocess.run(job, cwd=demo.parent, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "nope.duckdb" in result.stderr
    assert not (demo.parent / "nope.duckdb").exists()


def test_a_job_crashing_midway_leaves_running_rows_that_validation_reports(demo):
    crash = {"BACKFILL_KIT_DEMO_FAULTS": "nbac_team_boxscore:crash-after=0"}
    boxscores = ["--start", "2021-10-19", "--end", "2021-10-22", "--table", "nbac_team_boxscore"]
    result = cli("backfill", "--spec", str(demo), *boxscores, env=crash)
    assert result.returncode == 1
    assert statuses(demo, *boxscores) == {"running": 4}
    later = cli("validate", "--spec", str(demo), *boxscores, "--now", "2099-01-01T00:00:00", "--format", "json")
    assert json.loads(later.stdout)["summary"]["statuses"] == {"stale": 4}


def test_two_parallel_demo_jobs_on_one_file_wait_for_its_write_lock_and_both_succeed(demo, tmp_path):
    """DuckDB has one writer at a time ('Could not set lock on file'): while another process
    holds the file, both jobs say they wait, back off, and write once it is free."""
    from runner_helpers import wait_until

    holder = duckdb.connect(str(demo.with_suffix(".duckdb")))  # another writer, as a job of a user's pipeline
    days = ["--start-date", "2021-10-19", "--end-date", "2021-10-21", "--skip-downstream-trigger"]
    outputs = [tmp_path / f"{table}.out" for table in ("nbac_team_boxscore", "odds_api_game_lines")]
    jobs = []
    for out in outputs:
        job = [sys.executable, "-m", "backfill_kit.demo.job", out.stem, "--warehouse", "nba_props.duckdb", *days]
        with out.open("w") as sink:
            jobs.append(subprocess.Popen(job, cwd=demo.parent, stdout=sink, stderr=subprocess.STDOUT))
    try:
        waiting = "waiting for the write lock on nba_props.duckdb: another process is writing it"
        wait_until(lambda: all(waiting in out.read_text() for out in outputs), what="both jobs to wait for the lock")
    finally:
        holder.close()
    assert [job.wait(timeout=120) for job in jobs] == [0, 0], [out.read_text() for out in outputs]
    for out in outputs:
        assert "3 dates rebuilt" in out.read_text()
    both = [
        "--start",
        "2021-10-19",
        "--end",
        "2021-10-21",
        "--table",
        "nbac_team_boxscore",
        "--table",
        "odds_api_game_lines",
    ]
    assert set(statuses(demo, *both)) <= {"complete", "no_data"}


# The issue's case: the team box scores' job exits 0 but leaves one date of its range empty.
EMPTY_DAY = "2021-10-25"
OPENING_WEEKS = ["--start", "2021-10-19", "--end", "2021-10-31"]  # box scores never ran on any of them
TEAM_TABLES = ("team_defense_game_summary", "team_offense_game_summary")  # both read the box scores


def cells_on(spec: Path, day: str, *range_args: str) -> dict[str, dict]:
    result = cli("validate", "--spec", str(spec), *range_args, "--format", "json")
    return {c["table"]: c for c in json.loads(result.stdout)["cells"] if c["date"] == day}


def demo_job(spec: Path, table: str, start: str, end: str, *faults: str) -> None:
    job = [sys.executable, "-m", "backfill_kit.demo.job", table, "--warehouse", "nba_props.duckdb"]
    dates = ["--start-date", start, "--end-date", end, "--skip-downstream-trigger", *faults]
    done = subprocess.run([*job, *dates], cwd=spec.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_an_upstream_date_left_empty_holds_its_dependents_there_until_it_is_repaired(demo):
    fault = {"BACKFILL_KIT_DEMO_FAULTS": f"nbac_team_boxscore:empty-dates={EMPTY_DAY}"}
    first = cli("backfill", "--spec", str(demo), *OPENING_WEEKS, env=fault)
    assert first.returncode == 1, first.stdout[-2000:]
    for table in TEAM_TABLES:
        assert f"{table}:2021-10-19..2021-10-31 ran over 11 of its 12 dates, held on the others" in first.stdout
    assert f"upstream step nbac_team_boxscore:2021-10-19..2021-10-31 has no rows on {EMPTY_DAY}" in first.stdout
    cells = cells_on(demo, EMPTY_DAY, *OPENING_WEEKS)
    assert cells["nbac_team_boxscore"]["status"] == "no_data"
    assert {cells[t]["status"] for t in TEAM_TABLES} == {"never_ran"}  # never run over an empty upstream
    assert {cells_on(demo, "2021-10-26", *OPENING_WEEKS)[t]["status"] for t in TEAM_TABLES} == {"complete"}

    demo_job(demo, "nbac_team_boxscore", EMPTY_DAY, EMPTY_DAY)  # the upstream date repaired
    assert cli("validate", "--spec", str(demo), *OPENING_WEEKS).returncode == 1
    again = cli("backfill", "--spec", str(demo), *OPENING_WEEKS)
    assert again.returncode == 0, again.stdout[-2000:]
    cells = cells_on(demo, EMPTY_DAY, *OPENING_WEEKS)
    assert {cells[t]["status"] for t in ("nbac_team_boxscore", *TEAM_TABLES)} == {"complete"}


def test_dependents_that_read_an_empty_upstream_date_need_a_backfill_once_it_is_repaired(demo):
    """The same dates run as a runner that holds nothing back would run them: both dependents
    over the whole range, reading nothing on the empty date. Repaired upstream, their "no data"
    there was read too early: validation must not say there is nothing to backfill."""
    demo_job(demo, "nbac_team_boxscore", "2021-10-19", "2021-10-31", f"--empty-dates={EMPTY_DAY}")
    for table in TEAM_TABLES:
        demo_job(demo, table, "2021-10-19", "2021-10-31")
    assert {c["status"] for t, c in cells_on(demo, EMPTY_DAY, *OPENING_WEEKS).items() if t in TEAM_TABLES} == {
        "no_data"
    }
    demo_job(demo, "nbac_team_boxscore", EMPTY_DAY, EMPTY_DAY)
    result = cli("validate", "--spec", str(demo), *OPENING_WEEKS, "--format", "json")
    assert result.returncode == 1
    cells = cells_on(demo, EMPTY_DAY, *OPENING_WEEKS)
    for table in TEAM_TABLES:
        assert cells[table]["status"] == "never_ran"
        assert cells[table]["warnings"][0].startswith("read no data before upstream nbac_team_boxscore had its rows")
    fixed = cli("backfill", "--spec", str(demo), *OPENING_WEEKS)
    assert fixed.returncode == 0, fixed.stdout[-2000:]
