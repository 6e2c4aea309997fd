"""How long a run has left, from what this run measures: one function for the monitor (its
terminal, JSON and JupyterLab views), the runner's own line and the reports.

A runner at work: each table's cost of a step (a start-up plus a cost per date, fitted as the
plan's estimates are, `estimates.fit`) from the steps of this run that succeeded, as long as
each held its worker (start to finish in the journal); a table with no step finished yet
borrows the fit of its phase's finished steps together, else of all of them. What is left is
scheduled stage by stage as the runner runs it (`plan.stage_seconds`): the steps at work for
what their cost leaves, then the others in order on each stage's workers, the stages one
after another. The range is that schedule with every step faster or slower by how far the
finished steps stray from their fits (the 10th to the 90th percentile of actual / fitted),
never less than ±15%: from their own table's fit, or, for a table measured on fewer than three
steps or borrowing, from the fit it borrows.

Before any step of the run has finished, the figure is the plan's own estimate (from earlier
runs), named as such. Without a runner, the monitor says "No runner at work", and it gives the
estimate of the plan that would take what remains, or says there is "nothing left that a plan
can run". No ETA is ever derived from a zero rate.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from backfill_kit.common.formatting import duration_text, plural
from backfill_kit.plan import stage_seconds
from backfill_kit.running.estimates import Fit, fit

if TYPE_CHECKING:
    from backfill_kit.plan import Plan, Stage, Step
    from backfill_kit.running.steps import JournalRun, Sample

__all__ = ["DONE", "IDLE", "MEASURED", "NOTHING_TO_RUN", "PLANNED", "UNKNOWN", "Eta", "plan_eta", "run_eta"]

# What an ETA is, in words a person reads.
MEASURED = "measured"  # from this run's finished steps
PLANNED = "plan estimate"  # the plan's own estimate: no step of the run has finished yet
UNKNOWN = "unknown"  # neither
IDLE = "no runner"  # no runner at work
NOTHING_TO_RUN = "nothing to run"  # cells remain, yet no plan can take them
DONE = "done"  # nothing left

MIN_SPREAD = 0.15  # the range is never narrower than this either side
FEW = 3  # a table measured on fewer steps than this is given the wider spread of the borrowers


@dataclass(frozen=True)
class Eta:
    kind: str
    low: float | None = None
    high: float | None = None
    basis: str = ""  # what it is based on, in a few words

    def span(self) -> str:
        """'4 min to 6 min', '40 s to 55 s', or the words for an ETA that has no figure."""
        if self.low is None or self.high is None:
            return _WORDS[self.kind]
        if self.kind == PLANNED:
            return f"about {_duration(self.high)}"
        low, high = _duration(self.low), _duration(self.high)
        return low if low == high else f"{low} to {high}"

    def text(self) -> str:
        """The monitor's line: the figure, then what it is based on."""
        if self.kind == IDLE:
            return f"No runner at work; {self.basis}" if self.basis else "No runner at work"
        return f"ETA {self.span()} ({self.basis})" if self.basis else f"ETA {self.span()}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "low_seconds": self.low, "high_seconds": self.high, "basis": self.basis}


_WORDS = {
    UNKNOWN: "unknown",
    IDLE: "none",
    NOTHING_TO_RUN: "none: nothing left that a plan can run",
    DONE: "none: nothing left",
    MEASURED: "unknown",
    PLANNED: "unknown",
}


def _duration(seconds: float) -> str:
    """Seconds under a minute, minutes and seconds under two, minutes after."""
    if seconds < 59.5:
        return f"{round(seconds)} s"
    return duration_text(seconds, with_seconds=seconds < 120)


def plan_eta(plan: Plan, left: Sequence[Step] | None = None) -> Eta:
    """The plan's own estimate of its steps (`left`: of those only), named as such."""
    todo = {s.id for s in (plan.steps if left is None else left)}
    if not todo:
        return Eta(DONE, 0.0, 0.0, "the plan has no step to run")
    costs = [(st, [s.estimated_seconds for s in st.steps if s.id in todo]) for st in plan.stages]
    if all(c is None for _, stage in costs for c in stage):
        return Eta(UNKNOWN, basis="the plan has no estimate: no earlier run of these tables to learn from")
    seconds = sum(stage_seconds([c or 0.0 for c in stage], st.workers) for st, stage in costs)
    basis = plan.options.get("estimate_basis") or "earlier runs"
    return Eta(PLANNED, seconds, seconds, f"the plan's estimate, {basis}")


def run_eta(plan: Plan, run: JournalRun, now: datetime) -> Eta:
    """A runner at work on `plan`: what its journal (`run`) says is left, at the cost its
    finished steps measured."""
    left = [s for s in plan.steps if s.id not in run.settled]
    if not left:
        return Eta(DONE, 0.0, 0.0, "every step has finished")
    if not run.samples:
        estimate = plan_eta(plan, left)
        return Eta(
            estimate.kind, estimate.low, estimate.high, f"no step of this run has finished yet; {estimate.basis}"
        )
    costs = _Costs(run.samples, {s.table: s.phase for s in plan.steps})
    elapsed = {step: max(0.0, (now - began).total_seconds()) for step, began in run.open.items()}
    stages = [(st, [s for s in st.steps if s.id not in run.settled]) for st in plan.stages]
    stages = [(st, steps) for st, steps in stages if steps]
    low = sum(_stage(st, steps, costs, elapsed, -1) for st, steps in stages)
    high = sum(_stage(st, steps, costs, elapsed, +1) for st, steps in stages)
    return Eta(MEASURED, low, high, costs.basis(left, len(stages)))


def _stage(stage: Stage, steps: list[Step], costs: _Costs, elapsed: dict[str, float], side: int) -> float:
    """One stage's seconds: the steps at work for what they have left, the others in order."""
    busy = [max(0.0, costs.seconds(s, side) - elapsed[s.id]) for s in steps if s.id in elapsed]
    waiting = [costs.seconds(s, side) for s in steps if s.id not in elapsed]
    return stage_seconds(waiting, stage.workers, busy)


class _Costs:
    """Each table's fit from this run's samples; for a table without any, the fit of its
    phase's samples together (else of all of them); and how far the samples stray from the
    fits they are judged by."""

    def __init__(self, samples: Sequence[Sample], phase_of: Mapping[str, str]) -> None:
        self.phase_of = phase_of
        per_table: dict[str, list[Sample]] = {}
        for s in samples:
            per_table.setdefault(s.table, []).append(s)
        self.steps = {table: len(found) for table, found in per_table.items()}
        self.fits = {table: _fit_of(found) for table, found in per_table.items()}
        self.own_spread = _spread([s.seconds / c for s in samples if (c := self.fits[s.table].seconds(s.dates)) > 0])
        per_phase: dict[str, list[Sample]] = {}
        for s in samples:
            per_phase.setdefault(phase_of.get(s.table, ""), []).append(s)
        self.pools = {phase: _pool(found) for phase, found in per_phase.items()}
        self.pooled = _pool(list(samples))

    def seconds(self, step: Step, side: int) -> float:
        table_fit, spread = self._of(step.table)
        return max(0.0, table_fit.seconds(len(step.dates)) * (1 + side * spread))

    def _of(self, table: str) -> tuple[Fit, float]:
        pool_fit, pool_spread = self.pools.get(self.phase_of.get(table, ""), self.pooled)
        if table not in self.fits:
            return pool_fit, max(self.own_spread, pool_spread)
        few = self.steps[table] < FEW  # a fit of one or two steps strays as far as its phase's
        return self.fits[table], max(self.own_spread, pool_spread) if few else self.own_spread

    def basis(self, left: Sequence[Step], stages: int) -> str:
        measured = sum(self.steps.values())
        borrowing = sorted({s.table for s in left} - set(self.fits))
        text = (
            f"measured: {plural(measured, 'step')} of this run finished, the cost per date of "
            f"{plural(len(self.fits), 'table')}"
        )
        if borrowing:
            text += f"; {plural(len(borrowing), 'table')} not yet run at the cost measured in their phase, or in all"
        return f"{text}; {plural(len(left), 'step')} left in {plural(stages, 'stage')}"


def _fit_of(samples: Sequence[Sample]) -> Fit:
    return fit([(s.dates, s.seconds) for s in samples])


def _pool(samples: Sequence[Sample]) -> tuple[Fit, float]:
    """One fit of these samples together, and how far they stray from it."""
    pooled = _fit_of(samples)
    return pooled, _spread([s.seconds / c for s in samples if (c := pooled.seconds(s.dates)) > 0])


def _spread(ratios: list[float]) -> float:
    """How far, either side, the 10th and 90th percentiles of actual / fitted stray from 1."""
    if len(ratios) < 2:
        return MIN_SPREAD
    deciles = statistics.quantiles(ratios, n=10, method="inclusive")
    return max(MIN_SPREAD, 1 - deciles[0], deciles[-1] - 1)
