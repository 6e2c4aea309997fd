"""Plans of fake jobs, for runner tests on real subprocesses."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from backfill_kit.plan import Plan, Stage, Step

FAKE_JOB = str(Path(__file__).parent / "jobs" / "fake_job.py")
DAY = date(2024, 1, 1)


def fake_step(name: str, marker: Path, mode: str = "ok", *, timeout: float = 60, retries: int = 0,
              after: tuple[str, ...] = (), table: str | None = None, skips: bool = True) -> Step:
    argv = (sys.executable, FAKE_JOB, name, "--marker", str(marker), "--mode", mode)
    return Step(
        id=name, table=table or name, phase="p", start=DAY, end=DAY + timedelta(1), dates=(DAY, DAY + timedelta(1)),
        causes={"never_ran": 2}, argv=argv + (("--skip-downstream-trigger",) if skips else ()),
        workdir=str(marker.parent), env={}, timeout_seconds=timeout, retries=retries, transient_exit_codes=(75,),
        skips_downstream=skips, after=after,
    )


def write_plan(path: Path, *stages: tuple[int, list[Step]]) -> Plan:
    plan = Plan("", "fake", DAY, DAY, datetime.now(UTC),
                [Stage(i + 1, "p", "parallel" if w > 1 else "sequential", w, tuple(steps)) for i, (w, steps) in enumerate(stages)])
    plan.write(path)
    return plan


def runs_of(marker: Path, step: str) -> int:
    return len(list(marker.glob(f"{step}.[0-9]*")))
