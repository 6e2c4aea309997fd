"""The monitor in JupyterLab: the terminal's view, redrawn in an HTML widget on a timer."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any

from backfill_kit.common.arguments import as_date, find_file
from backfill_kit.errors import BackfillKitError, WarehouseError
from backfill_kit.monitor.snapshot import find_journals, take_snapshot
from backfill_kit.monitor.view import snapshot_view
from backfill_kit.validation import check_range

__all__ = ["MonitorWidget", "monitor_widget"]


class MonitorWidget:
    """The monitor as a widget that refreshes itself every `interval` seconds.

    `look` takes a snapshot; the text the terminal shows is drawn into an HTML widget, so the
    widget needs nothing but ipywidgets. `refresh()` is what the timer calls, and what a test
    (or an impatient analyst) can call directly. A failed look is shown with its cause; the
    timer stops at once unless the error may pass by itself (a warehouse busy for a moment),
    and then after `MAX_FAILURES` failures in a row: a broken setup is reported once, not
    retried forever.
    """

    MAX_FAILURES = 3

    def __init__(self, look: Any, interval: float = 30.0) -> None:
        import threading

        import ipywidgets

        self._look, self.interval = look, interval
        self.view = ipywidgets.HTML()
        self.status = ipywidgets.HTML()
        self.widget = ipywidgets.VBox([self.status, self.view])
        self.failures = 0  # in a row
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def refresh(self) -> None:
        from rich.console import Console

        try:
            snap = self._look()
        except Exception as exc:
            self._failed(exc)
            return
        self.failures = 0
        # Recorded, then exported as text: nothing is printed.
        console = Console(record=True, width=140, file=io.StringIO(), color_system=None)
        console.print(snapshot_view(snap))
        # Columns stay aligned: no wrapping inside words (JupyterLab breaks output pre anywhere).
        self.view.value = (
            f'<pre style="white-space:pre;word-break:normal;overflow-x:auto">{escape(console.export_text())}</pre>'
        )
        self.status.value = escape(f"refreshed {snap.taken_at:%H:%M:%S} UTC, every {self.interval:g} s")

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        cause, now = _error_cause(exc), datetime.now(UTC)
        if isinstance(exc, WarehouseError) and exc.retryable and self.failures < self.MAX_FAILURES:
            self.status.value = _error_html(
                f"look failed at {now:%H:%M:%S} UTC ({self.failures} of "
                f"{self.MAX_FAILURES}), trying again in {self.interval:g} s: {cause}"
            )
            return
        self._stop.set()
        self.status.value = _error_html(
            f"stopped at {now:%H:%M:%S} UTC: {cause}. Fix the cause, then run the cell again."
        )

    def start(self) -> MonitorWidget:
        import threading

        self._stop.clear()
        self.refresh()
        if not self.stopped:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="backfill-kit-monitor")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _error_cause(exc: BaseException) -> str:
    """An error as one line a person can act on: the toolkit's own message as it is, anything
    else with its type, and what caused it."""
    text = str(exc) if isinstance(exc, BackfillKitError) else f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None and not isinstance(exc, BackfillKitError):
        text += f" (caused by {type(cause).__name__}: {cause})"
    return text


def _error_html(text: str) -> str:
    return f'<span style="color:#b71c1c;white-space:pre-wrap">{escape(text)}</span>'


def monitor_widget(
    spec_path: str | Path, start: str | date, end: str | date, *, interval: float = 30.0, window_hours: float = 2.0
) -> MonitorWidget:
    """In a notebook: `monitor_widget("demo/nba_props.yaml", "2021-10-19", "2022-06-16")` as a
    cell's last line. Dates are dates or YYYY-MM-DD; a relative spec path is found by
    `arguments.find_file`'s rule (from notebooks/ too). Bad input raises here, once."""
    from backfill_kit.spec.load import load_spec

    start, end = as_date(start, "start"), as_date(end, "end")
    check_range(start, end)
    spec = load_spec(find_file(spec_path, "the spec"))
    journals = find_journals(spec)
    widget = MonitorWidget(
        lambda: take_snapshot(spec, start, end, window_hours=window_hours, journals=journals), interval
    )
    return widget.start()
