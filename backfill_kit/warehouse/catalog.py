"""What a warehouse says about itself, for drafting a spec: its tables, their columns and
partitioning, rows per date, and a few GROUP BY queries on the run history.

Two sources with one shape: a DuckDB file, and a BigQuery project read by metadata (API calls
and `INFORMATION_SCHEMA.PARTITIONS`, which cost nothing) plus queries on the run history alone,
each dry-run first and refused over the bytes ceiling. Nothing is ever written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from backfill_kit.common.small_files import odd_file
from backfill_kit.errors import InputError
from backfill_kit.warehouse.sql import BIGQUERY, DUCKDB, Dialect

__all__ = ["Catalog", "ColumnInfo", "TableInfo", "open_bigquery_catalog", "open_duckdb_catalog"]

# Wide enough for any real date; the contract's SQL always filters on a range.
ALL_DATES = (date(1900, 1, 1), date(2199, 12, 31))

_KINDS = (  # (prefix of the engine's type name, kind); the first match wins
    ("TIMESTAMP", "timestamp"),
    ("DATETIME", "timestamp"),
    ("DATE", "date"),
    ("VARCHAR", "text"),
    ("STRING", "text"),
    ("TEXT", "text"),
    ("JSON", "json"),
    ("BOOL", "bool"),
    ("BIGINT", "int"),
    ("INTEGER", "int"),
    ("INT", "int"),
    ("SMALLINT", "int"),
    ("TINYINT", "int"),
    ("HUGEINT", "int"),
    ("UBIGINT", "int"),
    ("DOUBLE", "float"),
    ("FLOAT", "float"),
    ("REAL", "float"),
    ("NUMERIC", "float"),
    ("DECIMAL", "float"),
)


def kind_of(type_name: str) -> str:
    """date, timestamp, text, json, bool, int, float or other (lists, structs)."""
    upper = type_name.upper()
    if upper.endswith("[]") or upper.startswith(("STRUCT", "RECORD", "MAP", "LIST", "ARRAY")):
        return "other"
    return next((kind for prefix, kind in _KINDS if upper.startswith(prefix)), "other")


class ColumnInfo(NamedTuple):
    """A column as a draft sees it, a plain pair: its name and its kind (`kind_of` its type)."""

    name: str
    kind: str


@dataclass(frozen=True)
class TableInfo:
    """A table as a draft sees it: its columns in order, and how it is partitioned."""

    name: str  # dataset.table, as the spec writes it
    columns: tuple[ColumnInfo, ...]
    partition_column: str | None = None  # partitioned by day on this column

    @property
    def dataset(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]

    def of_kind(self, *kinds: str) -> list[str]:
        return [c.name for c in self.columns if c.kind in kinds]

    def has(self, column: str) -> bool:
        return any(c.name.lower() == column.lower() for c in self.columns)


class Catalog(Protocol):
    dialect: Dialect
    description: str  # what was read, for the draft's header

    def tables(self, datasets: Sequence[str]) -> list[TableInfo]:
        """Every table, or those of these datasets."""
        ...

    def rows_per_date(
        self, targets: Sequence[tuple[TableInfo, str]], start: date, end: date
    ) -> list[dict[date, int] | None]:
        """Rows per date of each (table, date column); None where it cannot be had cheaply."""
        ...

    def qualified(self, table: str) -> str:
        """A spec's `dataset.table` as this warehouse's queries name it."""
        ...

    def query(self, purpose: str, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """A read-only query on the run history."""
        ...

    def close(self) -> None: ...


class DuckDBCatalog:
    dialect = DUCKDB

    def __init__(self, path: Path) -> None:
        from backfill_kit.warehouse.duckdb import DuckDBWarehouse

        if kind := odd_file(path):  # DuckDB would block opening a pipe, deaf to Ctrl-C
            raise InputError(f"{path} is {kind}, not a DuckDB file; give the warehouse file to draft from")
        if not path.is_file():
            raise InputError(f"{path}: no such DuckDB file; give the warehouse file to draft from")
        self.path = path
        self.description = f"the DuckDB file {path.name}"
        self._wh = DuckDBWarehouse(path, read_only=True)

    def tables(self, datasets: Sequence[str]) -> list[TableInfo]:
        rows = self._wh.execute(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema NOT IN ('information_schema', 'pg_catalog') "
            "ORDER BY table_schema, table_name, ordinal_position"
        )
        return _assemble(rows, datasets, {})

    def rows_per_date(
        self, targets: Sequence[tuple[TableInfo, str]], start: date, end: date
    ) -> list[dict[date, int] | None]:
        from backfill_kit.warehouse.base import CoverageTarget

        out: list[dict[date, int] | None] = [{} for _ in targets]
        found = self._wh.row_counts([CoverageTarget(t.name, c) for t, c in targets], start, end) if targets else []
        for k, d, n in found:
            out[k][d] = n  # type: ignore[index]
        return out

    def qualified(self, table: str) -> str:
        return table

    def query(self, purpose: str, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self._wh._run(purpose, sql, params)

    def close(self) -> None:
        self._wh.close()


class BigQueryCatalog:
    """A BigQuery project through the toolkit's BigQuery backend (its errors, retries, dry
    runs and bytes ceiling); `dataset_prefix` is taken off dataset names."""

    dialect = BIGQUERY

    def __init__(self, warehouse: Any) -> None:
        self._wh = warehouse
        self.description = f"the BigQuery project {warehouse.project}"

    def tables(self, datasets: Sequence[str]) -> list[TableInfo]:
        wh, prefix = self._wh, self._wh.dataset_prefix
        listed = wh.call("listing the datasets", lambda: list(wh.client.list_datasets()))
        names = sorted(d.dataset_id for d in listed if d.dataset_id.startswith(prefix))
        rows: list[tuple[str, str, str, str]] = []
        partitions: dict[str, str] = {}
        for dataset in names:
            short = dataset[len(prefix) :]
            if datasets and short not in datasets:
                continue
            for item in wh.call(f"listing the tables of {dataset}", lambda d=dataset: list(wh.client.list_tables(d))):
                resource = wh._resource(f"{short}.{item.table_id}")  # cached metadata, not a job
                if resource is None or resource.get("type", "TABLE") != "TABLE":
                    continue
                rows += [
                    (short, item.table_id, f["name"], _bq_type(f)) for f in resource.get("schema", {}).get("fields", [])
                ]
                partitioning = resource.get("timePartitioning") or {}
                if partitioning.get("type") == "DAY" and partitioning.get("field"):
                    partitions[f"{short}.{item.table_id}"] = partitioning["field"]
        return _assemble(rows, (), partitions)

    def rows_per_date(
        self, targets: Sequence[tuple[TableInfo, str]], start: date, end: date
    ) -> list[dict[date, int] | None]:
        from backfill_kit.warehouse.base import CoverageTarget

        out: list[dict[date, int] | None] = [None] * len(targets)
        by_metadata = [i for i, (t, c) in enumerate(targets) if (t.partition_column or "").lower() == c.lower()]
        if not by_metadata:
            return out
        for i in by_metadata:
            out[i] = {}
        # Only partitioned tables: the backend counts them from partition metadata, no scan.
        found = self._wh.row_counts(
            [CoverageTarget(targets[i][0].name, targets[i][1]) for i in by_metadata], start, end
        )
        for k, d, n in found:
            out[by_metadata[k]][d] = n
        return out

    def qualified(self, table: str) -> str:
        return str(self._wh.qualified(table))

    def query(self, purpose: str, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._wh._run(purpose, sql, params, tables=1)
        return rows

    def close(self) -> None:
        self._wh.close()


def _bq_type(field: dict[str, Any]) -> str:
    return "RECORD" if field.get("mode") == "REPEATED" else str(field.get("type", ""))


def _assemble(
    rows: Sequence[tuple[str, str, str, str]], datasets: Sequence[str], partitions: dict[str, str]
) -> list[TableInfo]:
    columns: dict[str, list[ColumnInfo]] = {}
    for schema, table, column, type_name in rows:
        if datasets and schema not in datasets:
            continue
        columns.setdefault(f"{schema}.{table}", []).append(ColumnInfo(column, kind_of(type_name)))
    return [TableInfo(name, tuple(cols), partitions.get(name)) for name, cols in sorted(columns.items())]


def open_duckdb_catalog(path: Path) -> DuckDBCatalog:
    return DuckDBCatalog(path)


def open_bigquery_catalog(
    project: str,
    *,
    location: str | None = None,
    dataset_prefix: str = "",
    credentials_file: Path | None = None,
    maximum_bytes_billed: int | None = None,
) -> BigQueryCatalog:
    from backfill_kit.warehouse.bigquery import BigQueryWarehouse, connect

    client = connect(project, location, credentials_file)
    return BigQueryCatalog(
        BigQueryWarehouse(
            client,
            location=location,
            dataset_prefix=dataset_prefix,
            maximum_bytes_billed=maximum_bytes_billed,
            spec_file="the draft's options (--maximum-bytes-billed)",
        )
    )
