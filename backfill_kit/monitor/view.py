"""The monitor as a person reads it: one renderable redrawn in place, in a terminal or a widget,
and the loop that keeps looking."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from backfill_kit.common.formatting import percent_text, printable

if TYPE_CHECKING:
    from rich.console import Console

    from backfill_kit.monitor.snapshot import RunnerPosition, Snapshot

__all__ = ["looks", "snapshot_view", "watch"]


def looks(look: Callable[[], Snapshot], interval: float, *, continuous: bool) -> Iterator[Snapshot]:
    """One look, or, when continuous, one every `interval` seconds until interrupted."""
    yield look()
    while continuous:
        time.sleep(interval)
        yield look()


def watch(look: Callable[[], Snapshot], interval: float, console: Console) -> None:
    """Every `interval` seconds until Ctrl-C: redrawn in place in a terminal; one look after
    another, plain, where output goes to a file or a pipe (a redraw there kept only the last
    look, and the last line ran into 'monitor stopped')."""
    shots = looks(look, interval, continuous=True)
    try:
        if console.is_terminal:
            _redrawn(shots, console)
        else:
            for snap in shots:
                console.print(snapshot_view(snap))
                console.print()
    except KeyboardInterrupt:
        console.print("monitor stopped")


def _redrawn(shots: Iterator[Snapshot], console: Console) -> None:
    from rich.live import Live

    with Live(snapshot_view(next(shots)), console=console, auto_refresh=False) as live:
        for snap in shots:
            live.update(snapshot_view(snap), refresh=True)


def snapshot_view(snap: Snapshot) -> Any:
    """Everything the monitor shows, as one renderable: redrawn in place when continuous."""
    from rich.console import Group

    from backfill_kit.validation.progress import PHASE_RULE, phase_table

    parts: list[Any] = [
        f"[bold]{snap.spec}[/] monitor · {snap.start} .. {snap.end} · {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"Phases ({PHASE_RULE})",
        phase_table(snap.phases),
        "",
        _season_matrix(snap),
        "",
        _cells_line(snap),
        escape(printable(snap.eta.text())),
    ]
    parts += _problems(snap)
    return Group(*parts)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _season_matrix(snap: Snapshot) -> Any:
    from rich.table import Table

    seasons = list(dict.fromkeys(t.season for t in snap.tables))
    matrix = Table(box=None, header_style="bold", pad_edge=False)
    matrix.add_column("table (% complete / % done per season)")
    for season in seasons:
        matrix.add_column(season or "all", justify="right")
    matrix.add_column("remaining", justify="right")
    by_table: dict[str, dict[Any, Any]] = {}
    for t in snap.tables:
        by_table.setdefault(t.table, {})[t.season] = t
    for table, cells in by_table.items():
        values = [
            f"{percent_text(cells[s].percent_complete)} / {percent_text(cells[s].percent_done)}" if s in cells else "-"
            for s in seasons
        ]
        matrix.add_row(table, *values, f"{sum(c.remaining for c in cells.values()):,}")
    return matrix


def _cells_line(snap: Snapshot) -> str:
    t = snap.total
    return (
        f"Cells: {t.expected:,} expected, {t.complete:,} complete, {t.done:,} done, {t.remaining:,} remaining, "
        f"{t.failed:,} failed · rate {snap.rate_per_hour:,.1f} cells/h over the last {snap.window_hours:g} h"
    )


def _problems(snap: Snapshot) -> list[str]:
    lines: list[str] = []
    if snap.failures:
        lines.append(f"\n[red]Failures in the last {snap.window_hours:g} h ({len(snap.failures):,})[/]")
        lines += [
            f"  {f.table} {f.date} at {f.finished_at:%H:%M}: {escape(printable(f.error))}" for f in snap.failures[-10:]
        ]
    if snap.stale:
        lines.append(f"\n[red]Orphaned running rows ({len(snap.stale):,})[/]: started, never finished; rerun them")
        lines += [f"  {t} {d} started {s}" for t, d, s in snap.stale[:10]]
    for r in snap.runners:
        lines.append(_runner_line(r))
    return lines


def _runner_line(r: RunnerPosition) -> str:
    if r.problem:
        return f"\n[red]Journal {escape(r.journal)} cannot be read[/]: {escape(printable(r.problem))}"
    if r.working:
        running = ", ".join(r.running) or "none"
        return f"\nRunner at stage {r.stage} ({r.phase}), {r.steps.text()}; running: {escape(running)}"
    return f"\nJournal {escape(r.journal)}: {r.steps.text()}; no runner at work"
