"""Bounds on the dates a user may give (command line, spec): what Python, both warehouses and
the reports' pandas all represent, with room for the day after the end (the queries' bound).

Outside them a date is refused with one message, never an OverflowError deep in a query.
"""

from __future__ import annotations

from datetime import date

__all__ = ["EARLIEST_DATE", "LATEST_DATE", "date_out_of_bounds"]

# pandas' nanosecond timestamps span 1677-09-21 .. 2262-04-11: the tightest of the three.
EARLIEST_DATE = date(1678, 1, 1)
LATEST_DATE = date(2261, 12, 31)


def date_out_of_bounds(value: date) -> str | None:
    """Why `value` cannot be used, or None when it can."""
    if EARLIEST_DATE <= value <= LATEST_DATE:
        return None
    return f"{value} is outside the dates backfill-kit handles ({EARLIEST_DATE} .. {LATEST_DATE})"
