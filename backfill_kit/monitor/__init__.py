"""Watching a backfill: a snapshot of progress per phase, table and season, rate, ETA range,
failures, orphaned runs and runners (`snapshot`); its view and the loop that keeps looking
(`view`); the same in JupyterLab (`widget`)."""

from __future__ import annotations

from backfill_kit.monitor import snapshot, widget
from backfill_kit.monitor.snapshot import *  # noqa: F403 -- the package's names are its modules'
from backfill_kit.monitor.widget import *  # noqa: F403

__all__ = [*snapshot.__all__, *widget.__all__]
