"""The runner under real faults: a full or read-only disk, a SIGKILLed runner, jobs that
escape their group or print anything, bad journals, and steps that wrote no rows."""

from __future__ import annotations

import contextlib
import io
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from runner_helpers import (
    CLI_RUN,
    DAY,
    alive,
    edit_journal_line,
    fake_step,
    finish,
    job_pids,
    runs_of,
    start_runner,
    wait_until,
    write_plan,
)

from backfill_kit.cli.commands import cli
from backfill_kit.errors import BackfillKitError, SpecError
from backfill_kit.plan import load_plan
from backfill_kit.running.containment import NO_CGROUP_ENV, RunCgroup
from backfill_kit.running.executor import ORPHAN_SCAN_SECONDS
from backfill_kit.running.journal import read_journal
from backfill_kit.running.locks import is_locked
from backfill_kit.running.runner import Recheck, Runner, RunOptions


def run(plan_path: Path, **options):
    return Runner(load_plan(plan_path), plan_path, RunOptions(kill_grace_seconds=1, **options)).run()


def never_rerun_after_success(journal: Path) -> None:
    events = read_journal(journal).events
    for i, e in enumerate(events):
        if e["event"] == "step_finished" and e["outcome"] == "succeeded":
            again = [x for x in events[i:] if x["event"] == "step_started" and x["step"] == e["step"]]
            assert again == [], f"{e['step']} ran again after it succeeded"


# --- a full or read-only disk ----------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs, when this test may mount one (root in a container that allows it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here; the short-write case covers the same code")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses even one more byte."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    return filler


LONG_TAIL = "\n".join(f"line {i}: " + "y" * 400 for i in range(15))  # a failure's tail: > one 4 KiB page


@pytest.mark.parametrize("fault", ["full_tmpfs", "short_write"])
def test_a_disk_full_mid_run_stops_cleanly_and_the_resume_reruns_no_success(fault, tmp_path, request):
    """The next journal event needs more room than is left: the write is cut short. The run
    stops with its jobs, the journal holds no torn line, and once there is room again the
    resume finishes without rerunning a step that succeeded."""
    home = request.getfixturevalue("small_disk") if fault == "full_tmpfs" else tmp_path / "runs"
    m = tmp_path / "marks"
    first = [
        fake_step("a", m),
        fake_step("b", m, "wait", extra=("--say", LONG_TAIL, "--fail-first", "1")),
        fake_step("d", m, "wait"),
    ]
    plan = home / "plan.json"
    write_plan(plan, (1, first[:1]), (2, first[1:]), (1, [fake_step("e", m)]))
    journal = home / "plan.journal.jsonl"
    runner = start_runner(plan)
    wait_until(
        lambda: runs_of(m, "b") and runs_of(m, "d") and read_journal(journal).outcomes.get("a") == "succeeded",
        what="a done, b and d running",
    )
    wait_until(lambda: "line 14" in (home / "plan.logs" / "b.attempt-1.log").read_text(), what="b's output logged")
    if fault == "full_tmpfs":
        filler = fill(home)
    else:  # the runner's files may grow by 100 bytes more: the next event is written in part
        limit = journal.stat().st_size + 100
        resource.prlimit(runner.pid, resource.RLIMIT_FSIZE, (limit, limit))
    (m / "b.release").write_text("go")  # b fails; its long tail does not fit
    code, err = finish(runner)
    assert code == 1 and "cannot write the journal" in err and "Traceback" not in err
    assert ("No space left on device" if fault == "full_tmpfs" else "File too large") in err
    assert "then continue with --resume" in err
    state = read_journal(journal)  # readable, and no torn line anywhere
    assert state.torn_tail == 0 and journal.read_bytes().endswith(b"\n")
    assert not [p for p in job_pids(m) if alive(p)]  # d was stopped with the run
    assert state.outcomes["a"] == "succeeded" and "b" not in state.done

    if fault == "full_tmpfs":
        filler.unlink()
    (m / "release").write_text("go")
    code, err = finish(start_runner(plan, "--resume"))
    assert code == 0, err
    assert read_journal(journal).outcomes == dict.fromkeys("abde", "succeeded")
    assert (runs_of(m, "a"), runs_of(m, "b"), runs_of(m, "e")) == (1, 2, 1)
    never_rerun_after_success(journal)


def test_a_journal_on_a_read_only_disk_is_one_message(small_disk, tmp_path):
    write_plan(small_disk / "plan.json", (1, [fake_step("a", tmp_path / "marks")]))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code, err = finish(start_runner(small_disk / "plan.json"))
    assert code == 2 and err.count("\n") == 1 and "Read-only file system" in err and "Traceback" not in err
    assert runs_of(tmp_path / "marks", "a") == 0


# --- a journal deleted or replaced mid-run ---------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "deleted with its folder", "replaced"])
def test_a_journal_deleted_or_replaced_mid_run_stops_it_and_loses_no_success(how, tmp_path):
    """The issue's case: the run went on, ended "completed ... journal PATH" for a file that was
    gone, and the next --resume ran every step again."""
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (2, [fake_step("done", m), fake_step("long", m, "wait")]))
    journal = tmp_path / "records" / "plan.journal.jsonl"
    runner = start_runner(tmp_path / "plan.json", "--journal", str(journal))
    wait_until(lambda: runs_of(m, "long") and read_journal(journal).done == {"done"}, what="done journaled")
    if how == "deleted with its folder":
        shutil.rmtree(journal.parent)
        how = "deleted"
    elif how == "deleted":
        journal.unlink()
    else:  # another file put in its place, as an editor or a copy back would
        (tmp_path / "theirs").write_text("not the run's\n")
        (tmp_path / "theirs").replace(journal)
    try:
        runner.wait(15)
    except subprocess.TimeoutExpired:
        (m / "release").write_text("go")
        finish(runner)
        pytest.fail("the run went on without its journal")
    code, err = finish(runner)
    assert code == 1 and "Traceback" not in err
    assert f"the journal {journal} was {'deleted' if how == 'deleted' else 'replaced by another file'}" in err
    assert not [p for p in job_pids(m) if alive(p)]
    if how == "deleted":
        record = journal
        assert f"written back to {journal}: continue with --resume" in err
    else:
        assert journal.read_text() == "not the run's\n"  # what took its place is left as it is
        (record,) = journal.parent.glob("plan.recovered-*.journal.jsonl")
        assert f"continue with --resume --journal {record}" in err
    state = read_journal(record)
    assert state.outcomes["done"] == "succeeded" and state.events[-1]["event"] == "journal_restored"

    (m / "release").write_text("go")
    resume = ["--resume", "--journal", str(record)]
    code, err = finish(start_runner(tmp_path / "plan.json", *resume))
    assert code == 0, err
    assert (runs_of(m, "done"), runs_of(m, "long")) == (1, 2)
    never_rerun_after_success(record)


# --- journals checked on reading -------------------------------------------------------------


def test_a_journal_event_missing_a_field_is_named_by_file_and_line(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("a", m)]))
    run(tmp_path / "plan.json")
    journal = tmp_path / "plan.journal.jsonl"
    # A step_finished without its outcome.
    edit_journal_line(journal, 4, lambda line: line.replace('"outcome": "succeeded", ', ""))
    with pytest.raises(BackfillKitError, match=r"plan.journal.jsonl:4: .*a step_finished event without its 'outcome'"):
        run(tmp_path / "plan.json", resume=True)


def test_a_plan_passed_as_a_journal_is_named_as_such(tmp_path):
    write_plan(tmp_path / "plan.json", (1, [fake_step("a", tmp_path / "marks")]))
    result = CliRunner().invoke(
        cli, ["report", "execution", "--journal", str(tmp_path / "plan.json"), "--out-dir", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "plan.json is not a backfill-kit journal: it is a plan file" in result.output
    assert "move it aside" not in result.output and "Traceback" not in result.output


def test_one_bad_journal_does_not_stop_the_monitor(mini, tmp_path):
    spec = mini.games(date(2024, 1, 10)).close()  # a game date: a range without any is refused
    good, torn, huge = (spec.parent / "runs" / f"{n}.journal.jsonl" for n in ("good", "torn", "huge"))
    good.parent.mkdir()
    good.write_text(
        '{"event": "run_started", "time": "2024-01-01T00:00:00+00:00", "plan": "p", "plan_sha": "x", "steps": 3}\n'
    )
    torn.write_text('{"event": "run_started", "time": "2024-01-01T00:00:00+00:00"}\n{"event": "step_sta\n')
    huge.write_bytes(good.read_bytes() + b'{"event": "step_finished", "tail": "' + b"z" * (2 << 20))
    result = CliRunner().invoke(cli, ["monitor", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31"])
    assert result.exit_code == 0, result.output
    assert "torn.journal.jsonl cannot be read" in result.output and "torn.journal.jsonl:1:" in result.output
    assert "huge.journal.jsonl cannot be read" in result.output and "longer than any journal event" in result.output
    assert "good.journal.jsonl: 3 steps: 0 succeeded, 3 remaining; no runner at work" in " ".join(result.output.split())
    assert len(result.output) < 20_000


# --- steps without data ----------------------------------------------------------------------


def test_a_step_without_data_blocks_its_dependents_and_the_run_exits_non_zero(tmp_path):
    m = tmp_path / "marks"
    write_plan(
        tmp_path / "plan.json",
        (2, [fake_step("empty", m), fake_step("full", m)]),
        (2, [fake_step("reads_empty", m, after=("empty",)), fake_step("reads_full", m, after=("full",))]),
        (1, [fake_step("two_down", m, after=("reads_empty", "empty"))]),
    )

    def checker(step):
        return Recheck(frozenset() if step.id == "empty" else frozenset(step.dates))

    result = Runner(load_plan(tmp_path / "plan.json"), tmp_path / "plan.json", RunOptions(), checker=checker).run()
    assert (result.outcome, result.exit_code) == ("blocked", 1)
    assert result.outcomes == {
        "empty": "succeeded_without_data",
        "full": "succeeded",
        "reads_empty": "skipped",
        "reads_full": "succeeded",
        "two_down": "skipped",
    }
    assert result.blocked == {
        "reads_empty": "upstream step empty succeeded without data",
        "two_down": "upstream step reads_empty was blocked",
    }
    assert runs_of(m, "reads_empty") == runs_of(m, "two_down") == 0 and runs_of(m, "reads_full") == 1
    assert any(w.startswith("reads_empty was not run, blocked") for w in result.warnings)


def four_days(step):
    days = tuple(DAY + timedelta(i) for i in range(4))
    return replace(step, start=days[0], end=days[-1], dates=days)


def narrow_fake(step, dates):
    """What the spec's job would make of the step over fewer dates: here, a fake job named for them."""
    part = f"{step.id}:{dates[0]}..{dates[-1]}"
    argv = list(step.argv)
    argv[2] = part
    return replace(step, id=part, start=dates[0], end=dates[-1], dates=tuple(dates), argv=tuple(argv))


def test_dependents_run_only_over_the_dates_their_upstream_left_rows_on(tmp_path):
    """The upstream exits 0 but leaves one of its four dates empty: its dependent is split around
    that date, the date listed as held (blocked), and the dependent's own dependent likewise."""
    m = tmp_path / "marks"
    write_plan(
        tmp_path / "plan.json",
        (1, [four_days(fake_step("up", m))]),
        (1, [four_days(fake_step("down", m, after=("up",)))]),
        (1, [four_days(fake_step("bottom", m, after=("down",)))]),
    )
    gap = DAY + timedelta(1)

    def checker(step):
        return Recheck(frozenset(step.dates) - {gap})

    plan = load_plan(tmp_path / "plan.json")
    runner = Runner(plan, tmp_path / "plan.json", RunOptions(), checker=checker, narrower=narrow_fake)
    result = runner.run()
    assert (result.outcome, result.exit_code) == ("blocked", 1)
    assert result.outcomes == {"up": "succeeded", "down": "succeeded", "bottom": "succeeded"}
    assert result.blocked["down"] == "held on 1 of its 4 dates: upstream step up has no rows on 2024-01-02"
    assert result.blocked["bottom"] == "held on 1 of its 4 dates: upstream step down has no rows on 2024-01-02"
    assert runs_of(m, "down") == 0  # never over its whole range
    assert runs_of(m, "down:2024-01-01..2024-01-01") == runs_of(m, "down:2024-01-03..2024-01-04") == 1
    assert "up exited 0 but left 1 of its 4 dates without rows: 2024-01-02" in result.warnings
    state = read_journal(tmp_path / "plan.journal.jsonl")
    assert state.finished["up"]["empty_dates"] == ["2024-01-02"]
    assert state.finished["down"]["held_dates"] == ["2024-01-02"]
    assert set(state.parts) == {
        "down:2024-01-01..2024-01-01",
        "down:2024-01-03..2024-01-04",
        *(f"bottom:{a}..{b}" for a, b in (("2024-01-01", "2024-01-01"), ("2024-01-03", "2024-01-04"))),
    }
    assert set(state.outcomes) == {"up", "down", "bottom"}  # a part is no step of the plan

    again = Runner(plan, tmp_path / "plan.json", RunOptions(resume=True), checker=checker, narrower=narrow_fake).run()
    assert again.outcome == "blocked" and again.blocked == result.blocked  # the held dates stay listed
    assert [runs_of(m, name) for name in ("up", *state.parts)] == [1] * 5  # nothing ran again


def test_a_dependent_that_cannot_be_narrowed_waits_whole(tmp_path):
    m = tmp_path / "marks"
    write_plan(
        tmp_path / "plan.json",
        (1, [four_days(fake_step("up", m))]),
        (1, [four_days(fake_step("down", m, after=("up",)))]),
    )

    def checker(step):
        return Recheck(frozenset(step.dates[1:]))

    result = Runner(load_plan(tmp_path / "plan.json"), tmp_path / "plan.json", RunOptions(), checker=checker).run()
    assert result.outcomes == {"up": "succeeded", "down": "skipped"} and runs_of(m, "down") == 0
    assert result.blocked["down"] == ("upstream step up has no rows on 2024-01-01; its command cannot be narrowed")


def test_a_fallback_with_rows_or_an_optional_upstream_holds_nothing(tmp_path):
    m = tmp_path / "marks"
    write_plan(
        tmp_path / "plan.json",
        (1, [four_days(fake_step("up", m))]),
        (1, [four_days(fake_step("down", m, after=("up",)))]),
    )

    def checker(step):  # no rows of its own on any date, yet its fallback (or its being optional) feeds them all
        return Recheck(frozenset(), frozenset(step.dates))

    result = Runner(load_plan(tmp_path / "plan.json"), tmp_path / "plan.json", RunOptions(), checker=checker).run()
    assert result.outcomes == {"up": "succeeded_without_data", "down": "succeeded_without_data"}
    assert result.blocked == {} and runs_of(m, "down") == 1


# --- skip_downstream, checked on what runs ---------------------------------------------------


def test_an_empty_skip_downstream_is_a_spec_error(mini):
    spec = mini.close()
    spec.write_text(spec.read_text().replace('skip_downstream: {args: ["--no-trigger"]}', "skip_downstream: {}"))
    from backfill_kit.spec.load import load_spec

    with pytest.raises(SpecError, match=r"mini.yaml:\d+: job_defaults.skip_downstream: is empty"):
        load_spec(spec)


@pytest.mark.parametrize("edit", ["argv", "env"])
def test_a_plan_whose_command_lost_the_skip_setting_is_refused(edit, mini, tmp_path):
    spec = mini.games(date(2024, 1, 10)).close()
    if edit == "env":
        spec.write_text(
            spec.read_text().replace('{args: ["--no-trigger"]}', '{args: ["--no-trigger"], env: {QUIET: "1"}}')
        )
    plan_path = tmp_path / "plan.json"
    assert (
        CliRunner()
        .invoke(
            cli, ["plan", "--spec", str(spec), "--start", "2024-01-10", "--end", "2024-01-10", "--out", str(plan_path)]
        )
        .exit_code
        == 0
    )
    text = plan_path.read_text()
    lost = text.replace(',\n            "--no-trigger"', "") if edit == "argv" else text.replace('"QUIET": "1"', "")
    assert lost != text and '"skips_downstream": true' in lost
    plan_path.write_text(lost)
    result = CliRunner().invoke(cli, ["run", "--plan", str(plan_path), "--allow-downstream-triggers"])
    assert result.exit_code == 2
    assert f"its {edit} lacks {'--no-trigger' if edit == 'argv' else 'QUIET=1'}" in result.output
    assert "Nothing was started" in result.output and not (tmp_path / "plan.journal.jsonl").exists()


# --- no orphans ------------------------------------------------------------------------------


@pytest.mark.slow  # ten runs killed mid-stage: seconds by design
def test_sigkill_the_runner_mid_stage_ten_times(tmp_path):
    """After each SIGKILL no job of the runner is left alive (a grandchild in a session of its
    own included) once its locks are free; the resume never runs a step twice at once."""
    m = tmp_path / "marks"
    steps = [fake_step(f"s{i}", m, "sleep=0.4", spawn=True) for i in range(4)]
    steps += [fake_step(f"w{i}", m, "wait", spawn=True) for i in range(3)]
    write_plan(tmp_path / "plan.json", (3, steps[:4]), (3, steps[4:]))
    lock = tmp_path / "plan.journal.jsonl.lock"
    rng = random.Random(10)
    for _ in range(10):
        seen = len(job_pids(m))
        runner = start_runner(tmp_path / "plan.json", "--resume")
        wait_until(lambda seen=seen: len(job_pids(m)) > seen, what="a job of this runner to start")  # mid-stage
        with contextlib.suppress(subprocess.TimeoutExpired):
            runner.wait(rng.uniform(0.0, 0.5))
        runner.kill()
        finish(runner)
        wait_until(lambda: not is_locked(lock), what="the killed runner's locks to be free")
        assert [p for p in job_pids(m) if alive(p)] == []
        read_journal(tmp_path / "plan.journal.jsonl")  # stays readable
    (m / "release").write_text("go")
    code, err = finish(start_runner(tmp_path / "plan.json", "--resume"))
    assert code == 0, err
    assert not list(m.glob("*.overlap")), "a step ran twice at the same time"
    assert set(read_journal(tmp_path / "plan.journal.jsonl").outcomes.values()) == {"succeeded"}
    never_rerun_after_success(tmp_path / "plan.journal.jsonl")
    assert [p for p in job_pids(m) if alive(p)] == []


def daemons(marker: Path) -> list[int]:
    return [int(p.name) for p in (marker / "daemons").glob("*")]


@pytest.fixture(params=["cgroup", "subreaper"])
def containment(request, monkeypatch):
    """How the run is contained: a cgroup per run where this machine allows one, else (and
    always in the second case) the runner as the subreaper of its jobs' orphans."""
    if request.param == "subreaper":
        monkeypatch.setenv(NO_CGROUP_ENV, "1")  # the runner's subprocesses inherit it
    else:
        probe = RunCgroup.create("probe-0")
        if probe is None:
            pytest.skip("this machine lets no process make a cgroup; the subreaper case covers it")
        probe.close()
    return request.param


def test_a_daemon_that_drops_every_mark_outlives_neither_its_step_nor_its_run(containment, tmp_path):
    """A job double-forks `setsid env -i sleep 1000`: no mark, no group, no session of the job."""
    m = tmp_path / "marks"
    steps = [fake_step("leaves", m, extra=("--daemon",)), fake_step("long", m, "wait")]
    write_plan(tmp_path / "plan.json", (2, steps), (1, [fake_step("after", m)]))
    runner = start_runner(tmp_path / "plan.json")
    wait_until(lambda: read_journal(tmp_path / "plan.journal.jsonl").done == {"leaves"}, what="leaves to finish")
    (daemon,) = daemons(m)
    if containment == "cgroup":  # exact: its step's cgroup went with the step
        wait_until(lambda: not alive(daemon), timeout=5, what="the daemon to die with its step")
    (m / "release").write_text("go")
    assert finish(runner)[0] == 0
    wait_until(lambda: not alive(daemon), timeout=5, what="the daemon to die with its run")
    assert not [p for p in job_pids(m) if alive(p)]


def test_a_daemon_that_drops_every_mark_does_not_outlive_a_runner_killed_outright(containment, tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("w", m, "wait", extra=("--daemon",))]))
    runner = start_runner(tmp_path / "plan.json")
    wait_until(lambda: daemons(m), what="the daemon to start")
    (daemon,) = daemons(m)
    if containment == "subreaper":  # handed to the runner, which tells its watchdog within a scan or two
        wait_until(lambda: _parent(daemon) == runner.pid, what="the daemon to be handed to the runner")
        time.sleep(3 * ORPHAN_SCAN_SECONDS)
    runner.kill()
    finish(runner)
    wait_until(lambda: not is_locked(tmp_path / "plan.journal.jsonl.lock"), what="the watchdog to sweep up")
    wait_until(lambda: not alive(daemon), timeout=5, what="the daemon to die")
    assert not [p for p in job_pids(m) if alive(p)]


def test_the_locks_stay_taken_while_a_job_of_a_dead_runner_lives(tmp_path):
    """Even with the watchdog gone too, a surviving job holds the runner's locks: no second
    runner starts the same step beside it."""
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("w", m, "wait")]))
    runner = start_runner(tmp_path / "plan.json")
    wait_until(lambda: job_pids(m), what="the job to start")
    watchdog = next(
        p
        for p in map(int, filter(str.isdigit, os.listdir("/proc")))
        if b"backfill_kit.running.processes" in _read(f"/proc/{p}/cmdline") and _parent(p) == runner.pid
    )
    os.kill(watchdog, signal.SIGKILL)
    runner.kill()
    finish(runner)
    (job,) = job_pids(m)
    assert alive(job) and is_locked(tmp_path / "plan.journal.jsonl.lock")
    assert is_locked(tmp_path / ".backfill-kit" / "locks" / "w.lock")
    code, err = finish(start_runner(tmp_path / "plan.json", "--resume"))
    assert code == 2 and "is in use by another runner" in err and runs_of(m, "w") == 1
    os.kill(job, signal.SIGKILL)
    wait_until(lambda: not is_locked(tmp_path / "plan.journal.jsonl.lock"), what="the lock to follow the job")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    return int(_read(f"/proc/{pid}/stat").rpartition(b")")[2].split()[1] or 0)


def test_a_grandchild_that_calls_setsid_does_not_escape_the_timeout(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("stuck", m, "hang", timeout=0.5, spawn=True)]))
    result = run(tmp_path / "plan.json")
    assert result.outcomes == {"stuck": "timed_out"}
    (job, grandchild) = job_pids(m)
    wait_until(lambda: not alive(grandchild), timeout=5, what="the setsid grandchild to die")
    assert not alive(job)


def test_a_step_ends_with_nothing_it_started_left_running(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("leaves", m, spawn=True)]))
    assert run(tmp_path / "plan.json").outcome == "completed"
    wait_until(lambda: not any(alive(p) for p in job_pids(m)), timeout=5, what="the stray grandchild to die")


# --- what reaches a terminal -----------------------------------------------------------------

HOSTILE = "[/data/x.csv] not found \x1b]0;pwned\x07\x1b[2J\x1b[31m[bold]red\r"


def test_job_output_in_the_live_display_is_never_markup_nor_escapes(tmp_path):
    from rich.console import Console

    from backfill_kit.running.progress import LiveProgress

    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("loud", m, "say=" + HOSTILE)]))
    screen = io.StringIO()
    progress = LiveProgress(Console(file=screen, force_terminal=True, width=200))
    result = Runner(load_plan(tmp_path / "plan.json"), tmp_path / "plan.json", progress=progress).run()
    assert result.outcome == "failed"
    shown = screen.getvalue()
    assert "[/data/x.csv] not found" in shown and "[bold]red" in shown
    assert "\x1b]0;" not in shown and "\x1b[2J" not in shown and "pwned" not in shown


def test_warehouse_errors_reach_the_monitor_without_escapes(mini):
    from rich.console import Console

    from backfill_kit.monitor import take_snapshot
    from backfill_kit.monitor.view import snapshot_view
    from backfill_kit.spec.load import load_spec

    d = date(2024, 1, 10)
    finished = datetime(2024, 1, 11, 1, 0)
    spec = mini.games(d).run("BoxscoreProcessor", d, "failed", error=HOSTILE, started=finished).close()
    snap = take_snapshot(load_spec(spec), d, d, now=datetime(2024, 1, 11, 2, 0, tzinfo=UTC))
    screen = io.StringIO()
    Console(file=screen, force_terminal=True, width=200, highlight=False).print(snapshot_view(snap))
    shown = screen.getvalue()
    assert "[/data/x.csv] not found" in shown
    assert "\x1b]0;" not in shown and "\x1b[2J" not in shown and "pwned" not in shown


# --- bounded resources -----------------------------------------------------------------------


def test_a_job_printing_200_mb_on_one_line_costs_the_runner_little(tmp_path):
    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (1, [fake_step("flood", m, f"flood={200 << 20}")]))
    peak = tmp_path / "peak"  # VmHWM: this process image's own peak, not the forked test's (ru_maxrss)
    report_peak = (
        f"import atexit; atexit.register(lambda: open({str(peak)!r}, 'w').write(open('/proc/self/status').read()))"
    )
    runner = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{report_peak}; {CLI_RUN}",
            "run",
            "--plan",
            str(tmp_path / "plan.json"),
            "--log-limit-mb",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert runner.returncode == 1, runner.stderr
    kib = int(next(line for line in peak.read_text().splitlines() if line.startswith("VmHWM:")).split()[1])
    assert kib < 200_000, f"the runner peaked at {kib} KiB"  # ~70 MB of Python and libraries
    log = tmp_path / "plan.logs" / "flood.attempt-1.log"
    assert 2 << 20 <= log.stat().st_size < (2 << 20) + 4096
    assert b"bytes of output cut here" in log.read_bytes()
    journal = tmp_path / "plan.journal.jsonl"
    assert max(len(line) for line in journal.read_bytes().splitlines()) < 20_000
    (finished,) = [e for e in read_journal(journal).events if e["event"] == "step_finished"]
    assert finished["outcome"] == "failed" and len(finished["tail"]) < 20_000


def test_every_mutation_of_a_journal_reads_back_or_is_one_message(tmp_path):
    """Each field of each event deleted or retyped, the file cut anywhere: a state, or
    one InputError naming the file (and the line), never another exception."""
    import json

    from backfill_kit.errors import InputError

    m = tmp_path / "marks"
    write_plan(tmp_path / "plan.json", (2, [fake_step("a", m), fake_step("b", m, "fail")]))
    run(tmp_path / "plan.json")
    journal = tmp_path / "plan.journal.jsonl"
    lines = journal.read_text().splitlines()
    mutant = tmp_path / "mutant.journal.jsonl"
    cases = 0

    def check(text: str | bytes) -> None:
        nonlocal cases
        cases += 1
        mutant.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            read_journal(mutant)
        except InputError as exc:
            assert str(mutant) in str(exc) and "\n" not in str(exc)

    for i, line in enumerate(lines):
        event = json.loads(line)
        for key in event:
            for value in (None, 7, "x", [], {}, True):
                changed = dict(event)
                if value is None:
                    del changed[key]
                else:
                    changed[key] = value
                check("\n".join([*lines[:i], json.dumps(changed), *lines[i + 1 :]]) + "\n")
    data = journal.read_bytes()
    ends = [i for i, byte in enumerate(data) if byte == ord("\n")]
    for cut in sorted({*range(0, len(data), 13), *(e + d for e in ends for d in (-1, 0, 1, 2))}):
        check(data[:cut])
    check(b"\xff\xfe" + data)
    check(b"[]\n" + data)
    assert cases > 500


def test_a_spec_passed_as_a_journal_is_named_as_such(mini, tmp_path):
    spec = mini.close()
    result = CliRunner().invoke(
        cli, ["report", "execution", "--journal", str(spec), "--out-dir", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "mini.yaml is not a backfill-kit journal: it is a pipeline spec (YAML); give it to --spec" in result.output
