"""Finding and stopping every process a runner started, wherever it went.

A job's process group is not enough: a grandchild that calls `setsid` leaves it, and a runner
killed by SIGKILL stops nothing at all. So every job carries two marks in its environment,
which its children inherit: the runner's and the step's. Stopping a step signals its group
and every process bearing its mark; a watchdog process (`python -m backfill_kit.running.processes
TOKEN [CGROUP]`) waits for its runner to vanish, however it vanished, then stops every process
bearing the runner's mark and everything below them, every orphan the runner told it of, and
the run's cgroup (`containment`: what a job cannot drop, where marks are dropped with `env -i`),
holding the runner's lock files open until they are gone.

Standard library only: the watchdog starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from backfill_kit.running.containment import kill_cgroup, processes, start_time

__all__ = [
    "DONE",
    "ORPHAN",
    "RUNNER_MARK",
    "STEP_MARK",
    "processes_marked",
    "signal_marked",
    "stop_marked",
]

RUNNER_MARK = "BACKFILL_KIT_RUNNER"
STEP_MARK = "BACKFILL_KIT_STEP"
DONE = b"done\n"  # what a runner that finished tells its watchdog
ORPHAN = b"orphan"  # "orphan PID START": a process handed to the runner (a subreaper) to stop if it dies
PROC = "/proc"


def processes_marked(name: str, value: str) -> list[int]:
    """Live processes whose environment holds NAME=VALUE (Linux /proc; elsewhere none)."""
    needle = f"\0{name}={value}\0".encode()
    found = []
    try:
        entries = os.listdir(PROC)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{PROC}/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone already, or not ours to read
            continue
        if needle in b"\0" + environ + b"\0":
            found.append(int(entry))
    return [pid for pid in found if pid != os.getpid()]


def signal_marked(name: str, value: str, sig: int) -> int:
    """Send `sig` to every process bearing the mark; how many there were."""
    pids = processes_marked(name, value)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return len(pids)


def stop_marked(name: str, value: str, *, within: float = 10.0, settle: float = 0.0) -> bool:
    """SIGKILL every process bearing the mark until none is left, and none has appeared for
    `settle` seconds; False if some outlived `within`."""
    deadline = time.monotonic() + within
    quiet_since = None
    while True:
        if signal_marked(name, value, signal.SIGKILL):
            quiet_since = None
        else:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # the kernel needs a moment to take a killed process down


def _descendants(roots: set[int]) -> set[int]:
    """Every live process below these, by their parent links (found before any is stopped: a
    killed parent's children are handed to init, and the link is gone)."""
    below: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes().items():
        below.setdefault(ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        for child in below.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _orphans(said: bytes) -> set[int]:
    """The orphans the runner named that are still the same processes (a pid may be reused)."""
    out = set()
    for line in said.splitlines():
        word, _, rest = line.partition(b" ")
        pid, _, started = rest.partition(b" ")
        if word == ORPHAN and pid.isdigit() and start_time(int(pid)) == started.decode(errors="replace"):
            out.add(int(pid))
    return out


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _watch(token: str, cgroup: str = "") -> None:
    """Block until the runner closes our stdin, then stop whatever of its jobs is left. A runner
    that finished says "done" first; one that died did not, and may have been starting a job:
    a process between fork and exec does not bear its mark yet, so look again a while."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    said = sys.stdin.buffer.read()
    marked = set(processes_marked(RUNNER_MARK, token))
    _kill(marked | _descendants(marked) | _orphans(said))
    stop_marked(RUNNER_MARK, token, settle=0.0 if said.endswith(DONE) else 0.5)
    if cgroup:
        kill_cgroup(Path(cgroup))


if __name__ == "__main__":
    _watch(*sys.argv[1:3])
