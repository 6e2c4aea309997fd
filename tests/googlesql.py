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

`Evaluator` runs queries on rows with the reference evaluator that ships beside the analyzer:
see its docstring for what it needs that BigQuery does not.

The WebAssembly module takes half a minute to compile: wasmtime's own code cache keeps the
compiled module in the user's cache folder (`code_cache`), as pip keeps its wheels, so later runs,
fresh clones included, start in a fraction of a second.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["Evaluator", "GoogleSQL", "RejectedQuery", "call_bounds", "start_analyzer"]

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


def _language() -> Any:
    """Every released feature, in external product mode (2)."""
    from zetasql.types import LanguageOptions, ProductMode

    language = LanguageOptions.maximum_features()
    language.product_mode = ProductMode.PRODUCT_EXTERNAL
    return language


def _catalog(language: Any) -> Any:
    """A catalog of the builtin functions, MAX_BY and MIN_BY (1)."""
    from zetasql.api import CatalogBuilder
    from zetasql.types import ZetaSQLBuiltinFunctionOptions

    builder = CatalogBuilder("bigquery").with_builtin_functions(
        ZetaSQLBuiltinFunctionOptions(language_options=language)
    )
    for function in _by_functions():
        builder.add_function(function)
    return builder.build()


def _options(language: Any, parameters: Mapping[str, Any]) -> Any:
    """Analyzer options: the language, UTC, and the query's named parameters with their types."""
    from zetasql.types import AnalyzerOptions

    declared = [AnalyzerOptions.QueryParameter(name=n, type=t) for n, t in parameters.items()]
    return AnalyzerOptions(language_options=language, default_timezone="UTC", query_parameters=declared)


class GoogleSQL:
    """An analyzer over a catalog of BigQuery tables, given as `tables.get` resources."""

    def __init__(self, resources: Iterable[Mapping[str, Any]]) -> None:
        self.language = _language()
        self.catalog = _catalog(self.language)
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

        try:
            Analyzer(_options(self.language, parameters), self.catalog).analyze_statement(sql)
        except ZetaSQLError as exc:
            raise RejectedQuery(f"GoogleSQL rejects this query: {exc}\n{sql}") from exc


# --- the reference evaluator ----------------------------------------------------------------

# A fully qualified name, `project`.`dataset`.`table` or `project`.`dataset`.INFORMATION_SCHEMA.PARTITIONS
TABLE_PATH = re.compile(r"`([^`]+)`\.`([^`]+)`\.(?:`([^`]+)`|(INFORMATION_SCHEMA\.PARTITIONS))")
BY_FUNCTION = re.compile(r"\b(MAX|MIN)_BY\(")
EPOCH = date(1970, 1, 1)
# The evaluator's output types, as a BigQuery result schema names them.
RESULT_TYPES = {
    "TYPE_STRING": "STRING",
    "TYPE_INT64": "INTEGER",
    "TYPE_DOUBLE": "FLOAT",
    "TYPE_BOOL": "BOOLEAN",
    "TYPE_DATE": "DATE",
    "TYPE_TIMESTAMP": "TIMESTAMP",
}


class Evaluator:
    """GoogleSQL's reference evaluator (ZetaSQL's, in the same WebAssembly module as the
    analyzer) over BigQuery tables given as `tables.get` resources and their rows.

    `answer(sql, parameters)` takes a query and its parameters as BigQuery's REST API receives
    them (`queryParameters`) and gives the result's columns (name, BigQuery type) and rows.
    What it takes that BigQuery does not, each done here only:

    1. Rows are set only on the catalog's top-level tables (the local service matches
       `table_content` to the catalog's own tables by name, not to its sub-catalogs' tables):
       every table sits at the top level under its dotted name, `p.ds.t`, and each
       `p`.`ds`.`t` in a query is written as the one name `p.ds.t` before evaluation. Each
       dataset's INFORMATION_SCHEMA.PARTITIONS likewise, as `p.ds.INFORMATION_SCHEMA.PARTITIONS`.
    2. MAX_BY and MIN_BY: the analyzer's catalog declares them (tests/googlesql.py, 1) but the
       evaluator has no implementation of a declared function. They are written as BigQuery's
       documentation defines them: ANY_VALUE(x HAVING MAX y), ANY_VALUE(x HAVING MIN y).
    3. INFORMATION_SCHEMA.PARTITIONS holds no rows of its own: its rows are made from the rows
       of the tables partitioned by day, as BigQuery keeps them: one per partition, its id
       YYYYMMDD, `__NULL__` for the rows whose partitioning column is NULL.
    4. The Python package's value objects drop TIMESTAMP values, so requests and responses are
       built as the service's own protocol buffers.

    Supported column types: STRING, INTEGER, FLOAT, BOOLEAN, DATE, TIMESTAMP, JSON (DATETIME and
    REPEATED records are not).
    """

    def __init__(self, resources: Iterable[Mapping[str, Any]], rows: Mapping[str, Sequence[Sequence[Any]]]) -> None:
        self.language = _language()
        self.catalog = _catalog(self.language)
        self.contents: dict[str, Any] = {}
        self.answered: list[str] = []  # the SQL of every query answered, as received
        partitions: dict[str, list[list[Any]]] = {}
        for resource in resources:
            name = _dotted(resource)
            fields = resource.get("schema", {}).get("fields", [])
            self.catalog.table.append(_table(name, fields))
            self.contents[name] = _content(fields, rows.get(name, ()))
            partitions.setdefault(name.rsplit(".", 1)[0], []).extend(_partitions(resource, rows.get(name, ())))
        for dataset, found in partitions.items():
            view = f"{dataset}.INFORMATION_SCHEMA.PARTITIONS"
            self.catalog.table.append(_table(view, PARTITIONS_VIEW))
            self.contents[view] = _content(PARTITIONS_VIEW, found)

    def answer(
        self, sql: str, parameters: Sequence[Mapping[str, Any]]
    ) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
        from zetasql.core.local_service import ZetaSqlLocalService
        from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2

        self.answered.append(sql)
        request = local_service_pb2.EvaluateQueryRequest()
        request.sql = _for_evaluator(sql)
        request.options.CopyFrom(
            _options(self.language, {p["name"]: _declared(p["parameterType"]) for p in parameters}).to_proto()
        )
        request.simple_catalog.CopyFrom(self.catalog.to_proto())
        for name, content in self.contents.items():
            request.table_content[name].CopyFrom(content)
        for parameter in parameters:
            given = request.params.add()
            given.name = parameter["name"]
            _set(given.value, parameter["parameterType"], parameter["parameterValue"])
        service = ZetaSqlLocalService.get_instance()
        response = service.wasm_client.call_grpc_func(
            "ZetaSqlLocalService_EvaluateQuery", request, local_service_pb2.EvaluateQueryResponse
        )
        columns = [(c.name, RESULT_TYPES[_kind_name(c.type.type_kind)]) for c in response.prepared.columns]
        rows = [tuple(_python(cell) for cell in row.cell) for row in response.content.table_data.row]
        return columns, rows


def _dotted(resource: Mapping[str, Any]) -> str:
    ref = resource["tableReference"]
    return f"{ref['projectId']}.{ref['datasetId']}.{ref['tableId']}"


def _for_evaluator(sql: str) -> str:
    """The query with each table path as one name (1) and MAX_BY/MIN_BY as ANY_VALUE (2)."""
    sql = TABLE_PATH.sub(lambda m: f"`{m[1]}.{m[2]}.{m[3] or m[4]}`", sql)
    while found := BY_FUNCTION.search(sql):
        close, comma = call_bounds(sql, found.end())
        value, by = sql[found.end() : comma], sql[comma + 1 : close]
        sql = f"{sql[: found.start()]}ANY_VALUE({value} HAVING {found[1]} {by.strip()}){sql[close + 1 :]}"
    return sql


def call_bounds(sql: str, start: int) -> tuple[int, int]:
    """The closing parenthesis of a call whose arguments start at `start`, and the comma of its
    last argument (-1 for one argument), outside nested parentheses and quotes."""
    depth, comma, quote = 0, -1, ""
    for i in range(start, len(sql)):
        ch = sql[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return i, comma
            depth -= 1
        elif ch == "," and depth == 0:
            comma = i
    raise ValueError(f"unbalanced call in {sql[start - 8 : start + 40]!r}")


def _partitions(resource: Mapping[str, Any], rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """PARTITIONS rows of a table partitioned by day on a column (3); none for the others."""
    partitioning = resource.get("timePartitioning") or {}
    if partitioning.get("type") != "DAY" or not partitioning.get("field"):
        return []
    names = [f["name"] for f in resource["schema"]["fields"]]
    at = names.index(partitioning["field"])
    counts: dict[str, int] = {}
    for row in rows:
        value = row[at]
        day = value.date() if isinstance(value, datetime) else value
        key = "__NULL__" if day is None else f"{day:%Y%m%d}"
        counts[key] = counts.get(key, 0) + 1
    ref = resource["tableReference"]
    return [
        [ref["projectId"], ref["datasetId"], ref["tableId"], key, n, None, None, None, None]
        for key, n in sorted(counts.items())
    ]


def _content(fields: Sequence[Mapping[str, Any]], rows: Iterable[Sequence[Any]]) -> Any:
    from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2

    content = local_service_pb2.TableContent()
    for row in rows:
        cells = content.table_data.row.add().cell
        for field, value in zip(fields, row, strict=True):
            _set_value(cells.add(), field["type"].upper(), value)
    return content


def _set_value(cell: Any, kind: str, value: Any) -> None:
    """One value into a ValueProto of a column of BigQuery type `kind`; None stays NULL."""
    if value is None:
        return
    if kind in ("STRING",):
        cell.string_value = str(value)
    elif kind in ("INTEGER", "INT64"):
        cell.int64_value = int(value)
    elif kind in ("FLOAT", "FLOAT64"):
        cell.double_value = float(value)
    elif kind in ("BOOLEAN", "BOOL"):
        cell.bool_value = bool(value)
    elif kind == "DATE":
        cell.date_value = (value - EPOCH).days
    elif kind == "TIMESTAMP":
        moment = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        cell.timestamp_value.FromDatetime(moment)
    elif kind == "JSON":
        cell.json_value = value
    else:
        raise NotImplementedError(f"the evaluator harness does not take {kind} values")


def _declared(wire_type: Mapping[str, Any]) -> Any:
    """A REST parameter type as the analyzer's type."""
    if wire_type["type"] == "ARRAY":
        return parameter_type(wire_type["arrayType"]["type"], array=True)
    return parameter_type(wire_type["type"])


def _set(cell: Any, wire_type: Mapping[str, Any], value: Mapping[str, Any]) -> None:
    """A REST parameter value (values are strings on the wire) into a ValueProto."""
    if wire_type["type"] == "ARRAY":
        kind = wire_type["arrayType"]["type"]
        elements = cell.array_value.element
        for item in value.get("arrayValues", []):
            _set_value(elements.add(), kind, _wire(kind, item.get("value")))
        if not elements:
            cell.array_value.SetInParent()  # an empty array, not NULL
        return
    _set_value(cell, wire_type["type"], _wire(wire_type["type"], value.get("value")))


def _wire(kind: str, text: str | None) -> Any:
    if text is None or kind in ("STRING", "JSON"):
        return text
    if kind in ("INTEGER", "INT64"):
        return int(text)
    raise NotImplementedError(f"the evaluator harness does not take {kind} parameters")


def _kind_name(kind: int) -> str:
    from zetasql.wasi._pb2.zetasql.public import type_pb2

    return str(type_pb2.TypeKind.Name(kind))


def _python(cell: Any) -> Any:
    """A result ValueProto as the Python value the BigQuery client hands over."""
    which = cell.WhichOneof("value")
    if which is None:
        return None
    if which == "date_value":
        return EPOCH + timedelta(days=cell.date_value)
    if which == "timestamp_value":
        return cell.timestamp_value.ToDatetime().replace(tzinfo=UTC)
    return getattr(cell, which)


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
