"""SQL for the warehouse contract, written once; dialect differences are data (`Dialect`).

Identifiers come from the validated spec and are quoted; every value is a query parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

from backfill_kit.warehouse.base import CalendarRequest, CoverageTarget, RunHistoryRequest

__all__ = [
    "BIGQUERY",
    "DUCKDB",
    "NO_ERROR",
    "Dialect",
    "PartitionBound",
    "calendar_sql",
    "coverage_sql",
    "range_params",
    "recent_runs_sql",
    "run_history_params",
    "run_history_sql",
]


@dataclass(frozen=True)
class Dialect:
    quote: str  # identifier quote character
    param: str  # how a named parameter is written; {} is the name
    text_type: str
    int_type: str
    in_array: str  # membership test of a value in an array parameter
    seconds_between: str  # whole seconds from {a} to {b}
    date_array: str  # every date from {a} to {b}, inclusive; empty when {b} is before {a}
    json_text: str  # any non-NULL column (JSON, REPEATED, text) as JSON text, e.g. an error list
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


# How each dialect spells what differs, side by side: (DuckDB, GoogleSQL). GoogleSQL: every
# query below is valid BigQuery SQL once written in this dialect (MAX_BY too);
# tests/test_googlesql.py type-checks them with Google's own analyzer. Date parameters are
# STRINGs ('2024-01-10'), which GoogleSQL coerces to the DATE, DATETIME or TIMESTAMP they are
# compared with (a DATE parameter against a TIMESTAMP column is a type error).
_SPELLINGS: dict[str, tuple[str, str]] = {
    "quote": ('"', "`"),
    "param": ("${}", "@{}"),
    "text_type": ("VARCHAR", "STRING"),
    "int_type": ("BIGINT", "INT64"),
    "in_array": ("list_contains({array}, {value})", "{value} IN UNNEST({array})"),
    "seconds_between": ("date_diff('second', {a}, {b})", "TIMESTAMP_DIFF({b}, {a}, SECOND)"),
    "date_array": ("CAST(generate_series({a}, {b}, INTERVAL 1 DAY) AS DATE[])", "GENERATE_DATE_ARRAY({a}, {b})"),
    "json_text": ("CAST(to_json({}) AS VARCHAR)", "TO_JSON_STRING({})"),
}


def _dialect(column: int, pseudo_columns: frozenset[str] = frozenset()) -> Dialect:
    return Dialect(**{name: spellings[column] for name, spellings in _SPELLINGS.items()}, pseudo_columns=pseudo_columns)


DUCKDB = _dialect(0)
BIGQUERY = _dialect(1, pseudo_columns=frozenset({"_PARTITIONTIME", "_PARTITIONDATE"}))


# The JSON texts of an error column that hold no error: JSON null, an empty list (JSON or
# REPEATED), an empty text, and a text holding one of those. They read as NULL, so that a
# later attempt that recorded none never hides an earlier attempt's message. GoogleSQL's
# TO_JSON_STRING(NULL) is 'null' too, where DuckDB's to_json(NULL) is NULL: both read NULL.
NO_ERROR = ("null", "[]", '""', '"null"', '"[]"')


def _error_text(d: Dialect, column: str) -> str:
    """The error column as JSON text, NULL when it holds no error (NO_ERROR)."""
    text, none = d.json_text.format(column), ", ".join(f"'{t}'" for t in NO_ERROR)
    return f"CASE WHEN {text} IN ({none}) THEN NULL ELSE {text} END"


def range_params(start: date, end: date) -> dict[str, date]:
    """The `start` and `stop` parameters of `_date_range`: half-open on the day after the end,
    so that TIMESTAMP columns keep the end date's rows."""
    return {"start": start, "stop": _shift(end, timedelta(days=1))}


class PartitionBound(NamedTuple):
    """A table's partitioning column, and the parameter holding the lowest value of its type."""

    column: str
    floor: str = "partitions_from"


def _date_range(d: Dialect, column: str, partition: PartitionBound | None = None) -> str:
    col = d.ident(column)
    condition = f"{col} >= {d.p('start')} AND {col} < {d.p('stop')}"
    if partition and partition.column.lower() != column.lower():
        # Partitioned on another column (a time, ingestion time, an integer range, a hive key):
        # a predicate on it alone satisfies require_partition_filter, and this one drops no row.
        part = d.ident(partition.column)
        condition += f" AND ({part} >= {d.p(partition.floor)} OR {part} IS NULL)"
    return condition


def calendar_sql(d: Dialect, req: CalendarRequest, partition: PartitionBound | None = None) -> str:
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


def coverage_sql(
    d: Dialect, targets: Sequence[CoverageTarget], partitions: Sequence[PartitionBound | None] = ()
) -> str:
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


def run_history_params(r: RunHistoryRequest, processors: Sequence[str], start: date, end: date) -> dict[str, object]:
    """The parameters of `run_history_sql` and `recent_runs_sql`, the same on every backend.

    `start`/`stop` bound the scan of the date column (half-open); when rows can stand for a
    range, they are widened by max_range_days, and `first_day`/`last_day` (DATE) are the dates
    asked about."""
    params: dict[str, object] = {
        **range_params(start, end),
        "processors": list(processors),
        "running": list(r.running),
        "success": list(r.success),
        "failed": list(r.failed),
        "skipped": list(r.skipped),
    }
    if r.range_start or r.range_end:
        widen = timedelta(days=r.max_range_days)
        params |= {
            "start": _shift(start, -widen),
            "stop": _shift(end, widen + timedelta(days=1)),
            "first_day": start,
            "last_day": end,
        }
    params.update({f"no_data_{i}": list(values) for i, (_, values) in enumerate(r.no_data_reasons)})
    return params


def _shift(day: date, by: timedelta) -> date:
    try:
        return day + by
    except OverflowError:  # past year 9999 or before year 1: the scan is unbounded on that side
        return date.max if by > timedelta(0) else date.min


def _history_rows(d: Dialect, r: RunHistoryRequest) -> str:
    """The run-history rows of the scan, typed and categorised, each with the dates it covers.

    Category: running, success, failed, no_data (a failed or skipped row with a no-data
    reason), ignored (a skip for another reason: no evidence) or other (a status the spec does
    not map: no evidence either, and named in a warning)."""
    text, ident = d.text_type, d.ident
    status = ident(r.status)
    day = f"CAST({ident(r.date)} AS DATE)"
    first = f"COALESCE(CAST({ident(r.range_start)} AS DATE), {day})" if r.range_start else day
    last = f"COALESCE(CAST({ident(r.range_end)} AS DATE), {day})" if r.range_end else day
    matches = [
        (column, d.contains(f"no_data_{i}", f"CAST({ident(column)} AS {text})"))
        for i, (column, _) in enumerate(r.no_data_reasons)
    ]
    reasons = " OR ".join(test for _, test in matches)
    # Which reason matched, e.g. 'failure_category no_data_available', to show why.
    reason = (
        (
            "CASE "
            + " ".join(f"WHEN {test} THEN '{column} ' || CAST({ident(column)} AS {text})" for column, test in matches)
            + " END"
        )
        if matches
        else f"CAST(NULL AS {text})"
    )
    no_data = (
        f"WHEN ({d.contains('failed', status)} OR {d.contains('skipped', status)}) AND ({reasons}) THEN 'no_data' "
        if reasons
        else ""
    )
    skip = "'ignored'" if reasons else "'no_data'"
    category = (
        f"CASE WHEN {d.contains('running', status)} THEN 'running' "
        f"WHEN {d.contains('success', status)} THEN 'success' {no_data}"
        f"WHEN {d.contains('failed', status)} THEN 'failed' "
        f"WHEN {d.contains('skipped', status)} THEN {skip} ELSE 'other' END"
    )
    error = _error_text(d, ident(r.error)) if r.error else f"CAST(NULL AS {text})"
    run_id = f"CAST({ident(r.run_id)} AS {text})" if r.run_id else f"CAST(NULL AS {text})"
    return f"""SELECT CAST({ident(r.processor)} AS {text}) AS processor, {first} AS first_d, {last} AS last_d,
    {category} AS category, CAST({status} AS {text}) AS status, {reason} AS reason,
    CAST({ident(r.started_at)} AS TIMESTAMP) AS started_at, CAST({ident(r.finished_at)} AS TIMESTAMP) AS finished_at,
    CAST({ident(r.records)} AS {d.int_type}) AS records, {error} AS error, {run_id} AS run_id
  FROM {ident(r.table)}
  WHERE {_date_range(d, r.date)} AND {d.contains("processors", ident(r.processor))}"""


def _attempts(d: Dialect, r: RunHistoryRequest) -> str:
    """CTEs ending in `attempts`: one row per attempt and date it covers, inside the dates
    asked about. An attempt is the rows of one processor, range, run id (NULL pairs with NULL)
    and start: a `running` row and its final row. Runs that share a run id but not a start,
    or have no run id, are never merged. One GROUP BY, no window: the cheapest pairing."""
    if r.range_start or r.range_end:
        # Only range rows pay for the expansion; a single-date row keeps its date when asked about.
        days = d.date_array.format(a=f"GREATEST(first_d, {d.p('first_day')})", b=f"LEAST(last_d, {d.p('last_day')})")
        covered = (
            f"(SELECT *, first_d AS on_date FROM paired WHERE first_d = last_d "
            f"AND first_d >= {d.p('first_day')} AND first_d <= {d.p('last_day')}\n"
            f"   UNION ALL\n   SELECT paired.*, on_date FROM paired, UNNEST({days}) AS on_date "
            f"WHERE first_d <> last_d) AS covered"
        )
    else:  # every row covers its own date, already inside the scan
        covered = "(SELECT *, first_d AS on_date FROM paired) AS covered"
    seconds = d.seconds_between.format(a="started_at", b="finished_at")
    final = "category <> 'running'"
    return f"""rh AS (
  {_history_rows(d, r)}
),
paired AS (
  SELECT processor, first_d, last_d, run_id, started_at,
    COALESCE(MAX(CASE WHEN {final} THEN category END), 'running') AS category,
    COALESCE(MAX(CASE WHEN {final} THEN status END), MAX(status)) AS status,
    MAX(CASE WHEN {final} THEN reason END) AS reason, MAX(finished_at) AS finished_at,
    MAX(CASE WHEN {final} THEN records END) AS records,
    MAX_BY(error, CASE WHEN {final} AND error IS NOT NULL THEN finished_at END) AS error
  FROM rh
  GROUP BY processor, first_d, last_d, run_id, started_at
),
attempts AS (
  SELECT processor, on_date, category, status, reason, first_d <> last_d AS from_range, started_at, finished_at,
    {seconds} AS seconds, run_id, CASE WHEN first_d = last_d THEN records END AS records, error
  FROM {covered}
)"""


# Latest first: evidence before no evidence, then later start, later finish, larger run id.
_LATEST = (
    "CASE WHEN category IN ('ignored', 'other') THEN 0 ELSE 1 END DESC, started_at DESC, "
    "finished_at DESC NULLS LAST, run_id DESC NULLS LAST, status DESC"
)


def run_history_sql(d: Dialect, r: RunHistoryRequest) -> str:
    """One row per (processor, date): attempts, failures, the latest attempt (one row: its
    category, status, start and duration), the last error and the unmapped statuses.

    A range row counts on every date of its range inside the dates asked about. The latest
    attempt and the last error are each picked by a total order, so that two runs started at
    the same moment give the same answer every time. Also: the no-data reason of the latest
    attempt (when it had nothing to load) and how many attempts were range runs.
    """
    return f"""WITH {_attempts(d, r)},
ranked AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY processor, on_date ORDER BY {_LATEST}) AS nth
  FROM attempts
)
SELECT processor, on_date AS d,
  COUNT(*) AS attempts,
  CAST(SUM(CASE WHEN category = 'failed' THEN 1 ELSE 0 END) AS {d.int_type}) AS failures,
  MAX(CASE WHEN nth = 1 THEN category END) AS latest_category,
  MAX(CASE WHEN nth = 1 THEN status END) AS latest_status,
  MAX(CASE WHEN nth = 1 THEN started_at END) AS latest_started_at,
  MAX(CASE WHEN nth = 1 THEN seconds END) AS latest_seconds,
  MAX(CASE WHEN category = 'success' THEN records END) AS best_success_records,
  MIN_BY(error, CASE WHEN category IN ('failed', 'no_data') AND error IS NOT NULL THEN nth END)
    AS last_error,  -- of the latest failure or no-data attempt that recorded one (nth is unique: one pick)
  -- Not DISTINCT: that splits the aggregation in two and joins them (a third of the time at
  -- 1,000 tables); a status may repeat, once per attempt, and its readers count it once.
  STRING_AGG(CASE WHEN category = 'other' THEN COALESCE(status, '(no status)') END, '|') AS unmapped_statuses,
  MAX(CASE WHEN nth = 1 AND category = 'no_data' THEN reason END) AS latest_reason,
  CAST(SUM(CASE WHEN from_range THEN 1 ELSE 0 END) AS {d.int_type}) AS range_attempts
FROM ranked
GROUP BY processor, on_date"""


def recent_runs_sql(d: Dialect, r: RunHistoryRequest) -> str:
    """The final rows of runs that finished since a moment, for the monitor's rate and failures;
    a range run once per date of its range inside the dates watched.

    The date filter keeps a partitioned run history pruned to the range being watched.
    """
    return f"""WITH {_attempts(d, r)}
SELECT processor, on_date AS d,
  CASE WHEN category IN ('success', 'failed', 'no_data') THEN category ELSE 'other' END AS category,
  finished_at, seconds, error
FROM attempts
WHERE category <> 'running' AND finished_at >= {d.p("since")}
ORDER BY finished_at, processor, on_date"""
