"""A real backfill job for every table of the demo pipeline.

    python -m backfill_kit.demo.job TABLE --warehouse FILE --start-date S --end-date E
        [--skip-downstream-trigger] [--fail-dates D,D] [--empty-dates D,D] [--crash-after N] [--hang] [--empty]
        [--sleep-per-date SECONDS]

It behaves like the production processors: for each expected date it writes a `running` row
to the run history, rebuilds the date from its upstream tables with SQL (idempotent), then
writes `success` with the records written (or `failed` with a JSON error; a source with
nothing for the date records it its own way: `failed` with failure_category
no_data_available, or `skipped` with skip_reason no_data). A phase 3 job writes one run per
range of dates, one row dated at the range's end with the range beside it. Without
--skip-downstream-trigger it records a trigger event, as the real jobs published a message
that started the next phase. Faults for tests come from the options or from the environment
variable BACKFILL_KIT_DEMO_FAULTS, e.g. "player_game_summary:fail=2021-11-02;*:hang" (an empty date
is one whose source returned nothing, and the job exits 0: "nbac_team_boxscore:empty-dates=2021-10-25");
a cost per date for benchmarks, e.g. "*:sleep=0.2".

DuckDB lets one process write a file at a time, so a job that runs beside others on the same
file must not hold it longer than it writes: each job opens the file to write its `running`
rows, closes it while it reads its source (a real processor's slow part; `--sleep-per-date`
here), and opens it again to write its dates and their final rows, each time waiting with
backoff while another process holds the lock ("Could not set lock on file"). The spec says so
with `waits_for_lock: true`, which preflight looks for in a parallel phase on DuckDB.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from backfill_kit.common.formatting import plural
from backfill_kit.demo import tables
from backfill_kit.validation.calendar import consecutive_runs
from backfill_kit.warehouse.duckdb import connect_file, in_utc

FAULTS_ENV = "BACKFILL_KIT_DEMO_FAULTS"
EXIT_FAILED = 1


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backfill_kit.demo.job", description=__doc__.split("\n")[0])
    parser.add_argument("table", choices=sorted(tables.TABLES))
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--start-date", type=date.fromisoformat, required=True)
    parser.add_argument("--end-date", type=date.fromisoformat, required=True)
    parser.add_argument("--skip-downstream-trigger", action="store_true")
    parser.add_argument("--fail-dates", default="", help="comma-separated dates that fail")
    parser.add_argument("--empty-dates", default="", help="comma-separated dates whose source returns nothing")
    parser.add_argument("--crash-after", type=int, default=None, help="die after starting this many dates")
    parser.add_argument("--hang", action="store_true", help="never finish")
    parser.add_argument("--empty", action="store_true", help="exit 0 having written nothing")
    parser.add_argument("--dry-run", action="store_true", help="check inputs, write nothing")
    parser.add_argument("--sleep-per-date", type=float, default=0.0, help="seconds of source work per date")
    args = parser.parse_args(argv)
    _apply_env_faults(args)
    return args


def _apply_env_faults(args: argparse.Namespace) -> None:
    """Faults named in the environment, for a table or for every table ('*')."""
    for item in filter(None, os.environ.get(FAULTS_ENV, "").split(";")):
        target, _, fault = item.partition(":")
        if target not in (args.table, "*"):
            continue
        name, _, value = fault.partition("=")
        if name == "fail":
            args.fail_dates = ",".join(filter(None, [args.fail_dates, value]))
        elif name == "empty-dates":
            args.empty_dates = ",".join(filter(None, [args.empty_dates, value]))
        elif name == "crash-after":
            args.crash_after = int(value)
        elif name in ("hang", "empty"):
            setattr(args, name, True)
        elif name == "sleep":
            args.sleep_per_date = float(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.end_date < args.start_date:
        print(f"--end-date {args.end_date} is before --start-date {args.start_date}", file=sys.stderr)
        return 2
    if not args.warehouse.is_file():  # never create an empty database where a path is wrong
        print(
            f"--warehouse {args.warehouse}: no such DuckDB file; create the demo with: backfill-kit demo init DIR",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        return _dry_run(args)
    if args.empty:
        print(f"{args.table}: nothing to do (fault: empty)")
        return 0
    if args.hang:
        print(f"{args.table}: hanging (fault: hang)", flush=True)
        while True:
            time.sleep(3600)
    failed = _run(args)
    if not args.skip_downstream_trigger:
        with writing(args.warehouse) as con:
            _trigger_downstream(con, args)
    return EXIT_FAILED if failed else 0


LOCK_WAIT_SECONDS = 600.0  # as long as a step may take: another job's write lasts seconds at most


@contextmanager
def writing(path: Path) -> Iterator[Any]:
    """The file open for writing, briefly: DuckDB's single writer lock is taken on opening
    and released on closing. While another process holds it, wait and try again, backing off
    from 20 ms to a second."""
    deadline, pause, said = time.monotonic() + LOCK_WAIT_SECONDS, 0.02, False
    while True:
        try:
            con = in_utc(duckdb.connect(str(path)))
            break
        except duckdb.IOException as exc:
            if "Could not set lock on file" not in str(exc) or time.monotonic() > deadline:
                raise
            if not said:
                print(f"waiting for the write lock on {path}: another process is writing it", flush=True)
                said = True
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    try:
        con.execute("SET enable_progress_bar = false")
        yield con
    finally:
        con.close()


def _dry_run(args: argparse.Namespace) -> int:
    """What preflight asks of a job: can it open its warehouse and see its dates? Writes nothing."""
    con = connect_file(args.warehouse, read_only=True)
    try:
        dates = tables.expected_dates(con, args.start_date, args.end_date)
        table = tables.TABLES[args.table].table
        con.execute(f"SELECT count(*) FROM {table} WHERE false").fetchall()
    finally:
        con.close()
    print(f"{args.table}: dry run: would rebuild {plural(len(dates), 'date')} of {table}")
    return 0


def _run(args: argparse.Namespace) -> int:
    """Rebuild every expected date of the range; returns how many dates failed. The file is
    open for writing only while the `running` rows, then the dates and their final rows, are
    written: never while the source is read."""
    table = tables.TABLES[args.table]
    fail = {date.fromisoformat(d) for d in args.fail_dates.split(",") if d}
    empty = {date.fromisoformat(d) for d in args.empty_dates.split(",") if d}  # rebuilt from nothing
    started = datetime.now(UTC).replace(tzinfo=None)
    with writing(args.warehouse) as con:
        seed = con.execute(f"SELECT seed FROM {tables.SETTINGS_TABLE}").fetchone()[0]
        dates = tables.expected_dates(con, args.start_date, args.end_date)
        runs = _begin(con, table, dates, started)
    if args.crash_after is not None and len(dates) > args.crash_after:
        print(f"{args.table}: crashing after {plural(args.crash_after, 'date')} (fault)", file=sys.stderr, flush=True)
        os._exit(3)  # no final rows, no cleanup: what a killed container leaves behind
    time.sleep(args.sleep_per_date * len(dates))  # reading the source: the file is not held meanwhile
    written: dict[date, int] = {}
    built = [d for d in dates if d not in fail and d not in empty]
    with writing(args.warehouse) as con:
        for run in consecutive_runs(built, dates):  # a failed date is never rebuilt
            written |= tables.build(con, args.table, run[0], run[-1], seed=seed)
        for run_ids, date_range in runs:
            _finish(con, table, run_ids, date_range, written, fail, started)
    bad = sorted(d for d in dates if d in fail)
    if bad:
        print(
            f"{args.table}: {plural(len(bad), 'date')} failed: upstream API returned HTTP 503 ({', '.join(str(d) for d in bad)})",
            file=sys.stderr,
        )
    ok = [d for d in dates if d not in fail]
    print(f"{args.table}: {plural(len(ok), 'date')} rebuilt, {plural(sum(written.get(d, 0) for d in ok), 'row')}")
    return len(bad)


Runs = list[tuple[dict[date, str], tuple[date, date] | None]]


def _begin(con: Any, table: tables.TableDef, dates: list[date], started: datetime) -> Runs:
    """The `running` rows: one per date, or one per range for a phase 3 processor."""
    if table.phase != tables.PHASE_ANALYTICS:
        run_ids = tables.begin_run(con, table.processor, dates, started, **_backfill_run(None))
        return [({d: run_id}, None) for d, run_id in run_ids.items()]
    ranges = [(chunk[0], chunk[-1]) for chunk in tables.range_chunks(dates)]
    return [
        (tables.begin_run(con, table.processor, last, started, **_backfill_run((first, last))), (first, last))
        for first, last in ranges
    ]


def _backfill_run(date_range: tuple[date, date] | None) -> tables.RunFields:
    """How a backfill's run is written: never as a scheduled one."""
    return tables.RunFields(backfill_mode=True, trigger_source="backfill", date_range=date_range)


def _finish(
    con: Any,
    table: tables.TableDef,
    run_ids: dict[date, str],
    date_range: tuple[date, date] | None,
    written: dict[date, int],
    fail: set[date],
    started: datetime,
) -> None:
    """The final row of one run: failed if any of its dates failed, else success; a phase 2
    date whose source had nothing is recorded the way its processor records it."""
    covered = [d for d in written if date_range[0] <= d <= date_range[1]] if date_range else list(run_ids)
    failed = sorted(d for d in fail if (date_range[0] <= d <= date_range[1] if date_range else d in run_ids))
    how = _backfill_run(date_range)
    now = datetime.now(UTC).replace(tzinfo=None)
    records = sum(written.get(d, 0) for d in covered)
    if failed:
        error = [
            {
                "error_type": "SourceError",
                "error_message": "upstream API returned HTTP 503 for " + ", ".join(map(str, failed)),
                "timestamp": now.isoformat(),
            }
        ]
        tables.finish_run(
            con, table.processor, run_ids, "failed", records, error, started, failure_category="processing_error", **how
        )
        return
    outcome = tables.NO_DATA_OUTCOMES.get(table.id, tables.NO_DATA) if not date_range and records == 0 else None
    if outcome is None:
        tables.finish_run(con, table.processor, run_ids, "success", records, None, started, **how)
        return
    day = next(iter(run_ids))
    tables.finish_run(
        con,
        table.processor,
        run_ids,
        outcome.status,
        0,
        outcome.errors(day, now),
        started,
        failure_category=outcome.failure_category,
        skip_reason=outcome.skip_reason,
        **how,
    )


def _trigger_downstream(con: Any, args: argparse.Namespace) -> None:
    con.execute(
        f"INSERT INTO {tables.TRIGGERS_TABLE} VALUES (?, ?, ?, ?, ?)",
        [args.table, args.start_date, args.end_date, datetime.now(UTC).replace(tzinfo=None), f"pid {os.getpid()}"],
    )
    print(f"{args.table}: published a completion message: the next phase will start")


if __name__ == "__main__":
    sys.exit(main())
