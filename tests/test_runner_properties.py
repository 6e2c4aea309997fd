"""Property: whatever happens to a run (the runner, its watchdog or a job SIGKILLed at any moment,
re-checks kept waiting by a job holding the warehouse's writer lock, the journal or the plan
deleted or replaced mid-run), `--resume` takes it to its end, and every case ends the same way:
no step that succeeded ran again, no job is left alive, the journal reads back, and validate
agrees with it.

Each example is a few real runners (tests/jobs/run_plan.py) over real jobs writing the mini
pipeline's DuckDB file: two chosen ones and two drawn by default (about half a minute),
BACKFILL_KIT_EXAMPLES=2000 draws 80.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from runner_helpers import alive, duck_step, job_pids, wait_until, write_plan

from backfill_kit import Status, load_spec, validate
from backfill_kit.plan import load_plan, plan_digest
from backfill_kit.running.journal import read_journal
from backfill_kit.running.locks import is_locked

pytestmark = pytest.mark.slow  # real runners killed at random moments: seconds by design

EXAMPLES = max(2, int(os.environ.get("BACKFILL_KIT_EXAMPLES", "0")) // 25)  # beside the two explicit ones
RUN_PLAN = str(Path(__file__).parent / "jobs" / "run_plan.py")
DAYS = [date(2024, 1, 3) + timedelta(i) for i in range(4)]  # after the analytics bootstrap days
TABLES = ["boxscore", "props", "summary"]  # what the plan writes
DISRUPTIONS = (
    "none",
    "kill_runner",
    "kill_runner_and_watchdog",
    "kill_job",
    "delete_journal",
    "replace_journal",
    "delete_plan",
    "replace_plan",
)

SCENARIOS = st.fixed_dictionaries(
    {
        "sleeps": st.lists(st.sampled_from([0.1, 0.3, 0.6]), min_size=4, max_size=4),
        "hold": st.sampled_from([0.0, 0.8, 1.6]),  # box_b keeps the writer lock: re-checks wait
        "props_limit": st.sampled_from([1.5, 20.0]),  # beyond its sleep; short: its re-check may run out of time
        "runs": st.lists(st.tuples(st.sampled_from(DISRUPTIONS), st.floats(0.0, 1.5)), min_size=1, max_size=3),
    }
)


def plan_for(spec: Path, m: Path, scenario: dict) -> Path:
    """Box scores in two steps and props together, then the summary of all four dates."""
    db, sleeps = spec.parent / "mini.duckdb", scenario["sleeps"]

    def step(name, table, sql, days, *, rows, sleep, after=(), timeout=20.0, hold=0.0):
        s = duck_step(name, m, db, table=table, sql_table=sql, dates=",".join(map(str, days)), rows=str(rows))
        argv = (*s.argv[:-1], "--sleep", str(sleep), "--hold", str(hold), s.argv[-1])
        return s.__class__(**{**s.__dict__, "argv": argv, "start": days[0], "end": days[-1], "dates": tuple(days),
                              "after": after, "timeout_seconds": timeout})  # fmt: skip

    box_a = step("box_a", "boxscore", "raw.boxscore", DAYS[:2], rows=2, sleep=sleeps[0])
    box_b = step("box_b", "boxscore", "raw.boxscore", DAYS[2:], rows=2, sleep=sleeps[1], hold=scenario["hold"])
    props = step(
        "props", "props", "raw.props", DAYS, rows=3, sleep=sleeps[2], timeout=sleeps[2] + scenario["props_limit"]
    )
    summary = step("summary", "summary", "analytics.summary", DAYS, rows=1, sleep=sleeps[3], after=("box_a", "box_b"))
    plan = spec.parent / "plan.json"
    write_plan(plan, (2, [box_a, box_b, props]), (1, [summary]), spec=spec)
    return plan


def start(plan: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, RUN_PLAN, str(plan), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def running_jobs(journal: Path, runs_before: int) -> list[int]:
    """The pids of this run's jobs still running, as its journal says (the run after `runs_before`)."""
    try:
        events = read_journal(journal).events
    except Exception:  # mid-write: ask again
        return []
    starts = [i for i, e in enumerate(events) if e["event"] == "run_started"]
    if len(starts) <= runs_before:
        return []
    mine = events[starts[-1] :]
    open_ = {e["step"]: e.get("pid") for e in mine if e["event"] == "step_started"}
    for e in mine:
        if e["event"] in ("step_exited", "step_finished"):
            open_.pop(e["step"], None)
    return [pid for pid in open_.values() if pid]


def runs_in(journal: Path) -> int:
    try:
        return sum(e["event"] == "run_started" for e in read_journal(journal).events)
    except Exception:
        return 0


def watchdog_of(runner: int) -> int | None:
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            parent = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1]
        except OSError:
            continue
        if b"backfill_kit.running.processes" in cmd and parent == str(runner):
            return int(entry)
    return None


def disrupt(how: str, at: float, runner: subprocess.Popen[str], plan: Path, journal: Path, before: int) -> None:
    """Do it `at` seconds in. What acts on the journal waits for a job to be running, so that it
    lands inside the run (after its end it would be a person deleting a finished record); what
    acts on the plan waits for the runner to have read it."""
    if how == "none":
        return
    time.sleep(at)
    if how in ("kill_job", "delete_journal", "replace_journal"):
        _wait_for(runner, lambda: running_jobs(journal, before))
        jobs = running_jobs(journal, before)
        if runner.poll() is not None or not jobs:
            return
        if how == "kill_job":
            with contextlib.suppress(ProcessLookupError):
                os.kill(jobs[0], signal.SIGKILL)
        elif how == "delete_journal":
            journal.unlink()
        else:
            (plan.parent / "theirs").write_text("someone else's\n")
            (plan.parent / "theirs").replace(journal)
    elif how in ("kill_runner", "kill_runner_and_watchdog"):
        if how == "kill_runner_and_watchdog" and (watchdog := watchdog_of(runner.pid)):
            os.kill(watchdog, signal.SIGKILL)
        runner.kill()
    else:
        _wait_for(runner, lambda: runs_in(journal) > before)
        if how == "delete_plan":
            plan.unlink()
        else:  # another plan in its place: the same steps, other bytes
            plan.write_bytes(plan.read_bytes() + b"\n")


def _wait_for(runner: subprocess.Popen[str], condition) -> None:
    deadline = time.monotonic() + 10
    while runner.poll() is None and not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def settle(runner: subprocess.Popen[str], journal: Path, m: Path) -> tuple[int, str]:
    """The runner's end, once its watchdog (or, without one, its last job) has let its locks go."""
    _, err = runner.communicate(timeout=120)
    wait_until(lambda: not is_locked(journal.with_name(journal.name + ".lock")), timeout=60, what="the locks")
    wait_until(lambda: not [p for p in job_pids(m) if alive(p)], timeout=10, what="every job to be gone")
    return runner.returncode, err


def check_invariants(spec: Path, plan: Path, journal: Path) -> dict[str, str]:
    state = read_journal(journal)  # reads back, or raises
    ids = {s.id for s in load_plan(plan).steps}
    assert set(state.outcomes) <= ids
    settled: dict[str, int] = {}
    for i, e in enumerate(state.events):
        if e["event"] == "step_started":
            assert e["step"] not in settled, f"{e['step']} ran again after its success (event {settled.get(e['step'])})"
        if e["event"] == "step_exited" or (e["event"] == "step_finished" and e["outcome"] == "succeeded"):
            settled.setdefault(e["step"], i)
    result = validate(load_spec(spec), DAYS[0], DAYS[-1], tables=TABLES)
    complete = {(c.table, c.date) for c in result.cells if c.status is Status.COMPLETE}
    for step in load_plan(plan).steps:
        if state.outcomes.get(step.id) == "succeeded":
            assert {(step.table, d) for d in step.dates} <= complete, f"{step.id} succeeded, yet validate disagrees"
    return state.outcomes


@pytest.fixture
def pipeline(mini):
    for d in DAYS:
        mini.games(d)
    spec = mini.close()
    spec.write_text(spec.read_text().replace("--no-trigger", "--skip-downstream-trigger"))
    return spec


# No shrinking: each example costs seconds, and the failing one is printed whole.
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.generate),
)
@given(scenario=SCENARIOS)
@example(  # the journal deleted under a run, then the plan replaced under the next
    scenario={"sleeps": [0.3, 0.6, 0.1, 0.3], "hold": 0.8, "props_limit": 20.0,
              "runs": [("delete_journal", 0.0), ("replace_plan", 0.2)]}
)  # fmt: skip
@example(  # runner and watchdog killed while a re-check waits for the writer lock, which outlasts it
    scenario={"sleeps": [0.1, 0.1, 0.1, 0.1], "hold": 1.6, "props_limit": 1.5,
              "runs": [("kill_runner_and_watchdog", 0.9), ("replace_journal", 0.0)]}
)  # fmt: skip
def test_every_run_however_disrupted_resumes_to_the_same_end(pipeline, tmp_path_factory, scenario):
    work = tmp_path_factory.mktemp("run")
    spec = work / pipeline.name
    spec.write_text(pipeline.read_text())
    (work / "mini.duckdb").write_bytes((pipeline.parent / "mini.duckdb").read_bytes())
    m = work / "marks"
    plan = plan_for(spec, m, scenario)
    journal, original = work / "plan.journal.jsonl", plan.read_bytes()
    first = True
    for how, at in scenario["runs"]:
        before = runs_in(journal)
        runner = start(plan, *([] if first else ["--resume"]))
        first = False
        disrupt(how, at, runner, plan, journal, before)
        code, err = settle(runner, journal, m)
        assert "Traceback" not in err, err
        if how == "replace_journal" and (recovered := sorted(work.glob("plan.recovered-*.journal.jsonl"))):
            assert journal.read_text() == "someone else's\n" and code == 1
            recovered[-1].replace(journal)  # as the message says: move it to the journal's path
        if how in ("delete_plan", "replace_plan"):
            if journal.exists() and read_journal(journal).events:
                assert read_journal(journal).plan_sha == plan_digest(original)  # the bytes that ran
            if how == "replace_plan":
                refused = start(plan, "--resume")
                code, err = settle(refused, journal, m)
                assert code == 2 and "belongs to another version of the plan" in err
            plan.write_bytes(original)
        if journal.exists():
            check_invariants(spec, plan, journal)
    for _ in range(5):
        code, err = settle(start(plan, "--resume"), journal, m)
        if code == 0:
            break
    assert code == 0, err
    assert set(check_invariants(spec, plan, journal).values()) == {"succeeded"}
    assert not validate(load_spec(spec), DAYS[0], DAYS[-1], tables=TABLES).needs_work
