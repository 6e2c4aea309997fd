"""Files the toolkit writes where the user says (a plan, a drafted spec, a report, the demo
warehouse): through a temporary file of their own, replacing only a regular file, never
following a link. `plan --out X` and `spec draft --out X` wrote the fixed name X.tmp, then
renamed it over X: as root, `--out /dev/null` turned the device into a JSON file, a FIFO was
replaced, and a link planted at X.tmp was written through."""

from __future__ import annotations

import os
import re
import stat
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MINI_SPEC, MiniWarehouse

from backfill_kit.cli.commands import cli
from backfill_kit.common.outputs import replacing, write_output
from backfill_kit.errors import InputError

RANGE = ["--start", "2024-01-01", "--end", "2024-01-31"]
VICTIM = "someone else's file\n"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def spec(mini: MiniWarehouse) -> Path:
    return mini.games(date(2024, 1, 10)).close()  # the date never ran: the plan has a step


def plan(spec: Path, out: Path):
    return invoke("plan", "--spec", str(spec), *RANGE, "--out", str(out))


def draft(spec: Path, out: Path):
    """spec draft --force over `out`, from the mini pipeline's warehouse."""
    return invoke("spec", "draft", "--duckdb", str(spec.with_suffix(".duckdb")), "--out", str(out), "--force")


WRITERS = {"plan": plan, "spec draft": draft}


def a_device(path: Path) -> Path:
    """A twin of /dev/null (character device 1:3) at `path`: what the test may break, unlike
    the machine's own."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device needs root; as any other user the rename over one fails anyway")
    return path


def refusal(path: Path, what: str, kind: str) -> str:
    return f"error: cannot write {what} {path}: it is {kind}, not a regular file; choose a writable place with --out\n"


def a_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def a_link(path: Path) -> Path:
    """A link to someone else's file."""
    path.with_name("target").write_text(VICTIM)
    path.symlink_to("target")
    return path


TARGETS = {"a character device": a_device, "a FIFO (named pipe)": a_fifo, "a symbolic link": a_link}


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """A folder of its own for what is written: only what a test expects may appear there."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("kind", list(TARGETS))
@pytest.mark.parametrize("command", list(WRITERS))
def test_only_a_regular_file_is_replaced(spec: Path, outputs: Path, command: str, kind: str):
    out = TARGETS[kind](outputs / "out.json")
    before = sorted(outputs.iterdir())
    info = os.lstat(out)
    result = WRITERS[command](spec, out)
    assert result.exit_code == 2
    what = {"plan": "the plan", "spec draft": "the draft"}[command]
    assert result.output.endswith(refusal(out, what, kind)) and "Traceback" not in result.output
    after = os.lstat(out)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (info.st_mode, info.st_ino, info.st_rdev)
    assert sorted(outputs.iterdir()) == before  # nothing written beside it either
    if kind == "a symbolic link":
        assert (outputs / "target").read_text() == VICTIM


def test_plan_out_dev_null_leaves_the_device_a_device(spec: Path, tmp_path: Path):
    """The issue's own case, on the machine's /dev/null, once a twin device survived: a
    regression must not break /dev/null for everything else on the machine."""
    twin = a_device(tmp_path / "null")
    assert plan(spec, twin).exit_code == 2 and stat.S_ISCHR(os.lstat(twin).st_mode)
    result = plan(spec, Path(os.devnull))
    assert result.exit_code == 2
    assert result.output.endswith(refusal(Path(os.devnull), "the plan", "a character device"))
    assert stat.S_ISCHR(os.lstat(os.devnull).st_mode)


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_link_at_the_old_temporary_name_is_never_written_through(spec: Path, outputs: Path, command: str):
    """Another user who can write the folder plants links at X.tmp and .X.tmp (the names the
    old code wrote, then renamed): the file they point to stays as it was, and X is written."""
    victim = outputs / "victim"
    victim.write_text(VICTIM)
    out = outputs / "out.json"
    for name in (f"{out.name}.tmp", f".{out.name}.tmp"):
        (outputs / name).symlink_to(victim)
    result = WRITERS[command](spec, out)
    assert result.exit_code == 0, result.output
    assert victim.read_text() == VICTIM
    assert out.is_file() and not out.is_symlink() and out.stat().st_size > 100
    assert sorted(p.name for p in outputs.iterdir()) == [".out.json.tmp", "out.json", "out.json.tmp", "victim"]


def test_a_regular_file_is_replaced_whole_with_the_usual_permissions(tmp_path: Path):
    out = tmp_path / "report.html"
    out.write_text("old")
    old = os.umask(0o027)
    try:
        write_output(out, "new", what="the report", hint="choose another --out-dir")
        assert (out.read_text(), oct(out.stat().st_mode & 0o777)) == ("new", "0o640")
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def a_database(path: Path) -> None:
    """What the demo warehouse's builder does: DuckDB writes the file by name."""
    import duckdb

    with replacing(path, what="the demo warehouse", hint="choose another folder") as building:
        con = duckdb.connect(str(building))
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
        con.close()


def a_report(path: Path) -> None:
    write_output(path, "<html></html>", what="the report", hint="choose another --out-dir")


@pytest.mark.parametrize("kind", ["a FIFO (named pipe)", "a symbolic link"])
@pytest.mark.parametrize("write", [a_report, a_database], ids=["a report", "the demo warehouse"])
def test_a_report_and_the_demo_warehouse_refuse_the_same_targets(outputs: Path, kind: str, write):
    """The report's files (reports/render.py) and the demo warehouse (demo/warehouse.py) go
    through the same helper."""
    out = TARGETS[kind](outputs / "out")
    before = sorted(outputs.iterdir())
    with pytest.raises(
        InputError, match=f"^cannot write the .* {re.escape(str(out))}: it is {re.escape(kind)}, not a regular"
    ):
        write(out)
    assert sorted(outputs.iterdir()) == before
    assert stat.S_IFMT(os.lstat(out).st_mode) == (stat.S_IFIFO if "FIFO" in kind else stat.S_IFLNK)


def test_a_database_is_built_aside_then_replaces_the_old_file(outputs: Path):
    import duckdb

    out = outputs / "demo.duckdb"
    out.write_text("not yet a database")
    a_database(out)
    assert duckdb.connect(str(out), read_only=True).execute("SELECT x FROM t").fetchall() == [(1,)]
    assert sorted(p.name for p in outputs.iterdir()) == ["demo.duckdb"]


def test_a_draft_over_a_link_is_refused_with_force_too(tmp_path: Path):
    from backfill_kit.draft import write_draft

    (tmp_path / "target.yaml").write_text(VICTIM)
    (tmp_path / "draft.yaml").symlink_to("target.yaml")
    with pytest.raises(InputError, match="it is a symbolic link, not a regular file"):
        write_draft(MINI_SPEC, tmp_path / "draft.yaml", force=True)
    assert (tmp_path / "target.yaml").read_text() == VICTIM


def test_the_report_index_never_writes_through_a_link_at_its_old_temporary_name(outputs: Path):
    """reports/render.py wrote `.index.html.PID.THREAD.tmp`, a name anyone can work out."""
    import threading

    from backfill_kit.reports.render import write_index

    victim = outputs.parent / "victim"
    victim.write_text(VICTIM)
    (outputs / f".index.html.{os.getpid()}.{threading.get_ident()}.tmp").symlink_to(victim)
    index = write_index(outputs)
    assert victim.read_text() == VICTIM
    assert "No reports yet" in index.read_text() and not index.is_symlink()


def test_the_demo_warehouse_refuses_a_link_before_building_anything(outputs: Path):
    from backfill_kit.demo.warehouse import build_demo_warehouse

    out = a_link(outputs / "nba_props.duckdb")
    with pytest.raises(InputError, match="it is a symbolic link, not a regular file; choose another folder"):
        build_demo_warehouse(out)
    assert (outputs / "target").read_text() == VICTIM
    assert sorted(p.name for p in outputs.iterdir()) == ["nba_props.duckdb", "target"]
