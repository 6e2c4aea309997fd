"""Benchmark: the runner's own cost, next to floors measured in the same run.

    python bench/runner.py [--repeat N] [--check]

1. Overhead per step: a sequential stage of N steps that run /bin/true, against the same N
   processes started and waited for with bare subprocess calls. (runner - floor) / N is what
   the runner adds per step: journal writes with fsync, log files, polling, progress.
2. A parallel stage: 16 steps of `sleep 0.5` with 4 workers, against the ideal 2 s.
Exit 0 regardless, unless --check is given and a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from backfill_kit.plan import Plan, Stage, Step
from backfill_kit.running.runner import Runner, RunOptions

STEPS = 40
DAY = date(2024, 1, 1)


def step(name: str, argv: tuple[str, ...], workdir: Path) -> Step:
    return Step(
        id=name,
        table=name,
        phase="bench",
        start=DAY,
        end=DAY,
        dates=(DAY,),
        causes={"never_ran": 1},
        argv=argv,
        workdir=str(workdir),
        env={},
        timeout_seconds=60,
        retries=0,
        transient_exit_codes=(),
        skips_downstream=True,
    )


def run_plan(workdir: Path, workers: int, steps: list[Step]) -> float:
    plan_path = workdir / f"plan-{time.monotonic_ns()}.json"
    plan = Plan("", "bench", DAY, DAY, datetime.now(UTC), [Stage(1, "bench", "parallel", workers, tuple(steps))])
    plan.write(plan_path)
    began = time.perf_counter()
    result = Runner(plan, plan_path, RunOptions()).run()
    seconds = time.perf_counter() - began
    assert result.outcome == "completed", result
    return seconds


def bare(argv: tuple[str, ...], n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        subprocess.run(argv, check=True)
    return time.perf_counter() - began


def median_of(repeat: int, measure) -> float:
    measure()  # warm-up
    return statistics.median(measure() for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    true = ("/bin/true",)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runner = median_of(args.repeat, lambda: run_plan(work, 1, [step(f"s{i}", true, work) for i in range(STEPS)]))
        floor = median_of(args.repeat, lambda: bare(true, STEPS))
        sleepers = [step(f"z{i}", ("sleep", "0.5"), work) for i in range(16)]
        parallel = median_of(max(1, args.repeat // 2), lambda: run_plan(work, 4, sleepers))
    overhead_ms = (runner - floor) / STEPS * 1000
    rows = [
        (
            f"runner overhead per step ({STEPS} x /bin/true)",
            f"{runner:.3f} s vs bare {floor:.3f} s",
            f"{overhead_ms:.1f} ms",
            "< 50 ms",
            overhead_ms < 50,
        ),
        (
            "parallel stage: 16 x sleep 0.5, 4 workers",
            f"{parallel:.3f} s vs ideal 2.000 s",
            f"{parallel / 2.0:.2f}x",
            "<= 1.25x",
            parallel / 2.0 <= 1.25,
        ),
    ]
    print(f"backfill-kit runner bench: median of {args.repeat} after 1 warm-up; python {sys.version.split()[0]}")
    for name, measured, figure, target, ok in rows:
        print(f"{name:<44} {measured:<28} {figure:>9}  {target:<9} {'PASS' if ok else 'MISS'}")
    missed = [r for r in rows if not r[-1]]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
