"""Dependents held date by date: a step runs only over the dates its upstream steps left rows on.

An upstream step that exited 0 may still have left some of its dates empty (its re-check
says which, and which of those its table's fallback fills). A dependent run over such a date
would find nothing there, write nothing, and read `no_data` for good; so those dates are held
back, listed as blocked with the upstream step that left them empty, and the dependent runs
over the others: split into parts, one per run of consecutive dates, each with the command the
planner gives those dates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from backfill_kit.plan import Step

__all__ = ["Hold", "dates_from_journal", "dates_text", "hold_for"]

SHOWN_DATES = 5


def dates_text(dates: Iterable[date]) -> str:
    ordered = sorted(dates)
    shown = ", ".join(map(str, ordered[:SHOWN_DATES]))
    return shown + (f" and {len(ordered) - SHOWN_DATES} more" if len(ordered) > SHOWN_DATES else "")


def dates_from_journal(value: Any) -> frozenset[date]:
    """A journal's list of dates (cut lists end with a note, which is no date)."""
    if not isinstance(value, list):
        return frozenset()
    out = set()
    for item in value:
        try:
            out.add(date.fromisoformat(item))
        except (TypeError, ValueError):
            continue
    return frozenset(out)


@dataclass(frozen=True)
class Hold:
    """The dates of a step held back, each with the upstream step that left it without rows."""

    step: Step
    held: Mapping[date, str]

    @property
    def whole(self) -> bool:
        return set(self.step.dates) <= set(self.held)

    def by_upstream(self) -> dict[str, list[date]]:
        out: dict[str, list[date]] = {}
        for d, upstream in sorted(self.held.items()):
            out.setdefault(upstream, []).append(d)
        return out

    def runs(self) -> list[list[date]]:
        """The step's other dates, as runs of its own consecutive dates (a held date splits one)."""
        runs: list[list[date]] = [[]]
        for d in self.step.dates:
            if d in self.held:
                runs.append([])
            else:
                runs[-1].append(d)
        return [run for run in runs if run]

    def why(self) -> str:
        """Each upstream step and the dates it left without rows, as the run's summary says it."""
        return "; ".join(
            f"upstream step {upstream} has no rows on {dates_text(days)}"
            for upstream, days in self.by_upstream().items()
        )


def hold_for(step: Step, unfed: Mapping[str, frozenset[date]]) -> Hold:
    """Which of the step's dates an upstream step (`after`) left without rows to read."""
    held: dict[date, str] = {}
    mine = set(step.dates)
    for upstream in step.after:
        for d in sorted(unfed.get(upstream, frozenset()) & mine):
            held.setdefault(d, upstream)
    return Hold(step, held)
