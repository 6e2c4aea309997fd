"""A plan file's JSON document, as `backfill-kit plan` writes it, for tests that break it."""

from __future__ import annotations

from typing import Any

STEP: dict[str, Any] = {
    "id": "a:2024-01-02..2024-01-03",
    "table": "a",
    "phase": "raw",
    "start": "2024-01-02",
    "end": "2024-01-03",
    "dates": ["2024-01-02", "2024-01-03"],
    "causes": {"failed": 2},
    "argv": ["python3", "-c", "pass"],
    "workdir": ".",
    "env": {},
    "timeout_seconds": 60,
    "retries": 1,
    "transient_exit_codes": [75],
    "skips_downstream": True,
    "after": [],
    "estimated_seconds": None,
}
PLAN: dict[str, Any] = {
    "format": 1,
    "spec": "spec.yaml",
    "spec_name": "x",
    "start": "2024-01-01",
    "end": "2024-01-31",
    "created_at": "2024-02-01T00:00:00+00:00",
    "options": {},
    "blocked": [],
    "stages": [{"index": 1, "phase": "raw", "mode": "parallel", "workers": 2, "steps": [STEP]}],
}


def plan_with(**changes: Any) -> dict[str, Any]:
    """PLAN with top-level `changes`; `stage=` and `step=` dicts change the first stage and step."""
    stage = {**PLAN["stages"][0], **changes.pop("stage", {})}
    stage["steps"] = [{**STEP, **changes.pop("step", {})}]
    return {**PLAN, "stages": [stage], **changes}
