"""The `backfill-kit` command: parse, call the library, map errors to exit codes.

Exit codes: 0 nothing needs work, 1 gaps remain, 2 bad input (never a traceback for it).
Heavy modules are imported inside the commands so that `--help` stays fast.
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from .errors import BackfillKitError

__all__ = ["main"]

EXIT_GAPS = 1


class DateType(click.ParamType):
    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2021-10-19", param, ctx)


class _Group(click.Group):
    """Turns the toolkit's own errors into one message on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BackfillKitError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="backfill-kit")
def cli() -> None:
    """Find the holes in a multi-phase warehouse pipeline, say why each one is there, and
    backfill them in the right order."""


spec_option = click.option(
    "--spec", "spec_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Pipeline spec (YAML).",
)


@cli.command()
@spec_option
@click.option("--start", required=True, type=DateType(), help="First date, YYYY-MM-DD.")
@click.option("--end", required=True, type=DateType(), help="Last date, YYYY-MM-DD (inclusive).")
@click.option("--table", "tables", multiple=True, metavar="ID", help="Only this table id (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--now", type=click.DateTime(), default=None, help="Judge stale runs as of this time (UTC).")
def validate(spec_path: Path, start: date, end: date, tables: tuple[str, ...], fmt: str, now: datetime | None) -> None:
    """Give every table and expected date one status: complete, partial, no_data, failed,
    never_ran, running, stale, lost or bootstrap.

    Exit 0 when nothing needs work, 1 when gaps remain, 2 on bad input."""
    from . import display
    from .spec import load_spec
    from .validation import check_range
    from .validation import validate as run_validation

    check_range(start, end)  # before touching the spec or the warehouse
    result = run_validation(load_spec(spec_path), start, end, tables=tables or None, now=now)
    if fmt == "json":
        click.echo(display.validation_json(result))
    elif fmt == "csv":
        click.echo(display.validation_csv(result), nl=False)
    else:
        display.print_validation(result, _console())
    sys.exit(EXIT_GAPS if result.needs_work else 0)


@cli.group()
def demo() -> None:
    """The demo: the NBA props pipeline in a local DuckDB file."""


@demo.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=7, show_default=True, help="Seed of the planted gaps and synthetic rows.")
def demo_init(directory: Path, seed: int) -> None:
    """Write DIRECTORY/nba_props.yaml and the DuckDB warehouse it points to."""
    from .demo import init_demo

    spec_file = init_demo(directory, seed=seed)
    click.echo(f"wrote {spec_file} and {spec_file.with_suffix('.duckdb')}")


def _console() -> Any:
    from rich.console import Console

    # Not a terminal (a pipe, a log file, CI): wide enough that the summary table never wraps.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def main() -> None:
    cli(prog_name="backfill-kit")
