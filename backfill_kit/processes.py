"""Finding and stopping every process a runner started, wherever it went.

A job's process group is not enough: a grandchild that calls `setsid` leaves it, and a runner
killed by SIGKILL stops nothing at all. So every job carries two marks in its environment,
which its children inherit: the runner's and the step's. Stopping a step signals its group
and every process bearing its mark; a watchdog process (`python -m backfill_kit.processes
TOKEN`) waits for its runner to vanish, however it vanished, then stops every process
bearing the runner's mark, holding the runner's lock files open until they are gone.

Standard library only: the watchdog starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

__all__ = ["RUNNER_MARK", "STEP_MARK", "processes_marked", "signal_marked", "stop_marked"]

RUNNER_MARK = "BACKFILL_KIT_RUNNER"
STEP_MARK = "BACKFILL_KIT_STEP"
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


def stop_marked(name: str, value: str, *, within: float = 10.0) -> bool:
    """SIGKILL every process bearing the mark until none is left; False if some outlived `within`."""
    deadline = time.monotonic() + within
    while signal_marked(name, value, signal.SIGKILL):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # the kernel needs a moment to take a killed process down
    return True


def _watch(token: str) -> None:
    """Block until the runner closes our stdin (it finished, crashed or was killed), then stop
    whatever of its jobs is left. Terminal signals are the runner's to handle, not ours."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    stop_marked(RUNNER_MARK, token)


if __name__ == "__main__":
    _watch(sys.argv[1])
