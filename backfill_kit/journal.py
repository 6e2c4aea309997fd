"""The runner's journal: an append-only JSON-lines file, flushed and fsynced per event.

It is the only record of what ran, so it is written before anything it describes can be lost
and read back strictly: a corrupt line stops everything with a message naming it. The one
exception is a last line cut short by a crash in mid-write (no newline yet), which is
dropped on resume and noted in the journal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["DONE_OUTCOMES", "Journal", "JournalState", "read_journal"]

# Outcomes after which a step is never run again by --resume.
DONE_OUTCOMES = frozenset({"succeeded", "succeeded_without_data"})


@dataclass
class JournalState:
    """What a journal says so far: the last outcome of every step, and where it was cut."""

    events: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    torn_tail: int = 0  # bytes of an unfinished last line, left by a crash in mid-write
    good_length: int = 0

    @property
    def done(self) -> set[str]:
        return {step for step, outcome in self.outcomes.items() if outcome in DONE_OUTCOMES}

    @property
    def plan_sha(self) -> str | None:
        return next((e.get("plan_sha") for e in self.events if e.get("event") == "run_started"), None)


def read_journal(path: Path) -> JournalState:
    """Replay a journal; raise `InputError` naming the first corrupt line."""
    state = JournalState()
    data = path.read_bytes() if path.exists() else b""
    complete, _, tail = data.rpartition(b"\n")
    if complete or data.endswith(b"\n"):
        lines = complete.split(b"\n") if complete else []
    else:
        lines, tail = [], data
    for number, raw in enumerate(lines, 1):
        state.events.append(_parse(path, number, raw))
    state.torn_tail = len(tail)
    state.good_length = len(data) - len(tail)
    for event in state.events:
        _apply(state, event)
    return state


def _parse(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    try:
        event = json.loads(raw)
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            return event
        problem = "not a journal event"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = f"invalid JSON ({exc})"
    raise InputError(
        f"{path}:{number}: the journal line is corrupt: {problem}. Nothing was run or changed. "
        "Restore the journal from a copy, or move it aside to start the plan afresh "
        "(steps that already succeeded would then run again)."
    )


def _apply(state: JournalState, event: dict[str, Any]) -> None:
    step = event.get("step")
    if event["event"] == "step_started" and step:
        state.attempts[step] = state.attempts.get(step, 0) + 1
        state.outcomes.setdefault(step, "started")
    elif event["event"] == "step_finished" and step:
        state.outcomes[step] = event["outcome"]


class Journal:
    """Appends events; each one reaches the disk before `write` returns."""

    def __init__(self, path: Path, state: JournalState) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if state.torn_tail:
            os.ftruncate(self._fd, state.good_length)
            self.write("journal_repaired", dropped_bytes=state.torn_tail)

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "time": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}
        line = (json.dumps(record, default=str) + "\n").encode("utf-8")
        os.write(self._fd, line)  # one write per event, appended whole
        os.fsync(self._fd)
        return record

    def close(self) -> None:
        os.close(self._fd)
