"""`python -m backfill_kit`: the command line, for callers that hold an interpreter, not a PATH
(an Airflow task runs `validate` this way)."""

from __future__ import annotations

from backfill_kit.cli import main

if __name__ == "__main__":
    main()
