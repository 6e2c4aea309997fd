"""The demo: the NBA player-props pipeline of the hand-off, in a local DuckDB warehouse with
every kind of gap planted where it happens in real life."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["EXAMPLE_SPEC", "example_spec_text", "init_demo"]

EXAMPLE_SPEC = "nba_props.yaml"


def example_spec_text() -> str:
    return files(__package__).joinpath(EXAMPLE_SPEC).read_text(encoding="utf-8")


def init_demo(directory: Path, *, seed: int = 7) -> Path:
    """Write DIRECTORY/nba_props.yaml and build DIRECTORY/nba_props.duckdb; return the spec path."""
    import duckdb

    from backfill_kit.demo.warehouse import build_demo_warehouse
    from backfill_kit.errors import InputError, OutputError

    spec_file = directory / EXAMPLE_SPEC
    try:
        directory.mkdir(parents=True, exist_ok=True)
        build_demo_warehouse(directory / "nba_props.duckdb", seed=seed)
        spec_file.write_text(example_spec_text(), encoding="utf-8")
    except (OSError, duckdb.IOException, OutputError) as exc:  # a folder that cannot be made or written
        reason = (
            exc.reason
            if isinstance(exc, OutputError)
            else exc.strerror
            if isinstance(exc, OSError) and exc.strerror
            else str(exc)
        )
        raise InputError(f"cannot write the demo into {directory}: {reason}; choose a folder you can write") from None
    return spec_file
