"""Build the demo DuckDB warehouse: four NBA seasons in the state of the 2025-11-30 hand-off.

Phase 2 is complete except where real life left holes, phase 3 covers the last two seasons,
phase 4 is empty, and the run history holds every kind of gap the toolkit must explain:
never ran, genuine no-data, failed then retried, failed rerun (rows kept or deleted), crashed
runs, a partial date and phase 4 history lost to partition expiration. Everything is
deterministic by seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import duckdb

from backfill_kit.common.outputs import replacing
from backfill_kit.demo import tables
from backfill_kit.demo.tables import PHASE_ANALYTICS, PHASE_PRECOMPUTE, PHASE_RAW, TABLES

__all__ = ["NEVER_RAN", "NEVER_RAN_WINDOW", "WarehouseSummary", "build_demo_warehouse"]

FIRST_DAY = date(2021, 10, 19)
LAST_DAY = date(2025, 6, 22)
ANALYTICS_START = date(2023, 10, 24)  # phase 3 ran for 2023-24 and 2024-25 only
NEVER_RAN_WINDOW = (date(2021, 10, 19), date(2021, 11, 1))
NEVER_RAN = ("nbac_team_boxscore", "bettingpros_player_points_props",
             "bigdataball_play_by_play", "odds_api_game_lines")  # fmt: skip
LOST_WINDOW = (date(2024, 11, 5), date(2024, 12, 31))  # player_daily_cache, expired partitions
SEASON_2022_23 = (date(2022, 10, 18), date(2023, 6, 12))

Counts = dict[str, dict[date, int]]


@dataclass(frozen=True)
class WarehouseSummary:
    """What was built: rows per table and run-history rows."""

    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    run_history_rows: int = 0


@dataclass(frozen=True)
class _Plant:
    """One extra run planted in the history (a failure, a crash, a rerun)."""

    table_id: str
    data_date: date
    status: str
    started_at: datetime
    records: int | None = None
    error: tuple[str, str] | None = None
    failure_category: str | None = None
    backfill_mode: bool = True
    trigger_source: str = "backfill"
    deletes_rows: bool = False  # the run deleted the date's rows before it failed or crashed
    range_first: date | None = None  # a range run: from this date to data_date, in one row
    skip_reason: str | None = None

    @property
    def dates(self) -> tuple[date, ...]:
        return (self.data_date,) if self.range_first is None else (self.range_first, self.data_date)


def build_demo_warehouse(path: Path, *, seed: int = 7) -> WarehouseSummary:
    """Create (or replace) the demo warehouse at `path`; a crash leaves no half-written file
    (common/outputs.py), and only a regular file is ever replaced."""
    path = Path(path)
    with replacing(path, what="the demo warehouse", hint="choose another folder") as building:
        with _connect(building) as con:
            summary = _populate(con, path, seed)
        _remove(path.with_name(path.name + ".wal"))  # an old WAL would be replayed on the new file
    return summary


@contextmanager
def _connect(target: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(target))
    con.execute("SET enable_progress_bar = false")  # print nothing, even on a terminal
    try:
        yield con
    finally:
        con.close()


def _remove(p: Path) -> None:
    for candidate in (p, p.with_name(p.name + ".wal")):
        candidate.unlink(missing_ok=True)


def _populate(con: duckdb.DuckDBPyConnection, path: Path, seed: int) -> WarehouseSummary:
    for schema in ("nba_raw", "nba_analytics", "nba_precompute", "nba_predictions", "nba_reference"):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    tables.ensure_tables(con)
    tables.ensure_run_history(con)
    tables.ensure_demo_settings(con, seed)
    rng = random.Random(f"{seed}:warehouse")
    counts = _build_raw(con, seed)
    _plant_partial_boxscore(con, counts, rng)
    counts |= _build_analytics(con, seed)
    _stage_daily_runs(con, counts, seed)
    _stage_range_runs(con, counts, seed)
    plants = _choose_plants(counts, rng)
    _apply_plants(con, plants)
    _stage_lost_cache(con, seed)
    _write_run_history(con, seed)
    return _summary(con, path)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _build_raw(con: duckdb.DuckDBPyConnection, seed: int) -> Counts:
    counts: Counts = {"nbac_schedule": tables.build(con, "nbac_schedule", date(2021, 10, 1), LAST_DAY, seed=seed)}
    for t in TABLES.values():
        if t.phase != PHASE_RAW or t.id == "nbac_schedule":
            continue
        # Four scrapers never ran for the first two weeks of 2021-22: no rows, no history.
        start = NEVER_RAN_WINDOW[1] + timedelta(1) if t.id in NEVER_RAN else FIRST_DAY
        counts[t.id] = tables.build(con, t.id, start, LAST_DAY, seed=seed)
    return counts


def _build_analytics(con: duckdb.DuckDBPyConnection, seed: int) -> Counts:
    return {
        t.id: tables.build(con, t.id, ANALYTICS_START, LAST_DAY, seed=seed)
        for t in TABLES.values()
        if t.phase == PHASE_ANALYTICS
    }


def _plant_partial_boxscore(con: duckdb.DuckDBPyConnection, counts: Counts, rng: random.Random) -> date:
    """A mid-season 2023-24 date with 8 games where the box score saved 2 of 16 teams."""
    candidates = [
        r[0]
        for r in con.execute(
            f"SELECT game_date FROM {tables.SCHEDULE_TABLE} WHERE {tables.GAME_FILTER} "
            "AND game_date BETWEEN DATE '2023-12-01' AND DATE '2024-02-29' "
            "GROUP BY game_date HAVING count(DISTINCT game_id) = 8 ORDER BY game_date"
        ).fetchall()
    ]
    day: date = rng.choice(candidates)
    con.execute(
        "DELETE FROM nba_raw.nbac_team_boxscore WHERE game_date = $d AND game_id <> "
        "(SELECT min(game_id) FROM nba_raw.nbac_team_boxscore WHERE game_date = $d)",
        {"d": day},
    )
    counts["nbac_team_boxscore"][day] = 2
    return day


# --------------------------------------------------------------------------------------------
# Run history (staged in a temp table, then written with one INSERT ... SELECT)
# --------------------------------------------------------------------------------------------

_STAGE_COLUMNS = """processor_name VARCHAR, phase VARCHAR, data_date DATE, range_start DATE, range_end DATE,
    status VARCHAR, started_at TIMESTAMP, duration_seconds DOUBLE, records_processed BIGINT, errors VARCHAR,
    failure_category VARCHAR, skip_reason VARCHAR, backfill_mode BOOLEAN, trigger_source VARCHAR"""
RANGE_SEASON = (date(2023, 10, 24), date(2024, 6, 17))  # phase 3 was backfilled in range runs


def _stage_daily_runs(con: duckdb.DuckDBPyConnection, counts: Counts, seed: int) -> None:
    """The original runs: one per table and date, the morning after the games; a source with
    nothing for the date records it its own way (tables.NO_DATA_OUTCOMES). Phase 3 dates of
    RANGE_SEASON are left to `_stage_range_runs`."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _bk_runs ({_STAGE_COLUMNS})")
    items = [
        (t, d, n)
        for t, per_date in counts.items()
        for d, n in per_date.items()
        if not (TABLES[t].phase == PHASE_ANALYTICS and RANGE_SEASON[0] <= d <= RANGE_SEASON[1])
    ]
    outcomes = [tables.NO_DATA_OUTCOMES.get(t, tables.NO_DATA) if n == 0 else None for t, _, n in items]
    con.execute(
        """
        INSERT INTO _bk_runs
        SELECT processor_name, phase, data_date, NULL, NULL, COALESCE(status, 'success'),
               data_date + INTERVAL 1 DAY + to_hours(CASE phase WHEN $raw THEN 8 ELSE 9 END)
                 + to_seconds((hash($seed, processor_name, data_date, 'start') % 3600)::BIGINT),
               CASE phase WHEN $raw THEN 5 ELSE 20 END
                 + (hash($seed, processor_name, data_date, 'dur') % 9000) / 100.0,
               records, NULL, category, skip, FALSE, 'scheduler'
        FROM (SELECT unnest($p::VARCHAR[]) AS processor_name, unnest($ph::VARCHAR[]) AS phase,
                     unnest($d::DATE[]) AS data_date, unnest($n::BIGINT[]) AS records,
                     unnest($status::VARCHAR[]) AS status, unnest($cat::VARCHAR[]) AS category,
                     unnest($skip::VARCHAR[]) AS skip)
        """,
        {"raw": PHASE_RAW, "seed": seed, "p": [TABLES[t].processor for t, _, _ in items],
         "ph": [TABLES[t].phase for t, _, _ in items], "d": [d for _, d, _ in items],
         "n": [n for _, _, n in items], "status": [o and o.status for o in outcomes],
         "cat": [o and o.failure_category for o in outcomes], "skip": [o and o.skip_reason for o in outcomes]},
    )  # fmt: skip
    # The error text of a failed no-data run names its date, as the real processors' do.
    con.execute(
        """
        UPDATE _bk_runs SET errors = to_json([{'error_type': 'NoDataAvailableError',
            'error_message': CASE processor_name WHEN 'OddsApiPropsProcessor'
                THEN 'The Odds API returned no player points props for ' ELSE 'BigDataBall has not published play-by-play for ' END
                || strftime(data_date, '%Y-%m-%d'),
            'timestamp': strftime(started_at + to_seconds(duration_seconds::BIGINT), '%Y-%m-%dT%H:%M:%S')}])::VARCHAR
        WHERE failure_category = 'no_data_available'
        """
    )


def _stage_range_runs(con: duckdb.DuckDBPyConnection, counts: Counts, seed: int) -> None:
    """Phase 3 of RANGE_SEASON was backfilled in November 2025, the production way: one run per
    range of up to a month, one row dated at the range's end with the range beside it."""
    rng = random.Random(f"{seed}:ranges")
    started = datetime(2025, 11, 3, 14, 0)
    rows = []
    for table_id in (t.id for t in TABLES.values() if t.phase == PHASE_ANALYTICS):
        season = sorted(d for d in counts[table_id] if RANGE_SEASON[0] <= d <= RANGE_SEASON[1])
        for chunk in tables.range_chunks(season):
            seconds = 144.0 * len(chunk) * rng.uniform(0.8, 1.2)  # ~25 dates an hour
            rows.append(
                (
                    TABLES[table_id].processor,
                    chunk[0],
                    chunk[-1],
                    started,
                    seconds,
                    sum(counts[table_id][d] for d in chunk),
                )
            )
            started += timedelta(seconds=seconds + rng.randint(5, 60))
    con.executemany(
        "INSERT INTO _bk_runs VALUES (?, ?, ?, ?, ?, 'success', ?, ?, ?, NULL, NULL, NULL, TRUE, 'backfill')",
        [(p, PHASE_ANALYTICS, last, first, last, t0, dur, n) for p, first, last, t0, dur, n in rows],
    )


_FIRST_RUN_ERRORS = (
    ("ReadTimeout", "HTTPSConnectionPool(host='stats.nba.com', port=443): Read timed out. (read timeout=30)"),
    ("BadRequest", "400 Error while reading data, error message: JSON table encountered too many "
                   "errors, giving up. Rows: 1; errors: 1."),
    ("ValueError", "Expected 2 team sections in the payload, found 1"),
)  # fmt: skip
_RERUN_KEPT_ERROR = ("Forbidden", "403 Exceeded rate limits: too many table update operations for "
                                  "this table. For more information, see "
                                  "https://cloud.google.com/bigquery/docs/troubleshoot-quotas")  # fmt: skip
_RERUN_DELETED_ERROR = ("BadRequest", "400 Quota exceeded: Your table exceeded quota for Number of "
                                      "partition modifications to a column partitioned table "
                                      "(load failed after the partition was deleted)")  # fmt: skip


def _pick(
    rng: random.Random, counts: Counts, table_ids: Sequence[str], k: int, used: set[date],
    lo: date = FIRST_DAY, hi: date = LAST_DAY,
) -> list[tuple[str, date]]:  # fmt: skip
    """k (table, date) pairs, tables in turn, on distinct dates where the table has rows."""
    picks = []
    for n in range(k):
        table_id = table_ids[n % len(table_ids)]
        dates = sorted(d for d, c in counts[table_id].items() if c > 0 and lo <= d <= hi and d not in used)
        d = rng.choice(dates)
        used.add(d)
        picks.append((table_id, d))
    return picks


def _nov_2025(rng: random.Random, first_day: int, last_day: int) -> datetime:
    day = date(2025, 11, rng.randint(first_day, last_day))
    return datetime.combine(day, time(rng.randint(1, 22), rng.randint(0, 59), rng.randint(0, 59)))


def _choose_plants(counts: Counts, rng: random.Random) -> list[_Plant]:
    used = {d for d, c in counts["nbac_team_boxscore"].items() if c == 2}  # keep the partial date clean
    used |= {d for d in counts["nbac_gamebook_player_stats"] if d <= NEVER_RAN_WINDOW[1]}
    season_end_2023 = SEASON_2022_23[1]
    fail_tables = ("nbac_gamebook_player_stats", "nbac_team_boxscore", "bdl_player_boxscores",
                   "bettingpros_player_points_props", "odds_api_game_lines")  # fmt: skip
    plants: list[_Plant] = []
    # The first run failed, the scheduled retry an hour later succeeded (rows present).
    for table_id, d in _pick(rng, counts, fail_tables, 5, used):
        start = datetime.combine(d + timedelta(1), time(7, rng.randint(0, 40), rng.randint(0, 59)))
        plants.append(_Plant(table_id, d, "failed", start, 0, rng.choice(_FIRST_RUN_ERRORS),
                             "processing_error", False, "scheduler"))  # fmt: skip
    # A backfill rerun after a success failed; the rows stayed.
    for table_id, d in _pick(rng, counts, fail_tables[::-1], 3, used):
        plants.append(_Plant(table_id, d, "failed", _nov_2025(rng, 10, 20), 0, _RERUN_KEPT_ERROR,
                             "processing_error"))  # fmt: skip
    # A backfill rerun after a success deleted the partition, then failed: no rows left.
    deleted = ("nbac_gamebook_player_stats", "bettingpros_player_points_props", "nbac_team_boxscore")
    for table_id, d in _pick(rng, counts, deleted, 3, used, hi=season_end_2023):
        plants.append(_Plant(table_id, d, "failed", _nov_2025(rng, 10, 20), 0, _RERUN_DELETED_ERROR,
                             "processing_error", deletes_rows=True))  # fmt: skip
    # Crashed runs: only their `running` row, days old, on dates without rows. The scheduler's
    # next pass skipped the date as `already_processed`: no evidence about the data.
    for table_id, d in _pick(rng, counts, ("bigdataball_play_by_play",), 1, used, *SEASON_2022_23):
        plants.append(_Plant(table_id, d, "running", _nov_2025(rng, 24, 27), deletes_rows=True))
        plants.append(
            _Plant(
                table_id,
                d,
                "skipped",
                datetime(2025, 11, 28, 6, 5),
                0,
                backfill_mode=False,
                trigger_source="scheduler",
                skip_reason="already_processed",
            )
        )
    plants += _analytics_plants(rng, counts, used)
    return plants


def _analytics_plants(rng: random.Random, counts: Counts, used: set[date]) -> list[_Plant]:
    """Phase 3 never ran for 2022-23, except two crashes and a few failed backfill tests, two of
    them range runs (one row for the whole range, as production writes them)."""
    season = sorted(d for d in counts["nbac_gamebook_player_stats"] if SEASON_2022_23[0] <= d <= SEASON_2022_23[1])
    free = [d for d in season if d not in used]
    days = sorted(rng.sample(free[: len(free) // 2], 6))
    # A range of 3 (crash) or 5 (failure) expected dates ending at the chosen date.
    first = {days[1]: season[max(0, season.index(days[1]) - 2)], days[2]: season[max(0, season.index(days[2]) - 4)]}
    used.update(d for d in season if any(first.get(e, e) <= d <= e for e in days))
    plants = [
        _Plant(t, d, "running", _nov_2025(rng, 24, 27), range_first=first.get(d))
        for t, d in zip(("player_game_summary", "upcoming_player_game_context"), days[:2], strict=True)
    ]
    upstream = ("team_defense_game_summary", "team_offense_game_summary", "player_game_summary",
                "upcoming_team_game_context")  # fmt: skip
    for table_id, d in zip(upstream, days[2:], strict=True):
        start = _nov_2025(rng, 12, 22)
        # Backfill mode still applied the daily freshness check to years-old upstream data.
        source = "nbac_team_boxscore" if table_id.startswith("team_") else "nbac_gamebook_player_stats"
        message = (f"Upstream dependency check failed: nba_raw.{source} for {first.get(d, d)} was last updated "
                   f"{(start.date() - first.get(d, d)).days} days ago (max_age_hours=72)")  # fmt: skip
        plants.append(
            _Plant(
                table_id,
                d,
                "failed",
                start,
                0,
                ("DependencyError", message),
                "upstream_failure",
                range_first=first.get(d),
            )
        )
    return plants


def _apply_plants(con: duckdb.DuckDBPyConnection, plants: list[_Plant]) -> None:
    """Stage the planted runs and delete the rows that failed or crashed reruns destroyed."""
    for p in plants:
        if p.deletes_rows:
            t = TABLES[p.table_id]
            con.execute(f"DELETE FROM {t.table} WHERE {t.date_column} BETWEEN ? AND ?", [p.dates[0], p.dates[-1]])
    errors = [
        None if p.error is None else json.dumps(
            [{"error_type": p.error[0], "error_message": p.error[1], "timestamp": (p.started_at + timedelta(seconds=20)).isoformat()}]
        )
        for p in plants
    ]  # fmt: skip
    con.executemany(
        "INSERT INTO _bk_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(TABLES[p.table_id].processor, TABLES[p.table_id].phase, p.data_date, p.range_first,
          p.data_date if p.range_first else None, p.status, p.started_at,
          None if p.status == "running" else 21.5 + 7 * n, p.records, errors[n], p.failure_category,
          p.skip_reason, p.backfill_mode, p.trigger_source) for n, p in enumerate(plants)],
    )  # fmt: skip


def _stage_lost_cache(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """player_daily_cache was backfilled in Nov 2025, then partition expiration deleted it."""
    con.execute(
        f"""
        INSERT INTO _bk_runs
        SELECT $proc, $phase, game_date, NULL, NULL, 'success',
               TIMESTAMP '2025-11-18 02:00:00' + to_seconds(62 * row_number() OVER (ORDER BY game_date)),
               30 + (hash($seed, game_date, 'pdc_dur') % 4500) / 100.0,
               (n_games * (13 + hash($seed, game_date, 'pdc_rows') % 5))::BIGINT,
               NULL, NULL, NULL, TRUE, 'backfill'
        FROM (SELECT game_date, count(DISTINCT game_id) AS n_games FROM {tables.SCHEDULE_TABLE}
              WHERE {tables.GAME_FILTER} AND game_date BETWEEN $lo AND $hi GROUP BY game_date)
        """,
        {"proc": TABLES["player_daily_cache"].processor, "phase": PHASE_PRECOMPUTE, "seed": seed,
         "lo": LOST_WINDOW[0], "hi": LOST_WINDOW[1]},
    )  # fmt: skip


def _write_run_history(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """Every run writes `running` first, then its final row with the same run_id and range."""
    con.execute(
        f"""
        INSERT INTO {tables.RUN_HISTORY_TABLE} BY NAME
        WITH runs AS (
            SELECT *, processor_name || '_' || strftime(data_date, '%Y%m%d') || '_'
                      || substr(md5(concat_ws(':', $seed, processor_name, data_date, started_at, status)), 1, 8) AS run_id
            FROM _bk_runs
        )
        SELECT processor_name, run_id, phase, data_date, range_start AS date_range_filter_start,
               range_end AS date_range_filter_end, 'running' AS status, started_at, NULL::TIMESTAMP AS processed_at,
               NULL::DOUBLE AS duration_seconds, NULL::BIGINT AS records_processed, NULL::JSON AS errors,
               NULL::VARCHAR AS skip_reason, NULL::VARCHAR AS failure_category, backfill_mode, trigger_source
        FROM runs
        UNION ALL
        SELECT processor_name, run_id, phase, data_date, range_start, range_end, status, started_at,
               started_at + to_microseconds((duration_seconds * 1e6)::BIGINT), duration_seconds,
               records_processed, COALESCE(errors, '[]')::JSON, skip_reason, failure_category, backfill_mode, trigger_source
        FROM runs WHERE status <> 'running'
        ORDER BY data_date, started_at, processor_name, status = 'running' DESC
        """,
        {"seed": seed},
    )
    con.execute("DROP TABLE _bk_runs")


def _summary(con: duckdb.DuckDBPyConnection, path: Path) -> WarehouseSummary:
    rows = {t.id: con.execute(f"SELECT count(*) FROM {t.table}").fetchall()[0][0] for t in TABLES.values()}
    history = con.execute(f"SELECT count(*) FROM {tables.RUN_HISTORY_TABLE}").fetchall()[0][0]
    return WarehouseSummary(path=path, rows=rows, run_history_rows=history)
