"""The command line: a thin shell that parses, calls the library and maps errors to exit codes."""

from __future__ import annotations

from backfill_kit.cli.commands import main

__all__ = ["main"]
