"""The pipeline spec: its validated model, its loader, and the check of `calendar.filter`."""

from __future__ import annotations

from backfill_kit.spec.model import (
    BigQueryWarehouse,
    Calendar,
    DuckDBWarehouse,
    JobSpec,
    Phase,
    PipelineSpec,
    RunHistory,
    Season,
    TableSpec,
    load_spec,
)

__all__ = [
    "BigQueryWarehouse",
    "Calendar",
    "DuckDBWarehouse",
    "JobSpec",
    "Phase",
    "PipelineSpec",
    "RunHistory",
    "Season",
    "TableSpec",
    "load_spec",
]
