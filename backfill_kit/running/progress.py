"""What a person watching a run sees: a live display in a terminal, plain lines elsewhere.

Steps are counted by outcome as the monitor counts them (`steps`), from the same events the
journal holds: the journal as it was when the run began, then each step's start and finish as
the runner reports them. The ETA is the monitor's (`eta.run_eta`), from the same events and
the plan. Step notes carry a job's own output: never read as markup, stripped of control
characters.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from backfill_kit.common.formatting import clock_text, plural, printable
from backfill_kit.errors import InputError
from backfill_kit.running.eta import UNKNOWN, Eta, run_eta
from backfill_kit.running.journal import Event, Outcome, read_journal
from backfill_kit.running.steps import JournalRun, StepCounts, journal_run

if TYPE_CHECKING:
    from backfill_kit.plan import Plan, Step
    from backfill_kit.running.runner import RunResult

__all__ = ["LiveProgress", "PlainProgress", "progress_for"]

ETA_EVERY = 1.0  # seconds between two ETAs on the live display (steps finishing recompute it)


class PlainProgress:
    """One line per event: for logs, pipes and CI."""

    def __init__(self, stream: IO[str] | None = None, *, plan: Plan | None = None, journal: Path | None = None) -> None:
        self.stream = stream or sys.stdout
        self.plan, self.journal = plan, journal
        self._steps = {s.id for s in plan.steps} if plan is not None else set()
        self.events: list[dict[str, Any]] = []
        self.earlier = 0  # steps that succeeded before this run, when the journal is not known
        self.running: dict[str, float] = {}
        self.began = time.monotonic()
        self._run = JournalRun()
        self._eta: tuple[float, Eta] | None = None

    # --- what the runner reports -----------------------------------------------------------

    def begin(self, total: int, done: int) -> None:
        self.events = self._journal_so_far()
        if not self.events:  # no journal to read: this run's start, and the count it gave
            self.events, self.earlier = [{"event": Event.RUN_STARTED, "steps": total}], done
        self._changed()
        self._say(f"running {plural(total, 'step')} ({done:,} succeeded before)")

    def step_started(self, step: Step, attempt: int) -> None:
        self.running[step.id] = time.monotonic()
        self._event(Event.STEP_STARTED, step, attempt=attempt, dates=len(step.dates))
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self._say(f"start  {step.id}{again}")

    def step_finished(
        self, step: Step, outcome: Outcome, seconds: float, note: str = "", *, part: bool = False
    ) -> None:
        self.running.pop(step.id, None)
        attempt = self._run.attempts.get(step.id, 0)  # a skipped step never started: no attempt
        self._event(Event.STEP_FINISHED, step, outcome=outcome, **({"attempt": attempt} if attempt else {}))
        detail = f": {note}" if note else ""
        self._say(f"{outcome:<8} {step.id} in {seconds:.1f} s{detail} | {self.line()}")

    def step_note(self, step: Step, note: str) -> None:
        self._say(f"note     {step.id}: {note}")

    def tick(self) -> None: ...

    def end(self, result: RunResult) -> None:
        self.running.clear()
        self._say(f"run {result.outcome}: {self.counts().text()}; {self._elapsed()}; journal {result.journal}")
        for warning in result.warnings:
            self._say(f"warning: {warning}")

    # --- what it shows ---------------------------------------------------------------------

    def counts(self) -> StepCounts:
        counts = self._run.counts(working=True)
        return replace(counts, succeeded=counts.succeeded + self.earlier) if self.earlier else counts

    def eta(self) -> Eta:
        """The monitor's ETA of this run, recomputed at most every ETA_EVERY seconds."""
        now = time.monotonic()
        if self._eta is None or now - self._eta[0] >= ETA_EVERY:
            eta = Eta(UNKNOWN) if self.plan is None else run_eta(self.plan, self._run, datetime.now(UTC))
            self._eta = (now, eta)
        return self._eta[1]

    def line(self) -> str:
        return f"{self.counts().text()}; {self._elapsed()}, ETA {self.eta().span()}"

    def _elapsed(self) -> str:
        return f"elapsed {clock_text(time.monotonic() - self.began)}"

    def _journal_so_far(self) -> list[dict[str, Any]]:
        if self.journal is None:
            return []
        try:
            return read_journal(self.journal).events
        except InputError:
            return []  # the runner read it a moment ago; should it fail now, count from here

    def _event(self, kind: Event, step: Step, **fields: Any) -> None:
        moment = datetime.now(UTC).isoformat(timespec="milliseconds")
        # A part (a step narrowed to some of its dates runs as parts) is shown, never counted:
        # its step counts once, when its last part ends. As the journal, it names its step.
        part_of = self._step_of(step)
        fields |= {"part_of": part_of} if part_of is not None else {}
        self.events.append({"event": kind, "time": moment, "step": step.id, "table": step.table, **fields})
        self._changed()

    def _step_of(self, step: Step) -> str | None:
        """The plan's step a part belongs to (of its table, holding its dates); None for a step."""
        if self.plan is None or step.id in self._steps:
            return None
        days = set(step.dates)
        return next((s.id for s in self.plan.steps if s.table == step.table and days <= set(s.dates)), None)

    def _changed(self) -> None:
        self._run, self._eta = journal_run(self.events), None

    def _say(self, text: str) -> None:
        print(printable(text), file=self.stream, flush=True)


class LiveProgress(PlainProgress):
    """A bar and the running steps, redrawn in place; finished steps scroll above it."""

    def __init__(self, console: Any = None, *, plan: Plan | None = None, journal: Path | None = None) -> None:
        super().__init__(plan=plan, journal=journal)
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console()
        self.live = Live(console=self.console, refresh_per_second=4, transient=True)

    def begin(self, total: int, done: int) -> None:
        super().begin(total, done)
        self.live.start()

    def tick(self) -> None:
        self.live.update(self._render())

    def end(self, result: RunResult) -> None:
        self.live.stop()
        super().end(result)

    def _say(self, text: str) -> None:
        self.console.print(printable(text), markup=False, highlight=False, soft_wrap=True)

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        counts = self.counts()
        finished = counts.total - counts.remaining - counts.running
        grid = Table.grid(padding=(0, 1))
        grid.add_row(ProgressBar(total=max(counts.total, 1), completed=finished, width=40), self.line())
        now = time.monotonic()
        for step_id, began in sorted(self.running.items(), key=lambda kv: kv[1]):
            grid.add_row("  running", Text(f"{step_id} for {clock_text(now - began)}"))
        return grid


def progress_for(
    stream: IO[str] | None = None, *, plan: Plan | None = None, journal: Path | None = None
) -> PlainProgress:
    """Live in a terminal, plain lines when output goes to a file or a pipe."""
    out = stream or sys.stdout
    if out.isatty():
        return LiveProgress(plan=plan, journal=journal)
    return PlainProgress(out, plan=plan, journal=journal)
