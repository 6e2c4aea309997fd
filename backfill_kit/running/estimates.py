"""How long a step will take, from the durations of comparable steps.

A step is one job over some dates, so its duration is a function of its table and its number
of dates: a start-up cost plus a cost per date, fitted per table. The samples come, in this
order, from the journals of earlier runs beside the spec (`runs/*.journal.jsonl`: this
pipeline's jobs as the runner ran them), then from the run history (one sample per run: a
range run's duration covers its whole range, never each of its dates). A table with neither
has no estimate, and the plan says so rather than borrow another table's.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from backfill_kit.common.formatting import plural
from backfill_kit.errors import InputError

if TYPE_CHECKING:
    from backfill_kit.spec.model import PipelineSpec
    from backfill_kit.validation.validator import Cell

__all__ = [
    "JOURNAL",
    "RUN_HISTORY",
    "Estimator",
    "Fit",
    "estimator_for",
    "fit",
    "history_samples",
    "journal_samples",
    "journals_beside",
]

JOURNAL = "journal"
RUN_HISTORY = "run history"

Samples = dict[str, list[tuple[int, float]]]  # table -> (dates, seconds) of each comparable step


def journals_beside(spec: PipelineSpec) -> list[Path]:
    """Journals of earlier runs beside the spec (runs/*.journal.jsonl)."""
    if spec.source is None:
        return []
    return sorted((spec.folder / "runs").glob("*.journal.jsonl"))


def journal_samples(journals: Iterable[Path]) -> Samples:
    """Each attempt that succeeded: its table, its dates and the seconds it held its worker
    (`steps.Sample`, as the ETA measures them). A journal that cannot be read is left out (the
    monitor names it)."""
    from backfill_kit.running.journal import read_journal
    from backfill_kit.running.steps import journal_run

    samples: Samples = {}
    for path in journals:
        try:
            events = read_journal(path).events
        except InputError:
            continue
        for sample in journal_run(events).samples:
            samples.setdefault(sample.table, []).append((sample.dates, sample.seconds))
    return samples


def history_samples(cells: Sequence[Cell]) -> Samples:
    """One sample per run of the run history: the cells whose latest run is the same run (a
    range run stands for every date of its range) are its dates. A cell does not carry its run
    id, so a run is known by its start and duration: two runs that started at the same instant
    and took exactly as long count as one run of their dates together."""
    runs: dict[tuple[str, object, float], int] = {}
    for c in cells:
        if c.latest_status and c.latest_seconds is not None and c.latest_seconds >= 0:
            # Without its start time a run cannot be told from another: one date each.
            key = (c.table, c.latest_started_at or c.date, float(c.latest_seconds))
            runs[key] = runs.get(key, 0) + 1
    samples: Samples = {}
    for (table, _, seconds), dates in runs.items():
        samples.setdefault(table, []).append((dates, seconds))
    return samples


@dataclass(frozen=True)
class Fit:
    start_up: float
    per_date: float

    def seconds(self, dates: int) -> float:
        return self.start_up + self.per_date * dates


def fit(samples: list[tuple[int, float]]) -> Fit:
    """Least squares of seconds over dates, with neither cost below zero; with one size of
    step only, its median spread evenly over its dates."""
    xs = [float(n) for n, _ in samples]
    ys = [s for _, s in samples]
    if len(set(xs)) < 2:
        return Fit(0.0, statistics.median(y / x for x, y in zip(xs, ys, strict=True) if x) if any(xs) else 0.0)
    slope, intercept = statistics.linear_regression(xs, ys)
    if intercept < 0:
        return Fit(0.0, sum(ys) / sum(xs))
    if slope < 0:
        return Fit(statistics.median(ys), 0.0)
    return Fit(intercept, slope)


@dataclass
class Estimator:
    """Per table, a fit of its step durations, and where each came from."""

    fits: dict[str, Fit] = field(default_factory=dict)
    basis: dict[str, str] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)  # steps or runs behind each basis

    def seconds(self, table: str, dates: int) -> float | None:
        fit = self.fits.get(table)
        return None if fit is None else round(fit.seconds(dates), 3)

    def describe(self, tables: Iterable[str]) -> str:
        """Which basis the estimate of these tables' steps used, or that there is none."""
        used: dict[str, int] = {}
        missing = []
        for table in dict.fromkeys(tables):
            if table in self.basis:
                used[self.basis[table]] = used.get(self.basis[table], 0) + self.samples[table]
            else:
                missing.append(table)
        parts = []
        if JOURNAL in used:
            parts.append(f"{plural(used[JOURNAL], 'step')} of earlier runs (runs/*.journal.jsonl beside the spec)")
        if RUN_HISTORY in used:
            parts.append(
                f"{plural(used[RUN_HISTORY], 'run')} in the run history (a range run counts for its whole range)"
            )
        text = "from " + " and ".join(parts) if parts else "no basis: no earlier journal and no run durations"
        if parts and missing:  # a few named, the rest counted: the monitor prints this on one line
            more = f" and {len(missing) - 3:,} more" if len(missing) > 4 else ""
            text += f"; no basis for {', '.join(missing[:3] if more else missing)}{more}"
        return text


def estimator_for(spec: PipelineSpec, cells: Sequence[Cell]) -> Estimator:
    """Each table's fit from the journals beside the spec, else from the run history."""
    estimator = Estimator()
    for basis, samples in ((JOURNAL, journal_samples(journals_beside(spec))), (RUN_HISTORY, history_samples(cells))):
        for table, found in samples.items():
            if table not in estimator.fits and found:
                estimator.fits[table] = fit(found)
                estimator.basis[table] = basis
                estimator.samples[table] = len(found)
    return estimator
