"""The runner: executes a plan's stages in order, journaling every step, resumable after any crash.

Stages run strictly one after another; a stage runs up to its worker cap of steps at once.
Each step is a subprocess with its own log, a timeout that stops its whole process group,
and retries with backoff for exit codes the spec marks transient. Ctrl-C or SIGTERM stops
the children and leaves a journal that `--resume` continues without rerunning a success.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import BackfillKitError, InputError
from .executor import Executor, Handle, LocalExecutor
from .journal import DONE_OUTCOMES, Journal, read_journal
from .locks import LockSet
from .plan import Plan, Stage, Step, refuse_downstream_triggers

__all__ = ["RunOptions", "RunResult", "Runner", "journal_path_for", "table_lock_dir", "warehouse_checker"]

EXIT_INTERRUPTED = 130
TAIL_LINES = 15


@dataclass
class RunOptions:
    journal: Path | None = None  # default: beside the plan, <plan>.journal.jsonl
    resume: bool = False
    keep_going: bool = False
    allow_downstream_triggers: bool = False
    backoff_seconds: float = 2.0  # first retry waits this long, then twice as long each time
    kill_grace_seconds: float = 5.0  # between SIGTERM and SIGKILL
    poll_seconds: float = 0.01


@dataclass
class RunResult:
    outcome: str  # completed, failed or interrupted
    journal: Path
    outcomes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"completed": 0, "interrupted": EXIT_INTERRUPTED}.get(self.outcome, 1)


class Progress(Protocol):
    def begin(self, total: int, done: int) -> None: ...
    def step_started(self, step: Step, attempt: int) -> None: ...
    def step_finished(self, step: Step, outcome: str, seconds: float, note: str = "") -> None: ...
    def tick(self) -> None: ...
    def end(self, result: RunResult) -> None: ...


class QuietProgress:
    def begin(self, total: int, done: int) -> None: ...
    def step_started(self, step: Step, attempt: int) -> None: ...
    def step_finished(self, step: Step, outcome: str, seconds: float, note: str = "") -> None: ...
    def tick(self) -> None: ...
    def end(self, result: RunResult) -> None: ...


# Re-checks a finished step's dates in the warehouse: returns how many have rows.
Checker = Callable[[Step], int]


def warehouse_checker(plan: Plan) -> Checker | None:
    """The one-query re-check of a finished step, against the plan's spec and warehouse."""
    if not plan.spec_path:
        return None
    from .spec import load_spec
    from .validation import dates_with_rows

    spec = load_spec(plan.spec_path)
    return lambda step: dates_with_rows(spec, step.table, step.dates)


def table_lock_dir(plan: Plan, plan_path: Path) -> Path:
    """One place per pipeline, beside its spec: every runner of that spec meets the same locks,
    wherever its plan file lies."""
    base = Path(plan.spec_path).parent if plan.spec_path else plan_path.parent
    return base / ".backfill-kit" / "locks"


def journal_path_for(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.stem + ".journal.jsonl")


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
        self.executor = executor or LocalExecutor()
        self.checker = checker
        self.progress = progress or QuietProgress()
        self.journal_path = self.options.journal or journal_path_for(plan_path)
        self.logs = self.journal_path.with_name(self.journal_path.stem.removesuffix(".journal") + ".logs")
        self.lock_dir = lock_dir or table_lock_dir(plan, plan_path)
        self._stop = threading.Event()
        self._outcomes: dict[str, str] = {}
        self._warnings: list[str] = []

    # --- the whole run ---------------------------------------------------------------------

    def run(self) -> RunResult:
        if not self.options.allow_downstream_triggers:
            refuse_downstream_triggers(self.plan)
        locks = LockSet()
        locks.acquire(self.journal_path.with_name(self.journal_path.name + ".lock"), f"the journal {self.journal_path}")
        try:
            tables = sorted({s.table for s in self.plan.steps})
            locks.acquire_all((self.lock_dir / f"{t}.lock", f"table {t}") for t in tables)
            return self._run_locked()
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
            journal.write("run_started", plan=str(self.plan_path), plan_sha=sha, steps=len(self.plan.steps),
                          already_done=len(done), resumed=bool(state.events))
            self.progress.begin(len(self.plan.steps), len(done))
            with self._signals():
                outcome = self._stages(journal, done)
            journal.write("run_finished", outcome=outcome, warnings=self._warnings)
        finally:
            journal.close()
        result = RunResult(outcome, self.journal_path, dict(self._outcomes), list(self._warnings))
        self.progress.end(result)
        return result

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

    def _stages(self, journal: Journal, done: set[str]) -> str:
        failed_stage = None
        for stage in self.plan.stages:
            if self._stop.is_set():
                return "interrupted"
            if failed_stage is not None and not self.options.keep_going:
                break
            journal.write("stage_started", stage=stage.index, phase=stage.phase, mode=stage.mode, workers=stage.workers)
            ok = self._stage(journal, stage, done)
            if self._stop.is_set():
                return "interrupted"
            journal.write("stage_finished", stage=stage.index, ok=ok)
            if not ok and failed_stage is None:
                failed_stage = stage.index
        if failed_stage is not None:
            return "failed"
        return "completed"

    # --- one stage -------------------------------------------------------------------------

    def _stage(self, journal: Journal, stage: Stage, done: set[str]) -> bool:
        pending = deque(s for s in stage.steps if s.id not in done)
        retry_at: list[tuple[float, Step, int]] = []
        active: dict[str, _Active] = {}
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
        return ok and all(self._outcomes.get(s.id) in DONE_OUTCOMES for s in stage.steps)

    def _start_ready(
        self, journal: Journal, stage: Stage, pending: deque[Step],
        retry_at: list[tuple[float, Step, int]], active: dict[str, _Active],
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
            blocker = next((a for a in step.after if self._outcomes.get(a) not in (None, *DONE_OUTCOMES)), None)
            if blocker is not None:
                self._outcomes[step.id] = "skipped"
                journal.write("step_finished", step=step.id, table=step.table, outcome="skipped",
                              reason=f"upstream step {blocker} did not succeed")
                self.progress.step_finished(step, "skipped", 0.0, f"upstream {blocker} did not succeed")
                continue
            self._launch(journal, step, attempt, active)

    def _launch(self, journal: Journal, step: Step, attempt: int, active: dict[str, _Active]) -> None:
        log = self.logs / f"{_slug(step.id)}.attempt-{attempt}.log"
        started = time.monotonic()
        try:
            handle = self.executor.start(step, log)
        except BackfillKitError as exc:
            journal.write("step_started", step=step.id, table=step.table, attempt=attempt, pid=None, log=str(log))
            self._record(journal, step, attempt, None, "failed", 0.0, log, str(exc))
            return
        journal.write("step_started", step=step.id, table=step.table, attempt=attempt, pid=handle.pid,
                      log=str(log), dates=len(step.dates))
        self.progress.step_started(step, attempt)
        active[step.id] = _Active(step, handle, attempt, log, started, started + step.timeout_seconds)

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
            outcome = "timed_out"
        elif code != 0:
            outcome = "failed"
        else:
            outcome = self._recheck(step)
        transient = outcome == "failed" and code in step.transient_exit_codes
        if transient and act.attempt <= step.retries:
            wait = self.options.backoff_seconds * 2 ** (act.attempt - 1)
            self._record(journal, step, act.attempt, code, "retrying", seconds, act.log, retry_in=wait)
            retry_at.append((time.monotonic() + wait, step, act.attempt + 1))
            return True
        self._record(journal, step, act.attempt, code, outcome, seconds, act.log)
        return outcome in DONE_OUTCOMES

    def _recheck(self, step: Step) -> str:
        if self.checker is None:
            return "succeeded"
        if self.checker(step) == 0:
            self._warnings.append(f"{step.id} exited 0 but left all {len(step.dates)} of its dates without rows")
            return "succeeded_without_data"
        return "succeeded"

    def _record(
        self, journal: Journal, step: Step, attempt: int, code: int | None, outcome: str,
        seconds: float, log: Path, error: str | None = None, **extra: Any,
    ) -> None:
        if outcome != "retrying":
            self._outcomes[step.id] = outcome
        tail = error or _tail(log)
        journal.write("step_finished", step=step.id, table=step.table, attempt=attempt, exit_code=code,
                      outcome=outcome, seconds=round(seconds, 3), retries=attempt - 1, log=str(log),
                      tail=tail if outcome not in DONE_OUTCOMES else None, **extra)
        note = "" if outcome in DONE_OUTCOMES else (tail.strip().splitlines() or [""])[-1]
        self.progress.step_finished(step, outcome, seconds, note)

    # --- stopping cleanly ------------------------------------------------------------------

    def _stop_all(self, journal: Journal, active: dict[str, _Active]) -> None:
        for act in active.values():
            act.handle.terminate()
        deadline = time.monotonic() + self.options.kill_grace_seconds
        while any(a.handle.poll() is None for a in active.values()) and time.monotonic() < deadline:
            time.sleep(self.options.poll_seconds)
        for act in active.values():
            if act.handle.poll() is None:
                act.handle.kill()
            self._record(journal, act.step, act.attempt, act.handle.poll(), "interrupted",
                         time.monotonic() - act.started, act.log)
        active.clear()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
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
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-TAIL_LINES:])
