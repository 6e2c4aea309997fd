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
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from backfill_kit.common.file_kinds import kind_of
from backfill_kit.common.json_input import NotJson, parse_json
from backfill_kit.common.small_files import NotSmallText, open_regular
from backfill_kit.errors import BackfillKitError, InputError

__all__ = [
    "DONE_OUTCOMES",
    "UNFINISHED",
    "Event",
    "Journal",
    "JournalState",
    "JournalWriteError",
    "Outcome",
    "RunOutcome",
    "last_run_outcome",
    "not_a_journal_file",
    "read_journal",
]


# The journal's vocabulary, spelled once. Members are strings: the file holds their values.
class Event(StrEnum):
    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    STAGE_STARTED = "stage_started"
    STAGE_FINISHED = "stage_finished"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    JOURNAL_REPAIRED = "journal_repaired"


class Outcome(StrEnum):
    """How one attempt of a step ended (a step_finished event's outcome)."""

    SUCCEEDED = "succeeded"
    SUCCEEDED_WITHOUT_DATA = "succeeded_without_data"  # exited 0, yet its dates have no rows
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    RETRYING = "retrying"  # failed with a transient exit code; another attempt follows
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"  # never started: an upstream step failed or wrote no rows


class RunOutcome(StrEnum):
    """How a whole run ended (a run_finished event's outcome)."""

    COMPLETED = "completed"
    BLOCKED = "blocked"  # every step done, but some held back by a step without data
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"  # an error stopped it (never journaled: the journal may be what failed)


# What the reports call an attempt the journal saw start and never finish (a crash, or still running).
UNFINISHED = "unfinished"

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
    Event.STEP_FINISHED: {"step": _TEXT, "table": _TEXT, "outcome": _TEXT},
    Event.JOURNAL_REPAIRED: {"dropped_bytes": _INT},
}


class JournalWriteError(BackfillKitError):
    """The journal could not be written (a full or read-only disk): the run must stop."""

    exit_code = 1


@dataclass
class JournalState:
    """What a journal says so far: the last outcome of every step, and where it was cut."""

    events: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)
    torn_tail: int = 0  # bytes of an unfinished last line, left by a crash in mid-write
    good_length: int = 0

    @property
    def done(self) -> set[str]:
        return {step for step, outcome in self.outcomes.items() if outcome in DONE_OUTCOMES}

    @property
    def plan_sha(self) -> str | None:
        return next((e.get("plan_sha") for e in self.events if e.get("event") == Event.RUN_STARTED), None)


def read_journal(path: Path) -> JournalState:
    """Replay a journal; raise `InputError` naming the file and the first bad line."""
    state = JournalState()
    if not path.exists():
        return state
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            _read_lines(path, f, state)
    except NotSmallText as exc:  # a pipe would block the run, the monitor and the report forever
        raise not_a_journal_file(path, exc.detail) from None
    except OSError as exc:
        raise InputError(f"cannot read the journal {path}: {exc.strerror}") from exc
    for event in state.events:
        _apply(state, event)
    return state


def not_a_journal_file(path: Path, kind: str) -> InputError:
    """The refusal of a journal path that names a pipe, a device or a folder (`kind`)."""
    return InputError(
        f"the journal {path} is {kind}, not a regular file; give a journal "
        "file (JSON lines), or leave --journal out for the one beside the plan."
    )


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
        event = parse_json(raw)
    except NotJson as exc:
        raise _corrupt(path, number, exc.reason, first=number == 1) from None
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
            return f"a {kind} event whose '{name}' is {_shown(value)}, not a {types[0].__name__}"
    for name, types in _OPTIONAL.items():
        value = event.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            return f"a {kind} event whose '{name}' is {_shown(value)}, not a {types[0].__name__}"
    if not (_ISO_TIME.fullmatch(event["time"]) and _is_time(event["time"])):
        return f"a {kind} event whose 'time' is {_shown(event['time'])}, not a time as YYYY-MM-DDTHH:MM:SS+00:00"
    if kind == Event.STEP_FINISHED and event["outcome"] not in _OUTCOMES:
        return f"a step_finished event with an unknown outcome {_shown(event['outcome'])}"
    return None


# Fields of some events that readers (the reports, the monitor, the estimates) take as they
# are: checked where present. A time is ISO 8601 as the journal writes it (an offset optional).
_OPTIONAL: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("attempt", "dates", "stage", "exit_code", "retries", "already_done"), _INT),
    **dict.fromkeys(("phase", "mode", "log", "tail", "reason", "error"), _TEXT),
    "seconds": (float, int),
    "warnings": (list,),
}
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?")


def _is_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:  # 2024-02-30, 25:00
        return False
    return True


def _shown(value: Any) -> str:
    """A value as a message quotes it: short, whatever an edited line holds."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
    with contextlib.suppress(OSError, UnicodeDecodeError, NotSmallText):
        with os.fdopen(open_regular(path), "rb") as file:
            head = file.read(1 << 16).decode()
        if kind := _OTHER_KINDS.get(kind_of(head) or ""):
            return kind
    with contextlib.suppress(OSError, NotJson, NotSmallText):
        with os.fdopen(open_regular(path), "rb") as file:
            data = parse_json(file.read(64 << 20))
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
    step = event.get("step")
    if event["event"] == Event.STEP_STARTED and step:
        state.outcomes.setdefault(step, "started")
    elif event["event"] == Event.STEP_FINISHED and step:
        state.outcomes[step] = event["outcome"]


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
    """Appends events; each one reaches the disk whole before `write` returns, or not at all."""

    def __init__(self, path: Path, state: JournalState) -> None:
        self.path = path
        self._broken: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise InputError(
                f"cannot write the journal {path}: {exc.strerror}. Nothing was run. "
                "Put the journal on a writable disk with --journal PATH."
            ) from exc
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
        return record

    def close(self) -> None:
        os.close(self._fd)

    def _truncate(self, length: int) -> None:
        # Shrinking needs no free space; should it fail, the torn line is the last one, and the
        # next resume drops it.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, length)


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
