"""What a person watching a run sees: a live display in a terminal, plain lines elsewhere.

Step notes carry a job's own output: never read as markup, stripped of control characters."""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any

from backfill_kit.common.formatting import clock_text, printable
from backfill_kit.running.journal import DONE_OUTCOMES, Outcome

if TYPE_CHECKING:
    from backfill_kit.plan import Step
    from backfill_kit.running.runner import RunResult

__all__ = ["LiveProgress", "PlainProgress", "progress_for"]


class _Counts:
    """Steps done of total, what is running, and an ETA from the pace so far."""

    def __init__(self) -> None:
        self.total = self.done = self.skipped_at_start = 0
        self.failed = 0
        self.running: dict[str, float] = {}
        self.began = time.monotonic()

    def eta(self) -> str:
        finished_now = self.done - self.skipped_at_start
        if finished_now <= 0:
            return "unknown"
        elapsed = time.monotonic() - self.began
        return clock_text(elapsed / finished_now * (self.total - self.done))

    def line(self) -> str:
        return (
            f"{self.done}/{self.total} steps done, {len(self.running)} running, {self.failed} failed, "
            f"elapsed {clock_text(time.monotonic() - self.began)}, ETA {self.eta()}"
        )


class PlainProgress(_Counts):
    """One line per event: for logs, pipes and CI."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stdout

    def begin(self, total: int, done: int) -> None:
        self.total, self.done, self.skipped_at_start = total, done, done
        self._say(f"running {total} steps ({done} already done)")

    def step_started(self, step: Step, attempt: int) -> None:
        self.running[step.id] = time.monotonic()
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self._say(f"start  {step.id}{again}")

    def step_finished(
        self, step: Step, outcome: Outcome, seconds: float, note: str = "", *, part: bool = False
    ) -> None:
        self.running.pop(step.id, None)
        if outcome != Outcome.RETRYING and not part:  # a part's step counts once, when its last part ends
            self.done += 1
            self.failed += outcome not in DONE_OUTCOMES
        detail = f": {note}" if note else ""
        self._say(f"{outcome:<8} {step.id} in {seconds:.1f} s{detail} | {self.line()}")

    def step_note(self, step: Step, note: str) -> None:
        self._say(f"note     {step.id}: {note}")

    def tick(self) -> None: ...

    def end(self, result: RunResult) -> None:
        self._say(f"run {result.outcome}: {self.line()}; journal {result.journal}")
        for warning in result.warnings:
            self._say(f"warning: {warning}")

    def _say(self, text: str) -> None:
        print(printable(text), file=self.stream, flush=True)


class LiveProgress(PlainProgress):
    """A bar and the running steps, redrawn in place; finished steps scroll above it."""

    def __init__(self, console: Any = None) -> None:
        super().__init__()
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

        grid = Table.grid(padding=(0, 1))
        grid.add_row(ProgressBar(total=max(self.total, 1), completed=self.done, width=40), self.line())
        now = time.monotonic()
        for step_id, began in sorted(self.running.items(), key=lambda kv: kv[1]):
            grid.add_row("  running", Text(f"{step_id} for {clock_text(now - began)}"))
        return grid


def progress_for(stream: IO[str] | None = None) -> PlainProgress:
    """Live in a terminal, plain lines when output goes to a file or a pipe."""
    out = stream or sys.stdout
    return LiveProgress() if out.isatty() else PlainProgress(out)
