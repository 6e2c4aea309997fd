"""The runner as `backfill-kit run` runs it (re-checks in the plan's warehouse, dependents
narrowed), less the preflight: `python run_plan.py PLAN [--resume]`, in a process of its own
that a test can kill at any moment."""

from __future__ import annotations

import sys
from pathlib import Path

from backfill_kit.errors import BackfillKitError
from backfill_kit.plan import load_plan
from backfill_kit.running.runner import Runner, RunOptions, step_narrower, warehouse_checker

path = Path(sys.argv[1])
try:
    plan = load_plan(path)
    options = RunOptions(resume="--resume" in sys.argv, kill_grace_seconds=1)
    result = Runner(plan, path, options, checker=warehouse_checker(plan), narrower=step_narrower(plan)).run()
except BackfillKitError as exc:
    print(exc, file=sys.stderr)
    sys.exit(exc.exit_code)
sys.exit(result.exit_code)
