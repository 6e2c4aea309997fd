"""JSON from outside the toolkit (a plan file, a journal line, the run history's error column,
a report's description of itself), read within bounds: whatever a person or a warehouse wrote
ends in one `NotJson` naming its line, never in a RecursionError, an OverflowError or a NaN
deep in a caller. Nested at most MAX_NESTING levels; numbers finite (no NaN or Infinity, which
JSON does not have, no float past 1.8e308, no integer longer than Python reads, 4,300 digits).
"""

from __future__ import annotations

import json
import math
import re
import sys
from itertools import accumulate
from typing import Any

from backfill_kit.common.limits import MAX_NESTING

__all__ = ["NotJson", "TooDeep", "parse_json"]


class NotJson(ValueError):
    """Why a text is not JSON the toolkit reads; `line` (from 1) where, when known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line = reason, line


class TooDeep(NotJson):
    """Nested deeper than MAX_NESTING: perhaps JSON, but not read as such."""


def parse_json(text: str | bytes) -> Any:
    """The value of a JSON text, or `NotJson` saying why not (bytes must be UTF-8)."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            byte = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
            raise NotJson(byte, raw.count(b"\n", 0, exc.start) + 1) from None
    if (line := _too_deep(text)) is not None:
        raise TooDeep(f"nested deeper than {MAX_NESTING} levels", line)
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except _NotFinite as exc:
        raise NotJson(f"{exc} is not a finite number", _line_outside_strings(text, re.escape(str(exc)))) from None
    except json.JSONDecodeError as exc:
        raise NotJson(f"invalid JSON: {exc.msg}", exc.lineno) from None
    except ValueError:  # int() of more digits than Python converts
        digits = sys.get_int_max_str_digits()
        long = _line_outside_strings(text, rf"\d{{{digits + 1},}}")
        raise NotJson(f"a number of more than {digits:,} digits", long) from None


_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'  # any bracket or number inside one is text
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _too_deep(text: str) -> int | None:
    """The line where nesting first goes past the bound, or None. Cheap for the usual text:
    one with no more opening brackets than the bound cannot nest past it, nor one that does not
    start as a list or an object; otherwise brackets are counted outside strings at C speed,
    and only a text that goes too deep is walked."""
    if text.count("[") + text.count("{") <= MAX_NESTING or text.lstrip()[:1] not in ("[", "{"):
        return None  # too few to nest so deep, or no JSON list or object at all
    brackets = _NOT_BRACKET.sub("", re.sub(_STRING, "", text))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) <= MAX_NESTING:
        return None
    depth = 0
    for match in re.finditer(rf"{_STRING}|[\[\]{{}}]", text):
        depth += _STEP.get(match.group(0), 0)
        if depth > MAX_NESTING:
            return text.count("\n", 0, match.start()) + 1
    return None  # the deep part was inside a string cut short: json says what is wrong


def _line_outside_strings(text: str, pattern: str) -> int | None:
    for match in re.finditer(rf"{_STRING}|({pattern})", text):
        if match.group(1) is not None:
            return text.count("\n", 0, match.start()) + 1
    return None


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotFinite(name)  # NaN, Infinity, -Infinity: JavaScript's, not JSON's


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise _NotFinite(text)
    return value
