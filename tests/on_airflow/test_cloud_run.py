"""The Cloud Run target: each step an execution of its table's Cloud Run Job, its args
overridden with the skip flag kept; parsed with the Google provider installed (.venv-airflow-3).
Nothing reaches Google: only parsing and the check before a task starts are exercised."""

from __future__ import annotations

import ast

import pytest
from conftest import DAGS, load_dag, plan_and_export

from backfill_kit.engines.airflow.document import read_document
from backfill_kit.engines.airflow.tasks import check_cloud_run_task

cloud_run = pytest.importorskip(
    "airflow.providers.google.cloud.operators.cloud_run", reason="the Google provider is in .venv-airflow-3 only"
)

SKIP = "--skip-downstream-trigger"
TARGET = (
    "--target",
    "cloud-run",
    "--project",
    "nba-props-platform",
    "--region",
    "us-west2",
    "--job-name",
    "{id}-backfill",
)


def test_every_cloud_run_task_keeps_the_skip_flag_and_the_time_limit(demo):
    printed = plan_and_export(demo, *TARGET)
    assert "What this target cannot do: tell transient exit codes apart" in printed
    dag = load_dag()
    steps = [t for t in dag.tasks if t.task_id.count(".") == 2]
    assert len(steps) == 14
    for task in steps:
        assert isinstance(task, cloud_run.CloudRunExecuteJobOperator)
        (container,) = task.overrides["container_overrides"]
        table = task.task_id.split(".")[0]
        # The job's entrypoint stands for `python`; the args are the rest, the flag among them.
        assert container["args"][:4] == ["-m", "backfill_kit.demo.job", table, "--warehouse"]
        assert container["args"][-1] == SKIP
        assert task.job_name == table.replace("_", "-") + "-backfill"
        assert (task.project_id, task.region) == ("nba-props-platform", "us-west2")
        assert task.overrides["timeout"] == "600s" and task.retries == 0


def test_a_cloud_run_task_whose_override_lost_its_flag_refuses_to_start(demo):
    plan_and_export(demo, *TARGET)
    dag = load_dag()
    task = dag.get_task("nbac_team_boxscore.2021-10-19.2021-11-01")
    tree = ast.parse((DAGS / "backfill.py").read_text())
    data = next(
        ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "BACKFILL"
    )
    backfill = read_document(data, DAGS / "backfill.py")
    check_cloud_run_task(backfill, "nbac_team_boxscore:2021-10-19..2021-11-01", {"task": task})  # as exported: fine
    task.overrides["container_overrides"][0]["args"].remove(SKIP)
    with pytest.raises(Exception, match=f"its argv lacks {SKIP}") as refused:
        check_cloud_run_task(backfill, "nbac_team_boxscore:2021-10-19..2021-11-01", {"task": task})
    assert type(refused.value).__name__ == "AirflowFailException"  # never retried
