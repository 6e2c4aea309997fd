"""The spec loader: every problem reported at once, each at its file, line and field."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import MINI_SPEC

from backfill_kit.demo import example_spec_text
from backfill_kit.errors import SpecError
from backfill_kit.spec.load import load_spec


def line(text: str, needle: str) -> int:
    """The 1-based line of the first line containing `needle`: where a person would look."""
    return next(i for i, row in enumerate(text.splitlines(), 1) if needle in row)


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return [str(p).removeprefix(f"{path}:") for p in info.value.problems]


def test_the_shipped_example_loads_with_the_real_pipeline_shape(tmp_path):
    path = tmp_path / "nba_props.yaml"
    path.write_text(example_spec_text())
    spec = load_spec(path)
    assert [len(p.tables) for p in spec.phases] == [10, 5, 5]
    assert [p.mode for p in spec.phases] == ["parallel", "parallel", "sequential"]
    assert [t.id for t in spec.phases[2].tables] == [
        "team_defense_zone_analysis",
        "player_shot_zone_analysis",
        "player_composite_factors",
        "player_daily_cache",
        "ml_feature_store_v2",
    ]
    assert spec.table("ml_feature_store_v2").table == "nba_predictions.ml_feature_store_v2"
    assert {spec.date_column_of(spec.table(t)) for t in ("team_defense_zone_analysis", "player_daily_cache")} == {
        "analysis_date",
        "cache_date",
    }
    assert spec.resolve_path(spec.warehouse.path) == tmp_path / "nba_props.duckdb"
    assert spec.job_of(spec.table("player_game_summary")).max_dates_per_step == 200  # phase overrides defaults


def test_every_problem_is_reported_at_once_with_its_line(tmp_path):
    text = MINI_SPEC.replace("min_rows_per_game: 2}", "min_rows_per_game: 2, colour: red}")
    text = text.replace("stale_after_hours: 6", "stale_after_hours: -1")
    text = text.replace("depends_on: [boxscore]", "depends_on: [box_score]")
    assert problems_of(tmp_path, text) == [
        f"{line(text, 'stale_after_hours')}: run_history.stale_after_hours: Input should be greater than 0 (got -1)",
        f"{line(text, 'colour')}: phases[0].tables[0].colour: unknown field; expected one of: id, table, date_column, processor, "
        "priority, min_rows, min_rows_per_game, fallback, depends_on, job",
        f"{line(text, 'box_score')}: phases[1].tables[0].depends_on[0]: depends on undefined table 'box_score'; "
        "declared tables: boxscore, props, backup_props, summary, cache",
    ]  # a misspelt reference is reported in the same round as a misspelt field


def test_undefined_dependency_and_missing_date_column(tmp_path):
    text = MINI_SPEC.replace("depends_on: [boxscore]", "depends_on: [box_score]").replace(
        "date_column: game_date\ncalendar", "calendar"
    )
    required = "required: name the table's date column here or set a top-level date_column"
    assert problems_of(tmp_path, text) == [
        f"{line(text, 'id: boxscore')}: phases[0].tables[0].date_column: {required}",
        f"{line(text, 'id: props')}: phases[0].tables[1].date_column: {required}",
        f"{line(text, 'id: backup_props')}: phases[0].tables[2].date_column: {required}",
        f"{line(text, 'box_score')}: phases[1].tables[0].depends_on[0]: depends on undefined table 'box_score'; declared tables: "
        "boxscore, props, backup_props, summary, cache",
        f"{line(text, 'id: summary')}: phases[1].tables[0].date_column: {required}",
    ]


def test_a_dependency_cycle_is_named(tmp_path):
    text = MINI_SPEC.replace(
        "date_column: cache_date, processor: CacheProcessor, depends_on: [summary]",
        "date_column: cache_date, processor: CacheProcessor, depends_on: [summary]}\n"
        "      - {id: extra, table: analytics.extra, processor: X, depends_on: [extra2]}\n"
        "      - {id: extra2, table: analytics.extra2, processor: Y, depends_on: [extra]",
    )
    (problem,) = problems_of(tmp_path, text)
    assert "dependency cycle: extra -> extra2 -> extra" in problem


def test_depending_on_a_later_phase_is_refused(tmp_path):
    text = MINI_SPEC.replace("processor: PropsProcessor,", "processor: PropsProcessor, depends_on: [summary],")
    (problem,) = problems_of(tmp_path, text)
    assert "depends on 'summary' of a later phase ('analytics')" in problem


def test_job_argv_needs_its_range_and_known_placeholders(tmp_path):
    text = MINI_SPEC.replace('"{id}", "{start}", "{end}"', '"{id}", "{begin}"')
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1 + 5 * 2  # the placeholder where it is written; each table lacks the range
    assert problems[0].startswith("21: job_defaults.argv[4]: {begin} names no placeholder in '{begin}'")
    assert "{start}" in problems[1] and "{end}" in problems[2]


def test_bad_identifiers_and_yaml(tmp_path):
    text = MINI_SPEC.replace("table: raw.boxscore", "table: raw.box score; DROP")
    (problem,) = problems_of(tmp_path, text)
    assert "phases[0].tables[0].table: 'raw.box score; DROP' is not a valid table name" in problem
    (broken,) = problems_of(tmp_path, "name: [unclosed\n")
    assert re.fullmatch(
        r"[12]: not valid YAML: .*expected ',' or '\]'.*", broken
    )  # libyaml and pure Python word it apart
    assert problems_of(tmp_path, "- a list") == ["1: the spec must be a YAML mapping (key: value)"]


def test_seasons_must_be_ordered_and_bootstrap_needs_them(tmp_path):
    text = MINI_SPEC.replace(
        "{name: s2, start: 2024-03-01, end: 2024-03-31}", "{name: s2, start: 2024-03-01, end: 2024-02-01}"
    )
    assert problems_of(tmp_path, text) == [
        f"{line(text, 'name: s2')}: calendar.seasons[1].end: season 's2' ends (2024-02-01) before it starts (2024-03-01)"
    ]


def test_a_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read the spec file: No such file or directory"):
        load_spec(tmp_path / "nope.yaml")


def test_a_table_without_any_date_column_is_named_never_guessed(tmp_path):
    """The loader refuses such a spec; one built around it in Python gets the same word, not 'date'."""
    path = tmp_path / "nba_props.yaml"
    path.write_text(example_spec_text())
    spec = load_spec(path)
    table = next(t for t in spec.tables if t.date_column is None)
    assert spec.date_column_of(table) == "game_date"
    with pytest.raises(SpecError, match=re.escape(f"{spec.field_path(table.id)}.date_column: required")):
        replace(spec, date_column=None).date_column_of(table)


def test_a_job_without_argv_at_any_level_is_named_never_guessed(tmp_path):
    """The spec's objects are plain dataclasses: one built in Python around the loader's checks
    gets the loader's message at the field, not a TypeError from deep inside."""
    path = tmp_path / "nba_props.yaml"
    path.write_text(example_spec_text())
    spec = load_spec(path)
    table = spec.tables[0]
    assert spec.job_of(table).argv
    bare = replace(spec, job_defaults=None, phases=tuple(replace(p, job=None) for p in spec.phases))
    with pytest.raises(SpecError, match=re.escape(f"{spec.field_path(table.id)}.job.argv: required")):
        bare.job_of(replace(table, job=None))


def test_a_backend_that_is_not_a_name_is_one_problem_even_with_a_filter(tmp_path):
    """A list as the backend used to crash the filter's check of a broken spec (unhashable)."""
    assert problems_of(tmp_path, MINI_SPEC.replace("backend: duckdb", "backend: []")) == [
        "3: warehouse.backend: unknown backend '[]'; expected one of: duckdb, bigquery"
    ]


def test_an_empty_column_name_is_refused_at_its_field(tmp_path):
    """Every column the spec puts into SQL is checked by one rule, an empty name too."""
    broken = MINI_SPEC.replace("status: status,", 'status: "",', 1)
    line = next(i for i, s in enumerate(broken.splitlines(), 1) if 'status: ""' in s)
    assert problems_of(tmp_path, broken) == [
        f"{line}: run_history.columns.status: '' is not a valid column name (got '')"
    ]


def test_spec_objects_hash_and_their_mappings_cannot_change(tmp_path):
    """Frozen dataclasses that held plain dicts: hash(spec) raised TypeError (unhashable type:
    'dict'), so an lru_cache over a spec failed, and spec.run_history.no_data_reasons could be
    edited in place behind the frozen spec."""
    import copy
    import functools
    import json
    import pickle

    path = tmp_path / "nba_props.yaml"
    path.write_text(example_spec_text().replace("  workdir: .", "  workdir: .\n  env: {TZ: UTC}", 1))
    spec, again = load_spec(path), load_spec(path)
    assert spec == again and hash(spec) == hash(again)
    assert functools.lru_cache(lambda s: s.name)(spec) == "nba_props"
    job = spec.job_of(spec.tables[0])
    assert job.env == {"TZ": "UTC"} and hash(job) == hash(again.job_of(again.tables[0]))
    for mapping in (spec.run_history.no_data_reasons, spec.job_defaults.env, spec.job_defaults.skip_downstream.env):
        with pytest.raises(TypeError, match="cannot change"):
            mapping["x"] = ("y",)
        with pytest.raises(TypeError, match="cannot change"):
            mapping.update(x=("y",))
    assert spec.run_history.no_data_reasons == {"failure_category": ("no_data_available",), "skip_reason": ("no_data",)}
    assert json.loads(json.dumps(spec.job_defaults.env)) == {"TZ": "UTC"}
    assert pickle.loads(pickle.dumps(spec)) == spec == copy.deepcopy(spec)
    assert replace(spec, name="other").run_history.no_data_reasons == spec.run_history.no_data_reasons
