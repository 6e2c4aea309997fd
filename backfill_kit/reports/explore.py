"""The gap explorer, for people in JupyterLab (`notebooks/explore.ipynb`).

Widgets choose a date range, phases or tables, and statuses; the heatmap and the gap list
follow. Choosing a table and a date, or clicking the cell in the heatmap, shows that cell's
attempts and errors and the command that would fix it (`heatmap_widget` sends the click back
to the kernel). All the logic is here, where tests drive the widgets from Python; the notebook
only displays an `Explorer`. Widget state does not survive papermill and nbconvert, so the
shared HTML reports never depend on this module.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from backfill_kit.common.formatting import plural
from backfill_kit.common.status import NEEDS_WORK, Status
from backfill_kit.reports import figures
from backfill_kit.reports.heatmap_widget import heatmap_widget
from backfill_kit.reports.notebook import STYLE, commands_html, esc, note_html, table_html
from backfill_kit.validation import summaries
from backfill_kit.validation.progress import progress_text
from backfill_kit.validation.summaries import readable_error

if TYPE_CHECKING:
    from backfill_kit.plan import Plan, Step
    from backfill_kit.validation.validator import Cell, Validation

__all__ = ["Explorer", "explorer"]

GAP_ROWS = 100  # gap runs listed; the rest are counted


def explorer(spec: str | Path, start: str | date, end: str | date) -> Explorer:
    """Validate `spec` over [start, end] (dates or YYYY-MM-DD) and open the explorer on it. A
    relative `spec` is found by `arguments.find_file`'s rule (from notebooks/ too)."""
    from backfill_kit.reports.notebook import coverage

    return Explorer(coverage(spec, start, end).validation, str(spec))


class Explorer:
    """Filters over one validation, and the views that follow them."""

    def __init__(self, validation: Validation, spec_ref: str) -> None:
        self.validation, self.spec_ref = validation, spec_ref
        self.days = [d.date for d in validation.days]
        self.phase_of = {t: validation.spec.phase_of(t).name for t in validation.tables}
        self.by_cell = {(c.table, c.date): c for c in validation.cells}
        self.season_of = {d.date: d.season for d in validation.days}
        self._build_widgets()
        self.figure: dict[str, Any] = {}
        self.refresh()

    def _build_widgets(self) -> None:
        phases = list(dict.fromkeys(self.phase_of.values()))
        # The slider's own readout has room for one date, not two: the range is written beside it.
        self.dates = widgets.SelectionRangeSlider(
            options=[(d.isoformat(), d) for d in self.days],
            index=(0, max(0, len(self.days) - 1)),
            description="dates",
            continuous_update=False,
            readout=False,
            layout=widgets.Layout(width="70%"),
        )
        self.range_note = widgets.HTML()
        self.progress_note = widgets.HTML()
        self.phases = widgets.SelectMultiple(
            options=phases, value=tuple(phases), description="phases", rows=min(6, len(phases))
        )
        tables = list(self.validation.tables)
        self.tables = widgets.SelectMultiple(options=tables, value=tuple(tables), description="tables", rows=10)
        statuses = [str(s) for s in figures.STATUS_ORDER]
        self.statuses = widgets.SelectMultiple(
            options=statuses, value=tuple(statuses), description="statuses", rows=len(statuses)
        )
        self.table = widgets.Dropdown(options=tables, description="table")
        self.day = widgets.Dropdown(options=[], description="date")
        self.heatmap = heatmap_widget({"data": [{"type": "heatmap"}], "layout": {"height": 0}})
        self.heatmap.observe(self._when_idle(self._clicked), names="clicked")
        self.gaps = widgets.HTML()
        self.detail = widgets.HTML()
        self._busy = False  # set while the explorer itself changes widgets: no cascade of redraws
        self.phases.observe(self._when_idle(self._phases_changed), names="value")
        for widget in (self.dates, self.tables, self.statuses):
            widget.observe(self._when_idle(self.refresh), names="value")
        self.table.observe(self._when_idle(self._choose_days), names="value")
        self.day.observe(self._when_idle(self.show_cell), names="value")

    def _when_idle(self, action: Callable[[], None]) -> Callable[[object], None]:
        def observer(_: object) -> None:
            if not self._busy:
                action()

        return observer

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    @cached_property
    def plan(self) -> Plan:
        from backfill_kit.plan import build_plan
        from backfill_kit.running.estimates import estimator_for

        return build_plan(self.validation, estimates=estimator_for(self.validation.spec, self.validation.cells))

    @property
    def ui(self) -> widgets.VBox:
        return widgets.VBox(
            [
                widgets.HTML(STYLE + "<b>Choose what to look at</b>"),
                widgets.HBox([self.dates, self.range_note]),
                widgets.HBox([self.phases, self.tables, self.statuses]),
                self.progress_note,
                self.heatmap,
                widgets.HTML("<h4>Gaps</h4>"),
                self.gaps,
                widgets.HTML("<h4>One cell: its attempts, errors and the command that fixes it</h4>"),
                widgets.HBox([self.table, self.day]),
                self.detail,
            ]
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.ui._repr_mimebundle_(**kwargs)

    # --- what the filters select -----------------------------------------------------------

    def selected_tables(self) -> list[str]:
        return [t for t in self.validation.tables if t in self.tables.value]

    def selected_dates(self) -> list[date]:
        if not self.days:
            return []
        first, last = self.dates.value
        return [d for d in self.days if first <= d <= last]

    def selection(self) -> list[Cell]:
        """The cells inside every filter: chosen tables, date range and statuses."""
        tables, statuses = set(self.tables.value), set(self.statuses.value)
        first, last = self.dates.value if self.days else (date.max, date.min)
        return [
            c
            for c in self.validation.cells
            if c.table in tables and str(c.status) in statuses and first <= c.date <= last
        ]

    def _columns(self, cells: list[Cell], dates: list[date]) -> list[date]:
        """The heatmap's dates: all those chosen; with some statuses left out, only the dates
        that have a cell to show, so that a few failed cells are not slivers among 800 blanks."""
        if set(self.statuses.value) == set(self.statuses.options):
            return dates
        shown = {c.date for c in cells}
        return [d for d in dates if d in shown]

    def _in_range(self, tables: list[str], dates: list[date]) -> list[Cell]:
        """The chosen tables' cells on the chosen dates, whatever their status: what progress
        is counted over."""
        chosen, days = set(tables), set(dates)
        return [c for c in self.validation.cells if c.table in chosen and c.date in days]

    def _phases_changed(self) -> None:
        kept = [t for t in self.validation.tables if self.phase_of[t] in self.phases.value]
        # A table the phases bring back in comes back chosen; one the reader left out stays out.
        offered, picked = set(self.tables.options), set(self.tables.value)
        chosen = tuple(t for t in kept if t in picked or t not in offered) or tuple(kept)
        # One state message for both: options first and value after, as two, let the browser
        # select among options it had already dropped ("Cannot set properties of undefined").
        with self._quietly(), self.tables.hold_sync():
            self.tables.options = kept
            self.tables.value = chosen
        self.refresh()

    # --- the views -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw the heatmap and the gap list for the current filters; re-offer the cells."""
        cells, tables, dates = self.selection(), self.selected_tables(), self.selected_dates()
        self.figure = figures.coverage_heatmap(
            cells, tables, [self.phase_of[t] for t in tables], self._columns(cells, dates), season_of=self.season_of
        )
        self.heatmap.figure = {**self.figure, "config": {**figures.CONFIG, "responsive": True}}
        self.range_note.value = _range_html(dates, self.validation.spec.calendar.unit)
        self.progress_note.value = note_html(progress_text(self._in_range(tables, dates)))
        self.gaps.value = _gaps_html(summaries.gap_runs(cells, dates), self.validation.spec.calendar.units)
        current = self.table.value
        with self._quietly():
            self.table.options = tables
            self.table.value = current if current in tables else (tables[0] if tables else None)
        self._choose_days()

    def _choose_days(self) -> None:
        """Offer the dates of the chosen table that pass the filters, gaps first."""
        table = self.table.value
        cells = sorted(
            (c for c in self.selection() if c.table == table), key=lambda c: (c.status not in NEEDS_WORK, c.date)
        )
        options = [(f"{c.date} · {c.status}", c.date) for c in cells]
        current = self.day.value
        with self._quietly():
            self.day.options = options
            self.day.value = current if current in {d for _, d in options} else (options[0][1] if options else None)
        self.show_cell()

    def _clicked(self) -> None:
        """A click on a heatmap cell chooses it, as the table and date dropdowns would."""
        chosen = _clicked_cell(self.figure, self.heatmap.clicked)
        if chosen is None or (chosen[0], chosen[1]) not in {(c.table, c.date) for c in self.selection()}:
            return  # a blank, filtered out: nothing to show
        self.table.value = chosen[0]  # offers its dates (the observer), then
        self.day.value = chosen[1]  # shows the cell

    def show_cell(self) -> None:
        cell = self.by_cell.get((self.table.value, self.day.value))
        self.detail.value = self.cell_html(cell) if cell else note_html("No cell matches the filters.")

    def cell_html(self, cell: Cell) -> str:
        """One cell: its status and evidence, its last error, and the commands that fix it."""
        status = Status(cell.status)
        facts = [
            {
                "rows": cell.rows,
                "needs": cell.expected_rows,
                "attempts": cell.attempts,
                "failed": cell.failures,
                "latest run": cell.latest_status or "none recorded",
                "latest started (UTC)": f"{cell.latest_started_at:%Y-%m-%d %H:%M}" if cell.latest_started_at else "",
                "seconds": cell.latest_seconds,
                "fallback": cell.fallback or "",
                "warnings": "; ".join(cell.warnings),
            }
        ]
        error = readable_error(cell.last_error, limit=4000)
        parts = [
            f"<h4>{esc(cell.table)} · {cell.date} · {esc(status)}</h4>",
            f"<p>{esc(status.meaning)}. <b>What to do:</b> {esc(status.action)}.</p>",
            table_html(facts, numbers=("rows", "needs", "attempts", "failed", "seconds")),
            f'<p><b>Last error</b></p><pre class="bk-pre">{esc(error)}</pre>' if error else "",
            self._fix_html(cell),
        ]
        return "".join(parts)

    def _fix_html(self, cell: Cell) -> str:
        from backfill_kit.plan import needs_backfill  # loaded already: the explorer built its plan

        if not needs_backfill(cell, {*NEEDS_WORK, Status.NO_DATA}):  # as the plan decides, even with --include-no-data
            return note_html(f"Nothing to fix: {_why_fine(cell)}.")
        extra = " --include-no-data" if cell.status is Status.NO_DATA else ""
        command = (
            f"backfill-kit backfill --spec {shlex.quote(self.spec_ref)} --start {cell.date} "
            f"--end {cell.date} --table {shlex.quote(cell.table)}{extra}"
        )
        html = f"<p><b>Fix this cell alone</b></p>{commands_html(command)}"
        return html + self._in_plan_html(cell)

    def _in_plan_html(self, cell: Cell) -> str:
        step = self._step_for(cell)
        if step is not None:
            span = f"{step.start} .. {step.end}" if step.start != step.end else str(step.start)
            return (
                f"<p><b>In the full plan</b>: step {esc(step.id)} ({esc(span)}) runs</p>{commands_html(step.command)}"
            )
        blocked = next((b for b in self.plan.blocked if (b.table, b.date) == (cell.table, cell.date)), None)
        if blocked is not None:
            return note_html(f"The full plan leaves it blocked: {blocked.reason}.")
        return note_html("Not in the default plan (no-data cells are rerun only with --include-no-data).")

    def _step_for(self, cell: Cell) -> Step | None:
        return next((s for s in self.plan.steps if s.table == cell.table and cell.date in s.dates), None)


def _why_fine(cell: Cell) -> str:
    """Why a cell the plan would not rerun needs nothing, in a sentence about this cell."""
    if cell.status is Status.COMPLETE:
        return f"its {plural(cell.rows, 'row')} meet the table's minimum of {cell.expected_rows:,}"
    if cell.status is Status.NO_DATA and cell.fallback:
        return f"its fallback {cell.fallback} has this date's data"
    if cell.status is Status.BOOTSTRAP:
        return "it is inside the phase's bootstrap window, where the lookbacks have no history yet"
    if cell.status is Status.RUNNING:
        return "a run started recently and has not finished: wait for it"
    return Status(cell.status).action


def _clicked_cell(figure: dict[str, Any], clicked: list[int]) -> tuple[str, date] | None:
    """The (table, date) of the heatmap's row and column clicked, or None."""
    trace = figure["data"][0]
    tables, days = trace["y"][1], trace["x"]
    row, column = clicked[:2] if len(clicked) >= 2 else (-1, -1)
    if 0 <= row < len(tables) and 0 <= column < len(days):
        return tables[row], date.fromisoformat(days[column])
    return None


def _range_html(dates: list[date], unit: str) -> str:
    if not dates:
        return note_html(f"no {unit}s chosen")
    return f'<span class="bk-range">{dates[0]} .. {dates[-1]} · {esc(plural(len(dates), unit))}</span>'


def _gaps_html(runs: list[summaries.Gap], units: str) -> str:
    if not runs:
        return note_html("No gaps among the chosen cells.")
    more = note_html(f"… and {len(runs) - GAP_ROWS:,} shorter runs.") if len(runs) > GAP_ROWS else ""
    head = note_html(f"{plural(len(runs), 'run')} of consecutive {units} with the same cause, longest first.")
    return head + table_html([g.row() for g in runs[:GAP_ROWS]], numbers=("dates",)) + more
