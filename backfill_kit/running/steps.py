"""A plan's steps counted by outcome, once: the runner's live line and summary, the monitor,
the execution report and reports/index.html all count here, from the runner's own events or
from its journal.

A step is succeeded (or succeeded without data), failed (or timed out), interrupted, skipped
(held back by an upstream step), awaiting its re-check (its job exited 0; the re-check of its
dates has no verdict yet, or had none in time: `--resume` re-checks it), running, or remaining
(not started yet, or waiting to retry). A failure is never counted as done: "done" is a word
for cells, not steps. A step the journal saw start and never finish is running while its runner
works, and interrupted once it is gone. A step narrowed to some of its dates runs as parts
(events with `part_of`): it is running while one of them is, and counts once, when it finishes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backfill_kit.common.formatting import plural
from backfill_kit.errors import InputError
from backfill_kit.running.journal import DONE_OUTCOMES, EXITED, Event, Outcome

if TYPE_CHECKING:
    from backfill_kit.plan import Plan

__all__ = ["CATEGORY", "JournalRun", "Sample", "StepCounts", "find_plan", "journal_run", "step_counts"]

# Each outcome of a step's last attempt, as it is counted. Every Outcome is here (a test checks).
CATEGORY: dict[str, str] = {
    Outcome.SUCCEEDED: "succeeded",
    Outcome.SUCCEEDED_WITHOUT_DATA: "without_data",
    Outcome.FAILED: "failed",
    Outcome.TIMED_OUT: "failed",
    Outcome.INTERRUPTED: "interrupted",
    Outcome.SKIPPED: "skipped",
    Outcome.RETRYING: "remaining",  # another attempt follows
    Outcome.RECHECK_FAILED: "unchecked",  # exited 0; no re-check verdict in time: --resume re-checks it
    EXITED: "unchecked",  # exited 0; its re-check has no verdict yet
}


@dataclass(frozen=True)
class StepCounts:
    total: int
    succeeded: int = 0
    without_data: int = 0  # exited 0, yet its dates have no rows
    failed: int = 0  # failed or timed out
    interrupted: int = 0
    skipped: int = 0
    unchecked: int = 0  # exited 0, the re-check of its dates without a verdict
    running: int = 0

    @property
    def remaining(self) -> int:
        """Not started yet, or waiting to retry: what the run still has to run."""
        counted = self.succeeded + self.without_data + self.failed + self.interrupted + self.skipped
        return max(0, self.total - counted - self.unchecked - self.running)

    def parts(self) -> list[tuple[str, int]]:
        """(word, count) as every view writes them: succeeded always, the others when any."""
        parts = [
            ("succeeded", self.succeeded),
            ("succeeded without data", self.without_data),
            ("failed", self.failed),
            ("interrupted", self.interrupted),
            ("skipped", self.skipped),
            ("awaiting re-check", self.unchecked),
            ("running", self.running),
            ("remaining", self.remaining),
        ]
        return [(word, n) for word, n in parts if n or word == "succeeded"]

    def text(self) -> str:
        """'9 steps: 4 succeeded, 1 failed, 1 interrupted, 3 remaining'."""
        return f"{plural(self.total, 'step')}: " + ", ".join(f"{n:,} {word}" for word, n in self.parts())

    def to_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "succeeded": self.succeeded,
            "succeeded_without_data": self.without_data,
            "failed": self.failed,
            "interrupted": self.interrupted,
            "skipped": self.skipped,
            "awaiting_recheck": self.unchecked,
            "running": self.running,
            "remaining": self.remaining,
        }


def step_counts(
    total: int, outcomes: Mapping[str, str], running: Collection[str] = (), *, earlier_succeeded: int = 0
) -> StepCounts:
    """`outcomes`: each step's last outcome (a step that only started counts as interrupted
    unless it is `running`); `earlier_succeeded`: steps that succeeded before this count began."""
    tally = {"succeeded": earlier_succeeded}
    for step, outcome in outcomes.items():
        if step in running:
            continue
        kind = CATEGORY.get(outcome, "interrupted")  # started, never finished: its runner is gone
        tally[kind] = tally.get(kind, 0) + 1
    tally.pop("remaining", None)
    return StepCounts(total=total, running=len(running), **tally)


@dataclass(frozen=True)
class Sample:
    """What one attempt that succeeded cost: the seconds it held a worker, from its start to
    its finish as journaled (its re-check included)."""

    table: str
    dates: int
    seconds: float


@dataclass
class JournalRun:
    """What a journal says of its plan: each step's last outcome, the attempts still open in
    its last run, the steps that run will not start again, and what the steps cost."""

    total: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)  # the plan's steps; parts apart
    open: dict[str, datetime] = field(default_factory=dict)  # step -> its open attempt's (or part's) start
    settled: set[str] = field(default_factory=set)  # no worker needed again in the last run
    samples: list[Sample] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # attempts per step and part, every run
    finished: bool = False  # the last run reached its run_finished event

    def counts(self, working: bool) -> StepCounts:
        return step_counts(self.total, self.outcomes, set(self.open) if working else ())


def journal_run(events: Iterable[dict[str, Any]]) -> JournalRun:
    run = JournalRun()
    started: dict[tuple[str, int], dict[str, Any]] = {}
    for e in events:
        kind = e.get("event")
        if kind == Event.RUN_STARTED:
            run.total, run.finished = int(e.get("steps") or 0), False
            run.open.clear()
            run.settled = {s for s, o in run.outcomes.items() if o in DONE_OUTCOMES or o in _UNCHECKED}
        elif kind == Event.RUN_FINISHED:
            run.finished = True
        elif kind == Event.STEP_STARTED:
            _started(run, started, e)
        elif kind in (Event.STEP_EXITED, Event.STEP_FINISHED):
            _ended(run, started, e)
    return run


_UNCHECKED = frozenset(o for o, kind in CATEGORY.items() if kind == "unchecked")


def _started(run: JournalRun, started: dict[tuple[str, int], dict[str, Any]], e: dict[str, Any]) -> None:
    step, attempt = e["step"], int(e.get("attempt") or 1)
    started[(step, attempt)] = e
    run.attempts[step] = max(run.attempts.get(step, 0), attempt)
    if not e.get("part_of"):
        run.outcomes.setdefault(step, "started")
    if moment := _moment(e):
        run.open[_whole(e)] = moment


def _ended(run: JournalRun, started: dict[tuple[str, int], dict[str, Any]], e: dict[str, Any]) -> None:
    """A job's exit (its re-check follows) or a step's verdict: a worker is free again, and
    what the attempt cost is a sample, counted once (at its exit, when it has one)."""
    step = e["step"]
    outcome = EXITED if e["event"] == Event.STEP_EXITED else e["outcome"]
    run.open.pop(_whole(e), None)
    if not e.get("part_of"):
        run.outcomes[step] = outcome
        if outcome != Outcome.RETRYING:
            run.settled.add(step)
    began = started.pop((step, int(e.get("attempt") or 1)), None)
    if (outcome == EXITED or outcome in DONE_OUTCOMES) and began is not None and isinstance(began.get("dates"), int):
        start, end = _moment(began), _moment(e)
        if start is not None and end is not None and end >= start:
            run.samples.append(Sample(e["table"], began["dates"], (end - start).total_seconds()))


def _whole(e: dict[str, Any]) -> str:
    """The plan's step an event is about: a part's own step, else itself."""
    part_of = e.get("part_of")
    return part_of if isinstance(part_of, str) else str(e["step"])


def _moment(event: dict[str, Any]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(event.get("time")))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # the journal writes UTC


def find_plan(journal: Path, events: Sequence[dict[str, Any]]) -> tuple[Plan | None, str | None]:
    """The plan a journal ran, or why it cannot be read: the path the journal recorded
    (relative to where the run started), else a plan of that name beside the journal."""
    from backfill_kit.plan import load_plan

    recorded = next((e.get("plan") for e in events if e.get("event") == Event.RUN_STARTED and e.get("plan")), None)
    if recorded is None:
        return None, "the journal records no plan file"
    for candidate in (Path(recorded), journal.parent / Path(recorded).name):
        if candidate.is_file():
            try:
                return load_plan(candidate), None
            except InputError as exc:
                return None, str(exc)
    return None, f"the plan {recorded} is no longer there"
