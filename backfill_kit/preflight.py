"""Preflight: everything that can be checked before a backfill starts, each check ending
pass, warn or fail with one line of why and what to do.

The old script checked 14 things hard-coded for one project; these are generic, read from the
spec. Backend-specific checks ask the warehouse's capabilities, never its name.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path

from backfill_kit.common.formatting import plural
from backfill_kit.common.status import Status
from backfill_kit.errors import BackfillKitError, PreflightFailed, WarehouseMismatchError
from backfill_kit.plan import Plan, build_plan, job_command
from backfill_kit.running.estimates import estimator_for
from backfill_kit.running.locks import is_locked, journal_lock, table_locks_in
from backfill_kit.running.runner import (
    Progress,
    Runner,
    RunOptions,
    RunResult,
    journal_path_for,
    step_narrower,
    warehouse_checker,
)
from backfill_kit.spec.load import load_spec
from backfill_kit.spec.model import JobSpec, PipelineSpec, TableSpec
from backfill_kit.validation.validator import Validation, validate
from backfill_kit.warehouse import Warehouse, open_warehouse

__all__ = ["Check", "Outcome", "exit_code", "run_plan", "run_preflight"]


class Outcome(StrEnum):
    """A check's verdict; the JSON and the printed list carry its value."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


FREE_DISK_FAIL = 100 * 2**20
FREE_DISK_WARN = 2**30


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    why: str
    todo: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "outcome": self.outcome, "why": self.why, "todo": self.todo}


def exit_code(checks: list[Check]) -> int:
    """0 when everything passes, 2 on warnings only, 1 on any failure."""
    outcomes = {c.outcome for c in checks}
    return 1 if Outcome.FAIL in outcomes else 2 if Outcome.WARN in outcomes else 0


def run_plan(
    plan: Plan,
    plan_path: Path,
    options: RunOptions | None = None,
    *,
    progress: Progress | None = None,
    ignore_preflight: bool = False,
    show_checks: Callable[[list[Check]], None] | None = None,
) -> RunResult:
    """Run a plan the way every caller should: the quick preflight first (a failure raises
    `PreflightFailed` and nothing starts, unless `ignore_preflight`), then the runner, which
    re-checks each finished step against the warehouse. `show_checks` sees the checks when any
    warns or fails."""
    options = options or RunOptions()
    spec = load_spec(plan.spec_path) if plan.spec_path else None
    if spec is not None and plan.steps:
        checks = run_preflight(
            spec,
            plan.start,
            plan.end,
            quick=True,
            journal=options.journal or journal_path_for(plan_path),
        )
        if show_checks is not None and any(c.outcome in (Outcome.WARN, Outcome.FAIL) for c in checks):
            show_checks(checks)
        if any(c.outcome == Outcome.FAIL for c in checks) and not ignore_preflight:
            raise PreflightFailed(checks)
    checker, narrower = warehouse_checker(plan, spec), step_narrower(plan, spec)
    return Runner(plan, plan_path, options, checker=checker, narrower=narrower, progress=progress).run()


@dataclass
class _Context:
    spec: PipelineSpec
    start: date
    end: date
    quick: bool
    log_dir: Path
    lock_dir: Path
    journal: Path | None
    warehouse: Warehouse | None = None
    validation: Validation | None = None
    plan: Plan | None = None


def run_preflight(
    spec: PipelineSpec,
    start: date,
    end: date,
    *,
    quick: bool = False,
    log_dir: Path | None = None,
    lock_dir: Path | None = None,
    journal: Path | None = None,
    warehouse: Warehouse | None = None,
) -> list[Check]:
    """Run every check; a failing check never stops the others."""
    base = spec.folder
    ctx = _Context(
        spec,
        start,
        end,
        quick,
        log_dir or base / "runs",
        lock_dir or table_locks_in(base),
        journal,
        warehouse,
    )
    owned = warehouse is None
    try:
        return [check for step in CHECKS for check in step(ctx)]
    finally:
        if owned and ctx.warehouse is not None:
            ctx.warehouse.close()


def _verdict(name: str, *, failure: str, todo: str, passed: str) -> Check:
    """Fails saying `failure` and what to do, when there is one (empty: none); else passes saying `passed`."""
    return Check(name, Outcome.FAIL, failure, todo) if failure else Check(name, Outcome.PASS, passed)


# --- the warehouse -------------------------------------------------------------------------


def _reachable(ctx: _Context) -> Iterator[Check]:
    try:
        ctx.warehouse = ctx.warehouse or open_warehouse(ctx.spec)
        ctx.warehouse.missing_objects({})
    except BackfillKitError as exc:
        ctx.warehouse = None
        yield Check(
            "warehouse reachable", Outcome.FAIL, str(exc), "fix the spec's warehouse section or the credentials"
        )
        return
    yield Check("warehouse reachable", Outcome.PASS, f"{ctx.warehouse.capabilities.name} warehouse answered")


def _tables_exist(ctx: _Context) -> Iterator[Check]:
    if ctx.warehouse is None:
        yield Check("tables and date columns", Outcome.SKIP, "the warehouse is not reachable")
        return
    wanted = {t.table: [ctx.spec.date_column_of(t)] for t in ctx.spec.tables}
    missing = ctx.warehouse.missing_objects(wanted)
    if not missing:
        yield Check(
            "tables and date columns", Outcome.PASS, f"all {plural(len(wanted), 'table')} exist with their date columns"
        )
        return
    where = {t.table: ctx.spec.field_path(t.id) for t in ctx.spec.tables}
    named = "; ".join(f"{m.table}{'.' + m.column if m.column else ''} ({where.get(m.table, '?')})" for m in missing)
    yield Check(
        "tables and date columns", Outcome.FAIL, f"missing: {named}", "create them, or fix the names in the spec"
    )


def _run_history_columns(ctx: _Context) -> Iterator[Check]:
    if ctx.warehouse is None:
        yield Check("run history columns", Outcome.SKIP, "the warehouse is not reachable")
        return
    rh = ctx.spec.run_history
    columns = [*rh.columns.named().values(), *rh.no_data_reasons]
    missing = ctx.warehouse.missing_objects({rh.table: columns})
    names = ", ".join(m.column or f"the table {m.table}" for m in missing)
    yield _verdict(
        "run history columns",
        failure=f"{rh.table} lacks {names}" if missing else "",
        todo="fix run_history.columns in the spec",
        passed=f"{rh.table} has the {len(columns)} mapped columns",
    )


def _validated(ctx: _Context) -> Iterator[Check]:
    """The calendar, stale rows and the plan all come from one validation (three queries)."""
    if ctx.warehouse is None:
        yield Check("calendar has dates", Outcome.SKIP, "the warehouse is not reachable")
        return
    try:
        ctx.validation = validate(ctx.spec, ctx.start, ctx.end, warehouse=ctx.warehouse)
    except WarehouseMismatchError as exc:
        # The tables and the run history's columns have checks of their own, above: only what
        # they do not cover (the calendar's table and columns, say) is this check's to name.
        rest = [p for p in exc.problems if not p.field.startswith(("phases[", "run_history."))]
        if rest:
            why = "; ".join(f"{p.field}: {p.message}" for p in rest)
            yield Check("calendar has dates", Outcome.FAIL, why, "fix what the message names")
        else:
            yield Check("calendar has dates", Outcome.SKIP, "validation needs the tables and columns named above")
        return
    except BackfillKitError as exc:
        yield Check("calendar has dates", Outcome.FAIL, f"validation failed: {exc}", "fix what the message names")
        return
    days = len(ctx.validation.days)
    outside = [w for w in ctx.validation.warnings if "season the calendar knows" in w]
    if days and outside:
        yield Check(
            "calendar has dates",
            Outcome.WARN,
            f"{days} expected dates; " + "; ".join(outside),
            "narrow the range, or add the missing season to calendar.seasons",
        )
    elif days:
        yield Check("calendar has dates", Outcome.PASS, f"{days} expected dates in {ctx.start} .. {ctx.end}")
    else:
        yield Check(
            "calendar has dates",
            Outcome.FAIL,
            f"no expected dates in {ctx.start} .. {ctx.end}",
            "check the range, calendar.filter and calendar.seasons",
        )
    ctx.plan = build_plan(ctx.validation, estimates=estimator_for(ctx.spec, ctx.validation.cells))


def _from_validation(
    name: str, found: Callable[[Validation], str | None], clean: str, todo: str
) -> Callable[[_Context], Iterator[Check]]:
    """A check that reads the validation: it warns with what `found` says, else passes."""

    def check(ctx: _Context) -> Iterator[Check]:
        if ctx.validation is None:
            yield Check(name, Outcome.SKIP, "no validation")
        elif why := found(ctx.validation):
            yield Check(name, Outcome.WARN, why, todo)
        else:
            yield Check(name, Outcome.PASS, clean)

    return check


def _stale_text(validation: Validation) -> str | None:
    stale = [c for c in validation.cells if c.status is Status.STALE]
    first = ", ".join(f"{c.table} {c.date}" for c in stale[:3])
    return f"{plural(len(stale), 'run')} never finished ({first}...)" if stale else None


def _unmapped_text(validation: Validation) -> str | None:
    named = ", ".join(f"{status!r} ({n:,} processor-dates)" for status, n in validation.unmapped_statuses.items())
    return f"statuses the spec does not map, read as no evidence: {named}" if named else None


_stale_runs = _from_validation(
    "orphaned running rows",
    _stale_text,
    "no run was left `running` by a crash",
    "the backfill reruns them; check nothing is still running them",
)
_run_history_statuses = _from_validation(
    "run history statuses",
    _unmapped_text,
    "every status in the range is mapped by run_history.statuses",
    "map them under run_history.statuses",
)


def _upstream_coverage(ctx: _Context) -> Iterator[Check]:
    if ctx.plan is None:
        yield Check("upstream coverage", Outcome.SKIP, "no plan")
        return
    if not ctx.plan.stages:
        yield Check("upstream coverage", Outcome.PASS, "nothing to run")
        return
    blocked = ctx.plan.blocked
    if blocked:
        yield Check(
            "upstream coverage",
            Outcome.WARN,
            f"{plural(len(blocked), 'cell')} {'is' if len(blocked) == 1 else 'are'} blocked by missing upstream data "
            f"(first: {blocked[0].table} {blocked[0].date}: {blocked[0].reason})",
            "backfill or fix the upstream first, or accept that these cells stay empty",
        )
        return
    first = ctx.plan.stages[0]
    yield Check(
        "upstream coverage", Outcome.PASS, f"stage 1 ({first.phase}, {plural(len(first.steps), 'step')}) has its inputs"
    )


# --- the jobs ------------------------------------------------------------------------------


def _jobs_resolve(ctx: _Context) -> Iterator[Check]:
    problems = [p for t in ctx.spec.tables if (p := _unresolved(ctx.spec, t, ctx.spec.job_of(t)))]
    yield _verdict(
        "job commands resolve",
        failure="; ".join(problems[:5]),
        todo="fix the jobs' argv or workdir in the spec",
        passed=f"the commands of all {plural(len(ctx.spec.tables), 'job')} exist",
    )


def _unresolved(spec: PipelineSpec, table: TableSpec, job: JobSpec) -> str | None:
    workdir = spec.resolve_path(job.workdir)
    if not workdir.is_dir():
        return f"{table.id}: workdir {workdir} does not exist"
    program = sys.executable if job.argv[0] == "{python}" else job.argv[0]
    if not (shutil.which(program) or (workdir / program).is_file()):
        return f"{table.id}: {program!r} is not on PATH nor in {workdir}"
    rest = job.argv[1:]
    if program == sys.executable and len(rest) >= 2 and rest[0] == "-m" and importlib.util.find_spec(rest[1]) is None:
        return f"{table.id}: module {rest[1]!r} cannot be imported"
    script = next((a for a in rest if a.endswith(".py") and "{" not in a), None)
    if script and not (workdir / script).is_file():
        return f"{table.id}: script {script} is not in {workdir}"
    return None


def _skip_downstream(ctx: _Context) -> Iterator[Check]:
    loud = [t.id for t in ctx.spec.tables if ctx.spec.job_of(t).skip_downstream is None]
    yield _verdict(
        "jobs skip downstream triggers",
        failure=f"no skip_downstream setting: {', '.join(loud)}" if loud else "",
        todo="declare job.skip_downstream, or each step may fire the next phase",
        passed="every job declares how to skip downstream triggers",
    )


def _single_writer(ctx: _Context) -> Iterator[Check]:
    """A parallel phase on a warehouse that one process writes at a time (DuckDB): its jobs
    must wait for the lock (retrying on 'Could not set lock on file') or run one at a time."""
    name = "one writer at a time"
    if ctx.warehouse is None or not ctx.warehouse.capabilities.single_writer:
        what = ctx.warehouse.capabilities.name if ctx.warehouse else "this"
        yield Check(name, Outcome.SKIP, f"not applicable: the {what} warehouse takes writers side by side")
        return
    crowded = [
        (phase, [t.id for t in phase.tables if not ctx.spec.job_of(t).waits_for_lock])
        for phase in ctx.spec.phases
        if phase.mode == "parallel" and phase.max_workers > 1
    ]
    crowded = [(phase, tables) for phase, tables in crowded if tables]
    if not crowded:
        yield Check(name, Outcome.PASS, "every job that runs beside others declares that it waits for the write lock")
        return
    why = "; ".join(
        f"phase {phase.name} runs up to {plural(phase.max_workers, 'job')} at once, and {', '.join(tables[:5])}"
        f"{' ...' if len(tables) > 5 else ''} {'does' if len(tables) == 1 else 'do'} not declare job.waits_for_lock"
        for phase, tables in crowded
    )
    yield Check(
        name,
        Outcome.WARN,
        f"{why}: DuckDB lets one process write its file at a time, so a job that holds it makes the others fail "
        "with 'Could not set lock on file'",
        "make each job open the file only to write and retry on that error with backoff, then declare "
        "waits_for_lock: true; or set the phase's mode: sequential",
    )


def _dry_runs(ctx: _Context, timeout: float = 60.0) -> Iterator[Check]:
    if ctx.quick:
        yield Check("jobs dry run", Outcome.SKIP, "skipped by --quick")
        return
    first = ctx.validation.days[0].date if ctx.validation and ctx.validation.days else ctx.start
    failed, silent = [], []
    for table in ctx.spec.tables:
        job = ctx.spec.job_of(table)
        if job.dry_run_args is None:
            silent.append(table.id)
        elif reason := _rehearse(ctx.spec, table, job, first, timeout):
            failed.append(f"{table.id}: {reason}")
    if failed:
        yield Check("jobs dry run", Outcome.FAIL, "; ".join(failed[:3]), "run that job by hand on one date and fix it")
    elif silent:
        yield Check(
            "jobs dry run",
            Outcome.WARN,
            f"no dry_run_args, not rehearsed: {', '.join(silent)}",
            "declare job.dry_run_args so preflight can rehearse the job",
        )
    else:
        yield Check(
            "jobs dry run", Outcome.PASS, f"all {plural(len(ctx.spec.tables), 'job')} rehearsed {first} and exited 0"
        )


def _rehearse(spec: PipelineSpec, table: TableSpec, job: JobSpec, day: date, timeout: float) -> str | None:
    argv, env = job_command(table, job, day, day, python=sys.executable, extra=job.dry_run_args or ())
    try:
        done = subprocess.run(
            argv,
            cwd=spec.resolve_path(job.workdir),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return f"exit {done.returncode}: {tail[0][:200]}"
    return None


# --- the machine ---------------------------------------------------------------------------


def _runner_locks(ctx: _Context) -> Iterator[Check]:
    held = [p.stem for p in sorted(ctx.lock_dir.glob("*.lock")) if is_locked(p)]
    if ctx.journal is not None and is_locked(journal_lock(ctx.journal)):
        held.insert(0, f"journal {ctx.journal.name}")
    yield _verdict(
        "no other runner",
        failure=f"another runner holds: {', '.join(held)}" if held else "",
        todo="wait for it to finish, or stop it",
        passed="no runner holds this pipeline's locks",
    )


def _free_disk(ctx: _Context) -> Iterator[Check]:
    where = next((p for p in (ctx.log_dir, *ctx.log_dir.parents) if p.exists()), Path.cwd())
    free = shutil.disk_usage(where).free
    text = f"{free / 2**30:.1f} GiB free for logs in {where}"
    if free < FREE_DISK_FAIL:
        yield Check("free disk for logs", Outcome.FAIL, text, "free some space: every step writes a log")
    elif free < FREE_DISK_WARN:
        yield Check("free disk for logs", Outcome.WARN, text, "a long backfill writes many logs; free some space")
    else:
        yield Check("free disk for logs", Outcome.PASS, text)


def _warehouse_hazards(ctx: _Context) -> Iterator[Check]:
    """Partition expiration, required partition filters and the bytes ceiling: questions only
    a warehouse with partition metadata can answer."""
    if ctx.warehouse is None or not ctx.warehouse.capabilities.partition_metadata:
        name = ctx.warehouse.capabilities.name if ctx.warehouse else "this"
        yield Check(
            "table hazards",
            Outcome.SKIP,
            f"not applicable: the {name} warehouse has no partition expiration, required filters or billed bytes",
        )
        return
    warnings = list(getattr(ctx.validation, "hazards", []) or [])
    if warnings:
        yield Check(
            "table hazards", Outcome.WARN, "; ".join(warnings[:3]), "read the warnings of backfill-kit validate"
        )
    else:
        yield Check("table hazards", Outcome.PASS, "no partition expiration, filter or cost hazard in the range")


CHECKS: list[Callable[[_Context], Iterator[Check]]] = [
    _reachable,
    _tables_exist,
    _run_history_columns,
    _validated,
    _jobs_resolve,
    _skip_downstream,
    _single_writer,
    _dry_runs,
    _warehouse_hazards,
    _stale_runs,
    _run_history_statuses,
    _runner_locks,
    _upstream_coverage,
    _free_disk,
]
