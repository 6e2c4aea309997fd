"""Audit reports: what the notebooks show (`setup`, `coverage`, `execution`, `explorer`), their
figures and tables, and papermill with the HTML export.

`from backfill_kit import reports` stays light: the notebook helpers (IPython, pandas) load on
first use, so the CLI can render without them in its own process."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backfill_kit.reports.explore import Explorer, explorer
    from backfill_kit.reports.notebook import CoverageAudit, ExecutionLog, coverage, execution, setup

__all__ = ["CoverageAudit", "ExecutionLog", "Explorer", "coverage", "execution", "explorer", "setup"]

_HOME = {"Explorer": "explore", "explorer": "explore"}  # the rest: notebook


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module(f"backfill_kit.reports.{_HOME.get(name, 'notebook')}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
