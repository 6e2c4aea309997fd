"""Keeping every process a run starts within reach, whatever it does to its environment or session.

Environment marks (`processes`) are dropped by `env -i` or sudo's env_reset, and a process
group or a session is left with `setsid`; so a run is contained by something its jobs cannot
drop:

- a **cgroup (v2) per run**, one child cgroup per step, where the machine lets the runner make
  one beside its own (root, or a delegated cgroup): each job is moved into its step's cgroup
  before it runs its program, every process it starts stays there, and stopping the step kills
  the whole cgroup (`cgroup.kill`);
- else the runner is a **child subreaper** (Linux `PR_SET_CHILD_SUBREAPER`): a process whose
  parent dies is handed to the runner rather than to init, so the runner sees every orphan of
  its jobs, stops them when no step is running any more, and tells its watchdog about them,
  so that even a runner killed outright leaves none behind.

Standard library only: the watchdog imports it and starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

__all__ = [
    "NO_CGROUP_ENV",
    "RunCgroup",
    "StepCgroup",
    "become_subreaper",
    "children_of",
    "kill_cgroup",
    "processes",
    "start_time",
]

NO_CGROUP_ENV = "BACKFILL_KIT_NO_CGROUP"  # set to 1 to use the subreaper even where a cgroup is allowed
PR_SET_CHILD_SUBREAPER = 36
PROC = "/proc"
PREFIX = "backfill-kit-"  # a run's cgroup: backfill-kit-PID-HEX, PID its runner's


def _cgroup2_mount() -> Path | None:
    """Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup, or .../unified on a hybrid host."""
    try:
        lines = Path(f"{PROC}/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split(" ", 1)[0] == "cgroup2":
            return Path(fields[0].split()[4])
    return None


def _own_cgroup() -> str | None:
    try:
        lines = Path(f"{PROC}/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    return next((line[3:] for line in lines if line.startswith("0::")), None)


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _pids(cgroup: Path) -> list[int]:
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _populated(cgroup: Path) -> bool:
    try:
        return "populated 1" in (cgroup / "cgroup.events").read_text()
    except OSError:
        return False


def kill_cgroup(cgroup: Path, *, within: float = 5.0) -> bool:
    """SIGKILL every process of the cgroup and its children, and remove them once empty."""
    deadline = time.monotonic() + within
    _kill_in(cgroup)
    while _populated(cgroup) and time.monotonic() < deadline:
        time.sleep(0.01)
        _kill_in(cgroup)
    return _remove(cgroup)


def _kill_in(cgroup: Path) -> None:
    try:
        _write(cgroup / "cgroup.kill", "1")
    except OSError:  # a kernel before 5.14: one by one
        for pid in _pids(cgroup) + [p for child in _children(cgroup) for p in _pids(child)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _children(cgroup: Path) -> list[Path]:
    try:
        return [p for p in cgroup.iterdir() if p.is_dir()]
    except OSError:
        return []


def _remove(cgroup: Path) -> bool:
    for child in _children(cgroup):
        _remove(child)
    try:
        cgroup.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _sweep(home: Path) -> None:
    """Remove the empty cgroups of runs whose runner and watchdog both died (nothing else does)."""
    for path in home.glob(f"{PREFIX}*"):
        pid = path.name.removeprefix(PREFIX).partition("-")[0]
        if pid.isdigit() and not Path(f"{PROC}/{pid}").exists() and not _populated(path):
            _remove(path)


class StepCgroup:
    """One step's cgroup: its job joins it before it runs its program."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._procs = str(path / "cgroup.procs")

    def join(self) -> None:
        """Called in the child between fork and exec: move this process into the cgroup."""
        fd = os.open(self._procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            _kill_in(self.path)
            return
        for pid in _pids(self.path):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def close(self) -> bool:
        """Kill whatever is left in it and remove it; False if that did not work in time."""
        return kill_cgroup(self.path)


class RunCgroup:
    """A cgroup for one run, made beside the runner's own; None where the machine forbids it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._steps = 0

    @classmethod
    def create(cls, token: str) -> RunCgroup | None:
        if os.environ.get(NO_CGROUP_ENV) == "1":
            return None
        mount, own = _cgroup2_mount(), _own_cgroup()
        if mount is None or own is None:
            return None
        home = mount / own.lstrip("/")
        _sweep(home)
        path = home / f"{PREFIX}{token}"
        try:
            path.mkdir()
        except OSError:
            return None
        run = cls(path)
        if not run._movable(home):
            _remove(path)
            return None
        return run

    def _movable(self, home: Path) -> bool:
        """Whether processes may move from the runner's cgroup into this one (delegation allows
        it): the runner itself tries, and goes straight back."""
        me = str(os.getpid())
        try:
            _write(self.path / "cgroup.procs", me)
        except OSError:
            return False
        try:
            _write(home / "cgroup.procs", me)
        except OSError:  # stuck in it: then it is no place for jobs that get killed
            return False
        return True

    def step(self) -> StepCgroup | None:
        self._steps += 1
        path = self.path / f"step-{self._steps}"
        try:
            path.mkdir()
        except OSError:
            return None
        return StepCgroup(path)

    def close(self) -> bool:
        return kill_cgroup(self.path)


# --- the subreaper, where there is no cgroup ----------------------------------------------------


def become_subreaper(on: bool = True) -> bool:
    """Make this process the one its descendants' orphans are handed to (Linux); False elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...)."""
    try:
        return Path(f"{PROC}/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def processes() -> dict[int, tuple[int, str]]:
    """Every live process: its parent and its state letter (Z for a zombie), in one pass over /proc."""
    out = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir(PROC):
            if entry.isdigit() and (fields := _stat(int(entry))) and len(fields) > 1 and fields[1].isdigit():
                out[int(entry)] = (int(fields[1]), fields[0])
    return out


def children_of(parent: int) -> dict[int, str]:
    """The children of a process, with their state letter."""
    return {pid: state for pid, (ppid, state) in processes().items() if ppid == parent}


def start_time(pid: int) -> str | None:
    """When a process started (clock ticks since boot): a pid and its start time name one process."""
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else None
