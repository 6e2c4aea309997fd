"""An Airflow run written as a runner journal, so that `monitor` and the execution report read
it as they read a local run's: one reader of runs, whatever engine ran the steps.

Each step's task becomes its events (started at the task's start, finished with its outcome in
the journal's words, its try number as the attempt), each stage's barrier its stage's end, the
run's end its end. The first event names the engine (`engine: airflow`, the URL, the DAG and
run ids): while that run is running, its journal reads as a runner at work.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backfill_kit.common.outputs import write_output
from backfill_kit.engines.airflow.rest import OUTCOMES, AirflowRun, TaskState
from backfill_kit.plan import Plan, Stage, Step

__all__ = ["ENGINE", "airflow_journal", "journal_events", "journal_path_for_run"]

ENGINE = "airflow"
FINISHED_RUN = {"success": "completed", "failed": "failed"}


def journal_path_for_run(plan_path: Path) -> Path:
    """Beside the plan, apart from the local runner's own journal."""
    return plan_path.with_name(plan_path.stem + ".airflow.journal.jsonl")


def airflow_journal(run: AirflowRun, plan: Plan, plan_path: Path, out: Path | None = None) -> Path:
    """Write the run's journal (replacing the one written at the previous look); its path."""
    path = out or journal_path_for_run(plan_path)
    lines = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in journal_events(run, plan, plan_path))
    write_output(path, lines, what="the Airflow run's journal", hint="give a plan in a folder you can write")
    return path


def journal_events(run: AirflowRun, plan: Plan, plan_path: Path) -> list[dict[str, Any]]:
    tasks = run.of_steps(plan.steps)
    moments = [t.start for t in run.tasks.values() if t.start]
    first = min(moments) if moments else datetime.now(UTC)
    events = [
        _event(
            "run_started",
            first,
            plan=str(plan_path),
            plan_sha=plan.sha or "",
            steps=len(plan.steps),
            engine=ENGINE,
            url=run.url,
            dag_id=run.dag_id,
            run_id=run.run_id,
        )
    ]
    for stage in plan.stages:
        events += list(_stage(run, stage, tasks))
    if run.state in FINISHED_RUN:
        ends = [t.end for t in run.tasks.values() if t.end]
        events.append(_event("run_finished", max(ends) if ends else first, outcome=FINISHED_RUN[run.state]))
    return sorted(events, key=lambda e: (e["time"], _ORDER.get(e["event"], 9)))


_ORDER = {
    "run_started": 0,
    "stage_started": 1,
    "step_started": 2,
    "step_finished": 3,
    "stage_finished": 4,
    "run_finished": 5,
}


def _stage(run: AirflowRun, stage: Stage, tasks: dict[str, TaskState]) -> Iterator[dict[str, Any]]:
    mine = [(s, tasks[s.id]) for s in stage.steps if s.id in tasks]
    starts = [t.start for _, t in mine if t.start]
    if not starts:
        return
    yield _event(
        "stage_started", min(starts), stage=stage.index, phase=stage.phase, mode=stage.mode, workers=stage.workers
    )
    for step, task in mine:
        yield from _step(step, task)
    barrier = run.tasks.get(f"stage_{stage.index:02d}_{stage.phase}_done")
    if barrier is not None and barrier.state in ("success", "upstream_failed", "failed") and barrier.end:
        yield _event("stage_finished", barrier.end, stage=stage.index, ok=barrier.state == "success")


def _step(step: Step, task: TaskState) -> Iterator[dict[str, Any]]:
    outcome = OUTCOMES.get(task.state or "")
    attempt = max(1, task.try_number)
    if task.start:
        yield _event("step_started", task.start, step=step.id, table=step.table, attempt=attempt, dates=len(step.dates))
    if outcome in ("succeeded", "failed", "skipped") and (task.end or task.start):
        moment = task.end or task.start
        assert moment is not None
        seconds = (task.end - task.start).total_seconds() if task.end and task.start else 0.0
        extra = {"reason": "an upstream task did not succeed"} if outcome == "skipped" else {}
        yield _event(
            "step_finished",
            moment,
            step=step.id,
            table=step.table,
            attempt=attempt,
            outcome=outcome,
            seconds=round(seconds, 3),
            retries=attempt - 1,
            **extra,
        )


def _event(kind: str, moment: datetime, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "time": moment.astimezone(UTC).isoformat(timespec="milliseconds"), **fields}
