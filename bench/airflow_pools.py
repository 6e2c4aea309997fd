"""Benchmark: an exported plan under a real Airflow scheduler, and the most tasks that ran at
once in each phase against its cap (its pool's slots).

    .venv-airflow-3/bin/python bench/airflow_pools.py [--max-dates 4] [--keep]

`dag.test()` runs tasks one at a time; only a scheduler enforces pools. This starts Airflow 3's
api-server, dag-processor and scheduler on 127.0.0.1 (LocalExecutor, SQLite, AIRFLOW_HOME in a
temporary folder), builds the demo, plans its first game dates with small steps (so that each
stage has more steps than its cap), exports the plan, creates the pools with the commands the
export printed, triggers the DAG and waits for it. The task states and times are read back
through the REST API (`backfill_kit.engines.airflow.rest`), and each phase's peak is the most
task intervals that overlap. Exit 1 if a peak exceeds its cap or the run did not succeed.
Everything it started is stopped at the end (by pid), whatever happens.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backfill_kit.demo import init_demo
from backfill_kit.engines.airflow.rest import AirflowApi, TaskState

BIN = Path(sys.executable).parent
RANGE = ("2021-10-19", "2021-11-05")
DAG_ID = "bench_pools"
WAIT_SECONDS = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak(tasks: list[TaskState]) -> int:
    """The most intervals [start, end] that overlap at one moment."""
    edges = sorted(
        [(t.start, 1) for t in tasks if t.start and t.end] + [(t.end, -1) for t in tasks if t.start and t.end],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    now = best = 0
    for _, delta in edges:
        now += delta
        best = max(best, now)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-dates", type=int, default=4, help="max_dates_per_step for the benchmark's plan")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-airflow-"))
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "16",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-only-secret",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        return run(home, port, env, started, args.max_dates)
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(home)], check=False)
        else:
            print(f"kept {home}")


def sh(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def run(home: Path, port: int, env: dict[str, str], started: list[subprocess.Popen[bytes]], max_dates: int) -> int:
    t0 = time.monotonic()
    (home / "dags").mkdir()
    demo = home / "demo"
    init_demo(demo)
    spec = demo / "nba_props.yaml"
    spec.write_text(re.sub(r"max_dates_per_step: \d+", f"max_dates_per_step: {max_dates}", spec.read_text()))
    kit = str(BIN / "backfill-kit")
    sh(
        env,
        kit,
        "plan",
        "--spec",
        str(spec),
        "--start",
        RANGE[0],
        "--end",
        RANGE[1],
        "--out",
        str(demo / "runs" / "plan.json"),
    )
    printed = sh(
        env,
        kit,
        "export",
        "airflow",
        "--plan",
        str(demo / "runs" / "plan.json"),
        "--out",
        str(home / "dags" / "bench.py"),
        "--dag-id",
        DAG_ID,
    )
    airflow = str(BIN / "airflow")
    sh(env, airflow, "db", "migrate")
    caps = {}
    for line in printed.splitlines():
        if line.strip().startswith("airflow pools set"):
            command = shlex.split(line)
            sh(env, airflow, *command[1:])
            caps[command[3]] = int(command[4])
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    for name in ("api-server", "dag-processor", "scheduler"):
        with open(logs / f"{name}.log", "wb") as log:
            started.append(
                subprocess.Popen([airflow, name], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
    api = AirflowApi(f"http://127.0.0.1:{port}", environ={})
    wait_for_dag(api, env, airflow)
    sh(env, airflow, "dags", "unpause", DAG_ID)
    sh(env, airflow, "dags", "trigger", DAG_ID)
    setup = time.monotonic() - t0
    run_ = wait_for_run(api)
    took = time.monotonic() - t0 - setup
    return report(run_, caps, setup, took)


def wait_for_dag(api: AirflowApi, env: dict[str, str], airflow: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = subprocess.run(
            [airflow, "dags", "list-import-errors"], env=env, capture_output=True, text=True, check=False
        )
        listed = subprocess.run([airflow, "dags", "list"], env=env, capture_output=True, text=True, check=False)
        if DAG_ID in listed.stdout:
            try:
                api._get("version")  # the API server answers too
                return
            except Exception:
                pass
        if "bench.py" in done.stdout:
            raise SystemExit(f"the DAG file did not import:\n{done.stdout}")
        time.sleep(2)
    raise SystemExit("the DAG was not parsed within 180 s")


def wait_for_run(api: AirflowApi) -> object:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            found = api.run(DAG_ID)
        except Exception:
            found = None
        if found is not None and found.state in ("success", "failed"):
            return found
        time.sleep(2)
    raise SystemExit(f"the run did not finish within {WAIT_SECONDS} s")


def report(found: object, caps: dict[str, int], setup: float, took: float) -> int:
    tasks = list(found.tasks.values())  # type: ignore[attr-defined]
    ok = found.state == "success"  # type: ignore[attr-defined]
    print(f"run {found.run_id}: {found.state}, {len(tasks)} tasks in {took:.0f} s (setup {setup:.0f} s)")  # type: ignore[attr-defined]
    print(f"{'pool':<34} {'cap':>4} {'steps':>6} {'peak at once':>13}")
    for pool, cap in caps.items():
        mine = [t for t in tasks if t.pool == pool]
        top = peak(mine)
        ok &= top <= cap
        print(f"{pool:<34} {cap:>4} {len(mine):>6} {top:>13}{'' if top <= cap else '  ABOVE ITS CAP'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
