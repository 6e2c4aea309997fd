"""Warehouse backends behind one small contract (`Warehouse`); each imported only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    CalendarRequest,
    Capabilities,
    CoverageTarget,
    MissingObject,
    ObjectsMissingError,
    QueryRecord,
    RunHistoryRequest,
    RunSummary,
    Warehouse,
)

if TYPE_CHECKING:
    from ..spec import PipelineSpec

__all__ = [
    "CalendarRequest",
    "Capabilities",
    "CoverageTarget",
    "MissingObject",
    "ObjectsMissingError",
    "QueryRecord",
    "RunHistoryRequest",
    "RunSummary",
    "Warehouse",
    "open_warehouse",
]


def open_warehouse(spec: PipelineSpec, *, read_only: bool = True) -> Warehouse:
    """The backend the spec's `warehouse` section names, connected."""
    config = spec.warehouse
    if config.backend == "duckdb":
        from .duckdb import DuckDBWarehouse

        path = config.path if config.path == ":memory:" else spec.resolve_path(config.path)
        return DuckDBWarehouse(path, read_only=read_only)
    raise AssertionError(f"unhandled backend {config.backend!r}")  # the spec model forbids others
