"""`backfill-kit export airflow`: a plan as one DAG file, and what to do with it.

The skip settings are checked here by the runner's own check (`check_skip_settings`, against
the spec as it is now); the file written is read back as Airflow will read it, so a file that
would fail to import is never written.
"""

from __future__ import annotations

import pprint
import re
import shlex
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from backfill_kit.engines.airflow.document import (
    Backfill,
    CloudRun,
    document_for,
    read_document,
    safe_name,
)
from backfill_kit.errors import InputError
from backfill_kit.plan import PYTHON, Plan
from backfill_kit.running.runner import check_skip_settings

__all__ = [
    "Exported",
    "cloud_run_jobs",
    "default_dag_id",
    "export_audit",
    "export_backfill",
    "pool_commands",
    "write_dag_file",
]

# Cloud Run names its jobs in lowercase letters, digits and hyphens, starting with a letter.
CLOUD_RUN_JOB = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Exported:
    path: Path
    backfill: Backfill

    def lines(self) -> list[str]:
        """What the person exporting must know: the pools to create, {python}, paths, commands."""
        b, plan = self.backfill, self.backfill.plan
        dag = b.dag_id
        out = [
            f"DAG file written to {self.path}: DAG {dag}, {len(plan.steps)} steps in {len(plan.stages)} stages, then validate",
            "",
            "Pools, one per phase at its worker cap (create them before the first run):",
            *(f"  {c}" for c in pool_commands(b)),
            "",
            f"Paths: the spec and the jobs' folders are read under {b.root} on every worker (--root to change).",
        ]
        if b.target == "local":
            python = b.python or "the Python that runs the Airflow task (the one with Airflow and backfill-kit)"
            out.append(f"{PYTHON} in the steps' commands is {python}; every worker needs the jobs' own packages there.")
        else:
            out += _cloud_run_notes()
        out += [
            "",
            "Run it (by hand; one run at a time):",
            f"  airflow dags unpause {dag}",
            f"  airflow dags trigger {dag}",
            "Resume after a failure: clear the failed tasks; what succeeded is not run again:",
            f"  airflow tasks clear {dag} --only-failed --downstream --yes",
            "The last task runs backfill-kit validate over the plan's range: the run succeeds only if every step did and it exits 0.",
        ]
        return out


def _cloud_run_notes() -> list[str]:
    return [
        "Cloud Run: each step is an execution of its table's job, its args overridden (the job's entrypoint",
        "stands for the command's first word), the skip settings and the step's time limit kept.",
        "What this target cannot do: tell transient exit codes apart. The operator sees only that an execution",
        "failed, never its exit code, so no failure is retried (Cloud Run's own task retries retry any failure).",
        "To keep them, export with --target local and make the job's command one whose exit code is the job's,",
        "e.g. the job's own process on the worker; `gcloud run jobs execute JOB --wait` as a command there",
        "waits for the execution, but exits 1 for any failed one, so its transient codes are lost there too.",
    ]


def pool_commands(backfill: Backfill) -> list[str]:
    return [
        shlex.join(["airflow", "pools", "set", p.name, str(p.slots), p.description]) for p in backfill.pools.values()
    ]


def default_dag_id(plan: Plan, plan_path: Path) -> str:
    return safe_name(f"backfill_{plan.spec_name}_{plan_path.stem}")


def cloud_run_jobs(plan: Plan, template: str) -> dict[str, str]:
    """Each table's Cloud Run Job: the template's {id}, {table} and {processor} filled, written
    as Cloud Run names jobs (lowercase, '_' and '.' as '-')."""
    from backfill_kit.spec.load import load_spec

    spec = load_spec(plan.spec_path)
    jobs = {}
    for table in sorted({s.table for s in plan.steps}):
        t = spec.table(table)
        try:
            name = template.format(id=t.id, table=t.table, processor=t.processor)
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(
                f"--job-name {template!r}: {exc}; its placeholders are {{id}}, {{table}}, {{processor}}"
            ) from None
        name = re.sub(r"[_.]", "-", name.lower())
        if not CLOUD_RUN_JOB.fullmatch(name):
            raise InputError(
                f"--job-name {template!r} gives {name!r} for table {table}: not a Cloud Run job name "
                "(lowercase letters, digits and hyphens, starting with a letter, at most 63)"
            )
        jobs[table] = name
    return jobs


def export_backfill(
    plan: Plan,
    plan_path: Path,
    out: Path,
    *,
    dag_id: str | None = None,
    root: str | None = None,
    python: str | None = None,
    keep_going: bool = False,
    allow_downstream_triggers: bool = False,
    cloud_run: CloudRun | None = None,
) -> Exported:
    check_skip_settings(plan, allow_triggers=allow_downstream_triggers)  # the runner's own check
    if not plan.spec_path:
        raise InputError(
            f"{plan_path}: a plan made without a spec cannot be exported: its verdict runs validate on the spec"
        )
    from backfill_kit.spec.load import load_spec

    if cloud_run is not None:
        _refuse_python_args(plan)
    data = document_for(
        plan,
        plan_path,
        load_spec(plan.spec_path),
        dag_id=dag_id or default_dag_id(plan, plan_path),
        root=root,
        python=python,
        target="cloud_run" if cloud_run else "local",
        keep_going=keep_going,
        allow_downstream_triggers=allow_downstream_triggers,
        cloud_run=cloud_run,
    )
    backfill = read_document(data, out)  # as Airflow will read it
    write_dag_file(out, dag_file_text(data, backfill, plan_path))
    return Exported(out, backfill)


def _refuse_python_args(plan: Plan) -> None:
    for step in plan.steps:
        if PYTHON in step.argv[1:]:
            raise InputError(
                f"step {step.id}: {PYTHON} past the command's first word has no meaning in a Cloud Run Job"
            )


def dag_file_text(data: dict[str, Any], backfill: Backfill, plan_path: Path) -> str:
    plan = backfill.plan
    header = [
        f"Backfill of {plan.spec_name}, {plan.start} .. {plan.end}: {len(plan.steps)} steps in {len(plan.stages)} stages.",
        "",
        f"Exported by backfill-kit from the plan {plan_path.name} ({backfill.target} target). The plan's steps are",
        "below as data: each stage's steps, then a barrier; each phase's worker cap is its pool; the last task",
        "runs `backfill-kit validate` over the range and decides the run's state. Loading this file checks",
        "that every step still carries its table's skip_downstream settings, and each task checks again",
        "before it starts. Do not edit the steps: make a new plan and export it again.",
        "",
        f"Run: airflow dags trigger {backfill.dag_id}",
        f"Resume: airflow tasks clear {backfill.dag_id} --only-failed --downstream --yes",
    ]
    return (
        '"""' + "\n".join(header) + '\n"""\n\n'
        "from backfill_kit.engines.airflow.dag import backfill_dag\n\n"
        f"BACKFILL = {pprint.pformat(data, width=110, sort_dicts=False)}\n\n"
        "dag = backfill_dag(BACKFILL, __file__)\n"
    )


def write_dag_file(out: Path, text: str) -> None:
    """Whole or not at all: Airflow parses its folder at any moment, and must never see half a
    file (the temporary one does not end in .py, so Airflow passes it by)."""
    from backfill_kit.common.outputs import write_output

    write_output(out, text, what="the DAG file", hint="choose another --out")


def export_audit(
    spec_path: Path,
    start: date,
    end: date,
    out: Path,
    *,
    schedule: str,
    reports: str = "reports",
    root: str | None = None,
    dag_id: str | None = None,
) -> list[str]:
    """The scheduled coverage audit as a DAG file; what to do with it."""
    from backfill_kit.engines.airflow.audit import audit_document, read_audit
    from backfill_kit.spec.load import load_spec
    from backfill_kit.validation.validator import check_range

    check_range(start, end)
    spec = load_spec(spec_path)
    folder = spec_path.resolve().parent
    data = audit_document(
        dag_id=dag_id or safe_name(f"coverage_audit_{spec.name}_{start}_{end}"),
        schedule=schedule,
        root=Path(root) if root else folder,
        spec=spec_path.name,
        start=start,
        end=end,
        reports=reports,
    )
    audit = read_audit(data, out)
    text = (
        f'"""Coverage audit of {spec.name}, {start} .. {end}, on the schedule {schedule!r}.\n\n'
        "Exported by backfill-kit: each run renders `backfill-kit report coverage` into the reports folder\n"
        "(and its index.html); each report says what changed since the previous one of this range, and the\n"
        'task fails when a cell that was complete is no longer.\n"""\n\n'
        "from backfill_kit.engines.airflow.audit import audit_dag\n\n"
        f"AUDIT = {pprint.pformat(data, width=110, sort_dicts=False)}\n\n"
        "dag = audit_dag(AUDIT, __file__)\n"
    )
    write_dag_file(out, text)
    return [
        f"DAG file written to {out}: DAG {audit.dag_id}, backfill-kit report coverage on {schedule!r}",
        f"Reports go to {audit.path(audit.reports)} with their index.html; the spec is read as {audit.path(audit.spec)}.",
        "Each report compares itself with the previous one of this pipeline and range; the task fails when a",
        "cell that was complete is no longer. The workers need backfill-kit[notebooks] (papermill, a python3 kernel).",
        f"Start it: airflow dags unpause {audit.dag_id}",
    ]
