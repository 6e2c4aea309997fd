"""Bounds on what a user may give: dates (command line, spec), what Python, both warehouses and
the reports' pandas all represent, with room for the day after the end (the queries' bound);
and how deep a file from outside may nest.

Outside them a value is refused with one message, never an OverflowError deep in a query or a
RecursionError deep in a parser.
"""

from __future__ import annotations

from datetime import date

__all__ = ["EARLIEST_DATE", "LATEST_DATE", "MAX_DATES", "MAX_NESTING", "date_out_of_bounds"]

# pandas' nanosecond timestamps span 1677-09-21 .. 2262-04-11: the tightest of the three.
EARLIEST_DATE = date(1678, 1, 1)
LATEST_DATE = date(2261, 12, 31)
MAX_DATES = (LATEST_DATE - EARLIEST_DATE).days + 1  # the most dates any range, or any step, covers

# Levels of lists and mappings in a spec's YAML and in JSON from outside (a plan, a journal
# line, a run-history error): real ones nest a few, and Python's parsers and printers recurse.
MAX_NESTING = 50


def date_out_of_bounds(value: date) -> str | None:
    """Why `value` cannot be used, or None when it can."""
    if EARLIEST_DATE <= value <= LATEST_DATE:
        return None
    return f"{value} is outside the dates backfill-kit handles ({EARLIEST_DATE} .. {LATEST_DATE})"
