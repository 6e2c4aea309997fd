"""Progress counted once: the phase rule, steps by outcome and the ETA, each from its one owner,
and every view that shows them agreeing with it."""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from runner_helpers import CLI_RUN, fake_step, wait_until, write_plan

from backfill_kit.cli.commands import cli
from backfill_kit.plan import Plan, Stage, Step
from backfill_kit.running.journal import Outcome

WHOLE = ["--start", "2021-10-19", "--end", "2025-06-22"]


def phase_lines(output: str) -> list[list[str]]:
    """The rows of the phase table a view printed, split into their columns."""
    lines = output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:3] == ["phase", "%", "complete"])
    rows = []
    for line in lines[head + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


@pytest.mark.slow  # the four-season demo
def test_validate_and_the_monitor_show_each_phase_at_the_same_slowest_table(pristine_demo: Path):
    """On a fresh demo, phase raw read 0.0% complete in validate and 82.4% in the monitor: two
    copies of the rule. Both now print the one phase table, and their JSON says the same."""
    spec = str(pristine_demo / "nba_props.yaml")
    runner = CliRunner()
    validated = runner.invoke(cli, ["validate", "--spec", spec, *WHOLE])
    monitored = runner.invoke(cli, ["monitor", "--spec", spec, *WHOLE])
    assert validated.exit_code == 1 and monitored.exit_code == 0, monitored.output
    rows = phase_lines(validated.output)
    assert rows == phase_lines(monitored.output)
    assert rows[0] == ["raw", "98.2%", "98.2%", "nbac_team_boxscore", "57", "3"]
    as_json = json.loads(runner.invoke(cli, ["validate", "--spec", spec, *WHOLE, "--format", "json"]).output)
    watched = json.loads(runner.invoke(cli, ["monitor", "--spec", spec, *WHOLE, "--format", "json"]).output)
    assert as_json["summary"]["phases"] == watched["phases"]
    assert as_json["summary"]["total"] == watched["total"]


def test_every_outcome_of_a_step_is_counted_somewhere():
    from backfill_kit.running.steps import CATEGORY

    assert set(Outcome) <= set(CATEGORY)


def test_a_failure_is_never_counted_as_done():
    from backfill_kit.running.steps import step_counts

    counts = step_counts(9, {"a": Outcome.FAILED, "b": Outcome.TIMED_OUT, "c": Outcome.INTERRUPTED, "d": "started"})
    assert counts.text() == "9 steps: 0 succeeded, 2 failed, 2 interrupted, 5 remaining"
    assert step_counts(1, {"a": Outcome.SUCCEEDED}).text() == "1 step: 1 succeeded"


def test_the_runners_summary_counts_a_plan_whose_every_job_fails_as_failed(tmp_path):
    """It ended 'run failed: 4/9 steps done, 0 running, 4 failed' with nothing succeeded."""
    m = tmp_path / "marks"
    first = [fake_step(f"bad{i}", m, "fail") for i in range(4)]
    later = [fake_step(f"later{i}", m) for i in range(5)]
    write_plan(tmp_path / "plan.json", (4, first), (1, later))
    shown = subprocess.run(
        [sys.executable, "-c", CLI_RUN, "run", "--plan", str(tmp_path / "plan.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 1, shown.stderr
    last = shown.stdout.splitlines()[-1]
    assert last.startswith("run failed: 9 steps: 0 succeeded, 4 failed, 5 remaining; elapsed "), last
    assert "done" not in shown.stdout


def test_a_stage_takes_as_long_as_its_workers_do_in_order():
    from backfill_kit.plan import stage_seconds

    assert stage_seconds([10, 1, 1, 1], 4) == 10  # not a quarter of 13
    assert stage_seconds([4, 4, 4], 2) == 8
    assert stage_seconds([3], 2, busy=[5]) == 5  # a worker still busy for 5 s; the other takes the 3 s step
    assert stage_seconds([], 3) == 0


def step(name: str, table: str, dates: int) -> Step:
    day = date(2024, 1, 1)
    days = tuple(day + timedelta(i) for i in range(dates))
    return Step(name, table, "p", days[0], days[-1], days, {}, ("true",), ".", {}, 60.0, 0, (), True)


def test_the_eta_is_what_is_left_scheduled_stage_by_stage_at_the_cost_this_run_measured():
    """a finished in 10 s (10 dates: 1 s a date); b has run 10 s of its 10; c (20 dates) waits;
    d (table u, never run) borrows the cost of all. Central: stage 1 takes 20 s (c on the free
    worker), stage 2 5 s. One sample only: every step 15% faster or slower for the range."""
    from backfill_kit.running.eta import MEASURED, run_eta
    from backfill_kit.running.steps import JournalRun, Sample

    plan = Plan(
        "",
        "p",
        date(2024, 1, 1),
        date(2024, 1, 31),
        datetime.now(UTC),
        [
            Stage(1, "p", "parallel", 2, (step("a", "t", 10), step("b", "t", 10), step("c", "t", 20))),
            Stage(2, "q", "sequential", 1, (step("d", "u", 5),)),
        ],
    )
    now = datetime(2024, 5, 1, 12, 0, 15, tzinfo=UTC)
    run = JournalRun(
        total=4,
        outcomes={"a": Outcome.SUCCEEDED, "b": "started"},
        open={"b": now - timedelta(seconds=10)},
        settled={"a"},
        samples=[Sample("t", 10, 10.0)],
    )
    eta = run_eta(plan, run, now)
    assert eta.kind == MEASURED
    # low: b 8.5 - 10 -> 0; c 17; d 4.25. high: b 11.5 - 10 = 1.5 beside c 23; d 5.75.
    assert (eta.low, eta.high) == pytest.approx((21.25, 28.75))
    assert eta.span() == "21 s to 29 s"
    assert eta.basis == (
        "measured: 1 step of this run finished, the cost per date of 1 table; 1 table not yet run at the cost "
        "measured in their phase, or in all; 3 steps left in 2 stages"
    )


def test_before_any_step_finishes_the_eta_is_the_plans_estimate_named_as_such():
    from backfill_kit.running.eta import PLANNED, run_eta
    from backfill_kit.running.steps import JournalRun

    estimated = Stage(1, "p", "parallel", 2, tuple(replace_estimate(step(n, "t", 3), 30.0) for n in "abc"))
    plan = Plan("", "p", date(2024, 1, 1), date(2024, 1, 31), datetime.now(UTC), [estimated])
    plan.options["estimate_basis"] = "from 3 runs in the run history"
    eta = run_eta(plan, JournalRun(total=3), datetime.now(UTC))
    assert (eta.kind, eta.low, eta.high) == (PLANNED, 60.0, 60.0)
    assert eta.text() == (
        "ETA about 1 min 00 s (no step of this run has finished yet; the plan's estimate, from 3 runs in the run "
        "history)"
    )


def replace_estimate(s: Step, seconds: float) -> Step:
    from dataclasses import replace

    return replace(s, estimated_seconds=seconds)


def test_a_resumed_attempt_gets_the_next_number_and_a_log_of_its_own(tmp_path):
    """A resumed step wrote into the same ...attempt-1.log, and the execution report said
    'attempts 1' for a step that ran twice. Retries start anew in each run."""
    from backfill_kit.reports.frames import attempts_frame, steps_frame
    from backfill_kit.running.journal import read_journal
    from backfill_kit.running.runner import Runner, RunOptions

    m = tmp_path / "marks"
    plan_path = tmp_path / "plan.json"
    plan = write_plan(
        plan_path,
        (2, [fake_step("once", m, extra=("--fail-first", "1")), fake_step("flaky", m, "transient=3", retries=1)]),
    )
    options = RunOptions(backoff_seconds=0.01)
    assert Runner(plan, plan_path, options).run().outcome == "failed"
    options.resume = True
    assert Runner(plan, plan_path, options).run().outcome == "completed"
    events = read_journal(tmp_path / "plan.journal.jsonl").events
    started = [(e["step"], e["attempt"]) for e in events if e["event"] == "step_started"]
    assert sorted(started) == [("flaky", 1), ("flaky", 2), ("flaky", 3), ("flaky", 4), ("once", 1), ("once", 2)]
    logs = tmp_path / "plan.logs"
    assert "step once run 1" in (logs / "once.attempt-1.log").read_text()
    assert "step once run 2" in (logs / "once.attempt-2.log").read_text()
    assert "step flaky run 4" in (logs / "flaky.attempt-4.log").read_text()
    steps = steps_frame(attempts_frame(events)).set_index("step")
    assert (steps.at["once", "attempts"], steps.at["flaky", "attempts"]) == (2, 4)


# --- the same counts everywhere ---------------------------------------------------------------

SMALL = ["--start", "2021-10-19", "--end", "2021-11-05"]
FAULTS = "team_offense_game_summary:fail=2021-10-26;player_shot_zone_analysis:hang"


def backfill_kit(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [str(Path(sys.executable).parent / "backfill-kit"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def squeezed(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow  # real demo jobs, a papermill kernel
def test_every_view_shows_the_same_counts_after_a_failure_and_a_ctrl_c(demo_copy: Path, tmp_path: Path):
    """A real backfill of three weeks of the demo: one job fails, another hangs until the
    runner gets SIGINT. Then, at one moment: validate, the monitor (terminal and JSON), the
    widget, the runner's summary, the execution report and index.html count alike."""
    pytest.importorskip("ipywidgets")
    from backfill_kit.monitor import MonitorWidget, take_snapshot
    from backfill_kit.running.journal import read_journal
    from backfill_kit.spec.load import load_spec

    spec, plan = demo_copy, demo_copy.parent / "runs" / "plan.json"
    assert backfill_kit("plan", "--spec", str(spec), *SMALL, "--out", str(plan)).returncode == 0
    journal = plan.with_name("plan.journal.jsonl")
    runner = subprocess.Popen(
        [str(Path(sys.executable).parent / "backfill-kit"), "run", "--plan", str(plan), "--keep-going"],
        env={**os.environ, "BACKFILL_KIT_DEMO_FAULTS": FAULTS},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    hanging = lambda: any(  # noqa: E731
        e["event"] == "step_started" and e["table"] == "player_shot_zone_analysis" for e in read_journal(journal).events
    )
    wait_until(hanging, 120, what="the hanging step to start")
    runner.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 130, err

    steps = "14 steps: 9 succeeded, 1 failed, 1 interrupted, 3 remaining"
    assert out.splitlines()[-1].startswith(f"run interrupted: {steps}; elapsed ")  # the runner's summary

    watched = json.loads(backfill_kit("monitor", "--spec", str(spec), *SMALL, "--format", "json").stdout)
    (position,) = watched["runners"]
    assert position["steps"] == {
        "total": 14, "succeeded": 9, "succeeded_without_data": 0, "failed": 1, "interrupted": 1, "skipped": 0,
        "awaiting_recheck": 0, "running": 0, "remaining": 3,
    }  # fmt: skip
    shown = backfill_kit("monitor", "--spec", str(spec), *SMALL).stdout
    assert f"{steps}; no runner at work" in squeezed(shown)
    validated = json.loads(backfill_kit("validate", "--spec", str(spec), *SMALL, "--format", "json").stdout)
    assert validated["summary"]["phases"] == watched["phases"] and validated["summary"]["total"] == watched["total"]
    assert validated["summary"]["total"]["failed"] == 1  # the failed date of team_offense_game_summary
    printed = backfill_kit("validate", "--spec", str(spec), *SMALL).stdout
    assert phase_lines(printed) == phase_lines(shown)

    loaded = load_spec(spec)
    widget = MonitorWidget(lambda: take_snapshot(loaded, "2021-10-19", "2021-11-05", journals=[journal]), 3600)
    widget.refresh()
    assert phase_lines(html.unescape(widget.view.value)) == phase_lines(shown)
    assert f"{steps}; no runner at work" in squeezed(html.unescape(widget.view.value))

    reports = tmp_path / "reports"
    rendered = backfill_kit("report", "execution", "--journal", str(journal), "--out-dir", str(reports))
    assert rendered.returncode == 0, rendered.stderr
    report = next(reports.glob("execution_*.html")).read_text()
    assert f"{steps}." in report and "interrupted (no runner at work, no run_finished event)" not in report
    index = (reports / "index.html").read_text()
    assert f"interrupted: {steps}" in index


def test_the_execution_report_of_a_run_at_work_gives_the_monitors_eta(tmp_path):
    """One function for the ETA: the report made while the runner works says what the monitor says."""
    from backfill_kit.plan import load_plan
    from backfill_kit.reports.notebook import execution
    from backfill_kit.running.eta import run_eta
    from backfill_kit.running.locks import LockSet, journal_lock
    from backfill_kit.running.steps import journal_run

    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (2, [fake_step(n, m) for n in "abc"]), (1, [fake_step("d", m)]))
    plan = load_plan(tmp_path / "plan.json")
    events = [
        {"event": "run_started", "time": "2026-01-01T10:00:00+00:00", "plan": str(tmp_path / "plan.json"),
         "plan_sha": "x", "steps": 4},
        {"event": "step_started", "time": "2026-01-01T10:00:00+00:00", "step": "a", "table": "a", "attempt": 1,
         "dates": 2},
        {"event": "step_finished", "time": "2026-01-01T10:00:30+00:00", "step": "a", "table": "a", "attempt": 1,
         "outcome": "succeeded"},
    ]  # fmt: skip
    journal = tmp_path / "plan.journal.jsonl"
    journal.write_text("".join(json.dumps(e) + "\n" for e in events))
    locks = LockSet()
    locks.acquire(journal_lock(journal), "the journal")  # a runner at work
    try:
        log = execution(journal)
        headline = log.headline()
    finally:
        locks.release()
    eta = run_eta(plan, journal_run(events), datetime.now(UTC))  # nothing at work: no time passes in it
    assert eta.kind == "measured" and html.escape(eta.basis) in headline.html and eta.span() in headline.html
    assert headline.numbers["outcome"] == "running (a runner is at work)"
    assert headline.numbers["steps_text"] == "4 steps: 1 succeeded, 3 remaining"


def test_exits_awaiting_their_recheck_and_parts_of_a_narrowed_step_are_counted_as_the_journal_says():
    """A job's exit is journaled before its re-check: the step is awaiting re-check (no worker
    held, its cost measured at its exit); a step narrowed to some dates runs as parts: running
    while one is, counted once when it finishes."""
    from backfill_kit.running.steps import journal_run

    def at(second: int) -> str:
        return f"2026-01-01T10:00:{second:02d}+00:00"

    events = [
        {"event": "run_started", "time": at(0), "plan": "p.json", "plan_sha": "x", "steps": 3},
        {"event": "step_started", "time": at(0), "step": "a", "table": "t", "attempt": 1, "dates": 4},
        {"event": "step_exited", "time": at(8), "step": "a", "table": "t", "attempt": 1},
        {"event": "step_narrowed", "time": at(8), "step": "b", "table": "u", "parts": ["b1", "b2"]},
        {"event": "step_started", "time": at(8), "step": "b1", "table": "u", "attempt": 1, "dates": 2,
         "part_of": "b"},
        {"event": "step_finished", "time": at(12), "step": "b1", "table": "u", "attempt": 1,
         "outcome": "succeeded", "part_of": "b"},
        {"event": "step_started", "time": at(12), "step": "b2", "table": "u", "attempt": 1, "dates": 1,
         "part_of": "b"},
    ]  # fmt: skip
    run = journal_run(events)
    assert run.counts(working=True).text() == "3 steps: 0 succeeded, 1 awaiting re-check, 1 running, 1 remaining"
    assert [(s.table, s.dates, s.seconds) for s in run.samples] == [("t", 4, 8.0), ("u", 2, 4.0)]
    assert run.settled == {"a"} and set(run.open) == {"b"}
    events += [
        {"event": "step_finished", "time": at(14), "step": "b2", "table": "u", "attempt": 1,
         "outcome": "succeeded", "part_of": "b"},
        {"event": "step_finished", "time": at(14), "step": "b", "table": "u", "outcome": "succeeded"},
        {"event": "step_finished", "time": at(15), "step": "a", "table": "t", "attempt": 1,
         "outcome": "recheck_failed"},
    ]  # fmt: skip
    run = journal_run(events)
    assert run.counts(working=False).text() == "3 steps: 1 succeeded, 1 awaiting re-check, 1 remaining"
    assert len(run.samples) == 3  # a's cost counted at its exit, not again at its verdict
