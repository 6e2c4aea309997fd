"""Draft a pipeline spec from what the warehouse says about itself, and compare a spec with it.

The draft reads table metadata, rows per date (partition metadata on BigQuery) and a few
GROUP BY queries on the run history; it writes nothing to the warehouse. Every guess is written
with a YAML comment giving its evidence, and what cannot be known (the backfill commands, the
calendar's filter, bootstrap days) is left as a clearly marked TODO: the draft validates at once,
and `plan`/`run` refuse it until the job placeholder is replaced.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from backfill_kit.errors import InputError
from backfill_kit.warehouse.catalog import ALL_DATES, Catalog, TableInfo

TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")

__all__ = [
    "PLACEHOLDER_COMMAND",
    "Difference",
    "Draft",
    "DraftTable",
    "diff_spec",
    "draft_spec",
    "refuse_placeholder_jobs",
    "render_draft",
    "write_draft",
]

PLACEHOLDER_COMMAND = "TODO-replace-with-your-backfill-command"
PLACEHOLDER_PROCESSOR = "TODO_processor_of_{id}"
UPSTREAM_SAMPLE = 50  # runs per processor read for their recorded upstream checks


# --- what the draft says -------------------------------------------------------------------


@dataclass
class DraftTable:
    id: str
    table: str
    date_column: str
    date_evidence: str
    processor: str | None  # None: not found; a placeholder is written
    processor_evidence: str
    phase: str = ""
    phase_evidence: str = ""
    min_rows: int = 1
    min_rows_evidence: str = "no rows to measure: the default"
    depends_on: list[str] = field(default_factory=list)
    depends_evidence: str = ""
    rows: dict[date, int] = field(default_factory=dict)
    partition_column: str | None = None


@dataclass
class DraftPhase:
    name: str
    evidence: str
    tables: list[DraftTable]
    mode: str = "parallel"
    mode_evidence: str = "no dependency inside the phase: its tables may run together"


@dataclass
class DraftRunHistory:
    table: str
    evidence: str
    columns: dict[str, tuple[str, str]]  # spec field -> (column, evidence)
    statuses: dict[str, list[str]]
    status_counts: dict[str, int]
    unmapped: list[str]
    no_data_reasons: dict[str, list[str]]
    reason_counts: dict[str, dict[str, int]]
    phase_column: str | None
    output_columns: tuple[str | None, str | None]
    upstream_column: str | None
    longest_range: tuple[int, int] | None = None  # days, range runs


@dataclass
class DraftCalendar:
    table: str | None
    date_column: str
    evidence: str
    game_id_column: str | None
    filter_columns: list[str]
    seasons: list[tuple[str, date, date, int]]  # name, start, end, dates
    gap_days: int


@dataclass
class Draft:
    name: str
    source: str
    warehouse: dict[str, Any]
    calendar: DraftCalendar
    run_history: DraftRunHistory
    phases: list[DraftPhase]
    left_out: list[tuple[str, str]]  # table, why
    processors_unmatched: list[str]
    catalog: dict[str, TableInfo] = field(default_factory=dict)  # every table read, by name

    @property
    def tables(self) -> list[DraftTable]:
        return [t for p in self.phases for t in p.tables]


# --- naming --------------------------------------------------------------------------------

_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+\d*|[A-Z]+\d*|\d+")
GENERIC_WORDS = frozenset(
    {
        "processor",
        "job",
        "task",
        "loader",
        "load",
        "etl",
        "build",
        "builder",
        "step",
        "runner",
        "pipeline",
        "ingest",
        "sync",
        "refresh",
        "update",
        "writer",
    }
)


def words(name: str) -> list[str]:
    """`PlayerGameSummaryProcessor`, `load_player_game_summary` -> player, game, summary."""
    found = [w.lower() for part in re.split(r"[^A-Za-z0-9]+", name) for w in _CAMEL.findall(part)]
    return [w for w in found if w not in GENERIC_WORDS]


def camel(snake: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in snake.split("_"))


def name_score(processor: str, table: str) -> float:
    """0..1: how well a processor's name names a table; abbreviations (pbp) and prefixes
    (betting ~ bettingpros) count."""
    p, t = words(processor), words(table)
    if not p or not t:
        return 0.0
    if p == t:
        return 1.0
    covered: set[int] = set()
    matched = 0
    for w in p:
        hit = _cover(w, t, covered)
        if hit:
            matched += 1
            covered.update(hit)
    return (matched + len(covered)) / (len(p) + len(t))


def _cover(w: str, t: list[str], taken: set[int]) -> list[int]:
    for i, x in enumerate(t):
        if i not in taken and (x == w or (min(len(x), len(w)) >= 4 and (x.startswith(w) or w.startswith(x)))):
            return [i]
    for i in range(len(t)):  # an abbreviation of consecutive words: pbp = play_by_play
        for j in range(i + 2, len(t) + 1):
            if "".join(x[0] for x in t[i:j]) == w and not taken & set(range(i, j)):
                return list(range(i, j))
    return []


def phase_label(value: str) -> str:
    """`phase_3_analytics` -> analytics; other values are kept."""
    label = re.sub(r"^phase_?\d+_?", "", value)
    return label or value


def _phase_number(value: str) -> int | None:
    m = re.match(r"^phase_?(\d+)", value)
    return int(m.group(1)) if m else None


# --- the run history -----------------------------------------------------------------------

# For each spec field: (kinds accepted, name patterns in order of preference).
_RH_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "processor": (
        ("text",),
        (r"processor(_name)?", r"(job|task|step|loader|pipeline)(_name)?", r"(?!parent).*(processor|job|task).*"),
    ),
    "status": (("text",), (r"(run_)?status", r"state|outcome|result")),
    "date": (
        ("date", "timestamp"),
        (r"data_date", r"(target|partition|business|for|logical)_date", r"(?!.*(range|start|end|from|until)).*date"),
    ),
    "started_at": (("timestamp",), (r"started_at|start_time|started", r".*start.*")),
    "finished_at": (
        ("timestamp",),
        (r"processed_at|finished_at|ended_at|completed_at|end_time", r".*(finish|complete|processed|end).*"),
    ),
    "records": (("int",), (r"records_processed|rows_written|row_count|records|rows", r".*(record|rows).*")),
    "error": (("json", "text", "other"), (r"errors?", r"error_message|.*error.*")),
    "run_id": (("text", "int"), (r"run_id", r"(execution|attempt|invocation)_id")),
    "range_start": (("date",), (r"date_range_filter_start|range_start|date_range_start",)),
    "range_end": (("date",), (r"date_range_filter_end|range_end|date_range_end",)),
}
_EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "phase": (r"phase|stage|layer",),
    "output_dataset": (r"output_dataset|target_dataset|destination_dataset",),
    "output_table": (r"output_table|target_table|destination_table",),
    "upstream": (r"upstream_dependencies|upstream_tables|upstream|dependencies",),
}
_REASON_COLUMNS = (r"failure_category|skip_reason|.*reason|.*category",)
_STATUS_WORDS = {
    "running": ("running", "started", "start", "in_progress", "pending", "queued"),
    "success": ("success", "succeeded", "successful", "ok", "done", "complete", "completed", "partial", "finished"),
    "failed": ("failed", "failure", "fail", "error", "errored", "timeout", "timed_out", "crashed", "aborted"),
    "skipped": ("skipped", "skip", "noop", "no_op"),
}
_NO_DATA = re.compile(r"no_?data|nothing_to_(load|do)|empty_source")
REQUIRED_RH = ("processor", "status", "date", "started_at", "finished_at", "records")


def _pick_column(table: TableInfo, kinds: tuple[str, ...], patterns: tuple[str, ...], taken: set[str]) -> str | None:
    for pattern in patterns:
        for c in table.columns:
            if c.kind in kinds and c.name not in taken and re.fullmatch(pattern, c.name.lower()):
                return c.name
    return None


def _map_run_history(table: TableInfo) -> dict[str, str]:
    mapped: dict[str, str] = {}
    for name, (kinds, patterns) in _RH_FIELDS.items():
        found = _pick_column(table, kinds, patterns, set(mapped.values()))
        if found:
            mapped[name] = found
    if ("range_start" in mapped) != ("range_end" in mapped):  # a range needs both ends
        mapped.pop("range_start", None)
        mapped.pop("range_end", None)
    return mapped


def given_run_history(
    tables: Sequence[TableInfo], table: str, columns: Mapping[str, str]
) -> tuple[TableInfo, dict[str, str]] | None:
    """The run history as a spec maps it (its table, a column per field), when the warehouse
    has that table with those columns: what the other columns mean is still read from their
    names. None when it has not: the history is then found as a draft finds it."""
    info = next((t for t in tables if t.name == table), None)
    if info is None or not all(info.has(c) for c in columns.values()):
        return None
    return info, {**_map_run_history(info), **columns}


def find_run_history(tables: Sequence[TableInfo]) -> tuple[TableInfo, dict[str, str]]:
    scored = [(len(m), t, m) for t in tables if all(f in (m := _map_run_history(t)) for f in REQUIRED_RH)]
    if not scored:
        raise InputError(
            "no run-history table found: none has a processor (or job) name, a status, a data date, "
            "started and finished timestamps and a records count. Name the datasets that hold it with --dataset, "
            "or write the spec's run_history section by hand (see the README, 'The spec')."
        )
    _, table, mapped = max(scored, key=lambda s: (s[0], s[1].name))
    return table, mapped


# --- SQL on the run history (dialect-neutral, parameters only) -----------------------------


@dataclass(frozen=True)
class _RH:
    catalog: Catalog
    table: str
    cols: dict[str, str]
    window: tuple[date, date]

    def ident(self, key: str) -> str:
        return self.catalog.dialect.ident(self.cols[key])

    def text(self, key: str) -> str:
        return f"CAST({self.ident(key)} AS {self.catalog.dialect.text_type})"

    def where(self) -> str:
        d = self.catalog.dialect
        return f"{self.ident('date')} >= {d.p('start')} AND {self.ident('date')} < {d.p('stop')}"

    def params(self, **more: Any) -> dict[str, Any]:
        return {"start": self.window[0], "stop": self.window[1] + timedelta(days=1), **more}

    def run(self, purpose: str, sql: str, **more: Any) -> list[tuple[Any, ...]]:
        return self.catalog.query(purpose, sql, self.params(**more))

    @property
    def source(self) -> str:
        return self.catalog.dialect.ident(self.catalog.qualified(self.table))


def _profile(rh: _RH) -> list[tuple[Any, ...]]:
    """Rows per (processor, status[, phase, output dataset, output table]) and their dates."""
    keys = ["processor", "status"] + [k for k in ("phase", "output_dataset", "output_table") if k in rh.cols]
    select = ", ".join(rh.text(k) for k in keys)
    by = ", ".join(str(i) for i in range(1, len(keys) + 1))
    started = rh.ident("started_at")
    minute = f"EXTRACT(HOUR FROM {started}) * 60 + EXTRACT(MINUTE FROM {started})"  # UTC time of day
    sql = f"SELECT {select}, COUNT(*) AS n, AVG({minute}) AS minute FROM {rh.source} WHERE {rh.where()} GROUP BY {by}"
    rows = rh.run("draft: run-history profile", sql)
    width = len(keys)
    padded = []
    for row in rows:
        values = dict(zip(keys, row[:width], strict=True))
        if values["processor"] is None or values["status"] is None:
            continue  # a row that names no processor or status tells nothing
        padded.append(
            (
                values["processor"],
                values["status"],
                values.get("phase"),
                values.get("output_dataset"),
                values.get("output_table"),
                int(row[width]),
                float(row[width + 1] or 0),
            )
        )
    return padded


def _records_per_date(rh: _RH, success: Sequence[str]) -> dict[str, dict[date, int]]:
    d = rh.catalog.dialect
    single = f" AND {rh.ident('range_start')} IS NULL" if "range_start" in rh.cols else ""
    sql = (
        f"SELECT {rh.text('processor')}, CAST({rh.ident('date')} AS DATE), MAX(CAST({rh.ident('records')} AS {d.int_type})) "
        f"FROM {rh.source} WHERE {rh.where()} AND {d.contains('success', rh.ident('status'))} "
        f"AND {rh.ident('records')} IS NOT NULL{single} GROUP BY 1, 2"
    )
    out: dict[str, dict[date, int]] = defaultdict(dict)
    for processor, day, records in rh.run("draft: records per date", sql, success=list(success)):
        out[processor][day] = int(records)
    return out


def _reason_values(rh: _RH, columns: Sequence[str]) -> dict[str, dict[str, int]]:
    if not columns:
        return {}
    d = rh.catalog.dialect
    parts = [
        f"SELECT {k} AS k, CAST({d.ident(c)} AS {d.text_type}) AS v, COUNT(*) AS n FROM {rh.source} "
        f"WHERE {rh.where()} AND {d.ident(c)} IS NOT NULL GROUP BY 2"
        for k, c in enumerate(columns)
    ]
    out: dict[str, dict[str, int]] = {c: {} for c in columns}
    for k, value, n in rh.run("draft: reason values", "\nUNION ALL\n".join(parts)):
        out[columns[k]][value] = int(n)
    return out


def _longest_range(rh: _RH) -> tuple[int, int] | None:
    """The most days one range run covered, and how many range runs there were."""
    if "range_start" not in rh.cols:
        return None
    sql = (
        f"SELECT CAST({rh.ident('range_start')} AS DATE), CAST({rh.ident('range_end')} AS DATE), COUNT(*) "
        f"FROM {rh.source} WHERE {rh.where()} AND {rh.ident('range_start')} IS NOT NULL GROUP BY 1, 2"
    )
    ranges = rh.run("draft: range runs", sql)
    if not ranges:
        return None
    return max((last - first).days + 1 for first, last, _ in ranges), sum(int(n) for *_, n in ranges)


def _upstream_checks(rh: _RH) -> dict[str, Counter[str]]:
    """Per processor, how often each upstream table was checked, in a sample of its runs."""
    d = rh.catalog.dialect
    up = d.json_text.format(rh.ident("upstream"))
    sql = (
        f"SELECT p, u FROM (SELECT {rh.text('processor')} AS p, {up} AS u FROM {rh.source} "
        f"WHERE {rh.where()} AND {rh.ident('upstream')} IS NOT NULL) AS s WHERE u IS NOT NULL "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY p ORDER BY u) <= {UPSTREAM_SAMPLE}"
    )
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for processor, text in rh.run("draft: upstream checks", sql):
        for name in _upstream_names(text):
            out[processor][name] += 1
    return out


def _upstream_names(text: str | None) -> set[str]:
    try:
        value = json.loads(text) if text else None
        if isinstance(value, str):  # a text column holding JSON, encoded once more
            value = json.loads(value)
    except (TypeError, ValueError):
        return set()
    items = value if isinstance(value, list) else []
    names = {item.get("table") if isinstance(item, dict) else item for item in items}
    return {n for n in names if isinstance(n, str) and n}


# --- the draft -----------------------------------------------------------------------------


def draft_spec(
    catalog: Catalog,
    *,
    warehouse: dict[str, Any],
    name: str = "pipeline",
    datasets: Sequence[str] = (),
    season_gap_days: int = 30,
    start: date | None = None,
    end: date | None = None,
    run_history: tuple[str, Mapping[str, str]] | None = None,
) -> Draft:
    """Everything the warehouse says about the pipeline, as a `Draft` (see `render_draft`).
    `run_history`: the table and columns a spec already maps (for `spec diff`): taken as given
    where the warehouse has them, rather than guessed from column names."""
    window = (start or ALL_DATES[0], end or ALL_DATES[1])
    all_tables = catalog.tables(datasets)
    given = given_run_history(all_tables, *run_history) if run_history else None
    rh_table, cols = given or find_run_history(all_tables)
    history = _read_run_history(catalog, rh_table, cols, window)
    candidates = [t for t in all_tables if t.name != rh_table.name and _date_candidates(t) and TABLE_NAME.match(t.name)]
    rows = _rows_for(catalog, candidates, window)
    tables = _unique_ids([_draft_table(t, rows) for t in candidates])
    _assign_processors(tables, history.processors, history.records, history.extras)
    unusable = [t for t in all_tables if t.name != rh_table.name and t not in candidates]
    tables, left_out = _keep(tables, rh_table.dataset, unusable)
    _assign_phases(tables, history.processors)
    _assign_dependencies(tables, history.upstream)
    calendar = _calendar(tables, season_gap_days, {t.name: t for t in all_tables})
    expected = {d for s in calendar.seasons for d in _season_dates(tables, calendar, s)}
    for t in tables:
        _min_rows(t, expected)
    used = {t.processor for t in tables if t.processor}
    return Draft(
        name=name,
        source=catalog.description,
        warehouse=warehouse,
        calendar=calendar,
        run_history=history.draft,
        phases=_phases(tables, history.processors),
        left_out=left_out,
        processors_unmatched=sorted(set(history.processors) - used),
        catalog={t.name: t for t in all_tables},
    )


@dataclass
class _History:
    """What the run-history queries told: the spec section, and the facts the tables need."""

    draft: DraftRunHistory
    processors: dict[str, _Processor]
    records: dict[str, dict[date, int]]
    upstream: dict[str, Counter[str]]
    extras: dict[str, str]


def _read_run_history(catalog: Catalog, table: TableInfo, cols: dict[str, str], window: tuple[date, date]) -> _History:
    extras = {
        k: c for k, pats in _EXTRA_FIELDS.items() if (c := _pick_column(table, ("text", "json", "other"), pats, set()))
    }
    rh = _RH(catalog, table.name, {**cols, **extras}, window)
    profile = _profile(rh)
    status_counts = Counter[str]()
    for _, status, *_rest, n, _minute in profile:
        status_counts[status] += n
    statuses, unmapped = _map_statuses(status_counts)
    reason_cols = [
        c.name
        for c in table.columns
        if c.kind == "text" and c.name not in rh.cols.values() and re.fullmatch(_REASON_COLUMNS[0], c.name.lower())
    ]
    reasons = _reason_values(rh, reason_cols)
    section = DraftRunHistory(
        table=table.name,
        evidence=_rh_evidence(cols, status_counts),
        columns=_rh_columns(cols),
        statuses=statuses,
        status_counts=dict(status_counts),
        unmapped=unmapped,
        no_data_reasons={
            c: sorted(v for v in vals if _NO_DATA.search(v.lower()))
            for c, vals in reasons.items()
            if any(_NO_DATA.search(v.lower()) for v in vals)
        },
        reason_counts=reasons,
        phase_column=extras.get("phase"),
        output_columns=(extras.get("output_dataset"), extras.get("output_table")),
        upstream_column=extras.get("upstream"),
        longest_range=_longest_range(rh),
    )
    return _History(
        section,
        _processor_facts(profile),
        _records_per_date(rh, statuses["success"]),
        _upstream_checks(rh) if "upstream" in extras else {},
        extras,
    )


def _map_statuses(counts: Counter[str]) -> tuple[dict[str, list[str]], list[str]]:
    mapped: dict[str, list[str]] = {k: [] for k in _STATUS_WORDS}
    unmapped = []
    for value in sorted(counts):
        key = next((k for k, ws in _STATUS_WORDS.items() if value.lower() in ws), None)
        if key is None:
            unmapped.append(value)
        else:
            mapped[key].append(value)
    upper = bool(counts) and all(v == v.upper() for v in counts)
    for key in mapped:  # the spec needs a value in each list; the default, in the values' case, for none seen
        mapped[key] = mapped[key] or [key.upper() if upper else key]
    return mapped, unmapped


def _rh_evidence(cols: dict[str, str], counts: Counter[str]) -> str:
    return f"the table with run columns ({', '.join(cols[f] for f in REQUIRED_RH)}); {sum(counts.values()):,} rows"


def _rh_columns(cols: dict[str, str]) -> dict[str, tuple[str, str]]:
    notes = {
        "date": "the date a run's data is for",
        "range_start": "a range run covers its range in one row",
        "range_end": "",
        "error": "the run's error, text or JSON",
        "run_id": "pairs a run's running and final rows",
    }
    return {f: (c, notes.get(f, "")) for f, c in cols.items()}


def _date_candidates(t: TableInfo) -> list[str]:
    return t.of_kind("date", "timestamp")


def _rows_for(
    catalog: Catalog, tables: Sequence[TableInfo], window: tuple[date, date]
) -> dict[tuple[str, str], dict[date, int] | None]:
    """Rows per date of each candidate date column (only the partition field where a table has one)."""
    targets = [(t, c) for t in tables for c in ([t.partition_column] if t.partition_column else _date_candidates(t))]
    counted = catalog.rows_per_date(targets, *window)
    return {(t.name, c): n for (t, c), n in zip(targets, counted, strict=True)}


def _draft_table(t: TableInfo, rows: dict[tuple[str, str], dict[date, int] | None]) -> DraftTable:
    column, evidence = _choose_date_column(t, rows)
    return DraftTable(
        id=t.short_name,
        table=t.name,
        date_column=column,
        date_evidence=evidence,
        processor=None,
        processor_evidence="",
        rows=rows.get((t.name, column)) or {},
        partition_column=t.partition_column,
    )


def _choose_date_column(t: TableInfo, rows: dict[tuple[str, str], dict[date, int] | None]) -> tuple[str, str]:
    if t.partition_column:
        return t.partition_column, "the table's day-partitioning field"
    candidates = _date_candidates(t)
    if len(candidates) == 1:
        return candidates[0], f"the only {next(c.kind for c in t.columns if c.name == candidates[0]).upper()} column"
    counted = {c: len(rows.get((t.name, c)) or {}) for c in candidates}
    if any(counted.values()):
        best = max(candidates, key=lambda c: counted[c])  # the first listed wins a tie
        others = ", ".join(f"{c} ({counted[c]:,})" for c in candidates if c != best)
        return best, f"most distinct dates ({counted[best]:,}); also {others}"
    named = [c for c in candidates if c.lower().endswith("_date")] or candidates
    why = (
        "the table is empty"
        if any(rows.get((t.name, c)) is not None for c in candidates)
        else "not partitioned by day, so its rows per date were not read"
    )
    return named[
        0
    ], f"GUESS: named like a date ({why}); other candidates: {', '.join(c for c in candidates if c != named[0])}"


@dataclass
class _Processor:
    name: str
    runs: int
    phases: Counter[str]
    outputs: Counter[str]
    minutes: float = 0.0  # sum over runs of the UTC minute of the day they started

    @property
    def start_minute(self) -> float:
        return self.minutes / self.runs if self.runs else 0.0


def _processor_facts(profile: Iterable[tuple[Any, ...]]) -> dict[str, _Processor]:
    out: dict[str, _Processor] = {}
    for processor, _status, phase, out_dataset, out_table, n, minute in profile:
        p = out.setdefault(processor, _Processor(processor, 0, Counter(), Counter()))
        p.runs += n
        p.minutes += minute * n
        if phase:
            p.phases[phase] += n
        if out_table:
            p.outputs[f"{out_dataset}.{out_table}" if out_dataset else out_table] += n
    return out


def _assign_processors(
    tables: list[DraftTable],
    processors: dict[str, _Processor],
    records: dict[str, dict[date, int]],
    extras: dict[str, str],
) -> None:
    """Output-table column first, then a name that is the table's own words, then records =
    rows (names break ties: tables of equal rows per date are common), then weaker names, then
    the naming convention."""
    free = dict.fromkeys(processors)
    by_table = {t.table: t for t in tables}

    def take(t: DraftTable, processor: str, evidence: str) -> None:
        t.processor, t.processor_evidence = processor, evidence
        free.pop(processor, None)

    for p in processors.values():  # 1. the run history names the table it wrote
        for out, n in p.outputs.most_common():
            t = by_table.get(out) or next((x for x in tables if x.id == out), None)
            if t is not None and t.processor is None and p.name in free:
                take(t, p.name, f"matched by {extras.get('output_table')} in {n:,} runs")
    for processor in list(free):  # 2. the processor is named by the table's own words
        t = next((t for t in tables if t.processor is None and name_score(processor, t.id) == 1.0), None)
        if t is not None:
            take(t, processor, "by name (the table's own words)")
    pairs = []  # 3. a processor's records equal the table's rows, date after date
    for processor in list(free):
        runs = {d: n for d, n in records.get(processor, {}).items() if n > 0}
        for t in tables:
            hits = sum(1 for d, n in runs.items() if t.rows.get(d) == n)
            if hits >= 3 and hits >= len(runs) / 2:
                pairs.append((hits / len(runs), name_score(processor, t.id), hits, processor, t, len(runs)))
    for _, _, hits, processor, t, total in sorted(pairs, key=lambda x: (-x[0], -x[1], -x[2], x[3], x[4].table)):
        if t.processor is None and processor in free:
            take(t, processor, f"records = the table's rows on {hits:,} of {total:,} dates run")
    scored = sorted(
        ((name_score(p, t.id), p, t) for p in free for t in tables), key=lambda x: (-x[0], x[1], x[2].table)
    )
    for score, processor, t in scored:  # 4. weaker names
        if score >= 0.5 and t.processor is None and processor in free:
            take(t, processor, f"by name ({score:.0%} of the words match)")
    _by_convention(tables, list(free), set(processors))


def _by_convention(tables: list[DraftTable], free: list[str], seen: set[str]) -> None:
    """Tables still without a processor: the naming convention the matched pairs share, if
    any; else a placeholder with the likeliest unmatched processors named."""
    templates = Counter(_template(t.processor, t.id) for t in tables if t.processor)
    templates.pop(None, None)
    matched = sum(1 for t in tables if t.processor)
    convention = next((tpl for tpl, n in templates.most_common(1) if n >= 2 and n * 2 >= matched), None)
    for t in tables:
        if t.processor is not None:
            continue
        ranked = sorted(free, key=lambda p: -name_score(p, t.id))[:3]
        candidates = f"; unmatched processors: {', '.join(ranked)}" if ranked else ""
        if convention is not None:
            guess = convention.replace("{Camel}", camel(t.id)).replace("{snake}", t.id)
            where = "in" if guess in seen else "never seen in"
            t.processor = guess
            t.processor_evidence = (
                f"GUESS by the naming convention of {templates[convention]} matched tables "
                f"({convention}); {where} the run history{candidates}"
            )
        else:
            t.processor_evidence = f"TODO: no run writes this table that could be told{candidates}"


def _template(processor: str | None, table_id: str) -> str | None:
    if not processor:
        return None
    if camel(table_id) in processor:
        return processor.replace(camel(table_id), "{Camel}", 1)
    if table_id in processor:
        return processor.replace(table_id, "{snake}", 1)
    return None


def _unique_ids(tables: list[DraftTable]) -> list[DraftTable]:
    """A table's id is its name, or dataset_name where two datasets share the name."""
    shared = {k for k, n in Counter(t.id for t in tables).items() if n > 1}
    for t in tables:
        if t.id in shared:
            t.id = t.table.replace(".", "_")
    return tables


def _keep(
    tables: list[DraftTable], rh_dataset: str, unusable: list[TableInfo]
) -> tuple[list[DraftTable], list[tuple[str, str]]]:
    """The run history's own dataset, unless runs are seen writing some of its tables, is
    bookkeeping: it keeps only tables a run is seen writing."""
    kept = []
    left = [
        (
            t.name,
            "no DATE or TIMESTAMP column"
            if not _date_candidates(t)
            else "a name a spec cannot hold (letters, digits and underscores)",
        )
        for t in unusable
    ]

    def seen(t: DraftTable) -> bool:
        return bool(t.processor) and not t.processor_evidence.startswith(("GUESS", "TODO"))

    bookkeeping = not any(seen(t) for t in tables if t.table.split(".")[0] == rh_dataset)
    for t in tables:
        if bookkeeping and t.table.split(".")[0] == rh_dataset and not seen(t):
            left.append((t.table, "in the run history's dataset, and no run is seen writing it"))
        else:
            kept.append(t)
    return kept, left


def _assign_phases(tables: list[DraftTable], processors: dict[str, _Processor]) -> None:
    for t in tables:
        p = processors.get(t.processor or "")
        if p and p.phases:
            value, n = p.phases.most_common(1)[0]
            t.phase, t.phase_evidence = value, f"phase column: {value} in {n:,} runs of {p.name}"
    by_dataset: dict[str, Counter[str]] = defaultdict(Counter)
    for t in tables:
        if t.phase:
            by_dataset[t.table.split(".")[0]][t.phase] += 1
    for t in tables:
        if t.phase:
            continue
        dataset = t.table.split(".")[0]
        if by_dataset[dataset]:
            t.phase = by_dataset[dataset].most_common(1)[0][0]
            t.phase_evidence = f"GUESS: no runs; the phase of the other tables of dataset {dataset}"
        else:
            t.phase, t.phase_evidence = dataset, f"GUESS: the dataset {dataset} (no phase recorded)"


def _assign_dependencies(tables: list[DraftTable], upstream: dict[str, Counter[str]]) -> None:
    names = {t.table: t.id for t in tables} | {t.id: t.id for t in tables}
    for t in tables:
        checks = upstream.get(t.processor or "")
        if not checks:
            t.depends_evidence = "TODO: no upstream checks recorded; list the tables this one reads"
            continue
        found = [(names[n], c) for n, c in checks.most_common() if n in names and names[n] != t.id]
        unknown = sorted(n for n in checks if n not in names)
        t.depends_on = sorted({d for d, _ in found})
        t.depends_evidence = "recorded upstream checks: " + ", ".join(f"{d} ({c})" for d, c in found)
        if unknown:
            t.depends_evidence += f"; not drafted tables: {', '.join(unknown)}"


def _phases(tables: list[DraftTable], processors: dict[str, _Processor]) -> list[DraftPhase]:
    groups: dict[str, list[DraftTable]] = {}
    for t in tables:
        groups.setdefault(t.phase, []).append(t)
    of = {t.id: t.phase for t in tables}
    for t in tables:  # a dependency on a later phase's table cannot be kept
        t.depends_on = [d for d in t.depends_on if _rank(of[d], of, tables) <= _rank(t.phase, of, tables)]

    def start(phase: str) -> float:  # upstream runs start earlier in the day: the last tie-breaker
        ran = [processors[t.processor] for t in groups[phase] if t.processor in processors]
        return sum(p.start_minute for p in ran) / len(ran) if ran else 24 * 60

    order = sorted(
        groups,
        key=lambda p: (_phase_number(p) if _phase_number(p) is not None else 10**6, _rank(p, of, tables), start(p), p),
    )
    out = []
    for value in order:
        members = groups[value]
        phase = DraftPhase(phase_label(value), _phase_evidence(value, members, start(value)), members)
        inner = {t.id for t in members}
        if any(d in inner for t in members for d in t.depends_on):
            phase.mode, phase.mode_evidence = "sequential", "its tables depend on each other: run in this order"
            phase.tables = _topological(members)
        out.append(phase)
    return out


def _phase_evidence(value: str, members: list[DraftTable], start_minute: float) -> str:
    if any(t.phase_evidence.startswith("phase column") for t in members):
        return f"the run history's phase {value}"
    when = (
        f", its runs start at {int(start_minute) // 60:02d}:{int(start_minute) % 60:02d} UTC on average"
        if start_minute < 24 * 60
        else ""
    )
    return f"GUESS: dataset {value}{when}; order the phases upstream first"


def _rank(phase: str, of: dict[str, str], tables: list[DraftTable], seen: frozenset[str] = frozenset()) -> int:
    """How many phases deep a phase's dependencies go (0: it depends on no other phase)."""
    deps = {of[d] for t in tables if t.phase == phase for d in t.depends_on if of.get(d) not in (None, phase)}
    deps -= seen
    return 1 + max((_rank(p, of, tables, seen | {phase}) for p in deps), default=-1)


def _topological(members: list[DraftTable]) -> list[DraftTable]:
    done: list[DraftTable] = []
    pending = list(members)
    while pending:
        ready = [t for t in pending if all(d not in {x.id for x in pending} for d in t.depends_on)] or pending[:1]
        done += ready
        pending = [t for t in pending if t not in ready]
    return done


# --- calendar and minimums ------------------------------------------------------------------

_GAME_ID = re.compile(r"(game|fixture|match|event)_?id")
_SCHEDULE = re.compile(r"schedule|calendar|fixture")
_FILTER_HINT = re.compile(r".*(status|type|state|final|season_type|game_type).*")


def _calendar(tables: list[DraftTable], gap_days: int, infos: dict[str, TableInfo]) -> DraftCalendar:
    def game_id(t: DraftTable) -> str | None:
        return next((c.name for c in infos[t.table].columns if _GAME_ID.fullmatch(c.name.lower())), None)

    dated = [t for t in tables if t.rows]
    if not dated:
        raise InputError("no table has rows on any date: there is nothing to draft a calendar from")
    best = max(dated, key=lambda t: (bool(_SCHEDULE.search(t.id)), bool(game_id(t)), len(t.rows), t.table))
    why = [f"{len(best.rows):,} dates"]
    if _SCHEDULE.search(best.id):
        why.append("named like a schedule")
    if game_id(best):
        why.append(f"a game id column ({game_id(best)})")
    hints = [
        c.name
        for c in infos[best.table].columns
        if _FILTER_HINT.fullmatch(c.name.lower()) and c.name != best.date_column
    ]
    return DraftCalendar(
        best.table,
        best.date_column,
        ", ".join(why),
        game_id(best),
        hints,
        _seasons(sorted(best.rows), gap_days),
        gap_days,
    )


def _seasons(dates: list[date], gap_days: int) -> list[tuple[str, date, date, int]]:
    runs: list[list[date]] = []
    for d in dates:
        if runs and (d - runs[-1][-1]).days <= gap_days:
            runs[-1].append(d)
        else:
            runs.append([d])
    out = []
    for run in runs:
        first, last = run[0], run[-1]
        name = f"{first.year}-{last.year % 100:02d}" if last.year != first.year else str(first.year)
        out.append((name, first, last, len(run)))
    names = Counter(n for n, *_ in out)
    return [(f"{n}-{first:%m%d}" if names[n] > 1 else n, first, last, k) for n, first, last, k in out]


def _season_dates(tables: list[DraftTable], cal: DraftCalendar, season: tuple[str, date, date, int]) -> set[date]:
    rows = next(t.rows for t in tables if t.table == cal.table)
    return {d for d in rows if season[1] <= d <= season[2]}


def _min_rows(t: DraftTable, expected: set[date]) -> None:
    counts = sorted(n for d, n in t.rows.items() if d in expected) or sorted(t.rows.values())
    if not counts:
        return
    p1 = counts[int(0.01 * (len(counts) - 1))]
    t.min_rows = max(1, p1 // 2)
    t.min_rows_evidence = f"half the 1st percentile of rows per date (p1 = {p1:,} over {len(counts):,} dates)"


# --- YAML ----------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none", "~"})


def _s(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | date):
        return str(value)
    text = str(value)
    return text if _PLAIN.match(text) and text.lower() not in _YAML_WORDS else json.dumps(text)


def _line(indent: int, key: str, value: Any = None, note: str = "") -> str:
    body = f"{' ' * indent}{key}:" + ("" if value is None else f" {value}")
    return f"{body:<52} # {note}" if note else body


def _list(values: Sequence[Any]) -> str:
    return "[" + ", ".join(_s(v) for v in values) + "]"


def render_draft(draft: Draft) -> str:
    """The draft as a commented spec file."""
    out = [*_header(draft), f"name: {_s(draft.name)}", "", "warehouse:"]
    out += [_line(2, k, _s(v)) for k, v in draft.warehouse.items()]
    out += ["", *_render_calendar(draft.calendar), "", *_render_run_history(draft.run_history), "", *_render_jobs(), ""]
    out += ["phases:"] + [line for phase in draft.phases for line in _render_phase(phase)]
    if draft.left_out:
        out += ["", "# Tables left out:"] + [f"#   {name}: {why}" for name, why in draft.left_out]
    if draft.processors_unmatched:
        out += [
            "# Processors in the run history that no table above is matched to:",
            f"#   {', '.join(draft.processors_unmatched)}",
        ]
    return "\n".join(out) + "\n"


def _header(draft: Draft) -> list[str]:
    return [
        f"# Drafted by `backfill-kit spec draft` from {draft.source}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "# Every value is a guess from what the warehouse holds; the comment beside it gives the evidence.",
        "# GUESS marks a weak one, TODO what the warehouse cannot tell: read those first. `validate` works",
        "# as it is; `plan` and `run` refuse it until job_defaults.argv is your backfill command.",
    ]


def _render_calendar(cal: DraftCalendar) -> list[str]:
    out = [
        "calendar:",
        _line(2, "table", _s(cal.table), f"the schedule: {cal.evidence}"),
        _line(2, "date_column", _s(cal.date_column)),
    ]
    if cal.game_id_column:
        out.append(_line(2, "game_id_column", _s(cal.game_id_column), "counts games per date"))
    hint = f"; columns that may tell: {', '.join(cal.filter_columns)}" if cal.filter_columns else ""
    out += [
        f"  # TODO filter: keep only the dates that count (e.g. final games of the regular season and playoffs){hint}",
        f'  # filter: "{cal.filter_columns[0] if cal.filter_columns else "status_column"} = ..."',
        _line(2, "seasons", None, f"the schedule's dates, split at gaps of more than {cal.gap_days} days"),
    ]
    out += [f"{f'    - {{name: {_s(n)}, start: {a}, end: {b}}}':<52} # {k:,} dates" for n, a, b, k in cal.seasons]
    return out


def _render_run_history(rh: DraftRunHistory) -> list[str]:
    out = ["run_history:", _line(2, "table", _s(rh.table), rh.evidence), "  columns:"]
    out += [_line(4, f, _s(c), note) for f, (c, note) in rh.columns.items()]
    present = ", ".join(f"{v} ({n:,})" for v, n in sorted(rh.status_counts.items()))
    out.append(_line(2, "statuses", None, f"values present: {present}"))
    out += [_line(4, k, _list(v)) for k, v in rh.statuses.items()]
    if rh.unmapped:
        out.append(f"  # TODO statuses never mapped (a run with one reads as 'other'): {', '.join(rh.unmapped)}")
    if rh.no_data_reasons:
        out.append(_line(2, "no_data_reasons", None, "values that say a run had nothing to load"))
        for column, values in rh.no_data_reasons.items():
            seen = rh.reason_counts[column]
            out.append(_line(4, column, _list(values), ", ".join(f"{v} in {seen[v]:,} rows" for v in values)))
    others = {c: v for c, v in rh.reason_counts.items() if c not in rh.no_data_reasons}
    for column, seen_values in others.items():
        out.append(f"  # {column} values seen: {', '.join(sorted(seen_values))}")
    if rh.longest_range:
        days, runs = rh.longest_range
        out.append(_line(2, "max_range_days", days, f"the longest of {runs:,} range runs"))
    out.append(_line(2, "stale_after_hours", 6, "the default: a running row older than this is a crashed run's"))
    return out


def _render_jobs() -> list[str]:
    return [
        "# TODO jobs: the warehouse cannot tell how your backfills are run. Put your command here",
        "# ({id} {table} {processor} {start} {end} {python} are filled in per step) and how it is",
        "# told not to trigger downstream work; see the README, 'The spec'.",
        "job_defaults:",
        _line(
            2,
            "argv",
            _list([PLACEHOLDER_COMMAND, "{id}", "--start-date", "{start}", "--end-date", "{end}"]),
            "TODO: a placeholder; plan and run refuse it",
        ),
        '  # skip_downstream: {args: ["--skip-downstream-trigger"]}',
    ]


def _render_phase(phase: DraftPhase) -> list[str]:
    out = [_line(2, "- name", _s(phase.name), phase.evidence), _line(4, "mode", phase.mode, phase.mode_evidence)]
    if phase.mode == "parallel":
        out.append(
            _line(4, "max_workers", min(4, len(phase.tables)), "GUESS: how many jobs your warehouse takes at once")
        )
    out += [
        _line(4, "bootstrap_days", 0, "TODO: days after each season start that are empty on purpose"),
        "    tables:",
    ]
    for t in phase.tables:
        out += [
            _line(6, "- id", _s(t.id)),
            _line(8, "table", _s(t.table)),
            _line(8, "date_column", _s(t.date_column), t.date_evidence),
            _line(8, "processor", _s(t.processor or PLACEHOLDER_PROCESSOR.format(id=t.id)), t.processor_evidence),
            _line(8, "min_rows", t.min_rows, t.min_rows_evidence),
        ]
        if t.depends_on:
            out.append(_line(8, "depends_on", _list(t.depends_on), t.depends_evidence))
        elif t.depends_evidence:
            out.append(f"        # depends_on: {t.depends_evidence}")
    return out


def write_draft(text: str, out: Path, *, force: bool) -> Path:
    """Check that the text loads as a spec, then write it; an existing file only with force."""
    from backfill_kit.common.outputs import write_output
    from backfill_kit.spec.load import parse_spec

    if out.exists() and not force:
        raise InputError(f"{out} already exists; pass --force to overwrite it, or choose another --out")
    parse_spec(text, out)  # a draft that does not load is a bug here, never the user's problem
    write_output(out, text, what="the draft", hint="choose a writable place with --out")
    return out


def refuse_placeholder_jobs(argvs: Iterable[tuple[str, Sequence[str]]], where: str) -> None:
    """Stop `plan` and `run` on a drafted spec whose job command is still the placeholder."""
    stuck = sorted({table for table, argv in argvs if PLACEHOLDER_COMMAND in argv})
    if stuck:
        raise InputError(
            f"{where}: the job of {', '.join(stuck[:5])}{' ...' if len(stuck) > 5 else ''} is still the draft's "
            f"placeholder ({PLACEHOLDER_COMMAND}): replace job_defaults.argv (or the table's job.argv) "
            "with your backfill command, then plan again"
        )


# --- diff ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    field: str
    message: str
    note: bool = False  # worth knowing, not wrong: e.g. a processor that has simply never run yet

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        return f"note: {text}" if self.note else text


def diff_spec(spec: Any, draft: Draft) -> list[Difference]:
    """What the warehouse says that the spec does not."""
    from difflib import get_close_matches

    out: list[Difference] = []
    infos = draft.catalog
    drafted = {t.table: t for t in draft.tables}
    seen_processors = set(draft.processors_unmatched) | {
        t.processor for t in draft.tables if t.processor and not t.processor_evidence.startswith(("GUESS", "TODO"))
    }
    for t in spec.tables:
        where = spec.field_path(t.id)
        info = infos.get(t.table)
        if info is None:
            out.append(Difference(f"{where}.table", f"{t.table} does not exist in the warehouse"))
            continue
        out += _diff_date_column(spec, t, where, info, drafted.get(t.table))
        if t.processor not in seen_processors:
            close = get_close_matches(t.processor, sorted(seen_processors), n=1, cutoff=0.6)
            d = drafted.get(t.table)
            if d is not None and d.processor == t.processor:  # the convention's name: it has not run yet
                out.append(
                    Difference(
                        f"{where}.processor",
                        f"{t.processor!r} has no run in the run history yet "
                        "(the name follows the naming convention of the others)",
                        note=True,
                    )
                )
                continue
            hint = f"; the warehouse suggests {d.processor} ({d.processor_evidence})" if d and d.processor else ""
            hint = hint or (f"; did you mean {close[0]}?" if close else "")
            out.append(Difference(f"{where}.processor", f"{t.processor!r} never appears in the run history{hint}"))
    in_spec = {t.table for t in spec.tables}
    for t in draft.tables:
        if t.table not in in_spec and not t.processor_evidence.startswith("TODO"):
            out.append(
                Difference(
                    "phases",
                    f"{t.table} is not in the spec; the warehouse has it "
                    f"(processor {t.processor}: {t.processor_evidence})",
                )
            )
    for p in draft.processors_unmatched:
        if p not in {t.processor for t in spec.tables}:
            out.append(Difference("phases", f"processor {p} runs in the run history but no table of the spec names it"))
    if spec.calendar.table and spec.calendar.table not in infos:
        out.append(Difference("calendar.table", f"{spec.calendar.table} does not exist in the warehouse"))
    return out + _diff_run_history(spec.run_history, draft.run_history, infos)


def _diff_run_history(rh: Any, found: DraftRunHistory, infos: dict[str, TableInfo]) -> list[Difference]:
    info = infos.get(rh.table)
    if info is None:
        return [
            Difference(
                "run_history.table",
                f"{rh.table} does not exist in the warehouse; the run history looks like {found.table}",
            )
        ]
    out = [
        Difference(f"run_history.columns.{f}", f"{rh.table} has no column {c!r}")
        for f, c in rh.columns.named().items()
        if not info.has(c)
    ]
    if rh.table == found.table:
        mapped = {v for values in astuple(rh.statuses) for v in values}
        if unmapped := sorted(v for v in found.status_counts if v not in mapped):
            seen = ", ".join(f"{v} ({found.status_counts[v]:,} rows)" for v in unmapped)
            out.append(
                Difference("run_history.statuses", f"status values in the run history that no list maps: {seen}")
            )
        for column, values in found.no_data_reasons.items():
            if column not in rh.no_data_reasons:
                out.append(
                    Difference(
                        "run_history.no_data_reasons",
                        f"{column} has values that mean nothing to load ({', '.join(values)}); list them here",
                        note=True,
                    )
                )
    return out


def _diff_date_column(spec: Any, t: Any, where: str, info: TableInfo, d: DraftTable | None) -> list[Difference]:
    column = spec.date_column_of(t)
    field = f"{where}.date_column"
    if not info.has(column):
        dates = ", ".join(_date_candidates(info)) or "none"
        return [Difference(field, f"{t.table} has no column {column!r}; its date columns: {dates}")]
    if info.partition_column and info.partition_column.lower() != column.lower():
        return [Difference(field, f"{column!r} is not the partition field of {t.table} ({info.partition_column})")]
    if d is not None and d.date_column.lower() != column.lower():
        return [Difference(field, f"{column!r}: the warehouse suggests {d.date_column!r} ({d.date_evidence})")]
    return []
