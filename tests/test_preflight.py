"""Every preflight check, passing and failing, on real DuckDB fixtures and real subprocesses."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import NOW, MiniWarehouse

from backfill_kit import preflight
from backfill_kit.cli.commands import cli
from backfill_kit.preflight import run_preflight
from backfill_kit.running.locks import LockSet
from backfill_kit.spec.load import load_spec

D1 = date(2024, 1, 10)
QUICK_GOOD = '  skip_downstream: {args: ["--no-trigger"]}\n'


def healthy(mini: MiniWarehouse, *, dry_run: str = '["--rehearse"]') -> Path:
    mini.games(D1).rows("raw.boxscore", D1, 2).rows("raw.props", D1, 3).rows("raw.backup_props", D1, 1)
    mini.rows("analytics.summary", D1, 1).rows("analytics.cache", D1, 1)
    spec = mini.close()
    spec.write_text(spec.read_text().replace(QUICK_GOOD, QUICK_GOOD + f"  dry_run_args: {dry_run}\n"))
    return spec


def outcomes(spec: Path, **kw) -> dict[str, tuple[str, str]]:
    checks = run_preflight(load_spec(spec), date(2024, 1, 1), date(2024, 1, 31), **kw)
    return {c.name: (c.outcome, c.why) for c in checks}


def edit(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new))


def test_a_healthy_pipeline_passes_everything(mini):
    result = outcomes(healthy(mini))
    assert {name: o for name, (o, _) in result.items()} == {
        "warehouse reachable": "pass",
        "tables and date columns": "pass",
        "run history columns": "pass",
        "calendar has dates": "pass",
        "job commands resolve": "pass",
        "jobs skip downstream triggers": "pass",
        "one writer at a time": "pass",
        "jobs dry run": "pass",
        "table hazards": "skip",
        "orphaned running rows": "pass",
        "run history statuses": "pass",
        "no other runner": "pass",
        "upstream coverage": "pass",
        "free disk for logs": "pass",
    }
    assert "rehearsed 2024-01-10" in result["jobs dry run"][1]


def test_an_unreachable_warehouse_fails_and_the_checks_needing_it_are_skipped(mini):
    spec = healthy(mini)
    edit(spec, "path: mini.duckdb", "path: nowhere.duckdb")
    result = outcomes(spec)
    assert result["warehouse reachable"][0] == "fail" and "does not exist" in result["warehouse reachable"][1]
    assert result["tables and date columns"][0] == result["calendar has dates"][0] == "skip"


def test_a_missing_table_and_a_missing_run_history_column_fail(mini):
    spec = healthy(mini)
    import duckdb

    with duckdb.connect(str(spec.with_suffix(".duckdb"))) as con:
        con.execute("DROP TABLE analytics.cache; ALTER TABLE ref.run_history RENAME COLUMN errors TO error_list")
    result = outcomes(spec)
    assert result["tables and date columns"] == ("fail", "missing: analytics.cache (phases[1].tables[1])")
    assert result["run history columns"] == ("fail", "ref.run_history lacks errors")
    # Said once, by the checks above: the validation they block is skipped, not failed again.
    assert result["calendar has dates"] == ("skip", "validation needs the tables and columns named above")


def test_a_missing_calendar_table_is_named_by_the_calendar_check(mini):
    spec = healthy(mini)
    import duckdb

    with duckdb.connect(str(spec.with_suffix(".duckdb"))) as con:
        con.execute("DROP TABLE raw.schedule")
    outcome, why = outcomes(spec)["calendar has dates"]
    assert outcome == "fail" and why.startswith("calendar.table: ") and "raw.schedule" in why


def test_a_range_without_games_fails_the_calendar_check(mini):
    spec = healthy(mini)
    checks = run_preflight(load_spec(spec), date(2024, 3, 1), date(2024, 3, 5))
    (calendar,) = [c for c in checks if c.name == "calendar has dates"]
    assert calendar.outcome == "fail"
    assert (
        "no expected dates from 2024-03-01 to 2024-03-05" in calendar.why
        and "s1 (2024-01-01 .. 2024-01-31)" in calendar.why
    )


def test_unmapped_statuses_and_a_range_past_the_seasons_warn(mini):
    mini.run("BoxscoreProcessor", D1, "SUCCESS")
    spec = healthy(mini)
    checks = run_preflight(load_spec(spec), date(2024, 1, 1), date(2024, 4, 30))
    result = {c.name: (c.outcome, c.why) for c in checks}
    assert result["run history statuses"] == (
        "warn",
        "statuses the spec does not map, read as no evidence: 'SUCCESS' (1 processor-dates)",
    )
    assert (
        result["calendar has dates"][0] == "warn"
        and "after the last season the calendar knows (s2" in result["calendar has dates"][1]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ('["/no/such/program", "{start}", "{end}"]', "'/no/such/program' is not on PATH"),
        (
            '["{python}", "-m", "no_such_module_here", "{start}", "{end}"]',
            "module 'no_such_module_here' cannot be imported",
        ),
        ('["{python}", "jobs/missing.py", "{start}", "{end}"]', "script jobs/missing.py is not in"),
    ],
)
def test_a_job_command_that_does_not_resolve_fails(mini, argv, message):
    spec = healthy(mini)
    edit(spec, '  argv: ["{python}", "-c", "pass", "{id}", "{start}", "{end}"]', f"  argv: {argv}")
    outcome, why = outcomes(spec, quick=True)["job commands resolve"]
    assert outcome == "fail" and message in why


def test_a_job_without_skip_downstream_fails(mini):
    spec = healthy(mini)
    edit(spec, QUICK_GOOD, "")
    assert outcomes(spec, quick=True)["jobs skip downstream triggers"] == (
        "fail",
        "no skip_downstream setting: boxscore, props, backup_props, summary, cache",
    )


def test_a_parallel_phase_whose_jobs_do_not_wait_for_duckdbs_write_lock_warns(mini):
    """Two parallel jobs of a user's pipeline failed with 'Could not set lock on file': DuckDB
    has one writer at a time, and nothing said so before the run."""
    spec = healthy(mini)
    edit(spec, "  - name: raw\n", "  - name: raw\n    max_workers: 3\n")
    outcome, why = outcomes(spec, quick=True)["one writer at a time"]
    assert outcome == "warn"
    assert why.startswith(
        "phase raw runs up to 3 jobs at once, and boxscore, props, backup_props do not declare job.waits_for_lock: "
        "DuckDB lets one process write its file at a time"
    )
    edit(spec, QUICK_GOOD, QUICK_GOOD + "  waits_for_lock: true\n")  # every job waits for the lock
    assert outcomes(spec, quick=True)["one writer at a time"][0] == "pass"
    edit(spec, "  waits_for_lock: true\n", "")
    edit(spec, "    max_workers: 3\n", "    max_workers: 3\n    mode: sequential\n")  # or one job at a time
    assert outcomes(spec, quick=True)["one writer at a time"][0] == "pass"


def test_the_demos_jobs_declare_that_they_wait_for_the_write_lock():
    from importlib.resources import files

    from backfill_kit.spec.load import load_spec as load

    demo = load(Path(str(files("backfill_kit.demo").joinpath("nba_props.yaml"))))
    assert all(demo.job_of(t).waits_for_lock for t in demo.tables)


def test_dry_runs_fail_on_a_bad_exit_warn_without_args_and_skip_when_quick(mini):
    spec = healthy(mini)
    edit(spec, '"-c", "pass"', '"-c", "import sys; sys.exit(\'source unreachable\')"')
    outcome, why = outcomes(spec)["jobs dry run"]
    assert outcome == "fail" and "boxscore: exit 1: source unreachable" in why
    edit(spec, '  dry_run_args: ["--rehearse"]\n', "")
    assert outcomes(spec)["jobs dry run"][0] == "warn"
    assert outcomes(spec, quick=True)["jobs dry run"] == ("skip", "skipped by --quick")


def test_orphaned_running_rows_warn(mini):
    mini.games(D1 + timedelta(1))
    mini.run("PropsProcessor", D1 + timedelta(1), "running", started=NOW - timedelta(days=3))
    outcome, why = outcomes(healthy(mini), quick=True)["orphaned running rows"]
    assert outcome == "warn" and "1 run never finished (props 2024-01-11" in why


def test_another_runner_holding_a_table_fails(mini):
    spec = healthy(mini)
    held = LockSet()
    held.acquire(spec.parent / ".backfill-kit" / "locks" / "summary.lock", "table summary")
    try:
        assert outcomes(spec, quick=True)["no other runner"] == ("fail", "another runner holds: summary")
    finally:
        held.release()
    assert outcomes(spec, quick=True)["no other runner"][0] == "pass"


def test_blocked_upstream_warns(mini):
    day = D1 + timedelta(1)
    mini.games(day).run("BoxscoreProcessor", day, "running", started=datetime.now() - timedelta(minutes=5))
    outcome, why = outcomes(healthy(mini), quick=True)["upstream coverage"]
    assert outcome == "warn" and "summary 2024-01-11: upstream boxscore is running" in why


def test_little_free_disk_warns_then_fails(mini, monkeypatch):
    spec = healthy(mini)
    monkeypatch.setattr(preflight, "FREE_DISK_WARN", 2**62)
    assert outcomes(spec, quick=True)["free disk for logs"][0] == "warn"
    monkeypatch.setattr(preflight, "FREE_DISK_FAIL", 2**61)
    assert outcomes(spec, quick=True)["free disk for logs"][0] == "fail"


def test_exit_codes_through_the_cli(mini):
    spec = healthy(mini)
    args = ["preflight", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", "--format", "json"]
    ok = CliRunner().invoke(cli, args)
    assert ok.exit_code == 0 and json.loads(ok.output)["exit_code"] == 0
    assert CliRunner().invoke(cli, [*args, "--quick"]).exit_code == 0
    edit(spec, '  dry_run_args: ["--rehearse"]\n', "")
    assert CliRunner().invoke(cli, args).exit_code == 2  # a warning only
    edit(spec, QUICK_GOOD, "")
    assert CliRunner().invoke(cli, args).exit_code == 1


def test_the_runner_refuses_to_start_when_quick_preflight_fails_unless_told_to_go_ahead(mini):
    spec = healthy(mini)
    import duckdb

    with duckdb.connect(str(spec.with_suffix(".duckdb"))) as con:
        con.execute("DELETE FROM analytics.summary")  # summary needs work now
    plan = spec.parent / "plan.json"
    planned = CliRunner().invoke(
        cli, ["plan", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", "--out", str(plan)]
    )
    assert planned.exit_code == 0
    held = LockSet()
    held.acquire(spec.parent / ".backfill-kit" / "locks" / "other_table.lock", "table other_table")
    try:
        refused = CliRunner().invoke(cli, ["run", "--plan", str(plan)])
        assert refused.exit_code == 1 and "preflight failed; nothing was started" in refused.output
        assert "another runner holds: other_table" in refused.output
        # The gate shows the problem only, and counts every check it ran, those that passed too.
        counts = re.search(r"(\d+) passed, (\d+) warnings, (\d+) failed, (\d+) skipped", refused.output)
        assert counts is not None and int(counts[1]) >= 5 and int(counts[3]) == 1, refused.output
        assert not any(line.startswith("pass ") for line in refused.output.splitlines())
        assert any(line.startswith("FAIL ") for line in refused.output.splitlines())
        assert not (spec.parent / "plan.journal.jsonl").exists()
        forced = CliRunner().invoke(cli, ["run", "--plan", str(plan), "--ignore-preflight"])
        assert forced.exit_code == 0, forced.output
    finally:
        held.release()


def test_a_python_caller_of_a_run_meets_the_same_preflight_gate(mini):
    """`preflight.run_plan` is what the CLI calls: a failed check raises before any job starts."""
    from backfill_kit.errors import PreflightFailed
    from backfill_kit.plan import load_plan

    spec = healthy(mini)
    import duckdb

    with duckdb.connect(str(spec.with_suffix(".duckdb"))) as con:
        con.execute("DELETE FROM analytics.summary")
    plan_path = spec.parent / "plan.json"
    args = ["plan", "--spec", str(spec), "--start", "2024-01-01", "--end", "2024-01-31", "--out", str(plan_path)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    plan = load_plan(plan_path)
    held = LockSet()
    held.acquire(spec.parent / ".backfill-kit" / "locks" / "other_table.lock", "table other_table")
    shown = []
    try:
        with pytest.raises(PreflightFailed, match="nothing was started") as refused:
            preflight.run_plan(plan, plan_path, show_checks=shown.append)
        failed = [c.name for c in refused.value.checks if c.outcome == "fail"]
        assert failed == ["no other runner"] and shown == [refused.value.checks]
        assert not (spec.parent / "plan.journal.jsonl").exists()
        result = preflight.run_plan(plan, plan_path, ignore_preflight=True)
        assert (result.outcome, result.exit_code) == ("completed", 0)
    finally:
        held.release()
