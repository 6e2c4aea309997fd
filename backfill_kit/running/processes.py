"""Finding and stopping every process a runner started, wherever it went.

A job's process group is not enough: a grandchild that calls `setsid` leaves it, and a runner
killed by SIGKILL stops nothing at all. So every job carries two marks in its environment,
which its children inherit: the runner's and the step's. Stopping a step signals its group
and every process bearing its mark; a watchdog process (`python -m backfill_kit.running.processes
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

__all__ = ["DONE", "RUNNER_MARK", "STEP_MARK", "processes_marked", "signal_marked", "stop_marked"]

RUNNER_MARK = "BACKFILL_KIT_RUNNER"
STEP_MARK = "BACKFILL_KIT_STEP"
DONE = b"done\n"  # what a runner that finished tells its watchdog
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


def _watch(token: str) -> None:
    """Block until the runner closes our stdin, then stop whatever of its jobs is left. A runner
    that finished says "done" first; one that died did not, and may have been starting a job:
    a process between fork and exec does not bear its mark yet, so look again a while."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    said = b""
    while chunk := sys.stdin.buffer.read(4096):
        said += chunk[-16:]
    stop_marked(RUNNER_MARK, token, settle=0.0 if said.endswith(DONE) else 0.5)


if __name__ == "__main__":
    _watch(sys.argv[1])
