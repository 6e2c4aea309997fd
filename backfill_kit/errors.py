"""One exception root for everything backfill-kit raises on purpose.

A `BackfillKitError` is a user's problem (bad spec, bad input, a warehouse that does not match
the spec): the CLI prints its message and exits with its `exit_code` (2 unless the class says
otherwise), never a traceback. Native errors (DuckDB, BigQuery) are translated once, at the
backend boundary, with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BackfillKitError",
    "BackfillKitWarning",
    "InputError",
    "MissingDependencyError",
    "OutputError",
    "PreflightFailed",
    "Problem",
    "SpecError",
    "WarehouseError",
    "WarehouseMismatchError",
]


class BackfillKitError(Exception):
    """Root of every error the toolkit raises deliberately; its message says what to do."""

    exit_code = 2

    def _render_traceback_(self) -> list[str]:
        """How IPython shows it (JupyterLab, a papermill run): the message alone, as the CLI
        prints it. The toolkit's frames would only bury what the reader has to fix."""
        return [f"{type(self).__name__}: {self}"]


class InputError(BackfillKitError):
    """A command-line value is wrong (a malformed date, a reversed range, an unknown table)."""


class OutputError(InputError):
    """A file cannot be written where the user said; `reason` is why, for a caller that words
    the message its own way."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class MissingDependencyError(BackfillKitError):
    """An optional dependency is needed for this feature but is not installed."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'backfill-kit[{extra}]'"
        )


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where it is, what is wrong, what was expected."""

    file: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class SpecError(BackfillKitError):
    """The pipeline spec is invalid; `problems` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = len(problems)
        head = f"the pipeline spec has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))


class WarehouseError(BackfillKitError):
    """The warehouse refused or failed a query; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class PreflightFailed(BackfillKitError):
    """The quick preflight before a run failed: nothing was started. `checks` holds them all."""

    exit_code = 1

    def __init__(self, checks: Sequence[object]) -> None:
        self.checks = checks
        super().__init__(
            "preflight failed; nothing was started. Fix the failures, or pass --ignore-preflight "
            "(ignore_preflight=True from Python)."
        )


class WarehouseMismatchError(SpecError):
    """The spec names tables or columns the warehouse does not have."""


class BackfillKitWarning(UserWarning):
    """Something the toolkit works around and the user should know (a cache folder it will
    not trust): the CLI prints it as one line, `warning: ...`, on stderr."""
