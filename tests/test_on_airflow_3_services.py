"""Under Airflow 3.x, beside the backfill DAG's own tests (in a process of their own, so that the
suite runs them side by side): the Cloud Run target, the scheduled audit, the REST reader."""

from __future__ import annotations

import pytest
from on_airflow_envs import run_on_airflow

pytestmark = pytest.mark.slow


def test_cloud_run_audit_and_rest_under_airflow_3():
    run_on_airflow(".venv-airflow-3", "test_cloud_run.py", "test_audit_dag.py", "test_rest.py")
