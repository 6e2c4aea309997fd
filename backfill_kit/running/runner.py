"""The runner: executes a plan's stages in order, journaling every step, resumable after any crash.

Stages run strictly one after another; a stage runs up to its worker cap of steps at once.
Each step is a subprocess with its own log (capped), a timeout that stops everything it
started, and retries with backoff for exit codes the spec marks transient. Ctrl-C, SIGTERM
or a closed terminal (SIGHUP) stops the children and leaves a journal that `--resume`
continues without rerunning a success; a runner killed outright leaves a watchdog that stops
its jobs, and its locks stay taken until they are gone. A journal that cannot be written (a full disk) stops the run the
same way. A step that exited 0 without writing any row does not unlock its dependents.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from backfill_kit.errors import BackfillKitError, InputError
from backfill_kit.plan import Plan, Stage, Step, refuse_downstream_triggers
from backfill_kit.running.executor import DEFAULT_LOG_LIMIT, Executor, Handle, LocalExecutor
from backfill_kit.running.journal import (
    DONE_OUTCOMES,
    Event,
    Journal,
    Outcome,
    RunOutcome,
    last_run_outcome,
    read_journal,
)
from backfill_kit.running.locks import LockSet, journal_lock, table_lock, table_locks_in

if TYPE_CHECKING:
    from backfill_kit.spec.model import PipelineSpec

__all__ = [
    "RunOptions",
    "RunResult",
    "Runner",
    "check_skip_settings",
    "journal_path_for",
    "next_plan_path",
    "run_finished",
    "skip_problem",
    "table_lock_dir",
    "warehouse_checker",
]

EXIT_INTERRUPTED = 130
TAIL_LINES = 15
TAIL_BYTES = 16 << 10  # a tail is read from the end of the log, never the whole file
TAIL_LINE_CHARS = 500


@dataclass
class RunOptions:
    journal: Path | None = None  # default: beside the plan, <plan>.journal.jsonl
    resume: bool = False
    keep_going: bool = False
    allow_downstream_triggers: bool = False
    backoff_seconds: float = 2.0  # first retry waits this long, then twice as long each time
    kill_grace_seconds: float = 5.0  # between SIGTERM and SIGKILL
    poll_seconds: float = 0.01
    log_limit_bytes: int = DEFAULT_LOG_LIMIT  # per attempt; the start and end are kept, the cut noted


@dataclass
class RunResult:
    outcome: RunOutcome
    journal: Path
    outcomes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)  # step -> why it was not run

    @property
    def exit_code(self) -> int:
        return {RunOutcome.COMPLETED: 0, RunOutcome.INTERRUPTED: EXIT_INTERRUPTED}.get(self.outcome, 1)


class Progress(Protocol):
    def begin(self, total: int, done: int) -> None: ...
    def step_started(self, step: Step, attempt: int) -> None: ...
    def step_finished(self, step: Step, outcome: Outcome, seconds: float, note: str = "") -> None: ...
    def tick(self) -> None: ...
    def end(self, result: RunResult) -> None: ...


class QuietProgress:
    def begin(self, total: int, done: int) -> None: ...
    def step_started(self, step: Step, attempt: int) -> None: ...
    def step_finished(self, step: Step, outcome: Outcome, seconds: float, note: str = "") -> None: ...
    def tick(self) -> None: ...
    def end(self, result: RunResult) -> None: ...


# Re-checks a finished step's dates in the warehouse: returns how many have rows.
Checker = Callable[[Step], int]


def warehouse_checker(plan: Plan, spec: PipelineSpec | None = None) -> Checker | None:
    """The one-query re-check of a finished step, against the plan's spec (`spec`, when the
    caller has already loaded it) and warehouse."""
    if not plan.spec_path:
        return None
    from backfill_kit.spec.load import load_spec
    from backfill_kit.validation.validator import dates_with_rows

    checked = spec or load_spec(plan.spec_path)
    return lambda step: dates_with_rows(checked, step.table, step.dates)


def table_lock_dir(plan: Plan, plan_path: Path) -> Path:
    """The table locks of the plan's pipeline, beside its spec (a plan without one: beside the plan)."""
    return table_locks_in(Path(plan.spec_path).parent if plan.spec_path else plan_path.parent)


def journal_path_for(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.stem + ".journal.jsonl")


def run_finished(journal: Path) -> bool:
    """Whether the journal's last run went to its end: every step done or blocked, nothing to resume."""
    return last_run_outcome(read_journal(journal)) in (RunOutcome.COMPLETED, RunOutcome.BLOCKED)


def next_plan_path(base: Path) -> tuple[Path, Path]:
    """A range's plans are BASE, then BASE-2, BASE-3, ...: a new one each time the one before
    finished with work still left. Returns (the next free name, the newest existing one or BASE)."""

    def numbered(n: int) -> Path:
        return base if n == 1 else base.with_name(f"{base.stem}-{n}{base.suffix}")

    n = 1
    while numbered(n + 1).exists():
        n += 1
    return numbered(n + 1), numbered(n)


@dataclass(frozen=True)
class BackfillPlanFile:
    """Where `backfill` keeps a range's plan: the unfinished one to resume, or the name of a new one."""

    path: Path
    resume: bool = False  # an unfinished plan of this range, to continue
    follows: Path | None = None  # the finished plan whose leftovers the new one takes


def backfill_plan_file(
    spec_path: Path,
    start: date,
    end: date,
    *,
    out: Path | None = None,
    journal: Path | None = None,
    resume: bool = False,
    dry_run: bool = False,
) -> BackfillPlanFile:
    """A range's plans are runs/plan-START-END.json beside the spec (or `out`), then -2, -3, ...:
    a new one each time the one before finished with work still left. An unfinished one is
    resumed when asked, and refused when not (its journal would be overwritten)."""
    base = out or spec_path.parent / "runs" / f"plan-{start}-{end}.json"
    following, latest = next_plan_path(base)
    journal_file = journal or journal_path_for(latest)
    if latest.exists() and run_finished(journal_file):
        if journal:
            raise InputError(
                f"the journal {journal} records a finished run of {latest}; leave --journal out "
                "(or give a new one) for the plan of what is still missing"
            )
        return BackfillPlanFile(following, follows=latest)
    if resume and latest.exists():
        return BackfillPlanFile(latest, resume=True)
    if journal_file.exists() and not dry_run:
        raise InputError(f"{journal_file} records an earlier run of {latest}: pass --resume to continue it")
    return BackfillPlanFile(latest)


def plan_sha(plan_path: Path) -> str:
    return hashlib.sha256(plan_path.read_bytes()).hexdigest()[:16]


@dataclass
class _Active:
    step: Step
    handle: Handle
    attempt: int
    log: Path
    started: float
    deadline: float
    timed_out: bool = False


class Runner:
    def __init__(
        self,
        plan: Plan,
        plan_path: Path,
        options: RunOptions | None = None,
        *,
        executor: Executor | None = None,
        checker: Checker | None = None,
        progress: Progress | None = None,
        lock_dir: Path | None = None,
    ) -> None:
        self.plan, self.plan_path = plan, plan_path
        self.options = options or RunOptions()
        self.executor = executor or LocalExecutor(self.options.log_limit_bytes)
        self.checker = checker
        self.progress = progress or QuietProgress()
        self.journal_path = self.options.journal or journal_path_for(plan_path)
        self.logs = self.journal_path.with_name(self.journal_path.stem.removesuffix(".journal") + ".logs")
        self.lock_dir = lock_dir or table_lock_dir(plan, plan_path)
        self._stop = threading.Event()
        self._outcomes: dict[str, str] = {}
        self._warnings: list[str] = []
        self._blocked: dict[str, str] = {}
        self._active: dict[str, _Active] = {}

    # --- the whole run ---------------------------------------------------------------------

    def run(self) -> RunResult:
        check_skip_settings(self.plan, allow_triggers=self.options.allow_downstream_triggers)
        locks = LockSet()
        locks.acquire(journal_lock(self.journal_path), f"the journal {self.journal_path}")
        try:
            tables = sorted({s.table for s in self.plan.steps})
            locks.acquire_all((table_lock(self.lock_dir, t), f"table {t}") for t in tables)
            with self.executor.session(locks.fds()):
                try:
                    return self._run_locked()
                finally:
                    self._kill_all()  # whatever went wrong, no job outlives its run
        finally:
            locks.release()

    def _run_locked(self) -> RunResult:
        state = read_journal(self.journal_path)
        sha = plan_sha(self.plan_path)
        self._check_resume(state.events, state.plan_sha, sha)
        journal = Journal(self.journal_path, state)
        done = state.done & {s.id for s in self.plan.steps}
        self._outcomes.update({s: state.outcomes[s] for s in done})
        try:
            journal.write(
                Event.RUN_STARTED,
                plan=str(self.plan_path),
                plan_sha=sha,
                steps=len(self.plan.steps),
                already_done=len(done),
                resumed=bool(state.events),
            )
            self.progress.begin(len(self.plan.steps), len(done))
            with self._signals():
                outcome = self._stages(journal, done)
            journal.write(Event.RUN_FINISHED, outcome=outcome, warnings=self._warnings, blocked=self._blocked)
        except BaseException:  # a full disk (JournalWriteError), a failed re-check: stop the jobs, then say why
            self._kill_all()
            self.progress.end(self._result(RunOutcome.STOPPED))
            raise
        finally:
            journal.close()
        result = self._result(outcome)
        self.progress.end(result)
        return result

    def _result(self, outcome: RunOutcome) -> RunResult:
        return RunResult(outcome, self.journal_path, dict(self._outcomes), list(self._warnings), dict(self._blocked))

    def _check_resume(self, events: list[dict[str, Any]], journal_sha: str | None, sha: str) -> None:
        if events and not self.options.resume:
            raise InputError(
                f"the journal {self.journal_path} already records a run of this plan. Pass --resume to "
                "continue it (steps that succeeded are not rerun), or --journal NEW to start a new record."
            )
        if events and journal_sha not in (None, sha):
            raise InputError(
                f"the journal {self.journal_path} belongs to another version of the plan {self.plan_path} "
                "(the plan file changed since). Resume with the plan it was made for, or use --journal NEW."
            )

    def _stages(self, journal: Journal, done: set[str]) -> RunOutcome:
        failed_stage = None
        for stage in self.plan.stages:
            if self._stop.is_set():
                return RunOutcome.INTERRUPTED
            if failed_stage is not None and not self.options.keep_going:
                break
            journal.write(
                Event.STAGE_STARTED, stage=stage.index, phase=stage.phase, mode=stage.mode, workers=stage.workers
            )
            ok = self._stage(journal, stage, done)
            if self._stop.is_set():
                return RunOutcome.INTERRUPTED
            journal.write(Event.STAGE_FINISHED, stage=stage.index, ok=ok)
            if not ok and failed_stage is None:
                failed_stage = stage.index
        if failed_stage is not None:
            return RunOutcome.FAILED
        return RunOutcome.BLOCKED if self._blocked else RunOutcome.COMPLETED

    # --- one stage -------------------------------------------------------------------------

    def _stage(self, journal: Journal, stage: Stage, done: set[str]) -> bool:
        pending = deque(s for s in stage.steps if s.id not in done)
        retry_at: list[tuple[float, Step, int]] = []
        active = self._active
        ok = True
        while pending or active or retry_at:
            if self._stop.is_set():
                self._stop_all(journal, active)
                return False
            self._start_ready(journal, stage, pending, retry_at, active)
            for step_id, act in list(active.items()):
                code = act.handle.poll()
                if code is None:
                    self._enforce_timeout(act)
                    continue
                del active[step_id]
                ok &= self._finished(journal, act, code, retry_at)
            self.progress.tick()
            time.sleep(self.options.poll_seconds)
        # A step held back by a step without data is listed, not a failure of its stage.
        return ok and all(self._outcomes.get(s.id) in DONE_OUTCOMES or s.id in self._blocked for s in stage.steps)

    def _start_ready(
        self,
        journal: Journal,
        stage: Stage,
        pending: deque[Step],
        retry_at: list[tuple[float, Step, int]],
        active: dict[str, _Active],
    ) -> None:
        while len(active) < stage.workers:
            now = time.monotonic()
            due = next((r for r in retry_at if r[0] <= now), None)
            if due is not None:
                retry_at.remove(due)
                step, attempt = due[1], due[2]
            elif pending:
                step, attempt = pending.popleft(), 1
            else:
                return
            reason = self._held_back(step)
            if reason is not None:
                self._outcomes[step.id] = Outcome.SKIPPED
                journal.write(
                    Event.STEP_FINISHED,
                    step=step.id,
                    table=step.table,
                    outcome=Outcome.SKIPPED,
                    reason=reason,
                    blocked=step.id in self._blocked,
                )
                self.progress.step_finished(step, Outcome.SKIPPED, 0.0, reason)
                continue
            self._launch(journal, step, attempt, active)

    def _held_back(self, step: Step) -> str | None:
        """Why a step must not run: an upstream step that failed, or that wrote no rows (its
        output would read as 'no data' and hide the gap for good)."""
        for upstream in step.after:
            outcome = self._outcomes.get(upstream)
            if outcome in (None, Outcome.SUCCEEDED):
                continue
            if outcome == Outcome.SUCCEEDED_WITHOUT_DATA or upstream in self._blocked:
                why = (
                    f"upstream step {upstream} succeeded without data"
                    if upstream not in self._blocked
                    else f"upstream step {upstream} was blocked"
                )
                self._blocked[step.id] = why
                self._warnings.append(f"{step.id} was not run, blocked: {why}; fix that job, then plan again")
                return f"blocked: {why}"
            return f"upstream step {upstream} did not succeed"
        return None

    def _launch(self, journal: Journal, step: Step, attempt: int, active: dict[str, _Active]) -> None:
        log = self.logs / f"{_slug(step.id)}.attempt-{attempt}.log"
        started = time.monotonic()
        try:
            handle = self.executor.start(step, log)
        except BackfillKitError as exc:
            journal.write(Event.STEP_STARTED, step=step.id, table=step.table, attempt=attempt, pid=None, log=str(log))
            self._record(journal, step, attempt, None, Outcome.FAILED, 0.0, log, str(exc))
            return
        active[step.id] = _Active(step, handle, attempt, log, started, started + step.timeout_seconds)
        journal.write(
            Event.STEP_STARTED,
            step=step.id,
            table=step.table,
            attempt=attempt,
            pid=handle.pid,
            log=str(log),
            dates=len(step.dates),
        )
        self.progress.step_started(step, attempt)

    def _enforce_timeout(self, act: _Active) -> None:
        now = time.monotonic()
        if not act.timed_out and now >= act.deadline:
            act.timed_out = True
            act.handle.terminate()
        elif act.timed_out and now >= act.deadline + self.options.kill_grace_seconds:
            act.handle.kill()

    def _finished(self, journal: Journal, act: _Active, code: int, retry_at: list[tuple[float, Step, int]]) -> bool:
        step, seconds = act.step, time.monotonic() - act.started
        if act.timed_out:
            outcome = Outcome.TIMED_OUT
        elif code != 0:
            outcome = Outcome.FAILED
        else:
            outcome = self._recheck(step)
        transient = outcome == Outcome.FAILED and code in step.transient_exit_codes
        if transient and act.attempt <= step.retries:
            wait = self.options.backoff_seconds * 2 ** (act.attempt - 1)
            self._record(journal, step, act.attempt, code, Outcome.RETRYING, seconds, act.log, retry_in=wait)
            retry_at.append((time.monotonic() + wait, step, act.attempt + 1))
            return True
        self._record(journal, step, act.attempt, code, outcome, seconds, act.log)
        return outcome in DONE_OUTCOMES

    def _recheck(self, step: Step) -> Outcome:
        if self.checker is None:
            return Outcome.SUCCEEDED
        if self.checker(step) == 0:
            self._warnings.append(f"{step.id} exited 0 but left all {len(step.dates)} of its dates without rows")
            return Outcome.SUCCEEDED_WITHOUT_DATA
        return Outcome.SUCCEEDED

    def _record(
        self,
        journal: Journal,
        step: Step,
        attempt: int,
        code: int | None,
        outcome: Outcome,
        seconds: float,
        log: Path,
        error: str | None = None,
        **extra: Any,
    ) -> None:
        if outcome != Outcome.RETRYING:
            self._outcomes[step.id] = outcome
        tail = error or _tail(log)
        journal.write(
            Event.STEP_FINISHED,
            step=step.id,
            table=step.table,
            attempt=attempt,
            exit_code=code,
            outcome=outcome,
            seconds=round(seconds, 3),
            retries=attempt - 1,
            log=str(log),
            tail=tail if outcome not in DONE_OUTCOMES else None,
            **extra,
        )
        note = "" if outcome in DONE_OUTCOMES else (tail.strip().splitlines() or [""])[-1]
        self.progress.step_finished(step, outcome, seconds, note)

    # --- stopping cleanly ------------------------------------------------------------------

    def _stop_all(self, journal: Journal, active: dict[str, _Active]) -> None:
        self._stop_processes(active.values())
        for step_id, act in list(active.items()):
            del active[step_id]
            self._record(
                journal,
                act.step,
                act.attempt,
                act.handle.poll(),
                Outcome.INTERRUPTED,
                time.monotonic() - act.started,
                act.log,
            )

    def _kill_all(self) -> None:
        """Stop every running step without a word in the journal (it may be what failed)."""
        self._stop_processes(self._active.values())
        self._active.clear()

    def _stop_processes(self, acts: Iterable[_Active]) -> None:
        acts = list(acts)
        for act in acts:
            act.handle.terminate()
        deadline = time.monotonic() + self.options.kill_grace_seconds
        while any(a.handle.poll() is None for a in acts) and time.monotonic() < deadline:
            time.sleep(self.options.poll_seconds)
        for act in acts:
            if act.handle.poll() is None:
                act.handle.kill()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # SIGHUP: the terminal closed under a run; stop as cleanly as on Ctrl-C.
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        for sig in previous:
            signal.signal(sig, lambda *_: self._stop.set())
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _slug(step_id: str) -> str:
    return step_id.replace(":", "_").replace("..", "_to_")


def _tail(log: Path) -> str:
    """The last lines of a log, read from its end: a job that printed gigabytes costs nothing more."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - TAIL_BYTES))
            data = f.read(TAIL_BYTES)
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()[-TAIL_LINES:]
    return "\n".join(line if len(line) <= TAIL_LINE_CHARS else line[:TAIL_LINE_CHARS] + " [...]" for line in lines)


def check_skip_settings(plan: Plan, *, allow_triggers: bool) -> None:
    """The guarantee that no step fires downstream automation, checked on what will run: each
    step's argv and env must carry the skip_downstream settings its spec declares now,
    whatever the plan file claims. A plan made without a spec has only its own word."""
    if not plan.spec_path:
        if not allow_triggers:
            refuse_downstream_triggers(plan)
        return
    from backfill_kit.spec.load import load_spec

    spec = load_spec(plan.spec_path)
    tables = {s.table for s in plan.steps} & set(spec.table_positions)
    declared = {t: spec.job_of(spec.table(t)).skip_downstream for t in tables}
    problems = [p for step in plan.steps if (p := skip_problem(declared, step))]
    if problems:
        raise BackfillKitError(
            f"the plan's commands do not carry the skip_downstream settings that the spec {plan.spec_path} "
            "declares, so they could trigger downstream work:\n"
            + "\n".join(f"  {p}" for p in problems[:20])
            + "\nNothing was started. Make a new plan from the spec (backfill-kit plan); do not edit its commands."
        )
    if not allow_triggers:
        refuse_downstream_triggers(plan, {t for t, skip in declared.items() if skip is None})


def skip_problem(declared: dict[str, Any], step: Step) -> str | None:
    """What a step's argv or env lacks of the skip settings declared for its table, if anything."""
    if step.table not in declared:
        return f"{step.id}: the spec has no table {step.table!r}"
    skip = declared[step.table]
    if skip is None:
        return None
    args, n = tuple(skip.args), len(skip.args)
    if n and not any(step.argv[i : i + n] == args for i in range(len(step.argv) - n + 1)):
        return f"{step.id}: its argv lacks {' '.join(args)}"
    missing = sorted(k for k, v in skip.env.items() if step.env.get(k) != v)
    if missing:
        return f"{step.id}: its env lacks {', '.join(f'{k}={skip.env[k]}' for k in missing)}"
    return None
