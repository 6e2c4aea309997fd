"""Inside an Airflow environment: Airflow's home in a temporary folder (its SQLite database
migrated once per process), the demo built once and copied to each test, and the way a test
exports a plan and runs its DAG (`dag.test()`: the whole DAG in this process, no scheduler).

Airflow reads AIRFLOW_HOME when it is first imported, so it is set before anything imports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
DAGS = HOME / "dags"
os.environ.update(
    AIRFLOW_HOME=str(HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
)
DAGS.mkdir()
BIN = Path(sys.executable).parent
subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True)

import pytest  # noqa: E402

from backfill_kit.demo import init_demo  # noqa: E402

RANGE = ("2021-10-19", "2021-11-05")  # the demo's first 14 game dates: 14 steps in 7 stages


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo-pristine")
    init_demo(directory)
    return directory


@pytest.fixture
def demo(pristine: Path, tmp_path: Path) -> Path:
    """A writable copy of the demo: its folder."""
    for name in ("nba_props.yaml", "nba_props.duckdb"):
        shutil.copy(pristine / name, tmp_path / name)
    return tmp_path


@pytest.fixture(autouse=True)
def empty_dags_folder() -> None:
    """Each test's DAG files alone in the folder: Airflow 3's dag.test() parses all of it."""
    shutil.rmtree(DAGS)
    DAGS.mkdir()


def backfill_kit(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The command line, as a person runs it."""
    done = subprocess.run([str(BIN / "backfill-kit"), *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"backfill-kit {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def airflow(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(BIN / "airflow"), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def plan_and_export(demo: Path, *export: str, tables: tuple[str, ...] = (), name: str = "backfill") -> str:
    """Plan the demo's small range and export it into the DAGs folder (DAGS/NAME.py); what the export printed."""
    spec = str(demo / "nba_props.yaml")
    chosen = [a for t in tables for a in ("--table", t)]
    backfill_kit(
        "plan",
        "--spec",
        spec,
        "--start",
        RANGE[0],
        "--end",
        RANGE[1],
        *chosen,
        "--out",
        str(demo / "runs" / "plan.json"),
    )
    out = DAGS / f"{name}.py"
    return backfill_kit(
        "export", "airflow", "--plan", str(demo / "runs" / "plan.json"), "--out", str(out), "--dag-id", name, *export
    ).stdout


def dag_bag() -> object:
    try:
        from airflow.dag_processing.dagbag import DagBag  # 3.x

        return DagBag(str(DAGS))
    except ImportError:
        from airflow.models import DagBag

        return DagBag(str(DAGS), include_examples=False)


def load_dag(name: str = "backfill") -> object:
    bag = dag_bag()
    assert not bag.import_errors, bag.import_errors  # type: ignore[attr-defined]
    return bag.dags[name]  # type: ignore[attr-defined]


def states(run: object) -> dict[str, tuple[str, int]]:
    """Each task's state and try number in a DAG run."""
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in run.get_task_instances()}  # type: ignore[attr-defined]


def validate(demo: Path) -> subprocess.CompletedProcess[str]:
    return backfill_kit(
        "validate", "--spec", str(demo / "nba_props.yaml"), "--start", RANGE[0], "--end", RANGE[1], check=False
    )
