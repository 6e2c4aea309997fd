"""For every table and expected date, a status and its evidence: the calendar's expected dates,
the validator that reads coverage and run history, and the summaries built from its cells.

The validator's names resolve on first use, so that importing one light module of the package
(the calendar's `consecutive_runs`, in every demo job) does not load the spec model's pydantic."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backfill_kit.validation.validator import Cell, TableSummary, Validation, check_range, classify, validate

__all__ = ["Cell", "TableSummary", "Validation", "check_range", "classify", "validate"]  # the validator's own


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("backfill_kit.validation.validator"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
