"""The runner on real subprocesses: order, failures, timeouts, retries, resume, locks, signals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from runner_helpers import CLI_RUN, edit_journal_line, fake_step, finish, runs_of, start_runner, wait_until, write_plan

from backfill_kit.cli.commands import cli
from backfill_kit.errors import BackfillKitError, InputError
from backfill_kit.plan import load_plan
from backfill_kit.running.journal import read_journal
from backfill_kit.running.locks import is_locked
from backfill_kit.running.runner import Recheck, Runner, RunOptions, plan_sha


def run(plan_path: Path, **options):
    opts = RunOptions(backoff_seconds=0.05, kill_grace_seconds=1, **options)
    return Runner(load_plan(plan_path), plan_path, opts).run()


def events(result, kind):
    return [e for e in read_journal(result.journal).events if e["event"] == kind]


def test_stages_run_in_order_and_every_step_is_journaled(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (2, [fake_step("a", m), fake_step("b", m)]), (1, [fake_step("c", m)]))
    result = run(tmp_path / "plan.json")
    assert (result.outcome, result.exit_code) == ("completed", 0)
    finished = events(result, "step_finished")
    assert [e["step"] for e in finished][-1] == "c"
    assert {e["outcome"] for e in finished} == {"succeeded"}
    log = Path(finished[-1]["log"]).read_text()
    assert "step c run 1, skip downstream: True" in log
    assert all(isinstance(e["seconds"], float) and e["exit_code"] == 0 for e in finished)


def test_a_failing_step_stops_after_its_stage_and_resume_retries_only_it(tmp_path):
    m = tmp_path / "marks"
    write_plan(
        tmp_path / "plan.json", (2, [fake_step("good", m), fake_step("bad", m, "fail")]), (1, [fake_step("later", m)])
    )
    first = run(tmp_path / "plan.json")
    assert (first.outcome, first.exit_code) == ("failed", 1)
    bad = next(e for e in events(first, "step_finished") if e["step"] == "bad")
    assert bad["exit_code"] == 3 and "boom: bad cannot reach the source" in bad["tail"]
    assert runs_of(m, "later") == 0  # the next stage never started

    write_plan(tmp_path / "plan.json", (2, [fake_step("good", m), fake_step("bad", m)]), (1, [fake_step("later", m)]))
    with pytest.raises(InputError, match="belongs to another version of the plan"):
        run(tmp_path / "plan.json", resume=True)  # the plan changed under the journal
    (tmp_path / "plan.journal.jsonl").unlink()
    write_plan(
        tmp_path / "plan.json", (2, [fake_step("good", m), fake_step("bad", m, "fail")]), (1, [fake_step("later", m)])
    )
    run(tmp_path / "plan.json")
    with pytest.raises(InputError, match="Pass --resume"):
        run(tmp_path / "plan.json")
    again = run(tmp_path / "plan.json", resume=True)
    assert again.outcomes == {"good": "succeeded", "bad": "failed"}  # the next stage waits still
    assert runs_of(m, "good") == 2  # once per fresh journal, never on resume
    assert runs_of(m, "bad") == 3


def test_keep_going_skips_only_work_that_depends_on_the_failure(tmp_path):
    m = tmp_path / "marks"
    write_plan(
        tmp_path / "plan.json",
        (2, [fake_step("bad", m, "fail"), fake_step("fine", m)]),
        (2, [fake_step("needs_bad", m, after=("bad",)), fake_step("needs_fine", m, after=("fine",))]),
    )
    result = run(tmp_path / "plan.json", keep_going=True)
    assert result.outcome == "failed"
    assert result.outcomes == {"bad": "failed", "fine": "succeeded", "needs_bad": "skipped", "needs_fine": "succeeded"}
    assert runs_of(m, "needs_bad") == 0


def test_a_failure_skips_the_whole_chain_below_it_through_direct_dependencies(tmp_path):
    m = tmp_path / "marks"  # a plan lists only the steps a step reads directly
    write_plan(
        tmp_path / "plan.json",
        (1, [fake_step("raw", m, "fail")]),
        (1, [fake_step("mid", m, after=("raw",))]),
        (1, [fake_step("top", m, after=("mid",))]),
    )
    result = run(tmp_path / "plan.json", keep_going=True)
    assert result.outcomes == {"raw": "failed", "mid": "skipped", "top": "skipped"}
    assert runs_of(m, "mid") == runs_of(m, "top") == 0


def test_a_hanging_step_is_killed_at_its_timeout_with_its_children(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("stuck", m, "hang", timeout=0.5)]))
    began = time.monotonic()
    result = run(tmp_path / "plan.json")
    assert time.monotonic() - began < 10
    (finished,) = events(result, "step_finished")
    assert finished["outcome"] == "timed_out" and finished["exit_code"] < 0
    pid = events(result, "step_started")[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone


def test_transient_exit_codes_are_retried_with_backoff(tmp_path):
    m = tmp_path / "marks"
    write_plan(
        tmp_path / "plan.json",
        (1, [fake_step("flaky", m, "transient=2", retries=2), fake_step("hopeless", m, "transient=9", retries=1)]),
    )
    result = run(tmp_path / "plan.json")
    assert result.outcomes == {"flaky": "succeeded", "hopeless": "failed"}
    assert runs_of(m, "flaky") == 3 and runs_of(m, "hopeless") == 2
    retrying = [e for e in events(result, "step_finished") if e["outcome"] == "retrying"]
    assert sorted((e["step"], e["retry_in"]) for e in retrying) == [("flaky", 0.05), ("flaky", 0.1), ("hopeless", 0.05)]


def test_a_job_that_could_trigger_downstream_is_refused_unless_allowed(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("loud", m, skips=False)]))
    with pytest.raises(BackfillKitError, match="declare no skip_downstream setting"):
        run(tmp_path / "plan.json")
    assert runs_of(m, "loud") == 0 and not (tmp_path / "plan.journal.jsonl").exists()
    assert run(tmp_path / "plan.json", allow_downstream_triggers=True).outcome == "completed"


def test_a_step_that_exits_0_without_writing_is_flagged(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("empty", m), fake_step("full", m)]))
    plan = load_plan(tmp_path / "plan.json")

    def checker(step):
        return Recheck(frozenset() if step.id == "empty" else frozenset(step.dates))

    result = Runner(plan, tmp_path / "plan.json", RunOptions(), checker=checker).run()
    assert result.outcomes == {"empty": "succeeded_without_data", "full": "succeeded"}
    assert result.warnings == ["empty exited 0 but left all 2 of its dates without rows"]
    assert result.outcome == "completed"


def test_the_journal_records_the_plan_that_ran_not_the_file_that_replaced_it(tmp_path):
    """A plan replaced after it was read (during the preflight, say): the journal names the bytes
    whose commands ran, so the new file on disk is not taken for the plan that ran."""
    m, plan_path = tmp_path / "marks", tmp_path / "plan.json"
    write_plan(plan_path, (1, [fake_step("old", m)]))
    read_sha, plan = plan_sha(plan_path), load_plan(plan_path)
    write_plan(plan_path, (1, [fake_step("new", m)]))  # replaced meanwhile
    Runner(plan, plan_path, RunOptions()).run()
    assert (runs_of(m, "old"), runs_of(m, "new")) == (1, 0)
    assert read_journal(tmp_path / "plan.journal.jsonl").plan_sha == read_sha != plan_sha(plan_path)
    with pytest.raises(InputError, match="belongs to another version of the plan"):
        run(plan_path, resume=True)


def test_resuming_a_new_plan_written_over_a_finished_one_is_refused_not_called_finished(tmp_path):
    m, plan_path = tmp_path / "marks", tmp_path / "plan.json"
    write_plan(plan_path, (1, [fake_step("first", m)]))
    assert run(plan_path).outcome == "completed"
    write_plan(plan_path, (1, [fake_step("second", m)]))
    result = CliRunner().invoke(cli, ["run", "--plan", str(plan_path), "--resume"])
    assert result.exit_code == 2, result.output
    assert "belongs to another version of the plan" in result.output and "already ran" not in result.output
    assert runs_of(m, "second") == 0


def test_a_corrupt_journal_line_is_named_and_nothing_is_overwritten(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("a", m)]))
    run(tmp_path / "plan.json")
    journal = tmp_path / "plan.journal.jsonl"
    edit_journal_line(journal, 2, lambda _: '{"event": "step_started", "step": "a"\n')
    before = journal.read_bytes()
    with pytest.raises(InputError, match=r"plan.journal.jsonl:2: the journal line is corrupt"):
        run(tmp_path / "plan.json", resume=True)
    assert journal.read_bytes() == before and runs_of(m, "a") == 1


def test_a_journal_in_the_words_of_earlier_versions_resumes_and_keeps_them(tmp_path):
    """Outcomes and events are enums in the code; on disk they stay the words they always were."""
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("a", m), fake_step("b", m)]))
    journal = tmp_path / "plan.journal.jsonl"
    t = "2026-01-01T00:00:00.000+00:00"
    old = [
        {
            "event": "run_started",
            "time": t,
            "plan": "plan.json",
            "plan_sha": plan_sha(tmp_path / "plan.json"),
            "steps": 2,
        },
        {"event": "stage_started", "time": t, "stage": 1},
        {"event": "step_started", "time": t, "step": "a", "table": "a", "attempt": 1},
        {"event": "step_finished", "time": t, "step": "a", "table": "a", "outcome": "succeeded"},
    ]
    journal.write_text("".join(json.dumps(e) + "\n" for e in old))
    result = run(tmp_path / "plan.json", resume=True)
    assert (runs_of(m, "a"), runs_of(m, "b"), result.outcome) == (0, 1, "completed")
    written = [json.loads(line) for line in journal.read_text().splitlines()[len(old) :]]
    assert [(e["event"], e.get("outcome")) for e in written if e["event"].endswith("finished")] == [
        ("step_finished", "succeeded"),
        ("stage_finished", None),
        ("run_finished", "completed"),
    ]


def test_a_line_torn_by_a_crash_is_dropped_on_resume(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("a", m), fake_step("b", m)]))
    run(tmp_path / "plan.json")
    journal = tmp_path / "plan.journal.jsonl"
    journal.write_bytes(journal.read_bytes() + b'{"event": "step_sta')
    result = run(tmp_path / "plan.json", resume=True)
    assert events(result, "journal_repaired")[0]["dropped_bytes"] == 19
    assert runs_of(m, "a") == 1


def test_a_second_runner_on_the_same_plan_is_refused(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("slow", m, "wait")]))
    first = start_runner(tmp_path / "plan.json")
    wait_until(lambda: runs_of(m, "slow"), what="the first runner's job to start")
    second = subprocess.run(
        [sys.executable, "-c", CLI_RUN, "run", "--plan", str(tmp_path / "plan.json"), "--resume"],
        capture_output=True,
        text=True,
    )
    assert second.returncode == 2
    assert "is in use by another runner (pid" in second.stderr and "Traceback" not in second.stderr
    (m / "release").write_text("go")  # only now may the first runner's job end
    assert finish(first)[0] == 0


def test_a_second_runner_is_kept_off_tables_another_is_writing(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "one.json", (1, [fake_step("slow", m, "wait", table="shared")]))
    write_plan(tmp_path / "two.json", (1, [fake_step("other", m, table="shared")]))
    first = start_runner(tmp_path / "one.json")
    wait_until(lambda: runs_of(m, "slow"), what="the first runner's job to start")
    second = subprocess.run(
        [sys.executable, "-c", CLI_RUN, "run", "--plan", str(tmp_path / "two.json")], capture_output=True, text=True
    )
    assert second.returncode == 2 and "table shared is in use by another runner" in second.stderr
    assert runs_of(m, "other") == 0
    (m / "release").write_text("go")  # only now may the first runner's job end
    assert finish(first)[0] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])  # SIGHUP: the terminal closed
def test_sigterm_stops_the_children_and_leaves_a_resumable_journal(sig, tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (2, [fake_step("done", m), fake_step("long", m, "wait")]))
    runner = start_runner(tmp_path / "plan.json")
    wait_until(
        lambda: runs_of(m, "long") and read_journal(tmp_path / "plan.journal.jsonl").done == {"done"},
        what="done journaled and long running",
    )
    runner.send_signal(sig)
    assert finish(runner)[0] == 130
    state = read_journal(tmp_path / "plan.journal.jsonl")
    assert state.outcomes == {"done": "succeeded", "long": "interrupted"}
    started = [e for e in state.events if e["event"] == "step_started" and e["step"] == "long"]
    with pytest.raises(ProcessLookupError):
        os.killpg(started[0]["pid"], 0)
    (m / "release").write_text("go")  # from now on the waiting job finishes
    resumed = run(tmp_path / "plan.json", resume=True)
    assert resumed.outcome == "completed"
    assert (runs_of(m, "done"), runs_of(m, "long")) == (1, 2)


@pytest.mark.slow  # twenty runs killed at random moments: seconds by design
def test_sigkill_at_random_moments_never_reruns_a_success(tmp_path):
    """Kill the runner 20 times at random moments; each --resume completes what is left."""
    m = tmp_path / "marks"
    steps = [fake_step(f"s{i}", m, "sleep=0.15") for i in range(8)]
    write_plan(tmp_path / "plan.json", (3, steps[:4]), (2, steps[4:]))
    rng = random.Random(20)
    for _ in range(20):
        runner = start_runner(tmp_path / "plan.json", "--resume")
        time.sleep(rng.uniform(0.0, 0.6))
        runner.kill()
        finish(runner)
        read_journal(tmp_path / "plan.journal.jsonl")  # stays readable: raises if not
    # The killed runner's watchdog holds its locks until its jobs are gone.
    wait_until(lambda: not is_locked(tmp_path / "plan.journal.jsonl.lock"), what="the last runner's locks")
    final = start_runner(tmp_path / "plan.json", "--resume")
    assert finish(final)[0] == 0
    state = read_journal(tmp_path / "plan.journal.jsonl")
    assert set(state.outcomes.values()) == {"succeeded"}
    for e in state.events:
        if e["event"] == "step_finished" and e["outcome"] == "succeeded":
            later_starts = [
                x
                for x in state.events[state.events.index(e) :]
                if x["event"] == "step_started" and x["step"] == e["step"]
            ]
            assert later_starts == [], f"{e['step']} ran again after it succeeded"
    assert json.loads((tmp_path / "plan.json").read_text())["totals"]["steps"] == 8
