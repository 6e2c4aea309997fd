"""SQL for the warehouse contract, written once; dialect differences are data (`Dialect`).

Identifiers come from the validated spec and are quoted; every value is a query parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import CalendarRequest, CoverageTarget, RunHistoryRequest

__all__ = ["BIGQUERY", "DUCKDB", "Dialect", "calendar_sql", "coverage_sql", "recent_runs_sql", "run_history_sql"]


@dataclass(frozen=True)
class Dialect:
    quote: str  # identifier quote character
    param: str  # how a named parameter is written; {} is the name
    text_type: str
    int_type: str
    in_array: str  # membership test of a value in an array parameter
    seconds_between: str  # whole seconds from {a} to {b}
    json_text: str  # a JSON or REPEATED (array) value as JSON text; {} is the value
    # Columns that hold JSON or REPEATED values, read as JSON text: a backend that knows the
    # table's schema names them (a cast to text is refused for JSON, and wrong for arrays).
    json_columns: frozenset[str] = frozenset()
    pseudo_columns: frozenset[str] = frozenset()  # written bare, never quoted

    def ident(self, dotted: str) -> str:
        if dotted.upper() in self.pseudo_columns:
            return dotted.upper()
        q = self.quote
        return ".".join(f"{q}{part}{q}" for part in dotted.split("."))

    def p(self, name: str) -> str:
        return self.param.format(name)

    def contains(self, array_param: str, value: str) -> str:
        return self.in_array.format(array=self.p(array_param), value=value)

    def text(self, column: str) -> str:
        """A column's value as text: JSON text for the `json_columns`, else a cast."""
        if column.lower() in self.json_columns:
            return self.json_text.format(self.ident(column))
        return f"CAST({self.ident(column)} AS {self.text_type})"


DUCKDB = Dialect(quote='"', param="${}", text_type="VARCHAR", int_type="BIGINT",
                 in_array="list_contains({array}, {value})",
                 seconds_between="date_diff('second', {a}, {b})",
                 json_text="CAST(to_json({}) AS VARCHAR)")
# GoogleSQL: every query below is valid BigQuery SQL once written in this dialect (MAX_BY too);
# tests/test_googlesql.py type-checks them with Google's own analyzer. Date parameters are
# STRINGs ('2024-01-10'), which GoogleSQL coerces to the DATE, DATETIME or TIMESTAMP they are
# compared with (a DATE parameter against a TIMESTAMP column is a type error).
BIGQUERY = Dialect(quote="`", param="@{}", text_type="STRING", int_type="INT64",
                   in_array="{value} IN UNNEST({array})",
                   seconds_between="TIMESTAMP_DIFF({b}, {a}, SECOND)",
                   json_text="TO_JSON_STRING({})",
                   pseudo_columns=frozenset({"_PARTITIONTIME", "_PARTITIONDATE"}))


def _date_range(d: Dialect, column: str, partition: str | None = None) -> str:
    # Half-open on the day after the end, so TIMESTAMP columns keep the end date's rows.
    col = d.ident(column)
    condition = f"{col} >= {d.p('start')} AND {col} < {d.p('stop')}"
    if partition and partition.lower() != column.lower():
        # Partitioned on another column (or by ingestion time): a filter on it satisfies
        # require_partition_filter, and this one drops no row wherever it was written.
        part = d.ident(partition)
        condition += f" AND ({part} >= {d.p('partitions_from')} OR {part} IS NULL)"
    return condition


def calendar_sql(d: Dialect, req: CalendarRequest, partition: str | None = None) -> str:
    """Games per date of the schedule; `partition` names the table's partitioning column
    when it is not the date column."""
    games = f"COUNT(DISTINCT {d.ident(req.game_id_column)})" if req.game_id_column else "COUNT(*)"
    condition = _date_range(d, req.date_column, partition)
    if req.filter:
        condition += f" AND ({req.filter})"
    return (
        f"SELECT CAST({d.ident(req.date_column)} AS DATE) AS d, {games} AS games\n"
        f"FROM {d.ident(req.table)}\nWHERE {condition}\nGROUP BY 1\nORDER BY 1"
    )


def coverage_sql(d: Dialect, targets: Sequence[CoverageTarget], partitions: Sequence[str | None] = ()) -> str:
    """Rows per date of every target, in one query; `partitions` names, target by target, a
    partitioning column other than the date column (None: none or the same)."""
    # Grouped by the date alone: k is a literal, and BigQuery refuses to group by one.
    partitions = list(partitions) or [None] * len(targets)
    parts = [
        f"SELECT {i} AS k, CAST({d.ident(t.date_column)} AS DATE) AS d, COUNT(*) AS n "
        f"FROM {d.ident(t.table)} WHERE {_date_range(d, t.date_column, part)} GROUP BY 2"
        for i, (t, part) in enumerate(zip(targets, partitions, strict=True))
    ]
    return "\nUNION ALL\n".join(parts)


def run_history_sql(d: Dialect, r: RunHistoryRequest) -> str:
    """One row per (processor, date): attempts, failures, the latest run and the last error.

    A run writes a `running` row and then a final row; they are grouped by run id (or, without
    one, by their common start time) so that a run counts once and a run with no final row is
    seen as still running, or orphaned. Two GROUP BYs and MAX_BY, no window functions: this
    is the most expensive of a validation's three queries.
    """
    text, ident = d.text_type, d.ident
    run_key = f"CAST({ident(r.run_id)} AS {text})" if r.run_id else f"CAST({ident(r.started_at)} AS {text})"
    error = d.text(r.error) if r.error else f"CAST(NULL AS {text})"
    status = ident(r.status)
    category = (
        f"CASE WHEN {d.contains('running', status)} THEN 'running' "
        f"WHEN {d.contains('success', status)} THEN 'success' "
        f"WHEN {d.contains('failed', status)} THEN 'failed' "
        f"WHEN {d.contains('skipped', status)} THEN 'skipped' ELSE 'other' END"
    )
    seconds = d.seconds_between.format(a="started_at", b="finished_at")
    # MAX_BY skips NULL values on some engines; -1 stands in for "none" and is turned back.
    return f"""WITH rh AS (
  SELECT CAST({ident(r.processor)} AS {text}) AS processor, CAST({ident(r.date)} AS DATE) AS d,
         {category} AS category, CAST({status} AS {text}) AS status,
         {ident(r.started_at)} AS started_at, {ident(r.finished_at)} AS finished_at,
         CAST({ident(r.records)} AS {d.int_type}) AS records, {error} AS error, {run_key} AS run_key
  FROM {ident(r.table)}
  WHERE {_date_range(d, r.date)} AND {d.contains('processors', ident(r.processor))}
),
runs AS (
  SELECT processor, d, run_key, MIN(started_at) AS started_at, MAX(finished_at) AS finished_at,
    COALESCE(MAX(CASE WHEN category <> 'running' THEN category END), 'running') AS category,
    COALESCE(MAX(CASE WHEN category <> 'running' THEN status END), MAX(status)) AS status,
    MAX(CASE WHEN category <> 'running' THEN records END) AS records,
    MAX(CASE WHEN error NOT IN ('', '[]', 'null') THEN error END) AS error
  FROM rh
  GROUP BY processor, d, run_key
)
SELECT processor, d,
  COUNT(*) AS attempts,
  CAST(SUM(CASE WHEN category = 'failed' THEN 1 ELSE 0 END) AS {d.int_type}) AS failures,
  MAX_BY(category, started_at) AS latest_category,
  MAX_BY(status, started_at) AS latest_status,
  MAX(started_at) AS latest_started_at,
  NULLIF(MAX_BY(COALESCE({seconds}, -1), started_at), -1) AS latest_seconds,
  MAX(CASE WHEN category = 'success' THEN records END) AS best_success_records,
  MAX_BY(error, CASE WHEN error IS NOT NULL THEN started_at END) AS last_error
FROM runs
GROUP BY processor, d"""


def recent_runs_sql(d: Dialect, r: RunHistoryRequest) -> str:
    """The final rows of runs that finished since a moment, for the monitor's rate and failures.

    The date filter keeps a partitioned run history pruned to the range being watched.
    """
    ident, text = d.ident, d.text_type
    error = d.text(r.error) if r.error else f"CAST(NULL AS {text})"
    status = ident(r.status)
    finished = ident(r.finished_at)
    return f"""SELECT CAST({ident(r.processor)} AS {text}) AS processor, CAST({ident(r.date)} AS DATE) AS d,
  CASE WHEN {d.contains('success', status)} THEN 'success' WHEN {d.contains('failed', status)} THEN 'failed'
       WHEN {d.contains('skipped', status)} THEN 'skipped' ELSE 'other' END AS category,
  {finished} AS finished_at, {d.seconds_between.format(a=ident(r.started_at), b=finished)} AS seconds, {error} AS error
FROM {ident(r.table)}
WHERE {_date_range(d, r.date)} AND {d.contains('processors', ident(r.processor))}
  AND {finished} >= {d.p('since')} AND NOT {d.contains('running', status)}
ORDER BY {finished}"""
