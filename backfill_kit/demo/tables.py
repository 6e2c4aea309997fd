"""The demo warehouse's tables (declared in tables.toml): how each one is (re)computed, and run history.

Everything here is synthetic but shaped like the real NBA props pipeline (see the shipped spec
`nba_props.yaml`): phase 2 tables are "scraped" from the schedule with hash-based values, phase
3 and phase 4 tables are computed by SQL from their upstream tables, so a gap upstream really
shows up downstream. `build` is used both by the demo warehouse generator and by the demo
backfill jobs (`python -m backfill_kit.demo.job`), so it is idempotent and works on any
connection that has the schedule.
"""

from __future__ import annotations

import hashlib
import json
import random
import tomllib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from importlib.resources import files
from typing import Any, TypedDict, Unpack

import duckdb

__all__ = [
    "GAME_FILTER",
    "NO_DATA_OUTCOMES",
    "PHASE_ANALYTICS",
    "PHASE_PRECOMPUTE",
    "PHASE_RAW",
    "RUN_HISTORY_TABLE",
    "SCHEDULE_TABLE",
    "SEASONS",
    "TABLES",
    "TEAMS",
    "NoDataOutcome",
    "Season",
    "TableDef",
    "begin_run",
    "build",
    "ensure_run_history",
    "ensure_tables",
    "expected_dates",
    "finish_run",
    "range_chunks",
    "schedule_rows",
    "source_available",
]

PHASE_RAW = "phase_2_raw"
PHASE_ANALYTICS = "phase_3_analytics"
PHASE_PRECOMPUTE = "phase_4_precompute"

SCHEDULE_TABLE = "nba_raw.nbac_schedule"
RUN_HISTORY_TABLE = "nba_reference.processor_run_history"

# The calendar filter of the spec: final games of the regular season, playoffs and play-in.
GAME_FILTER = "game_status = 3 AND substr(game_id, 1, 3) IN ('002', '004', '005')"

TEAMS = (
    "ATL", "BOS", "BKN", "CHA", "CHI", "CLE", "DAL", "DEN", "DET", "GSW",
    "HOU", "IND", "LAC", "LAL", "MEM", "MIA", "MIL", "MIN", "NOP", "NYK",
    "OKC", "ORL", "PHI", "PHX", "POR", "SAC", "SAS", "TOR", "UTA", "WAS",
)  # fmt: skip
EAST = frozenset(
    ("ATL", "BOS", "BKN", "CHA", "CHI", "CLE", "DET", "IND", "MIA", "MIL", "NYK", "ORL",
     "PHI", "TOR", "WAS")
)  # fmt: skip
ROSTER_SIZE = 17  # 15 standard contracts + 2 two-way players

_FIRST_NAMES = (
    "Jalen", "Marcus", "Tyrese", "Darius", "Andre", "Malik", "Jordan", "Cameron", "Isaiah",
    "Devin", "Trey", "Kevin", "Anthony", "Brandon", "Chris", "Derrick", "Elijah", "Franz",
    "Gary", "Harrison", "Ivan", "Jamal", "Keegan", "Luka", "Miles", "Nikola", "Obi", "Paolo",
    "Quentin", "Rudy", "Scottie", "Tari", "Usman", "Victor", "Walker", "Xavier", "Yves", "Zach",
    "Bennedict", "Cade",
)  # fmt: skip
_LAST_NAMES = (
    "Allen", "Brooks", "Carter", "Davis", "Edwards", "Fox", "Green", "Harris", "Irving",
    "Johnson", "Kennard", "Lopez", "Mitchell", "Nance", "Oubre", "Porter", "Quickley", "Reid",
    "Smith", "Thompson", "Udoka", "Vincent", "Walker", "Young", "Zeller", "Adams", "Bridges",
    "Collins", "Dunn", "Ellis", "Fultz", "Gordon", "Holiday", "Ingles", "Jackson", "Kuzma",
    "Lowry", "Murray", "Nesmith", "Okoro", "Payton", "Rivers", "Sexton", "Tucker", "Valanciunas",
    "Wagner", "Barnes", "Caruso", "Dosunmu", "Eubanks", "Gafford", "Hayes", "Jones", "Kessler",
    "Lively", "Martin", "Nembhard", "Olynyk", "Poole", "Robinson",
)  # fmt: skip

_PROP_BOOKS = (
    "DraftKings", "FanDuel", "BetMGM", "Caesars", "PointsBet", "BetRivers", "Unibet", "WynnBET",
    "ESPN BET", "Fanatics", "bet365", "Hard Rock", "Circa", "SuperBook", "Betway", "Tipico",
    "SI Sportsbook", "Borgata", "BetOnline", "Bovada",
)  # fmt: skip
_ODDS_API_BOOKS = ("draftkings", "fanduel", "betmgm", "williamhill_us", "pointsbetus",
                   "betrivers", "unibet_us")  # fmt: skip

# Share of game dates on which a source has anything to scrape (domain facts).
_SOURCE_RATES = {
    "odds_api_player_points_props": 0.40,
    "bigdataball_play_by_play": 0.94,
    "nbac_play_by_play": 0.001,
    "odds_api_game_lines": 0.99,
}


# --------------------------------------------------------------------------------------------
# The calendar
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Season:
    """One NBA season's fixed dates (facts, not random)."""

    name: str
    year: int
    opener: date
    regular_end: date
    playoffs_end: date
    all_star: date
    break_start: date  # first day of the All-Star break without regular games
    break_end: date
    thanksgiving: date

    @property
    def start(self) -> date:
        return self.opener

    @property
    def end(self) -> date:
        return self.playoffs_end


SEASONS = (
    Season("2021-22", 2021, date(2021, 10, 19), date(2022, 4, 10), date(2022, 6, 16),
           date(2022, 2, 20), date(2022, 2, 18), date(2022, 2, 23), date(2021, 11, 25)),
    Season("2022-23", 2022, date(2022, 10, 18), date(2023, 4, 9), date(2023, 6, 12),
           date(2023, 2, 19), date(2023, 2, 16), date(2023, 2, 22), date(2022, 11, 24)),
    Season("2023-24", 2023, date(2023, 10, 24), date(2024, 4, 14), date(2024, 6, 17),
           date(2024, 2, 18), date(2024, 2, 16), date(2024, 2, 21), date(2023, 11, 23)),
    Season("2024-25", 2024, date(2024, 10, 22), date(2025, 4, 13), date(2025, 6, 22),
           date(2025, 2, 16), date(2025, 2, 14), date(2025, 2, 18), date(2024, 11, 28)),
)  # fmt: skip

REGULAR_GAMES = 1230
_SERIES_LENGTHS = (4, 5, 6, 7)
_SERIES_WEIGHTS = (0.25, 0.30, 0.27, 0.18)

ScheduleRow = tuple[str, date, int, int, str, str, str]


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(n) for n in range((end - start).days + 1)]


def _regular_dates(season: Season, rng: random.Random) -> list[date]:
    off = {season.thanksgiving, date(season.year, 12, 24)}
    off |= set(_days(season.break_start, season.break_end))
    days = [d for d in _days(season.opener, season.regular_end) if d not in off]
    # A few more dark days (election night, tournament gaps), never a fixed-count day.
    fixed = {season.opener, season.regular_end, date(season.year, 12, 25)}
    days_free = [d for d in days if d not in fixed]
    dark = set(rng.sample(days_free, rng.randint(0, 3)))
    return [d for d in days if d not in dark]


def _games_per_date(season: Season, dates: list[date], rng: random.Random) -> list[int]:
    """Spread 1,230 games over the dates: busy Wednesdays and Fridays, 15 on the last day."""
    fixed = {season.opener: 2, date(season.year, 12, 25): 5, season.regular_end: 15}
    weekday = (1.0, 0.7, 1.2, 0.5, 1.1, 0.9, 0.8)
    weights = [weekday[d.weekday()] * rng.uniform(0.7, 1.3) for d in dates]
    free = [i for i, d in enumerate(dates) if d not in fixed]
    target = REGULAR_GAMES - sum(fixed.values())
    total_w = sum(weights[i] for i in free)
    raw = {i: weights[i] * target / total_w for i in free}
    counts = [fixed.get(d, 0) for d in dates]
    for i in free:
        counts[i] = min(14, max(1, round(raw[i])))
    while sum(counts) != REGULAR_GAMES:
        step = 1 if sum(counts) < REGULAR_GAMES else -1
        movable = [i for i in free if 1 <= counts[i] + step <= 14]
        i = max(movable, key=lambda k: step * (raw[k] - counts[k]))
        counts[i] += step
    return counts


def _pair_teams(k: int, played: dict[str, int], rng: random.Random) -> list[tuple[str, str]]:
    """Pick the 2k teams with the fewest games so far: every team ends at exactly 82."""
    teams = sorted(TEAMS, key=lambda t: (played[t], rng.random()))[: 2 * k]
    rng.shuffle(teams)
    for t in teams:
        played[t] += 1
    return [(teams[2 * n], teams[2 * n + 1]) for n in range(k)]


def _regular_rows(season: Season, rng: random.Random) -> list[ScheduleRow]:
    dates = _regular_dates(season, rng)
    counts = _games_per_date(season, dates, rng)
    played = dict.fromkeys(TEAMS, 0)
    rows: list[ScheduleRow] = []
    yy = season.year % 100
    for d, k in zip(dates, counts, strict=True):
        for home, away in _pair_teams(k, played, rng):
            game_id = f"002{yy:02d}{len(rows) + 1:05d}"
            rows.append((game_id, d, season.year, 3, "Final", home, away))
    return rows


def _preseason_rows(season: Season, rng: random.Random) -> list[ScheduleRow]:
    window = _days(season.opener - timedelta(14), season.opener - timedelta(2))
    fixed = season.opener - timedelta(4)  # e.g. 2021-10-15: preseason, not the opener
    dates = sorted({fixed, *rng.sample(window, 5)})
    rows: list[ScheduleRow] = []
    yy = season.year % 100
    for d in dates:
        for home, away in _pair_teams(rng.randint(1, 4), dict.fromkeys(TEAMS, 0), rng):
            rows.append((f"001{yy:02d}{len(rows) + 1:05d}", d, season.year, 3, "Final", home, away))
    return rows


def _series_dates(start: date, lengths: list[int], gaps: list[list[int]]) -> list[list[date]]:
    """Lay out a round: series alternate start days, games every 2-3 days."""
    out = []
    for i, (n, gap) in enumerate(zip(lengths, gaps, strict=True)):
        day = start + timedelta(i % 2)
        games = [day]
        for g in gap[: n - 1]:
            day += timedelta(g)
            games.append(day)
        out.append(games)
    return out


def _postseason_rows(season: Season, rng: random.Random) -> list[ScheduleRow]:
    yy = season.year % 100
    rows: list[ScheduleRow] = []
    # Play-in: Tuesday/Wednesday/Friday after the regular season.
    east = sorted(EAST)
    west = sorted(set(TEAMS) - EAST)
    rng.shuffle(east)
    rng.shuffle(west)
    # Seeds 7v8 and 9v10 first, then the loser of 7v8 hosts the winner of 9v10.
    seeds = ((6, 7), (6, 7), (8, 9), (8, 9), (7, 9), (7, 9))
    for n, offset in enumerate((2, 2, 3, 3, 5, 5)):
        conf = east if n % 2 == 0 else west
        home, away = conf[seeds[n][0]], conf[seeds[n][1]]
        d = season.regular_end + timedelta(offset)
        rows.append((f"005{yy:02d}{n + 1:05d}", d, season.year, 3, "Final", home, away))
    # Four rounds: 8, 4, 2, 1 series; finals games are spaced 2-3 days.
    sizes = (8, 4, 2, 1)
    lengths = [[rng.choices(_SERIES_LENGTHS, _SERIES_WEIGHTS)[0] for _ in range(s)] for s in sizes]
    gaps = [[[2] * 6 if r < 2 else [rng.choice((2, 3)) for _ in range(6)] for _ in range(s)]
            for r, s in enumerate(sizes)]  # fmt: skip
    first = season.regular_end + timedelta(6)
    layout = _fit_rounds(first, season.playoffs_end, lengths, gaps)
    teams = east[:8] + west[:8]
    for r, round_dates in enumerate(layout):
        pairs = [(teams[2 * s], teams[2 * s + 1]) for s in range(len(round_dates))]
        for s, series in enumerate(round_dates):
            high, low = pairs[s]
            for g, d in enumerate(series):
                home, away = (high, low) if g in (0, 1, 4, 6) else (low, high)
                game_id = f"004{yy:02d}00{r + 1}{s}{g + 1}"
                rows.append((game_id, d, season.year, 3, "Final", home, away))
        teams = [rng.choice(pair) for pair in pairs]
    return rows


def _fit_rounds(
    first: date, last: date, lengths: list[list[int]], gaps: list[list[list[int]]]
) -> list[list[list[date]]]:
    """Place the four rounds so the last finals game falls exactly on `last`."""
    while True:
        natural = _place_rounds(first, lengths, gaps, [2, 2, 2])
        slack = (last - natural[-1][0][-1]).days
        if slack >= 0:
            break
        # Shorten the longest series (a sweep instead of a seventh game) until the dates fit.
        longer = [(n, r, s) for r, rnd in enumerate(lengths) for s, n in enumerate(rnd) if n > 4]
        if not longer:
            raise ValueError(f"playoffs starting {first} cannot end on {last}")
        _, r, s = max(longer)
        lengths[r][s] -= 1
    breaks = [2 + slack // 4, 2 + slack // 4, 2 + slack - 2 * (slack // 4)]
    return _place_rounds(first, lengths, gaps, breaks)


def _place_rounds(
    first: date, lengths: list[list[int]], gaps: list[list[list[int]]], breaks: list[int]
) -> list[list[list[date]]]:
    rounds = []
    start = first
    for r in range(4):
        series = _series_dates(start, lengths[r], gaps[r])
        rounds.append(series)
        if r < 3:
            start = max(s[-1] for s in series) + timedelta(breaks[r])
    return rounds


def _special_rows(season: Season, regular: list[ScheduleRow], rng: random.Random) -> list[ScheduleRow]:
    """The All-Star game, COVID postponements (never final) and a duplicated scrape row."""
    yy = season.year % 100
    rows: list[ScheduleRow] = [(f"003{yy:02d}00001", season.all_star, season.year, 3, "Final", "WST", "EST")]
    if season.year == 2021:
        winter = [r for r in regular if date(2021, 12, 19) <= r[1] <= date(2022, 1, 9)]
        for n, base in enumerate(rng.sample(winter, 5)):
            home, away = rng.sample(TEAMS, 2)
            game_id = f"002{yy:02d}{REGULAR_GAMES + n + 1:05d}"
            rows.append((game_id, base[1], season.year, 1, "PPD", home, away))
    if season.year == 2023:
        rows.append(rng.choice(regular))  # the same game twice, as real scrapes do
    return rows


@lru_cache(maxsize=8)
def schedule_rows(seed: int) -> tuple[ScheduleRow, ...]:
    """Every schedule row of the four seasons, deterministic by seed, sorted by date."""
    rows: list[ScheduleRow] = []
    for season in SEASONS:
        rng = random.Random(f"{seed}:{season.name}")
        regular = _regular_rows(season, rng)
        rows += _preseason_rows(season, rng) + regular + _postseason_rows(season, rng)
        rows += _special_rows(season, regular, rng)
    return tuple(sorted(rows, key=lambda r: (r[1], r[0])))


def source_available(table_id: str, d: date, seed: int) -> bool:
    """Whether the source of a phase 2 table had anything for date `d` (deterministic)."""
    rate = _SOURCE_RATES.get(table_id, 1.0)
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(f"{seed}|{table_id}|{d.isoformat()}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64 < rate


# --------------------------------------------------------------------------------------------
# Table definitions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableDef:
    """One table of the spec: where it lives, its date column, who writes it, its DDL."""

    id: str
    table: str
    date_column: str
    processor: str
    phase: str
    columns: str

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    def ddl(self) -> str:
        return f"CREATE TABLE IF NOT EXISTS {self.table} ({self.columns})"


def _declared_tables() -> list[TableDef]:
    """Every table declared in tables.toml, in the file's order, its defaults filled in."""
    data = tomllib.loads(files(__package__).joinpath("tables.toml").read_text(encoding="utf-8"))
    groups, datasets = data["column_groups"], data["datasets"]
    return [
        TableDef(
            id=table_id,
            table=f"{t.get('dataset', datasets[t['phase']])}.{table_id}",
            date_column=t.get("date_column", data["date_column"]),
            processor=t["processor"],
            phase=t["phase"],
            columns=" ".join(t["columns"].format(**groups).split()),
        )
        for table_id, t in data["tables"].items()
    ]


TABLES: dict[str, TableDef] = {t.id: t for t in _declared_tables()}

# As production's processor_run_history (domain.md): a range run writes one row dated at its
# range's end, with the range beside it; errors are JSON; failure_category and skip_reason say
# why a run had nothing to load.
_RUN_HISTORY_COLUMNS = """processor_name VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
    phase VARCHAR, data_date DATE, date_range_filter_start DATE, date_range_filter_end DATE,
    status VARCHAR NOT NULL, started_at TIMESTAMP NOT NULL,
    processed_at TIMESTAMP, duration_seconds DOUBLE, records_processed BIGINT, errors JSON,
    skip_reason VARCHAR, failure_category VARCHAR, backfill_mode BOOLEAN, trigger_source VARCHAR"""


@dataclass(frozen=True)
class NoDataOutcome:
    """How a processor records a date its source had nothing for, as production does."""

    status: str
    failure_category: str | None = None
    skip_reason: str | None = None
    error: tuple[str, str] | None = None  # error_type, error_message ({d} is the date)

    def errors(self, d: date, at: datetime) -> list[dict[str, str]] | None:
        if self.error is None:
            return None
        return [{"error_type": self.error[0], "error_message": self.error[1].format(d=d), "timestamp": at.isoformat()}]


# Phase 2 sources with dates that have nothing: each records it its own way. Any other table
# records a success with zero records.
NO_DATA_OUTCOMES = {
    "odds_api_player_points_props": NoDataOutcome(
        "failed",
        "no_data_available",
        None,
        ("NoDataAvailableError", "The Odds API returned no player points props for {d}"),
    ),
    "bigdataball_play_by_play": NoDataOutcome(
        "failed",
        "no_data_available",
        None,
        ("NoDataAvailableError", "BigDataBall has not published play-by-play for {d}"),
    ),
    "nbac_play_by_play": NoDataOutcome("skipped", None, "no_data"),
}
NO_DATA = NoDataOutcome("success")
# Phase 3 processors write one run-history row per range, covering at most this many days.
RANGE_DAYS = 31


def _table(table_id: str) -> TableDef:
    try:
        return TABLES[table_id]
    except KeyError:
        raise ValueError(f"unknown demo table id {table_id!r}; known: {', '.join(TABLES)}") from None


def ensure_tables(con: duckdb.DuckDBPyConnection, table_ids: Iterable[str] | None = None) -> None:
    """Create the schemas and tables that do not exist yet (never drops anything)."""
    for table_id in TABLES if table_ids is None else table_ids:
        t = _table(table_id)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {t.schema}")
        con.execute(t.ddl())


SETTINGS_TABLE = "nba_reference.demo_settings"
TRIGGERS_TABLE = "nba_reference.downstream_triggers"


def ensure_demo_settings(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """Remember the seed, so that backfill jobs see the same source availability as init did."""
    con.execute(f"CREATE OR REPLACE TABLE {SETTINGS_TABLE} AS SELECT $seed::INTEGER AS seed", {"seed": seed})
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {TRIGGERS_TABLE} (source_table VARCHAR, start_date DATE, "
        "end_date DATE, triggered_at TIMESTAMP, run_by VARCHAR)"
    )


def ensure_run_history(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS nba_reference")
    con.execute(f"CREATE TABLE IF NOT EXISTS {RUN_HISTORY_TABLE} ({' '.join(_RUN_HISTORY_COLUMNS.split())})")


# --------------------------------------------------------------------------------------------
# Row synthesis: SQL building blocks
# --------------------------------------------------------------------------------------------


def _sql_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Session macros: a uniform draw from a hash, and a stable roster per team and slot."""
    con.execute("CREATE OR REPLACE TEMP MACRO bk_unit(h) AS ((h % 1000003)::DOUBLE / 1000003.0)")
    con.execute(
        f"CREATE OR REPLACE TEMP MACRO bk_pidx(team, slot) AS "
        f"((list_position({_sql_list(TEAMS)}, team) - 1) * {ROSTER_SIZE} + slot)"
    )
    # (p*17 % 40, (p//40*11 + p%40) % 60) is injective for p < 600: every player is unique.
    con.execute(f"CREATE OR REPLACE TEMP MACRO bk_first(p) AS ({_sql_list(_FIRST_NAMES)})[(p * 17) % 40 + 1]")
    con.execute(
        f"CREATE OR REPLACE TEMP MACRO bk_last(p) AS ({_sql_list(_LAST_NAMES)})[((p // 40) * 11 + p % 40) % 60 + 1]"
    )
    con.execute(
        "CREATE OR REPLACE TEMP MACRO bk_player_name(team, slot) AS "
        "bk_first(bk_pidx(team, slot)) || ' ' || bk_last(bk_pidx(team, slot))"
    )
    con.execute(
        "CREATE OR REPLACE TEMP MACRO bk_player_lookup(team, slot) AS "
        "lower(bk_first(bk_pidx(team, slot)) || bk_last(bk_pidx(team, slot)))"
    )


def _values(rows: Sequence[tuple[object, ...]], names: str) -> str:
    body = ", ".join("(" + ", ".join(repr(v) for v in row) + ")" for row in rows)
    return f"(VALUES {body}) AS v({names})"


# Final, deduplicated games (the duplicated scrape row collapses) of the dates being built.
_GAMES = f"""
games AS (
    SELECT DISTINCT game_id, game_date, season_year, home_team_abbr, away_team_abbr
    FROM {SCHEDULE_TABLE}
    WHERE {GAME_FILTER} AND game_date IN (SELECT d FROM _bk_dates)
),
team_games AS (
    SELECT game_id, game_date, season_year, home_team_abbr AS team_abbr,
           away_team_abbr AS opponent_abbr, TRUE AS is_home
    FROM games
    UNION ALL
    SELECT game_id, game_date, season_year, away_team_abbr, home_team_abbr, FALSE FROM games
)"""

# Every player line of every game: the one "truth" that the gamebook, bdl and the team box
# score each report, so the sources agree with each other like real ones do.
_LINES = f"""{_GAMES},
slots AS (
    SELECT tg.*, unnest(range(16 + (hash($seed, tg.game_id, tg.team_abbr, 'roster') % 2)::INT)) AS slot,
           13 + (hash($seed, tg.game_id, tg.team_abbr, 'dressed') % 2)::INT AS dressed
    FROM team_games AS tg
),
played AS (
    SELECT s.*,
        CASE WHEN slot >= dressed THEN 'inactive'
             WHEN slot >= 11 AND bk_unit(hash($seed, game_id, team_abbr, slot, 'dnp')) < 0.4 THEN 'dnp'
             ELSE 'active' END AS player_status,
        1.35 - slot * 0.05 AS usage
    FROM slots AS s
),
minutes AS (
    SELECT p.*,
        CASE WHEN player_status = 'active' THEN round(least(44, greatest(3, 36 - slot * 2.6)
             * (0.8 + 0.4 * bk_unit(hash($seed, game_id, team_abbr, slot, 'min')))), 1)
             ELSE 0 END AS minutes
    FROM played AS p
),
shots AS (
    SELECT m.*,
        round(minutes * (0.21 + 0.14 * bk_unit(hash($seed, game_id, team_abbr, slot, 'fga'))) * usage)::INT AS fga,
        round(minutes * 0.14 * bk_unit(hash($seed, game_id, team_abbr, slot, 'fta')) * usage)::INT AS fta
    FROM minutes AS m
),
makes AS (
    SELECT s.*,
        round(fga * (0.25 + 0.3 * bk_unit(hash($seed, game_id, team_abbr, slot, '3sh'))))::INT AS three_pa,
        round(fga * (0.38 + 0.16 * bk_unit(hash($seed, game_id, team_abbr, slot, 'fgp'))))::INT AS fgm,
        round(fta * (0.65 + 0.3 * bk_unit(hash($seed, game_id, team_abbr, slot, 'ftp'))))::INT AS ftm
    FROM shots AS s
),
lines AS (
    SELECT game_id, game_date, season_year, team_abbr, opponent_abbr, is_home, slot,
        bk_player_lookup(team_abbr, slot) AS player_lookup,
        bk_player_name(team_abbr, slot) AS player_name,
        player_status, minutes, fga AS fg_attempted, fgm AS fg_made, three_pa AS three_pt_attempted,
        greatest(least(fgm, round(three_pa * (0.28 + 0.16 * bk_unit(hash($seed, game_id, team_abbr, slot, '3p'))))::INT),
                 fgm - (fga - three_pa)) AS three_pt_made,
        fta AS ft_attempted, ftm AS ft_made,
        round(minutes * (0.06 + 0.2 * bk_unit(hash($seed, game_id, team_abbr, slot, 'reb'))))::INT AS rebounds,
        round(minutes * (0.02 + 0.15 * bk_unit(hash($seed, game_id, team_abbr, slot, 'ast'))))::INT AS assists,
        round(minutes * 0.05 * bk_unit(hash($seed, game_id, team_abbr, slot, 'stl')))::INT AS steals,
        round(minutes * 0.04 * bk_unit(hash($seed, game_id, team_abbr, slot, 'blk')))::INT AS blocks,
        round(minutes * 0.07 * bk_unit(hash($seed, game_id, team_abbr, slot, 'tov')))::INT AS turnovers
    FROM makes
)"""

_POINTS = "2 * fg_made + three_pt_made + ft_made"

_SQL_GAMEBOOK = f"""
WITH {_LINES}
SELECT game_id, game_date, season_year, team_abbr, player_lookup, player_name, player_status,
       minutes, {_POINTS}, fg_made, fg_attempted, three_pt_made, three_pt_attempted, ft_made,
       ft_attempted, rebounds, assists, steals, blocks, turnovers
FROM lines"""

_SQL_BDL = f"""
WITH {_LINES}
SELECT game_id, game_date, season_year, team_abbr, player_lookup, player_name,
       round(minutes)::INT, {_POINTS}, fg_made, fg_attempted, three_pt_made, three_pt_attempted,
       ft_made, ft_attempted, rebounds, assists, steals, blocks, turnovers
FROM lines WHERE minutes > 0"""

_SQL_TEAM_BOXSCORE = f"""
WITH {_LINES}
SELECT game_id, game_date, season_year, team_abbr, opponent_abbr, is_home,
       sum({_POINTS}), sum(fg_made), sum(fg_attempted), sum(three_pt_made),
       sum(three_pt_attempted), sum(ft_made), sum(ft_attempted), round(sum(rebounds) * 0.22)::INT,
       sum(rebounds), sum(assists), sum(steals), sum(blocks), sum(turnovers)
FROM lines
GROUP BY game_id, game_date, season_year, team_abbr, opponent_abbr, is_home"""

# Players with a points prop: the 7-9 rotation players of each team, one line per player-game.
_PROP_PLAYERS = f"""{_GAMES},
prop_players AS (
    SELECT tg.game_id, tg.game_date, tg.team_abbr,
           unnest(range(7 + (hash($seed, tg.game_id, tg.team_abbr, 'props') % 3)::INT)) AS slot
    FROM team_games AS tg
),
prop_lines AS (
    SELECT pp.*, bk_player_lookup(team_abbr, slot) AS player_lookup,
           bk_player_name(team_abbr, slot) AS player_name,
           floor((25 - slot * 2.2) * (0.85 + 0.3 * bk_unit(hash($seed, game_id, team_abbr, slot, 'line')))) + 0.5 AS base_line
    FROM prop_players AS pp
)"""

# bettingpros aggregates ~20 books; on light days more books list lines, so a date with games
# always clears the spec's 500 rows.
_SQL_BETTINGPROS = f"""
WITH {_PROP_PLAYERS},
day_books AS (
    SELECT game_date, greatest(6 + (hash($seed, game_date, 'bp_books') % 3)::INT,
                               ceil(18.0 / count(*))::INT) AS n_books
    FROM games GROUP BY game_date
),
books AS (SELECT * FROM {_values(list(enumerate(_PROP_BOOKS)), "book_idx, bookmaker")}),
sides AS (SELECT * FROM (VALUES ('over'), ('under')) AS s(bet_side))
SELECT p.game_id, p.game_date, p.player_lookup, p.player_name, p.team_abbr, b.bookmaker,
       s.bet_side,
       p.base_line + 0.5 * ((hash($seed, p.game_id, p.player_lookup, b.bookmaker) % 3)::INT - 1),
       p.base_line + 0.5 * ((hash($seed, p.game_id, p.player_lookup, 'open') % 3)::INT - 1),
       -125 + (hash($seed, p.game_id, p.player_lookup, b.bookmaker, s.bet_side) % 31)::INT,
       hash($seed, p.game_id, p.player_lookup, b.bookmaker, 'best') % 7 = 0
FROM prop_lines AS p
JOIN day_books AS db USING (game_date)
JOIN books AS b ON b.book_idx < db.n_books
CROSS JOIN sides AS s"""

_SQL_ODDS_PROPS = f"""
WITH {_PROP_PLAYERS},
books AS (SELECT * FROM {_values(list(enumerate(_ODDS_API_BOOKS)), "book_idx, bookmaker")})
SELECT p.game_id, p.game_date, p.game_date + INTERVAL 17 HOUR, b.bookmaker, p.player_lookup,
       p.player_name, p.team_abbr,
       p.base_line + 0.5 * ((hash($seed, p.game_id, p.player_lookup, b.bookmaker) % 3)::INT - 1),
       round(1.8 + 0.15 * bk_unit(hash($seed, p.game_id, p.player_lookup, b.bookmaker, 'o')), 2),
       round(1.8 + 0.15 * bk_unit(hash($seed, p.game_id, p.player_lookup, b.bookmaker, 'u')), 2)
FROM prop_lines AS p
JOIN books AS b ON b.book_idx < 5 + (hash($seed, p.game_id, 'oa_books') % 3)::INT"""

# Team strength per season drives spreads, so lines are consistent across books.
_SQL_GAME_LINES = f"""
WITH {_GAMES},
rated AS (
    SELECT g.*, (hash($seed, home_team_abbr, season_year, 'rating') % 21)::INT
              - (hash($seed, away_team_abbr, season_year, 'rating') % 21)::INT + 2.5 AS edge,
           210 + 20 * bk_unit(hash($seed, game_id, 'total')) AS total
    FROM games AS g
),
books AS (SELECT * FROM {_values(list(enumerate(_ODDS_API_BOOKS)), "book_idx, bookmaker")}),
outcomes AS (SELECT * FROM (VALUES ('h2h', 1), ('h2h', 2), ('spreads', 1), ('spreads', 2),
                                   ('totals', 1), ('totals', 2)) AS o(market_key, side))
SELECT r.game_id, r.game_date, r.home_team_abbr, r.away_team_abbr, b.bookmaker, o.market_key,
       CASE WHEN o.market_key = 'totals' THEN (CASE o.side WHEN 1 THEN 'Over' ELSE 'Under' END)
            WHEN o.side = 1 THEN r.home_team_abbr ELSE r.away_team_abbr END,
       CASE o.market_key
            WHEN 'spreads' THEN (CASE o.side WHEN 1 THEN -1 ELSE 1 END) * round(r.edge * 2) / 2
            WHEN 'totals' THEN round(r.total * 2) / 2 END,
       CASE WHEN o.market_key = 'h2h'
            THEN round(1.0 + exp((CASE o.side WHEN 1 THEN -1 ELSE 1 END) * r.edge / 7.0), 2)
            ELSE 1.91 END,
       r.game_date + INTERVAL 16 HOUR
FROM rated AS r
JOIN books AS b ON b.book_idx < 5 + (hash($seed, r.game_id, 'gl_books') % 3)::INT
CROSS JOIN outcomes AS o"""


def _sql_play_by_play(tag: str) -> str:
    """~490 events a game; shot zones feed the shot-zone analytics."""
    return f"""
WITH {_GAMES},
sized AS (SELECT g.*, 440 + (hash($seed, game_id, '{tag}_n') % 100)::INT AS n_events FROM games AS g),
events AS (SELECT s.*, unnest(range(n_events)) AS i FROM sized AS s),
drawn AS (
    SELECT e.*, bk_unit(hash($seed, game_id, i, '{tag}_type')) AS u_type,
           bk_unit(hash($seed, game_id, i, '{tag}_zone')) AS u_zone,
           bk_unit(hash($seed, game_id, i, '{tag}_make')) AS u_make,
           hash($seed, game_id, i, '{tag}_who') AS h_who
    FROM events AS e
),
typed AS (
    SELECT d.*,
        CASE WHEN u_type < 0.40 THEN 'shot' WHEN u_type < 0.48 THEN 'free_throw'
             WHEN u_type < 0.78 THEN 'rebound' WHEN u_type < 0.85 THEN 'turnover'
             WHEN u_type < 0.93 THEN 'foul' WHEN u_type < 0.98 THEN 'substitution'
             ELSE 'timeout' END AS event_type,
        CASE WHEN u_zone < 0.30 THEN 'restricted_area' WHEN u_zone < 0.45 THEN 'paint'
             WHEN u_zone < 0.60 THEN 'mid_range' WHEN u_zone < 0.72 THEN 'corner_3'
             ELSE 'above_break_3' END AS zone,
        CASE WHEN h_who % 2 = 0 THEN home_team_abbr ELSE away_team_abbr END AS team_abbr
    FROM drawn AS d
)
SELECT game_id, game_date, i + 1, least(4, 1 + (i * 4) // n_events)::SMALLINT,
       (720 - ((i * 2880) // n_events) % 720)::SMALLINT, event_type,
       CASE WHEN event_type <> 'timeout' THEN team_abbr END,
       CASE WHEN event_type NOT IN ('timeout', 'substitution')
            THEN bk_player_lookup(team_abbr, ((h_who // 2) % 100)::INT // 10) END,
       CASE WHEN event_type = 'shot' THEN zone END,
       CASE WHEN event_type = 'shot' THEN (CASE zone WHEN 'restricted_area' THEN 2 WHEN 'paint' THEN 8
            WHEN 'mid_range' THEN 16 WHEN 'corner_3' THEN 22 ELSE 25 END
            + (h_who // 200) % 4)::SMALLINT END,
       CASE WHEN event_type = 'shot' THEN u_make < (CASE zone WHEN 'restricted_area' THEN 0.65
            WHEN 'paint' THEN 0.44 WHEN 'mid_range' THEN 0.42 ELSE 0.36 END)
            WHEN event_type = 'free_throw' THEN u_make < 0.78 END,
       (CASE WHEN event_type = 'shot' AND u_make < (CASE zone WHEN 'restricted_area' THEN 0.65
                  WHEN 'paint' THEN 0.44 WHEN 'mid_range' THEN 0.42 ELSE 0.36 END)
             THEN (CASE WHEN zone LIKE '%_3' THEN 3 ELSE 2 END)
             WHEN event_type = 'free_throw' AND u_make < 0.78 THEN 1 ELSE 0 END)::SMALLINT
FROM typed
ORDER BY game_id, i"""


_SQL_INJURIES = f"""
WITH {_GAMES},
listed AS (
    SELECT tg.*, unnest(range(1 + (hash($seed, tg.game_id, tg.team_abbr, 'inj') % 3)::INT)) AS k
    FROM team_games AS tg
),
hours AS (SELECT * FROM (VALUES (13), (17)) AS h(report_hour))
SELECT l.game_date, h.report_hour, l.game_id, l.game_date, l.team_abbr,
       bk_player_lookup(l.team_abbr, 16 - l.k), bk_player_name(l.team_abbr, 16 - l.k),
       CASE WHEN bk_unit(hash($seed, l.game_id, l.team_abbr, l.k, 'status')) < 0.6 THEN 'Out'
            WHEN h.report_hour = 17 THEN 'Out' ELSE 'Questionable' END,
       (['Injury/Illness - Left Ankle; Sprain', 'Injury/Illness - Right Knee; Soreness',
         'G League - Two-Way', 'Injury/Illness - Low Back; Spasms', 'Health and Safety Protocols',
         'Rest'])[(hash($seed, l.game_id, l.team_abbr, l.k, 'reason') % 6)::INT + 1]
FROM listed AS l CROSS JOIN hours AS h"""


# --------------------------------------------------------------------------------------------
# Phase 3: computed from the raw tables
# --------------------------------------------------------------------------------------------

_IN_DATES = "IN (SELECT d FROM _bk_dates)"

# Gamebook first; bdl only for dates on which the gamebook has no rows at all (its fallback).
_SQL_PLAYER_GAME_SUMMARY = f"""
WITH {_GAMES},
gamebook AS (
    SELECT game_id, game_date, season_year, team_abbr, player_lookup, player_name, minutes,
           points, fg_made, fg_attempted, three_pt_made, three_pt_attempted, ft_made,
           ft_attempted, rebounds, assists, 'nbac_gamebook' AS primary_source
    FROM nba_raw.nbac_gamebook_player_stats
    WHERE game_date {_IN_DATES} AND player_status = 'active' AND minutes > 0
),
bdl AS (
    SELECT game_id, game_date, season_year, team_abbr, player_lookup,
           player_full_name AS player_name, minutes::DOUBLE AS minutes, points, fg_made,
           fg_attempted, three_pt_made, three_pt_attempted, ft_made, ft_attempted, rebounds,
           assists, 'bdl_boxscores' AS primary_source
    FROM nba_raw.bdl_player_boxscores
    WHERE game_date {_IN_DATES} AND game_date NOT IN (
        SELECT game_date FROM nba_raw.nbac_gamebook_player_stats WHERE game_date {_IN_DATES})
),
src AS (SELECT * FROM gamebook UNION ALL SELECT * FROM bdl),
zoned AS (
    SELECT s.*, tg.opponent_abbr, tg.is_home,
           fg_attempted - three_pt_attempted AS two_pa, fg_made - three_pt_made AS two_pm,
           0.55 + 0.25 * bk_unit(hash($seed, s.game_id, s.player_lookup, 'paint')) AS paint_share
    FROM src AS s JOIN team_games AS tg USING (game_id, team_abbr)
),
split AS (
    SELECT z.*, round(two_pa * paint_share)::INT AS paint_att FROM zoned AS z
)
SELECT game_id, game_date, season_year, player_lookup, player_name, team_abbr, opponent_abbr,
       is_home, minutes, points, fg_made, fg_attempted, three_pt_made, three_pt_attempted,
       ft_made, ft_attempted, rebounds, assists, paint_att,
       least(paint_att, greatest(two_pm - (two_pa - paint_att), round(two_pm * paint_share)::INT)),
       two_pa - paint_att,
       two_pm - least(paint_att, greatest(two_pm - (two_pa - paint_att), round(two_pm * paint_share)::INT)),
       primary_source
FROM split"""

_BOX = f"box AS (SELECT * FROM nba_raw.nbac_team_boxscore WHERE game_date {_IN_DATES})"
_POSSESSIONS = "({t}.fg_attempted - {t}.offensive_rebounds + {t}.turnovers + 0.44 * {t}.ft_attempted)"

# Offense needs only the team's own row; a partial box score day stays partial downstream.
_SQL_TEAM_OFFENSE = f"""
WITH {_BOX}
SELECT t.game_id, t.game_date, t.season_year, t.team_abbr, t.opponent_abbr, t.is_home,
       t.points, o.points, CASE WHEN o.points IS NOT NULL THEN t.points > o.points END,
       t.fg_made, t.fg_attempted, t.three_pt_made, t.three_pt_attempted, t.ft_made,
       t.ft_attempted, t.assists, t.turnovers, round({_POSSESSIONS.format(t="t")}, 1),
       round(100.0 * t.points / {_POSSESSIONS.format(t="t")}, 1), round({_POSSESSIONS.format(t="t")}, 1)
FROM box AS t LEFT JOIN box AS o ON o.game_id = t.game_id AND o.team_abbr <> t.team_abbr"""

# Defense is what the opponent did, so it needs both rows of a game.
_SQL_TEAM_DEFENSE = f"""
WITH {_BOX},
pairs AS (
    SELECT t.game_id, t.game_date, t.season_year, t.team_abbr, o.team_abbr AS opp, t.is_home,
           o.points, o.fg_made, o.fg_attempted, o.three_pt_made, o.three_pt_attempted,
           o.fg_attempted - o.three_pt_attempted AS two_pa, o.fg_made - o.three_pt_made AS two_pm,
           t.steals, t.blocks, {_POSSESSIONS.format(t="o")} AS opp_poss,
           0.55 + 0.2 * bk_unit(hash($seed, t.game_id, t.team_abbr, 'paint_allowed')) AS share
    FROM box AS t JOIN box AS o ON o.game_id = t.game_id AND o.team_abbr <> t.team_abbr
),
split AS (
    SELECT p.*, round(two_pa * share)::INT AS paint_att,
           least(round(two_pa * share)::INT, round(two_pm * (share + 0.05))::INT) AS paint_made
    FROM pairs AS p
)
SELECT game_id, game_date, season_year, team_abbr, opp, is_home, points, fg_made, fg_attempted,
       three_pt_made, three_pt_attempted, paint_att, greatest(paint_made, two_pm - (two_pa - paint_att)),
       two_pa - paint_att, two_pm - greatest(paint_made, two_pm - (two_pa - paint_att)),
       steals, blocks, round(100.0 * points / opp_poss, 1)
FROM split"""

_LINES_BY_GAME = f"""
game_lines AS (
    SELECT game_id,
           avg(outcome_point) FILTER (WHERE market_key = 'spreads' AND outcome_name = home_team_abbr) AS home_spread,
           avg(outcome_point) FILTER (WHERE market_key = 'totals' AND outcome_name = 'Over') AS game_total
    FROM nba_raw.odds_api_game_lines WHERE game_date {_IN_DATES}
    GROUP BY game_id
)"""

# Props from odds_api, else bettingpros for the whole date; bdl gives the 30-day form and
# game lines are optional (a LEFT JOIN), as in the real processor.
_SQL_UPCOMING_PLAYER = f"""
WITH {_GAMES}, {_LINES_BY_GAME},
odds_api AS (
    SELECT game_id, game_date, player_lookup, any_value(player_name) AS player_name,
           any_value(team_abbr) AS team_abbr, median(points_line) AS points_line,
           count(DISTINCT bookmaker) AS books_count, 'odds_api' AS prop_source
    FROM nba_raw.odds_api_player_points_props WHERE game_date {_IN_DATES}
    GROUP BY game_id, game_date, player_lookup
),
bettingpros AS (
    SELECT game_id, game_date, player_lookup, any_value(player_name) AS player_name,
           any_value(team_abbr) AS team_abbr, median(points_line) AS points_line,
           count(DISTINCT bookmaker) AS books_count, 'bettingpros' AS prop_source
    FROM nba_raw.bettingpros_player_points_props
    WHERE game_date {_IN_DATES} AND game_date NOT IN (SELECT game_date FROM odds_api)
    GROUP BY game_id, game_date, player_lookup
),
props AS (SELECT * FROM odds_api UNION ALL SELECT * FROM bettingpros),
form AS (
    SELECT p.game_date, p.player_lookup, avg(b.points) AS points_avg, count(*) AS n_games,
           max(b.game_date) AS last_game
    FROM props AS p
    JOIN nba_raw.bdl_player_boxscores AS b
      ON b.player_lookup = p.player_lookup
     AND b.game_date >= p.game_date - 30 AND b.game_date < p.game_date
    GROUP BY p.game_date, p.player_lookup
)
SELECT p.game_id, p.game_date, tg.season_year, p.player_lookup, p.player_name, p.team_abbr,
       tg.opponent_abbr, tg.is_home, p.points_line, p.prop_source, p.books_count,
       round(f.points_avg, 2), coalesce(f.n_games, 0), date_diff('day', f.last_game, p.game_date),
       CASE WHEN tg.is_home THEN l.home_spread ELSE -l.home_spread END, l.game_total
FROM props AS p
JOIN team_games AS tg ON tg.game_id = p.game_id AND tg.team_abbr = p.team_abbr
LEFT JOIN form AS f ON f.game_date = p.game_date AND f.player_lookup = p.player_lookup
LEFT JOIN game_lines AS l ON l.game_id = p.game_id"""

_SQL_UPCOMING_TEAM = f"""
WITH {_GAMES}, {_LINES_BY_GAME},
recent AS (
    SELECT DISTINCT game_id, game_date, home_team_abbr, away_team_abbr FROM {SCHEDULE_TABLE}
    WHERE {GAME_FILTER}
      AND game_date BETWEEN (SELECT min(d) - 30 FROM _bk_dates) AND (SELECT max(d) FROM _bk_dates)
),
sides AS (
    SELECT game_id, game_date, home_team_abbr AS team_abbr FROM recent
    UNION ALL SELECT game_id, game_date, away_team_abbr FROM recent
),
rest AS (
    SELECT game_id, team_abbr,
           date_diff('day', lag(game_date) OVER (PARTITION BY team_abbr ORDER BY game_date), game_date) AS days_rest
    FROM sides
),
injuries AS (
    SELECT game_id, team_abbr, count(DISTINCT player_lookup) AS players_out
    FROM nba_raw.nbac_injury_report
    WHERE report_date {_IN_DATES} AND injury_status = 'Out'
    GROUP BY game_id, team_abbr
)
SELECT tg.game_id, tg.game_date, tg.season_year, tg.team_abbr, tg.opponent_abbr, tg.is_home,
       r.days_rest, r.days_rest = 1,
       CASE WHEN tg.is_home THEN l.home_spread ELSE -l.home_spread END, l.game_total,
       coalesce(i.players_out, 0)
FROM team_games AS tg
LEFT JOIN rest AS r USING (game_id, team_abbr)
LEFT JOIN game_lines AS l USING (game_id)
LEFT JOIN injuries AS i USING (game_id, team_abbr)"""


# --------------------------------------------------------------------------------------------
# Phase 4: computed from phase 3 and earlier phase 4 tables
# --------------------------------------------------------------------------------------------


def _ready(*tables: tuple[str, str]) -> str:
    """Dates being built on which every upstream table has rows (else the date writes 0)."""
    checks = " AND ".join(f"d IN (SELECT {col} FROM {table} WHERE {col} {_IN_DATES})" for table, col in tables)
    return f"ready AS (SELECT d FROM _bk_dates WHERE {checks})"


_PGS = ("nba_analytics.player_game_summary", "game_date")
_TEAM_DEF = ("nba_analytics.team_defense_game_summary", "game_date")
_TEAM_OFF = ("nba_analytics.team_offense_game_summary", "game_date")
_UPC_PLAYER = ("nba_analytics.upcoming_player_game_context", "game_date")
_UPC_TEAM = ("nba_analytics.upcoming_team_game_context", "game_date")
_TDZA = ("nba_precompute.team_defense_zone_analysis", "analysis_date")
_PSZA = ("nba_precompute.player_shot_zone_analysis", "analysis_date")
_PCF = ("nba_precompute.player_composite_factors", "game_date")
_PDC = ("nba_precompute.player_daily_cache", "cache_date")

# The (made, attempted) columns of each shot zone, as the box scores name them.
_ZONES = (
    ("paint_makes", "paint_attempts"),
    ("mid_range_makes", "mid_range_attempts"),
    ("three_pt_made", "three_pt_attempted"),
)


def _rates(pairs: Iterable[tuple[str, str]]) -> str:
    """Each part's share of its whole over the sample, to 4 places (NULL when the whole is 0)."""
    return ", ".join(f"round(sum({part}) / nullif(sum({whole}), 0), 4)" for part, whole in pairs)


_TIER = "CASE WHEN count(*) >= {full} THEN 'high' WHEN count(*) >= {half} THEN 'medium' ELSE 'low' END"


def _last_games(source: tuple[str, str], entity: str, n: int) -> str:
    """The CTEs `ready` and `ranked`: for every analysis date being built, each entity's games
    this season up to that date, numbered from the latest (rn = 1)."""
    table = source[0]
    return f"""{_ready(source)},
targets AS (
    SELECT DISTINCT game_date AS analysis_date, season_year
    FROM {table} WHERE game_date IN (SELECT d FROM ready)
),
ranked AS (
    SELECT t.analysis_date, h.*,
           row_number() OVER (PARTITION BY t.analysis_date, h.{entity}
                              ORDER BY h.game_date DESC, h.game_id DESC) AS rn
    FROM targets AS t
    JOIN {table} AS h
      ON h.season_year = t.season_year AND h.game_date <= t.analysis_date
)"""


# Last 15 games of each team this season, as of the analysis date.
_SQL_TDZA = f"""
WITH {_last_games(_TEAM_DEF, "defending_team_abbr", 15)}
SELECT analysis_date, any_value(season_year), defending_team_abbr, count(*),
       {_rates((f"opp_{made}", f"opp_{attempted}") for made, attempted in _ZONES)},
       round(avg(points_allowed), 2), round(avg(defensive_rating), 2),
       {_TIER.format(full=15, half=10)}
FROM ranked WHERE rn <= 15
GROUP BY analysis_date, defending_team_abbr"""

# Last 10 games of each player this season: each zone's share of his shots, then his rate of
# making them there; fewer than 3 games is too little to say anything.
_SQL_PSZA = f"""
WITH {_last_games(_PGS, "player_lookup", 10)}
SELECT analysis_date, any_value(season_year), player_lookup, count(*),
       {_rates((attempted, "fg_attempted") for _, attempted in _ZONES)},
       {_rates(_ZONES)},
       round(avg(points), 2), {_TIER.format(full=10, half=5)}
FROM ranked WHERE rn <= 10
GROUP BY analysis_date, player_lookup
HAVING count(*) >= 3"""

_SQL_PCF = f"""
WITH {_ready(_UPC_PLAYER, _UPC_TEAM, _PSZA, _TDZA)},
joined AS (
    SELECT u.game_id, u.game_date, u.player_lookup, u.team_abbr, u.opponent_abbr,
           coalesce(c.days_rest, 3) AS days_rest, s.paint_rate, s.points_avg, t.paint_pct_allowed,
           t.defensive_rating_avg, u.points_line, u.game_total
    FROM nba_analytics.upcoming_player_game_context AS u
    JOIN nba_precompute.player_shot_zone_analysis AS s
      ON s.analysis_date = u.game_date AND s.player_lookup = u.player_lookup
    JOIN nba_precompute.team_defense_zone_analysis AS t
      ON t.analysis_date = u.game_date AND t.team_abbr = u.opponent_abbr
    LEFT JOIN nba_analytics.upcoming_team_game_context AS c
      ON c.game_id = u.game_id AND c.team_abbr = u.team_abbr
    WHERE u.game_date IN (SELECT d FROM ready)
),
scored AS (
    SELECT j.*, round(least(100, 100 - 15 * least(days_rest, 4) + 40), 1) AS fatigue,
           round(100 * paint_rate * (paint_pct_allowed - 0.55), 2) AS mismatch,
           round(coalesce(game_total, 220) - 220, 2) / 10 AS pace,
           round(points_avg - points_line, 2) / 5 AS usage_spike
    FROM joined AS j
)
SELECT game_id, game_date, player_lookup, team_abbr, opponent_abbr, fatigue, mismatch, pace,
       usage_spike, round((50 - fatigue) / 50 + mismatch / 10 + pace + usage_spike, 3)
FROM scored"""

# Needs >= 5 games in the last 180 days; team pace over the last 30 days.
_SQL_PDC = f"""
WITH {_ready(_PGS, _TEAM_OFF, _UPC_PLAYER, _PSZA)},
targets AS (
    SELECT game_date AS cache_date, player_lookup, any_value(team_abbr) AS team_abbr,
           any_value(game_id) AS game_id
    FROM nba_analytics.upcoming_player_game_context
    WHERE game_date IN (SELECT d FROM ready)
    GROUP BY game_date, player_lookup
),
ranked AS (
    SELECT t.cache_date, t.player_lookup, h.points, h.minutes,
           row_number() OVER (PARTITION BY t.cache_date, t.player_lookup ORDER BY h.game_date DESC) AS rn
    FROM targets AS t
    JOIN nba_analytics.player_game_summary AS h
      ON h.player_lookup = t.player_lookup
     AND h.game_date BETWEEN t.cache_date - 180 AND t.cache_date
),
form AS (
    SELECT cache_date, player_lookup, count(*) AS n_games,
           avg(points) FILTER (WHERE rn <= 5) AS pts5, avg(points) FILTER (WHERE rn <= 10) AS pts10,
           stddev_samp(points) FILTER (WHERE rn <= 10) AS std10,
           avg(minutes) FILTER (WHERE rn <= 10) AS min10
    FROM ranked GROUP BY cache_date, player_lookup HAVING count(*) >= 5
),
pace AS (
    SELECT t.cache_date, t.team_abbr, avg(o.pace) AS pace30
    FROM (SELECT DISTINCT cache_date, team_abbr FROM targets) AS t
    JOIN nba_analytics.team_offense_game_summary AS o
      ON o.team_abbr = t.team_abbr AND o.game_date BETWEEN t.cache_date - 30 AND t.cache_date
    GROUP BY t.cache_date, t.team_abbr
)
SELECT t.cache_date, t.player_lookup, t.team_abbr, t.game_id, f.n_games, round(f.pts5, 2),
       round(f.pts10, 2), round(f.std10, 2), round(f.min10, 2), round(p.pace30, 2),
       s.paint_rate, s.three_pt_rate
FROM targets AS t
JOIN form AS f USING (cache_date, player_lookup)
LEFT JOIN pace AS p USING (cache_date, team_abbr)
LEFT JOIN nba_precompute.player_shot_zone_analysis AS s
  ON s.analysis_date = t.cache_date AND s.player_lookup = t.player_lookup"""

_SQL_MLFS = f"""
WITH {_ready(_PDC, _PCF, _PSZA, _TDZA)}
SELECT f.game_id, f.game_date, f.player_lookup,
       [c.points_avg_last_5, c.points_avg_last_10, c.points_std_last_10, c.minutes_avg_last_10,
        c.team_pace_last_30d, f.fatigue_score, f.shot_zone_mismatch_score, f.pace_score,
        f.usage_spike_score, f.total_composite_adjustment, s.paint_rate, s.mid_range_rate,
        s.three_pt_rate, t.paint_pct_allowed, t.three_pt_pct_allowed, t.defensive_rating_avg]::DOUBLE[],
       16, 'v2_16features',
       CASE WHEN s.data_quality_tier = 'high' AND t.data_quality_tier = 'high' THEN 'high' ELSE 'medium' END
FROM nba_precompute.player_composite_factors AS f
JOIN nba_precompute.player_daily_cache AS c
  ON c.cache_date = f.game_date AND c.player_lookup = f.player_lookup
JOIN nba_precompute.player_shot_zone_analysis AS s
  ON s.analysis_date = f.game_date AND s.player_lookup = f.player_lookup
JOIN nba_precompute.team_defense_zone_analysis AS t
  ON t.analysis_date = f.game_date AND t.team_abbr = f.opponent_abbr
WHERE f.game_date IN (SELECT d FROM ready)"""

_INSERT_SQL: dict[str, str] = {
    "nbac_gamebook_player_stats": _SQL_GAMEBOOK,
    "nbac_team_boxscore": _SQL_TEAM_BOXSCORE,
    "bdl_player_boxscores": _SQL_BDL,
    "bettingpros_player_points_props": _SQL_BETTINGPROS,
    "odds_api_player_points_props": _SQL_ODDS_PROPS,
    "bigdataball_play_by_play": _sql_play_by_play("bdb"),
    "nbac_play_by_play": _sql_play_by_play("nbac"),
    "odds_api_game_lines": _SQL_GAME_LINES,
    "nbac_injury_report": _SQL_INJURIES,
    "player_game_summary": _SQL_PLAYER_GAME_SUMMARY,
    "team_defense_game_summary": _SQL_TEAM_DEFENSE,
    "team_offense_game_summary": _SQL_TEAM_OFFENSE,
    "upcoming_player_game_context": _SQL_UPCOMING_PLAYER,
    "upcoming_team_game_context": _SQL_UPCOMING_TEAM,
    "team_defense_zone_analysis": _SQL_TDZA,
    "player_shot_zone_analysis": _SQL_PSZA,
    "player_composite_factors": _SQL_PCF,
    "player_daily_cache": _SQL_PDC,
    "ml_feature_store_v2": _SQL_MLFS,
}


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------


def expected_dates(con: duckdb.DuckDBPyConnection, start: date, end: date) -> list[date]:
    """Dates with final regular-season, play-in or playoff games in [start, end]."""
    rows = con.execute(
        f"SELECT DISTINCT game_date FROM {SCHEDULE_TABLE} WHERE {GAME_FILTER} AND game_date BETWEEN ? AND ? ORDER BY 1",
        [start, end],
    ).fetchall()
    return [r[0] for r in rows]


def _set_dates(con: duckdb.DuckDBPyConnection, dates: Sequence[date]) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _bk_dates AS SELECT unnest(?::DATE[]) AS d", [list(dates)])


def _counts(con: duckdb.DuckDBPyConnection, t: TableDef, start: date, end: date) -> dict[date, int]:
    rows = con.execute(
        f"SELECT {t.date_column}, count(*) FROM {t.table} WHERE {t.date_column} BETWEEN ? AND ? GROUP BY 1",
        [start, end],
    ).fetchall()
    return dict(rows)


def build(con: duckdb.DuckDBPyConnection, table_id: str, start: date, end: date, *, seed: int) -> dict[date, int]:
    """(Re)compute `table_id` for every expected date in [start, end]; rows written per date.

    Idempotent: the range is deleted and rewritten in one transaction. A phase 2 table writes
    0 rows on dates its source has nothing for; a phase 3/4 table writes 0 rows on dates an
    upstream table has no rows for.
    """
    t = _table(table_id)
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    ensure_tables(con, [table_id])
    _install_macros(con)
    if table_id == "nbac_schedule":
        return _build_schedule(con, start, end, seed)
    dates = expected_dates(con, start, end)
    if t.phase == PHASE_RAW:
        dates_to_build = [d for d in dates if source_available(table_id, d, seed)]
    else:
        dates_to_build = dates
    _set_dates(con, dates_to_build)
    con.begin()
    try:
        con.execute(f"DELETE FROM {t.table} WHERE {t.date_column} BETWEEN ? AND ?", [start, end])
        if dates_to_build:
            sql = _INSERT_SQL[table_id]
            con.execute(f"INSERT INTO {t.table} {sql}", {"seed": int(seed)} if "$seed" in sql else None)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    counts = _counts(con, t, start, end)
    return {d: counts.get(d, 0) for d in sorted({*dates, *counts})}


def _build_schedule(con: duckdb.DuckDBPyConnection, start: date, end: date, seed: int) -> dict[date, int]:
    rows = [r for r in schedule_rows(seed) if start <= r[1] <= end]
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in range(7)]
    con.begin()
    try:
        con.execute(f"DELETE FROM {SCHEDULE_TABLE} WHERE game_date BETWEEN ? AND ?", [start, end])
        if rows:
            con.execute(
                f"INSERT INTO {SCHEDULE_TABLE} SELECT unnest(?::VARCHAR[]), unnest(?::DATE[]), "
                "unnest(?::INTEGER[]), unnest(?::INTEGER[]), unnest(?::VARCHAR[]), "
                "unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
                [list(c) for c in columns],
            )
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return dict(sorted(_counts(con, TABLES["nbac_schedule"], start, end).items()))


# --------------------------------------------------------------------------------------------
# Run history, written the way the real processors write it
# --------------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _processor_phase(processor: str) -> str:
    for t in TABLES.values():
        if t.processor == processor:
            return t.phase
    raise ValueError(f"unknown demo processor {processor!r}")


def _as_dates(data_dates: date | Iterable[date]) -> list[date]:
    return [data_dates] if isinstance(data_dates, date) else list(data_dates)


def _errors_json(errors: str | Sequence[Mapping[str, str]] | None) -> str:
    """The JSON of the errors column: `[]` when there are none, as production writes it."""
    if isinstance(errors, str):
        return errors
    return json.dumps(list(errors or []))


def range_chunks(dates: Sequence[date], days: int = RANGE_DAYS) -> list[list[date]]:
    """Sorted dates cut into ranges each spanning at most `days` calendar days."""
    chunks: list[list[date]] = []
    for d in sorted(dates):
        if chunks and (d - chunks[-1][0]).days < days:
            chunks[-1].append(d)
        else:
            chunks.append([d])
    return chunks


_INSERT_RUN = (
    f"INSERT INTO {RUN_HISTORY_TABLE} (processor_name, run_id, phase, data_date, date_range_filter_start, "
    "date_range_filter_end, status, started_at, processed_at, duration_seconds, records_processed, errors, "
    "skip_reason, failure_category, backfill_mode, trigger_source) "
)


class RunFields(TypedDict, total=False):
    """How a run is written beyond its outcome: the same on its `running` row and its final row."""

    phase: str | None  # default: the processor's own phase
    backfill_mode: bool  # default False
    trigger_source: str  # default "manual"
    date_range: tuple[date, date] | None  # one run for a whole range, dated at its end


def begin_run(
    con: duckdb.DuckDBPyConnection,
    processor: str,
    data_dates: date | Iterable[date],
    started_at: datetime | None = None,
    **run: Unpack[RunFields],
) -> dict[date, str]:
    """Write the `running` row of one run per date; returns the run_id of each date.

    With `date_range`, one run for the whole range: one row dated at its end (`data_dates`
    is then that end date)."""
    ensure_run_history(con)
    dates = _as_dates(data_dates)
    started_at = started_at or _utcnow()
    run_ids = [f"{processor}_{d:%Y%m%d}_{uuid.uuid4().hex[:8]}" for d in dates]
    con.execute(
        _INSERT_RUN + "SELECT $p, unnest($ids::VARCHAR[]), $phase, unnest($dates::DATE[]), $first, $last, 'running', "
        "$t, NULL, NULL, NULL, NULL, NULL, NULL, $bf, $ts",
        {"p": processor, "ids": run_ids, "dates": dates, "t": started_at, **_run_params(processor, run)},
    )  # fmt: skip
    return dict(zip(dates, run_ids, strict=True))


def _run_params(processor: str, run: RunFields) -> dict[str, Any]:
    first, last = run.get("date_range") or (None, None)
    return {"phase": run.get("phase") or _processor_phase(processor), "first": first, "last": last,
            "bf": run.get("backfill_mode", False), "ts": run.get("trigger_source", "manual")}  # fmt: skip


def finish_run(
    con: duckdb.DuckDBPyConnection,
    processor: str,
    run_ids: Mapping[date, str],
    status: str,
    records: int | Mapping[date, int] | None,
    errors: str | Sequence[Mapping[str, str]] | None,
    started_at: datetime,
    *,
    finished_at: datetime | None = None,
    skip_reason: str | None = None,
    failure_category: str | None = None,
    **run: Unpack[RunFields],
) -> None:
    """Write the final row of each run begun by `begin_run` (same run_id, same range);
    `records` is one count, or one per date."""
    finished_at = finished_at or _utcnow()
    dates = list(run_ids)
    per_date = [records.get(d, 0) if isinstance(records, Mapping) else records for d in dates]
    con.execute(
        _INSERT_RUN + "SELECT $p, unnest($ids::VARCHAR[]), $phase, unnest($dates::DATE[]), $first, $last, $status, "
        "$t0, $t1, $dur, unnest($rec::BIGINT[]), $err::JSON, $skip, $cat, $bf, $ts",
        {"p": processor, "ids": [run_ids[d] for d in dates], "dates": dates, "status": status, "t0": started_at,
         "t1": finished_at, "dur": (finished_at - started_at).total_seconds(), "rec": per_date,
         "err": _errors_json(errors), "skip": skip_reason, "cat": failure_category, **_run_params(processor, run)},
    )  # fmt: skip
