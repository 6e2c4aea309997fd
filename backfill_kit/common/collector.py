"""Holding Python's cycle collector while the toolkit builds large, cycle-free structures."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["no_gc_pauses"]


@contextmanager
def no_gc_pauses() -> Iterator[None]:
    """Hold the cycle collector meanwhile. Building hundreds of thousands of tuples, dicts and
    steps (none of them in a cycle) otherwise triggers repeated full passes over everything
    already built: a third of a validation's time at 10 seasons x 100 tables. The collector
    runs again as it was afterwards; nothing it would have freed is kept."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
