"""Expected dates: the dates with games in the schedule, inside the declared seasons.

Counting calendar days would make a range with an off day never reach 100%; the old scripts
did exactly that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from backfill_kit.warehouse import CalendarRequest, Warehouse

if TYPE_CHECKING:
    from backfill_kit.spec.model import PipelineSpec, Season

__all__ = ["ExpectedDay", "consecutive_runs", "expected_days"]


@dataclass(frozen=True, slots=True)
class ExpectedDay:
    date: dt.date  # `date` is the field's name here, so the type is spelt in full
    games: int
    season: str | None
    season_start: dt.date | None

    def in_bootstrap(self, bootstrap_days: int) -> bool:
        """Inside the first `bootstrap_days` days of its season, counting the opening day."""
        if not bootstrap_days or self.season_start is None:
            return False
        return self.date < self.season_start + timedelta(days=bootstrap_days)


def expected_days(spec: PipelineSpec, warehouse: Warehouse, start: date, end: date) -> list[ExpectedDay]:
    """One query when the calendar has a table; none when it is declared by seasons alone."""
    cal = spec.calendar
    if cal.table is None:
        days = [(start + timedelta(days=i), 0) for i in range((end - start).days + 1)]
    else:
        request = CalendarRequest(cal.table, cal.date_column, cal.game_id_column, _filter_sql(spec))
        days = warehouse.expected_dates(request, start, end)
    return [day for d, games in days if (day := _place(d, games, cal.seasons)) is not None]


def _filter_sql(spec: PipelineSpec) -> str | None:
    """The filter as sqlglot writes it back from the tree checked at spec load: what runs is
    what was checked."""
    if not spec.calendar.filter:
        return None
    from backfill_kit.spec.calendar_filter import filter_sql

    return filter_sql(spec.calendar.filter, spec.warehouse.backend)


def _place(d: date, games: int, seasons: tuple[Season, ...]) -> ExpectedDay | None:
    if not seasons:
        return ExpectedDay(d, games, None, None)
    for season in seasons:
        if season.start <= d <= season.end:
            return ExpectedDay(d, games, season.name, season.start)
    return None  # outside every declared season: not expected


def consecutive_runs(dates: Sequence[date], calendar: Sequence[date]) -> list[list[date]]:
    """Split `dates` (in calendar order) into runs of consecutive calendar dates: off days do
    not split a run, a calendar date missing from `dates` does."""
    position = {d: i for i, d in enumerate(calendar)}
    runs: list[list[date]] = []
    for d in dates:
        if runs and position[d] == position[runs[-1][-1]] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs
