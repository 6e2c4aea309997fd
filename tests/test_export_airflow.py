"""`backfill-kit export airflow` without Airflow: what it refuses, what it writes and says, and
the checks its DAG file runs at parse (the document's), here in this process. Airflow itself
parses and runs the files in tests/on_airflow/ (test_on_airflow_2.py and _3.py)."""

from __future__ import annotations

import ast
import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MiniWarehouse

from backfill_kit.cli.commands import cli
from backfill_kit.engines.airflow.document import read_document
from backfill_kit.engines.airflow.tasks import verdict_problems
from backfill_kit.errors import InputError

D1 = date(2024, 1, 10)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def plan_file(mini: MiniWarehouse, tmp_path: Path) -> Path:
    for d in (D1, date(2024, 1, 11)):
        mini.games(d, 2)
    spec = mini.close()
    out = tmp_path / "runs" / "plan.json"
    assert (
        invoke("plan", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", "--out", str(out)).exit_code
        == 0
    )
    return out


def document(dag_file: Path) -> dict:
    """The BACKFILL literal of a DAG file, read without running the file."""
    tree = ast.parse(dag_file.read_text())
    value = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "BACKFILL")
    return ast.literal_eval(value)


def test_export_writes_a_dag_file_and_says_how_to_run_and_resume_it(plan_file, tmp_path):
    out = tmp_path / "dags" / "mini.py"
    result = invoke("export", "airflow", "--plan", str(plan_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "airflow pools set backfill_mini_raw 1 'mini raw: one step at a time'" in result.output
    assert "{python} in the steps' commands is the Python that runs the Airflow task" in result.output
    assert "airflow tasks clear backfill_mini_plan --only-failed --downstream --yes" in result.output
    data = document(out)
    steps = [s for st in data["plan"]["stages"] for s in st["steps"]]
    assert steps and all(s["argv"][0] == "{python}" and s["argv"][-1] == "--no-trigger" for s in steps)
    assert data["skip_downstream"]["boxscore"] == {"args": ["--no-trigger"], "env": {}}
    assert data["plan"] == json.loads(plan_file.read_text()) | {"totals": data["plan"]["totals"]}
    read_document(data, out)  # as the DAG file reads itself at parse


def test_a_plan_whose_command_lost_its_flag_is_refused_at_export(plan_file, tmp_path):
    data = json.loads(plan_file.read_text())
    data["stages"][0]["steps"][0]["argv"].remove("--no-trigger")
    plan_file.write_text(json.dumps(data))
    out = tmp_path / "dags" / "mini.py"
    result = invoke("export", "airflow", "--plan", str(plan_file), "--out", str(out))
    assert result.exit_code == 2
    assert "its argv lacks --no-trigger" in result.output and "Nothing was started" in result.output
    assert not out.exists()


def test_a_job_without_skip_settings_is_refused_unless_allowed(mini, tmp_path):
    mini.spec_path.write_text(mini.spec_text.replace('  skip_downstream: {args: ["--no-trigger"]}\n', ""))
    mini.games(D1, 2)
    spec = mini.close()
    plan = tmp_path / "plan.json"
    invoke("plan", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", "--out", str(plan))
    out = tmp_path / "dag.py"
    refused = invoke("export", "airflow", "--plan", str(plan), "--out", str(out))
    assert refused.exit_code == 2 and "declare no skip_downstream setting" in refused.output
    assert (
        invoke("export", "airflow", "--plan", str(plan), "--out", str(out), "--allow-downstream-triggers").exit_code
        == 0
    )
    assert document(out)["allow_downstream_triggers"] is True


def test_the_dag_file_refuses_to_load_a_step_that_lost_its_flag(plan_file, tmp_path):
    out = tmp_path / "dag.py"
    invoke("export", "airflow", "--plan", str(plan_file), "--out", str(out))
    data = document(out)
    data["plan"]["stages"][0]["steps"][1]["argv"].remove("--no-trigger")
    with pytest.raises(
        InputError,
        match=r"(?s)dag\.py: refused: its steps lost the skip_downstream settings.*its argv lacks --no-trigger.*do not edit the DAG file's steps",
    ):
        read_document(data, out)
    data = document(out)
    data["skip_downstream"]["boxscore"] = None  # its declaration dropped too: still refused
    with pytest.raises(InputError, match="its job declares no skip_downstream setting"):
        read_document(data, out)


def test_cloud_run_job_names_are_checked_at_export(plan_file, tmp_path):
    out = tmp_path / "dag.py"
    args = ["export", "airflow", "--plan", str(plan_file), "--out", str(out), "--target", "cloud-run"]
    assert "needs --project, --region, --job-name" in invoke(*args).output
    where = ["--project", "nba-props-platform", "--region", "us-west2"]
    bad = invoke(*args, *where, "--job-name", "{id}_backfill_{nope}")
    assert bad.exit_code == 2 and "its placeholders are {id}, {table}, {processor}" in bad.output
    ok = invoke(*args, *where, "--job-name", "{id}_backfill")
    assert ok.exit_code == 0, ok.output
    assert document(out)["cloud_run"]["jobs"]["boxscore"] == "boxscore-backfill"
    assert "cannot do: tell transient exit codes apart" in ok.output


def test_the_verdict_fails_a_run_that_went_on_past_a_failure(plan_file, tmp_path):
    out = tmp_path / "dag.py"
    invoke("export", "airflow", "--plan", str(plan_file), "--out", str(out))
    backfill = read_document(document(out), out)
    every = {s.id for s in backfill.plan.steps}
    assert verdict_problems(backfill, every, 0) == []
    one = sorted(every)[0]
    (problem,) = verdict_problems(backfill, every - {one}, 0)  # validate content, a step failed
    assert problem.startswith(f"1 of {len(every)} steps did not succeed in this run ({one})")
    assert verdict_problems(backfill, every, 1) == [
        "backfill-kit validate finds gaps left in the plan's range (exit 1)"
    ]


def test_an_airflow_run_reads_as_a_runner_journal(plan_file, tmp_path):
    """The REST reader's run, written as a journal: the journal's own reader counts its steps,
    and the monitor takes it for a runner at work until the run has finished."""
    from datetime import UTC, datetime, timedelta

    from backfill_kit.engines.airflow.document import task_id
    from backfill_kit.engines.airflow.journal import airflow_journal
    from backfill_kit.engines.airflow.rest import AirflowRun, TaskState
    from backfill_kit.monitor.snapshot import runner_position
    from backfill_kit.plan import load_plan

    plan = load_plan(plan_file)
    t0 = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)
    first, second, *rest = plan.steps
    states = [("success", first), ("failed", second)] + [("upstream_failed", s) for s in rest]
    tasks = {
        task_id(s): TaskState(
            task_id(s),
            state,
            1 if state != "upstream_failed" else 0,
            t0 + timedelta(seconds=i),
            t0 + timedelta(seconds=i + 1),
        )
        for i, (state, s) in enumerate(states)
    }
    running = AirflowRun("http://127.0.0.1:1", "backfill_mini_plan", "manual__1", "running", tasks)
    journal = airflow_journal(running, plan, plan_file)
    assert journal == plan_file.with_name("plan.airflow.journal.jsonl")
    position = runner_position(journal)
    assert position.working and position.problem is None
    assert (position.steps.succeeded, position.steps.failed, position.steps.skipped) == (1, 1, len(rest))
    finished = AirflowRun(running.url, running.dag_id, running.run_id, "failed", tasks)
    assert not runner_position(airflow_journal(finished, plan, plan_file)).working
