"""The reports' figures, and how a report shows them.

Every text that comes from the warehouse or a log (table names, errors, paths) is HTML-escaped
before it enters a figure: plotly draws hover labels from a subset of HTML, so an error message
containing `<script>` must arrive as `&lt;script&gt;` to be shown as text. A figure's data
travels gzipped and base64-encoded inside its `<script>` element, which nothing in it can end.

Under papermill, plotly's default renderer emits JSON only and the exported HTML then shows
empty cells without any error. So the renderer is never left to plotly: a report shows each
figure through `ReportFigure`, whose HTML is a div and the script that draws it with the
plotly.js that `plotly_js_html` embeds once per report (the cartesian partial bundle, vendored
in `backfill_kit/vendor/`). Nothing is fetched from the network.

Figures are plain plotly.js data (dicts; numbers as typed arrays), written straight to JSON:
a report builds each figure once and never edits it, and going through plotly.py's validation,
deep copies and renderer registry (which imports nbformat and jsonschema) would take longer
than the rest of the report. `plotly.graph_objects.Figure(spec)` makes an editable figure.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import sys
import uuid
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from backfill_kit.common.status import Status
from backfill_kit.running.journal import UNFINISHED, Outcome
from backfill_kit.validation.summaries import readable_error
from backfill_kit.validation.validator import Cell

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "OUTCOME_COLORS",
    "PLOTLY_JS",
    "STATUS_COLORS",
    "STATUS_ORDER",
    "ReportFigure",
    "coverage_heatmap",
    "plotly_js",
    "plotly_js_html",
    "season_bars",
    "timeline",
    "typed_array",
]

STATUS_ORDER = (
    Status.COMPLETE,
    Status.NO_DATA,
    Status.BOOTSTRAP,
    Status.PARTIAL,
    Status.RUNNING,
    Status.NEVER_RAN,
    Status.FAILED,
    Status.STALE,
    Status.LOST,
)
STATUS_COLORS = {
    Status.COMPLETE: "#2e7d32",
    Status.NO_DATA: "#80cbc4",
    Status.BOOTSTRAP: "#cfd8dc",
    Status.PARTIAL: "#fbc02d",
    Status.RUNNING: "#1e88e5",
    Status.NEVER_RAN: "#8e24aa",
    Status.FAILED: "#d32f2f",
    Status.STALE: "#ef6c00",
    Status.LOST: "#5d4037",
}
OUTCOME_COLORS = {
    Outcome.SUCCEEDED: "#2e7d32",
    Outcome.SUCCEEDED_WITHOUT_DATA: "#fbc02d",
    Outcome.RETRYING: "#90caf9",
    Outcome.FAILED: "#d32f2f",
    Outcome.TIMED_OUT: "#ef6c00",
    Outcome.INTERRUPTED: "#5d4037",
    Outcome.SKIPPED: "#b0bec5",
    Outcome.RECHECK_FAILED: "#ffb74d",
    UNFINISHED: "#8e24aa",
}
CONFIG = {"displaylogo": False, "responsive": True}
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


# --- showing a figure ----------------------------------------------------------------------


@dataclass
class ReportFigure:
    """A figure as a report shows it: an HTML div drawn by the report's one plotly.js.
    `spec` is the figure as plotly.js data and layout."""

    spec: dict[str, Any]
    div_id: str = field(default_factory=lambda: f"bk-{uuid.uuid4().hex[:12]}")

    def to_html(self) -> str:
        height = self.spec.get("layout", {}).get("height", 450)
        data = base64.b64encode(gzip.compress(_script_json(self.spec.get("data", [])).encode(), mtime=0)).decode(
            "ascii"
        )
        args = ", ".join(_script_json(x) for x in (self.spec.get("layout", {}), CONFIG))
        return (
            f'<div id="{self.div_id}" class="plotly-graph-div bk-figure" style="height:{height}px; width:100%;"></div>'
            f'<script type="text/javascript">bkPlot("{self.div_id}", "{data}", {args});</script>'
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` can end it or open a comment."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# plotly.js's cartesian partial bundle: every trace type the reports draw, a third of the full
# bundle's size. Vendored unchanged with its licence; see vendor/README.md.
PLOTLY_JS = "plotly-cartesian-4.1.1.min.js"

# Draws a figure from its gzipped JSON (a four-season heatmap's hover texts shrink from 600 kB
# to 90 kB); `bkFigures` holds every figure's promise, so a reader (or a test) can wait for all.
_DRAW_JS = """window.bkFigures = [];
window.bkPlot = function (id, gzipped, layout, config) {
  var bytes = Uint8Array.from(atob(gzipped), function (c) { return c.charCodeAt(0); });
  var json = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  var drawn = new Response(json).json()
    .then(function (data) { return Plotly.newPlot(id, data, layout, config); })
    .catch(function (error) { console.error("figure " + id + " could not be drawn: " + error); });
  window.bkFigures.push(drawn);
};"""


@cache
def plotly_js() -> str:
    """The vendored plotly.js bundle: it sets the global `Plotly`."""
    from importlib.resources import files

    return files("backfill_kit.vendor").joinpath(PLOTLY_JS).read_text(encoding="utf-8")


def plotly_js_html() -> str:
    """plotly.js inline, once per report; the figures after it call the global `Plotly`."""
    bundle = plotly_js()
    return (
        '<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};</script>\n'
        f'<script type="text/javascript">{bundle}</script>\n'
        f'<script type="text/javascript">{_DRAW_JS}</script>'
    )


def typed_array(values: array[Any], shape: Sequence[int]) -> dict[str, str]:
    """A plotly.js typed array (dtype, base64 of the little-endian bytes, shape): a fraction of
    a JSON list's size. The stdlib's `array` is enough: the report never loads numpy."""
    if sys.byteorder != "little":
        values = array(values.typecode, values)
        values.byteswap()
    return {
        "dtype": _TYPED[values.typecode],
        "bdata": base64.b64encode(values.tobytes()).decode("ascii"),
        "shape": ", ".join(str(n) for n in shape),
    }


_TYPED = {"b": "i1", "B": "u1", "h": "i2", "H": "u2", "i": "i4", "I": "u4", "f": "f4", "d": "f8"}


def _int_array(values: list[int]) -> array[Any]:
    """The narrowest typed array that holds these integers (plotly.js has no 64-bit ints)."""
    low, high = min(values, default=0), max(values, default=0)
    for code, bound in (("b", 2**7), ("h", 2**15), ("i", 2**31)):
        if -bound <= low and high < bound:
            return array(code, values)
    return array("d", values)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=False)


def _wrap(text: str, width: int = 90) -> str:
    """Text broken into hover-label lines, then escaped line by line (never inside an entity)."""
    import textwrap

    return "<br>".join(_esc(line) for line in textwrap.wrap(text, width, break_long_words=True) or [""])


# --- coverage ------------------------------------------------------------------------------


def coverage_heatmap(
    cells: Sequence[Cell],
    tables: Sequence[str],
    phases: Sequence[str],
    dates: Sequence[date],
    *,
    season_of: Mapping[date, str | None],
    title: str = "",
) -> dict[str, Any]:
    """Tables (grouped by phase: `phases[i]` is the phase of `tables[i]`) by expected dates,
    coloured by status. A cell's hover says its status, rows against the minimum, attempts,
    the latest run and its last error. Table-dates without a cell (filtered out) stay blank.
    A dotted line marks each season's start, where the calendar (`season_of`) says it is.

    A four-season heatmap has 17,000 cells and the report embeds every hover text, so the
    arrays are compact: numbers as typed arrays, per-cell strings short and ASCII."""
    t_index = {t: i for i, t in enumerate(tables)}
    d_index = {d: i for i, d in enumerate(dates)}
    width, size = len(dates), len(tables) * len(dates)
    shown = [c for c in cells if c.table in t_index and c.date in d_index]
    codes = {s: i for i, s in enumerate(STATUS_ORDER)}
    z = array("b", [0]) * size if len(shown) == size else array("f", [math.nan]) * size  # NaN: filtered out
    numbers, status, latest = [0] * (4 * size), [""] * size, [""] * size
    for c in shown:
        k = t_index[c.table] * width + d_index[c.date]
        z[k] = codes[c.status]
        numbers[4 * k : 4 * k + 4] = (c.rows, c.expected_rows, c.attempts, c.failures)
        status[k], latest[k] = str(c.status), _latest_text(c)
    rows = range(0, size, width or 1)
    trace = {
        "type": "heatmap",
        "z": typed_array(z, (len(tables), width)),
        "x": [d.isoformat() for d in dates],
        "y": [list(phases), list(tables)],
        "customdata": typed_array(_int_array(numbers), (len(tables), width, 4)),
        "text": [status[i : i + width] for i in rows],
        "hovertext": [latest[i : i + width] for i in rows],
        "hoverongaps": False,
        "zmin": -0.5,
        "zmax": len(STATUS_ORDER) - 0.5,
        "colorscale": _discrete_scale(),
        "colorbar": {
            "tickvals": list(range(len(STATUS_ORDER))),
            "ticktext": [str(s) for s in STATUS_ORDER],
            "title": {"text": "status"},
            "thickness": 14,
        },
        "hovertemplate": (
            "<b>%{y}</b>  %{x}<br>status: %{text}<br>rows: %{customdata[0]} "
            "(needs %{customdata[1]})<br>attempts: %{customdata[2]}, failed %{customdata[3]}"
            "<br>latest run: %{hovertext}<extra></extra>"
        ),
        "ygap": 1,
    }
    layout: dict[str, Any] = {
        "height": 160 + 22 * len(tables),
        "font": FONT,
        "plot_bgcolor": "white",
        "margin": {"l": 10, "r": 10, "t": 60 if title else 30, "b": 40},
        "yaxis": {"autorange": "reversed", "automargin": True},
        "shapes": _season_lines(dates, season_of),
        "xaxis": {"type": "category", **_date_ticks(dates), "tickangle": 0},
    }
    if title:
        layout["title"] = {"text": _esc(title)}
    return {"data": [trace], "layout": layout}


def _latest_text(cell: Cell) -> str:
    """The latest run of a cell and its last error, short and plain ASCII: non-ASCII costs six
    bytes per character in the embedded JSON, and this is written once per cell."""
    if cell.latest_status is None:
        text = "none"
    else:
        text = _esc(cell.latest_status)
        if cell.latest_started_at is not None:
            text += cell.latest_started_at.strftime(" %Y-%m-%d")
        if cell.latest_seconds is not None:
            text += f" ({cell.latest_seconds:.0f} s)"
    if cell.last_error:
        text += "<br>last error: " + _wrap(readable_error(cell.last_error) or "")
    if cell.fallback:
        text += "<br>covered by fallback " + _esc(cell.fallback)
    for warning in cell.warnings:
        text += "<br>warning: " + _esc(warning)
    return text


def _discrete_scale() -> list[list[Any]]:
    n = len(STATUS_ORDER)
    scale: list[list[Any]] = []
    for i, status in enumerate(STATUS_ORDER):
        scale += [[i / n, STATUS_COLORS[status]], [(i + 1) / n, STATUS_COLORS[status]]]
    return scale


def _month_ticks(dates: Sequence[date]) -> list[str]:
    """First expected dates of months, at most about 8 of them, so that labels never overlap
    on a plot 700 px wide (a notebook beside JupyterLab's file browser): 832 dates cannot all
    be labelled, and a season's last month sits next to the next's first."""
    spacing = max(1, len(dates) // 8)
    ticks: list[str] = []
    last_index, last_month = -spacing, None
    for i, d in enumerate(dates):
        if (d.year, d.month) != last_month and i - last_index >= spacing:
            ticks.append(d.isoformat())
            last_index = i
        last_month = (d.year, d.month)
    return ticks


def _date_ticks(dates: Sequence[date]) -> dict[str, list[str]]:
    """The x axis's ticks: months over a long range; days, about 8 of them, over one that
    spans fewer than three months (27 dates of January had one tick, 'Jan 2025')."""
    if len({(d.year, d.month) for d in dates}) >= 3:
        ticks = _month_ticks(dates)
        return {"tickvals": ticks, "ticktext": [date.fromisoformat(t).strftime("%b %Y") for t in ticks]}
    chosen = list(dates[:: max(1, -(-len(dates) // 8))])
    labels = [
        f"{d:%b} {d.day}" + (f" {d.year}" if i == 0 or d.year != chosen[i - 1].year else "")
        for i, d in enumerate(chosen)
    ]
    return {"tickvals": [d.isoformat() for d in chosen], "ticktext": labels}


def _season_lines(dates: Sequence[date], season_of: Mapping[date, str | None]) -> list[dict[str, Any]]:
    """A dotted vertical line where each season after the first starts, by the calendar's
    seasons: never where the cells shown (filtered to a few statuses) leave dates blank."""
    lines = []
    for i, (previous, current) in enumerate(pairwise(dates), start=1):
        if season_of.get(previous) != season_of.get(current):
            x = i - 0.5
            lines.append(
                {
                    "type": "line",
                    "xref": "x",
                    "yref": "paper",
                    "x0": x,
                    "x1": x,
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": "#37474f", "width": 1, "dash": "dot"},
                }
            )
    return lines


def season_bars(
    counts: dict[str, dict[str, Counter[str]]], tables: Sequence[str], phases: Sequence[str]
) -> dict[str, Any]:
    """Per season (one panel each, side by side, sharing the table axis) and table, stacked
    bars of expected dates by status. `counts` is `summaries.season_counts` output."""
    n = max(1, len(counts))
    y = [list(phases), list(tables)]
    traces: list[dict[str, Any]] = []
    shown: set[Status] = set()  # one legend entry per status, whichever season has it first
    layout: dict[str, Any] = {"annotations": []}
    for i, (season, per_table) in enumerate(counts.items()):
        layout[f"xaxis{i + 1 if i else ''}"] = {"domain": [i / n + 0.006, (i + 1) / n - 0.006], "anchor": "y"}
        layout["annotations"].append(
            {
                "text": f"<b>{_esc(season)}</b>",
                "x": (i + 0.5) / n,
                "y": 1.0,
                "xref": "paper",
                "yref": "paper",
                "yanchor": "bottom",
                "showarrow": False,
            }
        )
        for status in STATUS_ORDER:
            x = [per_table.get(t, Counter())[str(status)] for t in tables]
            if any(x):
                traces.append(_season_trace(season, status, x, y, "x" if i == 0 else f"x{i + 1}", status not in shown))
                shown.add(status)
    layout.update(
        barmode="stack",
        height=160 + 22 * len(tables),
        font=FONT,
        plot_bgcolor="white",
        bargap=0.25,
        margin={"l": 10, "r": 10, "t": 40, "b": 30},
        legend={"orientation": "h", "y": -0.06},
        yaxis={"autorange": "reversed", "automargin": True},
    )
    return {"data": traces, "layout": layout}


def _season_trace(
    season: str, status: Status, x: list[int], y: list[list[str]], axis: str, legend: bool
) -> dict[str, Any]:
    return {
        "type": "bar",
        "orientation": "h",
        "x": x,
        "y": y,
        "xaxis": axis,
        "yaxis": "y",
        "name": str(status),
        "legendgroup": str(status),
        "showlegend": legend,
        "marker": {"color": STATUS_COLORS[status]},
        "hovertemplate": f"<b>%{{y}}</b><br>{_esc(season)}: %{{x}} dates {status}<extra></extra>",
    }


# --- execution -----------------------------------------------------------------------------


def timeline(attempts: pd.DataFrame) -> dict[str, Any]:
    """A Gantt chart of every attempt: one row per step, grouped by stage, coloured by
    outcome; the hover gives the attempt, exit code, duration, retries and log file.
    `attempts` is `frames.attempts_frame` output."""
    import pandas as pd

    layout: dict[str, Any] = {"font": FONT, "plot_bgcolor": "white", "margin": {"l": 10, "r": 10, "t": 30, "b": 40}}
    if attempts.empty:
        layout.update(height=200, annotations=[{"text": "no step ran", "showarrow": False}])
        return {"data": [], "layout": layout}
    rows = attempts.assign(
        stage_label=[
            f"{int(s)} {p}" if pd.notna(s) else "-" for s, p in zip(attempts["stage"], attempts["phase"], strict=True)
        ],
        end=attempts["finished"].fillna(attempts["started"]),
    )
    span_ms = max((rows["end"].max() - rows["started"].min()).total_seconds() * 1000, 1000.0)
    traces = []
    for outcome, part in rows.groupby("outcome", sort=False):
        length = ((part["end"] - part["started"]).dt.total_seconds() * 1000).tolist()
        traces.append(
            {
                "type": "bar",
                "orientation": "h",
                "base": [t.isoformat() for t in part["started"]],
                "x": [max(x, span_ms / 400) for x in length],  # a skipped step still shows, as a sliver
                "y": [part["stage_label"].tolist(), [_esc(s) for s in part["step"]]],
                "name": str(outcome),
                "marker": {"color": OUTCOME_COLORS.get(str(outcome), "#757575")},
                "customdata": [_attempt_hover(r) for r in part.itertuples(index=False)],
                "hovertemplate": "%{customdata}<extra></extra>",
            }
        )
    layout.update(
        barmode="overlay",
        height=140 + 20 * rows["step"].nunique(),
        xaxis={"type": "date", "title": {"text": "time (UTC)"}},
        yaxis={"autorange": "reversed", "automargin": True},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
    )
    return {"data": traces, "layout": layout}


def _attempt_hover(row: Any) -> str:
    lines = [f"<b>{_esc(row.step)}</b>", f"attempt {row.attempt}: {_esc(row.outcome)}"]
    if _known(row.exit_code):
        lines.append(f"exit code {row.exit_code}")
    if _known(row.seconds):
        lines.append(f"{row.seconds:.1f} s")
    if _known(row.retries) and row.retries:
        lines.append(f"retries before it: {row.retries}")
    if _known(row.log) and row.log:
        lines.append("log: " + _esc(row.log))
    return "<br>".join(lines)


def _known(value: object) -> bool:
    import pandas as pd

    return value is not None and not pd.isna(value)
