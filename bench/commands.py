"""Benchmark: whole commands as a person runs them, next to floor processes timed in the same run.

    python bench/commands.py [--repeat N] [--check] [--keep DIR]

A person meets `backfill-kit validate` and `backfill-kit report coverage` as processes: the
interpreter's start, every import, the work, the output. So each is timed as a subprocess,
against a floor process that does the least work that could produce the same raw material:

- validate --format json: a Python process that opens the same DuckDB file and runs the
  calendar query, one UNION ALL of per-date counts over every table and a plain GROUP BY of
  the run history, then writes the counts with json.dumps.
- report coverage: papermill's own CLI on a three-cell notebook, then
  `jupyter nbconvert --to html --no-input` on its output: two processes.

Runs alternate (floor, command, floor, command, ...) after one warm-up of each, so both see
the same background load; the median of --repeat runs is compared. Exit 0 regardless, unless
--check is given and a target is missed.

As a person's machine has them: bytecode (PYTHONDONTWRITEBYTECODE is dropped, so the warm-up
writes it, as pip does when it installs), and the user's cache of checked specs (a folder of
its own under the work folder, filled by the warm-up). validate is also timed with no usable
cache, as the first run after each edit of the spec meets it: for information, no target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

START, END = "2021-10-19", "2025-06-22"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Measurement:
    name: str
    command: list[list[str]]  # one or more processes, run one after another
    floor: list[list[str]]
    target: str  # "ratio <= X", "diff <= X" (seconds over the floor), "abs < X" or "info"
    ok_codes: tuple[int, ...] = (0,)
    env: tuple[tuple[str, str], ...] = ()  # set for the command only


@dataclass(frozen=True)
class Outcome:
    measurement: Measurement
    seconds: float
    floor: float
    cpu: float  # CPU seconds (user + system) of the command's processes, median
    floor_cpu: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor

    @property
    def passed(self) -> bool:
        if self.measurement.target == "info":
            return True
        kind, limit = self.measurement.target.split(" ", 1)[0], float(self.measurement.target.rsplit(" ", 1)[1])
        value = {"ratio": self.ratio, "diff": self.seconds - self.floor, "abs": self.seconds}[kind]
        return value <= limit


def timed(
    processes: Sequence[Sequence[str]], ok_codes: tuple[int, ...], cwd: Path, env: dict[str, str]
) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds of the processes (and of theirs): on a machine shared
    with other work the first swings with the neighbours, the second far less."""
    began, cpu = time.perf_counter(), children_cpu()
    for argv in processes:
        done = subprocess.run(
            argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
        )
        if done.returncode not in ok_codes:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - began, children_cpu() - cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(m: Measurement, repeat: int, cwd: Path) -> Outcome:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["BACKFILL_KIT_CACHE_DIR"] = str(cwd / "cache")  # filled by the warm-up, as a person's by their first run
    command_env = {**env, **dict(m.env)}
    timed(m.floor, (0,), cwd, env), timed(m.command, m.ok_codes, cwd, command_env)  # warm-up: disk, bytecode, cache
    floors, runs = [], []
    for _ in range(repeat):
        floors.append(timed(m.floor, (0,), cwd, env))
        runs.append(timed(m.command, m.ok_codes, cwd, command_env))
    seconds, cpu = map(statistics.median, zip(*runs, strict=True))
    floor, floor_cpu = map(statistics.median, zip(*floors, strict=True))
    return Outcome(m, seconds, floor, cpu, floor_cpu)


# --- the floors ----------------------------------------------------------------------------

VALIDATE_FLOOR = """\
import json, sys
import duckdb
queries = json.load(open(sys.argv[1]))
con = duckdb.connect(queries["database"], read_only=True)
out = {name: con.execute(sql).fetchall() for name, sql in queries["sql"].items()}
sys.stdout.write(json.dumps(out, default=str))
"""


def validate_floor_queries(spec_path: Path) -> dict[str, object]:
    """The floor's three queries, written by hand for the demo spec (not timed)."""
    from backfill_kit.spec.load import load_spec

    spec = load_spec(spec_path)
    cal, rh = spec.calendar, spec.run_history
    between = f"BETWEEN DATE '{START}' AND DATE '{END}'"
    counts = "\nUNION ALL\n".join(
        f"SELECT {i} AS k, CAST({spec.date_column_of(t)} AS DATE) AS d, COUNT(*) AS n FROM {t.table} "
        f"WHERE CAST({spec.date_column_of(t)} AS DATE) {between} GROUP BY 2"
        for i, t in enumerate(spec.tables)
    )
    return {
        "database": str(spec.resolve_path(spec.warehouse.path)),  # type: ignore[union-attr]
        "sql": {
            "calendar": f"SELECT {cal.date_column}, COUNT(DISTINCT {cal.game_id_column}) FROM {cal.table} "
            f"WHERE {cal.filter or 'TRUE'} AND {cal.date_column} {between} GROUP BY 1",
            "counts": counts,
            "runs": f"SELECT {rh.columns.processor}, {rh.columns.date}, {rh.columns.status}, COUNT(*) FROM {rh.table} "
            f"WHERE {rh.columns.date} {between} GROUP BY 1, 2, 3",
        },
    }


TRIVIAL_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "p",
            "metadata": {"tags": ["parameters"]},
            "outputs": [],
            "source": "x = 1",
        },
        {"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [], "source": "y = x + 1"},
        {"cell_type": "code", "execution_count": None, "id": "d", "metadata": {}, "outputs": [], "source": "y"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


# --- running -------------------------------------------------------------------------------


def measurements(work: Path, spec: Path) -> list[Measurement]:
    floor_queries = work / "floor-queries.json"
    floor_queries.write_text(json.dumps(validate_floor_queries(spec)))
    (work / "floor.py").write_text(VALIDATE_FLOOR)
    (work / "trivial.ipynb").write_text(json.dumps(TRIVIAL_NOTEBOOK))
    kit, py = str(BIN / "backfill-kit"), sys.executable
    span = ["--spec", str(spec), "--start", START, "--end", END]
    validate = partial(
        Measurement,
        command=[[kit, "validate", *span, "--format", "json"]],
        floor=[[py, str(work / "floor.py"), str(floor_queries)]],
        ok_codes=(0, 1),
    )
    return [
        Measurement("backfill-kit --help", [[kit, "--help"]], [[py, "-c", "pass"]], "abs < 0.15"),
        validate(name="validate --format json (demo)", target="ratio <= 1.5"),
        validate(name="validate, first run after an edit", target="info", env=(("BACKFILL_KIT_CACHE_DIR", ""),)),
        Measurement(
            "report coverage (demo)",
            [[kit, "report", "coverage", *span, "--out-dir", str(work / "reports")]],
            [
                [str(BIN / "papermill"), "--no-progress-bar", "trivial.ipynb", "trivial-out.ipynb", "-p", "x", "2"],
                [str(BIN / "jupyter"), "nbconvert", "--to", "html", "--no-input", "trivial-out.ipynb"],
            ],
            "diff <= 1.0",
        ),
    ]


def print_outcomes(outcomes: list[Outcome]) -> None:
    print(
        f"{'measurement':33} {'median s':>8} {'floor s':>7} {'ratio':>5} {'over s':>6}  {'target':13} {'result':6} "
        f"{'cpu s':>5} {'floor':>5} {'ratio':>5}"
    )
    for o in outcomes:
        print(
            f"{o.measurement.name:33} {o.seconds:8.3f} {o.floor:7.3f} {o.ratio:5.2f} {o.seconds - o.floor:6.3f}  "
            f"{o.measurement.target:13} {'-' if o.measurement.target == 'info' else 'ok' if o.passed else 'MISS':6} "
            f"{o.cpu:5.3f} {o.floor_cpu:5.3f} {o.cpu / o.floor_cpu:5.2f}"
        )


def report_size(work: Path) -> None:
    reports = sorted((work / "reports").glob("coverage_*.html"))
    if reports:
        print(f"four-season coverage report: {reports[-1].stat().st_size / 1e6:.2f} MB (target <= 2 MB)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each, after a warm-up (default 5)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", type=Path, help="build the demo and keep the reports in this folder")
    parser.add_argument("--only", metavar="TEXT", default="", help="only the measurements whose name contains TEXT")
    args = parser.parse_args(argv)
    from backfill_kit.demo import init_demo

    work = args.keep or Path(tempfile.mkdtemp(prefix="backfill-kit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["BACKFILL_KIT_CACHE_DIR"] = str(work / "cache")  # this run's, not the user's: see measure()
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; median of {args.repeat}, interleaved with floors"
    )
    try:
        spec = init_demo(work / "demo")
        outcomes = [measure(m, args.repeat, work) for m in measurements(work, spec) if args.only in m.name]
        print_outcomes(outcomes)
        report_size(work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if args.check and not all(o.passed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
