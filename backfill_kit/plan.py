"""The planner: from a validation, stages of steps that fix every gap in dependency order.

A step is one job over one contiguous run of expected dates (off days do not split a run),
chunked to the job's maximum dates per step. Stages run strictly one after another: a phase's
tables in parallel up to its worker cap, or one table at a time in a sequential phase. A cell
whose upstream will still be missing after the plan is reported as blocked, not run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from backfill_kit.common.collector import no_gc_pauses
from backfill_kit.common.file_kinds import kind_of
from backfill_kit.common.formatting import duration_text, plural
from backfill_kit.common.json_input import NotJson, parse_json
from backfill_kit.common.limits import date_out_of_bounds
from backfill_kit.common.small_files import NotSmallText, Why, read_small_text
from backfill_kit.common.status import NEEDS_WORK, Status
from backfill_kit.errors import BackfillKitError, InputError
from backfill_kit.spec.model import (
    MAX_RETRIES,
    MAX_TIMEOUT_SECONDS,
    MAX_WORKERS,
    JobSpec,
    PipelineSpec,
    TableSpec,
    command_problem,
)
from backfill_kit.spec.placeholders import fill_placeholders
from backfill_kit.validation.calendar import consecutive_runs
from backfill_kit.validation.validator import Cell, Validation

__all__ = [
    "Blocked",
    "Plan",
    "Stage",
    "Step",
    "build_plan",
    "job_command",
    "load_plan",
    "narrow_step",
    "needs_backfill",
    "plan_digest",
    "plan_from_data",
    "stage_seconds",
]

PLAN_FORMAT = 1


@dataclass(frozen=True)
class Step:
    id: str
    table: str
    phase: str
    start: date
    end: date
    dates: tuple[date, ...]
    causes: dict[str, int]
    argv: tuple[str, ...]
    workdir: str
    env: dict[str, str]
    timeout_seconds: float
    retries: int
    transient_exit_codes: tuple[int, ...]
    skips_downstream: bool  # False: the job declares no way to keep downstream automation quiet
    after: tuple[str, ...] = ()  # upstream steps whose output this one may read
    estimated_seconds: float | None = None

    @property
    def command(self) -> str:
        """The command as a person reads it: a Python interpreter by its name, not its folder
        (a shared report never shows the author's home)."""
        program = self.argv[0] if self.argv else ""
        if Path(program).name.startswith("python"):
            return shlex.join((Path(program).name, *self.argv[1:]))
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Stage:
    index: int
    phase: str
    mode: str
    workers: int
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Blocked:
    table: str
    date: date
    reason: str


@dataclass
class Plan:
    spec_path: str
    spec_name: str
    start: date
    end: date
    created_at: datetime
    stages: list[Stage]
    blocked: list[Blocked] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    # The digest of the file's bytes this plan was read from or written as (plan_digest): the
    # plan a journal records is the one that runs, whatever the file holds by then. Not written.
    sha: str = field(default="", compare=False)

    @property
    def steps(self) -> list[Step]:
        return [step for stage in self.stages for step in stage.steps]

    @property
    def table_dates(self) -> int:
        """How many (table, date) cells the steps cover: the plan file's totals.dates."""
        return sum(len(s.dates) for s in self.steps)

    def estimated_seconds(self) -> float | None:
        """Wall time, each stage's steps started in order on its workers (`stage_seconds`);
        None without any past duration (nothing to run takes no time, whatever is known)."""
        known = [s for s in self.steps if s.estimated_seconds is not None]
        if self.steps and not known:
            return None
        return sum(stage_seconds([s.estimated_seconds or 0.0 for s in st.steps], st.workers) for st in self.stages)

    def to_dict(self, base: Path | None = None) -> dict[str, Any]:
        """The plan as its file holds it; with `base`, the plan file's folder, paths are
        written relative to it and the interpreter as {python}, so that the plan runs from any
        folder and from a copy of the whole project elsewhere."""
        return {
            "format": PLAN_FORMAT,
            "spec": _relative(self.spec_path, base),
            "spec_name": self.spec_name,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "created_at": self.created_at.isoformat(),
            "options": self.options,
            "totals": {
                "stages": len(self.stages),
                "steps": len(self.steps),
                "dates": self.table_dates,
                "blocked": len(self.blocked),
                "estimated_seconds": self.estimated_seconds(),
            },
            "stages": [_stage_dict(st, base) for st in self.stages],
            "blocked": [{"table": b.table, "date": b.date.isoformat(), "reason": b.reason} for b in self.blocked],
        }

    def write(self, path: Path) -> None:
        """Write whole or not at all (common/outputs.py): a crash never leaves half a plan
        behind; a refusal (a read-only folder, a full disk, a device) leaves nothing and is
        one message."""
        from backfill_kit.common.outputs import write_output

        data = (json.dumps(self.to_dict(path.resolve().parent), indent=2) + "\n").encode()
        write_output(path, data, what="the plan", hint="choose a writable place with --out")
        self.sha = plan_digest(data)

    def text(self) -> str:
        return "\n".join(_plan_lines(self))


def stage_seconds(costs: Sequence[float], workers: int, busy: Sequence[float] = ()) -> float:
    """How long a stage takes as the runner runs it: each step, in order, on the first worker
    free; `busy` are the seconds the workers already at work still need. A stage of one long
    step and three short ones on four workers takes as long as the long one, not a quarter of
    all four."""
    free = sorted([*busy, *[0.0] * max(0, max(1, workers) - len(busy))])
    for cost in costs:
        free[0] += cost
        free.sort()
    return max(free, default=0.0)


def plan_digest(data: bytes) -> str:
    """A plan file's identity, as its journal records it: the start of its bytes' SHA-256."""
    return hashlib.sha256(data).hexdigest()[:16]


def _stage_dict(stage: Stage, base: Path | None) -> dict[str, Any]:
    steps = []
    for step in stage.steps:
        d = asdict(step)
        argv = [PYTHON if base is not None and arg == sys.executable else arg for arg in step.argv]
        d.update(
            start=step.start.isoformat(),
            end=step.end.isoformat(),
            dates=[x.isoformat() for x in step.dates],
            argv=argv,
            workdir=_relative(step.workdir, base),
            transient_exit_codes=list(step.transient_exit_codes),
            after=list(step.after),
        )
        steps.append(d)
    return {"index": stage.index, "phase": stage.phase, "mode": stage.mode, "workers": stage.workers, "steps": steps}


# In a plan file, the Python that runs backfill-kit: the one reading the plan runs the jobs.
PYTHON = "{python}"


def _relative(path: str, base: Path | None) -> str:
    if base is None or not path or not Path(path).is_absolute():
        return path
    return os.path.relpath(path, base)


def _absolute(path: str, base: Path) -> str:
    return str((base / path).resolve()) if path else path


# --- reading a plan file -------------------------------------------------------------------

MAX_PLAN_BYTES = 256 << 20  # a four-season plan of every table is a few megabytes
MAKE_ONE = "make a new one with backfill-kit plan"


def load_plan(path: Path) -> Plan:
    """Read a plan file, checked field by field: a wrong or edited file is one message naming
    the field (or saying what kind of file it is instead), never a crash or a silent loop."""
    text = _plan_text(path)
    try:
        data = parse_json(text)
    except NotJson as exc:
        if kind := _other_kind(text):
            raise InputError(f"{path}: not a plan file: this is {kind}") from None
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise InputError(f"{where}: not a plan file ({exc.reason}); {MAKE_ONE}") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: not a backfill-kit plan (a JSON {_JSON_TYPES.get(type(data), 'value')}, where a "
            f"plan is a JSON object); {MAKE_ONE}"
        )
    if kind := _other_kind(text):
        raise InputError(f"{path}: not a plan file: this is {kind}")
    plan = plan_from_data(data, path, path.resolve().parent)
    plan.sha = plan_digest(text.encode())  # the bytes parsed, read once: UTF-8 gives them back exactly
    return plan


_JSON_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _plan_text(path: Path) -> str:
    try:
        return read_small_text(path, MAX_PLAN_BYTES)
    except NotSmallText as exc:
        message = {
            Why.NOT_A_FILE: f"{path}: {exc.detail}, not a regular file; give the plan file (JSON) made by backfill-kit plan",
            Why.UNREADABLE: f"cannot read the plan {path}: {exc.detail}",
            Why.TOO_LARGE: f"{path}: larger than {MAX_PLAN_BYTES >> 20} MiB, so not a plan file; {MAKE_ONE}",
            Why.NOT_UTF8: f"{path}: not a plan file (not UTF-8 text: {exc.detail}); {MAKE_ONE}",
        }[exc.why]
        raise InputError(message) from exc


def _other_kind(text: str) -> str | None:
    """What a file given as a plan is instead, when it is one of the toolkit's other files."""
    return {
        "journal": "a runner journal (JSON lines); pass the plan it ran, or give the journal to --journal",
        "validation": f"validate's JSON output; {MAKE_ONE}",
        "preflight": f"preflight's JSON output; {MAKE_ONE}",
        "notebook": f"a Jupyter notebook; {MAKE_ONE}",
        "spec": "a pipeline spec (YAML); make a plan from it with backfill-kit plan --spec",
        "html": f"an HTML file (a report?); {MAKE_ONE}",
    }.get(kind_of(text) or "")


def plan_from_data(data: dict[str, Any], path: Path, base: Path, *, python: str = sys.executable) -> Plan:
    """A plan file's data, checked as `load_plan` checks a file (`path` names it in messages),
    its paths made absolute from `base` and {python} read as `python` (an exported DAG file
    holds the same data, and keeps {python} for the worker to fill)."""
    if data.get("format") != PLAN_FORMAT:
        raise InputError(
            f"{path}: not a backfill-kit plan (format {data.get('format')!r}, expected {PLAN_FORMAT}); {MAKE_ONE}"
        )
    fields = {_FILE_KEYS.get(k, k): v for k, v in data.items() if k not in ("format", "totals")}
    try:  # the dataclasses themselves are the schema, so it follows any field they gain
        plan = TypeAdapter(Plan).validate_python(fields)
    except ValidationError as exc:
        raise InputError(_schema_message(path, exc)) from None
    if problems := list(_plan_problems(plan)):
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InputError(f"{path}: not a usable plan: {'; '.join(problems[:5])}{more}; {MAKE_ONE}")
    return _localized(plan, base, python)


def _localized(plan: Plan, base: Path, python: str) -> Plan:
    """The plan with its file's paths (relative to its folder) made absolute, and {python}
    the interpreter reading it."""
    plan.spec_path = _absolute(plan.spec_path, base)
    plan.stages = [
        replace(
            st,
            steps=tuple(
                replace(
                    s,
                    argv=tuple(python if a == PYTHON else a for a in s.argv),
                    workdir=_absolute(s.workdir, base),
                )
                for s in st.steps
            ),
        )
        for st in plan.stages
    ]
    return plan


_FILE_KEYS = {"spec": "spec_path"}  # plan-file key -> Plan field, where they differ


def _schema_message(path: Path, exc: Any) -> str:
    errors = exc.errors()
    lines = []
    for err in errors[:5]:
        loc = [{v: k for k, v in _FILE_KEYS.items()}.get(p, p) for p in err["loc"]]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        got = f" (got {err['input']!r:.80})" if "input" in err and not isinstance(err["input"], dict | list) else ""
        lines.append(f"  {field or '(the file)'}: {err['msg']}{got}")
    more = [f"  ... and {len(errors) - 5} more"] if len(errors) > 5 else []
    return "\n".join(
        [
            f"{path}: not a backfill-kit plan ({plural(len(errors), 'bad field')}); {MAKE_ONE}:",
            *lines,
            *more,
        ]
    )


def _plan_problems(plan: Plan) -> Iterator[str]:
    """What the types cannot say: values the runner could not honour (no command, no worker,
    an endless timeout), dates outside their range, one step listed twice."""
    for d in (plan.start, plan.end):
        if reason := date_out_of_bounds(d):
            yield reason
    if plan.end < plan.start:
        yield f"end {plan.end} is before start {plan.start}"
    seen: set[str] = set()
    for st in plan.stages:
        where = f"stage {st.index}"
        if st.mode not in ("parallel", "sequential"):
            yield f"{where}: mode is {st.mode!r}, expected parallel or sequential"
        if st.workers < 1:
            yield f"{where}: workers is {st.workers}, a stage needs at least one"
        elif st.workers > MAX_WORKERS:
            yield f"{where}: workers is more than {MAX_WORKERS}, the most a phase runs at once"
        for step in st.steps:
            if step.id in seen:
                yield f"step {step.id!r} appears twice"
            seen.add(step.id)
            yield from (f"step {step.id!r}: {p}" for p in _step_problems(step))


def _step_problems(step: Step) -> Iterator[str]:
    if not step.argv or not step.argv[0]:
        yield "argv is empty: no command to run"
    for name, value in (("argv", step.argv), ("env", step.env), ("workdir", step.workdir)):
        if reason := command_problem(value):
            yield f"its {name} {reason}"
    if not step.dates or not (step.start <= min(step.dates) and max(step.dates) <= step.end):
        yield f"its dates are not inside {step.start} .. {step.end}"
    if not 0 < step.timeout_seconds <= MAX_TIMEOUT_SECONDS:  # nan fails this too
        yield f"timeout_seconds is {step.timeout_seconds}, expected more than 0 and at most {MAX_TIMEOUT_SECONDS}"
    if not 0 <= step.retries <= MAX_RETRIES:
        yield f"retries is {step.retries}, expected 0 to {MAX_RETRIES}"
    if step.estimated_seconds is not None and not 0 <= step.estimated_seconds < float("inf"):
        yield f"estimated_seconds is {step.estimated_seconds}, expected a duration"


# --- building a plan -----------------------------------------------------------------------


class Estimates(Protocol):
    """How long a step of a table over some dates will take. Planning only asks; what earlier
    runs took is learned where runs are recorded (`backfill_kit.running.estimates`)."""

    def seconds(self, table: str, dates: int) -> float | None: ...

    def describe(self, tables: Iterable[str]) -> str: ...


class NoEstimates:
    """A plan made without any past durations."""

    def seconds(self, table: str, dates: int) -> float | None:
        return None

    def describe(self, tables: Iterable[str]) -> str:
        return "no basis: no earlier journal and no run durations"


def build_plan(
    validation: Validation,
    *,
    statuses: Iterable[Status] = NEEDS_WORK,
    include_no_data: bool = False,
    python: str = sys.executable,
    estimates: Estimates | None = None,
) -> Plan:
    """The stages and steps that fix the validation's gaps, and the cells that must wait.
    `estimates`: each step's duration (`running.estimates.estimator_for`); none without."""
    spec = validation.spec
    wanted = set(statuses) | ({Status.NO_DATA} if include_no_data else set())
    with no_gc_pauses():  # an index of every cell, then thousands of steps: no cycles among them
        by_cell = {(c.table, c.date): c for c in validation.cells}
        todo = {key: {str(c.status)} for key, c in by_cell.items() if needs_backfill(c, wanted)}
        if spec.cascade == "dependents":
            _cascade(spec, by_cell, todo)
        blocked = _block(spec, by_cell, todo)
        calendar = [day.date for day in validation.days]
        estimator = estimates or NoEstimates()
        stages = _stages(spec, todo, calendar, estimator, python)
    options = {
        "statuses": sorted(str(s) for s in wanted),
        "cascade": spec.cascade,
        "estimate_basis": estimator.describe(s.table for st in stages for s in st.steps),
    }
    return Plan(
        str(spec.source.resolve()) if spec.source else "",
        spec.name,
        validation.start,
        validation.end,
        datetime.now(UTC),
        stages,
        blocked,
        options,
    )


def needs_backfill(cell: Cell, wanted: set[Status]) -> bool:
    """Whether a plan for the `wanted` statuses reruns this cell."""
    if cell.status not in wanted:
        return False
    return not (cell.status is Status.NO_DATA and cell.fallback)  # a fallback already covers it


def _dependents(spec: PipelineSpec) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {t.id: [] for t in spec.tables}
    for t in spec.tables:
        for dep in t.depends_on:
            out[dep].append(t.id)
    return out


def _topological(spec: PipelineSpec) -> list[TableSpec]:
    return [t for phase in spec.phases for group in _groups(phase.mode, phase.tables) for t in group]


def _by_table(todo: dict[tuple[str, date], set[str]]) -> dict[str, list[date]]:
    out: dict[str, list[date]] = {}
    for t, d in todo:
        out.setdefault(t, []).append(d)
    return out


def _cascade(spec: PipelineSpec, by_cell: dict[tuple[str, date], Cell], todo: dict[tuple[str, date], set[str]]) -> None:
    """Rebuild the dependents of every rebuilt date, so that they do not keep stale inputs."""
    dependents = _dependents(spec)
    dates_of = _by_table(todo)
    for table in _topological(spec):  # upstream first, so cascades chain all the way down
        for d in dates_of.get(table.id, []):
            for child in dependents[table.id]:
                cell = by_cell.get((child, d))
                if cell is not None and cell.status is not Status.BOOTSTRAP:
                    if (child, d) not in todo:
                        dates_of.setdefault(child, []).append(d)
                    todo.setdefault((child, d), set()).add(f"cascade:{table.id}")


def _block(
    spec: PipelineSpec, by_cell: dict[tuple[str, date], Cell], todo: dict[tuple[str, date], set[str]]
) -> list[Blocked]:
    """Take out cells whose upstream will still be missing; their dependents follow in order."""
    blocked: list[Blocked] = []
    dates_of = _by_table(todo)  # a table's own entries are the only ones removed in its turn
    for table in _topological(spec):
        for d in sorted(dates_of.get(table.id, [])):
            reason = _missing_upstream(spec, table, d, by_cell, todo)
            if reason:
                del todo[(table.id, d)]
                blocked.append(Blocked(table.id, d, reason))
    return blocked


def _missing_upstream(
    spec: PipelineSpec,
    table: TableSpec,
    d: date,
    by_cell: dict[tuple[str, date], Cell],
    todo: dict[tuple[str, date], set[str]],
) -> str | None:
    for dep_id in table.depends_on:
        dep = spec.table(dep_id)
        cell = by_cell.get((dep_id, d))
        if dep.priority == "optional" or cell is None or (dep_id, d) in todo:
            continue  # optional inputs never block; unknown cells were not validated
        if cell.status is Status.COMPLETE or (
            cell.status is Status.NO_DATA and _fallback_ready(dep, cell, d, by_cell, todo)
        ):
            continue
        return f"upstream {dep_id} is {cell.status} on {d} and not in this plan"
    return None


def _fallback_ready(
    dep: TableSpec, cell: Cell, d: date, by_cell: dict[tuple[str, date], Cell], todo: dict[tuple[str, date], set[str]]
) -> bool:
    """A no-data upstream is fine when its fallback covers the date now, or will after the plan."""
    if cell.fallback or (dep.fallback and (dep.fallback, d) in todo):
        return True
    fallback = by_cell.get((dep.fallback, d)) if dep.fallback else None
    return fallback is not None and fallback.status is Status.COMPLETE


def _stages(
    spec: PipelineSpec,
    todo: dict[tuple[str, date], set[str]],
    calendar: list[date],
    estimator: Estimates,
    python: str,
) -> list[Stage]:
    stages: list[Stage] = []
    made: dict[str, list[Step]] = {}
    dates_of = _by_table(todo)
    for phase in spec.phases:
        for group in _groups(phase.mode, phase.tables):
            steps = [
                s
                for t in group
                for s in _steps(spec, t, todo, dates_of.get(t.id, []), calendar, estimator, python, made)
            ]
            if steps:
                workers = 1 if phase.mode == "sequential" else phase.max_workers
                stages.append(Stage(len(stages) + 1, phase.name, phase.mode, workers, tuple(steps)))
    return stages


def _groups(mode: str, tables: Sequence[TableSpec]) -> list[list[TableSpec]]:
    """Sequential: one table per stage in listed order. Parallel: tables at the same depth of
    the phase's own dependencies share a stage."""
    if mode == "sequential":
        return [[t] for t in tables]
    ids = {t.id for t in tables}
    level: dict[str, int] = {}
    for t in tables:  # listed order may not be topological in a parallel phase
        level[t.id] = _level(t.id, {x.id: x for x in tables}, ids, level)
    return [[t for t in tables if level[t.id] == n] for n in sorted(set(level.values()))]


def _level(table_id: str, tables: dict[str, TableSpec], ids: set[str], memo: dict[str, int]) -> int:
    if table_id not in memo:
        inside = [d for d in tables[table_id].depends_on if d in ids]
        memo[table_id] = 1 + max((_level(d, tables, ids, memo) for d in inside), default=-1)
    return memo[table_id]


def _steps(
    spec: PipelineSpec,
    table: TableSpec,
    todo: dict[tuple[str, date], set[str]],
    dates: list[date],
    calendar: list[date],
    estimator: Estimates,
    python: str,
    made: dict[str, list[Step]],
) -> list[Step]:
    job = spec.job_of(table)
    workdir = str(spec.resolve_path(job.workdir))
    dates = sorted(dates)
    # A step waits for the steps of the tables it reads directly that start by its last date:
    # further up, a failure reaches it through them, as the runner skips their dependents too.
    # Sorted by start, those steps are a prefix of each table's list.
    upstream = [(made[t], [s.start for s in made[t]]) for t in table.depends_on if made.get(t)]
    steps = []
    for chunk in _chunks(consecutive_runs(dates, calendar), job.max_dates_per_step):
        causes: dict[str, int] = {}
        for d in chunk:
            for cause in todo[(table.id, d)]:
                causes[cause] = causes.get(cause, 0) + 1
        after = tuple(s.id for made_steps, starts in upstream for s in made_steps[: bisect_right(starts, chunk[-1])])
        estimate = estimator.seconds(table.id, len(chunk))
        steps.append(_step(spec, table, job, workdir, chunk, dict(sorted(causes.items())), after, estimate, python))
    made[table.id] = steps
    return steps


def _chunks(runs: list[list[date]], size: int) -> Iterable[list[date]]:
    for run in runs:
        for i in range(0, len(run), size):
            yield run[i : i + size]


def _step(
    spec: PipelineSpec,
    table: TableSpec,
    job: JobSpec,
    workdir: str,
    chunk: list[date],
    causes: dict[str, int],
    after: tuple[str, ...],
    estimate: float | None,
    python: str,
) -> Step:
    argv, env = job_command(table, job, chunk[0], chunk[-1], python=python)
    return Step(
        id=f"{table.id}:{chunk[0]}..{chunk[-1]}",
        table=table.id,
        phase=spec.phase_of(table.id).name,
        start=chunk[0],
        end=chunk[-1],
        dates=tuple(chunk),
        causes=causes,
        argv=argv,
        workdir=workdir,
        env=env,
        timeout_seconds=job.timeout_seconds,
        retries=job.retries,
        transient_exit_codes=job.transient_exit_codes,
        skips_downstream=job.skip_downstream is not None,
        after=after,
        estimated_seconds=estimate,
    )


def narrow_step(spec: PipelineSpec, step: Step, dates: Sequence[date], *, python: str = sys.executable) -> Step | None:
    """The step over some of its dates (consecutive ones), with the command the planner gives
    those dates; None when the step's command is not the one its spec makes (an edited plan,
    a changed spec): then no other command can be trusted to do the same over fewer dates."""
    if step.table not in spec.table_positions or not dates:
        return None
    table = spec.table(step.table)
    job = spec.job_of(table)
    if job_command(table, job, step.start, step.end, python=python) != (step.argv, step.env):
        return None
    causes = {cause: min(n, len(dates)) for cause, n in step.causes.items()}
    narrow = _step(spec, table, job, step.workdir, list(dates), causes, step.after, None, python)
    return replace(narrow, timeout_seconds=step.timeout_seconds, retries=step.retries)


def job_command(
    table: TableSpec, job: JobSpec, start: date, end: date, *, python: str, extra: Sequence[str] = ()
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The argv and env of a table's job over [start, end]: its argv with the placeholders
    filled, then `extra` (a dry run's arguments), then the settings that skip downstream work."""
    values = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "id": table.id,
        "table": table.table,
        "processor": table.processor,
        "python": python,
    }
    argv = [fill_placeholders(arg, values) for arg in job.argv] + list(extra)
    env = dict(job.env)
    if job.skip_downstream is not None:
        argv.extend(job.skip_downstream.args)
        env.update(job.skip_downstream.env)
    return tuple(argv), env


# --- the text a person reviews -------------------------------------------------------------


def _estimate(plan: Plan) -> str:
    basis = plan.options.get("estimate_basis") if plan.steps else None  # no step, nothing estimated
    seconds = duration_text(plan.estimated_seconds(), unknown="unknown")
    return f"{seconds} ({basis})" if basis else seconds


def _plan_lines(plan: Plan) -> Iterable[str]:
    yield (
        f"Plan for {plan.spec_name}, {plan.start} .. {plan.end}: {plural(len(plan.steps), 'step')} over "
        f"{plural(plan.table_dates, 'table-date')} in {plural(len(plan.stages), 'stage')}; estimated {_estimate(plan)}"
    )
    if not plan.steps:
        yield "Nothing to run."
    pythons = sorted({s.argv[0] for s in plan.steps if s.argv and Path(s.argv[0]).name.startswith("python")})
    for python in pythons:
        yield f"{Path(python).name} below is {python}"
    for stage in plan.stages:
        how = f"parallel, up to {stage.workers} at once" if stage.mode == "parallel" else "one step at a time"
        yield f"\nStage {stage.index} · {stage.phase} · {how} · {plural(len(stage.steps), 'step')}"
        for step in stage.steps:
            causes = ", ".join(f"{k} {v}" for k, v in step.causes.items())
            span = str(step.start) if step.start == step.end else f"{step.start} .. {step.end}"
            yield f"  {step.table}  {span}  ({plural(len(step.dates), 'date')}: {causes})"
            yield f"    $ {step.command}"
            if not step.skips_downstream:
                yield "    ! this job declares no way to skip downstream triggers: refused unless --allow-downstream-triggers"
    if plan.blocked:
        yield f"\nBlocked, not run ({plural(len(plan.blocked), 'cell')}): their upstream will still be missing"
        for b in plan.blocked[:20]:
            yield f"  {b.table} {b.date}: {b.reason}"
        if len(plan.blocked) > 20:
            yield f"  ... and {len(plan.blocked) - 20:,} more (see the plan file)"


def refuse_downstream_triggers(plan: Plan, tables: Iterable[str] | None = None) -> None:
    """The runner's guard: a job that could fire downstream automation does not run silently.
    `tables`: the jobs known to declare no skip setting (from the spec), else the plan's word."""
    offenders = sorted(set(tables) if tables is not None else {s.table for s in plan.steps if not s.skips_downstream})
    if offenders:
        raise BackfillKitError(
            f"jobs of {', '.join(offenders)} declare no skip_downstream setting, so each step could "
            "trigger the next phase. Add job.skip_downstream to the spec, or pass "
            "--allow-downstream-triggers if that is really what you want."
        )
