"""The scheduled coverage audit as an Airflow DAG: `backfill-kit report coverage` over one
pipeline and range on a cron schedule, into a reports folder whose index it keeps.

Each report says what changed since the previous one of the same pipeline and range (new gaps,
cells fixed, cells that were complete and are no longer); the task fails on the last kind, so
an expired partition is an alert, not a line nobody reads. The comparison is the package's
(`reports.changes`): the DAG only schedules the command.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from backfill_kit.engines.airflow.compat import airflow_names
from backfill_kit.errors import InputError

__all__ = ["AUDIT_FORMAT", "Audit", "audit_dag", "audit_document", "check_schedule", "read_audit", "run_audit"]

AUDIT_FORMAT = 1
TASK = "coverage_report"
PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly")


@dataclass(frozen=True)
class Audit:
    dag_id: str
    schedule: str
    root: Path  # the spec's folder as the workers see it
    spec: str  # relative to root, or absolute
    start: date
    end: date
    reports: str  # relative to root, or absolute

    def path(self, value: str) -> Path:
        return self.root / value  # an absolute value stays itself

    def report_args(self) -> list[str]:
        return [
            "report",
            "coverage",
            "--spec",
            str(self.path(self.spec)),
            "--start",
            str(self.start),
            "--end",
            str(self.end),
            "--out-dir",
            str(self.path(self.reports)),
            "--fail-if-no-longer-complete",
        ]


def check_schedule(schedule: str) -> str:
    """A cron line of five fields, or one of Airflow's presets."""
    if schedule in PRESETS or (len(schedule.split()) == 5 and re.fullmatch(r"[0-9*/,\- A-Za-z]+", schedule)):
        return schedule
    raise InputError(
        f"--schedule {schedule!r}: give a cron line of five fields (e.g. '15 6 * * *') or one of {', '.join(PRESETS)}"
    )


def audit_document(
    *, dag_id: str, schedule: str, root: Path, spec: str, start: date, end: date, reports: str
) -> dict[str, Any]:
    return {
        "format": AUDIT_FORMAT,
        "kind": "coverage_audit",
        "dag_id": dag_id,
        "schedule": check_schedule(schedule),
        "root": str(root),
        "spec": spec,
        "start": str(start),
        "end": str(end),
        "reports": reports,
    }


def read_audit(data: Any, source: Path) -> Audit:
    if not isinstance(data, dict) or data.get("format") != AUDIT_FORMAT or data.get("kind") != "coverage_audit":
        raise InputError(
            f"{source}: not an audit DAG file exported by backfill-kit; export it again (backfill-kit export airflow-audit)"
        )
    try:
        return Audit(
            str(data["dag_id"]),
            check_schedule(str(data["schedule"])),
            Path(str(data["root"])),
            str(data["spec"]),
            date.fromisoformat(str(data["start"])),
            date.fromisoformat(str(data["end"])),
            str(data["reports"]),
        )
    except (KeyError, ValueError) as exc:
        raise InputError(f"{source}: an audit DAG file's data is damaged ({exc}); export it again") from None


def audit_dag(data: dict[str, Any], source: str) -> Any:
    audit = read_audit(data, Path(source))
    names = airflow_names()
    dag = names.DAG(
        dag_id=audit.dag_id,
        description=f"coverage audit of {audit.spec}, {audit.start} .. {audit.end}, on {audit.schedule}",
        schedule=audit.schedule,
        start_date=datetime(2020, 1, 1, tzinfo=UTC),
        catchup=False,  # a missed slot is not made up: the next report compares with the last one
        max_active_runs=1,
        tags=["backfill-kit"],
    )
    with dag:
        names.PythonOperator(task_id=TASK, python_callable=functools.partial(run_audit, audit), retries=0)
    return dag


def run_audit(audit: Audit, **context: Any) -> None:
    from backfill_kit.engines.airflow.tasks import toolkit

    code = toolkit(audit.report_args())
    if code == 1:
        raise airflow_names().AirflowFailException(
            "cells that were complete in the previous report are no longer (see the report's 'Since the previous report')"
        )
    if code != 0:
        raise airflow_names().AirflowFailException(f"backfill-kit report coverage exited {code}")
