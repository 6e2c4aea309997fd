"""A run's task states read back through Airflow's REST API, from an API server on 127.0.0.1
(Airflow 3's api-server; the 2.x webserver's /api/v1 is read the same way, untested here)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest
from conftest import BIN, RANGE, backfill_kit, load_dag, plan_and_export

from backfill_kit.engines.airflow.rest import AirflowApi
from backfill_kit.errors import BackfillKitError

pytest.importorskip("airflow.sdk", reason="Airflow 3's api-server")


@pytest.fixture
def api_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API_AUTH__JWT_SECRET": "tests-only",
    }
    server = subprocess.Popen(
        [str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = AirflowApi(f"http://127.0.0.1:{port}", environ={})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                api._api()
                break
            except BackfillKitError:
                assert time.monotonic() < deadline and server.poll() is None, "the api-server did not start"
                time.sleep(0.5)
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_failed_run_is_read_step_by_step(demo, monkeypatch, api_server):
    monkeypatch.setenv("BACKFILL_KIT_DEMO_FAULTS", "team_defense_game_summary:fail=2021-10-20")
    plan_and_export(demo)
    dag = load_dag()
    ran = dag.test()
    found = api_server.run("backfill")
    assert (found.run_id, found.state) == (ran.run_id, "failed")
    assert api_server._api() == "v2"
    from backfill_kit.plan import load_plan

    outcomes = found.outcomes(load_plan(demo / "runs" / "plan.json").steps)
    assert len(outcomes) == 14
    assert outcomes["team_defense_game_summary:2021-10-19..2021-11-05"] == "failed"
    assert outcomes["player_game_summary:2021-10-19..2021-11-05"] == "succeeded"
    assert outcomes["ml_feature_store_v2:2021-11-02..2021-11-05"] == "skipped"
    assert found.tasks["validate"].state == "failed"
    assert all(t.start and t.end for t in found.tasks.values() if t.state == "success")
    with pytest.raises(BackfillKitError, match="has no DAG nope; is its DAG file in the dags folder"):
        api_server.run("nope")

    # monitor and the execution report read the run as they read a runner's journal.
    plan = str(demo / "runs" / "plan.json")
    airflow = ("--airflow", api_server.url, "--dag-id", "backfill", "--plan", plan)
    looked = backfill_kit(
        "monitor",
        "--spec",
        str(demo / "nba_props.yaml"),
        "--start",
        RANGE[0],
        "--end",
        RANGE[1],
        *airflow,
        "--format",
        "json",
        check=False,
    )
    (runner,) = [r for r in json.loads(looked.stdout)["runners"] if r["journal"].endswith("plan.airflow.journal.jsonl")]
    assert runner["working"] is False and runner["problem"] is None
    steps = runner["steps"]
    assert (steps["succeeded"], steps["failed"], steps["total"]) == (8, 1, 14), steps
    report = backfill_kit("report", "execution", *airflow, "--out-dir", str(demo / "reports"))
    html = next((demo / "reports").glob("execution_*.html")).read_text()
    assert "team_defense_game_summary:2021-10-19..2021-11-05" in html and report.returncode == 0
