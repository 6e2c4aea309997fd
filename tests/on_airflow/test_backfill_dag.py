"""An exported plan as Airflow runs it: parsed with no import errors, run end to end on the
demo's real jobs with `dag.test()`, refusing what lost its skip settings, retrying only
transient exit codes, resumed by clearing the failed tasks."""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import duckdb
from conftest import DAGS, airflow, dag_bag, load_dag, plan_and_export, states, validate

from backfill_kit.demo.tables import TRIGGERS_TABLE
from backfill_kit.spec.load import load_spec

SKIP = "--skip-downstream-trigger"
FAULTS = "BACKFILL_KIT_DEMO_FAULTS"


def triggers(demo: Path) -> int:
    """Downstream triggers the demo jobs recorded: a job run without its skip flag writes one."""
    with duckdb.connect(str(demo / "nba_props.duckdb"), read_only=True) as con:
        return int(con.execute(f"SELECT count(*) FROM {TRIGGERS_TABLE}").fetchone()[0])


def step_tasks(dag: object) -> list[object]:
    return [t for t in dag.tasks if t.task_id.count(".") == 2]  # type: ignore[attr-defined]


def test_the_exported_dag_parses_with_its_stages_pools_and_verdict(demo):
    printed = plan_and_export(demo)
    dag = load_dag()
    spec = load_spec(demo / "nba_props.yaml")
    steps = step_tasks(dag)
    assert len(steps) == 14 and len(dag.tasks) == 14 + 7 + 1  # steps, a barrier per stage, validate
    assert dag.max_active_runs == 1
    # The pools the export prints are the phases' worker caps, and each step takes its phase's.
    caps = {f"backfill_nba_props_{p.name}": p.max_workers if p.mode == "parallel" else 1 for p in spec.phases}
    pools = {name: int(slots) for name, slots in re.findall(r"airflow pools set (\S+) (\d+)", printed)}
    assert (
        pools
        == caps
        == {"backfill_nba_props_raw": 4, "backfill_nba_props_analytics": 5, "backfill_nba_props_precompute": 1}
    )
    for task in steps:
        assert task.pool == f"backfill_nba_props_{spec.phase_of(task.task_id.split('.')[0]).name}"
    # Stage order: each stage's steps wait for the barrier of the one before; validate is last.
    verdict = dag.get_task("validate")
    assert verdict.trigger_rule == "all_done" and verdict.upstream_task_ids == {"stage_07_precompute_done"}
    assert dag.get_task("player_game_summary.2021-10-19.2021-11-05").upstream_task_ids == {"stage_01_raw_done"}


def test_the_demo_plan_runs_end_to_end_and_validate_agrees(demo):
    assert validate(demo).returncode == 1
    plan_and_export(demo)
    run = load_dag().test()
    assert str(run.state) == "success", states(run)
    assert all(state == "success" for state, _ in states(run).values())
    done = validate(demo)
    assert done.returncode == 0, done.stdout
    assert triggers(demo) == 0


def test_a_dag_file_that_lost_a_skip_flag_fails_to_import(demo):
    plan_and_export(demo)
    out = DAGS / "backfill.py"
    text = out.read_text()
    # One step's argv loses its flag; the table's declared setting stays.
    damaged = text.replace(f"'{SKIP}'],\n", "],\n", 1)
    assert damaged != text
    out.write_text(damaged)
    bag = dag_bag()
    assert "backfill" not in bag.dags
    (error,) = bag.import_errors.values()
    assert f"its argv lacks {SKIP}" in error and "do not edit the DAG file's steps" in error


def test_a_task_whose_spec_now_asks_more_refuses_to_start(demo, monkeypatch):
    """The spec gained a skip setting after the export: the file still loads (its steps carry
    what it recorded), but each task checks against the spec and refuses; no job runs."""
    plan_and_export(demo, tables=("nbac_team_boxscore",))
    spec = demo / "nba_props.yaml"
    tightened = spec.read_text().replace(
        'args: ["--skip-downstream-trigger"]\n', 'args: ["--skip-downstream-trigger"]\n    env: {QUIET: "1"}\n'
    )
    assert tightened != spec.read_text()
    spec.write_text(tightened)
    before = validate(demo).stdout
    run = load_dag().test()
    assert str(run.state) == "failed"
    assert states(run)["nbac_team_boxscore.2021-10-19.2021-11-01"] == ("failed", 1)  # never retried
    assert validate(demo).stdout.splitlines()[2:] == before.splitlines()[2:]  # nothing ran


def test_a_transient_exit_code_is_retried_and_another_is_not(demo, monkeypatch):
    spec = demo / "nba_props.yaml"
    spec.write_text(spec.read_text().replace("transient_exit_codes: [75]", "transient_exit_codes: [1, 75]"))
    # The demo job exits 1 when a date fails (transient here), 3 when it crashes (not).
    monkeypatch.setenv(FAULTS, "nbac_team_boxscore:fail=2021-10-20;odds_api_game_lines:crash-after=0")
    plan_and_export(demo, tables=("nbac_team_boxscore", "odds_api_game_lines"))
    run = load_dag().test()
    got = states(run)
    assert got["nbac_team_boxscore.2021-10-19.2021-11-01"] == ("failed", 3)  # retries: 2 in the spec
    assert got["odds_api_game_lines.2021-10-19.2021-11-01"] == ("failed", 1)
    assert str(run.state) == "failed"


def continue_run(dag: object, run: object) -> object:
    """What the scheduler does with a run whose failed tasks were cleared: run what is left.
    dag.test()'s own loop, on that run (left alone, it would clear every task and start anew)."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    def the_run(*, dag: object, **_: object) -> object:
        session = settings.Session()
        found = session.scalar(select(DagRun).where(DagRun.run_id == run.run_id))  # type: ignore[attr-defined]
        found.state = "running"
        session.commit()
        found.dag = dag  # as dag.test() has it
        return found

    with ExitStack() as stack:
        try:
            from airflow.serialization.definitions.dag import SerializedDAG  # 3.x

            stack.enter_context(mock.patch.object(SerializedDAG, "clear_dags", return_value=0))
            stack.enter_context(mock.patch("airflow.models.dagrun.get_or_create_dagrun", the_run))
        except ImportError:
            stack.enter_context(mock.patch.object(type(dag), "clear", return_value=0))
            stack.enter_context(mock.patch("airflow.models.dag._get_or_create_dagrun", the_run))
        return dag.test()  # type: ignore[attr-defined]


def test_clearing_the_failed_tasks_resumes_without_rerunning_a_success(demo, monkeypatch):
    monkeypatch.setenv(FAULTS, "team_defense_game_summary:fail=2021-10-20")
    plan_and_export(demo)
    dag = load_dag()
    run = dag.test()
    first = states(run)
    assert str(run.state) == "failed"
    assert first["team_defense_game_summary.2021-10-19.2021-11-05"][0] == "failed"
    assert first["player_game_summary.2021-10-19.2021-11-05"][0] == "success"  # its stage went on
    assert first["team_defense_zone_analysis.2021-11-02.2021-11-05"][0] == "upstream_failed"
    assert first["validate"][0] == "failed"
    succeeded = {t: tries for t, (state, tries) in first.items() if state == "success"}

    monkeypatch.delenv(FAULTS)  # the cause fixed; then the documented resume
    airflow("tasks", "clear", "backfill", "--only-failed", "--downstream", "--yes")
    after = states(continue_run(dag, run))
    assert all(state == "success" for state, _ in after.values()), after
    assert {t: after[t][1] for t in succeeded} == succeeded  # no success ran again
    assert validate(demo).returncode == 0


def test_keep_going_runs_what_does_not_depend_on_a_failure_but_never_ends_success(demo, monkeypatch):
    monkeypatch.setenv(FAULTS, "team_defense_game_summary:fail=2021-10-20")
    plan_and_export(demo, "--keep-going")
    run = load_dag().test()
    got = states(run)
    assert got["team_defense_game_summary.2021-10-19.2021-11-05"][0] == "failed"
    assert got["team_defense_zone_analysis.2021-11-02.2021-11-05"][0] == "upstream_failed"  # reads it
    assert got["player_shot_zone_analysis.2021-11-02.2021-11-05"][0] == "success"  # does not
    assert got["validate"][0] == "failed" and str(run.state) == "failed"
