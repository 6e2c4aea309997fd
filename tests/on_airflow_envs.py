"""The Airflow environments the suite runs its tests/on_airflow/ tests in: one pytest process
per environment, each started by its own test file (so xdist runs them side by side)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_on_airflow(env: str, *files: str) -> None:
    """tests/on_airflow/ (or those of its `files`) under the environment `env` (.venv-airflow-2,
    ...) in a pytest process of its own; its report on failure."""
    python = ROOT / env / "bin" / "python"
    if not (ROOT / env / ".installed").exists():
        pytest.skip(f"{env} is not installed: make {env}/.installed (make test does)")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-c",
            "tests/on_airflow/pytest.ini",
            "--rootdir",
            "tests/on_airflow",
            *([f"tests/on_airflow/{f}" for f in files] or ["tests/on_airflow"]),
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    sys.stdout.write(done.stdout[-3000:])
    assert done.returncode == 0, (
        f"tests/on_airflow under {env} exited {done.returncode}:\n{done.stdout[-20000:]}{done.stderr[-5000:]}"
    )
