"""A time limit for tests of inputs that once hung: a hang fails the test instead of the suite."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Hung", "ends_in_time"]


class Hung(BaseException):
    """A block cut for hanging. Not an OSError (as TimeoutError is), nor an Exception: the
    code under test, which turns a failed open into its own message, must not swallow it."""


@contextmanager
def ends_in_time(seconds: float = 2.0, hang: int = 10) -> Iterator[None]:
    """Fails a block that takes longer than `seconds` of CPU in this thread (wall time depends
    on what else the machine runs, process time on what other threads of the test session
    still do, e.g. a report's exporter warming up); one that hangs is cut after `hang` seconds
    of wall time."""

    def hung(*_: Any) -> None:
        raise Hung(f"hung for {hang} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(hang)
    started = time.thread_time()
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert time.thread_time() - started < seconds
