"""Benchmark: validation wall times next to floors measured in the same run, as ratios.

    python bench/run.py [--repeat N] [--check] [--skip-demo] [--seasons 10] [--tables 100]

Each measurement is the median of N repetitions after one warm-up. A floor is the cheapest
honest way to get the same answer's raw material on the same machine in the same run: one
hand-written UNION ALL of GROUP BY counts on the same DuckDB file (for validation), or a bare
`python -c pass` (for the CLI). Ratios, not absolute times, are what travel between machines.
Exit 0 regardless, unless --check is given and a target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import yaml

DEMO_START, DEMO_END = date(2021, 10, 19), date(2025, 6, 22)
FIRST_SEASON = 2015
BOOTSTRAP_DAYS = 14
MIN_ROWS = 3  # rows a date needs when no per-game minimum is set; 1-2 rows make a partial date


# --- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Either a ratio to the floor or an absolute number of seconds."""

    limit: float
    relative: bool

    def met(self, seconds: float, floor: float) -> bool:
        return seconds / floor <= self.limit if self.relative else seconds < self.limit

    def __str__(self) -> str:
        return f"<= {self.limit:g}x floor" if self.relative else f"< {self.limit:g} s"


@dataclass(frozen=True)
class Result:
    name: str
    seconds: float
    floor: float
    target: Target
    note: str = ""
    error: str | None = None  # the measured command failed: nothing to time

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor if self.floor else float("inf")

    @property
    def passed(self) -> bool:
        return self.error is None and self.target.met(self.seconds, self.floor)


def failed(name: str, target: Target, exc: Exception) -> Result:
    message = " ".join(str(exc).split())[:300]  # one line in the table's notes
    return Result(name, float("nan"), float("nan"), target, error=f"{type(exc).__name__}: {message}")


def seconds_of(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def median_pair(floor: Callable[[], Any], subject: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median seconds of the floor and of the subject, repetitions interleaved so that both
    see the same background load (a ratio of two medians taken minutes apart drifts)."""
    floor(), subject()  # warm-up: imports, the OS page cache and DuckDB's first open are not the subject
    times = [(seconds_of(floor), seconds_of(subject)) for _ in range(repeat)]
    return statistics.median(f for f, _ in times), statistics.median(s for _, s in times)


# --- the floor: coverage counts written by hand ----------------------------------------------


def floor_sql(targets: list[tuple[str, str]], start: date, end: date) -> str:
    """Written here, not with backfill_kit's sql.py, so the floor cannot inherit its mistakes."""
    stop = end + timedelta(days=1)  # half-open, like the toolkit, so TIMESTAMP columns keep the end date
    return "\nUNION ALL\n".join(
        f"SELECT {k} AS k, CAST({column} AS DATE) AS d, COUNT(*) AS n FROM {table} "
        f"WHERE {column} >= DATE '{start}' AND {column} < DATE '{stop}' GROUP BY 1, 2"
        for k, (table, column) in enumerate(targets)
    )


def run_floor(db_path: Path, sql: str) -> int:
    # The connection is part of the floor: validation opens the file on every call too.
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return len(con.execute(sql).fetchall())
    finally:
        con.close()


def spec_targets(spec_path: Path) -> list[tuple[str, str]]:
    """(table, date column) of every table in a spec file, read with plain YAML."""
    data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    default = data.get("date_column") or "date"
    return [(t["table"], t.get("date_column") or default) for phase in data["phases"] for t in phase["tables"]]


# --- in-process validation -------------------------------------------------------------------


def validate_once(spec_path: Path, start: date, end: date) -> Any:
    from backfill_kit.spec.load import load_spec
    from backfill_kit.validation.validator import validate

    # Loading the spec is part of what a user waits for, so it is inside the measurement.
    return validate(load_spec(spec_path), start, end)


def measure_validation(
    name: str, spec_path: Path, db_path: Path, start: date, end: date, target: Target, repeat: int
) -> Result:
    sql = floor_sql(spec_targets(spec_path), start, end)
    try:
        floor, seconds = median_pair(
            lambda: run_floor(db_path, sql), lambda: validate_once(spec_path, start, end), repeat
        )
        return Result(name, seconds, floor, target, query_note(validate_once(spec_path, start, end)))
    except Exception as exc:  # report it as a row, and still run the other measurements
        return failed(name, target, exc)


def query_note(result: Any) -> str:
    """Where one validation's time went: its queries, then everything else (Python)."""
    parts = ", ".join(f"{q.purpose} {q.seconds:.3f}" for q in result.queries)
    return f"{len(result.cells):,} cells; {len(result.queries)} queries: {parts}"


# --- the CLI, end to end ---------------------------------------------------------------------


def cli_command() -> list[str]:
    # cli.py has no __main__ guard, so `python -m backfill_kit.cli.commands` would exit 0 doing nothing.
    script = Path(sys.executable).parent / "backfill-kit"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from backfill_kit.cli.commands import main; main()"]


def run_cli(args: list[str]) -> None:
    done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    # 1 means gaps remain (the demo has them on purpose), but a traceback exits 1 too: only
    # a silent stderr tells them apart, and a crash is fast and must not pass for a result.
    if done.returncode not in (0, 1) or done.stderr.strip():
        last = done.stderr.strip().splitlines()[-1:] or ["(no message)"]  # a traceback's last line names the error
        raise RuntimeError(f"{Path(args[0]).name} exited {done.returncode}: {last[0]}")


def measure_cli(spec_path: Path, start: date, end: date, repeat: int) -> Result:
    name, target = "cli validate --format json (demo)", Target(1.0, relative=False)
    args = [
        *cli_command(),
        "validate",
        "--spec",
        str(spec_path),
        "--start",
        str(start),
        "--end",
        str(end),
        "--format",
        "json",
    ]
    try:
        floor, seconds = median_pair(lambda: run_cli([sys.executable, "-c", "pass"]), lambda: run_cli(args), repeat)
    except RuntimeError as exc:
        return failed(name, target, exc)
    return Result(name, seconds, floor, target, "floor is `python -c pass`; exit code 1 (gaps remain) is expected")


# --- the synthetic warehouse -----------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticTable:
    id: str
    table: str  # schema.table
    date_column: str
    processor: str
    phase: int


@dataclass(frozen=True)
class Synthetic:
    spec_path: Path
    db_path: Path
    start: date
    end: date
    tables: tuple[SyntheticTable, ...]
    expected_dates: tuple[date, ...]
    rows: int

    @property
    def cells(self) -> int:
        return len(self.tables) * len(self.expected_dates)


PHASES = (("raw", "parallel"), ("analytics", "parallel"), ("precompute", "sequential"))


def synthetic_tables(count: int) -> list[SyntheticTable]:
    """40% raw, 30% analytics, the rest precompute; every tenth table (t005, t015, ...) has a TIMESTAMP date column."""
    raw = max(1, round(count * 0.4))
    analytics = max(1, round(count * 0.3))
    out = []
    for k in range(count):
        phase = 0 if k < raw else 1 if k < raw + analytics else 2
        column = "analysis_date" if k % 10 == 5 else "game_date"
        name = f"t{k:03d}"
        out.append(SyntheticTable(name, f"{PHASES[phase][0]}.{name}", column, f"T{k:03d}Processor", phase))
    return out


def table_entry(t: SyntheticTable, tables: list[SyntheticTable]) -> dict[str, Any]:
    """One table of the spec: a few fallbacks in raw, edges to earlier tables, per-game minimums."""
    by_phase = [[x for x in tables if x.phase == p] for p in range(3)]
    mine = by_phase[t.phase]
    i = mine.index(t)
    entry: dict[str, Any] = {"id": t.id, "table": t.table, "processor": t.processor}
    if t.date_column != "game_date":
        entry["date_column"] = t.date_column
    fallbacks = max(1, len(by_phase[0]) // 8)
    if t.phase == 0 and i >= len(mine) - fallbacks and len(mine) > 1:
        entry["priority"] = "fallback"
    elif t.phase == 0 and i < fallbacks and len(mine) > fallbacks:
        entry["fallback"] = mine[len(mine) - fallbacks + i].id
    if t.phase == 1:
        raw = by_phase[0]
        entry["depends_on"] = sorted({raw[i % len(raw)].id, raw[(i * 7 + 3) % len(raw)].id})
    elif t.phase == 2:
        deps = [by_phase[1][i % len(by_phase[1])].id]
        if i:
            deps.append(mine[i - 1].id)  # sequential: the table listed just before
        entry["depends_on"] = deps
    if t.phase < 2 and int(t.id[1:]) % 3 == 1:
        entry["min_rows_per_game"] = 2
    else:
        entry["min_rows"] = MIN_ROWS
    return entry


def season_windows(seasons: int) -> list[tuple[str, date, date]]:
    return [
        (f"{y}-{str(y + 1)[2:]}", date(y, 10, 20), date(y + 1, 6, 15))
        for y in range(FIRST_SEASON, FIRST_SEASON + seasons)
    ]


def synthetic_spec(db_name: str, seasons: int, tables: list[SyntheticTable]) -> dict[str, Any]:
    """The same shape as backfill_kit/demo/nba_props.yaml."""
    phases = []
    for p, (name, mode) in enumerate(PHASES):
        phase: dict[str, Any] = {"name": name, "mode": mode}
        if mode == "parallel":
            phase["max_workers"] = 4
        else:
            phase["bootstrap_days"] = BOOTSTRAP_DAYS
        phase["tables"] = [table_entry(t, tables) for t in tables if t.phase == p]
        phases.append(phase)
    return {
        "name": "synthetic",
        "warehouse": {"backend": "duckdb", "path": db_name},
        "date_column": "game_date",
        "calendar": {
            "table": "sched.schedule",
            "date_column": "game_date",
            "game_id_column": "game_id",
            "filter": "game_status = 3",
            "seasons": [{"name": n, "start": s, "end": e} for n, s, e in season_windows(seasons)],
        },
        "run_history": {
            "table": "ref.run_history",
            "columns": {
                "processor": "processor_name",
                "date": "data_date",
                "status": "status",
                "started_at": "started_at",
                "finished_at": "processed_at",
                "records": "records_processed",
                "error": "errors",
                "run_id": "run_id",
            },
            "statuses": {
                "running": ["running"],
                "success": ["success", "partial"],
                "failed": ["failed"],
                "skipped": ["skipped"],
            },
            "stale_after_hours": 6,
        },
        "job_defaults": {
            "argv": ["{python}", "-m", "synthetic.job", "{id}", "--start-date", "{start}", "--end-date", "{end}"],
            "workdir": ".",
            "skip_downstream": {"args": ["--skip-downstream-trigger"]},
            "max_dates_per_step": 30,
            "timeout_seconds": 600,
            "transient_exit_codes": [75],
        },
        "phases": phases,
    }


# Pseudo-random but deterministic: DuckDB's hash of (table, date, seed). r = h % 1000 picks the
# cell's fate: 2% empty (split over six causes), 2% partial (1-2 rows), the rest 5-50 rows.
SCHEDULE_SQL = """
CREATE TABLE seasons AS
  SELECT s, make_date({first} + s, 10, 20) AS first_day, make_date({first} + s + 1, 6, 15) AS last_day
  FROM range({seasons}) t(s);
CREATE TABLE sched.schedule AS
WITH days AS (
  SELECT s, first_day, first_day + CAST(i AS INTEGER) AS d FROM seasons, range(240) r(i)
  WHERE first_day + CAST(i AS INTEGER) <= last_day
), game_days AS (  -- games on about 5 days of 7, 2 to 12 games each
  SELECT d, 2 + hash(d, {seed}) // 7 % 11 AS games FROM days WHERE hash(d, {seed}) % 7 < 5
), games AS (
  SELECT strftime(d, '%Y%m%d') || '-' || lpad(CAST(g AS VARCHAR), 2, '0') AS game_id, d AS game_date, 3 AS game_status
  FROM game_days, range(12) r(g) WHERE g < games
)
SELECT * FROM games
UNION ALL  -- a schedule snapshot seen twice: games are counted distinct
SELECT * FROM games WHERE hash(game_id, {seed}) % 10 = 0
UNION ALL  -- postponed games on off days: no final game, so not expected dates
SELECT 'pp-' || strftime(d, '%Y%m%d'), d, 1 FROM days WHERE hash(d, {seed}) % 7 >= 5 AND hash(d, {seed}) % 5 = 0
UNION ALL  -- preseason finals a week before each season: outside the windows, not expected
SELECT 'pre-' || s, first_day - 7, 3 FROM seasons;
CREATE TABLE expected AS
  SELECT DISTINCT game_date AS d, s, first_day FROM sched.schedule JOIN seasons ON game_date BETWEEN first_day AND last_day
  WHERE game_status = 3;
"""

FACTS_SQL = """
CREATE TABLE tables (k INTEGER, bootstrap BOOLEAN);
INSERT INTO tables VALUES {tables};
CREATE TABLE facts AS
WITH cells AS (
  SELECT k, d, hash(k, d, {seed}) AS h, bootstrap AND d < first_day + {bootstrap} AS in_bootstrap
  FROM tables, expected
)
SELECT k, d, h, CAST(h % 1000 AS INTEGER) AS r, CAST(h // 1000 % 6 AS INTEGER) AS cause,
  h // 6000 % 5 = 0 AS retried,
  CAST(CASE WHEN in_bootstrap OR h % 1000 < 20 THEN 0
            WHEN h % 1000 < 40 THEN 1 + h // 1000 % 2
            ELSE 5 + h // 1000 % 46 END AS INTEGER) AS n
FROM cells;
"""

# A run writes a `running` row, then its final row with the same run_id. Empty cells get their
# cause here: 0 never ran, 1 failed, 2 success with no records, 3 skipped, 4 success with records
# (rows since lost), 5 crashed (the running row is orphaned). A fifth of cells failed once first.
RUN_HISTORY_SQL = """
CREATE TABLE ref.run_history AS
WITH runs AS (
  SELECT f.*, a.attempt, 1 + CAST(retried AS INTEGER) AS attempts,
    CAST(d AS TIMESTAMP) + INTERVAL 1 DAY + to_hours(CAST(a.attempt AS BIGINT)) AS started_at
  FROM facts f, range(1, 3) a(attempt)
  WHERE a.attempt <= 1 + CAST(retried AS INTEGER) AND NOT (n = 0 AND r < 20 AND cause = 0)
), finals AS (
  SELECT *, CASE
      WHEN attempt < attempts THEN 'failed'
      WHEN n > 0 THEN (CASE WHEN r < 40 THEN 'partial' ELSE 'success' END)
      WHEN cause = 1 THEN 'failed' WHEN cause = 3 THEN 'skipped' ELSE 'success' END AS final_status
  FROM runs
  WHERE NOT (attempt = attempts AND n = 0 AND r < 20 AND cause = 5)
)
SELECT format('T{:03d}Processor', k) AS processor_name, format('{}-{}-{}', k, d, attempt) AS run_id,
  d AS data_date, 'running' AS status, started_at, CAST(NULL AS TIMESTAMP) AS processed_at,
  CAST(NULL AS BIGINT) AS records_processed, CAST(NULL AS VARCHAR) AS errors
FROM runs
UNION ALL
SELECT format('T{:03d}Processor', k), format('{}-{}-{}', k, d, attempt), d, final_status, started_at,
  started_at + INTERVAL 2 MINUTE,
  CASE WHEN final_status IN ('success', 'partial') THEN (CASE WHEN n = 0 AND cause = 4 THEN 12 ELSE n END) ELSE 0 END,
  CASE WHEN final_status = 'failed' THEN '["HTTP 503 from upstream"]' END
FROM finals;
"""


def build_synthetic(directory: Path, *, seasons: int = 10, tables: int = 100, seed: int = 1) -> Synthetic:
    """Write DIRECTORY/synthetic.duckdb and DIRECTORY/synthetic.yaml, set-based, in seconds."""
    directory.mkdir(parents=True, exist_ok=True)
    db_path, spec_path = directory / "synthetic.duckdb", directory / "synthetic.yaml"
    db_path.unlink(missing_ok=True)
    specs = synthetic_tables(tables)
    con = duckdb.connect(str(db_path))
    try:
        for schema in ("sched", "ref", *(name for name, _ in PHASES)):
            con.execute(f"CREATE SCHEMA {schema}")
        con.execute(SCHEDULE_SQL.format(first=FIRST_SEASON, seasons=seasons, seed=seed))
        values = ", ".join(f"({int(t.id[1:])}, {str(t.phase == 2).lower()})" for t in specs)
        con.execute(FACTS_SQL.format(tables=values, seed=seed, bootstrap=BOOTSTRAP_DAYS))
        for t in specs:
            con.execute(_table_sql(t))
        con.execute(RUN_HISTORY_SQL)
        expected = tuple(d for (d,) in con.execute("SELECT d FROM expected ORDER BY d").fetchall())
        rows = con.execute("SELECT SUM(n) FROM facts").fetchone()[0]
        con.execute("DROP TABLE facts; DROP TABLE tables; DROP TABLE expected; DROP TABLE seasons")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    spec = synthetic_spec(db_path.name, seasons, specs)
    header = "# Generated by bench/run.py: a synthetic pipeline for the validation benchmark.\n"
    spec_path.write_text(
        header + yaml.safe_dump(spec, sort_keys=False, width=120, default_flow_style=None), encoding="utf-8"
    )
    windows = season_windows(seasons)
    return Synthetic(spec_path, db_path, windows[0][1], windows[-1][2], tuple(specs), expected, int(rows))


def _table_sql(t: SyntheticTable) -> str:
    # The TIMESTAMP date column carries an hour, so the coverage query must cast it to a date.
    when = "CAST(d AS TIMESTAMP) + INTERVAL 9 HOUR" if t.date_column != "game_date" else "d"
    return textwrap.dedent(f"""
        CREATE TABLE {t.table} AS
        SELECT {when} AS {t.date_column}, 'player-' || i AS player_id, CAST(h % 97 AS DOUBLE) + i AS value
        FROM (SELECT d, h, unnest(range(n)) AS i FROM facts WHERE k = {int(t.id[1:])} AND n > 0)
    """)


# --- the demo --------------------------------------------------------------------------------


def build_demo(directory: Path) -> Path | str:
    """The demo spec path, or why the demo cannot be built (its warehouse module may be missing)."""
    try:
        from backfill_kit.demo import init_demo

        return init_demo(directory)
    except ImportError as exc:
        return f"demo unavailable: {exc}"


# --- output ----------------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    width = max(len(r.name) for r in results)
    print(f"{'measurement':<{width}}  {'median s':>9}  {'floor s':>9}  {'ratio':>7}  {'target':<15}  result")
    for r in results:
        if r.error:
            print(f"{r.name:<{width}}  {'-':>9}  {'-':>9}  {'-':>7}  {r.target!s:<15}  ERROR")
        else:
            print(
                f"{r.name:<{width}}  {r.seconds:>9.3f}  {r.floor:>9.3f}  {r.ratio:>6.1f}x  "
                f"{r.target!s:<15}  {'PASS' if r.passed else 'MISS'}"
            )
    for r in results:
        if r.error or r.note:
            print(f"  {r.name}: {r.error or r.note}")


def load_average() -> str:
    # A busy machine inflates both columns; the load tells a reader whether to trust the run.
    try:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "load average unknown"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=positive_int, default=5, help="repetitions per measurement (median), after one warm-up"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--skip-demo", action="store_true", help="only the synthetic case")
    parser.add_argument("--seasons", type=positive_int, default=10, help="synthetic seasons")
    parser.add_argument("--tables", type=positive_int, default=100, help="synthetic tables")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"backfill-kit bench: median of {args.repeat} after 1 warm-up; python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, {load_average()}"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="backfill-kit-bench-") as tmp:
        if not args.skip_demo:
            results += demo_results(Path(tmp) / "demo", args.repeat)
        results.append(synthetic_result(Path(tmp) / "synthetic", args.seasons, args.tables, args.repeat))
    print()
    print_table(results)
    missed = [r.name for r in results if not r.passed]
    print(
        f"\n{len(results) - len(missed)} of {len(results)} targets met"
        + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    return 1 if args.check and missed else 0


def demo_results(directory: Path, repeat: int) -> list[Result]:
    began = time.perf_counter()
    spec_path = build_demo(directory)
    if isinstance(spec_path, str):
        print(f"skipped the demo measurements: {spec_path}")
        return []
    print(f"demo build: {time.perf_counter() - began:.2f} s (not measured)")
    db_path = spec_path.with_suffix(".duckdb")
    return [
        measure_validation(
            "demo validate (in-process)", spec_path, db_path, DEMO_START, DEMO_END, Target(2.0, relative=True), repeat
        ),
        measure_cli(spec_path, DEMO_START, DEMO_END, repeat),
    ]


def synthetic_result(directory: Path, seasons: int, tables: int, repeat: int) -> Result:
    began = time.perf_counter()
    syn = build_synthetic(directory, seasons=seasons, tables=tables)
    print(
        f"synthetic build: {time.perf_counter() - began:.2f} s (not measured); {seasons} seasons x "
        f"{tables} tables, {len(syn.expected_dates):,} expected dates, {syn.cells:,} cells, {syn.rows:,} rows"
    )
    return measure_validation(
        f"synthetic validate ({seasons} seasons x {tables} tables)",
        syn.spec_path,
        syn.db_path,
        syn.start,
        syn.end,
        Target(2.0, relative=False),
        repeat,
    )


if __name__ == "__main__":
    sys.exit(main())
