"""The pipeline spec: its validated model, its loader, and the check of `calendar.filter`."""

from __future__ import annotations

from backfill_kit.spec import model
from backfill_kit.spec.model import *  # noqa: F403 -- the package's names are the model's

__all__ = model.__all__
