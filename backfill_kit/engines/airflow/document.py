"""The data an exported DAG file holds, and its checks: no Airflow import, so the export, the
DAG file at parse and the tests read it alike.

The document is the plan as its file holds it (paths relative to the plan's folder, the
interpreter as {python}), and beside it what the DAG needs: where that folder is on the
workers (`root`), the skip settings the spec declared for each table at export, each phase's
pool, the target. Reading it checks the plan field by field, as `load_plan` does, and then
that every step still carries its table's skip settings: a file that lost a flag does not load.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from backfill_kit.errors import InputError
from backfill_kit.plan import PYTHON, Plan, Step, plan_from_data
from backfill_kit.running.runner import skip_problem
from backfill_kit.spec.model import PipelineSpec, SkipDownstream

__all__ = [
    "DOCUMENT_FORMAT",
    "TARGETS",
    "Backfill",
    "CloudRun",
    "Pool",
    "document_for",
    "pools_for",
    "read_document",
    "task_id",
]

DOCUMENT_FORMAT = 1
TARGETS = ("local", "cloud_run")
EXPORT_AGAIN = "export the plan again (backfill-kit export airflow); do not edit the DAG file's steps"


@dataclass(frozen=True)
class Pool:
    """A phase's worker cap, as the Airflow pool its steps take their slots from."""

    name: str
    slots: int
    description: str


@dataclass(frozen=True)
class CloudRun:
    """Each step as an execution of its table's Cloud Run Job, its args overridden."""

    project: str
    region: str
    jobs: dict[str, str]  # table id -> Cloud Run Job name


@dataclass(frozen=True)
class Backfill:
    """A DAG file's document, read and checked."""

    dag_id: str
    source: Path  # the DAG file, for messages
    plan: Plan  # paths absolute under `root`; {python} kept for the worker to fill
    root: Path
    python: str | None  # {python} on a worker; None: the interpreter the task runs in
    target: str
    keep_going: bool
    allow_downstream_triggers: bool
    skip_downstream: dict[str, SkipDownstream | None]
    pools: dict[str, Pool]  # phase -> its pool
    cloud_run: CloudRun | None = None

    def step(self, step_id: str) -> Step:
        found = next((s for s in self.plan.steps if s.id == step_id), None)
        if found is None:
            raise InputError(f"{self.source}: no step {step_id!r} in this DAG file; {EXPORT_AGAIN}")
        return found

    def runnable(self, step: Step) -> Step:
        """The step as a worker runs it: {python} is `python`, else the interpreter running the
        task (the one with Airflow and backfill-kit), as `run --plan` fills it with its own."""
        python = self.python or sys.executable
        return replace(step, argv=tuple(python if a == PYTHON else a for a in step.argv))


def task_id(step: Step) -> str:
    """An Airflow task id for a step (letters, digits, '_', '-', '.'): its table and dates."""
    return f"{step.table}.{step.start}.{step.end}"


def safe_name(text: str) -> str:
    """Text as Airflow ids and pool names take it."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "backfill"


def pools_for(plan: Plan) -> dict[str, Pool]:
    """One pool per phase, its slots the phase's worker cap (a sequential phase: one)."""
    pools: dict[str, Pool] = {}
    for stage in plan.stages:
        slots = max(stage.workers, pools[stage.phase].slots if stage.phase in pools else 0)
        how = "one step at a time" if slots == 1 else f"at most {slots} steps at once"
        pools[stage.phase] = Pool(
            f"backfill_{safe_name(plan.spec_name)}_{safe_name(stage.phase)}",
            slots,
            f"{plan.spec_name} {stage.phase}: {how}",
        )
    return pools


def document_for(
    plan: Plan,
    plan_path: Path,
    spec: PipelineSpec,
    *,
    dag_id: str,
    root: str | None = None,
    python: str | None = None,
    target: str = "local",
    keep_going: bool = False,
    allow_downstream_triggers: bool = False,
    cloud_run: CloudRun | None = None,
) -> dict[str, Any]:
    """What the DAG file embeds: the plan file's data, and the skip settings its spec declares now."""
    base = plan_path.resolve().parent
    tables = sorted({s.table for s in plan.steps})
    skip = {t: _skip_data(spec.job_of(spec.table(t)).skip_downstream) for t in tables}
    return {
        "format": DOCUMENT_FORMAT,
        "dag_id": dag_id,
        "target": target,
        "root": root or str(base),
        "python": python,
        "keep_going": keep_going,
        "allow_downstream_triggers": allow_downstream_triggers,
        "skip_downstream": skip,
        "pools": {phase: vars(pool) for phase, pool in pools_for(plan).items()},
        "cloud_run": vars(cloud_run) if cloud_run else None,
        "plan": plan.to_dict(base),
    }


def _skip_data(skip: SkipDownstream | None) -> dict[str, Any] | None:
    return None if skip is None else {"args": list(skip.args), "env": dict(skip.env)}


# --- reading it back: at export (a round trip), at parse, in every task ----------------------


def read_document(data: Any, source: Path) -> Backfill:
    """The document checked: its plan as a plan file is checked, then every step against the
    skip settings declared beside it. Any problem is one InputError naming the DAG file."""
    if not isinstance(data, dict) or data.get("format") != DOCUMENT_FORMAT:
        raise InputError(
            f"{source}: not a DAG file exported by backfill-kit (format {DOCUMENT_FORMAT}); {EXPORT_AGAIN}"
        )
    try:
        root = Path(str(data["root"]))
        plan = plan_from_data(data["plan"], source, root, python=PYTHON)
        backfill = Backfill(
            dag_id=str(data["dag_id"]),
            source=source,
            plan=plan,
            root=root,
            python=data["python"],
            target=str(data["target"]),
            keep_going=bool(data["keep_going"]),
            allow_downstream_triggers=bool(data["allow_downstream_triggers"]),
            skip_downstream={str(t): _skip_of(v) for t, v in data["skip_downstream"].items()},
            pools={str(phase): Pool(**pool) for phase, pool in data["pools"].items()},
            cloud_run=CloudRun(**data["cloud_run"]) if data["cloud_run"] else None,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(
            f"{source}: a DAG file's data is damaged ({type(exc).__name__}: {exc}); {EXPORT_AGAIN}"
        ) from None
    _refuse(source, list(_target_problems(backfill)), "its data is not what backfill-kit exported")
    _refuse(source, skip_problems(backfill, plan.steps), SKIP_REFUSAL)
    return backfill


def _skip_of(value: Any) -> SkipDownstream | None:
    return None if value is None else SkipDownstream(args=tuple(value["args"]), env=dict(value["env"]))


def _target_problems(backfill: Backfill) -> Iterator[str]:
    if backfill.target not in TARGETS:
        yield f"target is {backfill.target!r}, expected one of {', '.join(TARGETS)}"
    for phase in {s.phase for s in backfill.plan.steps} - set(backfill.pools):
        yield f"phase {phase!r} has no pool"
    if backfill.target == "cloud_run":
        jobs = backfill.cloud_run.jobs if backfill.cloud_run else {}
        yield from (
            f"table {t!r} has no Cloud Run Job" for t in sorted({s.table for s in backfill.plan.steps} - set(jobs))
        )


def skip_problems(backfill: Backfill, steps: Iterable[Step]) -> list[str]:
    """The runner's own rule (`skip_problem`), against the settings the spec declared at export."""
    declared = backfill.skip_downstream
    problems = []
    for step in steps:
        if step.table not in declared:
            problems.append(f"{step.id}: no skip_downstream setting is recorded for table {step.table!r}")
        elif declared[step.table] is None and not backfill.allow_downstream_triggers:
            problems.append(f"{step.id}: its job declares no skip_downstream setting")
        elif problem := skip_problem(declared, step):
            problems.append(problem)
    return problems


SKIP_REFUSAL = "its steps lost the skip_downstream settings that keep downstream automation quiet"


def _refuse(source: Path, problems: list[str], why: str) -> None:
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InputError(f"{source}: refused: {why}:\n{shown}{more}\nNothing of it runs; {EXPORT_AGAIN}.")


def check_argv(backfill: Backfill, step: Step, argv: Iterable[str], env: Mapping[str, str]) -> None:
    """The check at task start, on what is about to be run (for Cloud Run: the entrypoint and
    the args override); a step that lost its settings refuses to run."""
    _refuse(backfill.source, skip_problems(backfill, [replace(step, argv=tuple(argv), env=dict(env))]), SKIP_REFUSAL)
