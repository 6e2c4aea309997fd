"""An Airflow run's task states, read through Airflow's REST API (the standard library's
urllib: nothing to install), as `monitor` and the execution report read a journal.

Airflow 3.x serves /api/v2, 2.x /api/v1; the reader asks v2 first. Credentials come from the
environment only, never the command line: BACKFILL_KIT_AIRFLOW_TOKEN (a bearer token, e.g.
`gcloud auth print-access-token` for Cloud Composer), else BACKFILL_KIT_AIRFLOW_USER and
BACKFILL_KIT_AIRFLOW_PASSWORD (basic auth on 2.x; on 3.x, a token asked of /auth/token). The
task states only follow the run: the warehouse's run history and `validate` stay the truth.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backfill_kit.engines.airflow.document import task_id
from backfill_kit.errors import BackfillKitError
from backfill_kit.plan import Step

__all__ = ["OUTCOMES", "TOKEN_ENV", "AirflowApi", "AirflowRun", "TaskState", "read_run"]

TOKEN_ENV = "BACKFILL_KIT_AIRFLOW_TOKEN"
USER_ENV, PASSWORD_ENV = "BACKFILL_KIT_AIRFLOW_USER", "BACKFILL_KIT_AIRFLOW_PASSWORD"
TIMEOUT_SECONDS = 30.0
PAGE = 100  # task instances per request (Airflow's own cap is higher; 100 is the default)

# Airflow's task states in the journal's words (`running.journal.Outcome`), so that what reads a
# journal reads a run alike; a state not listed (queued, scheduled, none) has not started.
OUTCOMES = {
    "success": "succeeded",
    "failed": "failed",
    "upstream_failed": "skipped",
    "skipped": "skipped",
    "up_for_retry": "retrying",
    "running": "running",
    "restarting": "running",
}


@dataclass(frozen=True)
class TaskState:
    task_id: str
    state: str | None  # None: not started (no state yet)
    try_number: int
    start: datetime | None
    end: datetime | None
    pool: str | None = None


@dataclass(frozen=True)
class AirflowRun:
    url: str
    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, TaskState] = field(default_factory=dict)

    def of_steps(self, steps: Iterable[Step]) -> dict[str, TaskState]:
        """Each step's task, by step id (a step the run has no task for is left out)."""
        return {s.id: self.tasks[task_id(s)] for s in steps if task_id(s) in self.tasks}

    def outcomes(self, steps: Iterable[Step]) -> dict[str, str]:
        """Each step's outcome in the journal's words; 'pending' for one not started."""
        return {sid: OUTCOMES.get(t.state or "", "pending") for sid, t in self.of_steps(steps).items()}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for task in self.tasks.values():
            out[task.state or "none"] = out.get(task.state or "none", 0) + 1
        return out


class AirflowApi:
    def __init__(self, url: str, environ: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self._env = dict(os.environ if environ is None else environ)
        self._version: str | None = None
        self._auth: str | None = None

    def run(self, dag_id: str, run_id: str | None = None) -> AirflowRun:
        """A run of the DAG (the newest without `run_id`) and all its task instances."""
        try:
            return self._run(dag_id, run_id)
        except _NotFound:
            what = f"no run {run_id} of the DAG {dag_id}" if run_id else f"no DAG {dag_id}"
            raise BackfillKitError(
                f"Airflow at {self.url} has {what}; is its DAG file in the dags folder, and parsed (airflow dags list)?"
            ) from None

    def _run(self, dag_id: str, run_id: str | None) -> AirflowRun:
        base = f"dags/{_q(dag_id)}/dagRuns"
        if run_id is None:
            order = "-run_after" if self._api() == "v2" else "-execution_date"
            runs = self._get(f"{base}?order_by={order}&limit=1").get("dag_runs") or []
            if not runs:
                raise BackfillKitError(f"Airflow at {self.url} has no run of the DAG {dag_id}; trigger it first")
            found = runs[0]
        else:
            found = self._get(f"{base}/{_q(run_id)}")
        rid = str(found["dag_run_id"])
        return AirflowRun(
            self.url, dag_id, rid, str(found.get("state")), self._tasks(f"{base}/{_q(rid)}/taskInstances")
        )

    def _tasks(self, path: str) -> dict[str, TaskState]:
        tasks: dict[str, TaskState] = {}
        offset = 0
        while True:
            page = self._get(f"{path}?limit={PAGE}&offset={offset}")
            items = page.get("task_instances") or []
            for t in items:
                tasks[str(t["task_id"])] = TaskState(
                    str(t["task_id"]),
                    t.get("state"),
                    int(t.get("try_number") or 0),
                    _moment(t.get("start_date")),
                    _moment(t.get("end_date")),
                    t.get("pool"),
                )
            offset += len(items)
            if not items or offset >= int(page.get("total_entries") or 0):
                return tasks

    # --- the HTTP underneath -------------------------------------------------------------------

    def _api(self) -> str:
        if self._version is None:
            self._version = "v2" if self._answers("/api/v2/version") else "v1"
        return self._version

    def _answers(self, path: str) -> bool:
        try:
            self._request(self.url + path)
            return True
        except _NotFound:
            return False

    def _get(self, path: str) -> dict[str, Any]:
        return self._request(f"{self.url}/api/{self._api()}/{path}")

    def _request(self, url: str) -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json", **self._headers()})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise _NotFound(url) from None
            hint = f" (set {TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV})" if exc.code in (401, 403) else ""
            raise BackfillKitError(f"Airflow at {self.url} answered {exc.code} {exc.reason} for {url}{hint}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackfillKitError(
                f"cannot read Airflow at {self.url}: {reason}; is its API server running there?"
            ) from None
        return data if isinstance(data, dict) else {}

    def _headers(self) -> dict[str, str]:
        if self._auth is None:
            self._auth = self._authorization()
        return {"Authorization": self._auth} if self._auth else {}

    def _authorization(self) -> str:
        if token := self._env.get(TOKEN_ENV):
            return f"Bearer {token}"
        user, password = self._env.get(USER_ENV), self._env.get(PASSWORD_ENV)
        if not (user and password):
            return ""
        if self._answers_token():
            return f"Bearer {self._token(user, password)}"
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _answers_token(self) -> bool:
        self._auth = ""  # while asking, no header
        return self._answers("/api/v2/version")

    def _token(self, user: str, password: str) -> str:
        body = json.dumps({"username": user, "password": password}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return str(json.loads(response.read())["access_token"])
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            raise BackfillKitError(f"Airflow at {self.url} gave no token for {user}: {exc}") from None


class _NotFound(BackfillKitError):
    pass


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def read_run(url: str, dag_id: str, run_id: str | None = None) -> AirflowRun:
    return AirflowApi(url).run(dag_id, run_id)
