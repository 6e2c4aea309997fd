"""Exported DAGs under Airflow 2.10 (tests/on_airflow/, in .venv-airflow-2)."""

from __future__ import annotations

import pytest
from on_airflow_envs import run_on_airflow

pytestmark = pytest.mark.slow


def test_exported_dags_under_airflow_2():
    run_on_airflow(".venv-airflow-2")
