"""The benchmark's synthetic warehouse, at a tiny size: so `make bench` cannot rot silently.

No timing asserts: this checks that the generator still builds a spec the toolkit accepts and
a warehouse whose validation has the shape the benchmark relies on.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pytest

from backfill_kit.spec.load import load_spec
from backfill_kit.validation.validator import validate

BENCH = Path(__file__).resolve().parents[1] / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("backfill_kit_bench_run", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def syn(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return bench.build_synthetic(tmp_path_factory.mktemp("synthetic"), seasons=2, tables=6)


def test_synthetic_validates_one_cell_per_table_and_expected_date(bench: ModuleType, syn: Any) -> None:
    result = validate(load_spec(syn.spec_path), syn.start, syn.end)

    assert len(result.queries) == 3
    assert sorted(q.purpose for q in result.queries) == ["calendar", "coverage", "run_history"]  # any order
    assert [d.date for d in result.days] == list(syn.expected_dates)
    ids = [t.id for t in syn.tables]
    assert sorted((c.table, c.date) for c in result.cells) == sorted((t, d) for t in ids for d in syn.expected_dates)
    assert len(result.cells) == syn.cells == 6 * len(syn.expected_dates)


def test_synthetic_expected_dates_come_from_final_games_inside_seasons(bench: ModuleType, syn: Any) -> None:
    windows = bench.season_windows(2)
    assert all(any(s <= d <= e for _, s, e in windows) for d in syn.expected_dates)
    assert 2 * 150 < len(syn.expected_dates) < 2 * 190  # about 170 game dates a season
    con = duckdb.connect(str(syn.db_path), read_only=True)
    try:
        finals = {
            d for (d,) in con.execute("SELECT DISTINCT game_date FROM sched.schedule WHERE game_status = 3").fetchall()
        }
    finally:
        con.close()
    assert set(syn.expected_dates) < finals  # preseason finals exist but are outside the seasons


def test_synthetic_plants_every_kind_of_gap(bench: ModuleType, syn: Any) -> None:
    statuses = {str(s) for s in validate(load_spec(syn.spec_path), syn.start, syn.end).counts()}
    # Deterministic (DuckDB's hash of table, date and seed): a benchmark of only complete
    # cells would skip the classification paths it is meant to time.
    assert statuses >= {"complete", "partial", "bootstrap", "failed", "never_ran", "no_data", "lost", "stale"}


def test_floor_counts_match_the_toolkit_coverage(bench: ModuleType, syn: Any) -> None:
    sql = bench.floor_sql(bench.spec_targets(syn.spec_path), syn.start, syn.end)
    con = duckdb.connect(str(syn.db_path), read_only=True)
    try:
        floor_rows = sum(n for _, _, n in con.execute(sql).fetchall())
    finally:
        con.close()
    assert floor_rows == syn.rows  # the floor reads every row, including the TIMESTAMP table's


def test_the_eta_benchmark_judges_the_look_nearest_each_moment():
    """bench/eta.py's verdicts, on looks made up for it: no timing, only its arithmetic."""
    from datetime import UTC, datetime, timedelta

    path = Path(__file__).resolve().parents[1] / "bench" / "eta.py"
    spec = importlib.util.spec_from_file_location("backfill_kit_bench_eta", path)
    assert spec is not None and spec.loader is not None
    eta = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eta)
    began = datetime(2026, 1, 1, tzinfo=UTC)
    looks = [
        {"taken_at": (began + timedelta(seconds=t)).isoformat(), "eta": {"kind": "measured", "low_seconds": lo,
         "high_seconds": hi, "basis": "b"}}
        for t, lo, hi in ((24, 70, 80), (51, 40, 60), (76, 10, 40))
    ]  # fmt: skip
    rows = eta.verdicts(looks, began, began + timedelta(seconds=100))
    assert [(r["at"], r["left"], r["inside"]) for r in rows] == [
        ("24%", 76, True),
        ("51%", 49, True),
        ("76%", 24, True),
    ]
    assert [round(r["half_width"], 2) for r in rows] == [0.07, 0.2, 0.6]
