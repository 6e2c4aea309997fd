"""The scheduled coverage audit, run twice under `dag.test()` with a partition deleted between
the runs: the second report names that partition's cells as no longer complete, and fails."""

from __future__ import annotations

import json

import duckdb
import pytest
from conftest import DAGS, RANGE, backfill_kit, load_dag, states

pytest.importorskip("papermill", reason="the reports' packages are in .venv-airflow-3 only")

LOST = ("nbac_gamebook_player_stats", "2021-10-20")  # complete in the demo as it is built


def test_the_audit_names_cells_no_longer_complete_and_fails(demo):
    printed = backfill_kit(
        "export",
        "airflow-audit",
        "--spec",
        str(demo / "nba_props.yaml"),
        "--start",
        RANGE[0],
        "--end",
        RANGE[1],
        "--schedule",
        "15 6 * * *",
        "--out",
        str(DAGS / "audit.py"),
    ).stdout
    assert f"Reports go to {demo / 'reports'}" in printed
    dag = load_dag(f"coverage_audit_nba_props_{RANGE[0]}_{RANGE[1]}")
    assert dag.max_active_runs == 1
    first = dag.test()
    assert str(first.state) == "success", states(first)

    with duckdb.connect(str(demo / "nba_props.duckdb")) as con:
        con.execute("DELETE FROM nba_raw.nbac_gamebook_player_stats WHERE game_date = ?", [LOST[1]])
    second = dag.test()
    assert str(second.state) == "failed" and states(second)["coverage_report"][0] == "failed"

    reports = sorted((demo / "reports").glob("coverage_*.html"))
    assert len(reports) == 2
    html = reports[-1].read_text()
    assert f"Since {reports[0].name}: 1 cell no longer complete, 0 new gaps, 0 fixed" in html
    cells = json.loads(reports[-1].with_suffix(".cells.json").read_text())
    (lost,) = cells["changes"]["no_longer_complete"]
    assert (lost["table"], lost["date"], lost["before"]) == (*LOST, "complete")
    index = (demo / "reports" / "index.html").read_text()
    assert reports[0].name in index and reports[1].name in index
    assert "since the previous: 1 no longer complete" in index
