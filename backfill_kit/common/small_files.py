"""Reading a small text file a person named (a spec, a plan): never blocking on a pipe or a
folder, never reading a huge file whole, and saying which byte is not UTF-8."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

__all__ = ["NotSmallText", "Why", "read_small_text"]


class Why(Enum):
    NOT_A_FILE = "a folder, a pipe or a device"
    UNREADABLE = "the system refused to read it"
    TOO_LARGE = "larger than the limit"
    NOT_UTF8 = "not UTF-8 text"


class NotSmallText(Exception):
    """Why a file cannot be read as a small text; each caller says it in its own words.
    `detail` is the system's reason (UNREADABLE) or the bad byte (NOT_UTF8); `line` is where
    that byte stands."""

    def __init__(self, why: Why, detail: str = "", line: int | None = None) -> None:
        super().__init__(why.value)
        self.why, self.detail, self.line = why, detail, line


def read_small_text(path: Path, limit: int) -> str:
    """The text of a regular file of at most `limit` bytes, in UTF-8; else `NotSmallText`."""
    try:
        if path.exists() and not path.is_file():  # a folder, a pipe or a device: never block on it
            raise NotSmallText(Why.NOT_A_FILE)
        with path.open("rb") as file:
            raw = file.read(limit + 1)
    except OSError as exc:
        raise NotSmallText(Why.UNREADABLE, exc.strerror or str(exc)) from exc
    if len(raw) > limit:
        raise NotSmallText(Why.TOO_LARGE)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = f"byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        raise NotSmallText(Why.NOT_UTF8, byte, raw.count(b"\n", 0, exc.start) + 1) from None
