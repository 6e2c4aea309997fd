"""The pipeline spec: a YAML file describing a warehouse, its calendar, its run history and its
phases of tables. Loading validates everything and reports every problem at once, each with the
file, line, field path, what is wrong and what is expected.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from datetime import date
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import Problem, SpecError

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

TABLE_REF = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*\.)?[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TABLE_WHAT = "table name: dataset.table or project.dataset.table"
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
LOCATION = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
DATASET_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
JOB_PLACEHOLDERS = frozenset({"start", "end", "id", "table", "processor", "python"})


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"{value!r} is not a valid {what}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DuckDBWarehouse(_Model):
    """An embedded DuckDB database file; `dataset.table` names map to `schema.table`."""

    backend: Literal["duckdb"]
    path: str = Field(description="database file, relative to the spec file, or ':memory:'")


class BigQueryWarehouse(_Model):
    """Google BigQuery; `dataset.table` names map to `project.dataset.table` (with
    `dataset_prefix` put before the dataset), so a spec moves from DuckDB by this section alone.
    Credentials: the service-account key file named here, else Application Default Credentials."""

    backend: Literal["bigquery"]
    project: str = Field(description="project that runs the queries and holds the datasets")
    location: str | None = Field(None, description="where the datasets live, e.g. US or europe-west1")
    credentials_file: str | None = Field(None, description="service-account key (JSON), relative to the spec file")
    dataset_prefix: str = Field("", description="put before every dataset name, e.g. 'dev_'")
    maximum_bytes_billed: int | None = Field(None, ge=1, description="refuse any query estimated to bill more")
    price_per_tib_usd: float = Field(6.25, ge=0, description="on-demand price, for the cost estimates")

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        return _check(PROJECT_ID, v, "project id (lowercase letters, digits and hyphens)")

    @field_validator("location")
    @classmethod
    def _location(cls, v: str | None) -> str | None:
        return v and _check(LOCATION, v, "location, e.g. US, EU or europe-west1")

    @field_validator("dataset_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return v and _check(DATASET_PREFIX, v, "dataset prefix (letters, digits, underscores)")


WAREHOUSES: dict[str, type[_Model]] = {"duckdb": DuckDBWarehouse, "bigquery": BigQueryWarehouse}


class Season(_Model):
    name: str
    start: date
    end: date


class Calendar(_Model):
    """Where expected dates come from: dates with (filtered) rows in a schedule table, inside
    the season windows; or, without a table, every day of the season windows."""

    table: str | None = None
    date_column: str = "game_date"
    game_id_column: str | None = Field(None, description="counts games per date, deduplicated")
    filter: str | None = Field(None, description="SQL condition, e.g. final games only")
    seasons: tuple[Season, ...] = ()

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str | None) -> str | None:
        return v and _check(TABLE_REF, v, TABLE_WHAT)

    @field_validator("date_column", "game_id_column")
    @classmethod
    def _column(cls, v: str | None) -> str | None:
        return v and _check(IDENTIFIER, v, "column name")


class RunHistoryColumns(_Model):
    processor: str
    date: str
    status: str
    started_at: str
    finished_at: str
    records: str
    error: str | None = Field(None, description="text, JSON or REPEATED: a list of {error_type, error_message}")
    run_id: str | None = Field(None, description="pairs the `running` row and the final row of one run")
    range_start: str | None = Field(None, description="first date of a range run's range; NULL for one date")
    range_end: str | None = Field(None, description="last date of a range run's range; NULL for one date")

    @field_validator("*")
    @classmethod
    def _identifier(cls, v: str | None) -> str | None:
        return v and _check(IDENTIFIER, v, "column name")


class RunStatuses(_Model):
    """Which values of the status column mean what."""

    running: tuple[str, ...] = ("running",)
    success: tuple[str, ...] = ("success",)
    failed: tuple[str, ...] = ("failed",)
    skipped: tuple[str, ...] = ("skipped",)


class RunHistory(_Model):
    table: str
    columns: RunHistoryColumns
    statuses: RunStatuses = RunStatuses()
    stale_after_hours: float = Field(6.0, gt=0)
    # Which values of which columns turn a failed or skipped row into "nothing to load", e.g.
    # {failure_category: [no_data_available], skip_reason: [no_data]}. Once given, a skip that
    # matches none of them (already_processed) is no evidence: earlier attempts and rows decide.
    no_data_reasons: dict[str, tuple[str, ...]] = {}
    max_range_days: int = Field(62, ge=1, le=3660, description="longest range a range run covers, in days")

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str) -> str:
        return _check(TABLE_REF, v, TABLE_WHAT)

    @field_validator("no_data_reasons")
    @classmethod
    def _reason_columns(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for column, values in v.items():
            _check(IDENTIFIER, column, "column name")
            if not values:
                raise ValueError(f"column {column!r} lists no values; list the values that mean nothing to load")
        return v

    @property
    def ranges(self) -> bool:
        return self.columns.range_start is not None or self.columns.range_end is not None


class SkipDownstream(_Model):
    """How a job is told not to trigger downstream work: extra arguments and/or environment."""

    args: tuple[str, ...] = ()
    env: dict[str, str] = {}

    @model_validator(mode="after")
    def _says_something(self) -> SkipDownstream:
        if not self.args and not self.env:  # {} would pass for a guarantee and keep none
            raise ValueError("is empty: give the args and/or env that keep the job from triggering downstream work")
        return self


class JobOverrides(_Model):
    """Job settings at any level (spec, phase, table); the nearest level wins per field."""

    argv: tuple[str, ...] | None = None
    workdir: str | None = None
    env: dict[str, str] | None = None
    skip_downstream: SkipDownstream | None = None
    max_dates_per_step: int | None = Field(None, ge=1)
    timeout_seconds: float | None = Field(None, gt=0)
    transient_exit_codes: tuple[int, ...] | None = None
    retries: int | None = Field(None, ge=0)
    dry_run_args: tuple[str, ...] | None = Field(None, description="appended for preflight's dry run")


class JobSpec(_Model):
    """A table's backfill job after merging spec, phase and table settings."""

    argv: tuple[str, ...]
    workdir: str = "."
    env: dict[str, str] = {}
    skip_downstream: SkipDownstream | None = None
    max_dates_per_step: int = 30
    timeout_seconds: float = 3600.0
    transient_exit_codes: tuple[int, ...] = ()
    retries: int = 2
    dry_run_args: tuple[str, ...] | None = None  # None: the job cannot rehearse


class TableSpec(_Model):
    id: str
    table: str
    date_column: str | None = None
    processor: str
    priority: Literal["critical", "important", "fallback", "optional"] = "critical"
    min_rows: int = Field(1, ge=1, description="rows a date needs to be complete")
    min_rows_per_game: float | None = Field(None, gt=0, description="rows per scheduled game")
    fallback: str | None = Field(None, description="table id whose data stands in when this has none")
    depends_on: tuple[str, ...] = ()
    job: JobOverrides | None = None

    @field_validator("id")
    @classmethod
    def _table_id(cls, v: str) -> str:
        return _check(IDENTIFIER, v, "table id (letters, digits, underscores)")

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str) -> str:
        return _check(TABLE_REF, v, TABLE_WHAT)

    @field_validator("date_column")
    @classmethod
    def _column(cls, v: str | None) -> str | None:
        return v and _check(IDENTIFIER, v, "column name")

    def expected_rows(self, games: int) -> int:
        """Rows a date with `games` games needs to count as complete."""
        per_game = -(-self.min_rows_per_game * games // 1) if self.min_rows_per_game else 0
        return max(self.min_rows, int(per_game))


class Phase(_Model):
    name: str
    mode: Literal["parallel", "sequential"] = "parallel"
    max_workers: int = Field(1, ge=1)
    bootstrap_days: int = Field(0, ge=0, description="days after each season start expected empty")
    job: JobOverrides | None = None
    tables: tuple[TableSpec, ...] = Field(min_length=1)


class PipelineSpec(_Model):
    name: str
    warehouse: DuckDBWarehouse | BigQueryWarehouse = Field(discriminator="backend")
    calendar: Calendar
    run_history: RunHistory
    date_column: str | None = Field(None, description="date column of tables that name none")
    job_defaults: JobOverrides | None = None
    cascade: Literal["none", "dependents"] = "none"
    phases: tuple[Phase, ...] = Field(min_length=1)

    source: Path | None = Field(None, exclude=True, description="the file this spec was read from")

    @cached_property
    def tables(self) -> tuple[TableSpec, ...]:
        return tuple(t for phase in self.phases for t in phase.tables)

    @cached_property
    def table_positions(self) -> dict[str, tuple[int, int]]:
        return {t.id: (p, i) for p, phase in enumerate(self.phases) for i, t in enumerate(phase.tables)}

    def table(self, table_id: str) -> TableSpec:
        return self.phases[self.table_positions[table_id][0]].tables[self.table_positions[table_id][1]]

    def phase_of(self, table_id: str) -> Phase:
        return self.phases[self.table_positions[table_id][0]]

    def field_path(self, table_id: str) -> str:
        """Where a table is declared, e.g. ``phases[1].tables[2]``, for error messages."""
        p, i = self.table_positions[table_id]
        return f"phases[{p}].tables[{i}]"

    def date_column_of(self, table: TableSpec) -> str:
        return table.date_column or self.date_column or "date"

    def job_of(self, table: TableSpec) -> JobSpec:
        merged: dict[str, Any] = {}
        for level in (self.job_defaults, self.phase_of(table.id).job, table.job):
            if level is not None:
                merged.update(level.model_dump(exclude_none=True, exclude_unset=True))
        return JobSpec(**merged)

    def resolve_path(self, path: str) -> Path:
        """A path from the spec, relative to the spec file's folder."""
        base = self.source.parent if self.source else Path.cwd()
        return (base / path).resolve()

    @property
    def file_name(self) -> str:
        return str(self.source) if self.source else "<spec>"


# --- loading -------------------------------------------------------------------------------

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a spec file; raise `SpecError` listing every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(str(path), "", f"cannot read the spec file: {exc.strerror}")]) from exc
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> PipelineSpec:
    lines, data = _read_yaml(text, str(path))
    if not isinstance(data, dict):
        raise SpecError([Problem(str(path), "", "the spec must be a YAML mapping (key: value)", 1)])
    try:
        spec = PipelineSpec.model_validate({**data, "source": path})
    except ValidationError as exc:
        problems = [_problem(str(path), err, lines) for err in exc.errors()]
        # References between tables are checked on the raw file too, so that a misspelt
        # dependency is reported in the same round as a misspelt field.
        seen = {p.field for p in problems}
        problems += [
            Problem(str(path), field, message, _line_of(lines, field))
            for field, message in _cross_table_problems(_skeleton(data)) if field not in seen
        ]
        raise SpecError(sorted(problems, key=lambda p: p.line or 0)) from None
    problems = [
        Problem(str(path), field, message, _line_of(lines, field))
        for field, message in _semantic_problems(spec)
    ]
    if problems:
        raise SpecError(problems)
    return spec


def _skeleton(data: dict[str, Any]) -> SimpleNamespace:
    """The phases and tables of a spec that failed validation, as far as they can be read."""
    phases = []
    for phase in data.get("phases") or []:
        if not isinstance(phase, dict):
            continue
        tables = [
            SimpleNamespace(id=t.get("id"), depends_on=tuple(t.get("depends_on") or ()), fallback=t.get("fallback"),
                            date_column=t.get("date_column"))
            for t in phase.get("tables") or [] if isinstance(t, dict) and isinstance(t.get("id"), str)
        ]
        phases.append(SimpleNamespace(name=phase.get("name"), mode=phase.get("mode", "parallel"), tables=tables))
    return SimpleNamespace(phases=phases, date_column=data.get("date_column"))


def _read_yaml(text: str, file: str) -> tuple[dict[str, int], Any]:
    try:
        node = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # a safe loader, C or Python
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(file, "", f"not valid YAML: {reason}", line)]) from None
    lines: dict[str, int] = {}
    if node is not None:
        _index_lines(node, "", lines)
    return lines, data


def _index_lines(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            out[child] = key.start_mark.line + 1
            _index_lines(value, child, out)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, f"{path}[{i}]", out)


def _line_of(lines: dict[str, int], field: str) -> int | None:
    while field:
        if field in lines:
            return lines[field]
        field = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", field)
    return None


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in WAREHOUSES:  # the tagged-union tag is not a field the user wrote
            out += f".{part}" if out else str(part)
    return out


def _problem(file: str, err: Any, lines: dict[str, int]) -> Problem:
    field = _field_path(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        message = f"unknown field; expected one of: {', '.join(_allowed_fields(err['loc']))}"
    elif kind == "missing":
        message = "required field is missing"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):  # the warehouse's backend
        field += ".backend"
        known = f"expected one of: {', '.join(WAREHOUSES)}"
        tag = err.get("ctx", {}).get("tag")
        message = f"unknown backend {tag!r}; {known}" if tag else f"required field is missing; {known}"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})"
    return Problem(file, field, message, _line_of(lines, field))


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """The fields the model at `loc` (a pydantic error location) accepts."""
    model: Any = PipelineSpec
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if part in WAREHOUSES:  # the tag of the warehouse union names the model
            model = WAREHOUSES[part]
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        model = _model_in(annotation)
    if model is None:
        return []
    return [name for name in model.model_fields if name != "source"]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


# --- checks across fields ------------------------------------------------------------------


def _semantic_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    yield from _cross_table_problems(spec)
    yield from _cycle_problems(spec)
    yield from _calendar_problems(spec)
    yield from _job_problems(spec)


def _cross_table_problems(spec: Any) -> Iterator[tuple[str, str]]:
    """Checks that need only ids and references: they run on a skeleton of a broken spec too."""
    yield from _duplicate_problems(spec)
    yield from _reference_problems(spec)


def _duplicate_problems(spec: Any) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for p, phase in enumerate(spec.phases):
        for i, table in enumerate(phase.tables):
            if table.id in seen:
                yield f"phases[{p}].tables[{i}].id", f"table id {table.id!r} is declared twice; ids must be unique"
            seen.add(table.id)
    names = [phase.name for phase in spec.phases]
    for p, name in enumerate(names):
        if name in names[:p]:
            yield f"phases[{p}].name", f"phase name {name!r} is declared twice"


def _reference_problems(spec: Any) -> Iterator[tuple[str, str]]:
    order = {t.id: p for p, phase in enumerate(spec.phases) for t in phase.tables}
    known = ", ".join(order)
    for p, phase in enumerate(spec.phases):
        for i, table in enumerate(phase.tables):
            where = f"phases[{p}].tables[{i}]"
            listed_before = {t.id for t in phase.tables[:i]}
            for d, dep in enumerate(table.depends_on):
                if dep not in order:
                    yield f"{where}.depends_on[{d}]", f"depends on undefined table {dep!r}; declared tables: {known}"
                elif order[dep] > p:
                    yield f"{where}.depends_on[{d}]", (
                        f"depends on {dep!r} of a later phase ({spec.phases[order[dep]].name!r}); "
                        "a table can depend only on its own or earlier phases"
                    )
                elif order[dep] == p and phase.mode == "sequential" and dep not in listed_before:
                    yield f"{where}.depends_on[{d}]", (
                        f"depends on {dep!r}, listed after it in the sequential phase {phase.name!r}; "
                        "a sequential phase runs its tables in the order listed, so list it first"
                    )
            if table.fallback is not None and table.fallback not in order:
                yield f"{where}.fallback", f"fallback {table.fallback!r} is not a declared table; declared tables: {known}"
            elif table.fallback == table.id:
                yield f"{where}.fallback", "a table cannot be its own fallback"
            if table.date_column is None and spec.date_column is None:
                yield f"{where}.date_column", "required: name the table's date column here or set a top-level date_column"


def _cycle_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    graph = {t.id: [d for d in t.depends_on if d in spec.table_positions] for t in spec.tables}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep] if dep in path else [node, dep]
            if dep not in state and (cycle := visit(dep, [*path, dep])):
                return cycle
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node, [node])):
            yield f"{spec.field_path(cycle[0])}.depends_on", f"dependency cycle: {' -> '.join(cycle)}; remove one of these dependencies"
            return


def _calendar_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    cal = spec.calendar
    if cal.table is None and not cal.seasons:
        yield "calendar", "needs a schedule `table` or a list of `seasons` (or both)"
    for s, season in enumerate(cal.seasons):
        if season.end < season.start:
            yield f"calendar.seasons[{s}].end", f"season {season.name!r} ends ({season.end}) before it starts ({season.start})"
    ordered = sorted(cal.seasons, key=lambda s: s.start)
    for before, after in pairwise(ordered):
        if after.start <= before.end:
            yield "calendar.seasons", f"seasons {before.name!r} and {after.name!r} overlap"
    for p, phase in enumerate(spec.phases):
        if phase.bootstrap_days and not cal.seasons:
            yield f"phases[{p}].bootstrap_days", "needs calendar.seasons: bootstrap days count from each season's start"
    for t in spec.tables:
        if t.min_rows_per_game and not (cal.table and cal.game_id_column):
            yield f"{spec.field_path(t.id)}.min_rows_per_game", "needs calendar.table and calendar.game_id_column to count games per date"


def _job_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    for table in spec.tables:
        where = f"{spec.field_path(table.id)}.job"
        try:
            job = spec.job_of(table)
        except ValidationError:
            yield f"{where}.argv", "required: no argv here, in the phase's job or in job_defaults"
            continue
        names = {name for arg in job.argv for _, name, _, _ in string.Formatter().parse(arg) if name is not None}
        if unknown := names - JOB_PLACEHOLDERS:
            allowed = ", ".join("{" + p + "}" for p in sorted(JOB_PLACEHOLDERS))
            yield f"{where}.argv", f"unknown placeholder(s) {', '.join(sorted(unknown))}; allowed: {allowed}"
        for needed in ("start", "end"):
            if needed not in names:
                yield f"{where}.argv", f"the argv must contain {{{needed}}} so the job is told its date range"
