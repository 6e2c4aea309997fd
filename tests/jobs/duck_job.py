"""A stand-in job that writes a DuckDB file, holding its single-writer lock as long as told.

    python duck_job.py NAME --db FILE --marker DIR [--table T --dates D,D --rows N]
        [--sleep SECONDS] [--hold SECONDS] [--wait-for OTHER] [--skip-downstream-trigger]

It sleeps --sleep seconds first (time to be killed in), and with --wait-for waits for OTHER to
hold the lock (MARKER/OTHER.holding). It opens the file for writing (waiting while another
process holds it), replaces the rows of each
date in T with --rows rows (a rerun leaves the same rows), writes MARKER/NAME.holding, keeps
the connection (and so the lock) open for --hold seconds, then exits 0. Every run leaves
MARKER/NAME.N and its pid in MARKER/pids, as tests/jobs/fake_job.py does.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import duckdb

parser = argparse.ArgumentParser()
parser.add_argument("step")
parser.add_argument("--db", type=Path, required=True)
parser.add_argument("--marker", type=Path, required=True)
parser.add_argument("--table", default="")
parser.add_argument("--dates", default="")
parser.add_argument("--rows", type=int, default=1)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--hold", type=float, default=0.0)
parser.add_argument("--wait-for", default="")
parser.add_argument("--skip-downstream-trigger", action="store_true")
args = parser.parse_args()

args.marker.mkdir(parents=True, exist_ok=True)
(args.marker / "pids").mkdir(exist_ok=True)
(args.marker / "pids" / str(os.getpid())).write_text(str(os.getpid()))
runs = len(list(args.marker.glob(f"{args.step}.[0-9]*"))) + 1
(args.marker / f"{args.step}.{runs}").write_text("started\n")
time.sleep(args.sleep)
while args.wait_for and not (args.marker / f"{args.wait_for}.holding").exists():
    time.sleep(0.02)
while True:  # as a real job does: wait while another process writes the file
    try:
        con = duckdb.connect(str(args.db))
        break
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        time.sleep(0.05)
date_column = "cache_date" if args.table == "analytics.cache" else "game_date"
for day in filter(None, args.dates.split(",")):
    con.execute(f"DELETE FROM {args.table} WHERE {date_column} = ?", [day])
    con.execute(f"INSERT INTO {args.table} SELECT ?, 'x' || i FROM range(?) t(i)", [day, args.rows])
(args.marker / f"{args.step}.holding").write_text("holding the write lock\n")
time.sleep(args.hold)
con.close()
(args.marker / f"{args.step}.{runs}").write_text("finished\n")
