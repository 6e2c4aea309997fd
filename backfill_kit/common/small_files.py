"""Opening a file a person named (a spec, a plan, a journal, a warehouse file, a key file):
never blocking on a pipe or a device, never reading a huge file whole, and saying which byte
is not UTF-8.

A named pipe (FIFO) blocks whoever opens it until someone opens its other end, and a library
that opens it (DuckDB, Google's key-file reader) does so in C, where Ctrl-C cannot reach it.
So every such path is looked at before anything opens it (`odd_file`), and what this module
opens itself is opened without blocking and checked on the open file (`open_regular`), so
that a pipe swapped in between is still refused.
"""

from __future__ import annotations

import os
import stat
from enum import Enum
from pathlib import Path

__all__ = ["NotSmallText", "Why", "odd_file", "open_regular", "read_small_text"]


class Why(Enum):
    NOT_A_FILE = "a folder, a pipe or a device"
    UNREADABLE = "the system refused to read it"
    TOO_LARGE = "larger than the limit"
    NOT_UTF8 = "not UTF-8 text"


class NotSmallText(Exception):
    """Why a file cannot be read as a small text; each caller says it in its own words.
    `detail` is what the file is instead (NOT_A_FILE: 'a named pipe (FIFO)'), the system's
    reason (UNREADABLE) or the bad byte (NOT_UTF8); `line` is where that byte stands."""

    def __init__(self, why: Why, detail: str = "", line: int | None = None) -> None:
        super().__init__(why.value)
        self.why, self.detail, self.line = why, detail, line


_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _kind(mode: int) -> str | None:
    return None if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def odd_file(path: Path | str) -> str | None:
    """What `path` is when it exists and is not a regular file ('a named pipe (FIFO)', 'a
    folder', 'a character device'...), following links; None for a regular file, and for a
    path that is missing or cannot be looked at (whatever opens it then says why). Looking
    (stat) never blocks, whatever the file is."""
    try:
        return _kind(os.stat(path).st_mode)
    except (OSError, ValueError):  # ValueError: a NUL in the path, which no open takes either
        return None


def open_regular(path: Path, flags: int = os.O_RDONLY) -> int:
    """A descriptor of the regular file at `path`, else `NotSmallText(NOT_A_FILE, what it
    is)`; the system's refusal as `OSError`. Opened with O_NONBLOCK, so that a pipe that
    appeared since it was looked at returns at once, then checked on the descriptor itself."""
    if kind := odd_file(path):  # a device is never even opened: opening some does something
        raise NotSmallText(Why.NOT_A_FILE, kind)
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if kind := _kind(os.fstat(fd).st_mode):
            raise NotSmallText(Why.NOT_A_FILE, kind)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small_text(path: Path, limit: int) -> str:
    """The text of a regular file of at most `limit` bytes, in UTF-8; else `NotSmallText`."""
    try:
        with os.fdopen(open_regular(path), "rb") as file:
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
