"""Warehouse backends behind one small contract (`Warehouse`); each imported only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backfill_kit.errors import WarehouseError
from backfill_kit.warehouse import base
from backfill_kit.warehouse.base import *  # noqa: F403 -- the contract's names are the package's
from backfill_kit.warehouse.base import Warehouse

if TYPE_CHECKING:
    from backfill_kit.spec.model import PipelineSpec

__all__ = [*base.__all__, "open_warehouse"]


def open_warehouse(spec: PipelineSpec, *, read_only: bool = True, lock_wait_seconds: float | None = None) -> Warehouse:
    """The backend the spec's `warehouse` section names, connected. `lock_wait_seconds`: how long
    to wait for a DuckDB file another process holds locked (default: a minute)."""
    config = spec.warehouse
    if config.backend == "duckdb":
        from backfill_kit.warehouse.duckdb import DuckDBWarehouse

        if config.path == ":memory:":
            return DuckDBWarehouse(read_only=read_only, spec_file=spec.file_name)
        path = spec.resolve_path(config.path)
        if read_only and not path.exists():
            raise WarehouseError(
                f"{spec.file_name}: warehouse.path: the DuckDB file {path} does not exist. Fix the "
                "path (it is relative to the spec file), or create the demo with: backfill-kit demo init DIR"
            )
        return DuckDBWarehouse(path, read_only=read_only, spec_file=spec.file_name, lock_wait_seconds=lock_wait_seconds)
    if config.backend == "bigquery":
        from backfill_kit.warehouse.bigquery import BigQueryWarehouse  # needs the `bigquery` extra; says so if missing

        return BigQueryWarehouse.from_spec(spec)
    raise AssertionError(f"unhandled backend {config.backend!r}")  # the spec model forbids others
