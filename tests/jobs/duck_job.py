"""A stand-in job that writes a DuckDB file, holding its single-writer lock as long as told.

    python duck_job.py NAME --db FILE --marker DIR [--table T --dates D,D] [--hold SECONDS]
        [--wait-for OTHER] [--skip-downstream-trigger]

With --wait-for it first waits for OTHER to hold the lock (MARKER/OTHER.holding). It opens
the file for writing, inserts one row per date into T, writes MARKER/NAME.holding, keeps the
connection (and so the lock) open for --hold seconds, then exits 0. Every run leaves
MARKER/NAME.N, as tests/jobs/fake_job.py does, so that a test can count runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb

parser = argparse.ArgumentParser()
parser.add_argument("step")
parser.add_argument("--db", type=Path, required=True)
parser.add_argument("--marker", type=Path, required=True)
parser.add_argument("--table", default="")
parser.add_argument("--dates", default="")
parser.add_argument("--hold", type=float, default=0.0)
parser.add_argument("--wait-for", default="")
parser.add_argument("--skip-downstream-trigger", action="store_true")
args = parser.parse_args()

args.marker.mkdir(parents=True, exist_ok=True)
runs = len(list(args.marker.glob(f"{args.step}.[0-9]*"))) + 1
(args.marker / f"{args.step}.{runs}").write_text("started\n")
while args.wait_for and not (args.marker / f"{args.wait_for}.holding").exists():
    time.sleep(0.02)
con = duckdb.connect(str(args.db))
for day in filter(None, args.dates.split(",")):
    con.execute(f"INSERT INTO {args.table} VALUES (?, 'x')", [day])
(args.marker / f"{args.step}.holding").write_text("holding the write lock\n")
time.sleep(args.hold)
con.close()
(args.marker / f"{args.step}.{runs}").write_text("finished\n")
