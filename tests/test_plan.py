"""The planner on hand-built validations: what runs, in which order, and what must wait."""

from __future__ import annotations

import gc
import json
from datetime import UTC, date, datetime

import pytest
from conftest import MINI_SPEC

from backfill_kit.common.status import Status
from backfill_kit.errors import BackfillKitError, InputError
from backfill_kit.plan import build_plan, load_plan, refuse_downstream_triggers
from backfill_kit.running.estimates import estimator_for
from backfill_kit.spec.load import parse_spec
from backfill_kit.validation.calendar import ExpectedDay
from backfill_kit.validation.validator import Cell, Validation

S = Status
JAN = [date(2024, 1, d) for d in (10, 12, 13, 14, 15, 17)]  # 11 and 16 are off days


def spec_of(tmp_path, text=MINI_SPEC):
    path = tmp_path / "mini.yaml"
    path.write_text(text)
    return parse_spec(text, path)


def validation(spec, statuses, days=JAN, fallback=None):
    """Every cell complete unless `statuses` says otherwise: {(table, date or None): status}."""
    cells = []
    for t in spec.tables:
        for d in days:
            status = statuses.get((t.id, d), statuses.get((t.id, None), S.COMPLETE))
            cover = fallback if (t.id == "props" and status is S.NO_DATA) else None
            cells.append(
                Cell(
                    t.id,
                    spec.phase_of(t.id).name,
                    d,
                    "s1",
                    status,
                    0,
                    1,
                    fallback=cover,
                    latest_status="success" if status is S.COMPLETE else None,
                )
            )
    expected = [ExpectedDay(d, 1, "s1", date(2024, 1, 1)) for d in days]
    return Validation(spec, days[0], days[-1], expected, cells, [], datetime.now(UTC), tuple(t.id for t in spec.tables))


def steps(plan):
    return [(st.index, s.table, s.start, s.end) for st in plan.stages for s in st.steps]


def test_nothing_to_do_makes_an_empty_plan(tmp_path):
    plan = build_plan(validation(spec_of(tmp_path), {}))
    assert plan.steps == [] and plan.blocked == []
    assert "Nothing to run." in plan.text()
    # Nothing to run takes no time: no "unknown", and no talk of a missing basis for estimates.
    assert "estimated 0 min 00 s\n" in plan.text() and "no basis" not in plan.text()


def test_contiguous_expected_dates_make_one_step_across_off_days(tmp_path):
    plan = build_plan(validation(spec_of(tmp_path), {("boxscore", None): S.NEVER_RAN}))
    assert steps(plan) == [(1, "boxscore", date(2024, 1, 10), date(2024, 1, 17))]
    assert plan.steps[0].dates == tuple(JAN)
    assert plan.steps[0].causes == {"never_ran": 6}


def test_a_date_that_needs_no_work_splits_the_range(tmp_path):
    v = validation(spec_of(tmp_path), {("boxscore", d): S.FAILED for d in JAN if d != date(2024, 1, 13)})
    assert [(s.start, s.end) for s in build_plan(v).steps] == [
        (date(2024, 1, 10), date(2024, 1, 12)),
        (date(2024, 1, 14), date(2024, 1, 17)),
    ]


def test_steps_are_chunked_to_the_jobs_maximum(tmp_path):
    spec = spec_of(
        tmp_path,
        MINI_SPEC.replace(
            'skip_downstream: {args: ["--no-trigger"]}',
            'skip_downstream: {args: ["--no-trigger"]}\n  max_dates_per_step: 4',
        ),
    )
    plan = build_plan(validation(spec, {("boxscore", None): S.NEVER_RAN}))
    assert [len(s.dates) for s in plan.steps] == [4, 2]


def test_upstream_stages_come_first_and_downstream_steps_wait_for_them(tmp_path):
    spec = spec_of(tmp_path)
    v = validation(spec, {("boxscore", None): S.NEVER_RAN, ("summary", None): S.NEVER_RAN, ("cache", None): S.LOST})
    plan = build_plan(v)
    assert [(st.phase, [s.table for s in st.steps]) for st in plan.stages] == [
        ("raw", ["boxscore"]),
        ("analytics", ["summary"]),
        ("analytics", ["cache"]),
    ]
    box, summary, cache = plan.steps
    assert summary.after == (box.id,)
    assert cache.after == (summary.id,)  # boxscore reaches it through summary (test_runner: skips chain)


def test_cells_that_need_no_backfill_are_left_alone(tmp_path):
    spec = spec_of(tmp_path)
    statuses = {
        ("boxscore", JAN[0]): S.BOOTSTRAP,
        ("boxscore", JAN[1]): S.RUNNING,
        ("boxscore", JAN[2]): S.NO_DATA,
        ("boxscore", JAN[3]): S.PARTIAL,
        ("boxscore", JAN[4]): S.STALE,
        ("boxscore", JAN[5]): S.COMPLETE,
    }
    plan = build_plan(validation(spec, statuses))
    assert [s.dates for s in plan.steps] == [(JAN[3], JAN[4])]
    assert plan.steps[0].causes == {"partial": 1, "stale": 1}


def test_no_data_only_on_request_and_never_where_a_fallback_covers(tmp_path):
    spec = spec_of(tmp_path)
    assert build_plan(validation(spec, {("props", None): S.NO_DATA})).steps == []
    uncovered = build_plan(validation(spec, {("props", None): S.NO_DATA}), include_no_data=True)
    assert len(uncovered.steps[0].dates) == 6
    covered = build_plan(validation(spec, {("props", None): S.NO_DATA}, fallback="backup_props"), include_no_data=True)
    assert covered.steps == []


def test_a_downstream_cell_whose_upstream_stays_missing_is_blocked_not_run(tmp_path):
    spec = spec_of(tmp_path)
    v = validation(
        spec, {("boxscore", JAN[0]): S.RUNNING, ("summary", None): S.NEVER_RAN, ("cache", None): S.NEVER_RAN}
    )
    plan = build_plan(v)
    assert [(b.table, b.date) for b in plan.blocked] == [("summary", JAN[0]), ("cache", JAN[0])]
    assert plan.blocked[0].reason == "upstream boxscore is running on 2024-01-10 and not in this plan"
    assert all(JAN[0] not in s.dates for s in plan.steps)
    assert "Blocked, not run (2 cells)" in plan.text()


def test_cascade_none_leaves_dependents_and_dependents_rebuilds_them(tmp_path):
    v = validation(spec_of(tmp_path), {("boxscore", JAN[2]): S.PARTIAL})
    assert [s.table for s in build_plan(v).steps] == ["boxscore"]
    spec = spec_of(tmp_path, MINI_SPEC.replace("phases:", "cascade: dependents\nphases:"))
    plan = build_plan(validation(spec, {("boxscore", JAN[2]): S.PARTIAL}))
    assert [(s.table, s.dates, s.causes) for s in plan.steps] == [
        ("boxscore", (JAN[2],), {"partial": 1}),
        ("summary", (JAN[2],), {"cascade:boxscore": 1}),
        ("cache", (JAN[2],), {"cascade:summary": 1}),
    ]


def test_parallel_phases_share_a_stage_and_sequential_phases_take_turns(tmp_path):
    spec = spec_of(tmp_path, MINI_SPEC.replace("  - name: raw\n", "  - name: raw\n    max_workers: 3\n"))
    v = validation(spec, {(t, None): S.NEVER_RAN for t in ("boxscore", "props", "backup_props", "summary", "cache")})
    plan = build_plan(v)
    assert [(st.mode, st.workers, [s.table for s in st.steps]) for st in plan.stages] == [
        ("parallel", 3, ["boxscore", "props", "backup_props"]),
        ("parallel", 1, ["summary"]),
        ("parallel", 1, ["cache"]),  # cache depends on summary: next level
    ]
    seq = spec_of(
        tmp_path, MINI_SPEC.replace("    bootstrap_days: 2\n", "    bootstrap_days: 2\n    mode: sequential\n")
    )
    assert [
        st.mode for st in build_plan(validation(seq, {("summary", None): S.FAILED, ("cache", None): S.FAILED})).stages
    ] == ["sequential", "sequential"]


def test_argv_is_filled_in_with_the_skip_downstream_setting_applied(tmp_path):
    spec = spec_of(tmp_path)
    plan = build_plan(validation(spec, {("boxscore", JAN[0]): S.FAILED}), python="/usr/bin/python3")
    assert plan.steps[0].argv == (
        "/usr/bin/python3",
        "-c",
        "pass",
        "boxscore",
        "2024-01-10",
        "2024-01-10",
        "--no-trigger",
    )
    assert plan.steps[0].workdir == str(tmp_path)
    assert "$ python3 -c pass boxscore 2024-01-10 2024-01-10 --no-trigger" in plan.text()
    assert "python3 below is /usr/bin/python3" in plan.text()  # the operator still sees which one
    refuse_downstream_triggers(plan)  # declared: fine


def test_a_job_without_skip_downstream_is_flagged_and_refused(tmp_path):
    spec = spec_of(tmp_path, MINI_SPEC.replace('  skip_downstream: {args: ["--no-trigger"]}\n', ""))
    plan = build_plan(validation(spec, {("boxscore", JAN[0]): S.FAILED}))
    assert "declares no way to skip downstream triggers" in plan.text()
    with pytest.raises(BackfillKitError, match="jobs of boxscore declare no skip_downstream setting"):
        refuse_downstream_triggers(plan)


def estimated_plan(v):
    return build_plan(v, estimates=estimator_for(v.spec, v.cells))


def test_estimates_come_from_past_durations(tmp_path):
    spec = spec_of(tmp_path)
    v = validation(spec, {("boxscore", None): S.FAILED})
    v.cells[:] = [
        c
        if c.table != "boxscore"
        else Cell(c.table, c.phase, c.date, c.season, c.status, 0, 1, 1, 1, "failed", None, 30.0)
        for c in v.cells
    ]
    plan = estimated_plan(v)
    assert plan.steps[0].estimated_seconds == 6 * 30.0
    assert "estimated 3 min 00 s (from 6 runs in the run history" in plan.text()


def _ran(cell, started, seconds):
    return cell._replace(attempts=1, latest_status="success", latest_started_at=started, latest_seconds=seconds)


def test_a_range_run_is_one_sample_for_its_whole_range(tmp_path):
    """Six dates written by one 60 s range run: a step of six dates takes 60 s, not 6 x 60."""
    spec = spec_of(tmp_path)
    v = validation(spec, {("boxscore", None): S.FAILED})
    one_run = datetime(2024, 2, 1, tzinfo=UTC)
    v.cells[:] = [_ran(c, one_run, 60.0) if c.table == "boxscore" else c for c in v.cells]
    assert estimated_plan(v).steps[0].estimated_seconds == 60.0


def test_earlier_journals_beside_the_spec_come_before_the_run_history(tmp_path):
    """The journal's own steps: 2 s to start plus 0.1 s a date, fitted over steps of 10 and
    30 dates, make a six-date step 2.6 s, whatever the production-like run history says."""
    spec = spec_of(tmp_path)
    v = validation(spec, {("boxscore", None): S.FAILED, ("summary", None): S.FAILED})
    v.cells[:] = [_ran(c, datetime(2024, 2, 1, tzinfo=UTC), 3600.0) for c in v.cells]
    events = []
    for n, (dates, seconds) in enumerate([(10, 3.0), (30, 5.0), (10, 3.0)]):
        step = f"boxscore:{n}"
        events += [  # a step costs what it held its worker, from its start to its finish
            {
                "event": "step_started",
                "time": "2024-02-01T00:00:00",
                "step": step,
                "table": "boxscore",
                "attempt": 1,
                "dates": dates,
            },
            {
                "event": "step_finished",
                "time": f"2024-02-01T00:00:0{seconds:.0f}",
                "step": step,
                "table": "boxscore",
                "outcome": "succeeded",
                "seconds": seconds,
            },
        ]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "plan.journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    plan = estimated_plan(v)
    estimate = {s.table: s.estimated_seconds for s in plan.steps}
    assert estimate["boxscore"] == pytest.approx(2.6)
    assert estimate["summary"] == 3600.0  # no journal of its own: the run history's one run of six dates
    assert (
        "(from 3 steps of earlier runs (runs/*.journal.jsonl beside the spec) and 1 run in the run history"
    ) in plan.text()


def test_a_plan_without_any_past_duration_says_it_has_no_basis(tmp_path):
    plan = estimated_plan(validation(spec_of(tmp_path), {("boxscore", None): S.FAILED}))
    assert plan.steps[0].estimated_seconds is None
    assert "estimated unknown (no basis: no earlier journal and no run durations)" in plan.text()


def test_a_plan_file_round_trips_and_a_broken_one_is_refused(tmp_path):
    spec = spec_of(tmp_path)
    plan = build_plan(validation(spec, {("boxscore", None): S.FAILED, ("summary", None): S.NEVER_RAN}))
    plan.write(tmp_path / "plan.json")
    again = load_plan(tmp_path / "plan.json")
    assert again.steps == plan.steps and again.stages == plan.stages
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["totals"] == {"stages": 2, "steps": 2, "dates": 12, "blocked": 0, "estimated_seconds": None}
    (tmp_path / "broken.json").write_text('{"format": 1, "stages": [')
    with pytest.raises(InputError, match=r"broken.json:1: not a plan file"):
        load_plan(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text('{"format": 1}')
    with pytest.raises(InputError, match="not a backfill-kit plan"):
        load_plan(tmp_path / "other.json")


def test_planning_leaves_the_cycle_collector_as_it_found_it(tmp_path):
    # The planner holds the collector while it builds; an embedding program's setting survives.
    v = validation(spec_of(tmp_path), {("boxscore", None): S.NEVER_RAN})
    was = gc.isenabled()
    try:
        gc.enable()
        assert build_plan(v).steps and gc.isenabled()
        gc.disable()
        assert build_plan(v).steps and not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_the_estimate_names_a_few_tables_without_basis_and_counts_the_rest():
    from backfill_kit.running.estimates import RUN_HISTORY, Estimator, fit

    estimator = Estimator({"a": fit([(1, 1.0)])}, {"a": RUN_HISTORY}, {"a": 1})
    assert estimator.describe(["a", "b", "c"]).endswith("; no basis for b, c")
    assert estimator.describe(["a", *"bcdefg"]).endswith("; no basis for b, c, d and 3 more")
