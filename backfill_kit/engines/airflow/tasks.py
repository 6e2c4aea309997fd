"""What each task of an exported DAG runs, on an Airflow worker.

A step task is the local runner on a plan of that one step: the runner's own check of the skip
settings against the spec (the task refuses to start without them), its subprocess (never a
shell) in a process group of its own that the time limit stops, its log, its re-check of the
dates in the warehouse. Retries are Airflow's, per task: the runner makes one attempt, and a
transient exit code raises an error Airflow retries with backoff; any other failure raises
AirflowFailException, which Airflow never retries. The verdict task runs `backfill-kit validate`.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backfill_kit.engines.airflow.compat import airflow_names
from backfill_kit.engines.airflow.document import Backfill, check_argv, task_id
from backfill_kit.errors import BackfillKitError
from backfill_kit.plan import Plan, Stage, Step
from backfill_kit.running.journal import Event, Outcome, read_journal
from backfill_kit.running.runner import Runner, RunOptions, RunResult, step_narrower, warehouse_checker
from backfill_kit.spec.load import load_spec

__all__ = ["Attempt", "check_cloud_run_task", "run_step", "toolkit", "verdict", "verdict_problems"]

ECHO_SECONDS = 0.5  # how often a job's new output is copied into the task's log


@dataclass(frozen=True)
class Attempt:
    """How one attempt of a step ended, and what Airflow should do next."""

    outcome: str
    exit_code: int | None
    seconds: float
    tail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.SUCCEEDED

    def retried(self, step: Step) -> bool:
        """Only a transient exit code is tried again, as the runner does."""
        return self.outcome == Outcome.FAILED and self.exit_code in step.transient_exit_codes

    def message(self, step: Step) -> str:
        if self.outcome == Outcome.SUCCEEDED_WITHOUT_DATA:
            return f"{step.id} exited 0 but left all {len(step.dates)} of its dates without rows; its dependents do not run"
        if self.outcome == Outcome.TIMED_OUT:
            return f"{step.id} timed out after {step.timeout_seconds:g} s; everything it started was stopped"
        kind = "a transient exit code: Airflow tries it again" if self.retried(step) else "not transient: no retry"
        return f"{step.id} failed with exit code {self.exit_code} ({kind})"


def run_step(backfill: Backfill, step_id: str, **context: Any) -> dict[str, Any]:
    """One attempt of a step, as the task's callable: returns what the verdict reads (an XCom)."""
    names = airflow_names()
    step = backfill.runnable(backfill.step(step_id))
    try:
        attempt = attempt_step(backfill, step)
    except BackfillKitError as exc:  # the runner refused: skip settings lost, a spec unreadable
        raise names.AirflowFailException(str(exc)) from None
    if attempt.ok:
        return {"step": step.id, "outcome": attempt.outcome, "seconds": round(attempt.seconds, 3)}
    if attempt.tail:
        print(attempt.tail)
    if attempt.retried(step):
        raise names.AirflowException(attempt.message(step))
    raise names.AirflowFailException(attempt.message(step))


def attempt_step(backfill: Backfill, step: Step) -> Attempt:
    """The runner, on a plan of this one step and one attempt, in a folder of its own (its
    journal, its log, its table lock: a stage's steps of one table run side by side, as in the
    runner's own stage)."""
    plan = backfill.plan
    one = Plan(
        plan.spec_path,
        plan.spec_name,
        plan.start,
        plan.end,
        datetime.now(UTC),
        [Stage(1, step.phase, "sequential", 1, (replace(step, retries=0, after=()),))],
    )
    with tempfile.TemporaryDirectory(prefix="backfill-kit-task-") as folder:
        plan_path = Path(folder) / "step.json"
        one.write(plan_path)
        options = RunOptions(allow_downstream_triggers=backfill.allow_downstream_triggers)
        logs = Path(folder) / "step.logs"  # where the runner puts a journal's logs
        echo = _LogEcho(logs)
        spec = load_spec(one.spec_path)  # the runner's check of the skip settings reads it too
        runner = Runner(
            one,
            plan_path,
            options,
            checker=warehouse_checker(one, spec),
            narrower=step_narrower(one, spec),
            progress=echo,
            lock_dir=logs.with_name("locks"),
        )
        return _attempt(runner.run())


def _attempt(result: RunResult) -> Attempt:
    finished = [e for e in read_journal(result.journal).events if e["event"] == Event.STEP_FINISHED]
    last = finished[-1] if finished else {}
    return Attempt(
        str(last.get("outcome", Outcome.FAILED)),
        last.get("exit_code"),
        float(last.get("seconds") or 0.0),
        last.get("tail") or "",
    )


class _LogEcho:
    """The runner's progress, as the task's log: the job's output copied as it comes."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._sent: dict[Path, int] = {}
        self._next = 0.0

    def begin(self, total: int, done: int) -> None: ...

    def step_started(self, step: Step, attempt: int) -> None: ...  # the log's first line is the command

    def step_finished(
        self, step: Step, outcome: Outcome, seconds: float, note: str = "", *, part: bool = False
    ) -> None:
        self._copy()
        print(f"{step.id}: {outcome} in {seconds:.1f} s{f' ({note})' if note else ''}", flush=True)

    def step_note(self, step: Step, note: str) -> None:
        print(f"{step.id}: {note}", flush=True)

    def tick(self) -> None:
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + ECHO_SECONDS
            self._copy()

    def end(self, result: RunResult) -> None: ...

    def _copy(self) -> None:
        for log in sorted(self._logs.glob("*.log")):
            with open(log, "rb") as f:
                f.seek(self._sent.get(log, 0))
                data = f.read()
            if data:
                self._sent[log] = self._sent.get(log, 0) + len(data)
                sys.stdout.write(data.decode("utf-8", errors="replace"))
                sys.stdout.flush()


def check_cloud_run_task(backfill: Backfill, step_id: str, context: Any) -> None:
    """A Cloud Run task's pre_execute: the execution it is about to start must carry the skip
    settings (its entrypoint stands for argv[0], the args override for the rest)."""
    step = backfill.step(step_id)
    overrides = context["task"].overrides or {}
    container = (overrides.get("container_overrides") or [{}])[0]
    env = {e["name"]: e["value"] for e in container.get("env") or []}
    try:
        check_argv(backfill, step, [step.argv[0], *container.get("args", [])], env)
    except BackfillKitError as exc:
        raise airflow_names().AirflowFailException(str(exc)) from None


# --- the verdict -------------------------------------------------------------------------------


def verdict(backfill: Backfill, **context: Any) -> None:
    """The run's last task: every step must have succeeded in this run (a run that went on past
    a failure does not end 'success'), and `backfill-kit validate` over the plan's range must
    exit 0. The warehouse and validate are the source of truth; the task states only follow."""
    ids = [task_id(s) for s in backfill.plan.steps]
    pulled = context["ti"].xcom_pull(task_ids=ids) if ids else []
    succeeded = {p["step"] for p in _values(pulled) if isinstance(p, dict) and "step" in p}
    code = _validate(backfill)
    problems = verdict_problems(backfill, succeeded, code)
    if problems:
        raise airflow_names().AirflowFailException("; ".join(problems))
    print(f"verdict: all {len(ids)} steps succeeded and validate exits 0")


def _values(pulled: Any) -> Iterator[Any]:
    if pulled is None:
        return
    yield from ([pulled] if isinstance(pulled, dict) else pulled)


def verdict_problems(backfill: Backfill, succeeded: set[str], validate_exit: int) -> list[str]:
    """Why the run must not end 'success': steps that did not succeed, validate's exit code."""
    problems = []
    missing = [s.id for s in backfill.plan.steps if s.id not in succeeded]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        problems.append(
            f"{len(missing)} of {len(backfill.plan.steps)} steps did not succeed in this run ({shown}); "
            "clear the failed tasks to resume (airflow tasks clear DAG_ID --only-failed --downstream)"
        )
    if validate_exit == 1:
        problems.append("backfill-kit validate finds gaps left in the plan's range (exit 1)")
    elif validate_exit != 0:
        problems.append(f"backfill-kit validate could not check the plan's range (exit {validate_exit})")
    return problems


def validate_argv(backfill: Backfill) -> list[str]:
    plan = backfill.plan
    tables = [a for t in plan.options.get("tables") or () for a in ("--table", t)]
    spec = ["--spec", plan.spec_path]
    return [
        sys.executable,
        "-m",
        "backfill_kit",
        "validate",
        *spec,
        "--start",
        str(plan.start),
        "--end",
        str(plan.end),
        *tables,
    ]


def _validate(backfill: Backfill) -> int:
    return toolkit(validate_argv(backfill)[3:])


def toolkit(args: list[str]) -> int:
    """`backfill-kit ARGS` in a process of its own, by the task's interpreter; its exit code.
    Its output goes to the task's log (Airflow captures the task's sys.stdout, not its fd 1)."""
    print("$ backfill-kit " + shlex.join(args), flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "backfill_kit", *args], check=False, capture_output=True, text=True, errors="replace"
    )
    print(done.stdout + done.stderr, flush=True)
    return done.returncode
