"""Audit reports as people meet them: the notebooks, the CLI that renders them to HTML, the
HTML in a real browser with no network, and the explorer's widgets driven from Python."""

from __future__ import annotations

import ast
import base64
import itertools
import json
import re
import subprocess
import sys
from datetime import date, datetime
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from browser import Page, artifacts_dir, require_chromium
from click.testing import CliRunner
from conftest import MiniWarehouse, copy_demo

from backfill_kit.cli.commands import cli
from backfill_kit.plan import build_plan, load_plan
from backfill_kit.reports.render import execute, notebook_path
from backfill_kit.running.journal import read_journal
from backfill_kit.running.runner import Runner, RunOptions, warehouse_checker
from backfill_kit.running.steps import journal_run
from backfill_kit.spec.load import load_spec
from backfill_kit.validation.validator import validate

if TYPE_CHECKING:
    import numpy as np

# nbformat, papermill and numpy are imported inside the tests that use them: collecting this
# module stays quick for a run that selects none of them.
ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PWN = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
START, END = "2024-01-01", "2024-03-31"
DAYS = [date(2024, 1, 1), *(date(2024, 1, d) for d in range(10, 15)), *(date(2024, 3, d) for d in range(5, 8))]
FAILED = ("props", date(2024, 1, 10))  # the cell whose run failed with PWN as its error


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def coverage_report_of(spec: Path, start: str = START, end: str = END) -> list[str]:
    """The arguments of `backfill-kit report coverage` on `spec` from `start` to `end`."""
    return ["report", "coverage", "--spec", str(spec), "--start", start, "--end", end]


def build_mini(directory: Path) -> Path:
    """Every kind of cell on a few dates: complete, failed (with a hostile error text), no data
    covered by a fallback, stale, lost, never ran, bootstrap."""
    m = MiniWarehouse(directory)
    for d in DAYS:
        m.games(d, 2).rows("raw.boxscore", d, 4).run("BoxscoreProcessor", d, "success", 4)
    m.run("PropsProcessor", FAILED[1], "failed", error=PWN)
    m.run("PropsProcessor", date(2024, 1, 11), "success", 0).rows("raw.backup_props", date(2024, 1, 11), 3)
    for d in DAYS[1:4]:
        m.rows("analytics.summary", d, 5).run("SummaryProcessor", d, "success", 5)
    m.run("SummaryProcessor", date(2024, 1, 13), "running", started=datetime(2024, 1, 14), finished=False)
    m.run("SummaryProcessor", date(2024, 1, 14), "success", 50)  # rows written, since gone: lost
    return m.close()


@pytest.fixture(scope="module")
def mini_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mini(tmp_path_factory.mktemp("mini"))


@pytest.fixture(scope="module")
def coverage_report(mini_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("reports")
    result = invoke(*coverage_report_of(mini_spec), "--out-dir", str(out))
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines())
    return Path(lines["report"].strip()), Path(lines["notebook"].strip())


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of a real plan: one job fails with a hostile log, one succeeds without data,
    the step downstream of the failure is skipped."""
    spec_path = build_mini(tmp_path_factory.mktemp("run"))
    hostile = PWN.replace('"', "'")
    failing = (
        "{id: summary, table: analytics.summary, processor: SummaryProcessor, depends_on: [boxscore], "
        'job: {argv: ["{python}", "-c", "import sys; print(sys.argv[1]); sys.exit(3)", "'
        + hostile
        + '", "{start}", "{end}"]}}'
    )
    spec_path.write_text(
        spec_path.read_text().replace(
            "{id: summary, table: analytics.summary, processor: SummaryProcessor, depends_on: [boxscore]}", failing
        )
    )
    spec = load_spec(spec_path)
    plan = build_plan(validate(spec, date.fromisoformat(START), date.fromisoformat(END)))
    plan_path = spec_path.parent / "runs" / "plan.json"
    plan.write(plan_path)
    result = Runner(
        plan, plan_path, RunOptions(backoff_seconds=0, keep_going=True), checker=warehouse_checker(plan)
    ).run()
    assert result.outcome == "failed"
    return plan_path.with_name("plan.journal.jsonl")


@pytest.fixture(scope="module")
def execution_report(journal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    result = invoke("report", "execution", "--journal", str(journal), "--out-dir", str(out))
    assert result.exit_code == 0, result.output
    return Path(result.output.splitlines()[0].split(":", 1)[1].strip())


# --- the notebooks as committed ------------------------------------------------------------


def test_every_notebook_is_there_and_found_by_the_package():
    assert [p.name for p in NOTEBOOKS] == ["coverage_audit.ipynb", "execution_log.ipynb", "explore.ipynb"]
    for name in ("coverage", "execution", "explore"):
        assert notebook_path(name).parent == ROOT / "notebooks"


def code_cells(path: Path) -> list[dict[str, Any]]:
    """A committed notebook's code cells, read as the JSON it is (importing nbformat takes seconds)."""
    cells = json.loads(path.read_text())["cells"]
    return [{**c, "source": "".join(c["source"])} for c in cells if c["cell_type"] == "code"]


def test_notebooks_are_committed_without_outputs_or_execution_counts():
    for path in NOTEBOOKS:
        for cell in code_cells(path):
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: clear its outputs"


# Whatever a notebook does beyond calling the package and displaying belongs in the package.
LOGIC = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.For,
    ast.While,
    ast.If,
    ast.IfExp,
    ast.Try,
    ast.With,
    ast.comprehension,
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_cells_hold_parameters_calls_and_display_only(path):
    cells = code_cells(path)
    assert "parameters" in cells[0]["metadata"].get("tags", [])
    for cell in cells[1:]:
        source = cell["source"]
        tree = ast.parse(source)
        assert not [n for n in ast.walk(tree) if isinstance(n, LOGIC)], source
        # No paths or secrets outside the parameters cell: no string literal at all.
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)], source
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        assert all(isinstance(n, ast.ImportFrom) and n.module == "backfill_kit" for n in imports), source


PARAMETERS = {
    "coverage_audit.ipynb": {
        "spec": '"demo/nba_props.yaml"',
        "start": '"2021-10-19"',
        "end": '"2025-06-22"',
        "cells_file": '""',
    },
    "execution_log.ipynb": {"journal": '"demo/runs/plan.journal.jsonl"'},
    "explore.ipynb": {"spec": '"demo/nba_props.yaml"', "start": '"2021-10-19"', "end": '"2025-06-22"'},
}


@pytest.mark.slow  # papermill's import alone takes seconds
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_parameters_are_pinned(path):
    import papermill

    found = papermill.inspect_notebook(path)
    assert {name: p["default"] for name, p in found.items()} == PARAMETERS[path.name]
    assert all(p["inferred_type_name"] == "str" and p["help"] for p in found.values())


def test_installs_ship_the_notebooks():
    import tomllib

    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files == {"share/backfill-kit/notebooks": ["notebooks/*.ipynb"]}


# --- rendering through the CLI -------------------------------------------------------------


@pytest.mark.slow  # a papermill kernel
def test_the_recommended_plan_goes_beside_the_spec(coverage_report, mini_spec):
    """Where `backfill` keeps its plans and estimates look for journals, not in whatever folder
    the reader happens to be in."""
    text = unescape(re.sub(r"<[^>]+>", "", coverage_report[0].read_text()))  # as the reader sees it
    out = mini_spec.parent / "runs" / "plan.json"
    assert f"--out {out}" in text and f"backfill-kit run --plan {out}" in text


@pytest.mark.slow  # a papermill kernel
def test_coverage_report_is_one_self_contained_html_with_its_notebook_and_the_index(coverage_report, mini_spec):
    html_path, notebook = coverage_report
    assert html_path.name.startswith(f"coverage_mini_{START}_{END}_") and html_path.suffix == ".html"
    assert notebook == html_path.with_suffix(".ipynb") and notebook.exists()
    html = html_path.read_text()
    assert html.count(plotly_js_start()) == 1  # plotly.js embedded exactly once
    assert "<script src" not in html and "<link" not in html  # nothing to fetch
    assert "report.coverage(" not in html and "report.setup()" not in html  # code cells hidden
    assert "<title>Coverage audit: mini, 2024-01-01 .. 2024-03-31</title>" in html
    import nbformat

    executed = nbformat.read(notebook, as_version=4)
    cells_file = str(html_path.with_suffix(".cells.json"))  # its cells, and what changed since the previous
    assert executed.metadata.papermill.parameters == {
        "spec": str(mini_spec),
        "start": START,
        "end": END,
        "cells_file": cells_file,
    }
    index = (html_path.parent / "index.html").read_text()
    assert f'href="{html_path.name}"' in index and f'href="{notebook.name}"' in index
    assert "mini: 2024-01-01 .. 2024-03-31" in index


@pytest.mark.slow  # a papermill kernel
def test_coverage_report_lists_no_data_cells_with_the_fallback_that_covers_them(coverage_report):
    html = coverage_report[0].read_text()
    assert "No data, and the fallback that covers it" in html
    section = html.split("No data, and the fallback that covers it", 1)[1]
    assert "<td>props</td>" in section and "backup_props (1)" in section  # 2024-01-11: nothing from props
    assert "complete: rows present" in html and "done: complete, or genuinely no data" in html


@pytest.mark.slow  # a papermill kernel
def test_coverage_report_escapes_an_error_text_that_holds_html(coverage_report):
    html = coverage_report[0].read_text()
    assert PWN not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html  # in the gap list, as text


@pytest.mark.slow  # a papermill kernel
def test_the_index_lists_every_report_newest_first(mini_spec, tmp_path):
    for _ in range(2):
        assert invoke(*coverage_report_of(mini_spec, end="2024-01-31"), "--out-dir", str(tmp_path)).exit_code == 0
    reports = sorted(p.name for p in tmp_path.glob("coverage_*.html"))
    assert len(reports) == 2  # two in the same second keep distinct names
    index = (tmp_path / "index.html").read_text()
    assert all(f'href="{name}"' in index for name in reports)
    assert "2 reports, newest first" in index


@pytest.mark.slow  # a papermill kernel
def test_the_index_tells_reports_before_and_after_a_backfill_by_their_headlines(tmp_path):
    spec_path = build_mini(tmp_path)
    out = tmp_path / "reports"
    coverage = (*coverage_report_of(spec_path), "--out-dir", str(out))
    assert invoke(*coverage).exit_code == 0
    plan_path = tmp_path / "runs" / "plan.json"
    build_plan(validate(load_spec(spec_path), date.fromisoformat(START), date.fromisoformat(END))).write(plan_path)
    result = Runner(load_plan(plan_path), plan_path, RunOptions(backoff_seconds=0, keep_going=True)).run()
    assert (
        invoke(
            "report", "execution", "--journal", str(plan_path.with_name("plan.journal.jsonl")), "--out-dir", str(out)
        ).exit_code
        == 0
    )
    steps = journal_run(read_journal(result.journal).events).counts(working=False).text()
    assert invoke(*coverage).exit_code == 0

    rows = list((out / "index.html").read_text().split("<tr>")[2:])
    assert len(rows) == 3  # newest first: after, the execution log, before
    assert "coverage" in rows[0] and "after the backfill that finished" in rows[0]
    assert "execution" in rows[1] and f"{result.outcome}: {steps}" in rows[1]  # as the runner counts them
    assert "coverage" in rows[2] and "before the backfill that finished" in rows[2]
    headline = re.compile(r"[0-9.]+% complete, [0-9.]+% done, [0-9,]+ cells need work")
    assert headline.search(rows[0]) and headline.search(rows[2])  # the mini jobs write nothing: the same numbers


@pytest.mark.slow  # a papermill kernel
def test_execution_reports_before_and_after_counts_complete_and_done_side_by_side(execution_report):
    html = execution_report.read_text()
    section = html.split("Coverage before and after", 1)[1]
    assert "% complete now" in section and "% done now" in section


@pytest.mark.slow  # a papermill kernel
def test_execution_report_shows_every_step_its_outcome_and_log(execution_report, journal):
    html = execution_report.read_text()
    assert execution_report.name.startswith(f"execution_plan_{START}_{END}_")  # named by the plan's range
    for text in (
        "succeeded_without_data",
        "failed",
        "skipped",
        "Coverage before and after",
        "props:2024-01-01..2024-01-10",
        "summary:2024-01-13..2024-03-07",
        str(journal.parent / "plan.logs"),
    ):
        assert text in html, text
    assert PWN not in html and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html  # the log tail, as text


BAD_INPUT = {
    "missing journal": (
        ["report", "execution", "--journal", "no/such/plan.journal.jsonl"],
        "the journal no/such/plan.journal.jsonl does not exist",
    ),
    "reversed range": (
        ["report", "coverage", "--spec", "{spec}", "--start", "2024-02-01", "--end", "2024-01-01"],
        "the date range is reversed",
    ),
    "missing spec": (["report", "coverage", "--spec", "no/such.yaml", "--start", START, "--end", END], "no/such.yaml"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_message_and_exit_2_before_any_kernel_starts(case, mini_spec, tmp_path):
    args, message = BAD_INPUT[case]
    result = invoke(*[a.format(spec=mini_spec) for a in args], "--out-dir", str(tmp_path))
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_a_corrupt_journal_is_one_message_and_exit_2(tmp_path):
    journal = tmp_path / "plan.journal.jsonl"
    journal.write_text(
        '{"event": "run_started", "time": "2024-01-01T00:00:00+00:00", "plan": "p.json", '
        '"plan_sha": "x", "steps": 1}\nnot json\n'
    )
    result = invoke("report", "execution", "--journal", str(journal), "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 2 and "plan.journal.jsonl:2: the journal line is corrupt" in result.output


@pytest.mark.slow  # a papermill kernel
def test_a_toolkit_error_inside_the_notebook_keeps_its_message(mini_spec, tmp_path):
    spec = tmp_path / "mini.yaml"
    spec.write_text(
        mini_spec.read_text()
        .replace("table: raw.props,", "table: raw.odds_props,")
        .replace("path: mini.duckdb", f"path: {mini_spec.parent / 'mini.duckdb'}")
    )
    result = invoke(*coverage_report_of(spec), "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "table raw.odds_props does not exist in the warehouse" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # no notebook left behind: the message says it all


@pytest.mark.slow  # a papermill kernel
def test_a_scheduled_papermill_run_of_a_broken_spec_shows_the_message_not_a_traceback(tmp_path):
    """papermill run directly, as a scheduled job does: the failed cell shows what to fix, as
    the CLI says it, not thirty lines of the toolkit's frames (JupyterLab shows the same)."""
    import papermill

    from backfill_kit.reports.render import notebook_path

    spec = tmp_path / "pipeline.yaml"
    spec.write_text("name: x\nwarehouse: {backend: duckdb, path: x.duckdb}\nnmae: typo\n")
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(
            str(notebook_path("coverage")),
            str(tmp_path / "out.ipynb"),
            parameters={"spec": str(spec), "start": START, "end": END},
            progress_bar=False,
            cwd=str(tmp_path),
        )
    assert info.value.ename == "SpecError"
    assert info.value.traceback == [f"SpecError: {info.value.evalue}"]
    assert f"{spec}:3: nmae: unknown field" in info.value.evalue


@pytest.mark.slow  # a papermill kernel
def test_two_reports_started_together_in_one_folder_do_not_cross(mini_spec, tmp_path):
    """Each kernel's sockets are its own (jupyter_client's default puts them in the working
    directory, where two kernels started at once pick the same ones); nothing is left there."""
    command = [
        sys.executable,
        "-c",
        "from backfill_kit.cli.commands import main; main()",
        *coverage_report_of(mini_spec),
    ]
    runs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    assert all(code == 0 for code, _, _ in results), results
    assert all("Traceback" not in err and "Invalid Signature" not in err for _, _, err in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]
    assert len(list((tmp_path / "reports").glob("coverage_*.html"))) == 2


@pytest.mark.slow  # a papermill kernel
def test_the_explore_notebook_runs_under_papermill(mini_spec, tmp_path):
    executed = execute(
        notebook_path("explore"), tmp_path / "explore.ipynb", {"spec": str(mini_spec), "start": START, "end": END}
    )
    last = executed.cells[-1].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in last)


# --- in a real browser, offline ------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


def figure_count(notebook: Path) -> int:
    import nbformat

    outputs = [o for c in nbformat.read(notebook, as_version=4).cells for o in c.get("outputs", [])]
    return sum('class="plotly-graph-div' in o.get("data", {}).get("text/html", "") for o in outputs)


DRAWN = (
    "[...document.querySelectorAll('.plotly-graph-div')]"
    ".filter(g => g.classList.contains('js-plotly-plot') && g._fullLayout && g.querySelector('.main-svg')).length"
)


def hover(figure: int, x: int, y: int) -> str:
    """Hover a point of a figure through plotly's own hover code; the label's text."""
    return (
        f"(() => {{ const gd = document.querySelectorAll('.js-plotly-plot')[{figure}];"
        f" Plotly.Fx.hover(gd, {{xval: {x}, yval: {y}}}); return gd.querySelector('.hoverlayer').textContent; }})()"
    )


def check_page(page: Page, html: Path, figures: int) -> None:
    """What every report must do when opened: no script error, nothing fetched, every figure drawn."""
    page.open(html)
    page.evaluate("Promise.all(window.bkFigures).then(() => true)")  # figures draw once their data is unpacked
    assert page.errors() == []
    assert [u for u in page.requests() if not u.startswith(("file:", "data:"))] == []
    assert figures > 0 and page.evaluate(DRAWN) == figures
    assert page.evaluate("window.__pwned") is None  # the hostile error text never ran


def keep_screenshot(page: Page, name: str) -> Path:
    shot = page.screenshot(artifacts_dir() / name)
    print(f"screenshot: {shot}")
    return shot


@pytest.mark.slow  # a papermill kernel and a browser
def test_coverage_report_draws_offline_and_shows_a_cell_in_its_hover(chromium, coverage_report):
    html, notebook = coverage_report
    page = Page(chromium)
    try:
        check_page(page, html, figure_count(notebook))
        tables = ["boxscore", "props", "backup_props", "summary", "cache"]
        label = page.evaluate(hover(0, DAYS.index(FAILED[1]), tables.index(FAILED[0])))
        assert "props  2024-01-10" in label and "status: failed" in label and "attempts: 1, failed 1" in label
        assert "last error: " + PWN[:60] in label  # shown as text, never as markup
        assert "<script>window.__pwned = 1</script>" in page.evaluate("document.body.innerText")  # the gap list
        assert keep_screenshot(page, "coverage_report_mini.png").stat().st_size > 10_000
    finally:
        page.close()


@pytest.mark.slow  # a papermill kernel and a browser
def test_execution_report_draws_offline_and_its_timeline_hovers(chromium, execution_report):
    page = Page(chromium)
    try:
        check_page(page, execution_report, figure_count(execution_report.with_suffix(".ipynb")))
        bars = page.evaluate("document.querySelectorAll('.js-plotly-plot')[0].data.map(t => t.name)")
        assert {"failed", "succeeded_without_data", "skipped"} <= set(bars)
        assert "<script>window.__pwned = 1</script>" in page.evaluate("document.body.innerText")  # a log tail
        keep_screenshot(page, "execution_report_mini.png")
    finally:
        page.close()


# Each word of the commands a page shows (the plan's block, each step's command), and how many
# lines the page lays it out on; and how many lines each command takes.
COMMAND_LINES = """(() => {
  const blocks = [...document.querySelectorAll('pre, .bk-cmds')].filter(b => b.textContent.includes('backfill-kit'));
  const words = [], commands = [];
  for (const block of blocks) {
    const walker = document.createTreeWalker(block, NodeFilter.SHOW_TEXT);
    const tops = new Set();
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange(); range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        words.push([m[0], lines.size]); lines.forEach(t => tops.add(t));
      }
    }
    commands.push(tops.size);
  }
  return [words, commands];
})()"""


@pytest.mark.slow  # a papermill kernel and a browser
def test_a_reports_commands_wrap_between_arguments_never_inside_one(chromium, coverage_report):
    """In a window too narrow for them, the plan's commands wrapped inside a flag or a path."""
    html, _ = coverage_report
    page = Page(chromium, width=520)
    try:
        page.open(html)
        words, blocks = page.evaluate(COMMAND_LINES)
        assert words and [w for w, lines in words if lines > 1] == []  # every word on one line
        assert max(blocks) > 1  # the long commands did wrap: between their arguments
    finally:
        page.close()


# --- the four-season demo ------------------------------------------------------------------

DEMO_FAILED = ("player_game_summary", date(2021, 10, 20))


@pytest.fixture(scope="module")
def demo_report(pristine_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    spec = copy_demo(pristine_demo, tmp_path_factory.mktemp("demo"))
    error = json.dumps([{"error_type": "ValueError", "error_message": PWN, "timestamp": "2021-10-21T07:00:00"}])
    with duckdb.connect(str(spec.with_suffix(".duckdb"))) as con:
        for status, finished, err in (("running", None, None), ("failed", datetime(2021, 10, 21, 7, 1), error)):
            con.execute(
                "INSERT INTO nba_reference.processor_run_history (processor_name, run_id, phase, data_date, "
                "status, started_at, processed_at, records_processed, errors) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    "PlayerGameSummaryProcessor",
                    "pwn-1",
                    "phase_3_analytics",
                    DEMO_FAILED[1],
                    status,
                    datetime(2021, 10, 21, 7),
                    finished,
                    0 if finished else None,
                    err,
                ],
            )
    out = tmp_path_factory.mktemp("reports")
    result = invoke(*coverage_report_of(spec, "2021-10-19", "2025-06-22"), "--out-dir", str(out))
    assert result.exit_code == 0, result.output
    html = Path(result.output.splitlines()[0].split(":", 1)[1].strip())
    return html, spec


def plotly_js_start() -> str:
    """The first lines of the plotly.js bundle the reports embed."""
    from importlib.resources import files

    from backfill_kit.reports.figures import PLOTLY_JS

    return files("backfill_kit.vendor").joinpath(PLOTLY_JS).read_text(encoding="utf-8")[:300]


def test_four_season_report_is_at_most_2_mb_with_plotly_js_once(demo_report):
    html = demo_report[0].read_text()
    assert len(html.encode()) <= 2_000_000, f"{len(html.encode()):,} bytes"
    assert html.count(plotly_js_start()) == 1


def test_four_season_report_draws_offline_and_escapes_the_planted_error(chromium, demo_report):
    html, spec = demo_report
    result = validate(load_spec(spec), date(2021, 10, 19), date(2025, 6, 22))
    row, column = list(result.tables).index(DEMO_FAILED[0]), [d.date for d in result.days].index(DEMO_FAILED[1])
    page = Page(chromium)
    try:
        check_page(page, html, figure_count(html.with_suffix(".ipynb")))
        label = page.evaluate(hover(0, column, row))
        assert "analytics - player_game_summary  2021-10-20" in label and "status: failed" in label
        assert "last error: ValueError: " + PWN[:50] in label
        keep_screenshot(page, "coverage_report_four_seasons.png")
    finally:
        page.close()


# --- the explorer, driven from Python ------------------------------------------------------


@pytest.fixture
def explorer(mini_spec):
    from backfill_kit.reports.explore import Explorer

    return Explorer(validate(load_spec(mini_spec), date.fromisoformat(START), date.fromisoformat(END)), "mini.yaml")


def heatmap_cells(figure: dict) -> tuple[list[str], list[str], np.ndarray]:
    import numpy as np

    trace = figure["data"][0]
    z = trace["z"]
    shape = tuple(int(n) for n in z["shape"].split(","))
    values = np.frombuffer(base64.b64decode(z["bdata"]), dtype={"i1": np.int8, "f4": np.float32}[z["dtype"]]).reshape(
        shape
    )
    return trace["y"][1], trace["x"], values


def test_explorer_starts_on_everything(explorer):
    import numpy as np

    tables, dates, z = heatmap_cells(explorer.figure)
    assert tables == ["boxscore", "props", "backup_props", "summary", "cache"]
    assert dates == [d.isoformat() for d in DAYS] and not np.isnan(z.astype(float)).any()
    assert "props" in explorer.gaps.value and "failed" in explorer.gaps.value
    assert explorer.heatmap.figure["data"][0]["type"] == "heatmap" and explorer.heatmap.figure["data"][0]["x"] == dates


def test_choosing_statuses_narrows_the_heatmap_and_the_gap_list(explorer):
    import numpy as np

    explorer.statuses.value = ("failed", "stale")
    _, dates, z = heatmap_cells(explorer.figure)
    assert int((~np.isnan(z)).sum()) == 2  # the failed props cell and the stale summary cell
    assert dates == ["2024-01-10", "2024-01-13"]  # only the dates with a cell to show: no slivers
    text = explorer.figure["data"][0]["text"]
    assert sorted(t for row in text for t in row if t) == ["failed", "stale"]
    assert "never_ran" not in explorer.gaps.value and "stale" in explorer.gaps.value
    assert PWN not in explorer.gaps.value and "&lt;script&gt;" in explorer.gaps.value


def test_choosing_phases_and_dates_follows_in_every_view(explorer):
    explorer.phases.value = ("analytics",)
    assert explorer.tables.options == ("summary", "cache")
    explorer.dates.value = (date(2024, 1, 12), date(2024, 1, 14))
    tables, dates, _ = heatmap_cells(explorer.figure)
    assert tables == ["summary", "cache"] and dates == ["2024-01-12", "2024-01-13", "2024-01-14"]
    assert all(c.table in tables and date(2024, 1, 12) <= c.date for c in explorer.selection())
    assert explorer.table.options == ("summary", "cache")


def test_tables_a_phase_brings_back_come_back_chosen_and_a_table_left_out_stays_out(explorer):
    explorer.phases.value = ("analytics",)
    explorer.phases.value = ("raw",)
    explorer.tables.value = ("boxscore", "props")  # backup_props left out by the reader
    explorer.phases.value = ("raw", "analytics")
    assert explorer.tables.value == ("boxscore", "props", "summary", "cache")
    tables, _, _ = heatmap_cells(explorer.figure)
    assert tables == ["boxscore", "props", "summary", "cache"]


def test_choosing_a_cell_shows_its_attempts_error_and_the_command_that_fixes_it(explorer):
    explorer.table.value = "props"
    offered = [label for label, _ in explorer.day.options]
    assert offered[:2] == ["2024-01-01 · never_ran", "2024-01-10 · failed"]  # gaps first
    assert offered[-1] == "2024-01-11 · no_data"
    explorer.day.value = FAILED[1]
    detail = explorer.detail.value
    assert "props · 2024-01-10 · failed" in detail and "read the last error, fix the cause, rerun" in detail
    assert PWN not in detail and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in detail
    text = unescape(re.sub(r"<[^>]+>", "", detail))
    assert "backfill-kit backfill --spec mini.yaml --start 2024-01-10 --end 2024-01-10 --table props" in text
    step = next(s for s in explorer.plan.steps if s.table == "props" and FAILED[1] in s.dates)
    assert "In the full plan" in detail and step.command in text
    explorer.table.value = "boxscore"
    assert "Nothing to fix: its 4 rows meet the table's minimum of 4." in unescape(
        explorer.detail.value
    )  # not 'nothing.'
    explorer.table.value = "summary"
    explorer.day.value = date(2024, 1, 1)
    assert "Nothing to fix: it is inside the phase's bootstrap window" in unescape(explorer.detail.value)


def test_a_no_data_cell_a_fallback_covers_is_offered_no_command(explorer):
    """--include-no-data reruns only the no-data cells no fallback covers: a covered one must
    not be offered a command that would then do nothing (build_mini's 2024-01-11)."""
    explorer.table.value = "props"
    explorer.day.value = date(2024, 1, 11)
    detail = explorer.detail.value
    assert "props · 2024-01-11 · no_data" in detail
    assert "Nothing to fix: its fallback backup_props has this date" in detail
    assert "backfill-kit backfill" not in detail and "--include-no-data" not in detail


def click(explorer, table: str, day: date) -> None:
    """What the browser sends the kernel when a person clicks the heatmap's cell."""
    tables, dates, _ = heatmap_cells(explorer.figure)
    clicks = explorer.heatmap.clicked[2] + 1 if explorer.heatmap.clicked else 1
    explorer.heatmap.clicked = [tables.index(table), dates.index(day.isoformat()), clicks]


def test_a_click_on_a_heatmap_cell_chooses_that_cell(explorer):
    """Only the dropdowns chose a cell; a click on the heatmap did nothing."""
    click(explorer, *FAILED)
    assert (explorer.table.value, explorer.day.value) == FAILED
    assert "props · 2024-01-10 · failed" in explorer.detail.value
    click(explorer, "boxscore", date(2024, 3, 6))
    assert "boxscore · 2024-03-06 · complete" in explorer.detail.value
    click(explorer, *FAILED)
    explorer.statuses.value = ("failed",)  # boxscore's cells are blanks now: a click on one changes nothing
    click(explorer, "boxscore", FAILED[1])
    assert (explorer.table.value, explorer.day.value) == FAILED


def test_the_explorer_displays_as_widgets(explorer):
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_reports_need_no_extra_kernel_setup():
    """papermill's default kernel, python3, is this interpreter: its kernelspec says `python`."""
    from jupyter_client.kernelspec import KernelSpecManager

    argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    assert argv0 in ("python", "python3", sys.executable) or Path(argv0).resolve() == Path(sys.executable).resolve()


def test_analysts_get_the_same_cells_and_gaps_as_pandas_frames(mini_spec):
    from backfill_kit.reports.frames import cells_frame, gaps_frame
    from backfill_kit.reports.notebook import CoverageAudit

    result = validate(load_spec(mini_spec), date.fromisoformat(START), date.fromisoformat(END))
    frame = CoverageAudit("mini.yaml", result).frame
    assert frame.equals(cells_frame(result)) and len(frame) == 5 * len(DAYS)
    failed = frame[(frame["table"] == FAILED[0]) & (frame["date"] == FAILED[1])].iloc[0]
    assert (failed["status"], failed["last_error"], failed["day"]) == ("failed", PWN, 1)
    gaps = gaps_frame(result.cells, DAYS)
    assert gaps.iloc[0][["table", "status", "dates"]].tolist() == ["cache", "never_ran", 8]
    assert gaps[gaps["status"] == "failed"]["last error"].tolist() == [PWN]


def test_the_index_compares_a_report_and_a_backfill_as_moments_not_as_text(tmp_path):
    """'...:49+00:00' against a journal's '...:49.035+00:00' as text read the after report
    'before the backfill'; and a report between two backfills is after one and before the next."""
    from backfill_kit.reports.render import Entry, backfill_moment

    def entry(kind: str, **meta: str) -> Entry:
        return Entry(
            tmp_path / f"{kind}.html",
            {"kind": kind, "spec": "demo", "start": "2024-01-01", "end": "2024-01-31", **meta},
        )

    first = entry("execution", headline={"finished_at": "2026-11-30T10:00:48.965+00:00"})  # type: ignore[arg-type]
    second = entry("execution", headline={"finished_at": "2026-11-30T10:05:49.035+00:00"})  # type: ignore[arg-type]
    after = entry("coverage", generated_at="2026-11-30T10:05:49.512+00:00")
    between = entry("coverage", generated_at="2026-11-30T10:01:30.000+00:00")
    old_style = entry("coverage", generated_at="2026-11-30T10:00:49+00:00")  # written before reports kept milliseconds
    runs = [first, second, after, between, old_style]
    assert backfill_moment(after, runs) == "after the backfill that finished 2026-11-30 10:05:49"
    assert backfill_moment(between, runs) == (
        "after the backfill that finished 2026-11-30 10:00:48; before the backfill that finished 2026-11-30 10:05:49"
    )
    assert backfill_moment(old_style, runs).startswith("after the backfill that finished 2026-11-30 10:00:48")


@pytest.mark.slow  # two papermill kernels
def test_a_coverage_report_made_in_the_second_a_backfill_finished_reads_after_it(tmp_path):
    """After `make demo`, the after report read 'before the backfill': its moment was cut to the
    second (10:05:49) and the run had finished at 10:05:49.035."""
    from backfill_kit.reports.render import render_coverage, render_execution

    spec_path = build_mini(tmp_path)
    plan_path = tmp_path / "runs" / "plan.json"
    build_plan(validate(load_spec(spec_path), date.fromisoformat(START), date.fromisoformat(END))).write(plan_path)
    journal = plan_path.with_name("plan.journal.jsonl")
    started = {"event": "run_started", "time": "2026-11-30T10:05:40.000+00:00", "plan": str(plan_path)}
    finished = {"event": "run_finished", "time": "2026-11-30T10:05:49.035+00:00", "outcome": "completed"}
    journal.write_text(json.dumps({**started, "plan_sha": "x", "steps": 0}) + "\n" + json.dumps(finished) + "\n")
    out = tmp_path / "reports"
    render_execution(journal, out, now=datetime(2026, 11, 30, 10, 5, 49, 300000))
    render_coverage(
        spec_path,
        date.fromisoformat(START),
        date.fromisoformat(END),
        out,
        now=datetime(2026, 11, 30, 10, 5, 49, 512000),
    )
    coverage = next(row for row in (out / "index.html").read_text().split("<tr>") if "<td>coverage</td>" in row)
    assert "after the backfill that finished 2026-11-30 10:05:49" in coverage


def test_the_calendars_unit_and_definition_come_from_the_spec(mini_spec, tmp_path):
    """Every pipeline's report spoke of 'expected game dates (a date with final games in the
    schedule)': the unit is the spec's calendar.unit (default: date), the definition its calendar."""
    import shutil

    from backfill_kit.reports.notebook import coverage

    head = coverage(mini_spec, START, END).headline().html
    assert f"{len(DAYS)} expected dates (the dates of raw.schedule where game_status = 3, inside the seasons)" in head
    assert "game" not in head.replace("game_status", "")
    for name in ("mini.yaml", "mini.duckdb"):
        shutil.copy(mini_spec.parent / name, tmp_path / name)
    spec = tmp_path / "mini.yaml"
    spec.write_text(spec.read_text().replace("  seasons:\n", "  unit: business day\n  seasons:\n"))
    audit = coverage(spec, START, END)
    assert f"{len(DAYS)} expected business days (the dates of" in audit.headline().html
    assert "tables × business days, bootstrap excluded" in audit.headline().html
    assert "runs of consecutive business days with the same cause" in audit.gaps().data


def test_a_short_range_gets_date_ticks_down_to_the_day():
    """27 dates of January had one tick, 'Jan 2025'; four seasons keep month ticks."""
    from datetime import timedelta

    from backfill_kit.reports.figures import coverage_heatmap

    january = [date(2025, 1, 1) + timedelta(days=i) for i in range(27)]
    axis = coverage_heatmap([], ["t"], ["p"], january, season_of={})["layout"]["xaxis"]
    assert len(axis["tickvals"]) >= 6 and axis["ticktext"][:2] == ["Jan 1 2025", "Jan 5"]
    seasons = [date(2021, 10, 19) + timedelta(days=i) for i in range(0, 1300, 2)]
    axis = coverage_heatmap([], ["t"], ["p"], seasons, season_of={})["layout"]["xaxis"]
    assert axis["ticktext"][0] == "Oct 2021" and all(len(label.split()) == 2 for label in axis["ticktext"])


def test_season_lines_come_from_the_calendar_not_from_the_cells_shown(explorer):
    """Filtered to failed cells, the demo's heatmap drew 14 dotted 'season' lines around the
    failed dates instead of its 3 season boundaries."""
    from backfill_kit.reports.figures import coverage_heatmap

    days = [date(2024, 1, d) for d in range(1, 6)] + [date(2024, 3, d) for d in range(1, 6)]
    season_of = {d: "s1" if d.month == 1 else "s2" for d in days}
    shown = [c for c in explorer.validation.cells if c.status == "failed"]  # one cell, on 2024-01-10
    figure = coverage_heatmap(shown, ["props"], ["raw"], days, season_of=season_of)
    assert [line["x0"] for line in figure["layout"]["shapes"]] == [4.5]  # between Jan 5 and Mar 1, only
    assert len(explorer.figure["layout"]["shapes"]) == 1  # the mini calendar: seasons s1 and s2
    explorer.statuses.value = ("failed", "never_ran")
    _tables, dates, _ = heatmap_cells(explorer.figure)
    breaks = [x["x0"] for x in explorer.figure["layout"]["shapes"]]
    assert breaks == [dates.index("2024-03-05") - 0.5]  # the dates shown close up; one boundary still


@pytest.mark.slow  # the four-season demo
def test_filtered_to_failed_cells_the_demos_heatmap_shows_their_dates_and_the_calendars_seasons(pristine_demo):
    """It drew 14 dotted lines around the failed dates, and 832 columns of 1 px slivers."""
    from backfill_kit.reports.explore import Explorer

    v = validate(load_spec(pristine_demo / "nba_props.yaml"), date(2021, 10, 19), date(2025, 6, 22))
    chosen = Explorer(v, "demo/nba_props.yaml")
    assert len(chosen.figure["layout"]["shapes"]) == 3  # four seasons, three boundaries
    for statuses in (("failed",), ("failed", "stale", "partial")):
        chosen.statuses.value = statuses
        shown = sorted({c.date for c in v.cells if str(c.status) in statuses})
        _, dates, _ = heatmap_cells(chosen.figure)
        assert dates == [d.isoformat() for d in shown]
        season = {d.date: d.season for d in v.days}
        changes = sum(season[a] != season[b] for a, b in itertools.pairwise(shown))
        assert len(chosen.figure["layout"]["shapes"]) == changes <= 3
