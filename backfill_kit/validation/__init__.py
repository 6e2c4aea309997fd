"""For every table and expected date, a status and its evidence: the calendar's expected dates,
the validator that reads coverage and run history, and the summaries built from its cells."""

from __future__ import annotations

from backfill_kit.validation import validator
from backfill_kit.validation.validator import *  # noqa: F403 -- the package's names are the validator's

__all__ = validator.__all__
