"""A real headless Chromium, driven over the DevTools protocol, with no network.

Just enough of the protocol for the report and JupyterLab tests: open a file or a loopback URL,
collect script errors and every request the page makes, evaluate JavaScript, wait for a
condition, take a screenshot. Chromium is Debian's package
(`make test` installs it when missing); nothing is downloaded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    # No network but loopback (a local JupyterLab): every host name fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """Chromium's path; without it the test fails on CI and is skipped elsewhere."""
    import pytest

    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: make test installs Debian's chromium package")
        pytest.skip("chromium is not installed (make test installs Debian's chromium package)")
    return path


class Page:
    """One tab of a fresh Chromium with an empty profile."""

    def __init__(self, executable: str, *, width: int = 1400, height: int = 1000) -> None:
        self._profile = tempfile.mkdtemp(prefix="bk-chromium-")
        self.width = width
        self._proc = subprocess.Popen(
            [executable, *FLAGS, f"--window-size={width},{height}", f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._ws = websocket.create_connection(self._page_socket(), timeout=60, suppress_origin=True)
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def _page_socket(self) -> str:
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                pages = [t for t in json.load(response) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise RuntimeError("chromium opened no page")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def open(self, path: Path, *, settle: float = 0.5) -> None:
        """Load a file and wait for its load event, then a little more for scripts to draw."""
        self.goto(path.resolve().as_uri(), settle=settle)

    def goto(self, url: str, *, settle: float = 0.5) -> None:
        """Load a URL and wait for its load event, then a little more for scripts to draw."""
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not finish loading")
            self.events.append(json.loads(self._ws.recv()))
        time.sleep(settle)
        self.evaluate("1")  # collect what arrived meanwhile

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 60, what: str = "") -> Any:
        """Evaluate `expression` until it is truthy; its value. A timeout names what it waited for."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:g} s for {what or expression}")
            time.sleep(0.25)
        return value

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and error log entries (failed loads too)."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(params["entry"].get("text", ""))
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> Path:
        size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=max(self.width, size[0]),
            height=min(size[1], 12000),
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def viewport_screenshot(self, path: Path) -> Path:
        """What the window shows now (an app such as JupyterLab scrolls inside its own panels)."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            shutil.rmtree(self._profile, ignore_errors=True)


def artifacts_dir() -> Path:
    """tests/artifacts/: screenshots kept after the run, ignored by git (its own .gitignore)."""
    directory = Path(os.environ.get("BACKFILL_KIT_ARTIFACTS", Path(__file__).parent / "artifacts"))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".gitignore").write_text("*\n")
    return directory
