"""The pipeline spec: a YAML file describing a warehouse, its calendar, its run history and its
phases of tables. Loading validates everything and reports every problem at once, each with the
file, line, field path, what is wrong and what is expected.
"""

from __future__ import annotations

import pickle
import re
import string
import sys
from collections.abc import Iterator
from datetime import date
from functools import cached_property, lru_cache
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backfill_kit.common.cache import cache_key, read_entry, sources_key, write_entry
from backfill_kit.common.file_kinds import kind_of
from backfill_kit.common.limits import date_out_of_bounds
from backfill_kit.common.small_files import NotSmallText, Why, read_small_text
from backfill_kit.errors import Problem, SpecError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "BigQuerySettings",
    "Calendar",
    "DuckDBSettings",
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
MAX_TIMEOUT_SECONDS = 30 * 86400  # a step that needs longer should be cut into smaller ones
MAX_RETRIES = 100


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):  # `$` would let a trailing newline in
        raise ValueError(f"{value!r} is not a valid {what}")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    return AfterValidator(lambda value: _check(pattern, value, what))


def _in_bounds(value: date) -> date:
    if reason := date_out_of_bounds(value):
        raise ValueError(reason)
    return value


# Text a spec puts into SQL or into a name, each checked whole by one pattern, once.
ColumnName = Annotated[str, _matching(IDENTIFIER, "column name")]
TableId = Annotated[str, _matching(IDENTIFIER, "table id (letters, digits, underscores)")]
TableName = Annotated[str, _matching(TABLE_REF, TABLE_WHAT)]
ProjectId = Annotated[str, _matching(PROJECT_ID, "project id (lowercase letters, digits and hyphens)")]
Location = Annotated[str, _matching(LOCATION, "location, e.g. US, EU or europe-west1")]
# Empty is no prefix at all.
DatasetPrefix = Annotated[
    str, AfterValidator(lambda v: v and _check(DATASET_PREFIX, v, "dataset prefix (letters, digits, underscores)"))
]
SeasonDate = Annotated[date, AfterValidator(_in_bounds)]


class _Model(BaseModel):
    # No inf or nan: every number of a spec ends up in date or time arithmetic.
    # Schemas are built on first validation, not at import: a spec served from the cache
    # (load_spec) is never validated again, so that command never builds them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


class DuckDBSettings(_Model):
    """An embedded DuckDB database file; `dataset.table` names map to `schema.table`."""

    backend: Literal["duckdb"]
    path: str = Field(description="database file, relative to the spec file, or ':memory:'")


class BigQuerySettings(_Model):
    """Google BigQuery; `dataset.table` names map to `project.dataset.table` (with
    `dataset_prefix` put before the dataset), so a spec moves from DuckDB by this section alone.
    Credentials: the service-account key file named here, else Application Default Credentials."""

    backend: Literal["bigquery"]
    project: ProjectId = Field(description="project that runs the queries and holds the datasets")
    location: Location | None = Field(None, description="where the datasets live, e.g. US or europe-west1")
    credentials_file: str | None = Field(None, description="service-account key (JSON), relative to the spec file")
    dataset_prefix: DatasetPrefix = Field("", description="put before every dataset name, e.g. 'dev_'")
    maximum_bytes_billed: int | None = Field(None, ge=1, description="refuse any query estimated to bill more")
    price_per_tib_usd: float = Field(6.25, ge=0, description="on-demand price, for the cost estimates")


WAREHOUSES: dict[str, type[_Model]] = {"duckdb": DuckDBSettings, "bigquery": BigQuerySettings}


class Season(_Model):
    name: str
    start: SeasonDate
    end: SeasonDate


class Calendar(_Model):
    """Where expected dates come from: dates with (filtered) rows in a schedule table, inside
    the season windows; or, without a table, every day of the season windows."""

    table: TableName | None = None
    date_column: ColumnName = "game_date"
    game_id_column: ColumnName | None = Field(None, description="counts games per date, deduplicated")
    filter: str | None = Field(None, description="SQL condition, e.g. final games only")
    seasons: tuple[Season, ...] = ()


class RunHistoryColumns(_Model):
    processor: ColumnName
    date: ColumnName
    status: ColumnName
    started_at: ColumnName
    finished_at: ColumnName
    records: ColumnName
    error: ColumnName | None = Field(None, description="text, JSON or REPEATED: a list of {error_type, error_message}")
    run_id: ColumnName | None = Field(None, description="pairs the `running` row and the final row of one run")
    range_start: ColumnName | None = Field(None, description="first date of a range run's range; NULL for one date")
    range_end: ColumnName | None = Field(None, description="last date of a range run's range; NULL for one date")


class RunStatuses(_Model):
    """Which values of the status column mean what."""

    running: tuple[str, ...] = ("running",)
    success: tuple[str, ...] = ("success",)
    failed: tuple[str, ...] = ("failed",)
    skipped: tuple[str, ...] = ("skipped",)


class RunHistory(_Model):
    table: TableName
    columns: RunHistoryColumns
    statuses: RunStatuses = Field(default_factory=RunStatuses)
    stale_after_hours: float = Field(6.0, gt=0, le=24 * 366)
    # Which values of which columns turn a failed or skipped row into "nothing to load", e.g.
    # {failure_category: [no_data_available], skip_reason: [no_data]}. Once given, a skip that
    # matches none of them (already_processed) is no evidence: earlier attempts and rows decide.
    no_data_reasons: dict[str, tuple[str, ...]] = {}
    max_range_days: int = Field(62, ge=1, le=3660, description="longest range a range run covers, in days")

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


def command_problem(value: Any) -> str | None:
    """Why an argv, a folder or an environment could not be handed to a process, or None."""
    if isinstance(value, dict):
        texts = [*value.keys(), *value.values()]
    else:
        texts = [value] if isinstance(value, str) else list(value or ())
    if any("\0" in text for text in texts):
        return "contains a NUL character, which no command line or environment can carry"
    if isinstance(value, dict) and any(not name or "=" in name for name in value):
        return "an environment variable name is empty or contains '='"
    return None


def _runnable_by_a_process(value: Any) -> Any:
    if reason := command_problem(value):
        raise ValueError(reason)
    return value


class SkipDownstream(_Model):
    """How a job is told not to trigger downstream work: extra arguments and/or environment."""

    args: tuple[str, ...] = ()
    env: dict[str, str] = {}

    _runnable = field_validator("args", "env")(_runnable_by_a_process)

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
    timeout_seconds: float | None = Field(None, gt=0, le=MAX_TIMEOUT_SECONDS)
    transient_exit_codes: tuple[int, ...] | None = None
    retries: int | None = Field(None, ge=0, le=MAX_RETRIES)
    dry_run_args: tuple[str, ...] | None = Field(None, description="appended for preflight's dry run")

    _runnable = field_validator("argv", "workdir", "env", "dry_run_args")(_runnable_by_a_process)


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
    id: TableId
    table: TableName
    date_column: ColumnName | None = None
    processor: str
    priority: Literal["critical", "important", "fallback", "optional"] = "critical"
    min_rows: int = Field(1, ge=1, description="rows a date needs to be complete")
    min_rows_per_game: float | None = Field(None, gt=0, description="rows per scheduled game")
    fallback: str | None = Field(None, description="table id whose data stands in when this has none")
    depends_on: tuple[str, ...] = ()
    job: JobOverrides | None = None

    def expected_rows(self, games: int) -> int:
        """Rows a date with `games` games needs to count as complete."""
        per_game = -(-self.min_rows_per_game * games // 1) if self.min_rows_per_game else 0
        return max(self.min_rows, int(per_game))


class Phase(_Model):
    name: str
    mode: Literal["parallel", "sequential"] = "parallel"
    max_workers: int = Field(1, ge=1)
    bootstrap_days: int = Field(0, ge=0, le=366, description="days after each season start expected empty")
    job: JobOverrides | None = None
    tables: tuple[TableSpec, ...] = Field(min_length=1)


class PipelineSpec(_Model):
    name: str
    warehouse: DuckDBSettings | BigQuerySettings = Field(discriminator="backend")
    calendar: Calendar
    run_history: RunHistory
    date_column: ColumnName | None = Field(None, description="date column of tables that name none")
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
        """The table's date column, else the spec's: `load_spec` refuses a table with neither."""
        column = table.date_column or self.date_column
        if column is None:  # a spec built in Python, around the loader's checks
            where, what = f"{self.field_path(table.id)}.date_column", "required: name the table's date column here"
            raise SpecError([Problem(self.file_name, where, f"{what} or set a top-level date_column")])
        return column

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

# A spec is a few kilobytes and a few thousand values: these bounds are far above any real
# one, and far below what an alias bomb (a few hundred bytes) expands to.
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_VALUES = 50_000
MAX_SPEC_DEPTH = 50
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


@lru_cache(maxsize=1)
def _spec_loader() -> Any:
    """The safe loader, leaving dates as text: pydantic then parses them, so that a date such
    as 2021-02-30 is a problem at its field, not a crash inside the YAML library. Built on
    first use: a spec served from the cache needs no YAML."""
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster

    class SpecLoader(base):  # type: ignore[misc]
        yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
            first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
            for first, resolvers in base.yaml_implicit_resolvers.items()
        }

    return SpecLoader


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate a spec file; raise `SpecError` listing every problem found. A relative
    path is found by `arguments.find_file`'s rule (the working directory, then the folders above
    it up to the project folder)."""
    from backfill_kit.common.arguments import find_file

    path = find_file(path, "the spec")
    text = _read_text(path)
    if kind := _OTHER_KINDS.get(kind_of(text) or ""):
        raise SpecError([Problem(str(path), "", f"not a pipeline spec: this is {kind}", 1)])
    slot, key = "spec-" + cache_key(str(path))[:32], _spec_key(path, text)
    if isinstance(spec := _stored_spec(read_entry(slot, key)), PipelineSpec) and spec.source == path:
        return spec
    spec = parse_spec(text, path)
    write_entry(slot, key, pickle.dumps(spec, pickle.HIGHEST_PROTOCOL))
    return spec


# A spec that passed every check is kept in the user's cache (common/cache.py), so that the
# next command on the same file skips YAML, validation and the filter's parser. It is served
# only for the same path and text, checked by the same code: the key holds the source of every
# module a spec's checks can run (the spec layer and those below it, per the import contract)
# and the versions of pydantic and sqlglot. A spec with problems is never stored.
_CHECKING_CODE = (Path(__file__).parent, Path(__file__).parents[1] / "common", Path(__file__).parents[1] / "errors.py")


def _spec_key(path: Path, text: str) -> str | None:
    """None (no cache) when the checking code cannot be read."""
    from pydantic import VERSION

    from backfill_kit.spec.calendar_filter import sqlglot_version

    code = sources_key(p for where in _CHECKING_CODE for p in ([where] if where.is_file() else where.glob("*.py")))
    return (
        None if code is None else cache_key("spec", str(path), text, code, VERSION, str(sqlglot_version()), sys.version)
    )


def _stored_spec(payload: bytes | None) -> Any:
    """The unpickled entry, or None when there is none or it does not unpickle. Unpickling runs
    what the file says: the cache folder's owner check is what makes that safe (see cache.py)."""
    if payload is None:
        return None
    try:
        return pickle.loads(payload)
    except Exception:  # a corrupt entry is a miss, whatever the unpickler trips on
        return None


# What to say when a file of another kind is given as the spec.
_OTHER_KINDS = {
    "html": "an HTML file (a report?); give the spec's YAML file",
    "journal": "a runner journal (JSON lines); give it to backfill-kit report execution --journal",
    "notebook": "a Jupyter notebook; give the spec's YAML file (the notebook takes it as its `spec` parameter)",
    "plan": "a backfill plan (made by backfill-kit plan); run it with backfill-kit run --plan",
    "validation": "JSON output of validate or preflight; give the spec's YAML file",
    "preflight": "JSON output of validate or preflight; give the spec's YAML file",
}


def _read_text(path: Path) -> str:
    """The file's text: a regular file, at most MAX_SPEC_BYTES, in UTF-8."""
    try:
        return read_small_text(path, MAX_SPEC_BYTES)
    except NotSmallText as exc:
        message = {
            Why.NOT_A_FILE: "not a regular file; give the path of the spec's YAML file",
            Why.UNREADABLE: f"cannot read the spec file: {exc.detail}",
            Why.TOO_LARGE: f"the file is larger than {MAX_SPEC_BYTES // 1024} KiB; a spec is a few kilobytes of YAML",
            Why.NOT_UTF8: f"not UTF-8 text ({exc.detail}); save the file as UTF-8",
        }[exc.why]
        raise SpecError([Problem(str(path), "", message, exc.line)]) from exc


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
            for field, message in [*_cross_table_problems(_skeleton(data)), *_raw_filter_problems(data)]
            if field not in seen
        ]
        raise SpecError(sorted(problems, key=lambda p: p.line or 0)) from None
    problems = [
        Problem(str(path), field, message, _line_of(lines, field)) for field, message in _semantic_problems(spec)
    ]
    if problems:
        raise SpecError(problems)
    return spec


def _skeleton(data: dict[str, Any]) -> SimpleNamespace:
    """The phases and tables of a spec that failed validation, as far as they can be read."""
    phases = []
    for phase in _items(data.get("phases")):
        if not isinstance(phase, dict):
            continue
        tables = [
            SimpleNamespace(
                id=t["id"],
                depends_on=tuple(d for d in _items(t.get("depends_on")) if isinstance(d, str)),
                fallback=t.get("fallback") if isinstance(t.get("fallback"), str) else None,
                date_column=t.get("date_column"),
            )
            for t in _items(phase.get("tables"))
            if isinstance(t, dict) and isinstance(t.get("id"), str)
        ]
        mode = phase.get("mode", "parallel")
        phases.append(SimpleNamespace(name=str(phase.get("name")), mode=mode, tables=tables))
    return SimpleNamespace(phases=phases, date_column=data.get("date_column"))


def _raw_filter_problems(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The calendar filter of a spec that failed validation, checked all the same."""
    calendar, warehouse = data.get("calendar"), data.get("warehouse")
    text = calendar.get("filter") if isinstance(calendar, dict) else None
    backend = warehouse.get("backend") if isinstance(warehouse, dict) else None
    if isinstance(text, str) and text:
        yield from _filter_problems(text, backend if isinstance(backend, str) and backend in WAREHOUSES else "duckdb")


def _filter_problems(text: str, dialect: str) -> Iterator[tuple[str, str]]:
    from backfill_kit.spec.calendar_filter import filter_problem  # sqlglot, only for a spec with a filter

    if reason := filter_problem(text, dialect):
        yield "calendar.filter", f"{reason} (got {text!r})"


def _items(value: Any) -> list[Any]:
    """A YAML list as a list; anything else (a typo'd scalar, a mapping) as nothing."""
    return value if isinstance(value, list) else []


def _read_yaml(text: str, file: str) -> tuple[dict[str, int], Any]:
    import yaml

    loader = _spec_loader()(text)
    try:
        node = loader.get_single_node()
        lines = _index_lines(node, file) if node is not None else {}
        return lines, loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(file, "", f"not valid YAML: {reason}", line)]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. !!float abc, a 5000-digit int
        raise SpecError([Problem(file, "", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()


def _index_lines(root: yaml.Node, file: str) -> dict[str, int]:
    """The line of every field path, e.g. ``phases[1].tables[0].id``. Walks the document as it
    will be built, aliases expanded, so that an alias bomb or a self-referring alias is refused
    before anything is built from it; duplicate keys are refused too (YAML keeps the last)."""
    import yaml

    out: dict[str, int] = {}
    duplicates: list[Problem] = []
    checked: set[int] = set()
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 0)]
    for _ in range(MAX_SPEC_VALUES + 1):
        if not stack:
            break
        node, path, depth = stack.pop()
        out.setdefault(path, node.start_mark.line + 1)
        if depth > MAX_SPEC_DEPTH:
            raise SpecError(
                [
                    Problem(
                        file,
                        "",
                        f"nested deeper than {MAX_SPEC_DEPTH} levels (an alias that "
                        "refers to itself?); a spec nests a few levels",
                        node.start_mark.line + 1,
                    )
                ]
            )
        if isinstance(node, yaml.MappingNode):
            if id(node) not in checked:
                checked.add(id(node))
                duplicates += _duplicate_keys(node, path, file)
            for key, value in reversed(node.value):
                child = f"{path}.{key.value}" if path else str(key.value)
                out[child] = key.start_mark.line + 1
                stack.append((value, child, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in reversed(list(enumerate(node.value))))
    if stack:
        raise SpecError(
            [
                Problem(
                    file,
                    "",
                    f"more than {MAX_SPEC_VALUES:,} values once YAML aliases are expanded "
                    "(aliases nested into a huge document); write the values out",
                    1,
                )
            ]
        )
    if duplicates:
        raise SpecError(duplicates)
    return out


def _duplicate_keys(node: yaml.MappingNode, path: str, file: str) -> list[Problem]:
    import yaml

    first_line: dict[tuple[str, Any], int] = {}
    problems = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        if (key.tag, key.value) in first_line:
            field = f"{path}.{key.value}" if path else str(key.value)
            problems.append(
                Problem(
                    file,
                    field,
                    f"the key {key.value!r} appears twice (first on line "
                    f"{first_line[key.tag, key.value]}); YAML would silently keep the last: keep one",
                    line,
                )
            )
        first_line.setdefault((key.tag, key.value), line)
    return problems


def _line_of(lines: dict[str, int], field: str) -> int | None:
    while field:
        if field in lines:
            return lines[field]
        parent = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", field)
        field = "" if parent == field else parent  # a top-level field has no parent
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
                    yield (
                        f"{where}.depends_on[{d}]",
                        (
                            f"depends on {dep!r} of a later phase ({spec.phases[order[dep]].name!r}); "
                            "a table can depend only on its own or earlier phases"
                        ),
                    )
                elif order[dep] == p and phase.mode == "sequential" and dep not in listed_before:
                    yield (
                        f"{where}.depends_on[{d}]",
                        (
                            f"depends on {dep!r}, listed after it in the sequential phase {phase.name!r}; "
                            "a sequential phase runs its tables in the order listed, so list it first"
                        ),
                    )
            if table.fallback is not None and table.fallback not in order:
                yield (
                    f"{where}.fallback",
                    f"fallback {table.fallback!r} is not a declared table; declared tables: {known}",
                )
            elif table.fallback == table.id:
                yield f"{where}.fallback", "a table cannot be its own fallback"
            if table.date_column is None and spec.date_column is None:
                yield (
                    f"{where}.date_column",
                    "required: name the table's date column here or set a top-level date_column",
                )


def _cycle_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    graph = {t.id: [d for d in t.depends_on if d in spec.table_positions] for t in spec.tables}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep] if dep in path else [node, dep]
            if dep not in state and (cycle := visit(dep, [*path, dep])):
                return cycle
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node, [node])):
            yield (
                f"{spec.field_path(cycle[0])}.depends_on",
                f"dependency cycle: {' -> '.join(cycle)}; remove one of these dependencies",
            )
            return


def _calendar_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    cal = spec.calendar
    if cal.filter:
        yield from _filter_problems(cal.filter, spec.warehouse.backend)
    if cal.table is None and not cal.seasons:
        yield "calendar", "needs a schedule `table` or a list of `seasons` (or both)"
    for s, season in enumerate(cal.seasons):
        if season.end < season.start:
            yield (
                f"calendar.seasons[{s}].end",
                f"season {season.name!r} ends ({season.end}) before it starts ({season.start})",
            )
    ordered = sorted(cal.seasons, key=lambda s: s.start)
    for before, after in pairwise(ordered):
        if after.start <= before.end:
            yield "calendar.seasons", f"seasons {before.name!r} and {after.name!r} overlap"
    for p, phase in enumerate(spec.phases):
        if phase.bootstrap_days and not cal.seasons:
            yield f"phases[{p}].bootstrap_days", "needs calendar.seasons: bootstrap days count from each season's start"
    for t in spec.tables:
        if t.min_rows_per_game and not (cal.table and cal.game_id_column):
            yield (
                f"{spec.field_path(t.id)}.min_rows_per_game",
                "needs calendar.table and calendar.game_id_column to count games per date",
            )


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
