"""Re-checking a finished step's dates in the warehouse, off the runner's loop.

A job that exited 0 is only as good as the rows it left, so each one's dates are counted again
(one query). The query runs in a worker thread: the runner goes on polling, starting and
timing out the other steps meanwhile. A warehouse that is busy (DuckDB's single-writer lock,
held by another job for as long as it writes) is waited for and asked again until the step's
time limit is spent; only then is there no verdict, and `--resume` re-checks the step.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from backfill_kit.errors import BackfillKitError, WarehouseError
from backfill_kit.plan import Plan, Step

if TYPE_CHECKING:
    from backfill_kit.spec.model import PipelineSpec

__all__ = ["ATTEMPT_WAIT", "Checker", "Recheck", "Rechecks", "Verdict", "warehouse_checker"]

ATTEMPT_WAIT = 1.0  # seconds one attempt waits for a busy warehouse before it is asked again
WORKERS = 4  # re-checks at once: each is one short query


@dataclass(frozen=True)
class Recheck:
    """What the warehouse holds on a finished step's dates."""

    with_rows: frozenset[date]
    # The dates its dependents may build on: with rows, or covered by the table's fallback, or
    # every date of an optional table (the planner's rule for an upstream). None: `with_rows`.
    feeding: frozenset[date] | None = None

    def unfed(self, dates: Iterable[date]) -> frozenset[date]:
        """The dates its dependents must not be run over: nothing there for them to read."""
        return frozenset(dates) - (self.with_rows if self.feeding is None else self.feeding)


Checker = Callable[[Step], Recheck]


def warehouse_checker(plan: Plan, spec: PipelineSpec | None = None) -> Checker | None:
    """The one-query re-check of a finished step, against the plan's spec (`spec`, when the
    caller has already loaded it) and warehouse."""
    if not plan.spec_path:
        return None
    from backfill_kit.spec.load import load_spec

    checked = spec or load_spec(plan.spec_path)
    return lambda step: spec_recheck(checked, step)


def spec_recheck(spec: PipelineSpec, step: Step, lock_wait_seconds: float = ATTEMPT_WAIT) -> Recheck:
    """The step's dates with rows; where some are empty, those its table's fallback fills."""
    from backfill_kit.validation.validator import dates_with_rows
    from backfill_kit.warehouse import open_warehouse

    table = spec.table(step.table)
    warehouse = open_warehouse(spec, lock_wait_seconds=lock_wait_seconds)
    try:
        with_rows = dates_with_rows(spec, step.table, step.dates, warehouse=warehouse)
        empty = sorted(set(step.dates) - with_rows)
        if table.priority == "optional":  # never holds a dependent back
            return Recheck(with_rows, frozenset(step.dates))
        if empty and table.fallback:
            return Recheck(with_rows, with_rows | dates_with_rows(spec, table.fallback, empty, warehouse=warehouse))
        return Recheck(with_rows)
    finally:
        warehouse.close()


@dataclass(frozen=True)
class Verdict:
    """A re-check's answer, or, when there is none, why."""

    recheck: Recheck | None
    error: str = ""
    seconds: float = 0.0


class Rechecks:
    """Re-checks in worker threads. `submit` starts one; `finished` and `waiting` are asked by
    the runner's loop, which never blocks on them."""

    def __init__(self, checker: Checker, workers: int = WORKERS) -> None:
        self._checker = checker
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="backfill-kit-recheck")
        self._futures: dict[str, Future[Verdict]] = {}
        self._waiting: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._cancel = threading.Event()

    def submit(self, key: str, step: Step, deadline: float) -> None:
        """Re-check `step` until it answers or `deadline` (time.monotonic) passes."""
        self._futures[key] = self._pool.submit(self._check, key, step, deadline)

    def __len__(self) -> int:
        return len(self._futures)

    def finished(self) -> list[tuple[str, Verdict]]:
        done = [key for key, future in self._futures.items() if future.done()]
        return [(key, self._futures.pop(key).result()) for key in done]

    def waiting(self) -> list[tuple[str, str]]:
        """The re-checks that found the warehouse busy since last asked, each once: (key, why)."""
        out = []
        while True:
            try:
                out.append(self._waiting.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Give up on every re-check still waiting (their steps stay to be re-checked on resume)."""
        self._cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._futures.clear()

    def _check(self, key: str, step: Step, deadline: float) -> Verdict:
        began = time.monotonic()
        pause, said = 0.05, False
        while True:
            try:
                return Verdict(self._checker(step), seconds=time.monotonic() - began)
            except WarehouseError as exc:
                if exc.retryable and not said:  # busy: say so once, whether or not time is left
                    self._waiting.put((key, str(exc)))
                    said = True
                if not exc.retryable or time.monotonic() >= deadline or self._cancel.is_set():
                    return Verdict(None, _waited(exc, began), time.monotonic() - began)
            except BackfillKitError as exc:
                return Verdict(None, str(exc), time.monotonic() - began)
            except Exception as exc:  # a re-check that cannot answer must not stop the run
                return Verdict(None, f"{type(exc).__name__}: {exc}", time.monotonic() - began)
            self._cancel.wait(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, ATTEMPT_WAIT)


def _waited(exc: WarehouseError, began: float) -> str:
    if not exc.retryable:
        return str(exc)
    return f"{exc} (still so after {time.monotonic() - began:.1f} s of waiting)"
