"""Text as people read it, in one place: durations, byte sizes, and text from outside the
toolkit made safe to show (the one place that knows which characters may reach a terminal, a
report or a hover label)."""

from __future__ import annotations

import re

__all__ = ["clock_text", "duration_text", "percent_text", "plural", "printable", "size_text"]

# Terminal escape sequences (CSI, OSC, two-byte) and every other control character but tab
# and newline: text from the warehouse or a job's output must not drive the terminal. Whole
# sequences go, not just their ESC: "ESC]0;title" would otherwise leave "]0;title" behind.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)

_SIZES = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def printable(text: str) -> str:
    """Text from outside (the warehouse's error column, a job's output) made safe to print."""
    return _CONTROL.sub("", text)


def duration_text(seconds: float | None, unknown: str = "-", *, with_seconds: bool = True) -> str:
    """A duration as a person reads it: '1 h 05 min', or '3 min 07 s' under an hour ('3 min'
    without seconds, for an estimate that is not that precise)."""
    if seconds is None:
        return unknown
    if not with_seconds:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def clock_text(seconds: float) -> str:
    """Elapsed time on a ticking display: H:MM:SS, each second shown."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def size_text(n: int, *, smallest: str = "KiB") -> str:
    """A byte count in the largest binary unit it reaches, from `smallest` up."""
    for unit, scale in _SIZES[: [u for u, _ in _SIZES].index(smallest) + 1]:
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


def percent_text(value: float) -> str:
    """A percent of complete or done; never rounds a table with work left up to 100%."""
    if value >= 100.0:
        return "100%"
    return f"{min(value, 99.9):.1f}%"


def plural(n: int, word: str, many: str | None = None) -> str:
    """A count and its noun, agreeing: '1 table', '2 tables', '1,234 cells'; `many` where the
    plural is not the word plus s ('1 entry', '2 entries')."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
