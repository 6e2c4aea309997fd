"""The monitor as a person reads it: one renderable redrawn in place, in a terminal or a widget,
and the loop that keeps looking."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from backfill_kit.common.formatting import duration_text, percent_text, printable

if TYPE_CHECKING:
    from rich.console import Console

    from backfill_kit.monitor.snapshot import Snapshot

__all__ = ["looks", "snapshot_view", "watch"]


def looks(look: Callable[[], Snapshot], interval: float, *, continuous: bool) -> Iterator[Snapshot]:
    """One look, or, when continuous, one every `interval` seconds until interrupted."""
    yield look()
    while continuous:
        time.sleep(interval)
        yield look()


def watch(look: Callable[[], Snapshot], interval: float, console: Console) -> None:
    """The live terminal view: redrawn in place every `interval` seconds until Ctrl-C."""
    from rich.live import Live

    shots = looks(look, interval, continuous=True)
    try:
        with Live(snapshot_view(next(shots)), console=console, auto_refresh=False) as live:
            for snap in shots:
                live.update(snapshot_view(snap), refresh=True)
    except KeyboardInterrupt:
        console.print("monitor stopped")


def snapshot_view(snap: Any) -> Any:
    """Everything the monitor shows, as one renderable: redrawn in place when continuous."""
    from rich.console import Group
    from rich.table import Table

    parts: list[Any] = [
        f"[bold]{snap.spec}[/] monitor · {snap.start} .. {snap.end} · {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC"
    ]
    phases = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (
        ("phase", "left"),
        ("% done", "right"),
        ("slowest table", "left"),
        ("complete", "right"),
        ("done", "right"),
        ("expected", "right"),
    ):
        phases.add_column(name, justify=justify)  # type: ignore[arg-type]
    for p in snap.phases:
        phases.add_row(p.phase, percent_text(p.percent), p.slowest, f"{p.complete:,}", f"{p.done:,}", f"{p.expected:,}")
    parts += ["", phases, "", _season_matrix(snap), "", _pace(snap)]
    parts += _problems(snap)
    return Group(*parts)


def _season_matrix(snap: Any) -> Any:
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
            f"{percent_text(cells[s].percent_complete)} / {percent_text(cells[s].percent)}" if s in cells else "-"
            for s in seasons
        ]
        matrix.add_row(table, *values, f"{sum(c.remaining for c in cells.values()):,}")
    return matrix


def _pace(snap: Any) -> str:
    if snap.eta_seconds is None:
        eta = "unknown (no past durations in the run history)"
    elif snap.remaining == 0:
        eta = "done"
    else:
        eta = f"{duration_text(snap.eta_seconds[0], with_seconds=False)} to {duration_text(snap.eta_seconds[1], with_seconds=False)}"
    return (
        f"Rate: {snap.rate_per_hour:,.1f} cells/h over the last {snap.window_hours:g} h · "
        f"remaining {snap.remaining:,} cells · ETA {eta}"
    )


def _problems(snap: Any) -> list[str]:
    from rich.markup import escape

    lines: list[str] = []
    if snap.failures:
        lines.append(f"\n[red]Failures in the last {snap.window_hours:g} h ({len(snap.failures)})[/]")
        lines += [
            f"  {f.table} {f.date} at {f.finished_at:%H:%M}: {escape(printable(f.error))}" for f in snap.failures[-10:]
        ]
    if snap.stale:
        lines.append(f"\n[red]Orphaned running rows ({len(snap.stale)})[/]: started, never finished; rerun them")
        lines += [f"  {t} {d} started {s}" for t, d, s in snap.stale[:10]]
    for r in snap.runners:
        if r.problem:
            lines.append(f"\n[red]Journal {escape(r.journal)} cannot be read[/]: {escape(printable(r.problem))}")
        elif r.working:
            running = ", ".join(r.running) or "none"
            lines.append(f"\nRunner at stage {r.stage} ({r.phase}), {r.done}/{r.total} steps done, running: {running}")
        else:
            lines.append(f"\nJournal {escape(r.journal)}: {r.done}/{r.total} steps done, no runner at work")
    return lines
