"""Advisory file locks: one runner per journal, and one runner per table.

`flock` locks vanish with the last process that holds them, so a runner killed by SIGKILL
never leaves a lock behind that a person has to delete by hand. Its jobs and its watchdog
hold the same locks (inherited descriptors) until they are gone: no second runner starts
the same steps beside the survivors of the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from backfill_kit.errors import BackfillKitError

__all__ = ["LockBusyError", "LockSet", "is_locked", "journal_lock", "table_lock", "table_locks_in"]


def table_locks_in(pipeline_folder: Path) -> Path:
    """Where a pipeline's table locks live: in its spec's folder, so that every runner of that
    spec meets the same locks, wherever its plan file lies."""
    return pipeline_folder / ".backfill-kit" / "locks"


def table_lock(lock_dir: Path, table: str) -> Path:
    return lock_dir / f"{table}.lock"


def journal_lock(journal: Path) -> Path:
    """The lock a runner holds on its journal while it writes it: one runner per journal."""
    return journal.with_name(journal.name + ".lock")


class LockBusyError(BackfillKitError):
    """Another runner holds a lock this one needs."""


class LockSet:
    """Holds a set of named locks until released; acquiring is all or nothing."""

    def __init__(self) -> None:
        self._held: list[tuple[Path, int]] = []

    def acquire(self, path: Path, what: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            self.release()
            raise BackfillKitError(
                f"cannot create the lock file of {what}, {path}: {exc.strerror}. Nothing was run. "
                "The journal and the locks need a writable disk (a journal elsewhere: --journal PATH)."
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            self.release()
            raise LockBusyError(
                f"{what} is in use by another runner (pid {holder}; lock file {path}). "
                "Wait for it to finish, or stop it; a crashed runner's locks free themselves."
            ) from None
        # Who holds it, for the message of the next runner that finds it taken; padded, so it
        # overwrites any older pid without a truncate. On a full disk the lock holds all the same.
        with contextlib.suppress(OSError):
            os.pwrite(fd, f"{os.getpid():<20}".encode(), 0)
        self._held.append((path, fd))

    def acquire_all(self, items: Iterable[tuple[Path, str]]) -> None:
        for path, what in items:
            self.acquire(path, what)

    def fds(self) -> tuple[int, ...]:
        """The held locks' descriptors: a process that inherits them holds the locks too."""
        return tuple(fd for _, fd in self._held)

    def release(self) -> None:
        for _, fd in reversed(self._held):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._held.clear()


def is_locked(path: Path) -> bool:
    """Whether some process holds this lock now (a runner at work), without waiting for it."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe planted there must not block the probe
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return False
