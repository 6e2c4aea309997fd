"""The Airflow names the DAG and its tasks use, from where each line of Airflow keeps them:
3.x's task SDK and standard provider, or 2.10's modules. Imported only inside Airflow."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

__all__ = ["airflow_names"]


@functools.cache
def airflow_names() -> Any:
    try:
        return _airflow_3()
    except ImportError:
        return _airflow_2()


def _airflow_3() -> SimpleNamespace:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    # 3.x: the backoff is a multiplier (2: each wait twice the one before).
    return _names(3, 2.0, DAG, EmptyOperator, PythonOperator, AirflowException, AirflowFailException)


def _airflow_2() -> SimpleNamespace:
    from airflow import DAG
    from airflow.exceptions import AirflowException, AirflowFailException
    from airflow.operators.empty import EmptyOperator
    from airflow.operators.python import PythonOperator

    # 2.10: the backoff is a yes or no, and yes doubles each wait.
    return _names(2, True, DAG, EmptyOperator, PythonOperator, AirflowException, AirflowFailException)


def _names(major: int, backoff: float | bool, *classes: Any) -> SimpleNamespace:
    keys = ("DAG", "EmptyOperator", "PythonOperator", "AirflowException", "AirflowFailException")
    return SimpleNamespace(major=major, exponential_backoff=backoff, **dict(zip(keys, classes, strict=True)))
