"""The pipeline spec: its validated model, its loader, and the check of `calendar.filter`."""

from __future__ import annotations

from backfill_kit.spec.model import (
    BigQuerySettings,
    Calendar,
    DuckDBSettings,
    JobSpec,
    Phase,
    PipelineSpec,
    RunHistory,
    Season,
    TableSpec,
    load_spec,
)

__all__ = [
    "BigQuerySettings",
    "Calendar",
    "DuckDBSettings",
    "JobSpec",
    "Phase",
    "PipelineSpec",
    "RunHistory",
    "Season",
    "TableSpec",
    "load_spec",
]
