"""What the report notebooks show: each notebook cell is one call into this module.

`coverage_audit.ipynb` calls `setup()`, then `coverage(spec, start, end)` and displays its
sections; `execution_log.ipynb` does the same with `execution(journal)`. A section is a figure
(`figures.ReportFigure`) or an HTML fragment in which every text from the warehouse, a plan or
a log is escaped. The coverage report does not import pandas (see `coverage`); the execution
log does, through `frames`.
"""

from __future__ import annotations

import html
import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.display import HTML

from backfill_kit.common.arguments import as_date, find_file
from backfill_kit.common.formatting import duration_text, percent_text, plural, printable
from backfill_kit.common.status import NEEDS_WORK, PROGRESS_WORDS, Status
from backfill_kit.errors import InputError
from backfill_kit.reports import figures
from backfill_kit.reports.figures import ReportFigure
from backfill_kit.running.eta import UNKNOWN, Eta, plan_eta, run_eta
from backfill_kit.running.journal import Event, Outcome, read_journal
from backfill_kit.running.locks import is_locked, journal_lock
from backfill_kit.running.steps import JournalRun, StepCounts, event_time, find_plan, journal_run
from backfill_kit.validation import summaries
from backfill_kit.validation.progress import (
    PHASE_COLUMNS,
    PHASE_RULE,
    PhaseProgress,
    cell_counts,
    phase_rows,
    progress_of,
)

if TYPE_CHECKING:
    import pandas as pd

    from backfill_kit.plan import Plan
    from backfill_kit.spec.model import PipelineSpec
    from backfill_kit.validation.validator import Validation

__all__ = ["HEADLINE_MIMETYPE", "CoverageAudit", "ExecutionLog", "Headline", "coverage", "execution", "setup"]

GAP_LIST_LIMIT = 200  # rows of the gap list shown; the rest are counted
JOURNAL_HINT = "a run writes it beside its plan (PLAN.journal.jsonl)"


def setup() -> HTML:
    """plotly.js and the report's styles, embedded once: the first displayed cell of a report.

    Every figure after it is a `figures.ReportFigure`, shown as HTML that draws with this
    plotly.js: nothing depends on plotly's default renderer (JSON only under papermill)."""
    return HTML(figures.plotly_js_html() + STYLE)


# Styles for the report's own fragments (the explorer's too); class names are prefixed so that
# they touch nothing else. Table and pre rules name the class twice to outrank JupyterLab's own
# (`:not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td`: right-aligned, wrapping, fixed layout;
# `.jp-OutputArea-output pre`: breaks inside words).
STYLE = """<style>
.bk-cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 4px}
.bk-card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:120px}
.bk-card .bk-n{font-size:1.6em;font-weight:600}
.bk-card .bk-l{color:#57606a;font-size:.9em}
.bk-table.bk-table{border-collapse:collapse;font-size:.9em;margin:6px 0;table-layout:auto;line-height:1.4}
.bk-table.bk-table th,.bk-table.bk-table td{border-bottom:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top;white-space:nowrap;line-height:1.4}
.bk-table.bk-table td.bk-wrap{white-space:normal;min-width:14em}
.bk-table.bk-table tr:has(+ .bk-detail) td{border-bottom:none}
.bk-table.bk-table tr.bk-detail td{padding-left:2em}
.bk-table.bk-table th{background:#f6f8fa}
.bk-table.bk-table td.bk-num{text-align:right;font-variant-numeric:tabular-nums}
.bk-table.bk-table pre,.bk-pre.bk-pre{margin:0;white-space:pre-wrap;word-break:normal;overflow-wrap:anywhere;font-size:.85em;max-width:70em;line-height:1.4}
.bk-note{color:#57606a;line-height:1.4}
.bk-range{white-space:nowrap;font-variant-numeric:tabular-nums}
.bk-status{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:4px;vertical-align:middle}
.bk-cmds{margin:0;font-family:monospace;font-size:.85em;line-height:1.5;max-width:70em}
.bk-cmd{display:block;white-space:normal;overflow-wrap:normal;word-break:normal;padding-left:2em;text-indent:-2em}
.bk-arg{white-space:nowrap}
</style>"""


# --- HTML fragments ------------------------------------------------------------------------


def esc(value: object) -> str:
    """Text for HTML: every value from the warehouse, a plan or a log goes through here, made
    safe to show (no bidi override reorders a report's text) and escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(printable(str(value)))


def table_html(
    rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    pre: Iterable[str] = (),
    numbers: Iterable[str] = (),
    detail: Sequence[str] = (),
) -> str:
    """Rows (dicts, or a DataFrame) as an HTML table with every cell escaped. `pre` columns keep
    their line breaks; `numbers` are right-aligned with thousands separators; `detail` columns
    (a command, a log tail) go on a full-width line under their row rather than in a column."""
    if hasattr(rows, "to_dict"):  # a DataFrame: its missing values (NaN, NaT, <NA>) as None
        frame: Any = rows
        columns = columns or list(frame.columns)
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    shown = [c for c in (columns or (rows[0].keys() if rows else [])) if c not in detail]
    pre, numbers = set(pre), set(numbers)
    head = "".join(f"<th>{esc(c.replace('_', ' '))}</th>" for c in shown)
    body = "".join(
        "<tr>"
        + "".join(_td(c, row.get(c), pre, numbers) for c in shown)
        + "</tr>"
        + _detail_rows(row, detail, len(shown))
        for row in rows
    )
    return f'<table class="bk-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _detail_rows(row: Mapping[str, Any], detail: Sequence[str], width: int) -> str:
    lines = [(c, row.get(c)) for c in detail if esc(row.get(c))]
    return "".join(
        f'<tr class="bk-detail"><td colspan="{width}"><span class="bk-note">{esc(c)}</span>'
        f"{commands_html(str(value)) if c == 'command' else f'<pre>{esc(value)}</pre>'}</td></tr>"
        for c, value in lines
    )


def commands_html(text: str) -> str:
    """Commands as a reader copies them: each on a line of its own that wraps only between
    arguments (a flag and its value stay together), never inside one. Comment lines stay
    as they are."""
    lines = "".join(
        f'<span class="bk-cmd">{_arguments_html(line)}</span>' for line in text.splitlines() if line.strip()
    )
    return f'<div class="bk-cmds">{lines}</div>'


def _arguments_html(line: str) -> str:
    if line.lstrip().startswith("#"):
        return f'<span class="bk-arg bk-note">{esc(line)}</span>'
    try:
        words = shlex.split(line)
    except ValueError:  # not a shell line after all: shown whole
        return f'<span class="bk-arg">{esc(line)}</span>'
    groups: list[list[str]] = []
    for word in words:
        flag_value = groups and groups[-1][0].startswith("-") and len(groups[-1]) == 1 and not word.startswith("-")
        if flag_value:
            groups[-1].append(word)
        else:
            groups.append([word])
    return " ".join(f'<span class="bk-arg">{esc(shlex.join(group))}</span>' for group in groups)


def _td(column: str, value: object, pre: set[str], numbers: set[str]) -> str:
    text = esc(value)
    if column in pre and text:
        return f"<td><pre>{text}</pre></td>"
    if column in numbers:
        return f'<td class="bk-num">{_number(value)}</td>'
    if column in ("status", "outcome") and text in _COLORS:
        return f'<td><span class="bk-status" style="background:{_COLORS[text]}"></span>{text}</td>'
    if column in _PROSE:
        return f'<td class="bk-wrap">{text}</td>'
    return f"<td>{text}</td>"


# Columns of sentences, which wrap; every other column (names, dates, counts) stays on one line.
_PROSE = frozenset({"meaning", "what to do", "last error", "reason", "warning", "before", "after", "causes", "log"})


_COLORS = {str(s): c for s, c in figures.STATUS_COLORS.items()} | figures.OUTCOME_COLORS


def _number(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"  # type: ignore[call-overload]


def cards_html(cards: Sequence[tuple[str, str]]) -> str:
    return (
        '<div class="bk-cards">'
        + "".join(
            f'<div class="bk-card"><div class="bk-n">{esc(n)}</div><div class="bk-l">{esc(label)}</div></div>'
            for n, label in cards
        )
        + "</div>"
    )


# The mimetype under which a report's headline numbers travel beside its HTML: the renderer
# reads them from the executed notebook for reports/index.html; the HTML export ignores them.
HEADLINE_MIMETYPE = "application/vnd.backfill-kit.headline+json"


@dataclass(frozen=True)
class Headline:
    """A report's headline: HTML for the reader, its numbers as JSON for the index."""

    html: str
    numbers: dict[str, Any]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/html": self.html, HEADLINE_MIMETYPE: self.numbers}


def note_html(text: str) -> str:
    return f'<p class="bk-note">{esc(text)}</p>'


# --- the coverage audit --------------------------------------------------------------------


def coverage(spec: str | Path, start: str | date, end: str | date) -> CoverageAudit:
    """Validate `spec` over [start, end] (dates or YYYY-MM-DD) and plan the backfill. A
    relative `spec` is found by `arguments.find_file`'s rule (from notebooks/ too)."""
    from backfill_kit.spec.load import load_spec
    from backfill_kit.validation.validator import validate

    first, last = as_date(start, "start"), as_date(end, "end")
    return CoverageAudit(str(spec), validate(load_spec(find_file(spec, "the spec")), first, last))


@dataclass
class CoverageAudit:
    """One validation and its plan, as the sections of the coverage report."""

    spec_ref: str  # how the reader names the spec in a command: the parameter, as given
    validation: Validation

    @cached_property
    def plan(self) -> Plan:
        from backfill_kit.plan import build_plan
        from backfill_kit.running.estimates import estimator_for

        return build_plan(self.validation, estimates=estimator_for(self.validation.spec, self.validation.cells))

    @cached_property
    def frame(self) -> pd.DataFrame:
        """Every cell as a pandas DataFrame, for going on from the report in a notebook."""
        from backfill_kit.reports.frames import cells_frame

        return cells_frame(self.validation)

    @property
    def tables(self) -> list[str]:
        return list(self.validation.tables)

    @property
    def phases(self) -> list[str]:
        """The phase of each table, in table order (the outer axis of the figures)."""
        return [self.validation.spec.phase_of(t).name for t in self.tables]

    @property
    def dates(self) -> list[date]:
        return [d.date for d in self.validation.days]

    def headline(self) -> Headline:
        v = self.validation
        counts = v.counts()
        total = progress_of(v).total
        need_work = sum(n for s, n in counts.items() if s in NEEDS_WORK)
        cards = [
            (f"{total.expected:,}", f"expected cells (tables × {v.spec.calendar.units}, bootstrap excluded)"),
            (percent_text(total.percent_complete), f"complete: {PROGRESS_WORDS['complete']}"),
            (percent_text(total.percent_done), f"done: {PROGRESS_WORDS['done']}"),
            (f"{total.remaining:,}", "remaining: not done"),
            (f"{need_work:,}", "cells need a backfill"),
        ]
        causes = [(f"{counts.get(s, 0):,}", str(s).replace("_", " ")) for s in summaries.BREAKDOWN_ORDER]
        title = (
            f"<h2>{esc(v.spec.name)}: {v.start} .. {v.end}</h2>"
            f"<p>{plural(len(v.days), 'expected ' + v.spec.calendar.unit)} ({esc(v.spec.calendar.definition)}) × "
            f"{plural(len(v.tables), 'table')}, validated {v.now:%Y-%m-%d %H:%M} UTC with "
            f"{plural(len(v.queries), 'warehouse query', 'warehouse queries')}.</p>"
        )
        numbers = {
            "expected": total.expected,
            "complete": percent_text(total.percent_complete),
            "done": percent_text(total.percent_done),
            "remaining": total.remaining,
            "failed": total.failed,
            "need_work": need_work,
            "validated_at": v.now.isoformat(timespec="seconds"),
        }
        phases = f"<h4>Phases ({esc(PHASE_RULE)})</h4>" + phases_html(progress_of(v).phases)
        return Headline(title + cards_html(cards) + phases + "<h4>Gaps by cause</h4>" + cards_html(causes), numbers)

    def changes(self, cells_file: str = "", limit: int = GAP_LIST_LIMIT) -> HTML:
        """What changed since the previous report of this pipeline and range, as `backfill-kit
        report coverage` recorded it beside this one (`cells_file`; empty: not rendered so)."""
        from backfill_kit.reports.changes import Changes, change_rows, read_cells_file

        data = read_cells_file(Path(cells_file)) if cells_file else None
        if data is None:
            return HTML(
                "<p>No comparison: only <code>backfill-kit report coverage</code> compares a report with the one before it.</p>"
            )
        changes = Changes.from_dict(data.get("changes") or {})
        rows = list(change_rows(changes, limit))
        table = (
            table_html(rows, columns=["change", "table", "date", "before", "now"])
            if rows
            else "<p>No cell changed.</p>"
        )
        summary = changes.summary()
        return HTML(f"<p><b>{esc(summary[:1].upper() + summary[1:])}.</b></p>{table}")

    def heatmap(self) -> ReportFigure:
        seasons = {d.date: d.season for d in self.validation.days}
        return ReportFigure(
            figures.coverage_heatmap(self.validation.cells, self.tables, self.phases, self.dates, season_of=seasons)
        )

    def season_bars(self) -> ReportFigure:
        counts = summaries.season_counts(self.validation.cells)
        return ReportFigure(figures.season_bars(counts, self.tables, self.phases))

    def breakdown(self) -> HTML:
        return HTML(table_html(summaries.breakdown_rows(self.validation.cells), numbers=("cells", "tables")))

    def gaps(self, limit: int = GAP_LIST_LIMIT) -> HTML:
        runs = summaries.gap_runs(self.validation.cells, self.dates)
        if not runs:
            return HTML(note_html("No gaps: every expected cell is complete, genuinely without data, or bootstrap."))
        units = self.validation.spec.calendar.units
        intro = note_html(f"{plural(len(runs), 'run')} of consecutive {units} with the same cause, longest first.")
        more = (
            note_html(f"… and {len(runs) - limit:,} shorter runs: backfill-kit validate --format csv lists every cell.")
            if len(runs) > limit
            else ""
        )
        return HTML(intro + table_html([g.row() for g in runs[:limit]], numbers=("dates",)) + more)

    def no_data(self) -> HTML:
        """Per table, the cells whose source had nothing, and the fallback that covers them."""
        rows = summaries.no_data_rows(self.validation.cells)
        if not rows:
            return HTML(note_html("No cell reads no_data: every source had data on every expected date."))
        intro = note_html(
            "These count as done: the source genuinely had nothing. A fallback covers a date when "
            "it is complete on it; the dates not covered have no data anywhere."
        )
        return HTML(intro + table_html(rows, numbers=("no data", "not covered")))

    def recommended_plan(self) -> HTML:
        plan = self.plan
        if not plan.steps:
            return HTML(note_html("Nothing to backfill.") + _blocked_html(plan))
        spec, start, end = shlex.quote(self.spec_ref), self.validation.start, self.validation.end
        # Beside the spec, where `backfill` keeps its plans and where estimates look for journals.
        out = shlex.quote(str(Path(self.spec_ref).parent / "runs" / "plan.json"))
        commands = (
            f"backfill-kit plan --spec {spec} --start {start} --end {end} --out {out}\n"
            f"backfill-kit run --plan {out}\n"
            f"# or both at once, resumable:\nbackfill-kit backfill --spec {spec} --start {start} --end {end}"
        )
        estimate = plan_eta(plan)
        intro = (
            f"<p>{plural(len(plan.steps), 'step')} over {plural(plan.table_dates, 'table-date')} in "
            f"{plural(len(plan.stages), 'stage')} (stages run one after another; the steps of a parallel stage run "
            f"side by side). ETA {esc(estimate.span())} ({esc(estimate.basis)}). "
            f"Make and run it with:</p>{commands_html(commands)}"
        )
        return HTML(
            intro + table_html(plan_rows(plan), numbers=("stage", "dates"), detail=("command",)) + _blocked_html(plan)
        )


def phases_html(phases: Sequence[PhaseProgress]) -> str:
    """The phase table every view shows (`progress.phase_rows`), as HTML."""
    rows = [dict(zip(PHASE_COLUMNS, row, strict=True)) for row in phase_rows(phases)]
    return table_html(rows, numbers=()) if rows else ""


def plan_rows(plan: Plan) -> list[dict[str, Any]]:
    """One row per step of a plan, in the order the runner starts them."""
    return [
        {
            "stage": stage.index,
            "phase": stage.phase,
            "mode": stage.mode,
            "table": step.table,
            "first": step.start,
            "last": step.end,
            "dates": len(step.dates),
            "causes": ", ".join(f"{k} {v}" for k, v in step.causes.items()),
            "command": step.command,
        }
        for stage in plan.stages
        for step in stage.steps
    ]


def _blocked_html(plan: Plan) -> str:
    if not plan.blocked:
        return ""
    rows = [{"table": b.table, "date": b.date, "reason": b.reason} for b in plan.blocked[:GAP_LIST_LIMIT]]
    waits = "waits" if len(plan.blocked) == 1 else "wait"
    return (
        f"<h4>Blocked: {plural(len(plan.blocked), 'cell')} {waits} for an upstream this plan cannot fill</h4>"
        + table_html(rows)
    )


# --- the execution log ---------------------------------------------------------------------


def execution(journal: str | Path) -> ExecutionLog:
    """Read a runner journal, and the plan it ran when that file is still readable. A relative
    `journal` is found by `arguments.find_file`'s rule (from notebooks/ too)."""
    path = find_file(journal, "the journal", hint=JOURNAL_HINT)
    if not path.exists():  # a pipe or a device: read_journal names it
        raise InputError(f"the journal {journal} does not exist; {JOURNAL_HINT}")
    events = read_journal(path).events
    return ExecutionLog(str(path), events, *find_plan(path, events))


@dataclass
class ExecutionLog:
    """A journal's attempts and steps, as the sections of the execution report."""

    journal: str
    events: list[dict[str, Any]]
    plan: Plan | None = None
    plan_problem: str | None = None
    _after: Validation | None = field(default=None, repr=False)

    @cached_property
    def attempts(self) -> pd.DataFrame:
        from backfill_kit.reports.frames import attempts_frame

        return attempts_frame(self.events)

    @cached_property
    def steps_frame(self) -> pd.DataFrame:
        from backfill_kit.reports.frames import steps_frame

        return steps_frame(self.attempts, self.plan)

    @cached_property
    def run(self) -> JournalRun:
        return journal_run(self.events)

    @property
    def working(self) -> bool:
        """A runner holds the journal right now: the report is of a run still going."""
        return is_locked(journal_lock(Path(self.journal)))

    def step_counts(self) -> StepCounts:
        """The steps by outcome, as the runner and the monitor count them."""
        return self.run.counts(self.working)

    def eta(self) -> Eta | None:
        """The monitor's ETA while a runner works on the journal; None once it is gone."""
        if not self.working:
            return None
        if self.plan is None:
            return Eta(UNKNOWN, basis=f"the plan cannot be read: {self.plan_problem}")
        return run_eta(self.plan, self.run, datetime.now(UTC))

    def headline(self) -> Headline:
        started = [e["time"] for e in self.events if e.get("event") == Event.RUN_STARTED]
        finished = [e for e in self.events if e.get("event") == Event.RUN_FINISHED]
        result = finished[-1].get("outcome", "?") if self.run.finished else _unfinished(self.working)
        counts, eta = self.step_counts(), self.eta()
        cards = [
            (result, "outcome of the last run"),
            (f"{counts.total:,}", "steps"),
            (f"{int((self.attempts['attempt'] > 0).sum()):,}", "attempts"),
            (duration_text(_wall_seconds(self.events)), "wall time"),
        ]
        cards += [(f"{n:,}", word) for word, n in counts.parts()]
        if eta is not None:
            cards.append((eta.span(), f"ETA ({eta.basis})"))
        plan = f"{esc(self.plan.spec_name)} {self.plan.start} .. {self.plan.end}, " if self.plan else ""
        first = f"{datetime.fromisoformat(started[0]):%Y-%m-%d %H:%M:%S} UTC" if started else "-"
        head = (
            f"<h2>Backfill: {plan}{plural(len(started), 'run')}</h2>"
            f"<p>Journal <code>{esc(self.journal)}</code>; first started {first}. {esc(counts.text())}.</p>"
        )
        problem = note_html(f"Before/after coverage unavailable: {self.plan_problem}.") if self.plan_problem else ""
        numbers = {
            "outcome": result,
            "steps": counts.total,
            "outcomes": dict(counts.parts()),
            "steps_text": counts.text(),
            "finished_at": finished[-1].get("time") if self.run.finished else None,
        }
        return Headline(head + cards_html(cards) + problem, numbers)

    def timeline(self) -> ReportFigure:
        return ReportFigure(figures.timeline(self.attempts))

    def steps(self) -> HTML:
        frame = self.steps_frame.drop(columns=["log", "phase", "step"]).rename(
            columns={"table": "job", "tail": "log tail", "exit_code": "exit code"}
        )
        return HTML(
            table_html(
                frame,
                detail=("log tail", "command"),
                numbers=("stage", "dates", "exit code", "seconds", "attempts", "retries"),
            )
        )

    def after(self) -> Validation | None:
        """A fresh validation of the plan's tables over its range: the 'after' of the run."""
        if self._after is None and self.plan is not None:
            from backfill_kit.validation.validator import validate

            spec = _spec_for(self.plan, Path(self.journal))
            order = [t.id for t in spec.tables]
            tables = sorted({s.table for s in self.plan.steps if s.table in order}, key=order.index)
            self._after = validate(spec, self.plan.start, self.plan.end, tables=tables or None)
        return self._after

    def coverage(self) -> HTML:
        if self.plan is None:
            return HTML(note_html(f"Before/after coverage unavailable: {self.plan_problem}."))
        after = self.after()
        assert after is not None
        rows = before_after_rows(self.plan, after)
        fixed, planned = sum(r["fixed"] for r in rows), sum(r["planned"] for r in rows)
        intro = (
            f"<p>Before: the causes the plan was made for ({self.plan.created_at:%Y-%m-%d %H:%M} UTC). "
            f"After: the same table-dates validated now ({after.now:%Y-%m-%d %H:%M} UTC). "
            f"{fixed:,} of {planned:,} planned table-dates are now complete or genuinely without data.</p>"
        )
        return HTML(
            intro + table_html(rows, numbers=("planned", "fixed", "still open", "% complete now", "% done now"))
        )

    def warnings(self) -> HTML:
        rows = warning_rows(
            self.events,
            list(self.steps_frame.loc[self.steps_frame["outcome"] == Outcome.SUCCEEDED_WITHOUT_DATA, "step"]),
        )
        if not rows:
            return HTML(note_html("No warnings: every step that exited 0 left rows in its dates."))
        return HTML(table_html(rows))

    def logs(self) -> HTML:
        frame = self.attempts[self.attempts["attempt"] > 0]
        rows = [
            {
                "step": r.step,
                "attempt": r.attempt,
                "outcome": r.outcome,
                "log": r.log,
                "still there": "yes" if r.log and Path(r.log).exists() else "no",
            }
            for r in frame.itertuples()
        ]
        note = note_html(
            "Each attempt's full output. Paths are as the runner wrote them, relative to where it was started."
        )
        return HTML(
            note + table_html(rows, columns=["step", "attempt", "outcome", "log", "still there"], numbers=("attempt",))
        )


def _spec_for(plan: Plan, journal: Path) -> PipelineSpec:
    from backfill_kit.spec.load import load_spec

    recorded = Path(plan.spec_path)
    for candidate in (recorded, journal.parent / recorded.name, journal.parent.parent / recorded.name):
        if candidate.is_file():
            return load_spec(candidate)
    return load_spec(recorded)  # raises the toolkit's own message naming the missing file


_STATUSES = frozenset(str(s) for s in Status)  # "not validated" is none of them


def before_after_rows(plan: Plan, after: Validation) -> list[dict[str, Any]]:
    """Per table: the plan's causes (before) and the statuses of the same table-dates now."""
    now = {(c.table, c.date): str(c.status) for c in after.cells}
    summary = {s.table: s for s in after.summary()}
    rows = []
    for table in dict.fromkeys(s.table for s in plan.steps):
        steps = [s for s in plan.steps if s.table == table]
        before: dict[str, int] = {}
        for step in steps:
            for cause, n in step.causes.items():
                before[cause] = before.get(cause, 0) + n
        statuses: dict[str, int] = {}
        for d in (d for s in steps for d in s.dates):
            key = now.get((table, d), "not validated")
            statuses[key] = statuses.get(key, 0) + 1
        fixed = cell_counts({Status(k): n for k, n in statuses.items() if k in _STATUSES}).done  # as everywhere
        planned = sum(statuses.values())
        rows.append(
            {
                "table": table,
                "phase": steps[0].phase,
                "planned": planned,
                "before": ", ".join(f"{k} {v}" for k, v in sorted(before.items())),
                "after": ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
                "fixed": fixed,
                "still open": planned - fixed,
                "% complete now": round(summary[table].percent_complete, 1) if table in summary else None,
                "% done now": round(summary[table].percent_done, 1) if table in summary else None,
            }
        )
    return rows


def warning_rows(events: Sequence[dict[str, Any]], without_data: Sequence[str]) -> list[dict[str, str]]:
    """Steps that exited 0 yet left no rows, the run's own warnings, and journal repairs."""
    rows = [
        {"step": s, "warning": "succeeded_without_data: exited 0 but left every one of its dates without rows"}
        for s in without_data
    ]
    for event in events:
        if event.get("event") == Event.RUN_FINISHED:
            rows += [{"step": "", "warning": str(w)} for w in event.get("warnings") or []]
        elif event.get("event") == Event.JOURNAL_REPAIRED:
            rows.append(
                {
                    "step": "",
                    "warning": f"journal repaired after a crash: a torn last line of "
                    f"{event.get('dropped_bytes')} bytes was dropped",
                }
            )
    return list({(r["step"], r["warning"]): r for r in rows}.values())


def _unfinished(working: bool) -> str:
    return "running (a runner is at work)" if working else "interrupted (no runner at work, no run_finished event)"


def _wall_seconds(events: Sequence[dict[str, Any]]) -> float | None:
    times = [moment for e in events if (moment := event_time(e)) is not None]
    return (max(times) - min(times)).total_seconds() if times else None
