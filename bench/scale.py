"""Benchmark: how validation and planning grow with the number of tables.

    python bench/scale.py [--seasons 10] [--tables 100,250,500,1000] [--check]

For each size, the synthetic warehouse of bench/run.py is built (not timed), then a fresh
Python process loads the spec, validates every expected date of every season, and plans the
backfill, reporting each step's seconds and the process's peak memory (its maximum resident
set). Targets at 10 seasons x 1,000 tables (about 1.7 M cells): validation under 15 s and
3 GB, planning under 15 s. Exit 0 regardless, unless --check is given and a target is missed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

VALIDATE_LIMIT_S, PLAN_LIMIT_S, MEMORY_LIMIT_GB = 15.0, 15.0, 3.0

# Runs in a fresh process per size, so that its peak memory is its own.
MEASURE = """\
import json, resource, sys, time
from datetime import date
from backfill_kit.plan import build_plan
from backfill_kit.spec.load import load_spec
from backfill_kit.validation.validator import validate

spec_path, start, end = sys.argv[1], date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
began = time.perf_counter()
spec = load_spec(spec_path)
result = validate(spec, start, end)
validated = time.perf_counter()
plan = build_plan(result)
planned = time.perf_counter()
print(json.dumps({"cells": len(result.cells), "steps": len(plan.steps), "validate_s": validated - began,
                  "plan_s": planned - validated, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def bench_run() -> ModuleType:
    path = Path(__file__).with_name("run.py")
    spec = importlib.util.spec_from_file_location("backfill_kit_bench_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def measure(work: Path, seasons: int, tables: int) -> dict[str, float]:
    built = time.perf_counter()
    syn = bench_run().build_synthetic(work / f"t{tables}", seasons=seasons, tables=tables)
    build_s = time.perf_counter() - built
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(syn.spec_path), syn.start.isoformat(), syn.end.isoformat()],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring {tables} tables failed: {done.stderr.strip()[-800:]}")
    shutil.rmtree(work / f"t{tables}", ignore_errors=True)
    *_, last = done.stdout.strip().splitlines()  # the measurement; validation may warn before it
    return {"tables": tables, "rows": syn.rows, "build_s": build_s, **json.loads(last)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seasons", type=int, default=10)
    parser.add_argument("--tables", default="100,250,500,1000", help="comma-separated sizes")
    parser.add_argument("--check", action="store_true", help="exit 1 when the largest size misses a target")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.tables.split(",")]
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.seasons} seasons"
    )
    print(
        f"{'tables':>6} {'cells':>10} {'rows':>12} {'validate s':>11} {'plan s':>7} {'peak GB':>8} {'steps':>7}  (built in)"
    )
    work = Path(tempfile.mkdtemp(prefix="backfill-kit-scale-"))
    try:
        results = []
        for n in sizes:
            r = measure(work, args.seasons, n)
            results.append(r)
            print(
                f"{n:6} {r['cells']:10,} {r['rows']:12,} {r['validate_s']:11.2f} {r['plan_s']:7.2f} "
                f"{r['peak_gb']:8.2f} {r['steps']:7,}  ({r['build_s']:.0f} s)",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    last = results[-1]
    passed = (
        last["validate_s"] < VALIDATE_LIMIT_S and last["plan_s"] < PLAN_LIMIT_S and last["peak_gb"] < MEMORY_LIMIT_GB
    )
    print(
        f"targets at the largest size: validate < {VALIDATE_LIMIT_S:g} s, plan < {PLAN_LIMIT_S:g} s, "
        f"peak < {MEMORY_LIMIT_GB:g} GB: {'ok' if passed else 'MISS'}"
    )
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
