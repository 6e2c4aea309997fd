"""The DAG an exported file declares, built from its document when Airflow parses the file.

One DAG per plan, triggered by hand, one run at a time. Each stage's steps, then a barrier
that opens only when all of them succeeded (with keep_going: when all are done, and a step
waits instead on the steps it reads from); each step takes a slot of its phase's pool; the
last task, `validate`, runs whatever happened before it and decides the run's state.
Reading the document checks it first: a file whose steps lost their skip settings raises,
so Airflow lists it among its import errors and runs none of it.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path
from typing import Any

from backfill_kit.engines.airflow import tasks
from backfill_kit.engines.airflow.compat import airflow_names
from backfill_kit.engines.airflow.document import Backfill, read_document, task_id
from backfill_kit.plan import Step
from backfill_kit.running.runner import RunOptions

__all__ = ["VERDICT", "backfill_dag", "execution_timeout"]

VERDICT = "validate"
TIMEOUT_MARGIN_SECONDS = 60  # Airflow's own limit, past the runner's: only if the task hangs


def backfill_dag(data: dict[str, Any], source: str) -> Any:
    """The DAG of the document `data`, declared in the file `source`."""
    backfill = read_document(data, Path(source))
    names = airflow_names()
    plan = backfill.plan
    dag = names.DAG(
        dag_id=backfill.dag_id,
        description=f"backfill of {plan.spec_name}, {plan.start} .. {plan.end}: {len(plan.steps)} steps in {len(plan.stages)} stages",
        schedule=None,  # by hand only
        start_date=plan.created_at,
        catchup=False,
        max_active_runs=1,
        tags=["backfill-kit"],
        doc_md=_doc(backfill),
    )
    with dag:
        barrier: Any = None
        made: dict[str, Any] = {}
        for stage in plan.stages:
            done = names.EmptyOperator(
                task_id=f"stage_{stage.index:02d}_{stage.phase}_done",
                trigger_rule="all_done" if backfill.keep_going else "all_success",
            )
            for step in stage.steps:
                made[step.id] = task = _step_task(backfill, step)
                if barrier is not None:
                    barrier >> task
                task >> done
                if backfill.keep_going:  # a failure reaches only what reads from it
                    for upstream in step.after:
                        made[upstream] >> task
            barrier = done
        check = names.PythonOperator(
            task_id=VERDICT, python_callable=functools.partial(tasks.verdict, backfill), trigger_rule="all_done"
        )
        if barrier is not None:
            barrier >> check
    return dag


def execution_timeout(step: Step) -> timedelta:
    """Airflow's limit on a task: the step's own, with the runner's grace to stop it, and a margin."""
    return timedelta(seconds=step.timeout_seconds + RunOptions().kill_grace_seconds + TIMEOUT_MARGIN_SECONDS)


def _retry_settings(step: Step) -> dict[str, Any]:
    """Retries only where a transient exit code can ask for them; the runner's backoff."""
    if not step.transient_exit_codes or not step.retries:
        return {"retries": 0}
    return {
        "retries": step.retries,
        "retry_delay": timedelta(seconds=RunOptions().backoff_seconds),
        "retry_exponential_backoff": airflow_names().exponential_backoff,
    }


def _step_task(backfill: Backfill, step: Step) -> Any:
    common = {
        "task_id": task_id(step),
        "pool": backfill.pools[step.phase].name,
        "execution_timeout": execution_timeout(step),
        "doc_md": f"`{step.command}`\n\n{len(step.dates)} dates: {step.start} .. {step.end}",
    }
    if backfill.target == "cloud_run":
        return _cloud_run_task(backfill, step, common)
    return airflow_names().PythonOperator(
        python_callable=functools.partial(tasks.run_step, backfill, step.id), **common, **_retry_settings(step)
    )


def _cloud_run_task(backfill: Backfill, step: Step, common: dict[str, Any]) -> Any:
    """The step as an execution of its table's Cloud Run Job: the job's entrypoint stands for
    argv[0], the args override is the rest, the skip settings with it. The operator sees only
    whether the execution failed, never the exit code, so no failure is retried here."""
    from airflow.providers.google.cloud.operators.cloud_run import CloudRunExecuteJobOperator

    cloud = backfill.cloud_run
    assert cloud is not None  # read_document refuses a cloud_run target without it
    return CloudRunExecuteJobOperator(
        project_id=cloud.project,
        region=cloud.region,
        job_name=cloud.jobs[step.table],
        overrides=cloud_run_overrides(step),
        deferrable=False,
        retries=0,
        pre_execute=functools.partial(tasks.check_cloud_run_task, backfill, step.id),
        **common,
    )


def cloud_run_overrides(step: Step) -> dict[str, Any]:
    env = [{"name": k, "value": v} for k, v in sorted(step.env.items())]
    return {
        "container_overrides": [{"args": list(step.argv[1:]), "env": env}],
        "task_count": 1,
        "timeout": f"{int(step.timeout_seconds)}s",
    }


def _doc(backfill: Backfill) -> str:
    plan = backfill.plan
    pools = ", ".join(f"`{p.name}` ({p.slots})" for p in backfill.pools.values())
    return (
        f"Backfill of **{plan.spec_name}**, {plan.start} .. {plan.end}, exported by backfill-kit from "
        f"`{backfill.source.name}`'s plan. Stages run in order; pools: {pools}. The last task runs "
        "`backfill-kit validate` over the range and decides the run's state. To resume after a failure, "
        "clear the failed tasks (with their downstream): what succeeded is not run again."
    )
