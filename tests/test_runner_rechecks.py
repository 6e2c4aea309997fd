"""The re-check of a finished step, on real DuckDB files and real subprocesses: journaled
apart from the job's exit, run off the runner's loop, waiting (within the step's time limit)
for a warehouse another job holds locked, and resumed when it had no verdict."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from runner_helpers import DAY, duck_step, fake_step, runs_of, write_plan

from backfill_kit.errors import WarehouseError
from backfill_kit.plan import load_plan
from backfill_kit.running.journal import read_journal
from backfill_kit.running.runner import Recheck, Runner, RunOptions, warehouse_checker

LOCKED = 'IO Error: Could not set lock on file "mini.duckdb": Conflicting lock is held'


@pytest.fixture
def pipeline(mini):
    """The mini pipeline, its jobs told to skip downstream triggers as the test jobs are, with
    box scores already in place on the test steps' two dates."""
    mini.rows("raw.boxscore", DAY, 4).rows("raw.boxscore", DAY + timedelta(1), 4)
    spec = mini.close()
    spec.write_text(spec.read_text().replace("--no-trigger", "--skip-downstream-trigger"))
    return spec


def run(plan_path: Path, checker=None, **options):
    plan = load_plan(plan_path)
    checker = checker or warehouse_checker(plan)
    return Runner(plan, plan_path, RunOptions(kill_grace_seconds=1, **options), checker=checker).run()


def events(journal: Path) -> list[dict]:
    return read_journal(journal).events


def index(evs: list[dict], kind: str, step: str) -> int:
    return next(i for i, e in enumerate(evs) if e["event"] == kind and e.get("step") == step)


def test_a_recheck_that_raises_loses_no_success_and_stops_nothing(tmp_path):
    """The issue's case: a re-check raised (a writer lock held past its wait) and the run stopped
    with exit 2, every job killed, finished successes missing from the journal."""
    m = tmp_path / "marks"
    steps = [fake_step("locked", m, timeout=1.5), fake_step("slow", m, "sleep=1"), fake_step("other", m)]
    write_plan(tmp_path / "plan.json", (3, steps))

    def checker(step):
        if step.id == "locked":
            raise WarehouseError(f"cannot open the DuckDB warehouse mini.duckdb: {LOCKED}", retryable=True)
        return Recheck(frozenset(step.dates))

    result = run(tmp_path / "plan.json", checker)
    assert (result.outcome, result.exit_code) == ("failed", 1)
    assert result.outcomes == {"locked": "recheck_failed", "slow": "succeeded", "other": "succeeded"}
    evs = events(tmp_path / "plan.journal.jsonl")
    exited = evs[index(evs, "step_exited", "locked")]
    assert exited["exit_code"] == 0 and index(evs, "step_exited", "locked") < index(evs, "step_finished", "locked")
    verdict = evs[index(evs, "step_finished", "locked")]
    assert "Could not set lock on file" in verdict["tail"] and "of waiting" in verdict["tail"]
    assert any(w.startswith("locked: its job exited 0, but its dates could not be re-checked") for w in result.warnings)
    assert any(e["event"] == "recheck_waiting" and e["step"] == "locked" for e in evs)

    again = run(tmp_path / "plan.json", lambda step: Recheck(frozenset(step.dates)), resume=True)
    assert (again.outcome, again.outcomes["locked"]) == ("completed", "succeeded")
    assert runs_of(m, "locked") == runs_of(m, "slow") == runs_of(m, "other") == 1  # re-checked, never rerun


def test_a_job_holding_the_warehouse_lock_makes_another_steps_recheck_wait_not_stop(pipeline, tmp_path):
    """A real job holds DuckDB's writer lock for 4 s; another step finishes meanwhile. Its re-check
    waits (journaled as waiting) while the loop starts a third step; once its 2 s limit is
    spent it ends recheck_failed, and the holder's success is on record. --resume re-checks it."""
    m, db = tmp_path / "marks", pipeline.parent / "mini.duckdb"
    days = f"{DAY},{DAY + timedelta(1)}"
    holder = duck_step("holder", m, db, table="props", sql_table="raw.props", hold="4", dates=days)
    quick = fake_step("quick", m, "ok", table="boxscore", timeout=2, extra=("--after", str(m / "holder.holding")))
    later = fake_step("later", m, "ok", table="boxscore", timeout=30)
    write_plan(tmp_path / "plan.json", (2, [holder, quick, later]), spec=pipeline)

    result = run(tmp_path / "plan.json")
    assert (result.outcome, result.exit_code) == ("failed", 1)
    assert result.outcomes == {"holder": "succeeded", "quick": "recheck_failed", "later": "succeeded"}
    evs = events(tmp_path / "plan.journal.jsonl")
    waiting = evs[index(evs, "recheck_waiting", "quick")]
    assert "Could not set lock on file" in waiting["error"]
    # The loop went on while quick's re-check waited: later started before the holder let go.
    assert index(evs, "step_started", "later") < index(evs, "step_exited", "holder")
    assert index(evs, "step_exited", "quick") < index(evs, "step_finished", "quick")

    again = run(tmp_path / "plan.json", resume=True)
    assert (again.outcome, again.outcomes["quick"]) == ("completed", "succeeded")
    assert (runs_of(m, "quick"), runs_of(m, "holder"), runs_of(m, "later")) == (1, 1, 1)
    finished = [e for e in events(tmp_path / "plan.journal.jsonl") if e["event"] == "step_finished"]
    assert finished[-1]["step"] == "quick" and finished[-1]["outcome"] == "succeeded"


def test_a_run_killed_between_exit_and_verdict_is_rechecked_on_resume_never_rerun(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("a", m)]))
    journal = tmp_path / "plan.journal.jsonl"

    def dies(step):
        raise WarehouseError("the warehouse is away", retryable=False)

    first = run(tmp_path / "plan.json", dies)
    assert first.outcomes == {"a": "recheck_failed"}
    lines = journal.read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if json.loads(line)["event"] == "step_exited")
    journal.write_text("\n".join(lines[: cut + 1]) + "\n")  # a crash right after the exit was journaled
    assert read_journal(journal).awaiting_recheck == {"a"}
    again = run(tmp_path / "plan.json", lambda step: Recheck(frozenset(step.dates)), resume=True)
    assert again.outcomes == {"a": "succeeded"} and runs_of(m, "a") == 1
