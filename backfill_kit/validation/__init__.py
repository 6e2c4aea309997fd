"""For every table and expected date, a status and its evidence: the calendar's expected dates,
the validator that reads coverage and run history, and the summaries built from its cells."""

from __future__ import annotations

from backfill_kit.validation.validator import (
    Cell,
    TableSummary,
    Validation,
    check_range,
    classify,
    validate,
)

__all__ = [
    "Cell",
    "TableSummary",
    "Validation",
    "check_range",
    "classify",
    "validate",
]
