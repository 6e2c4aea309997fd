"""The checks of a spec that span fields: unique ids, references between tables, dependency
cycles, the calendar and the jobs. Each yields (field path, message); the loader adds the
file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any

from backfill_kit.errors import SpecError
from backfill_kit.spec.model import PipelineSpec
from backfill_kit.spec.placeholders import placeholder_names, placeholder_problem

__all__ = ["cross_table_problems", "filter_problems", "semantic_problems"]


def semantic_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    yield from cross_table_problems(spec)
    yield from _cycle_problems(spec)
    yield from _calendar_problems(spec)
    yield from _job_problems(spec)


def cross_table_problems(spec: Any) -> Iterator[tuple[str, str]]:
    """Checks that need only ids and references: they run on a skeleton of a broken spec too."""
    yield from _duplicate_problems(spec)
    yield from _reference_problems(spec)


def _duplicate_problems(spec: Any) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for p, phase in enumerate(spec.phases):
        for i, table in enumerate(phase.tables):
            if table.id in seen:
                yield f"phases[{p}].tables[{i}].id", f"table id {table.id!r} is declared twice; ids must be unique"
            seen.add(table.id)
    names = [phase.name for phase in spec.phases]
    for p, name in enumerate(names):
        if name in names[:p]:
            yield f"phases[{p}].name", f"phase name {name!r} is declared twice"


def _reference_problems(spec: Any) -> Iterator[tuple[str, str]]:
    order = {t.id: p for p, phase in enumerate(spec.phases) for t in phase.tables}
    known = ", ".join(order)
    for p, phase in enumerate(spec.phases):
        for i, table in enumerate(phase.tables):
            where = f"phases[{p}].tables[{i}]"
            listed_before = {t.id for t in phase.tables[:i]}
            for d, dep in enumerate(table.depends_on):
                if dep not in order:
                    yield f"{where}.depends_on[{d}]", f"depends on undefined table {dep!r}; declared tables: {known}"
                elif order[dep] > p:
                    yield (
                        f"{where}.depends_on[{d}]",
                        (
                            f"depends on {dep!r} of a later phase ({spec.phases[order[dep]].name!r}); "
                            "a table can depend only on its own or earlier phases"
                        ),
                    )
                elif order[dep] == p and phase.mode == "sequential" and dep not in listed_before:
                    yield (
                        f"{where}.depends_on[{d}]",
                        (
                            f"depends on {dep!r}, listed after it in the sequential phase {phase.name!r}; "
                            "a sequential phase runs its tables in the order listed, so list it first"
                        ),
                    )
            if table.fallback is not None and table.fallback not in order:
                yield (
                    f"{where}.fallback",
                    f"fallback {table.fallback!r} is not a declared table; declared tables: {known}",
                )
            elif table.fallback == table.id:
                yield f"{where}.fallback", "a table cannot be its own fallback"
            if table.date_column is None and spec.date_column is None:
                yield (
                    f"{where}.date_column",
                    "required: name the table's date column here or set a top-level date_column",
                )


def filter_problems(text: str, dialect: str) -> Iterator[tuple[str, str]]:
    from backfill_kit.spec.calendar_filter import filter_problem  # sqlglot, only for a spec with a filter

    if reason := filter_problem(text, dialect):
        yield "calendar.filter", f"{reason} (got {text!r})"


def _cycle_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    graph = {t.id: [d for d in t.depends_on if d in spec.table_positions] for t in spec.tables}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep] if dep in path else [node, dep]
            if dep not in state and (cycle := visit(dep, [*path, dep])):
                return cycle
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node, [node])):
            yield (
                f"{spec.field_path(cycle[0])}.depends_on",
                f"dependency cycle: {' -> '.join(cycle)}; remove one of these dependencies",
            )
            return


def _calendar_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    cal = spec.calendar
    if cal.filter:
        yield from filter_problems(cal.filter, spec.warehouse.backend)
    if cal.table is None and not cal.seasons:
        yield "calendar", "needs a schedule `table` or a list of `seasons` (or both)"
    for s, season in enumerate(cal.seasons):
        if season.end < season.start:
            yield (
                f"calendar.seasons[{s}].end",
                f"season {season.name!r} ends ({season.end}) before it starts ({season.start})",
            )
    ordered = sorted(cal.seasons, key=lambda s: s.start)
    for before, after in pairwise(ordered):
        if after.start <= before.end:
            yield "calendar.seasons", f"seasons {before.name!r} and {after.name!r} overlap"
    for p, phase in enumerate(spec.phases):
        if phase.bootstrap_days and not cal.seasons:
            yield f"phases[{p}].bootstrap_days", "needs calendar.seasons: bootstrap days count from each season's start"
    for t in spec.tables:
        if t.min_rows_per_game and not (cal.table and cal.game_id_column):
            yield (
                f"{spec.field_path(t.id)}.min_rows_per_game",
                "needs calendar.table and calendar.game_id_column to count games per date",
            )


def _job_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    yield from _placeholder_problems(spec)
    for table in spec.tables:
        where = f"{spec.field_path(table.id)}.job"
        try:
            job = spec.job_of(table)
        except SpecError as exc:
            yield exc.problems[0].field, exc.problems[0].message
            continue
        names = {name for arg in job.argv for name in placeholder_names(arg)}
        for needed in ("start", "end"):
            if needed not in names:
                yield f"{where}.argv", f"the argv must contain {{{needed}}} so the job is told its date range"


def _placeholder_problems(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    """Each argument's braces, where the file writes it (once, however many tables inherit it)."""
    levels = [("job_defaults", spec.job_defaults)]
    for p, phase in enumerate(spec.phases):
        levels.append((f"phases[{p}].job", phase.job))
        levels += [(f"phases[{p}].tables[{i}].job", table.job) for i, table in enumerate(phase.tables)]
    for where, job in levels:
        for a, arg in enumerate(job.argv or () if job is not None else ()):
            if problem := placeholder_problem(arg):
                yield f"{where}.argv[{a}]", problem
