"""Exported backfill DAGs under Airflow 3.x (tests/on_airflow/test_backfill_dag.py, in .venv-airflow-3)."""

from __future__ import annotations

import pytest
from on_airflow_envs import run_on_airflow

pytestmark = pytest.mark.slow


def test_exported_dags_under_airflow_3():
    run_on_airflow(".venv-airflow-3", "test_backfill_dag.py")
