"""Plans of fake jobs, for runner tests on real subprocesses."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from backfill_kit.plan import Plan, Stage, Step

FAKE_JOB = str(Path(__file__).parent / "jobs" / "fake_job.py")
DUCK_JOB = str(Path(__file__).parent / "jobs" / "duck_job.py")
DAY = date(2024, 1, 1)
# `backfill-kit` in a process of its own, as a person runs it.
CLI_RUN = "import sys; from backfill_kit.cli.commands import main; sys.argv = ['backfill-kit', *sys.argv[1:]]; main()"


def fake_step(
    name: str,
    marker: Path,
    mode: str = "ok",
    *,
    timeout: float = 60,
    retries: int = 0,
    after: tuple[str, ...] = (),
    table: str | None = None,
    skips: bool = True,
    spawn: bool = False,
    extra: tuple[str, ...] = (),
) -> Step:
    argv = (sys.executable, FAKE_JOB, name, "--marker", str(marker), "--mode", mode, *extra) + (
        ("--spawn",) if spawn else ()
    )
    return Step(
        id=name,
        table=table or name,
        phase="p",
        start=DAY,
        end=DAY + timedelta(1),
        dates=(DAY, DAY + timedelta(1)),
        causes={"never_ran": 2},
        argv=argv + (("--skip-downstream-trigger",) if skips else ()),
        workdir=str(marker.parent),
        env={},
        timeout_seconds=timeout,
        retries=retries,
        transient_exit_codes=(75,),
        skips_downstream=skips,
        after=after,
    )


def write_plan(path: Path, *stages: tuple[int, list[Step]], spec: Path | None = None) -> Plan:
    """A plan of these stages (workers, steps); with `spec`, the steps re-checked in its warehouse."""
    plan = Plan(
        str(spec or ""),
        "fake",
        DAY,
        DAY,
        datetime.now(UTC),
        [
            Stage(i + 1, "p", "parallel" if w > 1 else "sequential", w, tuple(steps))
            for i, (w, steps) in enumerate(stages)
        ],
    )
    plan.write(path)
    return plan


def duck_step(name: str, marker: Path, db: Path, *, table: str, timeout: float = 60, **job: str) -> Step:
    """A step of tests/jobs/duck_job.py writing `db` for the spec's table `table` (job:
    sql_table=SCHEMA.TABLE, dates=D,D, hold=SECONDS, wait_for=STEP)."""
    job = {("table" if key == "sql_table" else key): value for key, value in job.items()}
    flags = [a for key, value in job.items() for a in (f"--{key.replace('_', '-')}", value)]
    argv = (sys.executable, DUCK_JOB, name, "--db", str(db), "--marker", str(marker), *flags)
    return replace(fake_step(name, marker, table=table, timeout=timeout), argv=(*argv, "--skip-downstream-trigger"))


def start_runner(plan_path: Path, *extra: str) -> subprocess.Popen[str]:
    """`backfill-kit run --plan PLAN_PATH EXTRA...` in a process of its own; `finish` waits for it."""
    return subprocess.Popen(
        [sys.executable, "-c", CLI_RUN, "run", "--plan", str(plan_path), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    """The exit code and stderr of a runner started by `start_runner`, once it has ended."""
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def edit_journal_line(journal: Path, number: int, edit: Callable[[str], str]) -> None:
    """Rewrite line `number` (from 1, as messages count) of a journal, as a crash or a hand might."""
    lines = journal.read_text().splitlines(keepends=True)
    lines[number - 1] = edit(lines[number - 1])
    journal.write_text("".join(lines))


def runs_of(marker: Path, step: str) -> int:
    return len(list(marker.glob(f"{step}.[0-9]*")))


def wait_until(condition: Callable[[], object], timeout: float = 30.0, what: str = "the condition") -> None:
    """Poll a condition the test cannot be told about (another process's state)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """A process that runs (a zombie waiting for its reaper is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def job_pids(marker: Path) -> list[int]:
    """Every pid the fake jobs recorded: their own and their grandchildren's."""
    return [int(p) for f in (marker / "pids").glob("*") for p in f.read_text().split()]
