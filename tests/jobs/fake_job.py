"""A stand-in backfill job for runner tests: does what its --mode says, and leaves a marker
file per run so that a test can count how often each step really ran."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("step")
parser.add_argument("--marker", type=Path, required=True)
parser.add_argument("--mode", default="ok")  # ok, fail, hang, wait, sleep=SECONDS, transient=N_FAILURES
parser.add_argument("--skip-downstream-trigger", action="store_true")
args = parser.parse_args()

args.marker.mkdir(parents=True, exist_ok=True)
runs = len(list(args.marker.glob(f"{args.step}.[0-9]*"))) + 1
(args.marker / f"{args.step}.{runs}").write_text("started\n")
print(f"step {args.step} run {runs}, skip downstream: {args.skip_downstream_trigger}", flush=True)
mode, _, value = args.mode.partition("=")
if mode == "fail":
    print(f"boom: {args.step} cannot reach the source", file=sys.stderr)
    sys.exit(3)
if mode == "hang":
    time.sleep(3600)
while mode == "wait" and not (args.marker / "release").exists():  # until the test releases it
    time.sleep(0.05)
if mode == "sleep":
    time.sleep(float(value))
if mode == "transient" and runs <= int(value):
    print("quota exceeded, try later", file=sys.stderr)
    sys.exit(75)
(args.marker / f"{args.step}.{runs}").write_text("finished\n")
