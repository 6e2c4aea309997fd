"""Where steps run. The runner sees only `Executor` and `Handle`, so a later executor can hand
steps to a cloud job service without touching the planner or the journal."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from backfill_kit.errors import BackfillKitError
from backfill_kit.plan import Step
from backfill_kit.running.containment import RunCgroup, StepCgroup, become_subreaper, children_of, start_time
from backfill_kit.running.processes import DONE, ORPHAN, RUNNER_MARK, STEP_MARK, signal_marked

__all__ = ["DEFAULT_LOG_LIMIT", "Executor", "Handle", "LocalExecutor"]

DEFAULT_LOG_LIMIT = 64 << 20  # bytes of one attempt's output kept in its log
TAIL_KEPT = 1 << 20  # of a cut log, at most this much of the end is kept (errors come last)
CHUNK = 64 << 10
DRAIN_SECONDS = 5.0  # after a step ends, how long its output may take to arrive
ORPHAN_SCAN_SECONDS = 0.2  # without a cgroup: how often the runner looks for orphans handed to it


class Handle(Protocol):
    pid: int | None

    def poll(self) -> int | None:
        """The exit code once finished (its output all logged), else None."""
        ...

    def terminate(self) -> None:
        """Ask the step to stop (it may clean up)."""
        ...

    def kill(self) -> None:
        """Stop the step now, with everything it started."""
        ...


class Executor(Protocol):
    def session(self, hold: Sequence[int] = ()) -> contextlib.AbstractContextManager[None]:
        """Around a whole run: `hold` are file descriptors (the runner's locks) to keep open
        until the last process of the run is gone."""
        ...

    def start(self, step: Step, log_path: Path) -> Handle: ...


class _LogPump:
    """Copies a job's output into its log, up to a limit: the start and the end are kept,
    the cut in between is noted. Memory stays at one chunk plus the kept end."""

    def __init__(self, source: int, log: BinaryIO, limit: int) -> None:
        self._source, self._log = source, log
        self._tail_room = min(TAIL_KEPT, limit // 4)
        self._head_room = limit - self._tail_room
        self._tail: deque[bytes] = deque()
        self._tail_size = self._total = 0
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="backfill-kit-log", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        self._thread.join(DRAIN_SECONDS)

    def _run(self) -> None:
        try:
            while chunk := os.read(self._source, CHUNK):
                self._take(chunk)
            self._close()
        finally:
            os.close(self._source)
            self._log.close()

    def _take(self, chunk: bytes) -> None:
        head = max(0, self._head_room - self._total)
        self._total += len(chunk)
        self._write(chunk[:head])
        if len(chunk) > head:
            self._tail.append(chunk[head:])
            self._tail_size += len(chunk) - head
            while self._tail and self._tail_size - len(self._tail[0]) >= self._tail_room:
                self._tail_size -= len(self._tail.popleft())

    def _close(self) -> None:
        end = b"".join(self._tail)[-self._tail_room :] if self._tail_room else b""
        cut = self._total - min(self._total, self._head_room) - len(end)
        if cut > 0:
            self._write(
                f"\n[backfill-kit: {cut:,} bytes of output cut here; a log keeps the first "
                f"{self._head_room:,} and the last {len(end):,} bytes of an attempt]\n".encode()
            )
        self._write(end)

    def _write(self, data: bytes) -> None:
        if data and not self._broken:
            try:
                self._log.write(data)
            except OSError:  # a full disk: keep draining, so the job never blocks on its output
                self._broken = True


class _LocalJob:
    """A local process and everything it started: its own session and process group, every
    process bearing its step mark (those that left the group with setsid), and, where the
    machine allows one, its step's cgroup (those that dropped the mark too)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        mark: str,
        pump: _LogPump,
        cgroup: StepCgroup | None,
        executor: LocalExecutor,
    ) -> None:
        self._process, self._mark, self._pump = process, mark, pump
        self._cgroup, self._executor = cgroup, executor
        self.pid: int | None = process.pid
        self._ended = False

    def poll(self) -> int | None:
        code = self._process.poll()
        if code is not None and not self._ended:
            self._ended = True
            self._signal(signal.SIGKILL)  # a step ends with its process: nothing it left runs on
            if self._cgroup is not None:
                self._cgroup.close()
            self._pump.finish()
            self._executor.ended(self._process.pid)
        self._executor.look_for_orphans()
        return code

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self._process.wait()
        self.poll()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(self._process.pid, sig)
        signal_marked(STEP_MARK, self._mark, sig)
        if self._cgroup is not None:
            self._cgroup.signal(sig)


class LocalExecutor:
    """Runs each step's argv as a subprocess, never through a shell; contains a run as
    `containment` says: a cgroup per run where the machine allows it, else the runner as a
    subreaper of its jobs' orphans."""

    def __init__(self, log_limit: int = DEFAULT_LOG_LIMIT) -> None:
        self.log_limit = log_limit
        self.token = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._hold: tuple[int, ...] = ()
        self._started = 0
        self.cgroup: RunCgroup | None = None
        self.subreaper = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._jobs: set[int] = set()  # pids of jobs still running
        self._not_ours: set[int] = set()  # children the process had before the run
        self._orphans: dict[int, str | None] = {}  # handed to us, with their start times
        self._scanned = 0.0

    @contextlib.contextmanager
    def session(self, hold: Sequence[int] = ()) -> Iterator[None]:
        """A watchdog outlives the runner, however it dies, to stop the jobs it leaves behind;
        jobs and watchdog keep the runner's locks open, so no other runner starts beside them."""
        self._hold = tuple(hold)
        self.cgroup = RunCgroup.create(self.token)
        if self.cgroup is None:
            self._not_ours = set(children_of(os.getpid()))
            self.subreaper = become_subreaper(True)
        argv = [sys.executable, "-m", "backfill_kit.running.processes", self.token]
        watchdog = subprocess.Popen(
            [*argv, str(self.cgroup.path)] if self.cgroup else argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=self._hold,
            start_new_session=True,
        )
        self._watchdog = watchdog
        self._not_ours.add(watchdog.pid)
        assert watchdog.stdin is not None
        try:
            yield
            self._tell(DONE)  # finished: every job was stopped already
        finally:
            self._stop_leftovers()
            watchdog.stdin.close()  # the signal to sweep up and go
            watchdog.wait()
            self._watchdog = None

    def _stop_leftovers(self) -> None:
        """What a run's steps left behind, once they are all stopped: the cgroup's last
        processes, or the orphans handed to this subreaper."""
        if self.cgroup is not None:
            self.cgroup.close()
            self.cgroup = None
        if self.subreaper:
            self._jobs.clear()
            self.look_for_orphans(now=True)
            become_subreaper(False)
            self.subreaper = False

    def start(self, step: Step, log_path: Path) -> Handle:
        self._started += 1
        mark = f"{self.token}.{self._started}"
        env = {**os.environ, **step.env, RUNNER_MARK: self.token, STEP_MARK: mark}
        log = _open_log(step, log_path)
        cgroup = self.cgroup.step() if self.cgroup is not None else None
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                step.argv,
                cwd=step.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=self._hold,
                preexec_fn=cgroup.join if cgroup is not None else None,  # before its program runs
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.close()
            os.close(read_end)
            if cgroup is not None:
                cgroup.close()
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise BackfillKitError(
                f"cannot start step {step.id}: {why}: {step.argv[0]!r} (in {step.workdir}). "
                "Fix the job's argv or workdir in the spec."
            ) from exc
        finally:
            os.close(write_end)
        self._jobs.add(process.pid)
        return _LocalJob(process, mark, _LogPump(read_end, log, self.log_limit), cgroup, self)

    def ended(self, pid: int) -> None:
        self._jobs.discard(pid)
        if not self._jobs:
            self.look_for_orphans(now=True)

    def look_for_orphans(self, *, now: bool = False) -> None:
        """As a subreaper: collect the processes handed to us (a job's child whose parent died),
        tell the watchdog of each, reap those that ended, and stop them all once no step runs:
        they can then belong to no running step."""
        if not self.subreaper or (not now and time.monotonic() - self._scanned < ORPHAN_SCAN_SECONDS):
            return
        self._scanned = time.monotonic()
        for pid, state in children_of(os.getpid()).items():
            if pid in self._jobs or pid in self._not_ours:
                continue
            if pid not in self._orphans:
                self._orphans[pid] = start_time(pid)
                self._tell(b"%s %d %s\n" % (ORPHAN, pid, (self._orphans[pid] or "").encode()))
            if state != "Z" and not self._jobs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        deadline = time.monotonic() + (0.5 if not self._jobs else 0.0)
        for pid in list(self._orphans):
            while True:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # not ours (any more)
                    done = pid
                if done or time.monotonic() >= deadline:
                    break
                time.sleep(0.005)
            if done:
                del self._orphans[pid]

    def _tell(self, line: bytes) -> None:
        if self._watchdog is not None and self._watchdog.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self._watchdog.stdin.write(line)
                self._watchdog.stdin.flush()


def _open_log(step: Step, log_path: Path) -> BinaryIO:
    """The attempt's log, opened for the pump, with the command on its first line."""
    log = None
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab", buffering=0)  # noqa: SIM115 -- the pump closes it
        log.write(f"$ {step.command}\n".encode())
        return log
    except OSError as exc:
        if log is not None:
            log.close()
        raise BackfillKitError(f"cannot start step {step.id}: cannot write its log {log_path}: {exc.strerror}") from exc
