"""The runner: executes a plan's stages in order, journaling every step, resumable after any crash.

Stages run strictly one after another; a stage runs up to its worker cap of steps at once.
Each step is a subprocess with its own log (capped), a timeout that stops everything it
started, and retries with backoff for exit codes the spec marks transient. Ctrl-C, SIGTERM
or a closed terminal (SIGHUP) stops the children and leaves a journal that `--resume`
continues without rerunning a success; a runner killed outright leaves a watchdog that stops
its jobs, and its locks stay taken until they are gone. A journal that cannot be written (a
full disk), or that is deleted or replaced mid-run, stops the run the same way.

A step's exit is journaled the moment its job ends; its dates are then re-checked in the
warehouse off the loop (`recheck`), and the verdict journaled apart. Its dependents run only
over the dates it left rows on (`holds`).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from backfill_kit.errors import BackfillKitError, InputError
from backfill_kit.plan import Plan, Stage, Step, narrow_step, plan_digest, refuse_downstream_triggers
from backfill_kit.running.executor import DEFAULT_LOG_LIMIT, Executor, Handle, LocalExecutor
from backfill_kit.running.holds import Hold, dates_from_journal, dates_text, hold_for
from backfill_kit.running.journal import (
    DONE_OUTCOMES,
    Event,
    Journal,
    JournalState,
    Outcome,
    RunOutcome,
    last_run_outcome,
    read_journal,
)
from backfill_kit.running.locks import LockSet, journal_lock, table_lock, table_locks_in
from backfill_kit.running.recheck import ATTEMPT_WAIT, Checker, Recheck, Rechecks, Verdict, warehouse_checker
from backfill_kit.running.steps import journal_run

if TYPE_CHECKING:
    from backfill_kit.spec.model import PipelineSpec

__all__ = [
    "Checker",
    "Recheck",
    "RunOptions",
    "RunResult",
    "Runner",
    "check_same_plan",
    "check_skip_settings",
    "journal_path_for",
    "next_plan_path",
    "run_finished",
    "skip_problem",
    "step_narrower",
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
    """What a person watching a run is told. A part (a step narrowed to some of its dates runs
    as parts) is shown, never counted: its step counts once, when its last part ends."""

    def begin(self, total: int, done: int) -> None: ...
    def step_started(self, step: Step, attempt: int) -> None: ...
    def step_finished(
        self, step: Step, outcome: Outcome, seconds: float, note: str = "", *, part: bool = False
    ) -> None: ...
    def step_note(self, step: Step, note: str) -> None: ...
    def tick(self) -> None: ...
    def end(self, result: RunResult) -> None: ...


class QuietProgress:
    def begin(self, total: int, done: int) -> None: ...
    def step_started(self, step: Step, attempt: int) -> None: ...
    def step_finished(
        self, step: Step, outcome: Outcome, seconds: float, note: str = "", *, part: bool = False
    ) -> None: ...
    def step_note(self, step: Step, note: str) -> None: ...
    def tick(self) -> None: ...
    def end(self, result: RunResult) -> None: ...


# A step's command over some of its dates, as the planner makes it; None when it cannot be made.
Narrower = Callable[[Step, Sequence[date]], "Step | None"]


def step_narrower(plan: Plan, spec: PipelineSpec | None = None) -> Narrower | None:
    """How the runner narrows a step to the dates whose upstream has rows: with its spec's job."""
    if not plan.spec_path:
        return None
    from backfill_kit.spec.load import load_spec

    checked = spec or load_spec(plan.spec_path)
    return lambda step, dates: narrow_step(checked, step, dates)


def table_lock_dir(plan: Plan, plan_path: Path) -> Path:
    """The table locks of the plan's pipeline, beside its spec (a plan without one: beside the plan)."""
    return table_locks_in(Path(plan.spec_path).parent if plan.spec_path else plan_path.parent)


def journal_path_for(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.stem + ".journal.jsonl")


def run_finished(journal: Path, plan: Plan | None = None, plan_path: Path | None = None) -> bool:
    """Whether the journal's last run went to its end: every step done or blocked, nothing to
    resume. Given the plan (as read from `plan_path`), a journal of another plan is refused."""
    state = read_journal(journal)
    if plan is not None and plan_path is not None and state.events:
        check_same_plan(journal, state.plan_sha, plan.sha or plan_sha(plan_path), plan_path)
    return last_run_outcome(state) in (RunOutcome.COMPLETED, RunOutcome.BLOCKED)


def check_same_plan(journal: Path, journal_sha: str | None, sha: str, plan_path: Path) -> None:
    """A journal continues only the plan it was made for: the bytes of that very file."""
    if journal_sha not in (None, sha):
        raise InputError(
            f"the journal {journal} belongs to another version of the plan {plan_path} "
            "(the plan file changed since). Resume with the plan it was made for, or use --journal NEW."
        )


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
    return plan_digest(plan_path.read_bytes())


@dataclass
class _Active:
    step: Step
    handle: Handle
    attempt: int
    log: Path
    started: float
    deadline: float
    timed_out: bool = False


@dataclass
class _Checking:
    """A step whose job exited 0, its dates being re-checked."""

    step: Step
    attempt: int
    code: int
    seconds: float
    log: Path


class Runner:
    def __init__(
        self,
        plan: Plan,
        plan_path: Path,
        options: RunOptions | None = None,
        *,
        executor: Executor | None = None,
        checker: Checker | None = None,
        narrower: Narrower | None = None,
        progress: Progress | None = None,
        lock_dir: Path | None = None,
    ) -> None:
        self.plan, self.plan_path = plan, plan_path
        self.options = options or RunOptions()
        self.executor = executor or LocalExecutor(self.options.log_limit_bytes)
        self.checker, self.narrower = checker, narrower
        self.progress = progress or QuietProgress()
        self.journal_path = self.options.journal or journal_path_for(plan_path)
        self.logs = self.journal_path.with_name(self.journal_path.stem.removesuffix(".journal") + ".logs")
        self.lock_dir = lock_dir or table_lock_dir(plan, plan_path)
        self._stop = threading.Event()
        self._outcomes: dict[str, str] = {}
        self._warnings: list[str] = []
        self._blocked: dict[str, str] = {}
        self._active: dict[str, _Active] = {}
        self._earlier_attempts: dict[str, int] = {}  # per step and part, in the journal's earlier runs
        self._rechecks: Rechecks | None = None
        self._checking: dict[str, _Checking] = {}
        self._awaiting: dict[str, dict[str, Any]] = {}  # from the journal: exited 0, no verdict yet
        self._unfed: dict[str, frozenset[date]] = {}  # per step: dates its dependents must not run over
        # A step narrowed to some of its dates runs as parts: each part's parent, outcome and dates.
        self._parent: dict[str, Step] = {}
        self._parts: dict[str, list[Step]] = {}
        self._held: dict[str, frozenset[date]] = {}
        self._part_outcomes: dict[str, str] = {}
        self._part_dates: dict[str, tuple[frozenset[date], frozenset[date]]] = {}  # part: (empty, unfed)

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
        sha = self.plan.sha or plan_sha(self.plan_path)  # the bytes the plan was read from, not the file now
        self._check_resume(state.events, state.plan_sha, sha)
        journal = Journal(self.journal_path, state)
        done = self._resume_from(state)
        # A resumed step's attempts go on from its last: a new number and a log of its own.
        self._earlier_attempts = journal_run(state.events).attempts
        self._rechecks = Rechecks(self.checker) if self.checker is not None else None
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
            if journal.check():  # deleted or replaced under the run: write its record where it is found
                raise journal.restore()
        except BaseException:  # a full disk (JournalWriteError), a lost journal: stop the jobs, then say why
            self._kill_all()
            self.progress.end(self._result(RunOutcome.STOPPED))
            raise
        finally:
            if self._rechecks is not None:
                self._rechecks.close()
            journal.close()
        result = self._result(outcome)
        self.progress.end(result)
        return result

    def _resume_from(self, state: JournalState) -> set[str]:
        """What the journal already settled: the steps done (never run again), the dates each
        left without rows, the parts of narrowed steps, and the exits still to re-check."""
        steps = {s.id: s for s in self.plan.steps}
        done = state.done & set(steps)
        for step_id in done:
            self._outcomes[step_id] = state.outcomes[step_id]
            finished = state.finished.get(step_id, {})
            self._unfed[step_id] = _unfed_in(finished, steps[step_id].dates)
            if finished.get("held_dates"):
                self._blocked[step_id] = str(finished.get("reason") or "held on some of its dates")
        for part, outcome in state.parts.items():
            if outcome in DONE_OUTCOMES:
                finished = state.finished.get(part, {})
                empty = dates_from_journal(finished.get("empty_dates"))
                self._part_dates[part] = (empty, dates_from_journal(finished.get("unfed_dates")))
                self._part_outcomes[part] = outcome
        self._awaiting = {key: state.exits[key] for key in state.awaiting_recheck}
        return done

    def _result(self, outcome: RunOutcome) -> RunResult:
        return RunResult(outcome, self.journal_path, dict(self._outcomes), list(self._warnings), dict(self._blocked))

    def _check_resume(self, events: list[dict[str, Any]], journal_sha: str | None, sha: str) -> None:
        if events and not self.options.resume:
            raise InputError(
                f"the journal {self.journal_path} already records a run of this plan. Pass --resume to "
                "continue it (steps that succeeded are not rerun), or --journal NEW to start a new record."
            )
        if events:
            check_same_plan(self.journal_path, journal_sha, sha, self.plan_path)

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
        while pending or active or retry_at or self._checking:
            if journal.check():  # the journal deleted or replaced: stop, and write its record back
                self._stop.set()
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
                self._finished(journal, act, code, retry_at)
            self._take_verdicts(journal)
            self.progress.tick()
            time.sleep(self.options.poll_seconds)
        return all(self._settled(s) for s in stage.steps)

    def _settled(self, step: Step) -> bool:
        """Done, or held back whole by an upstream step without rows: listed, not a failure of its stage."""
        outcome = self._outcomes.get(step.id)
        return outcome in DONE_OUTCOMES or (outcome == Outcome.SKIPPED and step.id in self._blocked)

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
            retry = due is not None
            if due is not None:
                retry_at.remove(due)
                step, attempt = due[1], due[2]
            elif pending:
                step = pending.popleft()
                attempt = self._earlier_attempts.get(step.id, 0) + 1
            else:
                return
            if step.id in self._awaiting:
                self._recheck_again(journal, step)
            elif step.id in self._parent or retry or not self._held_back(journal, step, pending):
                self._launch(journal, step, attempt, active)

    def _held_back(self, journal: Journal, step: Step, pending: deque[Step]) -> bool:
        """Whether the step does not start as it is: skipped after an upstream step that did not
        succeed; blocked when its upstream steps left none of its dates with rows; narrowed to
        its other dates (parts queued in its place) when they left some."""
        failed = self._failed_upstream(step)
        if failed is not None:
            self._skip(journal, step, failed)
            return True
        hold = hold_for(step, self._unfed)
        if not hold.held:
            return False
        parts = None if hold.whole else self._parts_for(hold)
        if parts is None:
            why = self._whole_reason(hold) if hold.whole else f"{hold.why()}; its command cannot be narrowed"
            self._blocked[step.id] = why
            self._unfed[step.id] = frozenset(step.dates)  # a step not run feeds nothing below it
            self._warnings.append(f"{step.id} was not run, blocked: {why}; fix that job, then plan again")
            self._skip(journal, step, f"blocked: {why}", blocked=True, held_dates=_iso(hold.held))
            return True
        self._narrow(journal, hold, parts, pending)
        return True

    def _failed_upstream(self, step: Step) -> str | None:
        for upstream in step.after:
            outcome = self._outcomes.get(upstream)
            if outcome is None or outcome in DONE_OUTCOMES:
                continue
            if outcome == Outcome.SKIPPED and upstream in self._blocked:
                continue  # held back for want of rows: its dates count, below
            return f"upstream step {upstream} did not succeed"
        return None

    def _whole_reason(self, hold: Hold) -> str:
        """Why every date of a step is held, in the words of its first upstream step that holds one."""
        upstream = next(u for u in hold.step.after if u in hold.held.values())
        outcome = self._outcomes.get(upstream)
        if outcome == Outcome.SKIPPED:
            return f"upstream step {upstream} was blocked"
        if outcome == Outcome.SUCCEEDED_WITHOUT_DATA:
            return f"upstream step {upstream} succeeded without data"
        return hold.why()

    def _parts_for(self, hold: Hold) -> list[Step] | None:
        if self.narrower is None:
            return None
        parts = [self.narrower(hold.step, run) for run in hold.runs()]
        return None if any(p is None for p in parts) else [p for p in parts if p is not None]

    def _narrow(self, journal: Journal, hold: Hold, parts: list[Step], pending: deque[Step]) -> None:
        step = hold.step
        self._parts[step.id] = parts
        self._held[step.id] = frozenset(hold.held)
        ran = len(step.dates) - len(hold.held)
        self._blocked[step.id] = f"held on {len(hold.held)} of its {len(step.dates)} dates: {hold.why()}"
        self._warnings.append(
            f"{step.id} ran over {ran} of its {len(step.dates)} dates, held on the others: {hold.why()}; "
            "fix that job, then plan again"
        )
        journal.write(
            Event.STEP_NARROWED,
            step=step.id,
            table=step.table,
            held_dates=_iso(hold.held),
            parts=[p.id for p in parts],
            reason=self._blocked[step.id],
        )
        todo = [p for p in parts if self._part_outcomes.get(p.id) not in DONE_OUTCOMES]
        for part in parts:
            self._parent[part.id] = step
        for part in todo:
            self._part_outcomes.pop(part.id, None)  # an earlier run's failure is no verdict on this one
        if todo:
            pending.extendleft(reversed(todo))
        else:
            self._finish_parent(journal, step)

    def _skip(self, journal: Journal, step: Step, reason: str, *, blocked: bool = False, **extra: Any) -> None:
        self._outcomes[step.id] = Outcome.SKIPPED
        journal.write(
            Event.STEP_FINISHED,
            step=step.id,
            table=step.table,
            outcome=Outcome.SKIPPED,
            reason=reason,
            blocked=blocked,
            **extra,
        )
        self.progress.step_finished(step, Outcome.SKIPPED, 0.0, reason)

    def _launch(self, journal: Journal, step: Step, attempt: int, active: dict[str, _Active]) -> None:
        log = self.logs / f"{_slug(step.id)}.attempt-{attempt}.log"
        started = time.monotonic()
        part = self._part_of(step)
        try:
            handle = self.executor.start(step, log)
        except BackfillKitError as exc:
            journal.write(
                Event.STEP_STARTED, step=step.id, table=step.table, attempt=attempt, pid=None, log=str(log), **part
            )
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
            **part,
        )
        self.progress.step_started(step, attempt)

    def _part_of(self, step: Step) -> dict[str, str]:
        parent = self._parent.get(step.id)
        return {"part_of": parent.id} if parent is not None else {}

    def _enforce_timeout(self, act: _Active) -> None:
        now = time.monotonic()
        if not act.timed_out and now >= act.deadline:
            act.timed_out = True
            act.handle.terminate()
        elif act.timed_out and now >= act.deadline + self.options.kill_grace_seconds:
            act.handle.kill()

    def _finished(self, journal: Journal, act: _Active, code: int, retry_at: list[tuple[float, Step, int]]) -> None:
        step, seconds = act.step, time.monotonic() - act.started
        if act.timed_out:
            outcome = Outcome.TIMED_OUT
        elif code != 0:
            outcome = Outcome.FAILED
        elif self._rechecks is None:
            outcome = Outcome.SUCCEEDED
        else:  # the exit is on record before any re-check: a check that fails loses no success
            self._exited(journal, _Checking(step, act.attempt, code, seconds, act.log), deadline=act.deadline)
            return
        transient = outcome == Outcome.FAILED and code in step.transient_exit_codes
        tries = act.attempt - self._earlier_attempts.get(step.id, 0)  # this run's: retries start anew
        if transient and tries <= step.retries:
            wait = self.options.backoff_seconds * 2 ** (tries - 1)
            self._record(journal, step, act.attempt, code, Outcome.RETRYING, seconds, act.log, retry_in=wait)
            retry_at.append((time.monotonic() + wait, step, act.attempt + 1))
            return
        self._record(journal, step, act.attempt, code, outcome, seconds, act.log)

    def _exited(self, journal: Journal, checking: _Checking, *, deadline: float) -> None:
        step = checking.step
        journal.write(
            Event.STEP_EXITED,
            step=step.id,
            table=step.table,
            attempt=checking.attempt,
            exit_code=checking.code,
            seconds=round(checking.seconds, 3),
            log=str(checking.log),
            **self._part_of(step),
        )
        self._recheck(step, checking, deadline)

    def _recheck(self, step: Step, checking: _Checking, deadline: float) -> None:
        """Re-check off the loop, within the step's time limit (at least one full attempt)."""
        assert self._rechecks is not None
        self._checking[step.id] = checking
        self._rechecks.submit(step.id, step, max(deadline, time.monotonic() + ATTEMPT_WAIT))

    def _recheck_again(self, journal: Journal, step: Step) -> None:
        """A step whose job exited 0 in an earlier run, its verdict never given: re-check it, never rerun it."""
        exited = self._awaiting.pop(step.id)
        checking = _Checking(
            step, int(exited["attempt"]), int(exited.get("exit_code") or 0), float(exited.get("seconds") or 0.0),
            Path(str(exited.get("log") or "")),
        )  # fmt: skip
        self.progress.step_note(step, "its job exited 0 in an earlier run: re-checking its dates")
        if self._rechecks is None:  # no warehouse to ask: as a run without re-checks would say
            self._verdict(journal, checking, Verdict(Recheck(frozenset(step.dates))))
            return
        self._recheck(step, checking, time.monotonic() + step.timeout_seconds)

    def _take_verdicts(self, journal: Journal) -> None:
        if self._rechecks is None:
            return
        for key, why in self._rechecks.waiting():
            if (checking := self._checking.get(key)) is not None:
                step = checking.step
                journal.write(Event.RECHECK_WAITING, step=key, table=step.table, error=why, **self._part_of(step))
                self.progress.step_note(step, f"re-check waiting for the warehouse: {why}")
        for key, verdict in self._rechecks.finished():
            if (checking := self._checking.pop(key, None)) is not None:
                self._verdict(journal, checking, verdict)

    def _verdict(self, journal: Journal, checking: _Checking, verdict: Verdict) -> None:
        step = checking.step
        found: dict[str, Any] = {"recheck_seconds": round(verdict.seconds, 3)}
        if verdict.recheck is None:
            self._warnings.append(
                f"{step.id}: its job exited 0, but its dates could not be re-checked within its time limit "
                f"({verdict.error}); --resume re-checks it"
            )
            outcome, error = Outcome.RECHECK_FAILED, verdict.error
            self._record(
                journal, step, checking.attempt, checking.code, outcome, checking.seconds, checking.log, error, **found
            )
            return
        empty = frozenset(step.dates) - verdict.recheck.with_rows
        unfed = verdict.recheck.unfed(step.dates)
        outcome = Outcome.SUCCEEDED_WITHOUT_DATA if len(empty) == len(step.dates) else Outcome.SUCCEEDED
        if outcome == Outcome.SUCCEEDED_WITHOUT_DATA:
            self._warnings.append(f"{step.id} exited 0 but left all {len(step.dates)} of its dates without rows")
        elif empty:
            self._warnings.append(
                f"{step.id} exited 0 but left {len(empty)} of its {len(step.dates)} dates without rows: "
                f"{dates_text(empty)}"
            )
        if step.id in self._parent:
            self._part_dates[step.id] = (empty, unfed)
        else:
            self._unfed[step.id] = unfed
        found |= {"empty_dates": _iso(empty)} if empty else {}
        found |= {"unfed_dates": _iso(unfed)} if unfed else {}
        self._record(journal, step, checking.attempt, checking.code, outcome, checking.seconds, checking.log, **found)

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
        parent = self._parent.get(step.id)
        if outcome != Outcome.RETRYING:
            (self._part_outcomes if parent else self._outcomes)[step.id] = outcome
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
            **self._part_of(step),
            **extra,
        )
        note = "" if outcome in DONE_OUTCOMES else (tail.strip().splitlines() or [""])[-1]
        self.progress.step_finished(step, outcome, seconds, note, part=parent is not None)
        if parent is not None and outcome != Outcome.RETRYING and not self._stop.is_set():
            self._finish_parent(journal, parent)

    def _finish_parent(self, journal: Journal, step: Step) -> None:
        """A narrowed step ends once each of its parts has: done when every part is."""
        parts = self._parts[step.id]
        outcomes = [self._part_outcomes.get(p.id) for p in parts]
        if any(o is None for o in outcomes):
            return
        failed = next((o for o in outcomes if o not in DONE_OUTCOMES), None)
        if failed is not None:
            outcome = Outcome(failed)
        elif all(o == Outcome.SUCCEEDED_WITHOUT_DATA for o in outcomes):
            outcome = Outcome.SUCCEEDED_WITHOUT_DATA
        else:
            outcome = Outcome.SUCCEEDED
        found = [self._part_dates.get(p.id, (frozenset(), frozenset())) for p in parts]
        empty = frozenset().union(*(e for e, _ in found))
        self._unfed[step.id] = self._held[step.id].union(*(u for _, u in found))
        self._outcomes[step.id] = outcome
        journal.write(
            Event.STEP_FINISHED,
            step=step.id,
            table=step.table,
            outcome=outcome,
            parts=[p.id for p in parts],
            held_dates=_iso(self._held[step.id]),
            empty_dates=_iso(empty),
            unfed_dates=_iso(self._unfed[step.id]),
            reason=self._blocked.get(step.id),
        )
        self.progress.step_finished(step, outcome, 0.0, self._blocked.get(step.id, ""))

    # --- stopping cleanly ------------------------------------------------------------------

    def _stop_all(self, journal: Journal, active: dict[str, _Active]) -> None:
        """Stop every job and say so; a step being re-checked stays to be re-checked on resume."""
        self._stop_processes(active.values())
        self._checking.clear()
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


def _iso(dates: Iterable[date]) -> list[str]:
    return [d.isoformat() for d in sorted(dates)]


def _unfed_in(finished: dict[str, Any], dates: Sequence[date]) -> frozenset[date]:
    """The dates a finished step left its dependents nothing on, as its journal says; a journal
    of an earlier version names none, and a step without data left every date so."""
    if "unfed_dates" in finished:
        return dates_from_journal(finished["unfed_dates"])
    return frozenset(dates) if finished.get("outcome") == Outcome.SUCCEEDED_WITHOUT_DATA else frozenset()


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
