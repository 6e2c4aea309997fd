"""The pipeline spec: its objects (model), what their fields accept (constraints), loading a
file (load), the checks across fields (checks) and the check of `calendar.filter`."""

from __future__ import annotations

from backfill_kit.spec import model
from backfill_kit.spec.load import load_spec, parse_spec
from backfill_kit.spec.model import *  # noqa: F403 -- the package's names are the model's and the loader's

__all__ = [*model.__all__, "load_spec", "parse_spec"]
