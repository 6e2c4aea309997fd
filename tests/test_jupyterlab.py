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
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from browser import Page, artifacts_dir, require_chromium

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WINDOW = (1600, 1000)  # the narrowest window the notebooks must read well in

pytestmark = pytest.mark.slow


# --- the project folder and the server -----------------------------------------------------


def backfill_kit(*args: str, cwd: Path) -> None:
    subprocess.run([str(BIN / "backfill-kit"), *args], cwd=cwd, check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone as far as the notebooks care: pyproject.toml, notebooks/, and the demo
    built in demo/ with one short backfill run (so that the execution log has a journal)."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    backfill_kit("demo", "init", "demo", cwd=root)
    backfill_kit("plan", "--spec", "demo/nba_props.yaml", "--start", "2021-10-19", "--end", "2021-10-31",
                 "--out", "demo/runs/plan.json", cwd=root)
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
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
               "JUPYTER_PLATFORM_DIRS": "1"}
        # No "fetch Jupyter news?" toast over the notebook, and no request for it.
        notification = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        self.log = home / "server.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
            [str(BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--ServerApp.terminals_enabled=False",
             *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI containers run as root
            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
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
    return (f"[...window.jupyterapp.shell.widgets('main')]"
            f".find(w => w.context && w.context.path === 'notebooks/{notebook}')")


def open_notebook(page: Page, lab: Lab, notebook: str) -> None:
    """`jupyter lab notebooks/NAME.ipynb`: JupyterLab opens the notebook and starts its kernel
    (in notebooks/)."""
    page.goto(lab.url(f"lab/tree/notebooks/{notebook}"))
    page.wait_for(f"!!(window.jupyterapp && {panel(notebook)})",
                  what=f"JupyterLab to open {notebook}")


def run_all(page: Page, notebook: str, timeout: float = 240) -> list[list[dict]]:
    """Run all cells, as the Run menu does; every code cell's outputs once the kernel is idle."""
    page.evaluate(f"""(async () => {{
      const panel = {panel(notebook)};
      await panel.context.ready; await panel.sessionContext.ready;
      window.jupyterapp.shell.activateById(panel.id);
      await window.jupyterapp.commands.execute('notebook:run-all-cells');
      return true;
    }})()""")
    page.wait_for(f"""(() => {{  // every code cell has run and the kernel is idle
      const panel = {panel(notebook)}; const cells = panel.content.model.cells;
      const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
      for (let i = 0; i < cells.length; i++) {{
        if (cells.get(i).type === 'code' && !cells.get(i).executionCount) return false;
      }}
      return !!kernel && kernel.status === 'idle';
    }})()""", timeout=timeout, what=f"every cell of {notebook} to run")
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


def shot(page: Page, name: str) -> Path:
    path = artifacts_dir() / name
    page.viewport_screenshot(path)
    print(f"screenshot: {path}")
    return path


def test_explore_notebook_draws_its_heatmap_and_shows_a_cell(lab, page):
    open_notebook(page, lab, "explore.ipynb")
    outputs = run_all(page, "explore.ipynb")
    assert errors_in(outputs) == []
    time.sleep(5)
    shot(page, "jupyterlab_explore.png")
