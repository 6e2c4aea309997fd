"""A stand-in backfill job for runner tests: does what its --mode says, and leaves a marker
file per run so that a test can count how often each step really ran.

Every run holds an exclusive lock on STEP.running while it works: a second run of the same
step at the same time leaves STEP.overlap behind. Every run writes the pids it owns (its own,
a spawned grandchild's, a daemon's) to pids/PID, so a test can check that none outlives its runner.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("step")
parser.add_argument("--marker", type=Path, required=True)
# ok, fail, hang, wait (until MARKER/release or MARKER/STEP.release), sleep=SECONDS,
# transient=N_FAILURES, flood=BYTES (one line without newline, then fail), say=TEXT (then fail)
parser.add_argument("--mode", default="ok")
parser.add_argument("--spawn", action="store_true", help="first start a grandchild that leaves the group (setsid)")
parser.add_argument(
    "--daemon", action="store_true", help="first double-fork a daemon that drops every mark: setsid env -i sleep"
)
parser.add_argument("--say", default="", help="print this first")
parser.add_argument("--fail-first", type=int, default=0, help="exit 3 at the end of the first N runs")
parser.add_argument("--after", type=Path, help="first wait for this file to exist")
parser.add_argument("--skip-downstream-trigger", action="store_true")
args = parser.parse_args()

args.marker.mkdir(parents=True, exist_ok=True)
while args.after and not args.after.exists():
    time.sleep(0.02)
running = os.open(args.marker / f"{args.step}.running", os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    (args.marker / f"{args.step}.overlap").write_text("two runs at once\n")
runs = len(list(args.marker.glob(f"{args.step}.[0-9]*"))) + 1
(args.marker / f"{args.step}.{runs}").write_text("started\n")
pids = [os.getpid()]
if args.spawn:
    grandchild = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(3600)"])
    pids.append(grandchild.pid)
if args.daemon:  # its parent, a shell, exits at once: the daemon is an orphan with no mark, in a session of its own
    daemon = "setsid env -i sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"
    pids.append(int(subprocess.run(["sh", "-c", daemon], capture_output=True, text=True, check=True).stdout))
    (args.marker / "daemons").mkdir(exist_ok=True)
    (args.marker / "daemons" / str(pids[-1])).write_text("")
(args.marker / "pids").mkdir(exist_ok=True)
(args.marker / "pids" / str(os.getpid())).write_text(" ".join(map(str, pids)))
print(f"step {args.step} run {runs}, skip downstream: {args.skip_downstream_trigger}", flush=True)
if args.say:
    print(args.say, flush=True)
mode, _, value = args.mode.partition("=")
if mode == "fail":
    print(f"boom: {args.step} cannot reach the source", file=sys.stderr)
    sys.exit(3)
if mode == "say":
    print(value, flush=True)
    sys.exit(3)
if mode == "flood":
    block = b"x" * (1 << 20)
    for _ in range(int(value) >> 20):
        sys.stdout.buffer.write(block)
    sys.stdout.buffer.flush()
    sys.exit(3)
if mode == "hang":
    time.sleep(3600)
while mode == "wait" and not any((args.marker / name).exists() for name in ("release", f"{args.step}.release")):
    time.sleep(0.05)
if mode == "sleep":
    time.sleep(float(value))
if mode == "transient" and runs <= int(value):
    print("quota exceeded, try later", file=sys.stderr)
    sys.exit(75)
(args.marker / f"{args.step}.{runs}").write_text("finished\n")
sys.exit(3 if runs <= args.fail_first else 0)
