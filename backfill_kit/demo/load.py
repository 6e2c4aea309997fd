"""Load the demo warehouse into BigQuery (`backfill-kit demo load --to bigquery`), to try the
toolkit there: the same tables, each partitioned by day on its date column, and a copy of the
demo spec whose only change is its `warehouse` section.

Rows travel as Parquet written by DuckDB, in load jobs: free in BigQuery and, unlike streaming
inserts, landing straight in their partitions, where partition metadata counts them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from pydantic import TypeAdapter, ValidationError

from backfill_kit.demo import EXAMPLE_SPEC, example_spec_text
from backfill_kit.demo.tables import RUN_HISTORY_TABLE, TABLES
from backfill_kit.errors import InputError
from backfill_kit.spec.model import BigQuerySettings

if TYPE_CHECKING:
    from backfill_kit.warehouse.bigquery import BigQueryWarehouse

__all__ = ["BIGQUERY_SPEC", "DemoLoad", "copy_table", "load_demo", "with_warehouse"]

BIGQUERY_SPEC = "nba_props.bigquery.yaml"
# As in production: the hand-off's tables that reject queries without a partition filter.
REQUIRE_PARTITION_FILTER = frozenset({"nbac_schedule", "team_offense_game_summary", "ml_feature_store_v2"})
TYPES = {
    "VARCHAR": "STRING",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "BOOLEAN": "BOOL",
    "DOUBLE": "FLOAT64",
    "FLOAT": "FLOAT64",
    "TINYINT": "INT64",
    "SMALLINT": "INT64",
    "INTEGER": "INT64",
    "BIGINT": "INT64",
    "JSON": "JSON",
}


@dataclass(frozen=True)
class DemoLoad:
    spec: Path  # the demo spec, pointing at BigQuery
    tables: list[tuple[str, int]]  # BigQuery table, rows loaded


def load_demo(
    directory: Path,
    project: str,
    *,
    dataset_prefix: str = "",
    location: str | None = None,
    start: date | None = None,
    end: date | None = None,
    client: Any = None,
) -> DemoLoad:
    """Copy DIRECTORY/nba_props.duckdb (from `demo init`) into `project`, between `start` and
    `end` when given, and write DIRECTORY/nba_props.bigquery.yaml."""
    source = directory / "nba_props.duckdb"
    if not source.is_file():
        raise InputError(f"no demo warehouse at {source}; create it first with: backfill-kit demo init {directory}")
    config = _config(project, dataset_prefix, location)
    from backfill_kit.warehouse.bigquery import BigQueryWarehouse, connect  # the `bigquery` extra, with a hint

    wh = BigQueryWarehouse(client or connect(project, location, None), location=location, dataset_prefix=dataset_prefix)
    con = duckdb.connect(str(source), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")  # naive timestamps are UTC, and are written so
        with tempfile.TemporaryDirectory() as tmp:
            loaded = [
                copy_table(
                    con,
                    wh,
                    name,
                    Path(tmp),
                    partition_column=column,
                    start=start,
                    end=end,
                    require_filter=name.split(".")[1] in REQUIRE_PARTITION_FILTER,
                )
                for name, column in _demo_tables()
            ]
    finally:
        con.close()
    spec = directory / BIGQUERY_SPEC
    spec.write_text(with_warehouse(_demo_spec_text(directory), _section(config)), encoding="utf-8")
    return DemoLoad(spec, loaded)


def with_warehouse(text: str, section: Sequence[str]) -> str:
    """The spec text with its `warehouse:` block replaced by `section` (lines under it)."""
    lines = text.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith("warehouse:"))
    last = first + 1
    while last < len(lines) and (lines[last].startswith((" ", "\t")) or _blank_inside(lines, last)):
        last += 1
    block = ["warehouse:\n", *(f"  {line}\n" for line in section)]
    return "".join([*lines[:first], *block, *lines[last:]])


def _blank_inside(lines: list[str], i: int) -> bool:
    return not lines[i].strip() and i + 1 < len(lines) and lines[i + 1].startswith((" ", "\t"))


def _config(project: str, dataset_prefix: str, location: str | None) -> BigQuerySettings:
    try:
        return TypeAdapter(BigQuerySettings).validate_python(
            {"backend": "bigquery", "project": project, "dataset_prefix": dataset_prefix, "location": location}
        )
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise InputError(f"cannot load the demo into BigQuery: {problems}") from None


def _section(config: BigQuerySettings) -> list[str]:
    lines = ["backend: bigquery", f"project: {config.project}"]
    if config.location:
        lines.append(f"location: {config.location}")
    if config.dataset_prefix:
        lines.append(f"dataset_prefix: {config.dataset_prefix}")
    return lines


def _demo_spec_text(directory: Path) -> str:
    written = directory / EXAMPLE_SPEC
    return written.read_text(encoding="utf-8") if written.is_file() else example_spec_text()


def _demo_tables() -> list[tuple[str, str]]:
    """Every table the demo spec reads, with its date column (the partitioning column)."""
    return [(t.table, t.date_column) for t in TABLES.values()] + [(RUN_HISTORY_TABLE, "data_date")]


def copy_table(
    con: duckdb.DuckDBPyConnection,
    wh: BigQueryWarehouse,
    name: str,
    tmp: Path,
    *,
    partition_column: str | None = None,
    require_filter: bool = False,
    start: date | None = None,
    end: date | None = None,
) -> tuple[str, int]:
    """Replace the BigQuery table of `name` (schema.table in the DuckDB file) by a copy of
    it, partitioned by day on `partition_column` and cut to its dates in [start, end] when
    given; return the BigQuery table and the rows loaded. (The connection must be in UTC.)"""
    schema, table = name.split(".")
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $schema AND table_name = $table ORDER BY ordinal_position",
        {"schema": schema, "table": table},
    ).fetchall()
    target = wh.qualified(name)
    _create_table(wh, target, columns, partition_column, require_filter)
    parquet = tmp / f"{name}.parquet"
    rows = _export(con, name, columns, partition_column, start, end, parquet)
    if rows:
        _load(wh, target, parquet)
    return target, rows


def _export(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns: list[tuple[str, str]],
    date_column: str | None,
    start: date | None,
    end: date | None,
    parquet: Path,
) -> int:
    # Timestamps go out with their zone (UTC), so BigQuery reads them as TIMESTAMP, not DATETIME.
    select = ", ".join(f'CAST("{c}" AS TIMESTAMPTZ) AS "{c}"' if t == "TIMESTAMP" else f'"{c}"' for c, t in columns)
    where, params = "", {}
    if date_column and (start or end):
        where = f'WHERE ($start IS NULL OR "{date_column}" >= $start) AND ($end IS NULL OR "{date_column}" <= $end)'
        params = {"start": start, "end": end}
    relation = con.sql(f"SELECT {select} FROM {name} {where}", params=params or None)
    relation.write_parquet(str(parquet))
    return int(con.execute("SELECT count(*) FROM read_parquet($p)", {"p": str(parquet)}).fetchall()[0][0])


def _create_table(
    wh: BigQueryWarehouse,
    target: str,
    columns: list[tuple[str, str]],
    partition_column: str | None,
    require_filter: bool,
) -> None:
    from google.cloud import bigquery

    from backfill_kit.warehouse import bigquery as bq

    project, dataset, table = target.split(".")
    resource: dict[str, Any] = {
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
        "schema": {"fields": [_field(c, t) for c, t in columns]},
    }
    if partition_column:
        partitioning: dict[str, Any] = {"type": "DAY", "field": partition_column}
        resource["timePartitioning"] = partitioning
        if require_filter:  # said at both levels: older readers look inside timePartitioning
            resource["requirePartitionFilter"] = partitioning["requirePartitionFilter"] = True
    client, retry = wh.client, bq.API_RETRY
    ds = bigquery.Dataset(f"{project}.{dataset}")
    if wh.location:
        ds.location = wh.location
    wh.call(f"creating dataset {project}.{dataset}", lambda: client.create_dataset(ds, exists_ok=True, retry=retry))
    wh.call(f"replacing table {target}", lambda: client.delete_table(target, not_found_ok=True, retry=retry))
    wh.call(
        f"creating table {target}", lambda: client.create_table(bigquery.Table.from_api_repr(resource), retry=retry)
    )


def _field(column: str, duck_type: str) -> dict[str, str]:
    repeated = duck_type.endswith("[]")
    base = duck_type.removesuffix("[]")
    kind = "NUMERIC" if base.startswith("DECIMAL") else TYPES.get(base)
    if kind is None:
        raise InputError(f"the demo column {column} has type {duck_type}, which the loader does not map to BigQuery")
    return {"name": column, "type": kind, "mode": "REPEATED" if repeated else "NULLABLE"}


def _load(wh: BigQueryWarehouse, target: str, parquet: Path) -> None:
    from google.cloud import bigquery

    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_APPEND
    )
    options = bigquery.ParquetOptions()
    options.enable_list_inference = True  # a Parquet list is a REPEATED column, not a record
    config.parquet_options = options

    def run() -> None:
        with parquet.open("rb") as data:
            wh.client.load_table_from_file(data, target, job_config=config, location=wh.location).result()

    wh.call(f"loading {target}", run)
