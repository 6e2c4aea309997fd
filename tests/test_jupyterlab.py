"""The analyst's journey in a live JupyterLab, as the README tells it.

A real JupyterLab server on loopback serves a copy of the project folder with the demo built
in it; a headless Chromium opens each notebook the way the README says
(`jupyter lab notebooks/explore.ipynb`: the kernel starts in notebooks/), runs all cells, and
looks at what a person would see. Screenshots are kept in tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Page, artifacts_dir, require_chromium
from conftest import copy_demo

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WINDOW = (1600, 1400)  # 1600 px: the narrowest window the notebooks must read well in

pytestmark = pytest.mark.slow


# --- the project folder and the server -----------------------------------------------------


def backfill_kit(*args: str, cwd: Path) -> None:
    done = subprocess.run([str(BIN / "backfill-kit"), *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(pristine_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone as far as the notebooks care: pyproject.toml, notebooks/, and the demo
    in demo/ (the session's, as `demo init` builds it) with one short backfill run (so that
    the execution log has a journal)."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    copy_demo(pristine_demo, root / "demo")
    backfill_kit(
        "plan",
        "--spec",
        "demo/nba_props.yaml",
        "--start",
        "2021-10-19",
        "--end",
        "2021-10-31",
        "--out",
        "demo/runs/plan.json",
        cwd=root,
    )
    backfill_kit("run", "--plan", "demo/runs/plan.json", cwd=root)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """`jupyter lab` started in the project folder, on 127.0.0.1 with a token, its settings,
    workspaces and runtime files in a folder of its own."""

    def __init__(self, project: Path, home: Path) -> None:
        self.port, self.token = free_port(), secrets.token_hex(16)
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTER_DATA_DIR": str(home / "data"),  # no user kernelspec: python3 is this environment's
            "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
            "JUPYTER_PLATFORM_DIRS": "1",
        }
        # No "fetch Jupyter news?" toast over the notebook, and no request for it.
        notification = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        self.log = home / "server.log"
        command = [
            str(BIN / "jupyter"),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.terminals_enabled=False",
            *(["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
        ]
        with self.log.open("w") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"jupyter lab did not answer within 120 s; see {self.log}")

    def stop(self) -> None:
        """The server shuts its kernels down on SIGTERM; if it hangs, its whole session goes."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


@pytest.fixture(scope="module")
def lab(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = Lab(project, tmp_path_factory.mktemp("jupyter"))
    yield server
    server.stop()


@pytest.fixture
def page(chromium: str) -> Iterator[Page]:
    browser = Page(chromium, width=WINDOW[0], height=WINDOW[1])
    yield browser
    browser.close()


# --- driving JupyterLab ----------------------------------------------------------------------


def panel(notebook: str) -> str:
    """JavaScript for the notebook's panel, through the app object JupyterLab exposes
    (`expose_app_in_browser`)."""
    return (
        f"[...window.jupyterapp.shell.widgets('main')]"
        f".find(w => w.context && w.context.path === 'notebooks/{notebook}')"
    )


def open_notebook(page: Page, lab: Lab, notebook: str) -> None:
    """`jupyter lab notebooks/NAME.ipynb`: JupyterLab opens the notebook and starts its kernel
    (in notebooks/)."""
    page.goto(lab.url(f"lab/tree/notebooks/{notebook}"))
    page.wait_for(f"!!(window.jupyterapp && {panel(notebook)})", what=f"JupyterLab to open {notebook}")


def run_all(page: Page, notebook: str, timeout: float = 240) -> list[list[dict]]:
    """Run all cells, as the Run menu does; every code cell's outputs once the kernel is idle."""
    page.evaluate(f"""(async () => {{
      const panel = {panel(notebook)};
      await panel.context.ready; await panel.sessionContext.ready;
      window.jupyterapp.shell.activateById(panel.id);
      await window.jupyterapp.commands.execute('notebook:run-all-cells');
      return true;
    }})()""")
    page.wait_for(
        f"""(() => {{  // every code cell has run and the kernel is idle
      const panel = {panel(notebook)}; const cells = panel.content.model.cells;
      const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
      for (let i = 0; i < cells.length; i++) {{
        if (cells.get(i).type === 'code' && !cells.get(i).executionCount) return false;
      }}
      return !!kernel && kernel.status === 'idle';
    }})()""",
        timeout=timeout,
        what=f"every cell of {notebook} to run",
    )
    return page.evaluate(f"""(() => {{
      const cells = {panel(notebook)}.content.model.cells; const out = [];
      for (let i = 0; i < cells.length; i++) {{
        if (cells.get(i).type === 'code') out.push(cells.get(i).outputs.toJSON());
      }}
      return out;
    }})()""")


def errors_in(outputs: list[list[dict]]) -> list[str]:
    """Error outputs and anything written to stderr, as the analyst would see them."""
    found = []
    for cell in outputs:
        for o in cell:
            if o.get("output_type") == "error":
                found.append(f"{o['ename']}: {o['evalue']}")
            elif o.get("output_type") == "stream" and o.get("name") == "stderr":
                found.append(o.get("text", ""))
    return found


def in_panel(notebook: str, body: str) -> str:
    """An async JavaScript function run with `root`, the notebook's node, scrolled into view."""
    return f"""(async () => {{
      const panel = {panel(notebook)}; const root = panel.node;
      {body}
    }})()"""


def shot(page: Page, notebook: str, selector: str, name: str) -> Path:
    """What the window shows with the first `selector` of the notebook scrolled to the top."""
    page.evaluate(in_panel(notebook, f"root.querySelector({json.dumps(selector)}).scrollIntoView(); return 1;"))
    time.sleep(0.5)
    path = page.viewport_screenshot(artifacts_dir() / name)
    print(f"screenshot: {path}")
    return path


def run_notebook(page: Page, lab: Lab, notebook: str) -> list[list[dict]]:
    """Open it the way the README says, Run All, and find no error anywhere; the outputs."""
    open_notebook(page, lab, notebook)
    outputs = run_all(page, notebook)
    assert errors_in(outputs) == []
    return outputs


# --- the explorer ----------------------------------------------------------------------------

HEATMAP = "root.querySelector('.js-plotly-plot')"  # plotly's FigureWidget

# The heatmap's cells as plotly drew them (an image), read back pixel by pixel: colours counted.
DRAWN_COLOURS = f"""const image = {HEATMAP}.querySelector('.heatmaplayer image');
  if (!image) return null;
  const picture = new Image(); picture.src = image.getAttribute('href'); await picture.decode();
  const canvas = document.createElement('canvas'); canvas.width = picture.width; canvas.height = picture.height;
  const context = canvas.getContext('2d'); context.drawImage(picture, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data; const counts = {{}};
  for (let i = 0; i < pixels.length; i += 4) {{
    const colour = '#' + [0, 1, 2].map(k => pixels[i + k].toString(16).padStart(2, '0')).join('');
    counts[colour] = (counts[colour] || 0) + 1;
  }}
  return counts;"""

# Choose an option of the explorer's n-th dropdown (table, date) as a person does: the first
# whose label contains `text` (the option's value is its label with plain spaces); that label.
CHOOSE = """const select = root.querySelectorAll('.widget-dropdown select')[{index}];
  const option = [...select.options].find(o => o.value.includes({text}));
  select.value = option.value; select.dispatchEvent(new Event('change', {{bubbles: true}}));
  return option.value;"""

# Choose one phase in the phases list, as a click on it does.
ONLY_PHASE = """const select = root.querySelectorAll('.widget-select-multiple select')[0];
  for (const option of select.options) option.selected = option.value === {phase};
  select.dispatchEvent(new Event('change', {{bubbles: true}})); return 1;"""

# The chosen cell's facts table, header to value, and the whole detail's text.
DETAIL = """const detail = [...root.querySelectorAll('.widget-html')].pop();
  const table = detail.querySelector('table');
  const facts = table ? Object.fromEntries([...table.querySelectorAll('th')].map(
    (th, i) => [th.textContent, table.querySelectorAll('tbody td')[i].textContent])) : {};
  return {text: detail.innerText, facts};"""


# Readable at 1600 px: how many lines each date of the gap list takes, and whether any two
# x-axis labels of the heatmap overlap.
DATE_LINES = """const table = [...root.querySelectorAll('.widget-html table')][0];
  const range = document.createRange(); const lines = [];
  for (const td of table.querySelectorAll('tbody td')) {
    if (!/^\\d{4}-\\d{2}-\\d{2}$/.test(td.textContent)) continue;
    range.selectNodeContents(td); lines.push(new Set([...range.getClientRects()].map(r => Math.round(r.top))).size);
  }
  return lines;"""
X_LABELS = f"""const boxes = [...{HEATMAP}.querySelectorAll('.xtick text')].map(t => t.getBoundingClientRect());
  return [boxes.length, boxes.some((b, i) => i > 0 && b.left < boxes[i - 1].right + 4)];"""
# The date range beside the slider: its text, and whether all of it is inside its widget and the notebook.
RANGE = """const shown = root.querySelector('.bk-range'); const box = shown.getBoundingClientRect();
  const inside = box.right <= shown.closest('.widget-html').getBoundingClientRect().right + 1
    && box.right <= root.getBoundingClientRect().right;
  return [shown.innerText, inside];"""


# Where, in the window, the heatmap draws the first `lost` cell of a table (from plotly's own
# axes), scrolled into view; and that cell's date.
CELL_AT = """const plot = {HEATMAP}; plot.scrollIntoView({{block: 'center'}});
  await new Promise(done => setTimeout(done, 500));
  const trace = plot.data[0], row = trace.y[1].indexOf({table}), column = trace.text[row].indexOf('lost');
  const xaxis = plot._fullLayout.xaxis, yaxis = plot._fullLayout.yaxis, box = plot.getBoundingClientRect();
  return [box.left + xaxis._offset + xaxis.c2p(column), box.top + yaxis._offset + yaxis.c2p(row), trace.x[column]];""".replace(
    "{HEATMAP}", HEATMAP
)


def wait_for_detail(page: Page, text: str) -> None:
    page.wait_for(
        in_panel(
            "explore.ipynb",
            f"{DETAIL.replace('return {', 'const shown = {')} return shown.text.includes({json.dumps(text)});",
        ),
        what=f"the explorer to show {text}",
    )


def height_of(page: Page) -> float:
    return page.evaluate(in_panel("explore.ipynb", f"return {HEATMAP}.getBoundingClientRect().height;"))


def test_the_explorer_draws_its_heatmap_at_full_height_and_shows_a_chosen_cell(lab, page):
    from backfill_kit.common.status import Status
    from backfill_kit.reports.figures import STATUS_COLORS

    run_notebook(page, lab, "explore.ipynb")
    page.wait_for(
        in_panel("explore.ipynb", f"return !!{HEATMAP}.querySelector('.heatmaplayer image');"),
        what="the heatmap to draw",
    )
    expected = 160 + 22 * 20  # figures.coverage_heatmap's height for the demo's 20 tables
    first = height_of(page)
    time.sleep(3)  # it used to collapse to 0 px within 3 s, at the renderer's first resize
    assert (first, height_of(page)) == (expected, expected)
    colours = page.evaluate(in_panel("explore.ipynb", DRAWN_COLOURS))
    for status in (Status.COMPLETE, Status.NEVER_RAN, Status.NO_DATA, Status.BOOTSTRAP, Status.LOST):
        assert colours.get(STATUS_COLORS[status], 0) > 0, status
    readout = page.evaluate(in_panel("explore.ipynb", RANGE))
    assert readout == ["2021-10-19 .. 2025-06-22 · 832 game dates", True]  # whole, not cut off
    labels, overlap = page.evaluate(in_panel("explore.ipynb", X_LABELS))
    assert labels >= 6 and not overlap
    lines = page.evaluate(in_panel("explore.ipynb", DATE_LINES))
    assert len(lines) >= 2 * 49 and set(lines) == {1}  # first and last of 49 gap runs, one line each
    shot(page, "explore.ipynb", ".widget-vbox", "jupyterlab_explore_heatmap.png")

    table = "nbac_gamebook_player_stats"
    assert page.evaluate(in_panel("explore.ipynb", CHOOSE.format(index=0, text=json.dumps(table)))) == table
    wait_for_detail(page, f"{table} · ")  # the kernel has offered this table's dates
    day = page.evaluate(in_panel("explore.ipynb", CHOOSE.format(index=1, text=json.dumps("· failed")))).split(" ")[0]
    wait_for_detail(page, f"{table} · {day} · failed")
    shown = page.evaluate(in_panel("explore.ipynb", DETAIL))
    assert int(shown["facts"]["attempts"]) >= 1 and int(shown["facts"]["failed"]) >= 1
    assert "Last error" in shown["text"]
    command = f"backfill-kit backfill --spec demo/nba_props.yaml --start {day} --end {day} --table {table}"
    assert command in shown["text"]
    shot(page, "explore.ipynb", ".widget-dropdown", "jupyterlab_explore_cell.png")

    # A click on a cell of the heatmap chooses that cell: a person's mouse, pressed and released.
    x, y, day = page.evaluate(in_panel("explore.ipynb", CELL_AT.format(table=json.dumps("player_daily_cache"))))
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        page.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    wait_for_detail(page, f"player_daily_cache · {day} · lost")

    # A filter redraws the heatmap, at the height of the tables chosen, and it stays there.
    page.evaluate(in_panel("explore.ipynb", ONLY_PHASE.format(phase=json.dumps("analytics"))))
    analytics = 160 + 22 * 5
    page.wait_for(
        in_panel(
            "explore.ipynb",
            f"const plot = {HEATMAP}; return !!plot && plot.getBoundingClientRect().height === {analytics};",
        ),
        what="the heatmap of the analytics phase",
    )
    time.sleep(3)
    assert height_of(page) == analytics

    # Another phase: the table list takes its new options and choice as one state, so the
    # browser never selects among options it has already dropped.
    page.evaluate(in_panel("explore.ipynb", ONLY_PHASE.format(phase=json.dumps("precompute"))))
    page.wait_for(
        in_panel(
            "explore.ipynb",
            "const tables = root.querySelectorAll('.widget-select-multiple select')[1];"
            " return [...tables.options].some(o => o.textContent === 'player_daily_cache');",
        ),
        what="the precompute tables offered",
    )
    time.sleep(1)
    assert not [e for e in page.errors() if "Cannot set properties" in e]


# --- the two reports, in JupyterLab --------------------------------------------------------------

FIGURES = """await Promise.all(window.bkFigures || []);
  return [...root.querySelectorAll('.bk-figure')].map(f => [f.getBoundingClientRect().height, !!f.querySelector('.main-svg')]);"""


def test_the_coverage_audit_runs_and_draws_every_figure(lab, page):
    run_notebook(page, lab, "coverage_audit.ipynb")
    figures = page.evaluate(in_panel("coverage_audit.ipynb", FIGURES))
    assert len(figures) == 2 and all(height > 0 and drawn for height, drawn in figures)  # heatmap, seasons
    text = page.evaluate(in_panel("coverage_audit.ipynb", "return root.textContent;"))
    assert "nba_props: 2021-10-19 .. 2025-06-22" in text and "Recommended plan" in text
    shot(page, "coverage_audit.ipynb", ".bk-cards", "jupyterlab_coverage_audit.png")
    shot(page, "coverage_audit.ipynb", ".bk-table", "jupyterlab_coverage_audit_tables.png")


def test_the_execution_log_runs_and_draws_its_timeline(lab, page):
    run_notebook(page, lab, "execution_log.ipynb")
    figures = page.evaluate(in_panel("execution_log.ipynb", FIGURES))
    assert len(figures) == 1 and figures[0][0] > 0 and figures[0][1]
    text = page.evaluate(in_panel("execution_log.ipynb", "return root.textContent;"))
    assert "completed" in text and "nbac_team_boxscore" in text and "succeeded" in text
    shot(page, "execution_log.ipynb", ".bk-cards", "jupyterlab_execution_log.png")


# --- monitor_widget, typed into a new notebook ---------------------------------------------------


def test_monitor_widget_renders_its_table(lab, project, page):
    """As the README writes it, dates as strings, the spec relative to the project folder."""
    import nbformat  # here, not at the top: its JSON-schema grammars take seconds to import

    notebook = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    )
    notebook.cells = [
        nbformat.v4.new_code_cell("import os\n\nos.getcwd()"),
        nbformat.v4.new_code_cell(
            "from backfill_kit.monitor import monitor_widget\n\n"
            'monitor_widget("demo/nba_props.yaml", "2021-10-19", "2022-06-16")'
        ),
    ]
    nbformat.write(notebook, project / "notebooks" / "monitor.ipynb")
    outputs = run_notebook(page, lab, "monitor.ipynb")
    assert outputs[0][0]["data"]["text/plain"] == repr(str(project / "notebooks"))  # where JupyterLab starts it
    text = page.wait_for(
        in_panel(
            "monitor.ipynb",
            "const pre = root.querySelector('.widget-html pre');"
            " return pre && root.querySelector('.widget-vbox').textContent;",
        ),
        what="the monitor's table",
    )
    assert "refreshed" in text and "every 30 s" in text
    assert "nba_props monitor · 2021-10-19 .. 2022-06-16" in text
    for phase in ("raw", "analytics", "precompute"):
        assert f"\n{phase} " in text
    assert (
        "table (% complete / % done per season)" in text and "2021-22" in text and "nbac_gamebook_player_stats" in text
    )
    shot(page, "monitor.ipynb", ".widget-vbox", "jupyterlab_monitor_widget.png")
