"""Benchmark: the monitor's ETA against the time a run really had left.

    python bench/eta.py [--sleep 0.1] [--start 2022-10-18] [--end 2022-12-31] [--check]

The demo warehouse is built in a temporary folder, its backfill of the range planned, and run
by `backfill-kit run` with every demo job slowed to a known cost per date (the demo job's
`sleep` fault: BACKFILL_KIT_DEMO_FAULTS="*:sleep=S"). While it runs, `backfill-kit monitor
--format json` looks again and again. Once the run has ended, the looks nearest to 25%, 50%
and 75% of its wall time are checked: the time really left (the run's end minus the moment of
the look) should fall inside the ETA range at least 2 times of 3, and the range should be at
most ±50% wide (half its width at most half its middle).
Exit 0 regardless, unless --check is given and a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
MOMENTS = (0.25, 0.50, 0.75)


def backfill_kit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "backfill-kit"), *args], capture_output=True, text=True, env=env, timeout=600)


def looks_during(run: subprocess.Popen[str], spec: Path, start: str, end: str) -> list[dict[str, Any]]:
    """The monitor's JSON, look after look, until the run has ended."""
    looks = []
    while run.poll() is None:
        done = backfill_kit("monitor", "--spec", str(spec), "--start", start, "--end", end, "--format", "json")
        if done.returncode == 0:
            looks.append(json.loads(done.stdout))
    return looks


def verdicts(looks: list[dict[str, Any]], began: datetime, ended: datetime) -> list[dict[str, Any]]:
    """At each moment, the look nearest to it: its ETA range against the time really left."""
    wall = (ended - began).total_seconds()
    rows = []
    for share in MOMENTS:
        moment = began.timestamp() + share * wall
        look = min(looks, key=lambda x: abs(datetime.fromisoformat(x["taken_at"]).timestamp() - moment))
        taken = datetime.fromisoformat(look["taken_at"])
        eta = look["eta"]
        low, high = eta["low_seconds"], eta["high_seconds"]
        left = (ended - taken).total_seconds()
        inside = low is not None and high is not None and low <= left <= high
        half_width = (high - low) / (high + low) if low is not None and high is not None and high + low else None
        rows.append(
            {
                "at": f"{100 * (taken - began).total_seconds() / wall:.0f}%",
                "kind": eta["kind"],
                "left": left,
                "low": low,
                "high": high,
                "inside": inside,
                "half_width": half_width,
                "basis": eta["basis"],
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sleep", type=float, default=0.1, help="seconds per date each demo job spends")
    parser.add_argument("--start", default="2022-10-18")
    parser.add_argument("--end", default="2022-12-31")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    from backfill_kit.demo import init_demo

    with tempfile.TemporaryDirectory(prefix="backfill-kit-eta-") as tmp:
        demo = Path(tmp) / "demo"
        init_demo(demo)
        spec, plan = demo / "nba_props.yaml", demo / "runs" / "plan.json"
        planned = backfill_kit(
            "plan", "--spec", str(spec), "--start", args.start, "--end", args.end, "--out", str(plan)
        )
        assert planned.returncode == 0, planned.stderr
        print(planned.stdout.splitlines()[0])
        env = {**os.environ, "BACKFILL_KIT_DEMO_FAULTS": f"*:sleep={args.sleep:g}"}
        began = datetime.now(UTC)
        run = subprocess.Popen(
            [str(BIN / "backfill-kit"), "run", "--plan", str(plan)], env=env, stdout=subprocess.PIPE, text=True
        )
        looks = looks_during(run, spec, args.start, args.end)
        out, _ = run.communicate()
        ended = datetime.now(UTC)
        print(out.splitlines()[-1])
    rows = verdicts(looks, began, ended)
    wall = (ended - began).total_seconds()
    print(f"\nrun of {wall:.1f} s, {len(looks)} looks of the monitor, each job {args.sleep:g} s per date\n")
    print(f"{'at':>4}  {'kind':<10} {'left s':>7} {'ETA low':>8} {'ETA high':>9} {'width':>7}  inside  basis")
    for r in rows:
        low = f"{r['low']:.1f}" if r["low"] is not None else "-"
        high = f"{r['high']:.1f}" if r["high"] is not None else "-"
        width = f"±{100 * r['half_width']:.0f}%" if r["half_width"] is not None else "-"
        print(
            f"{r['at']:>4}  {r['kind']:<10} {r['left']:7.1f} {low:>8} {high:>9} {width:>7}  "
            f"{'yes' if r['inside'] else 'NO':<6}  {r['basis']}"
        )
    inside = sum(r["inside"] for r in rows)
    narrow = all(r["half_width"] is not None and r["half_width"] <= 0.5 for r in rows)
    ok = inside >= 2 and narrow
    print(
        f"\nthe time left inside the range {inside} of {len(rows)} times (target: at least 2); "
        f"every range at most ±50% wide: {'yes' if narrow else 'NO'} -> {'OK' if ok else 'MISS'}"
    )
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
