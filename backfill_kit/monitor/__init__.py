"""Watching a backfill: a snapshot of progress per phase, table and season, rate, ETA range,
failures, orphaned runs and runners (`snapshot`); its view and the loop that keeps looking
(`view`); the same in JupyterLab (`widget`)."""

from __future__ import annotations

from backfill_kit.monitor.snapshot import (
    PhaseProgress,
    RunnerPosition,
    Snapshot,
    TableProgress,
    eta_range,
    find_journals,
    take_snapshot,
)
from backfill_kit.monitor.widget import MonitorWidget, monitor_widget

__all__ = [
    "MonitorWidget",
    "PhaseProgress",
    "RunnerPosition",
    "Snapshot",
    "TableProgress",
    "eta_range",
    "find_journals",
    "monitor_widget",
    "take_snapshot",
]
