"""Where steps run. The runner sees only `Executor` and `Handle`, so a later executor can hand
steps to a cloud job service without touching the planner or the journal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Protocol

from .errors import BackfillKitError
from .plan import Step

__all__ = ["Executor", "Handle", "LocalExecutor"]


class Handle(Protocol):
    pid: int | None

    def poll(self) -> int | None:
        """The exit code once finished, else None."""
        ...

    def terminate(self) -> None:
        """Ask the step to stop (it may clean up)."""
        ...

    def kill(self) -> None:
        """Stop the step now, with everything it started."""
        ...


class Executor(Protocol):
    def start(self, step: Step, log_path: Path) -> Handle: ...


class _ProcessGroup:
    """A local process and all its children: started in a session of its own so that a
    timeout or Ctrl-C can stop the whole group, not just the top process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self.pid: int | None = process.pid

    def poll(self) -> int | None:
        return self._process.poll()

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self._process.wait()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self._process.pid, sig)


class LocalExecutor:
    """Runs each step's argv as a subprocess, never through a shell."""

    def start(self, step: Step, log_path: Path) -> Handle:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"$ {step.command}\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(
                    step.argv, cwd=step.workdir, env={**os.environ, **step.env},
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
            except OSError as exc:
                raise BackfillKitError(
                    f"cannot start step {step.id}: {exc.strerror}: {step.argv[0]!r} (in {step.workdir}). "
                    "Fix the job's argv or workdir in the spec."
                ) from exc
        return _ProcessGroup(process)
