"""backfill-kit: find every hole in a multi-phase warehouse pipeline, say why it is there, and
backfill it in the right order."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backfill_kit.common.status import Status
    from backfill_kit.errors import BackfillKitError, InputError, SpecError, WarehouseError
    from backfill_kit.spec.load import load_spec
    from backfill_kit.spec.model import PipelineSpec
    from backfill_kit.validation.validator import Cell, Validation, validate

__all__ = [
    "BackfillKitError",
    "Cell",
    "InputError",
    "PipelineSpec",
    "SpecError",
    "Status",
    "Validation",
    "WarehouseError",
    "load_spec",
    "validate",
]

__version__ = "0.1.0"

# Public names resolve on first use, so `import backfill_kit` (and `backfill-kit --help`)
# does not pay for the spec, the validator and the warehouse clients.
_HOME = {
    "BackfillKitError": "errors",
    "InputError": "errors",
    "SpecError": "errors",
    "WarehouseError": "errors",
    "PipelineSpec": "spec.model",
    "load_spec": "spec.load",
    "Status": "common.status",
    "Cell": "validation",
    "Validation": "validation",
    "validate": "validation",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
