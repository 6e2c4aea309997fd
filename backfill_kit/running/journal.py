"""The runner's journal: an append-only JSON-lines file, flushed and fsynced per event.

It is the only record of what ran, so it is written before anything it describes can be lost
and read back strictly: a corrupt line stops everything with a message naming it. The one
exception is a last line cut short by a crash in mid-write (no newline yet), which is
dropped on resume and noted in the journal.

Every event is written whole or not at all: a short write (a full disk) is completed or cut
back off, so a torn line never lands in the middle of the journal. Events are bounded (long
texts cut), and a line longer than any event this module writes is refused on reading.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from backfill_kit.common.file_kinds import kind_of
from backfill_kit.errors import BackfillKitError, InputError

__all__ = [
    "DONE_OUTCOMES",
    "EXITED",
    "UNFINISHED",
    "Event",
    "Journal",
    "JournalLostError",
    "JournalState",
    "JournalWriteError",
    "Outcome",
    "RunOutcome",
    "last_run_outcome",
    "read_journal",
]


# The journal's vocabulary, spelled once. Members are strings: the file holds their values.
class Event(StrEnum):
    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    STAGE_STARTED = "stage_started"
    STAGE_FINISHED = "stage_finished"
    STEP_STARTED = "step_started"
    STEP_EXITED = "step_exited"  # its job exited 0; the re-check's verdict (a step_finished) follows
    RECHECK_WAITING = "recheck_waiting"  # the warehouse is busy (a lock held): the re-check waits
    STEP_NARROWED = "step_narrowed"  # run over some of its dates only: an upstream left the others empty
    STEP_FINISHED = "step_finished"
    JOURNAL_REPAIRED = "journal_repaired"
    JOURNAL_RESTORED = "journal_restored"  # written back after its file was deleted or replaced mid-run


class Outcome(StrEnum):
    """How one attempt of a step ended (a step_finished event's outcome)."""

    SUCCEEDED = "succeeded"
    SUCCEEDED_WITHOUT_DATA = "succeeded_without_data"  # exited 0, yet its dates have no rows
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    RETRYING = "retrying"  # failed with a transient exit code; another attempt follows
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"  # never started: an upstream step failed or wrote no rows
    RECHECK_FAILED = "recheck_failed"  # exited 0, but its dates could not be re-checked in its time limit


class RunOutcome(StrEnum):
    """How a whole run ended (a run_finished event's outcome)."""

    COMPLETED = "completed"
    BLOCKED = "blocked"  # every step done, but some held back by a step without data
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"  # an error stopped it (never journaled: the journal may be what failed)


# What the reports call an attempt the journal saw start and never finish (a crash, or still running).
UNFINISHED = "unfinished"
# A step whose job exited 0 and whose re-check has no verdict yet: --resume re-checks it, never reruns it.
EXITED = "exited"

# Outcomes after which a step is never run again by --resume.
DONE_OUTCOMES = frozenset({Outcome.SUCCEEDED, Outcome.SUCCEEDED_WITHOUT_DATA})
_OUTCOMES = frozenset(Outcome)  # `text in Outcome` raises TypeError before Python 3.12

MAX_TEXT = 8_000  # characters of one text field (a log tail, a warning)
MAX_ITEMS = 500  # items of one list field (the run's warnings)
MAX_LINE = 1 << 20  # bytes of one journal line on reading: far above anything written

# The fields each event must carry, with their types: checked on every read.
_TEXT, _INT = (str,), (int,)
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    Event.RUN_STARTED: {"plan": _TEXT, "plan_sha": _TEXT, "steps": _INT},
    Event.RUN_FINISHED: {"outcome": _TEXT},
    Event.STAGE_STARTED: {"stage": _INT},
    Event.STAGE_FINISHED: {"stage": _INT},
    Event.STEP_STARTED: {"step": _TEXT, "table": _TEXT, "attempt": _INT},
    Event.STEP_EXITED: {"step": _TEXT, "table": _TEXT, "attempt": _INT},
    Event.RECHECK_WAITING: {"step": _TEXT},
    Event.STEP_NARROWED: {"step": _TEXT, "table": _TEXT},
    Event.STEP_FINISHED: {"step": _TEXT, "table": _TEXT, "outcome": _TEXT},
    Event.JOURNAL_REPAIRED: {"dropped_bytes": _INT},
    Event.JOURNAL_RESTORED: {"how": _TEXT},
}


class JournalWriteError(BackfillKitError):
    """The journal could not be written (a full or read-only disk): the run must stop."""

    exit_code = 1


@dataclass
class JournalState:
    """What a journal says so far: the last outcome of every step, and where it was cut.

    A step run over part of its dates runs as parts (events with `part_of`): their outcomes are
    kept apart, in `parts`, so that `outcomes` counts the plan's own steps only."""

    events: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)
    torn_tail: int = 0  # bytes of an unfinished last line, left by a crash in mid-write
    good_length: int = 0
    parts: dict[str, str] = field(default_factory=dict)
    exits: dict[str, dict[str, Any]] = field(default_factory=dict)  # the last step_exited of a step or part
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)  # the last step_finished of a step or part

    @property
    def done(self) -> set[str]:
        return {step for step, outcome in self.outcomes.items() if outcome in DONE_OUTCOMES}

    @property
    def awaiting_recheck(self) -> set[str]:
        """Steps and parts whose job exited 0 and whose re-check has no verdict (yet, or in time)."""
        every = {**self.outcomes, **self.parts}
        return {s for s, outcome in every.items() if outcome in (EXITED, Outcome.RECHECK_FAILED) and s in self.exits}

    @property
    def plan_sha(self) -> str | None:
        return next((e.get("plan_sha") for e in self.events if e.get("event") == Event.RUN_STARTED), None)


def read_journal(path: Path) -> JournalState:
    """Replay a journal; raise `InputError` naming the file and the first bad line."""
    state = JournalState()
    if not path.exists():
        return state
    try:
        with open(path, "rb") as f:
            _read_lines(path, f, state)
    except OSError as exc:
        raise InputError(f"cannot read the journal {path}: {exc.strerror}") from exc
    for event in state.events:
        _apply(state, event)
    return state


def last_run_outcome(state: JournalState) -> str | None:
    """How the journal's last run ended (completed, failed, ...), or None while unfinished."""
    for event in reversed(state.events):
        if event["event"] == Event.RUN_FINISHED:
            return str(event["outcome"])
        if event["event"] == Event.RUN_STARTED:
            return None
    return None


def _read_lines(path: Path, f: IO[bytes], state: JournalState) -> None:
    number = 0
    while raw := f.readline(MAX_LINE + 1):
        number += 1
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_LINE:
                raise _corrupt(
                    path, number, f"a line over {MAX_LINE:,} bytes, longer than any journal event", first=number == 1
                )
            state.torn_tail = len(raw)  # the last line, cut short by a crash
            return
        state.events.append(_parse(path, number, raw))
        state.good_length += len(raw)


def _parse(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _corrupt(path, number, f"invalid JSON ({exc})", first=number == 1) from None
    if not (isinstance(event, dict) and isinstance(event.get("event"), str)):
        raise _corrupt(path, number, "not a journal event", first=number == 1)
    if problem := _schema_problem(event):
        raise _corrupt(path, number, problem, first=False)
    return event


def _schema_problem(event: dict[str, Any]) -> str | None:
    kind = event["event"]
    for name, types in (("time", _TEXT), *SCHEMA.get(kind, {}).items()):
        value = event.get(name)
        if value is None:
            return f"a {kind} event without its '{name}' field"
        if not isinstance(value, types) or isinstance(value, bool):
            return f"a {kind} event whose '{name}' is {value!r}, not a {types[0].__name__}"
    if kind == Event.STEP_FINISHED and event["outcome"] not in _OUTCOMES:
        return f"a step_finished event with an unknown outcome {event['outcome']!r}"
    return None


def _corrupt(path: Path, number: int, problem: str, *, first: bool) -> InputError:
    if first:  # not a journal at all: say what it is, and nothing about moving it aside
        return InputError(
            f"{path} is not a backfill-kit journal: {_what_it_is(path)}. A runner journal is "
            "the PLAN.journal.jsonl file beside the plan it ran."
        )
    return InputError(
        f"{path}:{number}: the journal line is corrupt: {problem}. Nothing was run or changed. "
        "Restore the journal from a copy, or move it aside to start the plan afresh "
        "(steps that already succeeded would then run again)."
    )


def _what_it_is(path: Path) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with path.open("rb") as file:
            head = file.read(1 << 16).decode()
        if kind := _OTHER_KINDS.get(kind_of(head) or ""):
            return kind
    with contextlib.suppress(OSError, ValueError):
        if path.stat().st_size < 64 << 20:
            data = json.loads(path.read_bytes())
            return f"it holds one JSON {type(data).__name__}, not one event per line"
    return "its first line is not a journal event"


# What to say when a file of another kind is given as a journal.
_OTHER_KINDS = {
    "plan": "it is a plan file (made by backfill-kit plan)",
    "spec": "it is a pipeline spec (YAML); give it to --spec",
    "notebook": "it is a Jupyter notebook",
    "validation": "it is validate's JSON output",
    "preflight": "it is preflight's JSON output",
    "html": "it is an HTML file (a report?)",
}


def _apply(state: JournalState, event: dict[str, Any]) -> None:
    step, kind = event.get("step"), event["event"]
    if not step or kind not in (Event.STEP_STARTED, Event.STEP_EXITED, Event.STEP_FINISHED):
        return
    outcomes = state.parts if event.get("part_of") else state.outcomes
    if kind == Event.STEP_STARTED:
        outcomes.setdefault(step, "started")
        state.exits.pop(step, None)  # a new attempt: an earlier exit is no longer the last
    elif kind == Event.STEP_EXITED:
        outcomes[step] = EXITED
        state.exits[step] = event
    else:
        outcomes[step] = event["outcome"]
        state.finished[step] = event


def bounded(value: Any) -> Any:
    """A value fit for one journal line: long texts and long lists cut, with the cut noted."""
    if isinstance(value, str) and len(value) > MAX_TEXT:
        half = MAX_TEXT // 2
        return f"{value[:half]}\n[... {len(value) - MAX_TEXT:,} characters cut ...]\n{value[-half:]}"
    if isinstance(value, list | tuple):
        items = [bounded(v) for v in value[:MAX_ITEMS]]
        return items + ([f"... and {len(value) - MAX_ITEMS:,} more"] if len(value) > MAX_ITEMS else [])
    if isinstance(value, dict):
        return {k: bounded(v) for k, v in value.items()}
    return value


class Journal:
    """Appends events; each one reaches the disk whole before `write` returns, or not at all.

    It also keeps every line it holds in memory and checks, at each write and whenever asked,
    that its path still names the file it writes: a journal deleted or replaced during a run
    is noticed (`lost`), and `restore` writes the whole record where it can be found again."""

    def __init__(self, path: Path, state: JournalState) -> None:
        self.path = path
        self._broken: str | None = None
        self.lost: str | None = None  # "deleted" or "replaced", once the path no longer names this file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            self._record = bytearray(os.pread(self._fd, state.good_length, 0))
        except OSError as exc:
            raise InputError(
                f"cannot write the journal {path}: {exc.strerror}. Nothing was run. "
                "Put the journal on a writable disk with --journal PATH."
            ) from exc
        self._identity = _identity(os.fstat(self._fd))
        self._size = state.good_length
        if state.torn_tail:
            try:  # the repair must hold: another event after a torn line would corrupt the journal
                os.ftruncate(self._fd, state.good_length)
            except OSError as exc:
                os.close(self._fd)
                raise InputError(
                    f"cannot cut the torn last line off the journal {path}: {exc.strerror}. Nothing was run."
                ) from exc
            self.write(Event.JOURNAL_REPAIRED, dropped_bytes=state.torn_tail)

    def write(self, event: Event, **fields: Any) -> dict[str, Any]:
        if self._broken:
            raise JournalWriteError(self._broken)
        self.check()
        record = {"event": event, "time": datetime.now(UTC).isoformat(timespec="milliseconds"), **bounded(fields)}
        line = (json.dumps(record, default=str) + "\n").encode("utf-8")
        try:
            _write_all(self._fd, line)
            os.fsync(self._fd)
        except OSError as exc:
            self._truncate(self._size)  # cut off whatever part of the line made it
            self._broken = (
                f"cannot write the journal {self.path}: {exc.strerror}. The run stopped and its jobs were "
                f"stopped. {_advice(exc)} then continue with --resume: the journal is intact up to its last "
                "complete event."
            )
            raise JournalWriteError(self._broken) from exc
        self._size += len(line)
        self._record += line
        return record

    def check(self) -> str | None:
        """Whether the path still names the file this journal writes; once it does not, how it
        lost it ("deleted", "replaced"). A path that cannot be looked at says nothing."""
        if self.lost is None:
            try:
                named = _identity(os.stat(self.path))
            except FileNotFoundError:
                self.lost = "deleted"
            except OSError:
                return None
            else:
                self.lost = None if named == self._identity else "replaced"
        return self.lost

    def restore(self) -> JournalLostError:
        """Write the whole record where it can be found again: back at its path if it was
        deleted (never over a file that took its place), else beside it; the error saying where."""
        target = self.path if self.lost == "deleted" else _recovered_name(self.path)
        stamp = {"event": Event.JOURNAL_RESTORED, "time": datetime.now(UTC).isoformat(timespec="milliseconds")}
        data = bytes(self._record) + (json.dumps({**stamp, "how": self.lost}) + "\n").encode()
        with contextlib.suppress(OSError):  # its folder may have gone with it
            self.path.parent.mkdir(parents=True, exist_ok=True)
        for candidate in (target, _recovered_name(self.path)):
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue  # something took the path meanwhile: never write over it
            except OSError as exc:
                return JournalLostError(self._lost_text(f"its record could not be written back ({exc.strerror})"))
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as exc:
                return JournalLostError(self._lost_text(f"its record could not be written back ({exc.strerror})"))
            finally:
                os.close(fd)
            return JournalLostError(self._lost_text(_where_now(self.path, candidate)))
        return JournalLostError(self._lost_text("its record could not be written back"))

    def _lost_text(self, where: str) -> str:
        what = "deleted" if self.lost == "deleted" else "replaced by another file"
        return f"the journal {self.path} was {what} during the run: the run stopped, and its jobs with it; {where}."

    def close(self) -> None:
        os.close(self._fd)

    def _truncate(self, length: int) -> None:
        # Shrinking needs no free space; should it fail, the torn line is the last one, and the
        # next resume drops it.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, length)


class JournalLostError(JournalWriteError):
    """The journal's path stopped naming the file the run wrote (deleted or replaced mid-run)."""


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _recovered_name(path: Path) -> Path:
    base = path.name.removesuffix(".journal.jsonl")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return path.with_name(f"{base}.recovered-{stamp}.journal.jsonl")


def _where_now(path: Path, written: Path) -> str:
    if written == path:
        return f"its record, every step that succeeded included, was written back to {path}: continue with --resume"
    return (
        f"{path} was left as it is, and the run's record, every step that succeeded included, is in {written}: "
        f"continue with --resume --journal {written} (or move it to {path} first)"
    )


def _write_all(fd: int, data: bytes) -> None:
    """`os.write` may write only part (a nearly full disk); write the rest, or raise."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _advice(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "Free space on its disk,"
    if exc.errno == errno.EROFS:
        return "Make its file system writable again,"
    return "Fix the disk,"
