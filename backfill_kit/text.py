"""Text from outside the toolkit made safe to show: the one place that knows which characters
may reach a terminal, a report or a hover label."""

from __future__ import annotations

import re

__all__ = ["printable"]

# Terminal escape sequences (CSI, OSC, two-byte) and every other control character but tab
# and newline: text from the warehouse or a job's output must not drive the terminal. Whole
# sequences go, not just their ESC: "ESC]0;title" would otherwise leave "]0;title" behind.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text from outside (the warehouse's error column, a job's output) made safe to print."""
    return _CONTROL.sub("", text)
