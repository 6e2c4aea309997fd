"""Google's GoogleSQL analyzer (ZetaSQL), offline, for type-checking the BigQuery backend's SQL.

The BigQuery emulator runs DuckDB underneath and accepts SQL that BigQuery refuses (a DATE
parameter against a TIMESTAMP column, a cast from JSON to STRING). ZetaSQL is the analyzer
that defines GoogleSQL; PyPI's `zetasql` (pinned in the `test` extra) is a WebAssembly build of
it with a Python API, run in-process by wasmtime: no network, no service, no credentials.
Its errors are BigQuery's own words ("No matching signature for operator >= for argument
types: TIMESTAMP, DATE").

The catalog is built from BigQuery's own table resources (`tables.get`): columns with their
types and modes, the pseudo-columns of ingestion-time tables, and each dataset's
INFORMATION_SCHEMA.PARTITIONS view. What ZetaSQL lacks and BigQuery has, added here:

1. MAX_BY / MIN_BY (BigQuery's synonyms of ANY_VALUE(x HAVING MAX y)): declared as aggregate
   functions of any value, ordered by any value, returning the value's type.
2. Language features: every released ZetaSQL feature, in external product mode (BigQuery's
   types: INT64 and FLOAT64, no INT32 or UINT64). That is a superset of BigQuery's features, so
   this catches type errors, unknown names and unknown functions, not every feature gap.

The WebAssembly module takes half a minute to compile: wasmtime's own code cache keeps the
compiled module in the user's cache folder (`code_cache`), as pip keeps its wheels, so later runs,
fresh clones included, start in a fraction of a second.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["GoogleSQL", "RejectedQuery", "start_analyzer"]

# tables.get's field types, and the ZetaSQL type kind of each
SCALAR_KINDS = {
    "STRING": "TYPE_STRING",
    "BYTES": "TYPE_BYTES",
    "INTEGER": "TYPE_INT64",
    "INT64": "TYPE_INT64",
    "FLOAT": "TYPE_DOUBLE",
    "FLOAT64": "TYPE_DOUBLE",
    "NUMERIC": "TYPE_NUMERIC",
    "BIGNUMERIC": "TYPE_BIGNUMERIC",
    "BOOLEAN": "TYPE_BOOL",
    "BOOL": "TYPE_BOOL",
    "TIMESTAMP": "TYPE_TIMESTAMP",
    "DATE": "TYPE_DATE",
    "TIME": "TYPE_TIME",
    "DATETIME": "TYPE_DATETIME",
    "JSON": "TYPE_JSON",
    "GEOGRAPHY": "TYPE_GEOGRAPHY",
    "INTERVAL": "TYPE_INTERVAL",
}
# INFORMATION_SCHEMA.PARTITIONS, as BigQuery documents it
PARTITIONS_VIEW = [
    {"name": "table_catalog", "type": "STRING"},
    {"name": "table_schema", "type": "STRING"},
    {"name": "table_name", "type": "STRING"},
    {"name": "partition_id", "type": "STRING"},
    {"name": "total_rows", "type": "INTEGER"},
    {"name": "total_logical_bytes", "type": "INTEGER"},
    {"name": "total_billable_bytes", "type": "INTEGER"},
    {"name": "last_modified_time", "type": "TIMESTAMP"},
    {"name": "storage_tier", "type": "STRING"},
]


class RejectedQuery(AssertionError):
    """The analyzer refused a query, in its own words."""


def _type(field: Mapping[str, Any]) -> Any:
    """The ZetaSQL type of one field of a BigQuery schema (nested records, repeated modes)."""
    from zetasql.types import ArrayType, StructField, StructType, Type, TypeKind

    kind = field["type"].upper()
    if kind in ("RECORD", "STRUCT"):
        fields = [StructField(field_name=f["name"], field_type=_type(f)) for f in field.get("fields", [])]
        value = Type(type_kind=TypeKind.TYPE_STRUCT, struct_type=StructType(field=fields))
    else:
        value = Type(type_kind=getattr(TypeKind, SCALAR_KINDS[kind]))
    if field.get("mode") == "REPEATED":
        return Type(type_kind=TypeKind.TYPE_ARRAY, array_type=ArrayType(element_type=value))
    return value


def parameter_type(bq_type: str, array: bool = False) -> Any:
    """The ZetaSQL type of a query parameter, from its BigQuery type name."""
    return _type({"name": "", "type": bq_type, "mode": "REPEATED" if array else "NULLABLE"})


def _table(name: str, fields: Iterable[Mapping[str, Any]], pseudo: Mapping[str, str] = {}) -> Any:
    from zetasql.types import SimpleColumn, SimpleTable

    columns = [SimpleColumn(name=f["name"], type=_type(f)) for f in fields]
    columns += [SimpleColumn(name=n, type=_type({"type": t}), is_pseudo_column=True) for n, t in pseudo.items()]
    return SimpleTable(name=name, column=columns)


def _pseudo_columns(resource: Mapping[str, Any]) -> dict[str, str]:
    """An ingestion-time partitioned table's _PARTITIONTIME (and, by day, _PARTITIONDATE)."""
    partitioning = resource.get("timePartitioning")
    if partitioning is None or partitioning.get("field"):
        return {}
    found = {"_PARTITIONTIME": "TIMESTAMP"}
    if partitioning.get("type", "DAY") == "DAY":
        found["_PARTITIONDATE"] = "DATE"
    return found


def _child(catalog: Any, name: str) -> Any:
    from zetasql.types import SimpleCatalog

    for sub in catalog.catalog:
        if sub.name == name:
            return sub
    sub = SimpleCatalog(name=name)
    catalog.catalog.append(sub)
    return sub


def _by_functions() -> list[Any]:
    """MAX_BY(x, y) and MIN_BY(x, y): BigQuery functions ZetaSQL does not have."""
    from zetasql.types import (
        Function,
        FunctionArgumentType,
        FunctionEnums,
        FunctionSignature,
        SignatureArgumentKind,
    )

    def arg(kind: Any) -> Any:
        return FunctionArgumentType(kind=kind)

    any1, any2 = SignatureArgumentKind.ARG_TYPE_ANY_1, SignatureArgumentKind.ARG_TYPE_ANY_2
    signature = FunctionSignature(argument=[arg(any1), arg(any2)], return_type=arg(any1))
    return [
        Function(name_path=[name], group="BigQuery", mode=FunctionEnums.Mode.AGGREGATE, signature=[signature])
        for name in ("MAX_BY", "MIN_BY")
    ]


class GoogleSQL:
    """An analyzer over a catalog of BigQuery tables, given as `tables.get` resources."""

    def __init__(self, resources: Iterable[Mapping[str, Any]]) -> None:
        from zetasql.api import CatalogBuilder
        from zetasql.types import LanguageOptions, ProductMode, ZetaSQLBuiltinFunctionOptions

        self.language = LanguageOptions.maximum_features()
        self.language.product_mode = ProductMode.PRODUCT_EXTERNAL
        builder = CatalogBuilder("bigquery").with_builtin_functions(
            ZetaSQLBuiltinFunctionOptions(language_options=self.language)
        )
        for function in _by_functions():
            builder.add_function(function)
        self.catalog = builder.build()
        for resource in resources:
            self.add(resource)

    def add(self, resource: Mapping[str, Any]) -> None:
        """A table at `project`.`dataset`.`table`, and its dataset's PARTITIONS view."""
        ref = resource["tableReference"]
        dataset = _child(_child(self.catalog, ref["projectId"]), ref["datasetId"])
        fields = resource.get("schema", {}).get("fields", [])
        dataset.table.append(_table(ref["tableId"], fields, _pseudo_columns(resource)))
        views = _child(dataset, "INFORMATION_SCHEMA")
        if not views.table:
            views.table.append(_table("PARTITIONS", PARTITIONS_VIEW))

    def check(self, sql: str, parameters: Mapping[str, Any]) -> None:
        """Analyze one query with typed named parameters; RejectedQuery if GoogleSQL refuses it."""
        from zetasql.api import Analyzer
        from zetasql.core.exceptions import ZetaSQLError
        from zetasql.types import AnalyzerOptions

        declared = [AnalyzerOptions.QueryParameter(name=n, type=t) for n, t in parameters.items()]
        options = AnalyzerOptions(language_options=self.language, default_timezone="UTC", query_parameters=declared)
        try:
            Analyzer(options, self.catalog).analyze_statement(sql)
        except ZetaSQLError as exc:
            raise RejectedQuery(f"GoogleSQL rejects this query: {exc}\n{sql}") from exc


def code_cache() -> Path | None:
    """$XDG_CACHE_HOME/backfill-kit-tests/googlesql (else ~/.cache/...): wasmtime keys what it
    keeps there by the module's hash and its own version, so every checkout can share it. None
    when it cannot be made: then the module is compiled anew."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "backfill-kit-tests" / "googlesql"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def start_analyzer(cache_dir: Path) -> None:
    """Load the WebAssembly analyzer once per process, compiled code cached in `cache_dir`."""
    import zetasql.core.wasm_client as wasm_client
    from zetasql.core.local_service import ZetaSqlLocalService

    settings = cache_dir / "wasmtime-cache.toml"
    settings.write_text(f'[cache]\ndirectory = "{cache_dir / "code"}"\n')
    plain = wasm_client.Config

    def cached_config() -> Any:
        config = plain()
        config.cache = str(settings)
        return config

    wasm_client.Config = cached_config  # type: ignore[misc, assignment]  # the one place it builds an Engine
    try:
        ZetaSqlLocalService.get_instance()
    finally:
        wasm_client.Config = plain  # type: ignore[misc]
