"""The monitor's figures, checked against a run history computed by hand."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import NOW, MiniWarehouse

from backfill_kit.monitor import take_snapshot
from backfill_kit.spec.load import load_spec

JAN1, JAN2, JAN10, JAN11 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 10), date(2024, 1, 11)


def run(
    mini: MiniWarehouse,
    processor: str,
    d: date,
    status: str,
    finished: datetime,
    seconds: float,
    error: str | None = None,
) -> None:
    """A run's two rows, ending `seconds` after it started."""
    started = finished - timedelta(seconds=seconds)
    run_id = f"{processor}-{d}-{status}"
    mini.con.execute(
        "INSERT INTO ref.run_history VALUES (?, ?, ?, 'running', ?, NULL, NULL, NULL)", [processor, run_id, d, started]
    )
    mini.con.execute(
        "INSERT INTO ref.run_history VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
        [processor, run_id, d, status, started, finished, error],
    )


@pytest.fixture
def history(mini: MiniWarehouse) -> Path:
    for d in (JAN1, JAN2, JAN10, JAN11):
        mini.games(d).rows("raw.boxscore", d, 2).rows("raw.backup_props", d, 1)
    # Runs of the same length start a second apart: the same start and length would make one run.
    for d, ago, seconds in ((JAN1, 5, 60), (JAN2, 5.0003, 60), (JAN10, 0.5, 120), (JAN11, 0.5003, 120)):
        run(mini, "BoxscoreProcessor", d, "success", NOW - timedelta(hours=ago), seconds)
    mini.rows("analytics.summary", JAN10, 1)
    run(mini, "SummaryProcessor", JAN10, "success", NOW - timedelta(hours=1), 300)
    run(
        mini,
        "SummaryProcessor",
        JAN11,
        "failed",
        NOW - timedelta(minutes=10),
        200,
        '[{"error_type": "Timeout", "error_message": "boom: the query timed out"}]',
    )
    return mini.close()


def snapshot(spec_path: Path):
    return take_snapshot(load_spec(spec_path), JAN1, JAN11, window_hours=2, now=NOW)


def test_expected_dates_leave_out_bootstrap_and_a_phase_is_its_slowest_table(history):
    snap = snapshot(history)
    expected = {t.table: (t.expected, t.done) for t in snap.tables}
    assert expected == {"boxscore": (4, 4), "props": (4, 0), "backup_props": (4, 4), "summary": (2, 1), "cache": (2, 0)}
    assert [(p.phase, p.percent_done, p.slowest) for p in snap.phases] == [
        ("raw", 0.0, "props"),
        ("analytics", 0.0, "cache"),
    ]
    assert snap.remaining == 4 + 1 + 2


def test_rate_counts_cells_completed_in_the_window(history):
    snap = snapshot(history)
    assert snap.completed_in_window == 3  # boxscore Jan 10 and 11, summary Jan 10; Jan 1-2 finished 5 h ago
    assert snap.rate_per_hour == 1.5


def test_without_a_runner_the_monitor_says_so_and_gives_the_plans_estimate_named_as_such(history):
    """No ETA from a rate (it was 'Rate: 0.0 cells/h ... ETA 63 h to 102 h' on a fresh demo):
    the words "No runner at work", and what the plan of the cells left would take by its own
    estimate, the number `plan` prints."""
    from backfill_kit.plan import build_plan
    from backfill_kit.running.estimates import estimator_for
    from backfill_kit.validation.validator import validate

    snap = snapshot(history)
    spec = load_spec(history)
    v = validate(spec, JAN1, JAN11, now=NOW)
    plan = build_plan(v, estimates=estimator_for(spec, v.cells))
    assert snap.eta.kind == "no runner" and snap.eta.high == pytest.approx(plan.estimated_seconds())
    assert snap.eta.text().startswith("No runner at work; 7 cells remaining, which a plan of 3 steps would take about ")
    assert "by the plan's estimate, from 2 runs in the run history" in snap.eta.text()
    data = json.loads(snap.to_json())["eta"]
    assert data["kind"] == "no runner" and data["text"] == snap.eta.text()


def test_nothing_left_that_a_plan_can_run_is_said_in_those_words(mini):
    """A cell still running remains, yet no plan takes it: no ETA of 0 min to 0 min."""
    mini.games(JAN10).run("BoxscoreProcessor", JAN10, "running", started=NOW - timedelta(minutes=5))
    mini.rows("raw.props", JAN10, 3).rows("raw.backup_props", JAN10, 1)
    for table in ("analytics.summary", "analytics.cache"):
        mini.rows(table, JAN10, 1)
    snap = take_snapshot(load_spec(mini.close()), JAN10, JAN10, now=NOW)
    assert snap.remaining == 1 and snap.eta.low is None
    assert snap.eta.text() == (
        "No runner at work; nothing left that a plan can run (1 cell remaining: 1 cell waits for a run at work)"
    )


def test_failures_of_the_window_carry_their_message(history):
    (failure,) = snapshot(history).failures
    assert (failure.table, failure.date, failure.error) == ("summary", JAN11, "boom: the query timed out")


def test_an_orphaned_run_is_listed(mini):
    mini.games(JAN10)
    mini.con.execute(
        "INSERT INTO ref.run_history VALUES ('PropsProcessor', 'r1', ?, 'running', ?, NULL, NULL, NULL)",
        [JAN10, NOW - timedelta(days=2)],
    )
    snap = snapshot(mini.close())
    assert [(t, d) for t, d, _ in snap.stale] == [("props", JAN10)]


def test_json_format_through_the_cli(history):
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    result = CliRunner().invoke(
        cli,
        [
            "monitor",
            "--spec",
            str(history),
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-11",
            "--format",
            "json",
            "--window-hours",
            "100000",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["remaining"] == 7 and {p["phase"] for p in data["phases"]} == {"raw", "analytics"}


def test_an_unknown_season_is_one_message(history):
    from click.testing import CliRunner

    from backfill_kit.cli.commands import cli

    result = CliRunner().invoke(cli, ["monitor", "--spec", str(history), "--season", "2030-31"])
    assert result.exit_code == 2 and "unknown season '2030-31'" in result.output and "s1, s2" in result.output


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make test")
def test_continuous_mode_refreshes_in_place_and_leaves_on_ctrl_c(history, tmp_path):
    session = f"monitor-{time.monotonic_ns()}"
    done = tmp_path / "exit-code"
    command = (
        f"{sys.executable} -c 'from backfill_kit.cli.commands import main; main()' monitor --spec {history} "
        f"--start 2024-01-01 --end 2024-01-11 --continuous --interval 0.5; echo $? > {done}; sleep 30"
    )
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "50", command], check=True)

    def stamps() -> list[str]:
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        return [line for line in screen.splitlines() if "mini monitor" in line]

    try:
        assert wait_until(lambda: stamps(), 30), "the monitor never drew"
        first = stamps()[0]
        # refreshed: a later look (its time to the second) drawn where the first was
        assert wait_until(lambda: stamps() not in ([], [first]), 30), "the monitor never refreshed"
        assert len(stamps()) == 1  # redrawn in place, not printed again below
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        assert "cells/h" in screen and "props" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        assert wait_until(done.exists, 10), "the monitor did not leave on Ctrl-C"
        assert done.read_text().strip() == "0"
        final = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        assert "monitor stopped" in final and "Traceback" not in final
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_continuous_mode_without_a_terminal_prints_look_after_look_as_plain_lines(history, tmp_path):
    """Into a file or a pipe it printed one look at the end, and its last line ran into
    'monitor stopped' ('...no runner at workmonitor stopped')."""
    out = tmp_path / "monitor.out"
    command = [
        str(Path(sys.executable).parent / "backfill-kit"), "monitor", "--spec", str(history),
        "--start", "2024-01-01", "--end", "2024-01-11", "--continuous", "--interval", "0.2",
    ]  # fmt: skip
    with out.open("w") as sink:
        monitor = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: out.read_text().count("mini monitor · ") >= 2, 60), out.read_text()
    finally:
        monitor.send_signal(signal.SIGINT)  # Ctrl-C
    assert monitor.wait(timeout=30) == 0
    text = out.read_text()
    assert "\x1b" not in text  # no cursor movement: plain lines
    assert text.splitlines()[-1] == "monitor stopped"
    looks = text.split("mini monitor · ")[1:]
    assert len(looks) >= 2 and all("No runner at work" in look and "Phases (" in look for look in looks)


def test_the_notebook_widget_refreshes_itself(history):
    pytest.importorskip("ipywidgets")
    from backfill_kit.monitor import monitor_widget

    widget = monitor_widget(history, JAN1, JAN11, interval=0.2, window_hours=100000)
    try:
        first = widget.status.value
        assert "props" in widget.view.value and "cells/h" in widget.view.value
        for _ in range(50):
            if widget.status.value != first:
                break
            time.sleep(0.1)
        assert widget.status.value != first  # the timer drew a newer look by itself
    finally:
        widget.stop()
    assert not widget._thread.is_alive()


def wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_notebook_widget_takes_dates_as_strings_and_a_spec_path_from_notebooks(history, monkeypatch):
    """As an analyst writes it in JupyterLab, whose kernel starts in notebooks/."""
    pytest.importorskip("ipywidgets")
    from backfill_kit.monitor import monitor_widget

    (history.parent / "pyproject.toml").write_text("")
    (history.parent / "notebooks").mkdir()
    monkeypatch.chdir(history.parent / "notebooks")
    widget = monitor_widget(history.name, "2024-01-01", "2024-01-11", interval=60, window_hours=100000)
    try:
        assert "refreshed" in widget.status.value and "props" in widget.view.value and "cells/h" in widget.view.value
    finally:
        widget.stop()


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2024-01-11", "2024-01-01", "the date range is reversed"),
        ("2024-13-01", "2024-01-11", "start '2024-13-01' is not a date"),
    ],
)
def test_the_notebook_widget_refuses_bad_dates_at_once(history, start, end, message):
    pytest.importorskip("ipywidgets")
    from backfill_kit.errors import InputError
    from backfill_kit.monitor import monitor_widget

    with pytest.raises(InputError, match=message):
        monitor_widget(history, start, end)


def test_a_failing_look_is_shown_with_its_cause_and_the_widget_stops(history):
    """A warehouse that went away: one message with the cause, and no more looks."""
    pytest.importorskip("ipywidgets")
    from backfill_kit.monitor import monitor_widget

    widget = monitor_widget(history, JAN1, JAN11, interval=0.1, window_hours=100000)
    try:
        history.with_suffix(".duckdb").unlink()
        assert wait_until(lambda: widget.stopped), widget.status.value
        assert wait_until(lambda: not widget._thread.is_alive())
        shown = widget.status.value
        assert "stopped at" in shown and "mini.duckdb" in shown and "does not exist" in shown
        assert "Fix the cause, then run the cell again" in shown and widget.failures == 1
        assert widget.status.value == shown and widget.failures == 1  # its timer thread has ended: not retried
        assert "props" in widget.view.value  # the last good look stays on screen
    finally:
        widget.stop()


def test_an_error_that_may_pass_is_tried_again_a_few_times_then_stops():
    """A warehouse busy for a moment (a retryable error) gets MAX_FAILURES looks in a row."""
    pytest.importorskip("ipywidgets")
    from backfill_kit.errors import WarehouseError
    from backfill_kit.monitor import MonitorWidget

    looks = []

    def busy():
        looks.append(time.monotonic())
        raise WarehouseError("cannot open the DuckDB warehouse w.duckdb: Could not set lock on file", retryable=True)

    widget = MonitorWidget(busy, interval=0.05).start()
    try:
        assert "trying again in 0.05 s" in widget.status.value and "(1 of 3)" in widget.status.value
        assert wait_until(lambda: widget.stopped)
        assert wait_until(lambda: not widget._thread.is_alive())  # no look can come after this
        assert len(looks) == widget.MAX_FAILURES == 3
        assert "stopped at" in widget.status.value and "Could not set lock on file" in widget.status.value
    finally:
        widget.stop()


def test_validate_monitor_and_reports_count_complete_and_done_alike(mini: MiniWarehouse):
    """A table whose source had nothing reads 0% complete and 100% done in every view, and the
    coverage report names the fallback that covers it (props on the demo's nbac_play_by_play)."""
    from backfill_kit.validation.summaries import no_data_rows
    from backfill_kit.validation.validator import validate

    for d in (JAN1, JAN2, JAN10):
        mini.games(d).rows("raw.backup_props", d, 1).run("PropsProcessor", d, "success", 0)  # no_data
    spec = mini.close()
    v = validate(str(spec), "2024-01-01", "2024-01-10", tables=["props"], now=NOW)
    summary = v.summary()[0]
    assert (summary.percent_complete, summary.percent_done) == (0.0, 100.0)
    snap = take_snapshot(load_spec(spec), JAN1, JAN10, now=NOW)
    props = next(t for t in snap.tables if t.table == "props")
    assert (props.expected, props.complete, props.done) == (3, 0, 3)
    assert (props.percent_complete, props.percent_done) == (0.0, 100.0)
    listed = v.to_dict()["summary"]["tables"][0]  # validate --format json
    assert (listed["percent_complete"], listed["percent_done"]) == (0.0, 100.0)
    assert no_data_rows(v.cells) == [
        {
            "table": "props",
            "no data": 3,
            "first": JAN1,
            "last": JAN10,
            "covered by fallback": "backup_props (3)",
            "not covered": 0,
        }
    ]
    text = subprocess.run(
        [
            str(Path(sys.executable).parent / "backfill-kit"),
            "monitor",
            "--spec",
            str(spec),
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-10",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "table (% complete / % done per season)" in text.stdout, text.stderr
    assert any(line.split()[:2] == ["props", "0.0%"] and "100%" in line for line in text.stdout.splitlines())


def test_a_range_runs_duration_is_spread_over_its_range_in_the_plans_estimate(mini: MiniWarehouse):
    """One 100 s run over four dates is 25 s a date, not 100 s on each: the monitor's estimate
    without a runner is the plan's, which counts a range run over its range."""
    from test_run_history import with_ranges

    for d in (JAN1, JAN2, JAN10, JAN11):
        mini.games(d).rows("raw.backup_props", d, 1)
    with_ranges(mini).run("BoxscoreProcessor", JAN11, "failed", range_=(JAN1, JAN11), took=timedelta(seconds=100))
    snap = take_snapshot(load_spec(mini.close()), JAN1, JAN11, now=NOW)
    # boxscore's four failed dates in one step: 4 x 25 s; no basis for the other tables.
    assert snap.eta.kind == "no runner" and snap.eta.high == pytest.approx(100.0)


def test_with_a_runner_at_work_the_eta_is_measured_from_its_journal(history, tmp_path):
    """The runner's plan, its journal's finished steps and what is left, whatever the run
    history says: the ETA is `eta.run_eta`'s, in the terminal and in JSON alike."""
    from backfill_kit.plan import build_plan
    from backfill_kit.running.eta import run_eta
    from backfill_kit.running.locks import LockSet, journal_lock
    from backfill_kit.running.steps import journal_run
    from backfill_kit.validation.validator import validate

    spec = load_spec(history)
    plan = build_plan(validate(spec, JAN1, JAN11, now=NOW))
    plan_path = history.parent / "runs" / "plan.json"
    plan.write(plan_path)
    first = plan.steps[0]
    at = NOW.replace(tzinfo=UTC)
    events = [
        {"event": "run_started", "time": (at - timedelta(seconds=30)).isoformat(), "plan": str(plan_path),
         "plan_sha": "x", "steps": len(plan.steps)},
        {"event": "step_started", "time": (at - timedelta(seconds=30)).isoformat(), "step": first.id,
         "table": first.table, "attempt": 1, "dates": len(first.dates)},
        {"event": "step_finished", "time": (at - timedelta(seconds=10)).isoformat(), "step": first.id,
         "table": first.table, "attempt": 1, "outcome": "succeeded", "seconds": 19.0},
    ]  # fmt: skip
    journal = plan_path.with_name("plan.journal.jsonl")
    journal.write_text("".join(json.dumps(e) + "\n" for e in events))
    locks = LockSet()
    locks.acquire(journal_lock(journal), "the journal")  # a runner at work holds it
    try:
        snap = take_snapshot(spec, JAN1, JAN11, now=at, journals=[journal])
    finally:
        locks.release()
    expected = run_eta(plan, journal_run(events), at)
    assert snap.eta == expected and expected.kind == "measured" and expected.low < expected.high
    assert snap.eta.text().startswith("ETA ") and "measured: 1 step of this run finished" in snap.eta.text()
    (runner,) = snap.runners
    assert runner.working and runner.steps.text() == "3 steps: 1 succeeded, 2 remaining"


def test_ctrl_c_during_a_warehouse_query_is_an_interrupt_not_a_failed_query():
    """DuckDB turns Ctrl-C during a query into its own InterruptException: read as a failed
    query, it made `monitor --continuous` exit 1 when the key landed mid-look."""
    import threading

    from backfill_kit.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(":memory:", read_only=False)
    threading.Timer(0.3, warehouse._con.interrupt).start()  # what SIGINT does to a running query
    with pytest.raises(KeyboardInterrupt):
        warehouse._run("coverage", "SELECT count(*) FROM range(100000000000) a", {})


def test_among_tables_equally_done_the_slowest_is_the_least_complete():
    """All raw tables done, one of them because it genuinely had nothing to load: that one is
    the phase's slowest, not the first by name."""
    from backfill_kit.validation.progress import CellCounts, TableProgress, phase_progress

    tables = [
        TableProgress("raw", "a_table", None, CellCounts(expected=4, complete=4, done=4)),
        TableProgress("raw", "z_table", None, CellCounts(expected=4, complete=0, done=4)),
    ]
    (raw,) = phase_progress(tables)
    assert (raw.percent_done, raw.slowest, raw.percent_complete, raw.cells.complete) == (100.0, "z_table", 0.0, 4)
