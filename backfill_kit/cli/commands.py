"""The `backfill-kit` command: parse, call the library, map errors to exit codes.

Exit codes: 0 nothing needs work, 1 gaps remain, 2 bad input (never a traceback for it).
Heavy modules are imported inside the commands so that `--help` stays fast.
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from collections.abc import Callable
from contextlib import suppress
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click

from backfill_kit.common.formatting import plural
from backfill_kit.errors import BackfillKitError, BackfillKitWarning

__all__ = ["main"]

EXIT_GAPS = 1
F = TypeVar("F", bound=Callable[..., Any])  # a command, under the option decorators it shares


class DateType(click.ParamType[date, Any]):
    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        from backfill_kit.common.arguments import iso_date

        try:
            parsed = iso_date(value)
        except ValueError:
            self.fail(f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2021-10-19", param, ctx)
        return _in_bounds(parsed, self, param, ctx)


class MomentType(click.DateTime):
    """A date and time, inside the dates the toolkit handles."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        moment = super().convert(value, param, ctx)
        _in_bounds(moment.date(), self, param, ctx)
        return moment


def _in_bounds(
    value: date, kind: click.ParamType[Any, Any], param: click.Parameter | None, ctx: click.Context | None
) -> date:
    from backfill_kit.common.limits import date_out_of_bounds

    if reason := date_out_of_bounds(value):
        kind.fail(reason, param, ctx)
    return value


class _Group(click.Group):
    """Turns the toolkit's own errors into one message on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except BackfillKitError as exc:
            from backfill_kit.common.formatting import printable  # a message may quote the warehouse or a file

            click.echo(f"error: {printable(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            import errno

            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # Output sent to a file on a full disk (a cron job's log): one line, not a traceback.
            where = f" ({exc.filename})" if exc.filename else ""
            with suppress(OSError):  # stderr may be the same full disk
                click.echo(f"error: {exc.strerror}{where}: free some space, then run the command again", err=True)
            _drop_unwritten_output()
            ctx.exit(1)


_python_show_warning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """The toolkit's warnings as one line on stderr, as its errors are; others as Python shows them."""
    if not issubclass(category, BackfillKitWarning):
        _python_show_warning(message, category, *args, **kwargs)
        return
    with suppress(OSError):
        click.echo(f"warning: {message}", err=True)


def _drop_unwritten_output() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what could not be
    written fails silently instead of printing 'Exception ignored' after our message."""
    with suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="backfill-kit")
def cli() -> None:
    """Find the holes in a multi-phase warehouse pipeline, say why each one is there, and
    backfill them in the right order."""


start_option = click.option("--start", required=True, type=DateType(), help="First date, YYYY-MM-DD.")
end_option = click.option("--end", required=True, type=DateType(), help="Last date, YYYY-MM-DD (inclusive).")


def _find_spec(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """The spec by the one path rule of `arguments.find_file`: the working directory, then each
    folder above it up to the project folder (outside a project, the working directory only)."""
    from backfill_kit.common.arguments import find_file

    return None if value is None else find_file(value, "the spec")


spec_option = click.option(
    "--spec",
    "spec_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_find_spec,
    help="Pipeline spec (YAML); a relative path is looked up from here up to the project folder, if any.",
)


@cli.command()
@spec_option
@start_option
@end_option
@click.option("--table", "tables", multiple=True, metavar="ID", help="Only this table id (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--now", type=MomentType(), default=None, help="Judge stale runs as of this time (UTC).")
def validate(spec_path: Path, start: date, end: date, tables: tuple[str, ...], fmt: str, now: datetime | None) -> None:
    """Give every table and expected date one status: complete, partial, no_data, failed,
    never_ran, running, stale, lost or bootstrap.

    Exit 0 when nothing needs work, 1 when gaps remain, 2 on bad input."""
    from backfill_kit.cli import display
    from backfill_kit.spec.load import load_spec
    from backfill_kit.validation.validator import check_range
    from backfill_kit.validation.validator import validate as run_validation

    check_range(start, end)  # before touching the spec or the warehouse
    result = run_validation(load_spec(spec_path), start, end, tables=tables or None, now=now)
    if fmt == "json":
        click.echo(display.validation_json(result))  # bytes: written as they are
    elif fmt == "csv":
        click.echo(display.validation_csv(result), nl=False)
    else:
        display.print_validation(result, _console())
    sys.exit(EXIT_GAPS if result.needs_work else 0)


def _validate_and_plan(spec_path: Path, start: date, end: date, tables: tuple[str, ...], include_no_data: bool) -> Any:
    return _plan_of(_validation(spec_path, start, end, tables), tables, include_no_data)


def _validation(spec_path: Path, start: date, end: date, tables: tuple[str, ...]) -> Any:
    from backfill_kit.spec.load import load_spec
    from backfill_kit.validation.validator import check_range
    from backfill_kit.validation.validator import validate as run_validation

    check_range(start, end)
    return run_validation(load_spec(spec_path), start, end, tables=tables or None)


def _plan_of(validation: Any, tables: tuple[str, ...], include_no_data: bool) -> Any:
    from backfill_kit.plan import build_plan
    from backfill_kit.running.estimates import estimator_for

    spec = validation.spec  # a drafted spec validates at once, but its placeholder jobs cannot run
    _refuse_placeholders([(t.id, spec.job_of(t).argv) for t in spec.tables], spec.file_name)
    the_plan = build_plan(validation, include_no_data=include_no_data, estimates=estimator_for(spec, validation.cells))
    if tables:  # so that a resume of the finished plan checks the same tables
        the_plan.options["tables"] = list(tables)
    return the_plan


def _refuse_placeholders(argvs: Any, where: str) -> None:
    from backfill_kit.draft import refuse_placeholder_jobs

    refuse_placeholder_jobs(argvs, where)


def _count_option(flag: str, default: int, help: str) -> Callable[[F], F]:
    """A whole number of at least 1, its default shown in --help."""
    return click.option(flag, type=click.IntRange(min=1), default=default, show_default=True, help=help)


def _all_of(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Several click options as one decorator, for option groups that commands share."""

    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


_range_options = _all_of(
    start_option,
    end_option,
    click.option("--table", "tables", multiple=True, metavar="ID", help="Only this table id (repeatable)."),
    click.option("--include-no-data", is_flag=True, help="Also rerun no_data cells that no fallback covers."),
)


@cli.command()
@spec_option
@_range_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the plan here (JSON).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def plan(
    spec_path: Path, start: date, end: date, tables: tuple[str, ...], include_no_data: bool, out: Path | None, fmt: str
) -> None:
    """Plan the backfill: stages of steps, each step's exact command, dates and the causes it fixes."""
    import json

    result = _validate_and_plan(spec_path, start, end, tables, include_no_data)
    if out is not None:
        result.write(out)
    click.echo(json.dumps(result.to_dict(), indent=2) if fmt == "json" else result.text())
    if out is not None and fmt == "text":
        click.echo(f"\nplan written to {out}; run it with: backfill-kit run --plan {out}")


_run_options = _all_of(
    click.option("--resume", is_flag=True, help="Continue the plan's journal; steps that succeeded never rerun."),
    click.option("--keep-going", is_flag=True, help="After a failure, go on with work that does not depend on it."),
    click.option("--dry-run", is_flag=True, help="Print what would run, run nothing."),
    click.option(
        "--allow-downstream-triggers", is_flag=True, help="Run jobs that declare no way to skip downstream triggers."
    ),
    click.option(
        "--journal",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Journal file (default: beside the plan, PLAN.journal.jsonl).",
    ),
    click.option("--ignore-preflight", is_flag=True, help="Start even when the quick preflight fails."),
    _count_option(
        "--log-limit-mb", 64, "Keep at most this much of each attempt's output in its log (its start and end)."
    ),
)


@cli.command()
@click.option("--plan", "plan_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Plan file.")
@_run_options
def run(plan_path: Path, **options: Any) -> None:
    """Run a plan: stages in order, journaled, resumable. Exit 0 done, 1 a step failed or was
    blocked (or, resuming a finished plan, gaps remain), 130 stopped."""
    from backfill_kit.plan import load_plan
    from backfill_kit.running.runner import journal_path_for, run_finished

    the_plan = load_plan(plan_path)
    _refuse_placeholders([(s.table, s.argv) for s in the_plan.steps], str(plan_path))
    journal = options["journal"] or journal_path_for(plan_path)
    if options["resume"] and not options["dry_run"] and run_finished(journal, the_plan, plan_path):
        click.echo(f"the plan {plan_path} already ran to its end (journal {journal}); nothing of it is left to resume")
        if the_plan.spec_path:
            tables = tuple(the_plan.options.get("tables") or ())
            _exit_on_gaps(
                _validation(Path(the_plan.spec_path), the_plan.start, the_plan.end, tables), the_plan.spec_path
            )
        return
    _execute(the_plan, plan_path, **options)


@cli.command()
@spec_option
@_range_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Plan file (default: runs/plan-START-END.json beside the spec).",
)
@_run_options
def backfill(
    spec_path: Path,
    start: date,
    end: date,
    tables: tuple[str, ...],
    include_no_data: bool,
    out: Path | None,
    **options: Any,
) -> None:
    """Validate, plan and run at once. With --resume, continue the range's unfinished plan.
    Once a plan has finished, the next backfill plans what is still missing (PLAN-2.json, ...).
    Exit 0 only when validation finds nothing left to do."""
    from backfill_kit.plan import load_plan
    from backfill_kit.running.runner import backfill_plan_file

    target = backfill_plan_file(
        spec_path, start, end, out=out, journal=options["journal"], resume=options["resume"], dry_run=options["dry_run"]
    )
    if target.resume:
        _execute(load_plan(target.path), target.path, **options)
        return
    if target.follows:
        click.echo(f"the plan {target.follows} finished; planning what is still missing as {target.path}")
    validation = _validation(spec_path, start, end, tables)
    the_plan = _plan_of(validation, tables, include_no_data)
    if not the_plan.steps:
        _exit_on_gaps(validation, str(spec_path), the_plan)
        return
    if not options["dry_run"]:
        the_plan.write(target.path)  # a folder it cannot write is one message
    _execute(the_plan, target.path, **options, recheck=lambda: _validation(spec_path, start, end, tables))


def _exit_on_gaps(validation: Any, spec: str, the_plan: Any = None) -> None:
    """Exit 0 only when validation agrees that nothing needs work; else say what is left and,
    given the empty plan made from it, why no step takes it; and exit 1."""
    from collections import Counter

    from backfill_kit.common.status import GAP_STATUSES

    gaps = Counter(str(c.status) for c in validation.cells if c.status in GAP_STATUSES)
    scope, only = _scope(validation)
    if not gaps:
        click.echo(f"nothing to backfill: validation finds no gaps in {scope}")
        return
    detail = ", ".join(f"{status} {n:,}" for status, n in sorted(gaps.items()))
    n = sum(gaps.values())
    click.echo(
        f"validation still finds {plural(n, 'cell')} that {'needs' if n == 1 else 'need'} work ({detail}) in {scope}."
    )
    if the_plan is None:  # after a run
        click.echo("backfill-kit backfill again plans them anew.")
    elif the_plan.blocked:
        click.echo(
            f"No step can fix them yet: {plural(len(the_plan.blocked), 'cell')} "
            f"{'waits' if len(the_plan.blocked) == 1 else 'wait'} for an upstream that no plan can fill, e.g."
        )
        for b in the_plan.blocked[:10]:
            click.echo(f"  {b.table} {b.date}: {b.reason}")
    else:
        click.echo("No step can fix them now: running cells finish (or go stale) on their own.")
    click.echo(
        f"See them with: backfill-kit validate --spec {spec} --start {validation.start} --end {validation.end}{only}"
    )
    sys.exit(EXIT_GAPS)


def _scope(validation: Any) -> tuple[str, str]:
    """What a validation looked at, in words (the range, and its tables when not all of
    them), and the --table options that look at the same."""
    import shlex

    span = f"{validation.start} .. {validation.end}"
    every, tables = len(validation.spec.tables), list(validation.tables)
    if len(tables) == every:
        return span, ""
    named = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
    others = every - len(tables)
    scope = (
        f"{'table' if len(tables) == 1 else 'tables'} {named}, {span} (the other {plural(others, 'table')} not checked)"
    )
    return scope, "".join(f" --table {shlex.quote(t)}" for t in tables)


def _execute(
    the_plan: Any,
    plan_path: Path,
    *,
    resume: bool,
    keep_going: bool,
    dry_run: bool,
    allow_downstream_triggers: bool,
    journal: Path | None,
    ignore_preflight: bool,
    log_limit_mb: int,
    recheck: Any = None,
) -> None:
    from backfill_kit.cli import display
    from backfill_kit.preflight import run_plan
    from backfill_kit.running.progress import progress_for
    from backfill_kit.running.runner import RunOptions, journal_path_for

    if dry_run:
        click.echo(the_plan.text())
        click.echo("\ndry run: nothing was started")
        return
    options = RunOptions(
        journal=journal,
        resume=resume,
        keep_going=keep_going,
        allow_downstream_triggers=allow_downstream_triggers,
        log_limit_bytes=log_limit_mb << 20,
    )
    result = run_plan(
        the_plan,
        plan_path,
        options,
        progress=progress_for(plan=the_plan, journal=journal or journal_path_for(plan_path)),
        ignore_preflight=ignore_preflight,
        show_checks=lambda checks: display.print_checks(checks, _console(), only=("warn", "fail")),
    )
    if result.exit_code == 0 and recheck is not None:
        _exit_on_gaps(recheck(), the_plan.spec_path)
    sys.exit(result.exit_code)


_airflow_run_options = _all_of(
    click.option(
        "--airflow", "airflow_url", default=None, help="An Airflow API server's URL: read the run of --dag-id there."
    ),
    click.option("--dag-id", default=None, help="With --airflow: the exported DAG's id."),
    click.option(
        "--plan",
        "airflow_plan",
        default=None,
        type=click.Path(dir_okay=False, path_type=Path),
        help="With --airflow: the plan the DAG was exported from.",
    ),
    click.option("--run-id", default=None, help="With --airflow: this run (default: the newest)."),
)


def _airflow_run_reader(
    airflow_url: str | None, dag_id: str | None, airflow_plan: Path | None, run_id: str | None
) -> Callable[[], Path] | None:
    """With --airflow: a reader of the DAG's run through its REST API, which writes the run as a
    journal beside the plan (read as every runner's journal is) and gives its path."""
    if airflow_url is None:
        if dag_id or airflow_plan or run_id:
            raise click.UsageError("--dag-id, --plan and --run-id go with --airflow URL")
        return None
    if not (dag_id and airflow_plan):
        raise click.UsageError("--airflow needs --dag-id and --plan (the plan the DAG was exported from)")
    from backfill_kit.engines.airflow.journal import airflow_journal
    from backfill_kit.engines.airflow.rest import AirflowApi
    from backfill_kit.plan import load_plan

    the_plan, api = load_plan(airflow_plan), AirflowApi(airflow_url)
    return lambda: airflow_journal(api.run(dag_id, run_id), the_plan, airflow_plan)


@cli.command()
@spec_option
@click.option("--season", help="Only this season (a name from calendar.seasons).")
@click.option("--start", type=DateType(), help="First date (default: the first season's start).")
@click.option("--end", type=DateType(), help="Last date (default: the last season's end).")
@click.option("--continuous", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--once", is_flag=True, help="One look, then exit (the default).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2, max=86400),
    default=30.0,
    show_default=True,
    help="Seconds between looks.",
)
@click.option(
    "--window-hours",
    type=click.FloatRange(min=0.01, max=24 * 366 * 100),
    default=2.0,
    show_default=True,
    help="The recent window for the rate and the failures.",
)
@click.option(
    "--journal",
    "journals",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A runner journal to follow (default: runs/*.journal.jsonl beside the spec).",
)
@_airflow_run_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def monitor(
    spec_path: Path,
    season: str | None,
    start: date | None,
    end: date | None,
    continuous: bool,
    once: bool,
    interval: float,
    window_hours: float,
    journals: tuple[Path, ...],
    fmt: str,
    **airflow: Any,
) -> None:
    """Watch a backfill: progress per phase (its slowest table), table and season, rate, ETA
    range, recent failures, orphaned runs and where a runner is."""
    from backfill_kit.monitor import find_journals, take_snapshot
    from backfill_kit.monitor.view import looks, snapshot_view, watch
    from backfill_kit.spec.load import load_spec

    if continuous and once:
        raise click.UsageError("--continuous and --once exclude each other")
    spec = load_spec(spec_path)
    start, end = _monitor_range(spec, season, start, end)
    follow = list(journals) or find_journals(spec)
    read_airflow = _airflow_run_reader(**airflow)

    def look() -> Any:
        extra = [read_airflow()] if read_airflow else []  # the run as a journal, written anew each look
        return take_snapshot(spec, start, end, window_hours=window_hours, journals=[*follow, *extra])

    if fmt == "json":
        for snap in looks(look, interval, continuous=continuous):
            click.echo(snap.to_json())
    elif continuous:
        watch(look, interval, _console())
    else:
        _console().print(snapshot_view(look()))


def _monitor_range(spec: Any, season: str | None, start: date | None, end: date | None) -> tuple[date, date]:
    from backfill_kit.errors import InputError
    from backfill_kit.validation.validator import check_range

    seasons = spec.calendar.seasons
    if season is not None:
        match = next((s for s in seasons if s.name == season), None)
        if match is None:
            known = ", ".join(s.name for s in seasons) or "none declared"
            raise InputError(f"unknown season {season!r} in {spec.file_name}; calendar.seasons: {known}")
        start, end = max(start or match.start, match.start), min(end or match.end, match.end)
    if start is None or end is None:
        if not seasons:
            raise InputError("give --start and --end: the spec declares no calendar.seasons to default to")
        start, end = start or seasons[0].start, end or seasons[-1].end
    check_range(start, end)
    return start, end


@cli.command()
@spec_option
@start_option
@end_option
@click.option("--quick", is_flag=True, help="Skip the slow checks (each job's dry run).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def preflight(spec_path: Path, start: date, end: date, quick: bool, fmt: str) -> None:
    """Check everything before a backfill starts. Exit 0 all pass, 2 warnings only, 1 a failure."""
    import json

    from backfill_kit.cli import display
    from backfill_kit.preflight import exit_code, run_preflight
    from backfill_kit.spec.load import load_spec
    from backfill_kit.validation.validator import check_range

    check_range(start, end)
    checks = run_preflight(load_spec(spec_path), start, end, quick=quick)
    if fmt == "json":
        click.echo(json.dumps({"checks": [c.to_dict() for c in checks], "exit_code": exit_code(checks)}, indent=2))
    else:
        display.print_checks(checks, _console())
    sys.exit(exit_code(checks))


def _spec_value(ctx: click.Context, param: click.Parameter, value: str | None, pattern: str) -> str | None:
    """A value written into the spec that `demo load` makes: checked as the spec would check
    it, so that it can neither break nor add to the YAML."""
    if not value:
        return value
    from backfill_kit.spec import model as spec

    if not getattr(spec, pattern).fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a valid {(param.name or 'value').replace('_', ' ')}", ctx, param)
    return value


@cli.group()
def demo() -> None:
    """The demo: the NBA props pipeline in a local DuckDB file."""


@demo.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--seed",
    default=7,
    show_default=True,
    type=click.IntRange(0, 2**31 - 1),
    help="Seed of the planted gaps and synthetic rows.",
)
def demo_init(directory: Path, seed: int) -> None:
    """Write DIRECTORY/nba_props.yaml and the DuckDB warehouse it points to."""
    from backfill_kit.demo import init_demo

    spec_file = init_demo(directory, seed=seed)
    click.echo(f"wrote {spec_file} and {spec_file.with_suffix('.duckdb')}")


@demo.command("load")
@click.argument("directory", required=False, default="demo", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to", "target", required=True, type=click.Choice(["bigquery"]), help="Where to load it.")
@click.option(
    "--project",
    required=True,
    callback=partial(_spec_value, pattern="PROJECT_ID"),
    help="BigQuery project that gets the datasets.",
)
@click.option(
    "--dataset-prefix",
    default="",
    callback=partial(_spec_value, pattern="DATASET_PREFIX"),
    help="Put before every dataset name, e.g. 'demo_'.",
)
@click.option(
    "--location",
    default=None,
    callback=partial(_spec_value, pattern="LOCATION"),
    help="Location of new datasets, e.g. US or EU.",
)
@click.option("--start", type=DateType(), default=None, help="Load only dates from this one.")
@click.option("--end", type=DateType(), default=None, help="Load only dates up to this one.")
def demo_load(
    directory: Path,
    target: str,
    project: str,
    dataset_prefix: str,
    location: str | None,
    start: date | None,
    end: date | None,
) -> None:
    """Load the demo warehouse of DIRECTORY (default: demo) into BigQuery, with
    Application Default Credentials, and write DIRECTORY/nba_props.bigquery.yaml: the demo
    spec with only its warehouse section changed."""
    from backfill_kit.demo.load import load_demo
    from backfill_kit.validation.validator import check_range

    if start and end:
        check_range(start, end)
    loaded = load_demo(directory, project, dataset_prefix=dataset_prefix, location=location, start=start, end=end)
    for table, rows in loaded.tables:
        click.echo(f"{table:<64} {rows:>12,} rows")
    click.echo(
        f"\nwrote {loaded.spec}; try: backfill-kit validate --spec {loaded.spec} "
        f"--start {start or '2021-10-19'} --end {end or '2025-06-22'}"
    )


@cli.group("spec")
def spec_group() -> None:
    """Draft a spec from a warehouse, or compare a spec with its warehouse."""


_draft_source_options = _all_of(
    click.option(
        "--duckdb", "duckdb_path", type=click.Path(dir_okay=False, path_type=Path), help="Draft from this DuckDB file."
    ),
    click.option(
        "--bigquery",
        "project",
        metavar="PROJECT",
        help="Draft from this BigQuery project (metadata and the run history only).",
    ),
    click.option("--location", default=None, help="BigQuery location, e.g. US or EU."),
    click.option("--dataset-prefix", default="", help="BigQuery: taken off every dataset name, e.g. 'dev_'."),
    click.option(
        "--credentials-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="BigQuery service-account key (else Application Default Credentials).",
    ),
    _count_option(
        "--maximum-bytes-billed", 10 * 2**30, "BigQuery: refuse any run-history query estimated to bill more."
    ),
    click.option(
        "--dataset",
        "datasets",
        multiple=True,
        metavar="NAME",
        help="Only tables of this dataset (repeatable; include the run history's).",
    ),
    _count_option("--season-gap-days", 30, "A gap of more than this many days between schedule dates ends a season."),
    click.option("--start", type=DateType(), default=None, help="Only dates from this one."),
    click.option("--end", type=DateType(), default=None, help="Only dates up to this one."),
)


@spec_group.command("draft")
@_draft_source_options
@click.option("--name", default=None, help="The pipeline's name (default: the file name of --out).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Spec file to write.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def spec_draft(out: Path, force: bool, name: str | None, **source: Any) -> None:
    """Draft a spec from a warehouse: tables, date columns, processors, phases, the calendar and
    the run history, every guess with its evidence in a comment. Writes nothing to the warehouse."""
    from backfill_kit.draft import render_draft, write_draft

    if out.exists() and not force:
        from backfill_kit.errors import InputError

        raise InputError(f"{out} already exists; pass --force to overwrite it, or choose another --out")
    draft = _draft(source, out.parent, name or out.stem)
    write_draft(render_draft(draft), out, force=force)
    todo = sum(1 for t in draft.tables if t.processor is None or t.processor_evidence.startswith("GUESS"))
    click.echo(
        f"wrote {out}: {plural(len(draft.tables), 'table')} in {plural(len(draft.phases), 'phase')}, "
        f"{plural(len(draft.calendar.seasons), 'season')}; {plural(todo, 'processor guess', 'processor guesses')} to check. "
        f"Read the GUESS and TODO comments, then: backfill-kit validate --spec {out} --start ... --end ..."
    )


@spec_group.command("diff")
@spec_option
@_draft_source_options
def spec_diff(spec_path: Path, **source: Any) -> None:
    """What the warehouse says that the spec does not: new tables, processors never seen in the
    run history, wrong date columns, tables that no longer exist. Exit 0 none, 1 some."""
    from backfill_kit.draft import diff_spec
    from backfill_kit.spec.load import load_spec

    the_spec = load_spec(spec_path)
    if not source["duckdb_path"] and not source["project"]:
        source |= _source_of(the_spec)
    wanted = {t.table.split(".")[0] for t in the_spec.tables} | {the_spec.run_history.table.split(".")[0]}
    source["datasets"] = source["datasets"] or tuple(sorted(wanted))
    rh = the_spec.run_history
    differences = diff_spec(the_spec, _draft(source, spec_path.parent, the_spec.name, (rh.table, rh.columns.named())))
    for d in differences:
        click.echo(f"{spec_path}: {d}")
    real = [d for d in differences if not d.note]
    click.echo(
        f"{len(real)} difference(s) between {spec_path} and its warehouse"
        if real
        else f"{spec_path} agrees with its warehouse"
    )
    sys.exit(EXIT_GAPS if real else 0)


def _source_of(the_spec: Any) -> dict[str, Any]:
    """The warehouse a spec names, as draft options."""
    w = the_spec.warehouse
    if w.backend == "duckdb":
        return {"duckdb_path": the_spec.resolve_path(w.path)}
    return {
        "project": w.project,
        "location": w.location,
        "dataset_prefix": w.dataset_prefix,
        "credentials_file": the_spec.resolve_path(w.credentials_file) if w.credentials_file else None,
        "maximum_bytes_billed": w.maximum_bytes_billed or 10 * 2**30,
    }


def _draft(
    source: dict[str, Any], spec_dir: Path, name: str, run_history: tuple[str, dict[str, str]] | None = None
) -> Any:
    from backfill_kit.draft import draft_spec
    from backfill_kit.warehouse.catalog import open_bigquery_catalog, open_duckdb_catalog

    if bool(source["duckdb_path"]) == bool(source["project"]):
        raise click.UsageError("give one warehouse to draft from: --duckdb FILE or --bigquery PROJECT")
    if source["start"] and source["end"] and source["start"] > source["end"]:
        raise click.UsageError(f"--start {source['start']} is after --end {source['end']}")
    if source["duckdb_path"]:
        catalog: Any = open_duckdb_catalog(Path(source["duckdb_path"]))
        warehouse: dict[str, Any] = {
            "backend": "duckdb",
            "path": os.path.relpath(Path(source["duckdb_path"]).resolve(), spec_dir.resolve()),
        }
    else:
        catalog = open_bigquery_catalog(
            source["project"],
            location=source["location"],
            dataset_prefix=source["dataset_prefix"],
            credentials_file=source["credentials_file"],
            maximum_bytes_billed=source["maximum_bytes_billed"],
        )
        warehouse = {
            "backend": "bigquery",
            "project": source["project"],
            "location": source["location"],
            "dataset_prefix": source["dataset_prefix"] or None,
            "maximum_bytes_billed": source["maximum_bytes_billed"],
        }
        warehouse = {k: v for k, v in warehouse.items() if v is not None}
    try:
        return draft_spec(
            catalog,
            warehouse=warehouse,
            name=name,
            datasets=source["datasets"],
            season_gap_days=source["season_gap_days"],
            start=source["start"],
            end=source["end"],
            run_history=run_history,
        )
    finally:
        catalog.close()


@cli.group()
def report() -> None:
    """Audit reports: a notebook run by papermill, exported to one self-contained HTML file
    (with the executed notebook beside it) in --out-dir, listed in its index.html."""


_report_options = _all_of(
    click.option(
        "--out-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("reports"),
        show_default=True,
        help="Folder of the reports and their index.html.",
    ),
    click.option("--kernel", default="python3", show_default=True, help="Jupyter kernel that runs the notebook."),
)


@report.command("coverage")
@spec_option
@start_option
@end_option
@_report_options
@click.option(
    "--fail-if-no-longer-complete",
    is_flag=True,
    help="Exit 1 when a cell complete in the previous report of this range is no longer (a scheduled audit).",
)
def report_coverage(
    spec_path: Path, start: date, end: date, out_dir: Path, kernel: str, fail_if_no_longer_complete: bool
) -> None:
    """Coverage audit: every table on every expected date, why each gap is there, what changed
    since the previous report of the same range in --out-dir, and the plan."""
    from backfill_kit.reports.render import render_coverage

    rendered = render_coverage(spec_path, start, end, out_dir, kernel=kernel)
    _echo_rendered(rendered)
    changes = rendered.changes
    if changes is not None:
        click.echo(f"changes:  {changes.summary()}")
        for c in changes.no_longer_complete[:10]:
            click.echo(f"  no longer complete: {c.table} {c.date} ({c.before} -> {c.after})")
        if fail_if_no_longer_complete and changes.no_longer_complete:
            sys.exit(EXIT_GAPS)


@report.command("execution")
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The runner's journal (PLAN.journal.jsonl beside the plan).",
)
@_airflow_run_options
@_report_options
def report_execution(journal: Path | None, out_dir: Path, kernel: str, **airflow: Any) -> None:
    """Execution log of a backfill run (a runner's journal, or an Airflow run with --airflow):
    timeline, every step, coverage before and after, warnings."""
    from backfill_kit.reports.render import render_execution

    read_airflow = _airflow_run_reader(**airflow)
    if (journal is None) == (read_airflow is None):
        raise click.UsageError("give --journal, or --airflow URL with --dag-id and --plan")
    _echo_rendered(render_execution(journal or read_airflow(), out_dir, kernel=kernel))  # type: ignore[misc]


def _echo_rendered(rendered: Any) -> None:
    click.echo(f"report:   {rendered.html}\nnotebook: {rendered.notebook}\nindex:    {rendered.index}")


@cli.group()
def export() -> None:
    """Hand a plan to another engine: Apache Airflow (Cloud Composer on GCP)."""


@export.command("airflow")
@click.option("--plan", "plan_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Plan file.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="DAG file to write (.py).")
@click.option("--dag-id", default=None, help="The DAG's id (default: backfill_SPEC_PLAN).")
@click.option("--root", default=None, help="The plan's folder as the workers see it (default: where it is here).")
@click.option("--python", default=None, help="{python} on the workers (default: the Python each task runs in).")
@click.option("--keep-going", is_flag=True, help="After a failure, go on with the work that does not depend on it.")
@click.option(
    "--allow-downstream-triggers", is_flag=True, help="Export jobs that declare no way to skip downstream triggers."
)
@click.option(
    "--target",
    type=click.Choice(["local", "cloud-run"]),
    default="local",
    show_default=True,
    help="local: each task runs the step's command; cloud-run: each task executes the table's Cloud Run Job.",
)
@click.option("--project", default=None, help="cloud-run: the Google Cloud project of the jobs.")
@click.option("--region", default=None, help="cloud-run: the jobs' region.")
@click.option(
    "--job-name", default=None, help="cloud-run: each table's job, e.g. '{id}-backfill' ({id} {table} {processor})."
)
def export_airflow(
    plan_path: Path,
    out: Path,
    target: str,
    project: str | None,
    region: str | None,
    job_name: str | None,
    **options: Any,
) -> None:
    """Write a plan as an Airflow DAG file: stages in order, each phase's cap as a pool, the
    skip settings checked at export, at parse and at each task's start, validate as the verdict."""
    from backfill_kit.engines.airflow.document import CloudRun
    from backfill_kit.engines.airflow.export import cloud_run_jobs, export_backfill
    from backfill_kit.plan import load_plan

    the_plan = load_plan(plan_path)
    _refuse_placeholders([(s.table, s.argv) for s in the_plan.steps], str(plan_path))
    cloud = None
    if target == "cloud-run":
        missing = [f"--{n}" for n, v in (("project", project), ("region", region), ("job-name", job_name)) if not v]
        if missing:
            raise click.UsageError(f"--target cloud-run needs {', '.join(missing)}")
        assert project and region and job_name
        cloud = CloudRun(project, region, cloud_run_jobs(the_plan, job_name))
    exported = export_backfill(the_plan, plan_path, out, cloud_run=cloud, **options)
    click.echo("\n".join(exported.lines()))


@export.command("airflow-audit")
@spec_option
@start_option
@end_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="DAG file to write (.py).")
@click.option("--schedule", required=True, help="A cron line, e.g. '15 6 * * *', or @daily.")
@click.option(
    "--reports-dir", default="reports", show_default=True, help="The reports folder, relative to --root or absolute."
)
@click.option("--root", default=None, help="The spec's folder as the workers see it (default: where it is here).")
@click.option("--dag-id", default=None, help="The DAG's id (default: coverage_audit_SPEC_START_END).")
def export_airflow_audit(
    spec_path: Path,
    start: date,
    end: date,
    out: Path,
    schedule: str,
    reports_dir: str,
    root: str | None,
    dag_id: str | None,
) -> None:
    """Write the scheduled coverage audit as an Airflow DAG file: the coverage report on a cron
    schedule, each saying what changed since the previous one; it fails when complete cells are lost."""
    from backfill_kit.engines.airflow.export import export_audit

    lines = export_audit(spec_path, start, end, out, schedule=schedule, reports=reports_dir, root=root, dag_id=dag_id)
    click.echo("\n".join(lines))


def _console() -> Any:
    from rich.console import Console

    # Not a terminal (a pipe, a log file, CI): wide enough that the summary table never wraps.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def main() -> None:
    try:
        cli(prog_name="backfill-kit")
    finally:
        # The process ends here. Python's teardown frees what the command built by reference
        # counting, and then sweeps every object still tracked with its cycle collector: ~0.03 s
        # after a four-season validation, for nothing (no file or process the toolkit holds
        # waits on a cycle being collected to be closed). Frozen objects are never swept.
        gc.freeze()
